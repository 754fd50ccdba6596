//! The recording engine: one JACK client whose input ports feed the real-time
//! capture, the rings and the disk thread. Control thread API; nothing here
//! runs in the process callback except what [`crate::rt`] provides.

use nix::sys::mman::MlockAllFlags;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::disk::{self, DiskCommand, DiskEvent, DiskStats, DiskWriter, StopAt, Take};
use crate::rings;
use crate::rt::midi::MidiEvent;
use crate::rt::{Capture, CaptureCounters, JackCapture};

/// JACK's name for 32-bit float audio ports.
pub const AUDIO_TYPE: &str = "32 bit float mono audio";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot connect to JACK server {server:?}: is it running? ({detail}). \
         Start one (e.g. `jackd -d dummy -r 48000`) or set JACK_DEFAULT_SERVER"
    )]
    NoServer { server: String, detail: String },
    #[error("JACK refused client name {name:?} ({detail})")]
    ClientName { name: String, detail: String },
    #[error("cannot register input port {port:?}: {detail}")]
    Port { port: String, detail: String },
    #[error("cannot connect {from} -> {to}: {detail}")]
    Connect { from: String, to: String, detail: String },
    #[error("cannot activate the JACK client: {0}")]
    Activate(String),
    #[error("cannot start the disk thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot allocate {mib} MiB for the rings of {ports} inputs: {source} (fewer inputs, a shorter --buffer-seconds or --preroll need less)")]
    Rings { ports: usize, mib: usize, source: std::io::Error },
    #[error(transparent)]
    Sources(#[from] crate::ports::SelectError),
}

/// What JACK's notification thread tells us. Atomics only: the notification
/// handler must not block the server.
#[derive(Debug, Default)]
pub struct JackEvents {
    pub xruns: Arc<AtomicU64>,
    pub shutdown: AtomicBool,
}

struct Notifications(Arc<JackEvents>);

impl jack::NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        self.0.shutdown.store(true, Relaxed);
    }

    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.0.xruns.fetch_add(1, Relaxed);
        jack::Control::Continue
    }
}

/// The server's name as the user sees it.
pub fn server_name() -> String {
    std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into())
}

/// Opens a JACK client without starting a server. `exact`: fail instead of
/// letting JACK rename the client (NSM needs the exact client id).
pub fn open_client(name: &str, exact: bool) -> Result<jack::Client, EngineError> {
    let opts = || {
        let mut o = jack::ClientOptions::NO_START_SERVER;
        if exact {
            o |= jack::ClientOptions::USE_EXACT_NAME;
        }
        o
    };
    // SERVER_ERROR (as opposed to SERVER_FAILED: no server at all) is a
    // failed exchange with a server that exists, e.g. one still starting up;
    // it is worth a few quick retries. No server fails at once.
    let mut attempt = 0;
    let result = loop {
        let r = jack::Client::new(name, opts());
        match &r {
            Err(e) if attempt < 5 && format!("{e:?}").contains("SERVER_ERROR") => {
                attempt += 1;
                tracing::debug!("JACK: {e:?}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            _ => break r,
        }
    };
    match result {
        Ok((client, _status)) => Ok(client),
        Err(e) => {
            let detail = format!("{e:?}");
            if exact && !detail.contains("SERVER_FAILED") && !detail.contains("LibraryError") {
                Err(EngineError::ClientName { name: name.into(), detail })
            } else {
                Err(EngineError::NoServer { server: server_name(), detail })
            }
        }
    }
}

/// Every audio output port in the graph.
pub fn audio_outputs(client: &jack::Client) -> Vec<String> {
    client.ports(None, Some(AUDIO_TYPE), jack::PortFlags::IS_OUTPUT)
}

/// JACK's clock (µs), client-independent.
fn jack_now() -> u64 {
    // SAFETY: jack_get_time takes no arguments and only reads JACK's clock;
    // libjack is loaded (this process has a client open).
    unsafe { jack::jack_sys::jack_get_time() }
}

/// A running engine.
pub struct Engine {
    client: jack::AsyncClient<Notifications, JackCapture>,
    commands: Sender<DiskCommand>,
    events: Receiver<DiskEvent>,
    disk: Option<JoinHandle<()>>,
    pub jack: Arc<JackEvents>,
    pub capture: Arc<CaptureCounters>,
    pub disk_stats: Arc<DiskStats>,
    /// Short names of our input ports (`in_1` … unless configured).
    pub port_names: Vec<String>,
    pub sample_rate: u32,
    pub buffer_size: u32,
    /// The rings' room beyond the history they keep: what the disk thread
    /// may fall behind by before frames are lost.
    pub ring_slack: u64,
    /// MIDI control commands from the callback (`--midi`).
    midi_events: Option<ringbuf::HeapCons<MidiEvent>>,
}

/// How long closing waits for the disk thread to finish the running take
/// (finalizing a take of 1,024 mono files takes seconds on a busy disk).
const DISK_QUIT_WAIT: Duration = Duration::from_secs(10);

/// The least time closing gives JACK to answer the client's deactivation.
const DEACTIVATE_WAIT: Duration = Duration::from_millis(300);

/// Deactivates `client` on a thread of its own, waiting at most `wait`;
/// returns whether the server answered in time. A server that does not
/// answer must not keep the process from ending: seen with JACK2 under the
/// stress bed (its clients and itself stopped and continued at random),
/// where `jack_deactivate` waited for the server's reply for good (issue
/// 26). The server drops the client when the process ends (its socket
/// closes). The test tools close their clients with it too.
pub fn deactivate_within<N, P>(client: jack::AsyncClient<N, P>, wait: Duration) -> std::io::Result<bool>
where
    jack::AsyncClient<N, P>: Send + 'static,
{
    let (done, answered) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("capstan-jack-close".into()).spawn(move || {
        if let Err(e) = client.deactivate() {
            tracing::warn!("JACK deactivate: {e:?}");
        }
        let _ = done.send(());
    })?;
    Ok(answered.recv_timeout(wait).is_ok())
}

/// JACK refused a port. JACK says no more than that; the usual reason is
/// its port limit (jackd's `--port-max`, 2048 by default in JACK2, for all
/// clients together), so the message counts the ports JACK holds and says
/// how to raise it.
fn port_refused(client: &jack::Client, name: &str, e: jack::Error) -> EngineError {
    let held = client.ports(None, None, jack::PortFlags::empty()).len();
    EngineError::Port {
        port: name.to_owned(),
        detail: format!(
            "{e:?}. JACK holds {held} ports now: its port limit (for all clients together) was \
             probably reached; raise it with jackd's --port-max (e.g. jackd --port-max 4096 -d …), \
             or record fewer inputs"
        ),
    }
}

impl Engine {
    /// Registers one input per name in `port_names`, allocates `buffer_seconds` of ring per port,
    /// starts the disk thread (keeping `history_seconds` of audio in memory
    /// for pre-roll, with takes trailing the newest audio by `delay_seconds`
    /// so late stop/rotate commands still cut exactly) and activates the
    /// client.
    pub fn start(
        client: jack::Client,
        port_names: &[String],
        buffer_seconds: f64,
        history_seconds: f64,
        delay_seconds: f64,
        space: Option<disk::SpaceGuard>,
        midi: bool,
    ) -> Result<Engine, EngineError> {
        let sample_rate = client.sample_rate();
        let buffer_size = client.buffer_size();
        let ports = port_names.len();
        let mut jack_ports = Vec::with_capacity(ports);
        for name in port_names {
            let p = client
                .register_port(name, jack::AudioIn::default())
                .map_err(|e| port_refused(&client, name, e))?;
            jack_ports.push(p);
        }
        let port_names = port_names.to_vec();
        let frames = (buffer_seconds * sample_rate as f64).ceil() as usize;
        let frames = frames.max(4 * buffer_size as usize);
        let history = (history_seconds * sample_rate as f64).ceil() as usize;
        let delay = (delay_seconds * sample_rate as f64).ceil() as usize;
        // The history stays in the rings: they hold it on top of the slack.
        let ring_frames = disk::ring_frames(frames, history, delay, buffer_size as usize);
        let (cap_rings, disk_rings) = rings::allocate(ports, ring_frames)
            .map_err(|e| EngineError::Rings { ports, mib: (ports * ring_frames * 4) >> 20, source: e })?;
        let capture = Arc::new(CaptureCounters::default());
        let disk_stats = Arc::new(DiskStats::default());
        let jack = Arc::new(JackEvents::default());
        let (ctx, crx) = channel();
        let (etx, erx) = channel();
        let writer = DiskWriter::new(
            disk_rings,
            crx,
            etx,
            disk_stats.clone(),
            history,
            delay,
            jack.xruns.clone(),
            space,
        )
        .with_callback_times(capture.clone())
        .with_jack_clock(jack_now);
        let disk = disk::spawn(writer).map_err(EngineError::Thread)?;
        // The MIDI control input and its ring, allocated before activation.
        let (midi_control, midi_events) = if midi {
            let port = client
                .register_port("control", jack::MidiIn::default())
                .map_err(|e| port_refused(&client, "control", e))?;
            use ringbuf::traits::Split;
            let (prod, cons) = ringbuf::HeapRb::<MidiEvent>::new(crate::rt::midi::MIDI_RING).split();
            let ctl = crate::rt::midi::MidiControl { port, ring: prod, dropped: Default::default() };
            (Some(ctl), Some(cons))
        } else {
            (None, None)
        };
        let mut handler = JackCapture {
            ports: jack_ports,
            core: Capture::new(cap_rings, capture.clone()),
            counters: capture.clone(),
            midi: midi_control,
        };
        // Everything the callback touches exists now: keep it resident (a
        // page fault in the callback is an xrun). The rings are mapped by
        // hand, then locked with everything else already mapped. ONFAULT
        // locks a page when it is first touched instead of reading in every
        // page of every mapping: the binary's 9 MB of code (HTTP, object
        // stores) and the shared libraries stay out of memory unless used,
        // and what the callback runs is locked from its first cycle on.
        handler.core.prefault();
        let lock = MlockAllFlags::MCL_CURRENT | MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
        if let Err(e) = nix::sys::mman::mlockall(lock) {
            tracing::warn!(
                "cannot lock memory ({e}): the rings may be paged out, and a page fault in the \
                 process callback is an xrun; raise the memlock limit (e.g. the audio group's)"
            );
        }
        let client = client
            .activate_async(Notifications(jack.clone()), handler)
            .map_err(|e| EngineError::Activate(format!("{e:?}")))?;
        // Named inputs show their names in patchbays that read metadata.
        let defaults = crate::ports::default_names(port_names.len());
        for (name, default) in port_names.iter().zip(&defaults) {
            if name != default {
                let full = format!("{}:{name}", client.as_client().name());
                crate::jack_meta::set_pretty_name(client.as_client(), &full, name);
            }
        }
        Ok(Engine {
            client,
            commands: ctx,
            events: erx,
            disk: Some(disk),
            jack,
            capture,
            disk_stats,
            port_names,
            sample_rate,
            buffer_size,
            ring_slack: frames as u64,
            midi_events,
        })
    }

    /// How full the rings' room beyond the history is, 0 to 1, as the
    /// callback last saw it (the disk thread need not run for this).
    pub fn ring_fill(&self) -> f64 {
        (self.frames_behind() as f64 / self.ring_slack.max(1) as f64).clamp(0.0, 1.0)
    }

    /// Seconds of audio the callback has put in the rings that the disk
    /// thread has not taken in yet (the callback's count: true while the
    /// disk thread is stopped).
    pub fn behind_seconds(&self) -> f64 {
        self.frames_behind() as f64 / self.sample_rate.max(1) as f64
    }

    /// Frames of the rings' room beyond the history in use, as the callback
    /// last saw it.
    fn frames_behind(&self) -> u64 {
        let room = self.capture.ring_room.load(std::sync::atomic::Ordering::Relaxed);
        self.ring_slack.saturating_sub(room)
    }

    pub fn client(&self) -> &jack::Client {
        self.client.as_client()
    }

    /// What is connected to each input now (for take manifests).
    pub fn connections(&self) -> Vec<Vec<String>> {
        (0..self.port_names.len())
            .map(|i| {
                self.client()
                    .port_by_name(&self.input_port_name(i))
                    .map(|p| p.get_connections())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// What each channel is called in the files: the configured port name;
    /// for an input left at its default name (`in_3`), the pretty name of
    /// the first port feeding it (`system:capture_3` "Kick In") if it has
    /// one; else the input's own name.
    pub fn track_names(&self, sources: &[Vec<String>]) -> Vec<String> {
        let defaults = crate::ports::default_names(self.port_names.len());
        self.port_names
            .iter()
            .zip(&defaults)
            .enumerate()
            .map(|(i, (name, default))| {
                let pretty = (name == default)
                    .then(|| sources.get(i).and_then(|s| s.first()))
                    .flatten()
                    .and_then(|src| crate::jack_meta::pretty_name(self.client(), src));
                pretty.unwrap_or_else(|| name.clone())
            })
            .collect()
    }

    /// Full name of our input port `i` (0-based).
    pub fn input_port_name(&self, i: usize) -> String {
        format!("{}:{}", self.client().name(), self.port_names[i])
    }

    /// Connects `sources[i]` to input `i`.
    pub fn connect_sources(&self, sources: &[String]) -> Result<(), EngineError> {
        for (i, src) in sources.iter().enumerate() {
            let to = self.input_port_name(i);
            self.client().connect_ports_by_name(src, &to).map_err(|e| EngineError::Connect {
                from: src.clone(),
                to,
                detail: format!("{e:?}"),
            })?;
        }
        Ok(())
    }

    /// JACK's current frame time (estimated, for choosing start/stop points).
    pub fn frame_time(&self) -> u32 {
        self.client().frame_time()
    }

    /// Where a take ended "now" ends: just before the end of the cycle that
    /// holds JACK's current frame, exact to the frame, so the control side
    /// knows the take's length at once (see [`crate::rt::capture::cycle_end`]).
    /// Before the first cycle: with the cycle that holds it, wherever it ends.
    pub fn stop_now(&self) -> StopAt {
        let now = self.frame_time();
        match self.capture.last_cycle() {
            None => StopAt::Frame(now),
            Some((at, n)) => StopAt::Before(crate::rt::capture::cycle_end(at, n, now)),
        }
    }

    /// Whether the disk thread has ended on its own (it only ends when
    /// closing tells it to, so this is a panic): nothing writes the takes.
    pub fn disk_died(&self) -> bool {
        self.disk.as_ref().is_some_and(|h| h.is_finished())
    }

    /// The JACK frame time just after the newest cycle the callback saw.
    pub fn captured_to(&self) -> u32 {
        self.capture.last_cycle().map_or(0, |(at, n)| at.wrapping_add(n))
    }

    /// JACK's frame time at system-clock time `t` (past or future): JACK's
    /// own time-to-frames mapping, from JACK's clock read beside the system
    /// clock.
    pub fn frame_at(&self, t: std::time::SystemTime) -> u32 {
        let (sys, jack) = (std::time::SystemTime::now(), jack_now());
        let usecs = match t.duration_since(sys) {
            Ok(ahead) => jack.saturating_add(ahead.as_micros() as u64),
            Err(e) => jack.saturating_sub(e.duration().as_micros() as u64),
        };
        self.client().time_to_frames(usecs)
    }

    /// The MIDI control commands that arrived since the last call.
    pub fn midi_events(&mut self) -> Vec<MidiEvent> {
        use ringbuf::traits::Consumer;
        self.midi_events.as_mut().map(|c| c.pop_iter().collect()).unwrap_or_default()
    }

    /// Listens for sound on the inputs (`Some`), or stops listening.
    pub fn watch_level(&self, spec: Option<crate::vocab::LevelSpec>) {
        let _ = self.commands.send(DiskCommand::Level(spec));
    }

    /// Puts a marker labelled `label` at JACK frame time `frame_time` into
    /// the running take (see [`DiskCommand::Mark`]).
    pub fn mark(&self, frame_time: u64, label: String) {
        let _ = self.commands.send(DiskCommand::Mark { frame_time, label });
    }

    /// Notes an alarm raised at JACK frame time `frame_time` in the running
    /// take's manifest (see [`DiskCommand::Alarm`]).
    pub fn alarm(&self, frame_time: u64, record: crate::vocab::AlarmRecord) {
        let _ = self.commands.send(DiskCommand::Alarm { frame_time, record });
    }

    /// Starts `take` at the first cycle boundary at or after `start_at`,
    /// reaching back `preroll` frames (as far as the history holds).
    pub fn start_take(&self, take: Take, start_at: disk::StartAt, preroll: u64) {
        let _ = self.commands.send(DiskCommand::Start { take: Box::new(take), start_at, preroll });
    }

    /// Ends the running take where `at` says and continues in `next` from
    /// the following frame.
    pub fn rotate_take(&self, next: Take, at: StopAt) {
        let _ = self.commands.send(DiskCommand::Rotate { next: Box::new(next), at });
    }

    /// Ends the running take with everything that arrived, because of
    /// `reason` (JACK is gone); its manifest says it failed and why.
    pub fn abort_take(&self, reason: &str) {
        let _ = self.commands.send(DiskCommand::Abort(reason.to_owned()));
    }

    pub fn stop_take(&self, at: StopAt) {
        let _ = self.commands.send(DiskCommand::Stop(at));
    }

    /// Next event from the disk thread, if one arrives within `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<DiskEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops the disk thread (finalizing any take) and closes the client.
    /// Returns the disk thread's events nobody had read (a take's end).
    pub fn close(self) -> Vec<DiskEvent> {
        self.close_within(DISK_QUIT_WAIT)
    }

    /// [`Self::close`] within `budget` (a SIGTERM): a disk that is behind
    /// stops writing in time to finalize the take, which then ends where
    /// the disk got to (its manifest says how much it left out).
    pub fn close_within(mut self, budget: Duration) -> Vec<DiskEvent> {
        let deadline = std::time::Instant::now() + budget;
        let _ = self.commands.send(DiskCommand::Quit { by: deadline });
        if let Some(h) = self.disk.take() {
            // A disk that hangs (a dead network mount, a failing drive) must
            // not keep the process from ending: after a while the take is
            // left as its last checkpoint made it (crash-safe), for
            // `capstan recover`.
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!(
                    "the disk thread did not finish within {:.1} s (is the disk stuck?): the running take's \
                     files hold what their last checkpoint made durable; `capstan recover` finalizes them",
                    budget.as_secs_f64()
                );
            }
        }
        if !self.jack.shutdown.load(Relaxed) {
            let wait = deadline.saturating_duration_since(std::time::Instant::now()).max(DEACTIVATE_WAIT);
            match deactivate_within(self.client, wait) {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    "the JACK server did not answer the client's deactivation within {:.1} s; the client is \
                     left to the server, which drops it when capstan ends",
                    wait.as_secs_f64()
                ),
                Err(e) => tracing::warn!("cannot deactivate the JACK client: {e}"),
            }
        }
        self.events.try_iter().collect()
    }
}
