//! `capstan daemon`: one JACK client that stays up across any number of
//! takes, driven over OSC (docs/osc-api.md). Control thread: the OSC socket,
//! the state machine, disk-thread events and signals, in one loop.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rosc::OscType;

use crate::cli::DaemonArgs;
use crate::control::osc::{self, Code, Command, Refusal};
use crate::control::preflight::{self, Limits};
use crate::control::replies::count;
use crate::control::state::{State, StateCell};
use crate::disk::{DiskEvent, SpaceGuard, StopAt, Take, TakeReport, TakeSpec};
use crate::engine::{self, Engine};
use crate::{lock, naming, ports};

/// How far takes trail the newest audio: a stop or rotate that reaches the
/// disk thread within this window still cuts at the exact cycle.
const WRITE_DELAY_S: f64 = 0.2;
/// Longest wait for the disk thread to confirm a start or a stop.
const CONFIRM: Duration = Duration::from_secs(3);
const MAX_SUBSCRIBERS: usize = 64;
/// Messages one datagram (a bundle) may carry: each is answered, so more
/// would let a small datagram draw many replies.
const MAX_MESSAGES: usize = 16;

/// The take being recorded.
struct Current {
    id: String,
    files: Vec<String>,
    first_frame_time: Option<u64>,
}

/// How the daemon is hosted: by `capstan daemon` or inside an NSM session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hosting {
    /// The caller already holds the instance lock (NSM: in the client path).
    pub lock_held: bool,
    /// Start without JACK and connect when it appears (NSM sessions often
    /// start clients before JACK is up).
    pub wait_for_jack: bool,
    /// The JACK client must have exactly `args.name` (NSM's client_id).
    pub exact_name: bool,
    /// If the OSC port is taken, listen on the next free one instead of
    /// failing (NSM: a second capstan in a session must still come up).
    pub osc_fallback: bool,
}

/// Something the session manager's window should show (NSM
/// `/nsm/client/message`): priority 0-3, 3 most important.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub priority: i32,
    pub text: String,
}

/// The long-running recorder: OSC socket, engine and state machine. Control
/// thread only (never real-time).
pub struct Daemon {
    args: DaemonArgs,
    hosting: Hosting,
    socket: UdpSocket,
    engine: Option<Engine>,
    state: StateCell,
    current: Option<Current>,
    /// Clients that sent `/record/subscribe` (and not `/record/unsubscribe`).
    subscribers: HashSet<SocketAddr>,
    /// The last finished take's id and files (for `/record/files`).
    last_files: Option<(String, Vec<String>)>,
    /// Logging of refused and malformed input, at a bounded rate.
    bad_input: crate::control::log_limit::LogLimit,
    /// Why the recorder is in ERROR; `jack` errors clear themselves.
    error: Option<(Code, String)>,
    last_progress: Instant,
    last_jack_try: Instant,
    last_prune: Option<Instant>,
    /// Frames lost so far in the running take, as last reported.
    lost_reported: u64,
    notices: Vec<Notice>,
    /// A setting changed over OSC since the last [`Daemon::take_config_change`].
    config_changed: bool,
    buf: Vec<u8>,
    _lock: Option<lock::DirLock>,
}

fn layout_name(l: crate::disk::Layout) -> &'static str {
    match l {
        crate::disk::Layout::Interleaved => "interleaved",
        crate::disk::Layout::Mono => "mono",
    }
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn s(v: impl Into<String>) -> OscType {
    OscType::String(v.into())
}

/// Binds the OSC socket; with `fallback`, a taken port moves on to the next
/// 20 ports and then to any free one.
pub fn bind_osc(bind: &str, port: u16, fallback: bool) -> Result<UdpSocket> {
    let first = UdpSocket::bind((bind, port));
    let socket = match first {
        Ok(s) => s,
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse && port != 0 => (1..=20u16)
            .filter_map(|k| port.checked_add(k))
            .find_map(|p| UdpSocket::bind((bind, p)).ok())
            .map_or_else(|| UdpSocket::bind((bind, 0)), Ok)
            .with_context(|| format!("cannot listen for OSC on {bind}"))?,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot listen for OSC on {bind}:{port}")))
        }
    };
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(socket)
}

/// `capstan daemon`: runs until SIGINT/SIGTERM.
pub fn run(args: DaemonArgs, _quiet: bool) -> Result<ExitCode> {
    let d = Daemon::open(args, Hosting::default())?;
    let term = crate::signals::stop_flag()?;
    d.serve(&term, |_| {});
    Ok(ExitCode::SUCCESS)
}

impl Daemon {
    /// Creates the take directory, locks it (unless the host did), repairs
    /// interrupted takes, listens for OSC and opens the JACK client.
    pub fn open(args: DaemonArgs, hosting: Hosting) -> Result<Daemon> {
        crate::ports::input_names(args.ports as usize, &args.port_names).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
        let lock = if hosting.lock_held { None } else { Some(lock::acquire(&args.dir)?) };
        // Takes a crash left open are repaired before anything else happens.
        match crate::recover::recover(&args.dir) {
            Ok(report) => {
                for r in report.recovered {
                    tracing::warn!(
                        "recovered an interrupted take: {} ({} frames)",
                        r.manifest.display(),
                        r.frames
                    );
                }
                for f in report.failed {
                    tracing::error!(
                        "could not recover {} (left as it was): {}",
                        f.manifest.display(),
                        f.error
                    );
                }
            }
            Err(e) => tracing::error!("recovery of {} failed: {e:#}", args.dir.display()),
        }
        let socket = bind_osc(&args.osc_bind, args.osc_port, hosting.osc_fallback)?;
        let mut d = Daemon {
            socket,
            hosting,
            engine: None,
            state: StateCell::new(),
            current: None,
            subscribers: HashSet::new(),
            bad_input: Default::default(),
            last_files: None,
            error: None,
            last_progress: Instant::now(),
            last_jack_try: Instant::now(),
            last_prune: None,
            lost_reported: 0,
            notices: Vec::new(),
            config_changed: false,
            buf: vec![0u8; osc::MAX_DATAGRAM + 1],
            _lock: lock,
            args,
        };
        match d.open_engine() {
            Ok(()) => {}
            Err(e) if hosting.wait_for_jack && matches!(e, engine::EngineError::NoServer { .. }) => {
                d.fail(Code::JackGone, format!("{e}; capstan connects as soon as JACK runs"));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            "capstan daemon: {} inputs, takes in {}, OSC on {}",
            d.args.ports,
            d.args.dir.display(),
            d.socket.local_addr()?
        );
        Ok(d)
    }

    /// One turn of the control loop: at most one datagram (waiting up to
    /// 20 ms for it), then background work.
    pub fn step(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) => self.datagram(&buf[..n], from),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => tracing::warn!("OSC receive: {e}"),
        }
        self.buf = buf;
        self.poll();
    }

    /// The control loop until `term` (SIGINT/SIGTERM): a [`Daemon::step`],
    /// then the host's own work, each turn; then [`Daemon::close`].
    pub fn serve(mut self, term: &std::sync::atomic::AtomicBool, mut each_turn: impl FnMut(&mut Daemon)) {
        while !term.load(Relaxed) {
            self.step();
            each_turn(&mut self);
        }
        tracing::info!("signal: finishing");
        self.close();
    }

    /// Finishes any take (files final) and closes the JACK client.
    pub fn close(mut self) {
        if self.state.get() == State::Recording {
            let _ = self.stop(None);
        }
        if let Some(e) = self.engine.take() {
            e.close();
        }
    }

    pub fn args(&self) -> &DaemonArgs {
        &self.args
    }

    pub fn osc_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    /// Seconds recorded in the running take.
    pub fn take_seconds(&self) -> Option<f64> {
        let e = self.engine.as_ref()?;
        matches!(self.state.get(), State::Recording | State::Stopping)
            .then(|| e.disk_stats.frames.load(Relaxed) as f64 / e.sample_rate.max(1) as f64)
    }

    /// What happened since the last call, for the session manager's window.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// True once after a setting was changed over OSC.
    pub fn take_config_change(&mut self) -> bool {
        std::mem::take(&mut self.config_changed)
    }

    fn notice(&mut self, priority: i32, text: String) {
        if self.notices.len() < 64 {
            self.notices.push(Notice { priority, text });
        }
    }

    fn open_engine(&mut self) -> Result<(), engine::EngineError> {
        let client = engine::open_client(&self.args.name, self.hosting.exact_name)?;
        let sources = if self.args.connect.is_empty() {
            Vec::new()
        } else {
            match ports::select_sources(&self.args.connect, &engine::audio_outputs(&client)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{e}; inputs left unconnected");
                    Vec::new()
                }
            }
        };
        let history = self.args.preroll + 1.0;
        let names = crate::ports::input_names(self.args.ports as usize, &self.args.port_names)
            .map_err(|detail| engine::EngineError::Port { port: "input".into(), detail })?;
        let e = Engine::start(
            client,
            &names,
            self.args.format.buffer_seconds,
            history,
            WRITE_DELAY_S,
            Some(SpaceGuard {
                margin_seconds: self.args.disk_margin_seconds,
                min_free_fraction: self.args.min_free_fraction,
            }),
        )?;
        if let Err(err) = e.connect_sources(&sources[..sources.len().min(self.args.ports as usize)]) {
            tracing::warn!("{err}");
        }
        self.engine = Some(e);
        Ok(())
    }

    fn send(&self, to: SocketAddr, datagram: &[u8]) {
        if let Err(e) = self.socket.send_to(datagram, to) {
            tracing::debug!("OSC send to {to}: {e}");
        }
    }

    fn broadcast(&self, datagram: &[u8]) {
        for &to in &self.subscribers {
            self.send(to, datagram);
        }
    }

    fn push_state(&self) {
        let (id, first) = match &self.current {
            Some(c) => (c.id.clone(), c.first_frame_time.unwrap_or(0)),
            None => (String::new(), 0),
        };
        let msg = osc::push(
            "/recording/state",
            vec![s(id), s(self.state.get().name()), count(first), OscType::Double(now_unix())],
        );
        self.broadcast(&msg);
    }

    fn push_error(&self, take: &str, code: Code, text: &str) {
        self.broadcast(&osc::push("/recording/error", vec![s(take), OscType::Int(code as i32), s(text)]));
    }

    /// One datagram: every message in it is answered to its sender.
    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let messages = match osc::decode(data) {
            Ok(m) if m.len() > MAX_MESSAGES => Err(Refusal::new(
                Code::Malformed,
                format!("{} messages in one datagram; at most {MAX_MESSAGES}", m.len()),
            )),
            other => other,
        };
        let messages = match messages {
            Ok(m) => m,
            Err(r) => {
                self.bad_input.warn(from, &r.message);
                self.send(from, &osc::error("", &r));
                return;
            }
        };
        for m in messages {
            let reply = osc::parse(&m).and_then(|cmd| self.command(cmd, from));
            match reply {
                Ok(args) => self.send(from, &osc::reply(&m.addr, args)),
                Err(r) => {
                    self.bad_input.warn(from, &format!("{}: refused: {}", osc::clip(&m.addr, 64), r.message));
                    self.send(from, &osc::error(&m.addr, &r));
                }
            }
        }
    }

    fn command(&mut self, cmd: Command, from: SocketAddr) -> Result<Vec<OscType>, Refusal> {
        match cmd {
            Command::Start { take_id, file } => self.start(take_id, file),
            Command::Stop { take_id } => self.stop(take_id),
            Command::Rotate { take_id, file } => self.rotate(take_id, file),
            Command::Status { .. } => Ok(self.status()),
            Command::List => Ok(self
                .current
                .iter()
                .flat_map(|c| [s(c.id.clone()), s(osc::files_text(&c.files))])
                .collect()),
            Command::Files(offset) => {
                let (id, files) = match (&self.current, &self.last_files) {
                    (Some(c), _) => (&c.id, &c.files),
                    (None, Some((id, files))) => (id, files),
                    (None, None) => return Err(Refusal::new(Code::NotRecording, "no take to list")),
                };
                let total = files.len().min(i32::MAX as usize) as i32;
                let page = osc::files_page(files, offset);
                Ok(vec![
                    s(id.clone()),
                    OscType::Int(total),
                    OscType::Int(offset.min(i32::MAX as usize) as i32),
                    s(page),
                ])
            }
            Command::Reset => self.reset(),
            Command::Subscribe => {
                if self.subscribers.len() >= MAX_SUBSCRIBERS && !self.subscribers.contains(&from) {
                    return Err(Refusal::new(
                        Code::Full,
                        format!(
                            "{MAX_SUBSCRIBERS} clients are subscribed already; /record/unsubscribe one first"
                        ),
                    ));
                }
                self.subscribers.insert(from);
                Ok(vec![s(self.state.get().name())])
            }
            Command::Unsubscribe => {
                self.subscribers.remove(&from);
                Ok(vec![])
            }
            Command::ConfigGet => Ok(self.config_values()),
            Command::ConfigSampleFormat(f) => {
                self.args.format.sample_format = f;
                self.config_changed = true;
                Ok(vec![s(f.to_string())])
            }
            Command::ConfigLayout(l) => {
                self.args.format.layout = l;
                self.config_changed = true;
                Ok(vec![s(layout_name(l))])
            }
            Command::ConfigPorts(n) => {
                // Named inputs beyond the new count are dropped with them.
                let kept = &self.args.port_names[..self.args.port_names.len().min(n as usize)];
                let names =
                    crate::ports::input_names(n as usize, kept).map_err(|e| Refusal::new(Code::Config, e))?;
                self.reconfigure(|a| {
                    a.ports = n;
                    a.port_names.truncate(n as usize);
                })?;
                Ok(vec![OscType::Int(names.len() as i32)])
            }
            Command::ConfigPreroll(p) => {
                self.reconfigure(|a| a.preroll = p)?;
                Ok(vec![OscType::Double(p)])
            }
        }
    }

    /// Every setting, as name/value pairs (`/config/get`).
    fn config_values(&self) -> Vec<OscType> {
        let a = &self.args;
        let names = crate::ports::input_names(a.ports as usize, &a.port_names).unwrap_or_default();
        let port = self.osc_addr().map_or(0, |x| x.port() as i32);
        vec![
            s("ports"),
            OscType::Int(a.ports as i32),
            s("port_names"),
            s(names.join(",")),
            s("sample_format"),
            s(a.format.sample_format.to_string()),
            s("layout"),
            s(layout_name(a.format.layout)),
            s("preroll"),
            OscType::Double(a.preroll),
            s("project"),
            s(a.format.project.clone()),
            s("osc_port"),
            OscType::Int(port),
            s("client"),
            s(self.engine.as_ref().map(|e| e.client().name().to_string()).unwrap_or_default()),
        ]
    }

    /// Changes a setting that shapes the JACK client (ports, pre-roll): only
    /// between takes. The client is re-created with the same name and every
    /// connection of the ports that remain is restored.
    fn reconfigure(&mut self, change: impl FnOnce(&mut DaemonArgs)) -> Result<(), Refusal> {
        if matches!(self.state.get(), State::Starting | State::Recording | State::Stopping) {
            return Err(Refusal::new(Code::Busy, "stop the take first; this setting re-creates the inputs"));
        }
        change(&mut self.args);
        self.config_changed = true;
        let Some(old) = self.engine.take() else {
            return Ok(()); // JACK is away: the setting applies when it is back
        };
        let connections = old.connections();
        old.close();
        if let Err(e) = self.open_engine() {
            self.last_jack_try = Instant::now();
            self.fail(Code::JackGone, format!("re-creating the JACK client failed: {e}"));
            return Err(Refusal::new(Code::JackGone, format!("setting saved, but JACK refused: {e}")));
        }
        let engine = self.engine.as_ref().expect("just opened");
        for (i, sources) in connections.iter().enumerate().take(engine.port_names.len()) {
            let to = engine.input_port_name(i);
            for from in sources {
                if let Err(e) = engine.client().connect_ports_by_name(from, &to) {
                    tracing::debug!("restoring {from} -> {to}: {e:?}");
                }
            }
        }
        tracing::info!("inputs re-created: {} ports, pre-roll {} s", self.args.ports, self.args.preroll);
        Ok(())
    }

    fn busy(&self) -> Refusal {
        match (self.state.get(), &self.current) {
            (State::Error, _) if self.engine.is_none() => Refusal::new(
                Code::ErrorState,
                "recorder is in ERROR: JACK is not running; capstan returns to idle by itself once it is",
            ),
            (State::Error, _) => Refusal::new(
                Code::ErrorState,
                format!(
                    "recorder is in ERROR ({}); send /record/reset",
                    self.error.as_ref().map_or("unknown", |e| e.1.as_str())
                ),
            ),
            (st, Some(c)) => Refusal::new(Code::Busy, format!("take {} is already {st}", c.id)),
            (st, None) => Refusal::new(Code::Busy, format!("recorder is {st}")),
        }
    }

    /// Would a take fit on the disk now (directory, space, free fraction)?
    fn preflight(&self, sample_rate: u32) -> Result<(), String> {
        let a = &self.args;
        let bps = sample_rate as u64 * a.ports as u64 * a.format.sample_format.bytes() as u64;
        let limits =
            Limits { min_minutes: a.min_minutes, reserve: 0.2, min_free_fraction: a.min_free_fraction };
        preflight::check(&a.dir, bps, &limits)
    }

    /// Checks and creates a take's files; nothing is created on refusal.
    fn prepare(&self, take_id: Option<String>, file: Option<String>) -> Result<Take, Refusal> {
        let engine =
            self.engine.as_ref().ok_or_else(|| Refusal::new(Code::JackGone, "JACK is not running"))?;
        if engine.jack.shutdown.load(Relaxed) {
            return Err(Refusal::new(Code::JackGone, "JACK server shut down"));
        }
        let file = match file {
            Some(f) => {
                Some(naming::validate_user_name(&f).map_err(|e| Refusal::new(Code::File, e.to_string()))?)
            }
            None => None,
        };
        self.preflight(engine.sample_rate).map_err(|e| Refusal::new(Code::Preflight, e))?;
        let a = &self.args;
        let project = match &take_id {
            Some(id) => format!("{}_{}", a.format.project, naming::sanitize(id)),
            None => a.format.project.clone(),
        };
        let spec = TakeSpec {
            dir: a.dir.clone(),
            project,
            file,
            layout: a.format.layout,
            format: a.format.sample_format,
            sample_rate: engine.sample_rate,
            port_names: engine.port_names.clone(),
            max_frames: None,
            lead_in_silence: 0,
            take_id: take_id.clone(),
            sources: engine.connections(),
        };
        Take::create(spec, chrono::Local::now()).map_err(|e| Refusal::new(Code::File, e.to_string()))
    }

    fn start(&mut self, take_id: Option<String>, file: Option<String>) -> Result<Vec<OscType>, Refusal> {
        self.state.transition(State::Idle, State::Starting).map_err(|_| self.busy())?;
        let take = match self.prepare(take_id.clone(), file) {
            Ok(t) => t,
            Err(r) => {
                let _ = self.state.transition(State::Starting, State::Idle);
                return Err(r);
            }
        };
        let id = take_id.unwrap_or_else(|| take.name.clone());
        let files: Vec<String> = take.paths().iter().map(|p| p.display().to_string()).collect();
        self.lost_reported = 0;
        let engine = self.engine.as_ref().expect("prepared");
        let at = engine.frame_time();
        engine.start_take(take, Some(at), (self.args.preroll * engine.sample_rate as f64) as u64);
        let _ = self.state.transition(State::Starting, State::Recording);
        self.current = Some(Current { id: id.clone(), files: files.clone(), first_frame_time: None });
        let first = self.await_start()?;
        if let Some(c) = &mut self.current {
            c.first_frame_time = Some(first);
        }
        tracing::info!(take = %id, first_frame_time = first, "recording {}", files.join(", "));
        self.push_state();
        Ok(vec![s(id), count(first), s(osc::files_text(&files))])
    }

    /// Waits for the disk thread's `Started`. The take ending before it
    /// started (an error at its first frame), or no word from the disk
    /// thread, is the start's failure: the recorder is in ERROR and the
    /// command is answered with the reason, never with a success.
    fn await_start(&mut self) -> Result<u64, Refusal> {
        let deadline = Instant::now() + CONFIRM;
        while Instant::now() < deadline {
            let Some(engine) = self.engine.as_ref() else { break };
            match engine.next_event(Duration::from_millis(10)) {
                Some(DiskEvent::Started { first_frame_time, .. }) => return Ok(first_frame_time),
                Some(DiskEvent::Finished(r)) => {
                    let ended = r.error.is_some();
                    self.finished(r);
                    if ended {
                        let (code, text) =
                            self.error.clone().unwrap_or((Code::Write, "the take failed".into()));
                        return Err(Refusal::new(code, text));
                    }
                }
                None => {}
            }
        }
        let text = "the disk thread did not confirm the start".to_string();
        self.fail(Code::Write, text.clone());
        Err(Refusal::new(Code::Write, text))
    }

    /// Waits for the disk thread's `Finished`.
    fn await_finish(&mut self) -> Option<TakeReport> {
        let deadline = Instant::now() + CONFIRM;
        let mut drained = false;
        while Instant::now() < deadline {
            let engine = self.engine.as_ref()?;
            match engine.next_event(Duration::from_millis(10)) {
                Some(DiskEvent::Finished(r)) => return Some(r),
                Some(DiskEvent::Started { .. }) | None => {}
            }
            if !drained && deadline - Instant::now() < CONFIRM / 2 {
                engine.stop_take(StopAt::Drained); // JACK stalled: take what is there
                drained = true;
            }
        }
        None
    }

    fn stop(&mut self, take_id: Option<String>) -> Result<Vec<OscType>, Refusal> {
        let state = self.state.get();
        if state != State::Recording {
            return Err(match state {
                State::Idle => Refusal::new(Code::NotRecording, "no take is running"),
                _ => self.busy(),
            });
        }
        let current = self.current.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        if let Some(id) = take_id.filter(|id| *id != current) {
            return Err(Refusal::new(
                Code::NotRecording,
                format!("no take {id}; the running take is {current}"),
            ));
        }
        self.state.transition(State::Recording, State::Stopping).map_err(|_| self.busy())?;
        self.push_state();
        let engine = self.engine.as_ref().expect("recording");
        engine.stop_take(StopAt::Frame(engine.frame_time()));
        match self.await_finish() {
            Some(r) => {
                let frames = r.frames;
                let secs = r.seconds();
                let files: Vec<String> = r.files.iter().map(|f| f.path.display().to_string()).collect();
                let text = osc::files_text(&files);
                self.last_files = Some((current.clone(), files));
                let error = r.error.clone();
                self.finished(r);
                match error {
                    None => Ok(vec![s(current), count(frames), OscType::Double(secs), s(text)]),
                    Some(e) => Err(Refusal::new(Code::Write, e)),
                }
            }
            None => {
                self.fail(Code::Write, "the disk thread did not confirm the stop".into());
                Err(Refusal::new(Code::Write, "the disk thread did not confirm the stop"))
            }
        }
    }

    fn rotate(&mut self, take_id: Option<String>, file: Option<String>) -> Result<Vec<OscType>, Refusal> {
        if self.state.get() == State::Idle {
            return self.start(take_id, file);
        }
        if self.state.get() != State::Recording {
            return Err(self.busy());
        }
        let next = self.prepare(take_id.clone(), file)?;
        let id = take_id.unwrap_or_else(|| next.name.clone());
        let files: Vec<String> = next.paths().iter().map(|p| p.display().to_string()).collect();
        let engine = self.engine.as_ref().expect("recording");
        engine.rotate_take(next, engine.frame_time());
        let old = self.await_finish();
        let old_id = self.current.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        let Some(old) = old else {
            self.fail(Code::Write, "the disk thread did not confirm the rotation".into());
            return Err(Refusal::new(Code::Write, "the disk thread did not confirm the rotation"));
        };
        let old_frames = old.frames;
        if let Some(e) = old.error.clone() {
            self.finished(old);
            return Err(Refusal::new(Code::Write, e));
        }
        self.current = Some(Current { id: id.clone(), files: files.clone(), first_frame_time: None });
        let first = self.await_start()?;
        if let Some(c) = &mut self.current {
            c.first_frame_time = Some(first);
        }
        self.push_state();
        Ok(vec![s(old_id), count(old_frames), s(id), count(first), s(osc::files_text(&files))])
    }

    fn status(&self) -> Vec<OscType> {
        let (frames, bytes, lost, xruns, rate) = match &self.engine {
            Some(e) => {
                let d = &e.disk_stats;
                (
                    d.frames.load(Relaxed),
                    d.bytes.load(Relaxed),
                    d.overflow_frames.load(Relaxed) + d.skipped_frames.load(Relaxed),
                    e.jack.xruns.load(Relaxed),
                    e.sample_rate,
                )
            }
            None => (0, 0, 0, 0, 48000),
        };
        let recording = matches!(self.state.get(), State::Recording | State::Stopping);
        let (frames, bytes, lost) = if recording { (frames, bytes, lost) } else { (0, 0, 0) };
        let free = preflight::space(&self.args.dir).map_or(0, |s| s.0);
        let id = self.current.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        let err = self.error.as_ref().map(|e| e.1.clone()).unwrap_or_default();
        let (cb, disk) = match &self.engine {
            Some(e) => (e.capture.callback.summary(), e.disk_stats.summary()),
            None => Default::default(),
        };
        vec![
            s(self.state.get().name()),
            s(id),
            OscType::Double(frames as f64 / rate.max(1) as f64),
            count(bytes),
            count(lost),
            OscType::Int(xruns.min(i32::MAX as u64) as i32),
            count(free),
            s(err),
            OscType::Double(cb.p99_us),
            OscType::Double(cb.max_us),
            OscType::Double(disk.ring_high_water_percent),
        ]
    }

    fn reset(&mut self) -> Result<Vec<OscType>, Refusal> {
        match self.state.get() {
            State::Error => {
                if self.engine.is_none() {
                    return Err(Refusal::new(
                        Code::JackGone,
                        "JACK is not running; capstan returns to idle once it is",
                    ));
                }
                self.state.transition(State::Error, State::Idle).map_err(|_| self.busy())?;
                self.error = None;
                self.current = None;
                self.push_state();
                Ok(vec![s("idle")])
            }
            st => Ok(vec![s(st.name())]),
        }
    }

    /// Enters ERROR from wherever we are (all such edges are legal).
    fn fail(&mut self, code: Code, text: String) {
        let st = self.state.get();
        if st != State::Error {
            let _ = self.state.transition(st, State::Error);
        }
        let id = self.current.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        tracing::error!(take = %id, "{text}");
        self.push_error(&id, code, &text);
        self.notice(3, text.clone());
        self.error = Some((code, text));
        self.push_state();
    }

    /// A take ended (by stop, rotation, error or JACK's death).
    fn finished(&mut self, r: TakeReport) {
        let gone = self.engine.as_ref().is_some_and(|e| e.jack.shutdown.load(Relaxed));
        if gone {
            self.fail(
                Code::JackGone,
                format!("JACK server shut down; take {} saved ({} frames)", r.name, r.frames),
            );
        } else if let Some(e) = &r.error {
            let code =
                if r.error_kind.as_deref() == Some("StorageFull") { Code::DiskFull } else { Code::Write };
            self.fail(code, format!("take {} ended: {e}; {} frames saved", r.name, r.frames));
        } else if self.state.get() == State::Stopping {
            let _ = self.state.transition(State::Stopping, State::Idle);
            self.push_state();
            self.current = None;
        }
        if r.segments.len() > 1 {
            let rates: Vec<String> = r.segments.iter().map(|s| s.sample_rate.to_string()).collect();
            self.notice(
                2,
                format!(
                    "take {}: JACK's rate changed during the take; it is in {} segments ({} Hz)",
                    r.name,
                    r.segments.len(),
                    rates.join(" → ")
                ),
            );
        }
        let lost: u64 = r.gaps.iter().map(|g| g.frames).sum();
        if lost > 0 {
            self.notice(
                2,
                format!("take {}: {lost} frames lost in {} gaps (filled with silence)", r.name, r.gaps.len()),
            );
        }
        tracing::info!(take = %r.name, frames = r.frames, "take finished");
    }

    /// Retention at start-up and hourly; never touches the running take
    /// (its manifest says "recording").
    fn prune(&mut self) {
        if self.args.retention.is_empty()
            || self.last_prune.is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        self.last_prune = Some(Instant::now());
        match crate::retention::apply(&self.args.dir, &self.args.retention, false) {
            Ok(lines) => lines.iter().for_each(|l| tracing::info!("retention: {l}")),
            Err(e) => tracing::error!("retention: {e:#}"),
        }
    }

    /// Background work between datagrams.
    fn poll(&mut self) {
        self.prune();
        if let Some(engine) = &self.engine {
            if engine.jack.shutdown.load(Relaxed) {
                if self.state.get() == State::Recording {
                    engine
                        .abort_take("JACK server shut down during the take; it holds everything up to then");
                    if let Some(r) = self.await_finish() {
                        self.finished(r);
                    }
                } else if self.state.get() != State::Error {
                    self.fail(Code::JackGone, "JACK server shut down".into());
                }
                if let Some(e) = self.engine.take() {
                    e.close();
                }
                self.last_jack_try = Instant::now();
            } else if let Some(DiskEvent::Finished(r)) = engine.next_event(Duration::ZERO) {
                self.finished(r);
            }
        } else if self.last_jack_try.elapsed() > Duration::from_secs(2) {
            // Automatic way back from "JACK gone".
            self.last_jack_try = Instant::now();
            if self.open_engine().is_ok() {
                tracing::info!("JACK is back");
                self.notice(1, "JACK is running; capstan is connected".into());
                if self.state.get() == State::Error
                    && self.error.as_ref().is_some_and(|e| e.0 == Code::JackGone)
                {
                    let _ = self.state.transition(State::Error, State::Idle);
                    self.error = None;
                    self.current = None;
                    self.push_state();
                }
            }
        }
        // Automatic way back from "disk full", once a take would fit again.
        if self.state.get() == State::Error
            && self.error.as_ref().is_some_and(|e| e.0 == Code::DiskFull)
            && self.last_jack_try.elapsed() > Duration::from_secs(1)
        {
            self.last_jack_try = Instant::now();
            if let Some(rate) = self.engine.as_ref().map(|e| e.sample_rate) {
                if self.preflight(rate).is_ok() {
                    tracing::info!("disk space is available again");
                    let _ = self.state.transition(State::Error, State::Idle);
                    self.error = None;
                    self.current = None;
                    self.push_state();
                }
            }
        }
        if self.state.get() == State::Recording && self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            if let (Some(e), Some(c)) = (&self.engine, &self.current) {
                let d = &e.disk_stats;
                let lost = d.overflow_frames.load(Relaxed) + d.skipped_frames.load(Relaxed);
                if lost > self.lost_reported {
                    let text = format!("take {}: {lost} frames lost so far (filled with silence)", c.id);
                    self.lost_reported = lost;
                    self.notice(2, text);
                }
                let (e, c) =
                    (self.engine.as_ref().expect("checked"), self.current.as_ref().expect("checked"));
                let secs = e.disk_stats.frames.load(Relaxed) as f64 / e.sample_rate.max(1) as f64;
                let bytes = e.disk_stats.bytes.load(Relaxed);
                let msg = osc::push(
                    "/recording/progress",
                    vec![s(c.id.clone()), OscType::Double(secs), count(bytes)],
                );
                self.broadcast(&msg);
            }
        }
    }
}
