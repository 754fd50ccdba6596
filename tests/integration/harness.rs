//! Shared test harness: a private dummy jackd per test, the test-signal
//! source, and helpers to run the built binaries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");
/// The test bed's JACK source (`tests/testbed`, a workspace member of its
/// own: `make test` builds it first), beside capstan in the target folder.
pub static TESTSIG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let p = Path::new(CAPSTAN).with_file_name("capstan-testsig");
    assert!(p.exists(), "{} is missing: build it with `cargo build -p capstan-testbed`", p.display());
    p.display().to_string()
});

static SERVERS: AtomicU32 = AtomicU32::new(0);

/// The JACK servers our users run; every capture test names the ones it runs
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// jackd2's default: asynchronous, real-time (`-R`).
    Jack2Async,
    /// jackd2 synchronous (`-R -S`).
    Jack2Sync,
    /// PipeWire's JACK layer (pipewire-jack), headless on its dummy driver,
    /// clients run through `pw-jack`.
    PipeWire,
}

/// A test's own JACK server, stopped by PID on drop: a dummy-backend jackd,
/// or a pipewire with a private XDG_RUNTIME_DIR.
pub struct JackServer {
    pub name: String,
    pub kind: ServerKind,
    child: Option<Child>,
    /// PipeWire's private runtime directory.
    runtime: Option<tempfile::TempDir>,
}

impl JackServer {
    /// jackd2 in its default (asynchronous) mode.
    pub fn start(period: u32) -> JackServer {
        Self::start_kind(ServerKind::Jack2Async, period)
    }

    pub fn start_kind(kind: ServerKind, period: u32) -> JackServer {
        let name = format!("capstan-test-{}-{}", std::process::id(), SERVERS.fetch_add(1, Ordering::SeqCst));
        match kind {
            ServerKind::PipeWire => Self::start_pipewire(name, period),
            _ => Self::start_jackd(name, kind, period, &[]),
        }
    }

    /// A jackd2 (asynchronous) with a fixed name. Use it for a server the
    /// test will SIGKILL: JACK2's shm registry has 8 server slots and frees a
    /// dead server's slot only for a new server of the same name.
    pub fn start_named(name: String, period: u32) -> JackServer {
        Self::start_jackd(name, ServerKind::Jack2Async, period, &[])
    }

    /// jackd2 with these server options (before the driver's), e.g.
    /// `--port-max 16`.
    pub fn start_with(period: u32, server_args: &[&str]) -> JackServer {
        let name = format!("capstan-test-{}-{}", std::process::id(), SERVERS.fetch_add(1, Ordering::SeqCst));
        Self::start_jackd(name, ServerKind::Jack2Async, period, server_args)
    }

    /// A jackd of our own. JACK2 allows 8 servers per user, and on a busy
    /// machine other servers may hold every slot: a server that exits at
    /// once is started again until a slot is free (up to 10 minutes), so a
    /// test waits for the machine instead of failing because of it.
    fn start_jackd(name: String, kind: ServerKind, period: u32, server_args: &[&str]) -> JackServer {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut waited = false;
        loop {
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut cmd = Command::new("jackd");
            die_with_parent(&mut cmd);
            cmd.arg("-n").arg(&name).arg("-R");
            if kind == ServerKind::Jack2Sync {
                cmd.arg("-S");
            }
            cmd.args(server_args);
            cmd.args(["-d", "dummy", "-r", "48000", "-p", &period.to_string()]);
            let child = cmd
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("jackd (apt-get install jackd2)");
            let mut server = JackServer { name: name.clone(), kind, child: Some(child), runtime: None };
            match server.wait_until_up_or_exit() {
                Ok(()) => {
                    if waited {
                        eprintln!("jackd {name}: a server slot came free");
                    }
                    return server;
                }
                Err(why) => {
                    server.child = None;
                    let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                    assert!(Instant::now() < deadline, "jackd {name} never came up ({why}): {said}");
                    if !waited {
                        eprintln!("jackd {name} did not start ({why}); waiting for a free server slot");
                    }
                    waited = true;
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    }

    /// Waits until the server answers; `Err` if it exited first (or never
    /// answered within 15 s, then it is stopped).
    fn wait_until_up_or_exit(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.answers() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("exited: {status}"));
                }
            }
            if Instant::now() > deadline {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err("no answer in 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        self.cmd("jack_lsp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn start_pipewire(name: String, period: u32) -> JackServer {
        let runtime = tempfile::Builder::new().prefix("capstan-pw-").tempdir().unwrap();
        let mut cmd = Command::new("pipewire");
        die_with_parent(&mut cmd);
        cmd.env("XDG_RUNTIME_DIR", runtime.path()).env_remove("PIPEWIRE_REMOTE");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pipewire (apt-get install pipewire pipewire-jack)");
        let server =
            JackServer { name, kind: ServerKind::PipeWire, child: Some(child), runtime: Some(runtime) };
        server.wait_until_up();
        server.pw_setting("clock.force-rate", 48000);
        server.pw_setting("clock.force-quantum", period);
        server.wait_for_period(period);
        server
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.answers() {
                return;
            }
            assert!(Instant::now() < deadline, "{:?} server {} did not come up", self.kind, self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets a PipeWire clock setting at run time (`pw-metadata -n settings`),
    /// e.g. `clock.force-quantum` or `clock.force-rate` (0: back to default).
    pub fn pw_setting(&self, key: &str, value: u32) {
        let runtime = self.runtime.as_ref().expect("a PipeWire server");
        let st = Command::new("pw-metadata")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .args(["-n", "settings", "0", key, &value.to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "pw-metadata {key} {value}");
    }

    /// Waits until JACK clients see `period` frames per cycle.
    pub fn wait_for_period(&self, period: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.cmd("jack_bufsize").output().unwrap();
            if text(&out.stdout).trim() == period.to_string() {
                return;
            }
            assert!(Instant::now() < deadline, "period never became {period}: {}", text(&out.stdout));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command with this server selected.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = match &self.runtime {
            Some(runtime) => {
                let mut c = Command::new("pw-jack");
                c.arg(program).env("XDG_RUNTIME_DIR", runtime.path()).env_remove("PIPEWIRE_REMOTE");
                c
            }
            None => Command::new(program),
        };
        c.env("JACK_DEFAULT_SERVER", &self.name).env("JACK_NO_START_SERVER", "1").env("RUST_BACKTRACE", "0");
        c
    }

    pub fn capstan(&self) -> Command {
        self.cmd(CAPSTAN)
    }

    /// Starts the test-signal source `src` with `channels` outputs. It keeps
    /// the ground truth of which frame times it wrote ([`Source::stop_truth`]).
    pub fn source(&self, channels: usize) -> Source {
        self.source_with(channels, &[])
    }

    /// [`Self::source`] with more `capstan-testsig source` arguments.
    pub fn source_with(&self, channels: usize, extra: &[&str]) -> Source {
        let truth = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let mut child = self
            .cmd(&TESTSIG)
            .args(["source", "--name", "src", "--channels", &channels.to_string(), "--truth"])
            .arg(&truth)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "source did not start: {line:?}");
        Source { child, out, truth }
    }

    /// Sends `signal` to the server (e.g. SIGSTOP/SIGCONT to freeze it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
        }
    }

    /// Kills the server with `signal` and waits for it to exit.
    pub fn kill(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
    }
}

/// The child gets SIGTERM if the test process dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: pre_exec runs in the forked child before exec; prctl is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The running test-signal source.
pub struct Source {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    truth: tempfile::TempPath,
}

impl Source {
    /// Stops the source; returns the xruns it saw.
    pub fn stop(self) -> u64 {
        self.stop_truth().0
    }

    /// Stops the source; returns the xruns it saw and which frame times it
    /// wrote.
    pub fn stop_truth(mut self) -> (u64, Truth) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        let _ = self.child.wait();
        let xruns = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        (xruns, Truth::load(&self.truth))
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
}

/// Which JACK frame times the source wrote: its cycles, in order, with the
/// 32-bit frame time unwrapped, and the rate of each.
#[derive(Debug, Default)]
pub struct Truth {
    pub cycles: Vec<(u64, u64)>,
    pub rates: Vec<u32>,
    /// The system clock (µs since 1970) when the source wrote each cycle.
    pub walls: Vec<u64>,
    /// Whether JACK transport rolled in each cycle.
    pub rolling: Vec<bool>,
}

impl Truth {
    fn load(path: &Path) -> Truth {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut cycles: Vec<(u64, u64)> = Vec::new();
        let mut rates = Vec::new();
        let mut walls = Vec::new();
        let mut rolling = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace().map(|x| x.parse::<u64>().unwrap());
            let (t, n) = (it.next().unwrap(), it.next().unwrap());
            rates.push(it.next().unwrap() as u32);
            walls.push(it.next().unwrap());
            rolling.push(it.next() == Some(1));
            let t = match cycles.last() {
                Some(&(prev, _)) => {
                    prev.wrapping_add((t as u32).wrapping_sub(prev as u32) as i32 as i64 as u64)
                }
                None => t,
            };
            cycles.push((t, n));
        }
        Truth { cycles, rates, walls, rolling }
    }

    /// The system clock when the source wrote frame time `t` (µs since
    /// 1970): its cycle's time plus `t`'s place in the cycle.
    pub fn wall_at(&self, t: u64) -> Option<u64> {
        let i = self.cycle_of(t)?;
        let t = self.unwrap(t)?;
        Some(self.walls[i] + (t - self.cycles[i].0) * 1_000_000 / self.rates[i] as u64)
    }

    /// How far the source's own clock readings wander around cycle `i`
    /// (µs): the spread of the wall time each of the 128 cycles around it
    /// implies for cycle `i`'s first frame. A callback that runs late reads
    /// the clock late; on a quiet machine this is well under a millisecond,
    /// on a busy one (JACK's cycles late, the dummy backend behind) tens.
    /// Checks of JACK's clock against the system clock allow it.
    fn jitter(&self, i: usize) -> u64 {
        let (from, to) = (i.saturating_sub(64), (i + 65).min(self.cycles.len()));
        let implied = (from..to).map(|j| {
            let frames = self.cycles[j].0 as i64 - self.cycles[i].0 as i64;
            self.walls[j] as i64 - frames * 1_000_000 / self.rates[j].max(1) as i64
        });
        let (lo, hi) = implied.fold((i64::MAX, i64::MIN), |(lo, hi), w| (lo.min(w), hi.max(w)));
        (hi - lo).max(0) as u64
    }

    /// [`Self::jitter`] around the cycle that wrote frame time `t`, or the
    /// first one after it.
    pub fn jitter_at(&self, t: u64) -> u64 {
        self.cycle_of(t).or_else(|| self.cycle_after(t)).map_or(0, |i| self.jitter(i))
    }

    /// The first cycle the source wrote after frame time `t` (a busy machine
    /// may not have run it for `t` itself).
    fn cycle_after(&self, t: u64) -> Option<usize> {
        let t = self.unwrap(t)?;
        let i = self.cycles.partition_point(|&(s, _)| s <= t);
        (i < self.cycles.len()).then_some(i)
    }

    /// [`Self::wall_at`], or where the first cycle the source wrote after
    /// `t` puts `t` by the nominal rate.
    pub fn wall_near(&self, t: u64) -> Option<u64> {
        self.wall_at(t).or_else(|| {
            let i = self.cycle_after(t)?;
            let t = self.unwrap(t)?;
            let back = (self.cycles[i].0 - t) * 1_000_000 / self.rates[i].max(1) as u64;
            self.walls[i].checked_sub(back)
        })
    }

    /// [`Self::jitter`] around the cycle the source wrote at `us` (µs
    /// since 1970).
    pub fn jitter_at_wall(&self, us: u64) -> u64 {
        self.walls.partition_point(|&w| w <= us).checked_sub(1).map_or(0, |i| self.jitter(i))
    }

    /// Frame time `t` (compared modulo 2^32) on the source's unwrapped
    /// timeline, from its first cycle on.
    fn unwrap(&self, t: u64) -> Option<u64> {
        let &(first, _) = self.cycles.first()?;
        Some(first.wrapping_add((t as u32).wrapping_sub(first as u32) as u64))
    }

    /// The cycle that wrote frame time `t` (compared modulo 2^32).
    fn cycle_of(&self, t: u64) -> Option<usize> {
        let t = self.unwrap(t)?;
        let i = self.cycles.partition_point(|&(s, _)| s <= t);
        (i > 0 && t < self.cycles[i - 1].0 + self.cycles[i - 1].1).then(|| i - 1)
    }

    /// Whether the source wrote frame time `t`.
    pub fn wrote(&self, t: u64) -> bool {
        self.cycle_of(t).is_some()
    }

    /// The sample rate at which the source wrote frame time `t`.
    pub fn rate_at(&self, t: u64) -> Option<u32> {
        self.cycle_of(t).map(|i| self.rates[i])
    }

    /// The parts of `runs` (file frames, the file's first frame at frame
    /// time `first`) at frame times the source wrote, merged.
    pub fn written_parts(&self, runs: &[(u64, u64)], first: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for &(at, n) in runs {
            let mut t = at;
            for (h, len) in self.holes(first + at, first + at + n) {
                let h = h - first;
                if h > t {
                    out.push((t, h - t));
                }
                t = h + len;
            }
            if at + n > t {
                out.push((t, at + n - t));
            }
        }
        union(&out)
    }

    /// Where the source's clock puts system-clock time `us` (µs since 1970)
    /// on JACK's timeline: the frame time of the cycle it wrote last before
    /// `us`, plus the time since at its rate. `None` outside its cycles.
    pub fn frame_at_wall(&self, us: u64) -> Option<f64> {
        let i = self.walls.partition_point(|&w| w <= us).checked_sub(1)?;
        (i + 1 < self.walls.len())
            .then(|| self.cycles[i].0 as f64 + (us - self.walls[i]) as f64 * self.rates[i] as f64 / 1e6)
    }

    /// The frame times in `[from, to)` the source never wrote, as runs.
    pub fn holes(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            if self.wrote(t) {
                t += 1;
                continue;
            }
            let s = t;
            while t < to && !self.wrote(t) {
                t += 1;
            }
            out.push((s, t - s));
        }
        out
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion, with a generous timeout.
pub fn run(mut cmd: Command) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_output(child, Duration::from_secs(120))
}

pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("process {pid} did not finish within {timeout:?}");
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--json` summary of `capstan record`.
pub fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("bad JSON summary ({e}): stdout {} stderr {}", text(&out.stdout), text(&out.stderr))
    })
}

/// Checks a `capstan record` file against the test signal, exactly: every
/// frame is the signal at its JACK frame time + index, or silence exactly where
/// the report lists a gap (an xrun may add a reported gap, never move or
/// hide a frame). Our own rings must not have overflowed. Returns the frames.
pub fn assert_recording(path: &Path, first_channel: usize, report: &serde_json::Value) -> u64 {
    let gaps = report["take"]["gaps"].as_array().unwrap();
    let overflow: u64 =
        gaps.iter().filter(|g| g["cause"] == "disk_overrun").map(|g| g["frames"].as_u64().unwrap()).sum();
    assert_eq!(overflow, 0, "capstan's own rings overflowed: {report}");
    let v = assert_position_exact(path, first_channel, &gap_runs(gaps), None);
    assert_eq!(v.first_frame_time, report["take"]["first_frame_time"].as_u64().unwrap());
    v.frames
}

/// `(at, frames)` of each gap in a JSON list of gaps.
pub fn gap_runs(gaps: &[serde_json::Value]) -> Vec<(u64, u64)> {
    gaps.iter().map(|g| (g["at"].as_u64().unwrap(), g["frames"].as_u64().unwrap())).collect()
}

/// The exact check behind every capture test: frame `i` of `path` is the
/// signal at `first_frame_time + i`, or silence, and the silent runs are
/// exactly `gaps`; channels are never torn. With the source's ground truth,
/// every frame that holds audio is one the source really wrote.
pub fn assert_position_exact(
    path: &Path,
    first_channel: usize,
    gaps: &[(u64, u64)],
    truth: Option<&Truth>,
) -> capstan_testbed::Verdict {
    let decoded = flac_decoded(path);
    let (path, t0) = match &decoded {
        Some((wav, t0)) => (&**wav, Some(*t0)),
        None => (path, None),
    };
    let v = capstan_testbed::verify_at(path, first_channel, 0, t0).unwrap();
    assert_eq!(v.torn, 0, "{}: channels misaligned: {v:?}", path.display());
    assert_eq!(v.mismatched, 0, "{}: frames away from their frame time: {v:?}", path.display());
    let silent: Vec<(u64, u64)> = v.silent.iter().map(|r| (r.at, r.frames)).collect();
    // Where the source wrote nothing (its client was not run in that
    // cycle: PipeWire reconfiguring, a busy machine), JACK delivered
    // silence and nobody can report it: the silence is checked against the
    // reported gaps only at frame times the source wrote.
    let audio_ends = union(&[silent.clone(), gaps.to_vec()].concat());
    // A frame where the signal itself is silence reads as the signal, even
    // inside a gap: it is neither asked to be silent nor to be audio.
    let gaps = &without(&union(gaps), &v.zero_signal);
    let (silent, reported) = match truth {
        Some(truth) => {
            (truth.written_parts(&silent, v.first_frame_time), truth.written_parts(gaps, v.first_frame_time))
        }
        None => (silent, gaps.clone()),
    };
    assert_eq!(silent, reported, "{}: silence must be exactly the reported gaps", path.display());
    if let Some(truth) = truth {
        let rate = capstan::wav::read_info(path).unwrap().spec.sample_rate;
        let mut t = 0;
        for &(at, n) in audio_ends.iter().chain([(v.frames, 0)].iter()) {
            // Audio in [t, at) (between silent runs): the source wrote every
            // one of those frames, at the rate the header says.
            let (from, to) = (v.first_frame_time + t, v.first_frame_time + at);
            let holes = truth.holes(from, to);
            assert!(
                holes.is_empty(),
                "{}: audio at frame times the source never wrote: {holes:?}",
                path.display()
            );
            if let Some(x) = (from..to).find(|&x| truth.rate_at(x) != Some(rate)) {
                panic!(
                    "{}: frame time {x} was written at {:?} Hz, the header says {rate}",
                    path.display(),
                    truth.rate_at(x)
                );
            }
            t = at + n;
        }
    }
    v
}

/// A FLAC take file checked by the reference tools: `flac -t` passes, and
/// `flac -d` decodes it to a WAV (returned with the JACK frame time of its
/// first frame, from the CAPSTAN_JACK_FRAME_TIME tag via `metaflac`).
/// `None` for any other file.
pub fn flac_decoded(path: &Path) -> Option<(tempfile::TempPath, u64)> {
    if path.extension().is_none_or(|e| e != "flac") {
        return None;
    }
    let t = Command::new("flac").args(["-t", "-s"]).arg(path).output().expect("flac (apt-get install flac)");
    assert!(t.status.success(), "flac -t {}: {}", path.display(), text(&t.stderr));
    let wav = tempfile::Builder::new().suffix(".wav").tempfile().unwrap().into_temp_path();
    let d = Command::new("flac").args(["-d", "-s", "-f", "-o"]).arg(&wav).arg(path).output().unwrap();
    assert!(d.status.success(), "flac -d {}: {}", path.display(), text(&d.stderr));
    let tag = Command::new("metaflac").arg("--show-tag=CAPSTAN_JACK_FRAME_TIME").arg(path).output().unwrap();
    let t0 =
        text(&tag.stdout).trim().split_once('=').and_then(|(_, v)| v.parse().ok()).unwrap_or_else(|| {
            panic!("{}: no CAPSTAN_JACK_FRAME_TIME tag: {}", path.display(), text(&tag.stdout))
        });
    Some((wav, t0))
}

/// The manifest beside a take's file (interleaved: same stem).
pub fn manifest_of(path: &Path) -> serde_json::Value {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let m = path.with_file_name(format!("{stem}.take.json"));
    serde_json::from_slice(&std::fs::read(&m).unwrap_or_else(|e| panic!("{}: {e}", m.display()))).unwrap()
}

/// Adjacent gaps form one silent run.
/// The runs `runs` cover together, in order, overlaps and neighbours
/// joined.
fn union(runs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted = runs.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (at, n) in sorted {
        match out.last_mut() {
            Some(last) if at <= last.0 + last.1 => last.1 = last.1.max(at + n - last.0),
            _ => out.push((at, n)),
        }
    }
    out
}

/// The take's gaps as a copy that holds only its first `frames` frames has
/// them: a copy is the take's frames, silence and all, cut where it stopped.
pub fn gaps_within(gaps: &[(u64, u64)], frames: u64) -> Vec<(u64, u64)> {
    gaps.iter().filter(|g| g.0 < frames).map(|&(at, n)| (at, n.min(frames - at))).collect()
}

/// `runs` (sorted, disjoint) without the frames `points` (sorted).
fn without(runs: &[(u64, u64)], points: &[u64]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(at, n) in runs {
        let mut from = at;
        for &p in points.iter().filter(|&&p| p >= at && p < at + n) {
            if p > from {
                out.push((from, p - from));
            }
            from = p + 1;
        }
        if at + n > from {
            out.push((from, at + n - from));
        }
    }
    out
}

pub fn files(report: &serde_json::Value) -> Vec<PathBuf> {
    report["take"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("capstan-test-").tempdir().unwrap()
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `capstan daemon`, stopped with SIGTERM on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub port: u16,
    /// Everything the daemon wrote to stderr (drained as it comes, so a
    /// chatty daemon never blocks on a full pipe).
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    pub fn start(server: &JackServer, dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_env(server, dir, extra, &[])
    }

    /// [`Self::start`] with more environment variables (e.g. a slow disk's
    /// `LD_PRELOAD`, see [`slow_disk`]).
    pub fn start_env(server: &JackServer, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        // Small test disks: ask for 6 s of free space unless a test says;
        // and a shared machine's disk may be more than 85% full: no free
        // fraction unless a test says (found by a CI run whose 1,024-input
        // start was refused at 15.2% free).
        let mut min: Vec<&str> = Vec::new();
        if !extra.contains(&"--min-minutes") {
            min.extend(["--min-minutes", "0.1"]);
        }
        if !extra.contains(&"--min-free-fraction") {
            min.extend(["--min-free-fraction", "0"]);
        }
        let mut child = server
            .capstan()
            .args(["daemon", "-q", "--osc-port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(&min)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut d = Daemon { child: Some(child), port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while osc(d.port, "/record/status", vec![]).is_none() {
            let c = d.child.as_mut().unwrap();
            if let Ok(Some(status)) = c.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("daemon exited ({status}): {}", d.log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "daemon did not answer on port {port}");
        }
        d
    }

    /// Sends SIGTERM and waits; returns the exit status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut c = self.child.take().unwrap();
        let t = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = c.wait().unwrap();
        (status, t.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

/// Sends one OSC message from a fresh socket and returns the reply (address
/// and arguments), skipping feedback messages. None: no reply in 3 s.
pub fn osc(port: u16, path: &str, args: Vec<rosc::OscType>) -> Option<(String, Vec<rosc::OscType>)> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage { addr: path.into(), args }))
        .unwrap();
    sock.send_to(&msg, ("127.0.0.1", port)).unwrap();
    reply_on(&sock, Duration::from_secs(3))
}

/// The arguments of the next push to `addr` arriving on `sock` within
/// `timeout` (other messages are skipped).
pub fn push_on(sock: &std::net::UdpSocket, addr: &str, timeout: Duration) -> Option<Vec<rosc::OscType>> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if let Ok((_, rosc::OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) {
            if m.addr == addr {
                return Some(m.args);
            }
        }
    }
    None
}

/// The next `/reply` or `/error` arriving on `sock`.
pub fn reply_on(sock: &std::net::UdpSocket, timeout: Duration) -> Option<(String, Vec<rosc::OscType>)> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if let Ok((_, rosc::OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) {
            if m.addr == "/reply" || m.addr == "/error" {
                return Some((m.addr, m.args));
            }
        }
    }
    None
}

pub fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    v.sort();
    v
}

/// Checks a daemon take (interleaved) exactly against its manifest's gaps.
pub fn assert_take(path: &Path, truth: Option<&Truth>) -> capstan_testbed::Verdict {
    let m = manifest_of(path);
    let gaps = gap_runs(m["gaps"].as_array().unwrap());
    let v = assert_position_exact(path, 0, &gaps, truth);
    assert_eq!(Some(v.first_frame_time), m["first_frame_time"].as_u64(), "{}", path.display());
    v
}

/// `capstan ctl --json ARGS` against the daemon on `port`: its reply.
pub fn ctl(port: u16, args: &[&str]) -> serde_json::Value {
    let mut c = Command::new(CAPSTAN);
    c.args(["ctl", "--json", "--osc", &format!("127.0.0.1:{port}")]).args(args);
    let out = run(c);
    assert!(out.status.success(), "ctl {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The takes in `dir` (first frame time, file, manifest), in the order
/// they started.
pub fn takes_in_order(dir: &Path) -> Vec<(u64, PathBuf, serde_json::Value)> {
    let mut takes: Vec<(u64, PathBuf, serde_json::Value)> = wavs(dir)
        .into_iter()
        .map(|f| {
            let m = manifest_of(&f);
            (m["first_frame_time"].as_u64().unwrap(), f, m)
        })
        .collect();
    takes.sort_by_key(|t| t.0);
    takes
}

/// Whether this test can do what needs root (`what`: a tmpfs mount, a
/// ptrace stop); says it is skipped otherwise. CI runs as root.
pub fn root_for(what: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: {what} needs root");
    }
    root
}

/// One thread of a running process stopped with ptrace (the tests' stuck
/// disk: the rest of the process runs on). Needs root. Dropping it lets the
/// thread go, or reaps it if its process is ending (a traced thread is
/// reaped by its tracer), so a test that fails never leaves it stopped.
pub struct StoppedThread(pub nix::unistd::Pid);

impl StoppedThread {
    /// Stops the thread of process `pid` named `name` (its `comm`).
    pub fn named(pid: u32, name: &str) -> StoppedThread {
        use nix::sys::{ptrace, wait};
        let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
            .and_then(|t| t.file_name().to_str()?.parse::<i32>().ok())
            .map(nix::unistd::Pid::from_raw)
            .unwrap_or_else(|| panic!("no thread {name} in process {pid}"));
        ptrace::seize(tid, ptrace::Options::empty()).expect("ptrace seize");
        let stopped = StoppedThread(tid);
        ptrace::interrupt(tid).unwrap();
        wait::waitpid(tid, Some(wait::WaitPidFlag::__WALL)).unwrap();
        stopped
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        use nix::sys::{ptrace, wait};
        if ptrace::detach(self.0, None).is_err() {
            let _ = wait::waitpid(self.0, Some(wait::WaitPidFlag::__WALL));
        }
    }
}

/// A slow disk: the shim `support/slowdisk.c` built into `dir`, to be
/// preloaded (`LD_PRELOAD`) with `SLOWDISK_BYTES_PER_SEC`. Each positioned
/// write of a block or more then takes as long as that rate needs.
pub fn slow_disk(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/slowdisk.c");
    let so = dir.join("slowdisk.so");
    let out = run({
        let mut c = Command::new("cc");
        c.args(["-shared", "-fPIC", "-O2", "-o"]).arg(&so).arg(&src).arg("-ldl");
        c
    });
    assert!(out.status.success(), "cc slowdisk.c: {}", text(&out.stderr));
    so
}

/// A socket subscribed to the daemon's pushes (`/record/subscribe`).
pub fn subscriber(port: u16) -> std::net::UdpSocket {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let m = capstan::control::osc::encode("/record/subscribe", vec![]);
    sock.send_to(&m, ("127.0.0.1", port)).unwrap();
    assert_eq!(reply_on(&sock, Duration::from_secs(3)).unwrap().0, "/reply");
    sock
}

/// The run arithmetic the exact check leans on.
#[test]
fn harness_run_arithmetic() {
    assert_eq!(without(&[(10, 5), (20, 2)], &[10, 12, 21, 30]), [(11, 1), (13, 2), (20, 1)]);
    assert_eq!(without(&[(0, 3)], &[]), [(0, 3)]);
    assert_eq!(gaps_within(&[(0, 10), (95, 10), (100, 5)], 100), [(0, 10), (95, 5)]);
    assert_eq!(union(&[(5, 5), (0, 5), (20, 1)]), [(0, 10), (20, 1)]);
}
