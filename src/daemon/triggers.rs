//! Takes started and stopped by JACK transport (`--trigger transport`):
//! the disk thread reports each change at the first frame of the cycle it
//! happened in, and the take is cut there, exactly, whenever the report
//! arrives (the history still holds the frame). Control thread only.

use crate::control::osc::{Code, Refusal, TriggerSetting};
use crate::control::state::State;
use crate::disk::level::{LevelChange, LevelEvent};
use crate::disk::transport::{TransportChange, TransportEvent};
use crate::disk::{StartAt, StopAt};
use crate::rt::midi::{MidiEvent, MidiKind};
use crate::vocab::Trigger;

use super::Daemon;

/// A trigger's change, waiting to be acted on.
#[derive(Debug, Clone, Copy)]
pub(super) enum TriggerEvent {
    Transport(TransportEvent),
    Level(LevelEvent),
    Midi(MidiEvent),
}

impl Daemon {
    /// A transport change from the disk thread: acted on now, or once the
    /// operation under way is done.
    pub(super) fn transport_changed(&mut self, e: TransportEvent) {
        if self.args.settings.trigger == Some(Trigger::Transport) && self.armed {
            tracing::debug!(?e, "transport");
            self.trigger_events.push_back(TriggerEvent::Transport(e));
        }
    }

    /// Sound began or ended (the disk thread listens only when
    /// `--trigger level` is armed).
    pub(super) fn level_changed(&mut self, e: LevelEvent) {
        if self.args.settings.trigger == Some(Trigger::Level) && self.armed {
            tracing::debug!(?e, "level");
            self.trigger_events.push_back(TriggerEvent::Level(e));
        }
    }

    /// Tells the disk thread to listen for sound, or not: on when
    /// `--trigger level` is set and armed.
    pub(super) fn listen_for_sound(&self) {
        if let Some(e) = &self.engine {
            let on = self.args.settings.trigger == Some(Trigger::Level) && self.armed;
            e.watch_level(on.then(|| self.args.settings.level_spec(e.sample_rate)));
        }
    }

    /// Acts on the triggers' changes (transport, sound, MIDI; one at a
    /// time: each may start an operation) and on a post-roll that is due.
    pub(super) fn follow_triggers(&mut self) {
        if self.args.settings.midi {
            if let Some(engine) = self.engine.as_mut() {
                let events = engine.midi_events();
                self.trigger_events.extend(events.into_iter().map(TriggerEvent::Midi));
            }
        }
        if self.recorder.waiting() {
            return;
        }
        match self.trigger_events.pop_front() {
            Some(TriggerEvent::Transport(e)) => return self.act_on(e),
            Some(TriggerEvent::Level(e)) => return self.act_on_level(e),
            Some(TriggerEvent::Midi(e)) => return self.act_on_midi(e),
            None => {}
        }
        let (Some(end), Some(engine)) = (self.post_roll_stop, self.engine.as_ref()) else { return };
        // Hand the stop over shortly before its frame (it waits for it).
        let ahead = (end as u32).wrapping_sub(engine.frame_time()) as i32 as i64;
        if ahead <= (super::timed::LEAD.as_secs_f64() * engine.sample_rate as f64) as i64 {
            self.post_roll_stop = None;
            if self.recorder.state() == State::Recording {
                tracing::info!(frame_time = end, "transport: post-roll over, take ends");
                self.ended_by =
                    Some(format!("transport stopped; post-roll {} s", self.args.settings.post_roll));
                if self.stop(None, None, Some(StopAt::Before(end as u32))).is_err() {
                    self.ended_by = None;
                }
            }
        }
    }

    fn act_on(&mut self, e: TransportEvent) {
        let at = e.frame_time as u32;
        let state = self.recorder.state();
        let result: Result<_, Refusal> = match (e.change, state) {
            (TransportChange::Rolled, State::Idle) => {
                self.post_roll_stop = None;
                tracing::info!(
                    frame_time = e.frame_time,
                    transport_frame = e.transport_frame,
                    "transport rolls: take starts"
                );
                self.next_cause = Some(format!("transport rolled at transport frame {}", e.transport_frame));
                self.start(None, None, None, Some(StartAt::Frame(at)))
            }
            // Rolling again during a post-roll, or relocated: the next take
            // starts on the frame the transport (re)started from.
            (TransportChange::Rolled | TransportChange::Located, State::Recording) => {
                self.post_roll_stop = None;
                tracing::info!(
                    frame_time = e.frame_time,
                    transport_frame = e.transport_frame,
                    "transport {:?}: next take",
                    e.change
                );
                let how = if e.change == TransportChange::Rolled { "rolled" } else { "relocated" };
                self.next_cause = Some(format!("transport {how} at transport frame {}", e.transport_frame));
                self.ended_by = Some(format!("transport {how}"));
                self.rotate(None, None, None, Some(StopAt::Before(at)))
            }
            (TransportChange::Stopped, State::Recording) => {
                let post = (self.args.settings.post_roll
                    * self.engine.as_ref().map_or(48_000, |e| e.sample_rate) as f64)
                    .round() as u64;
                tracing::info!(frame_time = e.frame_time, post_roll_frames = post, "transport stopped");
                if post == 0 {
                    self.ended_by = Some("transport stopped".into());
                    self.stop(None, None, Some(StopAt::Before(at)))
                } else {
                    self.post_roll_stop = Some(e.frame_time + post);
                    Ok(None)
                }
            }
            (change, state) => {
                tracing::debug!(?change, ?state, "transport change ignored");
                Ok(None)
            }
        };
        if let Err(r) = result {
            self.trigger_failed("transport trigger", r);
        }
    }

    fn act_on_level(&mut self, e: LevelEvent) {
        let s = &self.args.settings;
        let result = match (e.change, self.recorder.state()) {
            (LevelChange::Rose, State::Idle) => {
                tracing::info!(frame_time = e.frame_time, "sound above {} dBFS: take starts", s.threshold);
                self.next_cause = Some(format!(
                    "sound above {} dBFS at frame time {} (pre-roll {} s)",
                    s.threshold,
                    e.frame_time,
                    s.effective_preroll()
                ));
                self.level_take = true;
                self.start(None, None, None, Some(StartAt::At(e.frame_time as u32)))
            }
            (LevelChange::Fell, State::Recording) if self.level_take => {
                tracing::info!(
                    frame_time = e.frame_time,
                    "{} s below {} dBFS: take ends",
                    s.hold,
                    s.threshold
                );
                self.ended_by = Some(format!("{} s below {} dBFS on every input", s.hold, s.threshold));
                self.level_take = false;
                self.stop(None, None, Some(StopAt::Before(e.frame_time as u32)))
            }
            (change, state) => {
                tracing::debug!(?change, ?state, "level change ignored");
                Ok(None)
            }
        };
        if let Err(r) = result {
            self.level_take = false;
            self.trigger_failed("level trigger", r);
        }
    }

    /// A MIDI control command, at the frame it arrived (`--midi`).
    fn act_on_midi(&mut self, e: MidiEvent) {
        let state = self.recorder.state();
        let toggle = self.args.settings.midi_note.is_some_and(|n| e.kind == MidiKind::NoteOn(n));
        let what = match e.kind {
            MidiKind::RecordStrobe => "MMC RECORD STROBE".to_string(),
            MidiKind::RecordExit => "MMC RECORD EXIT".to_string(),
            MidiKind::Stop => "MMC STOP".to_string(),
            MidiKind::NoteOn(n) => format!("MIDI note {n}"),
        };
        let start = matches!(e.kind, MidiKind::RecordStrobe) || (toggle && state == State::Idle);
        let stop =
            matches!(e.kind, MidiKind::RecordExit | MidiKind::Stop) || (toggle && state == State::Recording);
        let result = match state {
            State::Idle if start => {
                tracing::info!(frame_time = e.frame_time, "{what}: take starts");
                self.next_cause = Some(format!("{what} at frame time {}", e.frame_time));
                self.start(None, None, None, Some(StartAt::At(e.frame_time)))
            }
            State::Recording if stop => {
                tracing::info!(frame_time = e.frame_time, "{what}: take ends");
                self.ended_by = Some(format!("{what} at frame time {}", e.frame_time));
                self.stop(None, None, Some(StopAt::Before(e.frame_time)))
            }
            _ => {
                tracing::debug!(?e, ?state, "MIDI command ignored");
                Ok(None)
            }
        };
        if let Err(r) = result {
            self.trigger_failed("MIDI control", r);
        }
    }

    /// A trigger's start, stop or rotation was refused: nothing started or
    /// ended, so the reasons it gave are dropped; the session manager is
    /// told.
    pub(super) fn trigger_failed(&mut self, what: &str, r: Refusal) {
        self.next_cause = None;
        self.ended_by = None;
        tracing::error!("{what}: {}", r.message);
        self.notice(3, format!("{what}: {}", r.message));
    }

    /// `/config/trigger`, `/config/rotate_every`, `/config/post_roll`,
    /// `/config/threshold`, `/config/hold`: checked with all the settings
    /// (code 12), saved with the session, in effect at once.
    pub(super) fn set_trigger(&mut self, t: TriggerSetting) -> Result<Vec<rosc::OscType>, Refusal> {
        let mut s = self.args.settings.clone();
        let reply = match &t {
            TriggerSetting::Trigger(v) => {
                s.trigger = *v;
                rosc::OscType::String(match v {
                    Some(Trigger::Transport) => "transport".into(),
                    Some(Trigger::Level) => "level".into(),
                    None => "none".into(),
                })
            }
            TriggerSetting::RotateEvery(v) => {
                s.rotate_every = v.clone();
                rosc::OscType::String(v.clone().unwrap_or_default())
            }
            TriggerSetting::PostRoll(v) => {
                s.post_roll = *v;
                rosc::OscType::Double(*v)
            }
            TriggerSetting::Threshold(v) => {
                s.threshold = *v;
                rosc::OscType::Double(*v)
            }
            TriggerSetting::Hold(v) => {
                s.hold = *v;
                rosc::OscType::Double(*v)
            }
        };
        s.validate().map_err(|e| Refusal::new(Code::Config, e))?;
        let old = &self.args.settings;
        let (trigger_changed, history_changed) =
            (s.trigger != old.trigger, s.effective_preroll() != old.effective_preroll());
        if history_changed {
            // The history must hold the new pre-roll (level's 2 s): the
            // inputs are re-created, as for /config/preroll.
            let new = s.clone();
            self.reconfigure(|a| a.settings = new)?;
        }
        if trigger_changed {
            // A new trigger starts armed; none is nothing to arm.
            self.armed = s.trigger.is_some();
            self.trigger_events.clear();
            self.post_roll_stop = None;
        }
        self.args.settings = s;
        self.config_changed = true;
        self.listen_for_sound();
        Ok(vec![reply])
    }

    /// `/trigger/arm` and `/trigger/disarm`: triggers act (or not) from now on.
    pub(super) fn arm(&mut self, armed: bool) -> Result<Vec<rosc::OscType>, Refusal> {
        if self.args.settings.trigger.is_none() {
            return Err(Refusal::new(Code::Config, "no trigger is set (--trigger transport)"));
        }
        self.armed = armed;
        if !armed {
            self.cancel_timed("/trigger/disarm");
            self.trigger_events.clear();
            self.post_roll_stop = None;
        }
        self.listen_for_sound();
        tracing::info!(armed, "triggers");
        Ok(vec![rosc::OscType::Int(armed as i32)])
    }
}
