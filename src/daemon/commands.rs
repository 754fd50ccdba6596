//! What each OSC command does and what it answers (docs/osc-api.md).
//! Commands that change the recorder wait their turn while the disk thread
//! owes an answer; queries are answered at once. Control thread only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use rosc::{OscMessage, OscType};

use super::endpoint::Requester;
use super::{s, Daemon};
use crate::control::osc::{self, Code, Command, Refusal};
use crate::control::preflight;
use crate::control::recorder::Input;
use crate::control::replies::count;
use crate::control::state::State;
use crate::daemon::DaemonArgs;
use crate::vocab::Layout;

/// Commands that may wait for the disk thread at once; more are refused.
const MAX_QUEUED: usize = 16;

fn layout_name(l: Layout) -> &'static str {
    match l {
        Layout::Interleaved => "interleaved",
        Layout::Mono => "mono",
    }
}

/// Does this command change the recorder (and so wait for a pending
/// operation, to keep the order it was sent in)?
fn changes_recorder(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::Status { .. }
            | Command::List
            | Command::Files(_)
            | Command::Subscribe
            | Command::Unsubscribe
            | Command::Meters(_)
            | Command::ConfigGet
            | Command::ConfigStorage(None)
            | Command::Mark { .. }
    )
}

impl Daemon {
    /// One message of a datagram: answered to its sender, now or when the
    /// disk thread has done what it asks.
    pub(super) fn message(&mut self, m: OscMessage, from: SocketAddr, when: Option<SystemTime>) {
        let to = Requester { from, path: m.addr.clone() };
        let cmd = match osc::parse(&m) {
            Ok(c) => c,
            Err(r) => return self.osc.answer(&to, Err(r)),
        };
        if let Command::Mark { label } = cmd {
            // Now, not when a queued command's turn comes: a marker is
            // where the command was taken.
            if let Err(r) = self.mark(&to, label, when) {
                self.osc.answer(&to, Err(r));
            }
            return;
        }
        if let Some(at) = when.filter(|t| *t > SystemTime::now()) {
            if super::timed::runs_at_its_time(&cmd) {
                return self.schedule(to, cmd, at);
            }
        }
        if self.recorder.waiting() && changes_recorder(&cmd) {
            if self.queued.len() >= MAX_QUEUED {
                let r = Refusal::new(
                    Code::Busy,
                    format!("the recorder is busy; {MAX_QUEUED} commands wait already"),
                );
                return self.osc.answer(&to, Err(r));
            }
            return self.queued.push_back((to, cmd));
        }
        self.run_command(to, cmd);
    }

    pub(super) fn run_command(&mut self, to: Requester, cmd: Command) {
        match self.command(cmd, &to) {
            Ok(Some(args)) => self.osc.answer(&to, Ok(args)),
            Ok(None) => {} // answered when the disk thread has done it
            Err(r) => self.osc.answer(&to, Err(r)),
        }
    }

    fn command(&mut self, cmd: Command, to: &Requester) -> Result<Option<Vec<OscType>>, Refusal> {
        let now = |v| Ok(Some(v));
        match cmd {
            Command::Start { take_id, file } => self.start(Some(to.clone()), take_id, file, None),
            Command::Stop { take_id } => self.stop(Some(to.clone()), take_id, None),
            Command::Rotate { take_id, file } => self.rotate(Some(to.clone()), take_id, file, None),
            Command::Status { .. } => now(self.status()),
            Command::Mark { label } => self.mark(to, label, None).map(|()| None),
            Command::Arm(on) => self.arm(on).map(Some),
            Command::ConfigTrigger(t) => self.set_trigger(t).map(Some),
            Command::ConfigStorage(change) => self.set_storage(change).map(Some),
            Command::List => now(self
                .recorder
                .current()
                .into_iter()
                .flat_map(|c| [s(c.id.clone()), s(osc::files_text(&c.files))])
                .collect()),
            Command::Files(offset) => now(self.files(offset)?),
            Command::Reset => {
                self.cancel_timed("/record/reset");
                let jack_running = self.engine.is_some();
                self.feed_command(Input::Reset { to: to.clone(), jack_running })?;
                Ok(None)
            }
            Command::Subscribe => {
                self.osc.subscribe(to.from);
                // The alarms raised now follow the answer (next turn).
                self.alarm_catch_up.push(to.from);
                now(vec![s(self.recorder.state().name())])
            }
            Command::Unsubscribe => {
                self.osc.unsubscribe(to.from);
                now(vec![])
            }
            Command::Meters(rate) => {
                self.meter_feed(to.from, rate);
                let inputs =
                    self.engine.as_ref().map_or(self.args.settings.ports as usize, |e| e.port_names.len());
                now(vec![OscType::Int(rate as i32), OscType::Int(inputs as i32)])
            }
            Command::ConfigGet => now(self.config_values()),
            Command::ConfigSampleFormat(f) => {
                self.set_format(|t| t.sample_format = Some(f))?;
                now(vec![s(f.to_string())])
            }
            Command::ConfigLayout(l) => {
                self.set_format(|t| t.layout = l)?;
                now(vec![s(layout_name(l))])
            }
            Command::ConfigFormat(f) => {
                self.set_format(|t| t.file_format = f)?;
                now(vec![s(f.ext().to_string())])
            }
            Command::ConfigPorts(n) => {
                // Named inputs beyond the new count are dropped with them.
                self.reconfigure(|a| {
                    a.settings.ports = n;
                    a.settings.port_names.truncate(n as usize);
                })?;
                now(vec![OscType::Int(n as i32)])
            }
            Command::ConfigPreroll(p) => {
                self.reconfigure(|a| a.settings.preroll = p)?;
                now(vec![OscType::Double(p)])
            }
            Command::ConfigAlarm(name, v) => {
                let mut settings = self.args.settings.clone();
                settings.alarms.set(&name, v).map_err(|e| Refusal::new(Code::BadArgs, e))?;
                settings.validate().map_err(|e| Refusal::new(Code::Config, e))?;
                self.alarms.set_thresholds(settings.alarms.thresholds());
                self.args.settings = settings;
                self.config_changed = true;
                now(vec![s(name), OscType::Double(v)])
            }
        }
    }

    /// A page of the running (or else the last) take's files.
    fn files(&self, offset: usize) -> Result<Vec<OscType>, Refusal> {
        let Some((id, files)) = self.recorder.files() else {
            return Err(Refusal::new(Code::NotRecording, "no take to list"));
        };
        let total = files.len().min(i32::MAX as usize) as i32;
        let page = osc::files_page(files, offset);
        Ok(vec![s(id), OscType::Int(total), OscType::Int(offset.min(i32::MAX as usize) as i32), s(page)])
    }

    /// Every setting, as name/value pairs (`/config/get`).
    fn config_values(&self) -> Vec<OscType> {
        let a = &self.args;
        let names =
            crate::ports::input_names(a.settings.ports as usize, &a.settings.port_names).unwrap_or_default();
        let port = self.osc_addr().map_or(0, |x| x.port() as i32);
        vec![
            s("ports"),
            OscType::Int(a.settings.ports as i32),
            s("port_names"),
            s(names.join(",")),
            s("sample_format"),
            s(a.settings.format.sample_format().to_string()),
            s("layout"),
            s(layout_name(a.settings.format.layout)),
            s("preroll"),
            OscType::Double(a.settings.preroll),
            s("project"),
            s(a.settings.format.project_name().to_string()),
            s("osc_port"),
            OscType::Int(port),
            s("client"),
            s(self.engine.as_ref().map(|e| e.client().name().to_string()).unwrap_or_default()),
            s("time_reference"),
            s(match a.settings.format.time_reference {
                crate::vocab::TimeReference::Midnight => "midnight",
                crate::vocab::TimeReference::Jack => "jack",
            }),
            s("utc"),
            OscType::Int(a.settings.format.utc as i32),
            s("format"),
            s(a.settings.format.file_format.ext()),
            s("rotate_every"),
            s(a.settings.rotate_every.clone().unwrap_or_default()),
            s("trigger"),
            s(match a.settings.trigger {
                Some(crate::vocab::Trigger::Transport) => "transport",
                Some(crate::vocab::Trigger::Level) => "level",
                None => "",
            }),
            s("armed"),
            OscType::Int(self.armed as i32),
            s("post_roll"),
            OscType::Double(a.settings.post_roll),
            s("threshold"),
            OscType::Double(a.settings.threshold),
            s("midi"),
            OscType::Int(a.settings.midi as i32),
            s("midi_note"),
            OscType::Int(a.settings.midi_note.map_or(-1, i32::from)),
            s("hold"),
            OscType::Double(a.settings.hold),
            s("alarm_silence_dbfs"),
            OscType::Double(a.settings.alarms.alarm_silence_dbfs),
            s("alarm_silence_seconds"),
            OscType::Double(a.settings.alarms.alarm_silence_seconds),
            s("alarm_disk_minutes"),
            OscType::Double(a.settings.alarms.alarm_disk_minutes),
            s("alarm_ring_percent"),
            OscType::Double(a.settings.alarms.alarm_ring_percent),
        ]
    }

    /// Changes how the next take is written, if the settings stay valid
    /// together (FLAC needs s16/s24, and the mono layout above 8 inputs).
    fn set_format(&mut self, change: impl FnOnce(&mut crate::settings::TakeFormat)) -> Result<(), Refusal> {
        let mut candidate = self.args.settings.clone();
        change(&mut candidate.format);
        candidate.validate().map_err(|e| Refusal::new(Code::Config, e))?;
        self.args.settings = candidate;
        self.config_changed = true;
        Ok(())
    }

    /// Changes a setting that shapes the JACK client (ports, pre-roll): only
    /// between takes. The client is re-created with the same name and every
    /// connection of the ports that remain is restored.
    pub(super) fn reconfigure(&mut self, change: impl FnOnce(&mut DaemonArgs)) -> Result<(), Refusal> {
        if matches!(self.recorder.state(), State::Starting | State::Recording | State::Stopping) {
            return Err(Refusal::new(Code::Busy, "stop the take first; this setting re-creates the inputs"));
        }
        let mut changed = self.args.clone();
        change(&mut changed);
        changed.settings.validate().map_err(|e| Refusal::new(Code::Config, e))?;
        self.args = changed;
        self.config_changed = true;
        let Some(old) = self.engine.take() else {
            return Ok(()); // JACK is away: the setting applies when it is back
        };
        let connections = old.connections();
        for ev in old.close() {
            self.disk_event(ev);
        }
        if let Err(e) = self.open_engine() {
            self.last_jack_try = Instant::now();
            self.feed(Input::Fail {
                code: Code::JackGone,
                text: format!("re-creating the JACK client failed: {e}"),
            });
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
        tracing::info!(
            "inputs re-created: {} ports, pre-roll {} s",
            self.args.settings.ports,
            self.args.settings.preroll
        );
        Ok(())
    }

    fn status(&self) -> Vec<OscType> {
        let (frames, bytes, lost, xruns, rate) = match &self.engine {
            Some(e) => {
                let d = &e.disk_stats;
                (
                    d.frames.load(Relaxed),
                    d.bytes.load(Relaxed),
                    d.lost_frames(),
                    e.jack.xruns.load(Relaxed),
                    e.sample_rate,
                )
            }
            None => (0, 0, 0, 0, 48000),
        };
        let recording = matches!(self.recorder.state(), State::Recording | State::Stopping);
        let (frames, bytes, lost) = if recording { (frames, bytes, lost) } else { (0, 0, 0) };
        let free = preflight::space(&self.args.dir).map_or(0, |s| s.0);
        let id = self.recorder.current().map(|c| c.id.clone()).unwrap_or_default();
        let err = self.recorder.error().map(|e| e.1.to_string()).unwrap_or_default();
        let (cb, disk) = match &self.engine {
            Some(e) => (e.capture.callback.summary(), e.disk_stats.summary()),
            None => Default::default(),
        };
        let momentary = match &self.engine {
            Some(e) if recording => e.disk_stats.momentary_lufs(),
            _ => f64::NEG_INFINITY,
        };
        vec![
            s(self.recorder.state().name()),
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
            OscType::Double(momentary),
            OscType::Int(self.armed as i32),
            OscType::Int(self.web.as_ref().map_or(0, |w| w.addr().port() as i32)),
            OscType::Double(self.engine.as_ref().map_or(0.0, |e| e.ring_fill() * 100.0)),
            OscType::Double(self.engine.as_ref().map_or(0.0, |e| e.behind_seconds())),
        ]
    }
}

impl Daemon {
    /// `/config/storage`: the storage settings, or a change to them through
    /// the one validation; new directories are checked and made as at
    /// start-up, and a changed off-site target gets a new thread (the old
    /// one stops after the object it is sending). A take being recorded
    /// keeps its copies; the next take gets the new ones.
    fn set_storage(&mut self, change: Option<String>) -> Result<Vec<OscType>, Refusal> {
        if let Some(text) = change {
            let new = self.args.settings.with_storage(&text).map_err(|e| Refusal::new(Code::Config, e))?;
            super::check_storage_dirs(&self.args.dir, &new)
                .map_err(|e| Refusal::new(Code::Config, format!("{e:#}")))?;
            if new.offsite != self.args.settings.offsite {
                self.offsite = crate::offsite::Worker::spawn(self.args.dir.clone(), &new.offsite)
                    .map_err(|e| Refusal::new(Code::Config, format!("offsite: {e}")))?;
            }
            tracing::info!(storage = %new.storage_json(), "storage settings changed");
            self.args.settings = new;
            self.config_changed = true;
        }
        Ok(vec![s(self.args.settings.storage_json().to_string())])
    }
}
