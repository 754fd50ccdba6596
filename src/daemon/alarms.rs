//! The alarms' shell: ten times a second what the daemon sees (every
//! input's level, the free space at the current rate, how full the rings
//! are, the running take's lost frames) goes into the pure machine
//! (`control::alarms`); what it raises or clears goes to the log, the OSC
//! subscribers (`/recording/alarm`), the web page and the running take's
//! manifest.

use super::*;
use crate::control::alarms::{Alarm, Change, Observation};

/// How often the alarms look.
const EVERY: Duration = Duration::from_millis(100);

impl Daemon {
    pub(super) fn watch_alarms(&mut self) {
        for to in std::mem::take(&mut self.alarm_catch_up) {
            for a in self.alarms.active().to_vec() {
                let msg = self.alarm_push(&a, true);
                self.osc.send(to, &msg);
            }
        }
        if self.alarm_check.elapsed() < EVERY {
            return;
        }
        self.alarm_check = Instant::now();
        let seconds_left = self.seconds_left();
        let Some(e) = &self.engine else { return };
        let taking = matches!(self.recorder.state(), State::Recording | State::Stopping);
        // A take that starts (or is rotated in) with alarms raised gets
        // them at its first frame.
        let take = self.recorder.current().filter(|_| taking).map(|c| c.id.clone());
        if take.is_some() && take != self.alarm_take {
            for a in self.alarms.active() {
                e.alarm(0, self.alarm_record(a));
            }
        }
        self.alarm_take = take;
        let levels = e.disk_stats.levels.snapshot();
        let offsite = self.offsite.as_ref().map(|w| w.progress()).unwrap_or_default();
        let mirrors = e.disk_stats.mirror_failures.lock().map(|f| f.clone()).unwrap_or_default();
        let d = &e.disk_stats;
        let o = Observation {
            now: self.epoch.elapsed().as_secs_f64(),
            recording: taking,
            levels: &levels.inputs,
            names: &e.port_names,
            seconds_left,
            ring_fill: e.ring_fill(),
            lost_frames: if taking { d.lost_frames() } else { 0 },
            offsite_error: offsite.error.as_deref(),
            mirror_failures: &mirrors,
        };
        for c in self.alarms.observe(&o) {
            self.tell_alarm(c, taking);
        }
    }

    /// Seconds the free space lasts at the current rate (looked at once a
    /// second), if known.
    pub(super) fn seconds_left(&mut self) -> Option<f64> {
        if self.free_bytes.0.elapsed() >= Duration::from_secs(1) {
            let free = crate::control::preflight::space(&self.args.dir).ok().map(|s| s.0);
            self.free_bytes = (Instant::now(), free);
        }
        let rate = self.bytes_per_second();
        self.free_bytes.1.filter(|_| rate > 0).map(|f| f as f64 / rate as f64)
    }

    /// Bytes a second a take writes at the current rate and inputs (0: no
    /// JACK).
    pub(super) fn bytes_per_second(&self) -> u64 {
        let Some(e) = &self.engine else { return 0 };
        e.sample_rate as u64
            * e.port_names.len() as u64
            * self.args.settings.format.sample_format().bytes() as u64
    }

    fn tell_alarm(&mut self, change: Change, taking: bool) {
        let (raised, a): (bool, Alarm) = match change {
            Change::Raised(a) => (true, a),
            Change::Cleared(a) => (false, a),
        };
        let input = self.alarm_input(&a).to_string();
        if raised {
            tracing::warn!(kind = a.kind.name(), input = %input, "alarm: {}", a.text);
        } else {
            tracing::info!(kind = a.kind.name(), input = %input, "alarm cleared: {}", a.text);
        }
        let msg = self.alarm_push(&a, raised);
        self.osc.broadcast(&msg);
        let (Some(e), true, true) = (&self.engine, raised, taking) else { return };
        // Where in the take: JACK's frame time now, unwrapped around the
        // take's first frame (0, its start, until that is known).
        let first = self.recorder.current().and_then(|c| c.first_frame_time);
        let now = e.frame_time();
        let frame_time = first.map_or(0, |f| super::takes::unwrap_near(f, now));
        e.alarm(frame_time, self.alarm_record(&a));
    }

    /// An alarm as the take's manifest keeps it (its frame is the disk
    /// thread's to set).
    fn alarm_record(&self, a: &Alarm) -> crate::vocab::AlarmRecord {
        crate::vocab::AlarmRecord {
            kind: a.kind,
            input: a.input.map(|_| self.alarm_input(a).to_string()),
            frame: 0,
            count: 1,
            text: a.text.clone(),
        }
    }

    fn alarm_push(&self, a: &Alarm, raised: bool) -> Vec<u8> {
        let input = self.alarm_input(a).to_string();
        osc::push(
            ALARM_PUSH,
            vec![s(a.kind.name()), s(input), OscType::Int(raised as i32), s(a.text.clone())],
        )
    }

    /// The name of the input an alarm is about ("" for none).
    fn alarm_input(&self, a: &Alarm) -> &str {
        let names = self.engine.as_ref().map(|e| &e.port_names[..]).unwrap_or_default();
        a.input.and_then(|i| names.get(i)).map_or("", |n| n.as_str())
    }

    /// The raised alarms, for the web page.
    pub(super) fn alarm_views(&self) -> Vec<web::AlarmView> {
        self.alarms
            .active()
            .iter()
            .map(|a| web::AlarmView {
                kind: a.kind.name().to_string(),
                input: self.alarm_input(a).to_string(),
                text: a.text.clone(),
            })
            .collect()
    }
}

/// Pushed to subscribers when an alarm is raised or cleared.
pub const ALARM_PUSH: &str = "/recording/alarm";
