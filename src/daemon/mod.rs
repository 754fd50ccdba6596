//! `capstan daemon`: one JACK client that stays up across any number of
//! takes, driven over OSC (docs/osc-api.md).
//!
//! The control loop never waits on disk work. A command that needs the disk
//! thread (start, stop, rotate) sends it a request and becomes a pending
//! [`takes::Operation`]; the loop goes on reading OSC and the session
//! manager, and the state machine moves when the disk thread's events
//! arrive. Commands that change the recorder wait in a queue meanwhile, so
//! they still run in the order sent. Retention runs on its own thread.
//!
//! - `endpoint`: the OSC socket and subscribers;
//! - `commands`: what each command does and what it answers;
//! - `takes`: the take factory and the take operations;
//! - `housekeeping`: retention;
//! - this file: the loop, the engine's lifetime and the way back from ERROR.

mod alarms;
mod commands;
mod endpoint;
mod housekeeping;
mod takes;
mod timed;
mod triggers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use rosc::OscType;

use crate::control::osc::{self, Code, Command, Refusal};
use crate::control::recorder::{Effect, Input, Recorder};
use crate::control::replies::count;
use crate::control::state::State;
use crate::disk::SpaceGuard;
use crate::disk::Take;
use crate::engine::{self, Engine};
use crate::{lock, ports, web};
use std::sync::Arc;

pub use endpoint::bind_osc;
use endpoint::{Endpoint, Requester};

/// How far takes trail the newest audio: a stop or rotate that reaches the
/// disk thread within this window still cuts at the exact cycle.
const WRITE_DELAY_S: f64 = 0.2;
/// How long the loop waits for a datagram: short while the disk thread
/// owes an answer (it is polled between datagrams).
const IDLE_WAIT: Duration = Duration::from_millis(20);
const BUSY_WAIT: Duration = Duration::from_millis(2);
/// Closing (SIGTERM, NSM's quit) ends the process within this, files final
/// where the disk keeps up; a disk that is behind ends the take where it
/// got to (said in its manifest), one that hangs is left to `recover`.
const CLOSE_BUDGET: Duration = Duration::from_millis(1500);
/// Of it, the longest closing waits for the take's stop to be confirmed.
const CLOSE_STOP_WAIT: Duration = Duration::from_millis(400);
/// A disk more than this far behind (seconds of audio it has not taken in)
/// cannot reach the stop within that wait: closing does not wait for it.
const CLOSE_BEHIND_S: f64 = 0.5;

/// How the daemon is hosted: by `capstan daemon` or inside an NSM session.
#[derive(Debug, Clone, Default)]
pub struct Hosting {
    /// The caller already holds the instance lock (NSM: in the client path).
    pub lock_held: bool,
    /// Start without JACK and connect when it appears (NSM sessions often
    /// start clients before JACK is up).
    pub wait_for_jack: bool,
    /// The JACK client must have exactly `args.name` (NSM's client_id).
    pub exact_name: bool,
    /// If the OSC port is taken, listen on another free one instead of
    /// failing (NSM: a second capstan in a session must still come up)…
    pub osc_fallback: bool,
    /// …but never on one of these (other capstans of the session saved
    /// them, and will want them).
    pub avoid_ports: Vec<u16>,
    /// The NSM session's name (the files' iXML TAPE).
    pub session: Option<String>,
}

/// Something the session manager's window should show (NSM
/// `/nsm/client/message`): priority 0-3, 3 most important.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub priority: i32,
    pub text: String,
}

/// The long-running recorder: OSC endpoint, engine and state machine.
/// Control thread only (never real-time).
pub struct Daemon {
    args: DaemonArgs,
    hosting: Hosting,
    osc: Endpoint,
    engine: Option<Engine>,
    /// The state machine; this daemon carries out its effects.
    recorder: Recorder<Requester>,
    /// Commands that arrived while the disk thread owed the recorder an
    /// answer, in order.
    queued: VecDeque<(Requester, Command)>,
    retention: housekeeping::Retention,
    /// The off-site thread (`--offsite`).
    offsite: Option<crate::offsite::Worker>,
    last_progress: Instant,
    last_jack_try: Instant,
    /// An engine was opened before (the start-up checks are behind us).
    engine_opened_once: bool,
    /// The process callback died (a panic): the engine is closed and
    /// reopened like after JACK's death.
    callback_dead: bool,
    /// The disk thread died (a panic): the same way back, and the take it
    /// left open is recovered once the engine is closed.
    disk_dead: bool,
    /// Frames lost so far in the running take, as last reported.
    lost_reported: u64,
    notices: Vec<Notice>,
    /// A setting changed over OSC since the last [`Daemon::take_config_change`].
    config_changed: bool,
    /// The clock boundary (`--rotate-every`) the running take was last
    /// rotated at, or is being rotated at.
    clock_boundary: Option<SystemTime>,
    /// Commands timetagged for later, soonest first.
    timed: Vec<timed::Timed>,
    /// Markers sent to the disk thread, answered once it has saved them.
    unsaved_marks: VecDeque<takes::UnsavedMark>,
    /// Triggers act (`/trigger/arm`); on when one is configured.
    armed: bool,
    /// Trigger changes not yet acted on.
    trigger_events: VecDeque<triggers::TriggerEvent>,
    /// The running take was started by sound (so silence ends it).
    level_take: bool,
    /// The JACK frame a post-roll ends before.
    post_roll_stop: Option<u64>,
    /// What starts the next take created, and what ends the running one
    /// (for their manifests).
    next_cause: Option<String>,
    ended_by: Option<String>,
    /// When the next take created starts, if not now (a clock boundary).
    next_take_time: Option<SystemTime>,
    /// Who gets `/recording/meters`, how often, and when they last did.
    meter_subs: Vec<(SocketAddr, Duration, Instant)>,
    /// What the web page shows, published each turn.
    board: Arc<web::Board>,
    web: Option<web::WebServer>,
    /// Free space, as last looked at (once a second), if known.
    free_bytes: (Instant, Option<u64>),
    /// The alarm machine, when it last looked, and the start of its clock.
    alarms: crate::control::alarms::Alarms,
    alarm_check: Instant,
    epoch: Instant,
    /// New subscribers, told the raised alarms after their answer.
    alarm_catch_up: Vec<SocketAddr>,
    /// The take the alarms were last noted in.
    alarm_take: Option<String>,
    _lock: Option<lock::DirLock>,
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `capstan daemon`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// JACK client name.
    #[arg(long, default_value = "capstan")]
    pub name: String,
    /// Directory for the takes (created if missing; locked against a second
    /// capstan).
    #[arg(long, default_value = ".")]
    pub dir: std::path::PathBuf,
    #[command(flatten)]
    pub settings: crate::settings::Settings,
}

impl Default for DaemonArgs {
    /// What `capstan daemon` runs with when no flag is given.
    fn default() -> Self {
        DaemonArgs {
            name: "capstan".into(),
            dir: std::path::PathBuf::from("."),
            settings: Default::default(),
        }
    }
}

fn s(v: impl Into<String>) -> OscType {
    OscType::String(v.into())
}

/// `capstan daemon`: runs until SIGINT/SIGTERM.
pub fn run(args: DaemonArgs, _quiet: bool) -> Result<ExitCode> {
    args.settings.validate_command_line().map_err(anyhow::Error::msg)?;
    crate::wav::use_direct_io(!args.settings.format.buffered_io);
    let d = Daemon::open(args, Hosting::default())?;
    let term = crate::signals::stop_flag()?;
    d.serve(&term, |_| {});
    Ok(ExitCode::SUCCESS)
}

impl Daemon {
    /// Creates the take directory, locks it (unless the host did), repairs
    /// interrupted takes, listens for OSC and opens the JACK client.
    pub fn open(args: DaemonArgs, hosting: Hosting) -> Result<Daemon> {
        args.settings.validate().map_err(anyhow::Error::msg)?;
        // The OSC port first: a busy port is said before anything is made.
        let socket = bind_osc(
            &args.settings.osc_bind,
            args.settings.osc_port,
            hosting.osc_fallback,
            &hosting.avoid_ports,
        )?;
        // Made (directory, lock file) only now, and removed again if the
        // start fails before it is used.
        let lock = if hosting.lock_held {
            lock::make_dir(&args.dir)?; // the host's lock covers it
            None
        } else {
            Some(lock::Claim::acquire(&args.dir)?)
        };
        check_storage_dirs(&args.dir, &args.settings)?;
        // Takes a crash left open are repaired before anything else happens.
        recover_takes(&args.dir);
        let mut d = Daemon {
            osc: Endpoint::new(socket),
            hosting,
            engine: None,
            recorder: Recorder::new(),
            queued: VecDeque::new(),
            retention: Default::default(),
            offsite: None,
            last_progress: Instant::now(),
            last_jack_try: Instant::now(),
            callback_dead: false,
            disk_dead: false,
            engine_opened_once: false,
            lost_reported: 0,
            notices: Vec::new(),
            config_changed: false,
            clock_boundary: None,
            timed: Vec::new(),
            unsaved_marks: VecDeque::new(),
            armed: args.settings.trigger.is_some(),
            trigger_events: VecDeque::new(),
            level_take: false,
            post_roll_stop: None,
            next_cause: None,
            ended_by: None,
            next_take_time: None,
            meter_subs: Vec::new(),
            board: Arc::default(),
            web: None,
            free_bytes: (Instant::now() - Duration::from_secs(10), None),
            alarms: crate::control::alarms::Alarms::new(args.settings.alarms.thresholds()),
            alarm_check: Instant::now(),
            epoch: Instant::now(),
            alarm_catch_up: Vec::new(),
            alarm_take: None,
            _lock: None,
            args,
        };
        d.offsite = crate::offsite::Worker::spawn(d.args.dir.clone(), &d.args.settings.offsite)
            .map_err(|e| anyhow::anyhow!("--offsite: {e}"))?;
        match d.open_engine() {
            Ok(()) => {}
            Err(e) if d.hosting.wait_for_jack && matches!(e, engine::EngineError::NoServer { .. }) => {
                d.feed(Input::Fail {
                    code: Code::JackGone,
                    text: format!("{e}; capstan connects as soon as JACK runs"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        d.start_web();
        tracing::info!(
            "capstan daemon: {} inputs, takes in {}, OSC on {}, web page {}",
            d.args.settings.ports,
            d.args.dir.display(),
            d.osc_addr().map(|a| a.to_string()).unwrap_or_default(),
            d.web.as_ref().map_or_else(|| "off".to_string(), |w| w.url())
        );
        d._lock = lock.map(lock::Claim::keep);
        Ok(d)
    }

    /// One turn of the control loop: at most one datagram (waiting up to
    /// 20 ms for it, 2 ms while the disk thread owes an answer), the disk
    /// thread's events, then background work. Never waits on the disk.
    pub fn step(&mut self) {
        let busy = self.recorder.waiting() || !self.unsaved_marks.is_empty();
        let wait = if busy { BUSY_WAIT } else { IDLE_WAIT };
        if let Some((from, messages)) = self.osc.receive(wait) {
            for (m, when) in messages {
                self.message(m, from, when);
            }
        }
        self.disk_events();
        self.feed_progress();
        self.feed(Input::Tick);
        self.check_marks();
        self.poll();
        self.watch_alarms();
        self.publish();
        self.push_meters();
    }

    /// While a take stops, how far the disk thread has written it and how
    /// far JACK has delivered: a stop the disk is behind on is answered
    /// without waiting for it.
    fn feed_progress(&mut self) {
        if self.recorder.state() != State::Stopping {
            return;
        }
        let Some(e) = &self.engine else { return };
        let (written, rate, captured_to) =
            (e.disk_stats.frames.load(Relaxed), e.sample_rate, e.captured_to());
        self.feed(Input::Progress { written, rate, captured_to });
    }

    /// `/record/meters RATE` from `from`: its feed at that rate (0: off). At
    /// most 16 feeds; a new one beyond drops the oldest.
    fn meter_feed(&mut self, from: SocketAddr, rate: u32) {
        self.meter_subs.retain(|s| s.0 != from);
        if rate > 0 {
            if self.meter_subs.len() >= 16 {
                self.meter_subs.remove(0);
            }
            let every = Duration::from_secs_f64(1.0 / rate as f64);
            self.meter_subs.push((from, every, Instant::now() - every));
        }
    }

    /// `/recording/meters` to each feed that is due: every input's peak in
    /// dBFS and whether it clipped.
    fn push_meters(&mut self) {
        let now = Instant::now();
        if !self.meter_subs.iter().any(|s| now >= s.2 + s.1) {
            return;
        }
        let Some(e) = &self.engine else { return };
        let levels = e.disk_stats.levels.snapshot();
        let mut args: Vec<OscType> =
            levels.inputs.iter().map(|l| OscType::Float(l.peak_dbfs() as f32)).collect();
        args.push(s(levels.inputs.iter().map(|l| if l.clipped { '1' } else { '0' }).collect::<String>()));
        let msg = osc::push(osc::METERS_PUSH, args);
        for i in 0..self.meter_subs.len() {
            let (to, every, last) = self.meter_subs[i];
            if now >= last + every {
                self.meter_subs[i].2 = now;
                self.osc.send(to, &msg);
            }
        }
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

    /// Finishes any take (files final, waiting at most a few seconds for
    /// the disk thread) and closes the JACK client. A retention run in
    /// progress is left to the process's end: it is safe to interrupt.
    pub fn close(mut self) {
        let t = Instant::now();
        if !self.recorder.waiting() && self.recorder.state() == State::Recording {
            let _ = self.stop(None, None, None);
        }
        // The stop, if the disk keeps up; a disk that is behind ends the
        // take where it got to, within the budget, and gets all of it.
        let deadline = t + CLOSE_STOP_WAIT;
        let behind = |d: &Self| d.engine.as_ref().is_some_and(|e| e.behind_seconds() > CLOSE_BEHIND_S);
        while self.recorder.waiting() && Instant::now() < deadline && !behind(&self) {
            if let Some(ev) = self.engine.as_ref().and_then(|e| e.next_event(Duration::from_millis(10))) {
                self.disk_event(ev);
            }
            self.feed_progress();
            self.feed(Input::Tick);
        }
        if let Some(e) = self.engine.take() {
            for ev in e.close_within(CLOSE_BUDGET.saturating_sub(t.elapsed())) {
                self.disk_event(ev);
            }
        }
    }

    pub fn args(&self) -> &DaemonArgs {
        &self.args
    }

    /// The web page's address, if it is served.
    pub fn web_url(&self) -> Option<String> {
        self.web.as_ref().map(|w| w.url())
    }

    /// The web page's port, if it is served.
    pub fn web_port(&self) -> Option<u16> {
        self.web.as_ref().map(|w| w.addr().port())
    }

    /// Serves the web page (`--no-http`: not); a page that cannot be
    /// served is said, and the recorder runs on without it.
    fn start_web(&mut self) {
        let s = &self.args.settings;
        if s.no_http {
            return;
        }
        let Some(osc) = self.osc_addr() else { return };
        match web::WebServer::start(&s.http_bind, s.http_port, self.board.clone(), osc, self.args.dir.clone())
        {
            Ok(w) => {
                if !w.addr().ip().is_loopback() {
                    tracing::warn!(
                        "the web page is open to the network at {}; commands need its token",
                        w.url()
                    );
                }
                self.web = Some(w);
            }
            Err(e) => {
                let text = format!("no web page: cannot listen on {}:{}: {e}", s.http_bind, s.http_port);
                tracing::error!("{text}");
                self.notice(2, text);
            }
        }
    }

    /// What the web page shows: the state, the take, every input's level.
    fn publish(&mut self) {
        if self.web.is_none() {
            return;
        }
        self.seconds_left();
        let bytes_per_second = self.bytes_per_second();
        let alarms = self.alarm_views();
        let s = &self.args.settings;
        let taking = matches!(self.recorder.state(), State::Recording | State::Stopping);
        let mut status = web::Status {
            state: self.recorder.state().name().into(),
            take: self.recorder.current().map(|c| c.id.clone()).unwrap_or_default(),
            error: self.recorder.error().map(|e| e.1.to_string()).unwrap_or_default(),
            trigger: match s.trigger {
                Some(crate::vocab::Trigger::Transport) => "transport".into(),
                Some(crate::vocab::Trigger::Level) => "level".into(),
                None => String::new(),
            },
            armed: self.armed,
            free_bytes: self.free_bytes.1.unwrap_or(0),
            bytes_per_second,
            alarms,
            osc_port: self.osc_addr().map_or(0, |a| a.port()),
            ..Default::default()
        };
        if let Some(e) = &self.engine {
            let d = &e.disk_stats;
            status.sample_rate = e.sample_rate;
            status.ring_fill_percent = e.ring_fill() * 100.0;
            status.disk_behind_seconds = e.behind_seconds();
            status.xruns = e.jack.xruns.load(Relaxed);
            status.client = e.client().name().to_string();
            if taking {
                status.take_seconds = d.frames.load(Relaxed) as f64 / e.sample_rate.max(1) as f64;
                status.take_bytes = d.bytes.load(Relaxed);
                status.lost_frames = d.lost_frames();
            }
            self.board.set_levels(&e.port_names, d.levels.snapshot());
        }
        self.board.set_status(status);
    }

    pub fn osc_addr(&self) -> Option<SocketAddr> {
        self.osc.local_addr()
    }

    pub fn state(&self) -> State {
        self.recorder.state()
    }

    /// Seconds recorded in the running take.
    pub fn take_seconds(&self) -> Option<f64> {
        let e = self.engine.as_ref()?;
        matches!(self.recorder.state(), State::Recording | State::Stopping)
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
        let sources = if self.args.settings.connect.is_empty() {
            Vec::new()
        } else {
            match ports::select_sources(&self.args.settings.connect, &engine::audio_outputs(&client)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{e}; inputs left unconnected");
                    Vec::new()
                }
            }
        };
        let inputs = self.args.settings.ports as usize;
        if sources.len() > inputs {
            let e = ports::SelectError::TooMany { matched: sources.len(), ports: inputs };
            // At a command-line start a mistake to say (as `record` does);
            // later (JACK back, fewer inputs set over OSC), or in a session
            // (which must open whatever hardware is plugged in now, and
            // shows the warning in the manager's window), the first inputs'
            // worth.
            if self.engine_opened_once || self.hosting.lock_held {
                tracing::warn!("{e}; the first {inputs} are connected");
                self.notice(2, format!("{e}; the first {inputs} are connected"));
            } else {
                return Err(e.into());
            }
        }
        let history = self.args.settings.effective_preroll() + 1.0;
        let names =
            crate::ports::input_names(self.args.settings.ports as usize, &self.args.settings.port_names)
                .map_err(|detail| engine::EngineError::Port { port: "input".into(), detail })?;
        let e = Engine::start(
            client,
            &names,
            self.args.settings.format.buffer_seconds,
            history,
            WRITE_DELAY_S,
            Some(SpaceGuard {
                margin_seconds: self.args.settings.disk_margin_seconds,
                min_free_fraction: self.args.settings.min_free_fraction,
            }),
            self.args.settings.midi,
        )?;
        if let Err(err) = e.connect_sources(&sources[..sources.len().min(self.args.settings.ports as usize)])
        {
            tracing::warn!("{err}");
        }
        self.engine = Some(e);
        self.engine_opened_once = true;
        self.callback_dead = false;
        self.disk_dead = false;
        self.listen_for_sound();
        Ok(())
    }

    /// An event for the recorder; its effects are carried out.
    fn feed(&mut self, input: Input<Requester, Take>) {
        let _ = self.feed_command(input);
    }

    /// A command for the recorder: refused (nothing changed), or its
    /// effects are carried out.
    fn feed_command(&mut self, input: Input<Requester, Take>) -> Result<(), Refusal> {
        let effects = self.recorder.on(input, Instant::now())?;
        for e in effects {
            self.carry_out(e);
        }
        // Commands that waited for the disk thread run now, in order.
        while !self.recorder.waiting() {
            let Some((to, cmd)) = self.queued.pop_front() else { break };
            self.run_command(to, cmd);
        }
        Ok(())
    }

    fn carry_out(&mut self, effect: Effect<Requester, Take>) {
        match effect {
            Effect::Answer(Some(to), answer) => self.osc.answer(&to, answer),
            Effect::Answer(None, _) => {}
            Effect::PushState { take, state, first_frame_time } => {
                let msg = osc::push(
                    "/recording/state",
                    vec![s(take), s(state.name()), count(first_frame_time), OscType::Double(now_unix())],
                );
                self.osc.broadcast(&msg);
            }
            Effect::PushError { take, code, text } => {
                let msg = osc::push("/recording/error", vec![s(take), OscType::Int(code as i32), s(text)]);
                self.osc.broadcast(&msg);
            }
            Effect::Notice(priority, text) => self.notice(priority, text),
            Effect::StartTake(take, at) => {
                let engine = self.engine.as_ref().expect("a take is prepared only with an engine");
                let preroll = (self.args.settings.effective_preroll() * engine.sample_rate as f64) as u64;
                engine.start_take(take, at, preroll);
            }
            Effect::RotateTake(take, at) => {
                self.engine.as_ref().expect("a take is prepared only with an engine").rotate_take(take, at)
            }
            Effect::StopTake(at) => {
                if let Some(e) = &self.engine {
                    e.stop_take(at);
                }
            }
            Effect::AbortTake(why) => {
                if let Some(e) = &self.engine {
                    e.abort_take(&why);
                }
            }
            Effect::CloseEngine => {
                if let Some(e) = self.engine.take() {
                    for ev in e.close() {
                        self.disk_event(ev);
                    }
                }
                if self.disk_dead {
                    // The take the dead thread left open, finalized from
                    // its last checkpoint (as at the next start).
                    recover_takes(&self.args.dir);
                }
                self.last_jack_try = Instant::now();
            }
        }
    }

    /// Background work between datagrams: JACK's death and return, the way
    /// back from a full disk, progress pushes and retention.
    fn poll(&mut self) {
        let s = &self.args.settings;
        let others: Vec<_> =
            s.mirror.iter().chain(&s.spill).chain(s.mirror_as.iter().map(|m| &m.dir)).cloned().collect();
        self.retention.tick(&self.args.dir, &others, &s.retention, &s.lifecycle, s.offsite.url.as_deref());
        self.run_timed();
        self.rotate_on_clock();
        self.follow_triggers();
        if let Some(e) = &self.engine {
            if e.capture.callback_died.load(Relaxed) && !self.callback_dead {
                tracing::error!(
                    "the JACK process callback panicked and JACK no longer calls it; the take ends with \
                     what arrived and the client is reopened"
                );
                self.callback_dead = true;
            }
            if e.disk_died() && !self.disk_dead {
                tracing::error!(
                    "the disk thread stopped (it panicked): nothing writes the take; it is recovered from \
                     its last checkpoint and the client is reopened"
                );
                self.disk_dead = true;
            }
        }
        let gone = self
            .engine
            .as_ref()
            .is_some_and(|e| e.jack.shutdown.load(Relaxed) || self.callback_dead || self.disk_dead);
        if gone {
            self.jack_gone();
        } else if self.engine.is_none() && self.last_jack_try.elapsed() > Duration::from_secs(2) {
            // Automatic way back from "JACK gone".
            self.last_jack_try = Instant::now();
            if self.open_engine().is_ok() {
                tracing::info!("JACK is back");
                self.notice(1, "JACK is running; capstan is connected".into());
                self.feed(Input::JackBack);
            }
        }
        // Automatic way back from "disk full", once a take would fit again.
        if self.recorder.error().is_some_and(|e| e.0 == Code::DiskFull)
            && !self.recorder.waiting()
            && self.last_jack_try.elapsed() > Duration::from_secs(1)
        {
            self.last_jack_try = Instant::now();
            if let Some(rate) = self.engine.as_ref().map(|e| e.sample_rate) {
                if self.start_dir(rate).is_ok() {
                    tracing::info!("disk space is available again");
                    self.feed(Input::SpaceBack);
                }
            }
        }
        if self.recorder.state() == State::Recording && self.last_progress.elapsed() >= Duration::from_secs(1)
        {
            self.last_progress = Instant::now();
            self.progress();
        }
    }

    fn progress(&mut self) {
        let (Some(e), Some(c)) = (&self.engine, self.recorder.current()) else { return };
        let d = &e.disk_stats;
        let lost = d.lost_frames();
        let secs = d.frames.load(Relaxed) as f64 / e.sample_rate.max(1) as f64;
        let msg = osc::push(
            "/recording/progress",
            vec![s(c.id.clone()), OscType::Double(secs), count(d.bytes.load(Relaxed))],
        );
        let text = format!("take {}: {lost} frames lost so far (filled with silence)", c.id);
        self.osc.broadcast(&msg);
        if lost > self.lost_reported {
            self.lost_reported = lost;
            self.notice(2, text);
        }
    }

    /// JACK shut down: the running take ends with what arrived (its
    /// manifest says why); the engine closes once the take is final.
    fn jack_gone(&mut self) {
        let what = if self.disk_dead {
            "the disk thread stopped"
        } else if self.callback_dead {
            "the JACK process callback stopped running"
        } else {
            "JACK server shut down"
        };
        self.feed(Input::JackGone { what });
    }
}

/// Finalizes the takes in `dir` that were left open (by a crash, or by a
/// disk thread that died), and logs what it did.
/// The copies', spill and tier directories: made if missing, never the
/// takes' own nor inside or above it; their takes a crash left open are
/// repaired.
fn check_storage_dirs(dir: &std::path::Path, settings: &crate::settings::Settings) -> anyhow::Result<()> {
    let own = std::fs::canonicalize(dir)?;
    let copies = settings.mirror.iter().map(|m| ("--mirror", m.as_path()));
    let copies = copies.chain(settings.mirror_as.iter().map(|m| ("--mirror-as", m.dir.as_path())));
    let spills = settings.spill.iter().map(|m| ("--spill", m.as_path()));
    let tiers = settings.lifecycle.dirs().map(|m| ("--tier", m));
    for (flag, m) in copies.chain(spills).chain(tiers) {
        lock::make_dir(m)?;
        let c = std::fs::canonicalize(m)?;
        if c.starts_with(&own) || own.starts_with(&c) {
            anyhow::bail!(
                "{flag} {}: must be another directory than the takes' ({}), not inside or above it",
                m.display(),
                dir.display()
            );
        }
        recover_takes(m);
    }
    Ok(())
}

fn recover_takes(dir: &std::path::Path) {
    match crate::recover::recover(dir) {
        Ok(report) => {
            for r in report.recovered {
                if r.removed {
                    tracing::warn!("removed a take that never began: {}", r.manifest.display());
                    continue;
                }
                tracing::warn!(
                    "recovered an interrupted take: {} ({} frames)",
                    r.manifest.display(),
                    r.frames
                );
            }
            for f in report.failed {
                tracing::error!("could not recover {} (left as it was): {}", f.manifest.display(), f.error);
            }
        }
        Err(e) => tracing::error!("recovery of {} failed: {e:#}", dir.display()),
    }
}
