//! Shared test harness: a private dummy jackd per test, the test-signal
//! source, and helpers to run the built binaries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");
pub const TESTSIG: &str = env!("CARGO_BIN_EXE_capstan-testsig");

static SERVERS: AtomicU32 = AtomicU32::new(0);

/// A dummy-backend jackd of our own, stopped by PID on drop.
pub struct JackServer {
    pub name: String,
    child: Option<Child>,
}

impl JackServer {
    pub fn start(period: u32) -> JackServer {
        let name = format!("capstan-test-{}-{}", std::process::id(), SERVERS.fetch_add(1, Ordering::SeqCst));
        Self::start_named(name, period)
    }

    /// A server with a fixed name. Use it for a server the test will SIGKILL:
    /// JACK2's shm registry has 8 server slots and frees a dead server's slot
    /// only for a new server of the same name.
    pub fn start_named(name: String, period: u32) -> JackServer {
        // -S (synchronous mode): the server waits for the graph before the
        // next cycle, so an overloaded test machine causes late cycles, not
        // JACK2's asynchronous-mode overlap of a late client with its
        // upstream's next cycle (which tears buffers inside JACK itself).
        let rt = std::env::var("CAPSTAN_TEST_JACKD_FLAGS").unwrap_or_else(|_| "-R -S".into());
        let mut cmd = Command::new("jackd");
        // SAFETY: pre_exec runs in the forked child before exec; prctl is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        cmd.arg("-n").arg(&name);
        cmd.args(rt.split_whitespace());
        cmd.args(["-d", "dummy", "-r", "48000", "-p", &period.to_string()]);
        let child =
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("jackd (apt-get install jackd2)");
        let server = JackServer { name, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = Command::new("jack_lsp")
                .env("JACK_DEFAULT_SERVER", &server.name)
                .env("JACK_NO_START_SERVER", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return server;
            }
            assert!(Instant::now() < deadline, "jackd {} did not come up", server.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command with this server selected.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("JACK_DEFAULT_SERVER", &self.name).env("JACK_NO_START_SERVER", "1").env("RUST_BACKTRACE", "0");
        c
    }

    pub fn capstan(&self) -> Command {
        self.cmd(CAPSTAN)
    }

    /// Starts the test-signal source `src` with `channels` outputs.
    pub fn source(&self, channels: usize) -> Source {
        let mut child = self
            .cmd(TESTSIG)
            .args(["source", "--name", "src", "--channels", &channels.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "source did not start: {line:?}");
        Source { child, out }
    }

    /// Kills the server with `signal` and waits for it to exit.
    pub fn kill(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
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
}

impl Source {
    /// Stops the source; returns the xruns it saw.
    pub fn stop(mut self) -> u64 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        let _ = self.child.wait();
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
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

/// Checks a recording against the test signal. Without xruns: every frame is
/// the signal at the file's time_reference + index, except silence exactly
/// where capstan reported a gap. With xruns (JACK itself may then hand
/// clients stale or skipped buffers): channels are never torn apart, and
/// breaks in the signal are bounded by the xruns. Returns the frames.
pub fn assert_recording(path: &Path, first_channel: usize, report: &serde_json::Value) -> u64 {
    let v = capstan::testsignal::verify(path, first_channel, 0).unwrap();
    let xruns = report["xruns"].as_u64().unwrap();
    assert_eq!(v.torn, 0, "{}: channels misaligned: {v:?}", path.display());
    let gaps = report["take"]["gaps"].as_array().unwrap();
    let overflow: u64 =
        gaps.iter().filter(|g| g["cause"] == "overflow").map(|g| g["frames"].as_u64().unwrap()).sum();
    assert_eq!(overflow, 0, "capstan's own rings overflowed: {report}");
    assert_eq!(v.time_reference, report["take"]["first_frame_time"].as_u64().unwrap());
    if xruns == 0 {
        assert_eq!(v.mismatched, 0, "{}: frames that are neither signal nor silence: {v:?}", path.display());
        let gaps: Vec<(u64, u64)> =
            gaps.iter().map(|g| (g["at"].as_u64().unwrap(), g["frames"].as_u64().unwrap())).collect();
        let silent: Vec<(u64, u64)> = v.silent.iter().map(|r| (r.at, r.frames)).collect();
        assert_eq!(silent, merge(&gaps), "{}: silence must be exactly the reported gaps", path.display());
    } else {
        eprintln!("{}: {xruns} JACK xruns during the take; continuity check only: {v:?}", path.display());
        assert!(v.discontinuities <= 2 * xruns, "{}: more breaks than xruns: {v:?}", path.display());
    }
    v.frames
}

/// Adjacent gaps form one silent run.
fn merge(gaps: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(at, n) in gaps {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == at => last.1 += n,
            _ => out.push((at, n)),
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
}

impl Daemon {
    pub fn start(server: &JackServer, dir: &Path, extra: &[&str]) -> Daemon {
        let port = free_port();
        // Small test disks: ask for 6 s of free space unless a test says.
        let min = if extra.contains(&"--min-minutes") { &[][..] } else { &["--min-minutes", "0.1"][..] };
        let child = server
            .capstan()
            .args(["daemon", "-q", "--osc-port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(min)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon { child: Some(child), port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while osc(d.port, "/record/status", vec![]).is_none() {
            let c = d.child.as_mut().unwrap();
            if let Ok(Some(status)) = c.try_wait() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err);
                panic!("daemon exited ({status}): {err}");
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

/// Checks a daemon take against the signal; `xruns` from the source.
pub fn assert_take(path: &Path, xruns: u64) -> capstan::testsignal::Verdict {
    let v = capstan::testsignal::verify(path, 0, 0).unwrap();
    assert_eq!(v.torn, 0, "{}: {v:?}", path.display());
    if xruns == 0 {
        assert!(v.is_perfect(), "{}: {v:?}", path.display());
    } else {
        assert!(v.discontinuities <= 2 * xruns, "{}: {xruns} xruns: {v:?}", path.display());
    }
    v
}
