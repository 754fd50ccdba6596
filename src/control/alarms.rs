//! Alarms: what the person at the desk must know at once, without looking
//! at every number. A silent input, a clipping input, a disk that fills, a
//! disk thread that falls behind, a gap in the take. A pure machine: the
//! daemon shows it what it sees, with the time (it reads no clock), and
//! carries out the changes it returns (the web page, the OSC push
//! `/recording/alarm`, the log, the take's manifest).

use crate::disk::meter::InputLevel;
pub use crate::vocab::AlarmKind;

/// The names `/config/alarm` takes (the settings' `alarm_…` fields).
pub const SETTING_NAMES: [&str; 4] = ["silence_dbfs", "silence_seconds", "disk_minutes", "ring_percent"];

/// The thresholds, in the machine's units (the settings hold the user's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// An input whose peak stays below this (linear) is silent…
    pub silence: f32,
    /// …once it has been for this many seconds, while recording.
    pub silence_seconds: f64,
    /// The disk is low below this many seconds at the current rate (0: no
    /// alarm).
    pub disk_seconds: f64,
    /// The disk thread falls behind when the rings hold more than this
    /// fraction of their room beyond the history.
    pub ring_fraction: f64,
}

/// A raised alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub kind: AlarmKind,
    /// The input it is about (an index into the inputs), if one.
    pub input: Option<usize>,
    /// What it says, for people.
    pub text: String,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Raised, or raised again with news (a gap grew).
    Raised(Alarm),
    Cleared(Alarm),
}

/// What the daemon sees now.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Seconds on a monotonic clock.
    pub now: f64,
    /// A take is being written.
    pub recording: bool,
    pub levels: &'a [InputLevel],
    /// The inputs' names (for the texts).
    pub names: &'a [String],
    /// How long the free space lasts at the current rate, if known.
    pub seconds_left: Option<f64>,
    /// How full the rings' room beyond the history is (0 to 1).
    pub ring_fill: f64,
    /// Frames the running take lost so far.
    pub lost_frames: u64,
    /// Why the last off-site copy failed, until one succeeds.
    pub offsite_error: Option<&'a str>,
    /// The running take's copies that stopped (`--mirror`).
    pub mirror_failures: &'a [String],
}

/// Hysteresis: a disk alarm clears 10% above its threshold, a ring alarm
/// at half its threshold, so that a value hovering at the line does not
/// raise it over and over.
const DISK_CLEAR: f64 = 1.1;
const RING_CLEAR: f64 = 0.5;

#[derive(Debug)]
pub struct Alarms {
    t: Thresholds,
    /// When each input went below the silence threshold (while recording).
    quiet_since: Vec<Option<f64>>,
    active: Vec<Alarm>,
    /// The lost frames the gap alarm last told of.
    lost_told: u64,
}

impl Alarms {
    pub fn new(t: Thresholds) -> Alarms {
        Alarms { t, quiet_since: Vec::new(), active: Vec::new(), lost_told: 0 }
    }

    pub fn set_thresholds(&mut self, t: Thresholds) {
        self.t = t;
    }

    /// The alarms raised now, in the order they were raised.
    pub fn active(&self) -> &[Alarm] {
        &self.active
    }

    /// Compares what is seen with what is raised.
    pub fn observe(&mut self, o: &Observation) -> Vec<Change> {
        let mut changes = Vec::new();
        let t = self.t;
        self.quiet_since.resize(o.levels.len(), None);
        let name = |i: usize| o.names.get(i).map_or_else(|| format!("input {}", i + 1), |n| n.clone());
        for (i, l) in o.levels.iter().enumerate() {
            let quiet = o.recording && l.peak < t.silence;
            let since = &mut self.quiet_since[i];
            *since = if quiet { Some(since.unwrap_or(o.now)) } else { None };
            let silent = since.is_some_and(|s| o.now - s >= t.silence_seconds);
            let text = format!(
                "{} silent: below {:.0} dBFS for {:.0} s",
                name(i),
                crate::disk::meter::dbfs(t.silence),
                t.silence_seconds
            );
            self.set(&mut changes, AlarmKind::Silent, Some(i), silent, text);
            let text = format!("{} clipping: it reached full scale", name(i));
            self.set(&mut changes, AlarmKind::Clipping, Some(i), l.clipped, text);
        }
        // Inputs that went away take their alarms with them.
        let inputs = o.levels.len();
        self.clear_where(&mut changes, |a| a.input.is_some_and(|i| i >= inputs));
        if t.disk_seconds <= 0.0 {
            self.set(&mut changes, AlarmKind::DiskLow, None, false, String::new());
        } else if let Some(left) = o.seconds_left {
            let raised = self.is_raised(AlarmKind::DiskLow, None);
            let low = left < t.disk_seconds || (raised && left < t.disk_seconds * DISK_CLEAR);
            let text = format!("disk low: {} left at the current rate", duration(left));
            self.set(&mut changes, AlarmKind::DiskLow, None, low, text);
        }
        let raised = self.is_raised(AlarmKind::DiskBehind, None);
        let behind = o.ring_fill > t.ring_fraction || (raised && o.ring_fill > t.ring_fraction * RING_CLEAR);
        let text = format!(
            "disk falling behind: the buffers are {:.0}% full (frames are lost at 100%)",
            o.ring_fill * 100.0
        );
        self.set(&mut changes, AlarmKind::DiskBehind, None, behind, text);
        let failing = o.offsite_error.map(|e| format!("off-site copy failing: {e}"));
        self.set(&mut changes, AlarmKind::Offsite, None, failing.is_some(), failing.unwrap_or_default());
        let stopped = o.mirror_failures.join("; ");
        self.set(&mut changes, AlarmKind::Mirror, None, !stopped.is_empty(), stopped);
        // A gap: raised with the take's first lost frames, raised again as
        // more are lost, cleared when the take ends.
        let lost = if o.recording { o.lost_frames } else { 0 };
        if lost == 0 {
            self.lost_told = 0;
            self.set(&mut changes, AlarmKind::Gap, None, false, String::new());
        } else if lost != self.lost_told {
            self.lost_told = lost;
            let a = Alarm {
                kind: AlarmKind::Gap,
                input: None,
                text: format!("this take is not clean: {lost} frames lost (silence in their place)"),
            };
            self.active.retain(|x| x.kind != AlarmKind::Gap);
            self.active.push(a.clone());
            changes.push(Change::Raised(a));
        }
        changes
    }

    fn is_raised(&self, kind: AlarmKind, input: Option<usize>) -> bool {
        self.active.iter().any(|a| a.kind == kind && a.input == input)
    }

    /// Raises or clears one alarm.
    fn set(
        &mut self,
        changes: &mut Vec<Change>,
        kind: AlarmKind,
        input: Option<usize>,
        on: bool,
        text: String,
    ) {
        match (self.is_raised(kind, input), on) {
            (false, true) => {
                let a = Alarm { kind, input, text };
                self.active.push(a.clone());
                changes.push(Change::Raised(a));
            }
            (true, false) => self.clear_where(changes, |a| a.kind == kind && a.input == input),
            _ => {}
        }
    }

    fn clear_where(&mut self, changes: &mut Vec<Change>, gone: impl Fn(&Alarm) -> bool) {
        let (out, keep): (Vec<Alarm>, Vec<Alarm>) =
            std::mem::take(&mut self.active).into_iter().partition(gone);
        self.active = keep;
        changes.extend(out.into_iter().map(Change::Cleared));
    }
}

/// "2 h 05 min", "4 min 10 s", "12 s".
fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds =
        Thresholds { silence: 0.001, silence_seconds: 10.0, disk_seconds: 600.0, ring_fraction: 0.5 };

    fn level(peak: f32, clipped: bool) -> InputLevel {
        InputLevel { peak, rms: peak, clipped }
    }

    struct Seen {
        now: f64,
        recording: bool,
        levels: Vec<InputLevel>,
        seconds_left: Option<f64>,
        ring_fill: f64,
        lost: u64,
        offsite_error: Option<String>,
        mirror_failures: Vec<String>,
    }

    impl Seen {
        fn new() -> Seen {
            Seen {
                now: 0.0,
                recording: true,
                levels: vec![level(0.1, false), level(0.1, false)],
                seconds_left: Some(3600.0),
                ring_fill: 0.0,
                lost: 0,
                offsite_error: None,
                mirror_failures: vec![],
            }
        }

        fn step(&mut self, alarms: &mut Alarms, dt: f64) -> Vec<(bool, AlarmKind, Option<usize>)> {
            self.now += dt;
            let names = ["kick".to_string(), "snare".to_string()];
            let o = Observation {
                now: self.now,
                recording: self.recording,
                levels: &self.levels,
                names: &names,
                seconds_left: self.seconds_left,
                ring_fill: self.ring_fill,
                lost_frames: self.lost,
                offsite_error: self.offsite_error.as_deref(),
                mirror_failures: &self.mirror_failures,
            };
            alarms
                .observe(&o)
                .into_iter()
                .map(|c| match c {
                    Change::Raised(a) => (true, a.kind, a.input),
                    Change::Cleared(a) => (false, a.kind, a.input),
                })
                .collect()
        }
    }

    #[test]
    fn a_silent_input_is_raised_after_its_time_and_only_while_recording() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        s.recording = false;
        s.levels[1] = level(0.0, false);
        assert!(s.step(&mut a, 20.0).is_empty(), "idle: silence is no alarm");
        s.recording = true;
        assert!(s.step(&mut a, 0.1).is_empty());
        assert!(s.step(&mut a, 9.8).is_empty(), "9.8 s");
        assert_eq!(s.step(&mut a, 0.2), vec![(true, AlarmKind::Silent, Some(1))], "10 s");
        assert!(a.active()[0].text.starts_with("snare silent: below -60 dBFS for 10 s"), "{:?}", a.active());
        assert!(s.step(&mut a, 5.0).is_empty(), "raised once");
        s.levels[1] = level(0.01, false);
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Silent, Some(1))], "sound again");
        s.levels[1] = level(0.0, false);
        assert_eq!(s.step(&mut a, 5.0), vec![], "the time starts again");
        assert_eq!(s.step(&mut a, 9.9), vec![]);
        assert_eq!(s.step(&mut a, 0.1), vec![(true, AlarmKind::Silent, Some(1))]);
        s.recording = false;
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Silent, Some(1))], "the take ended");
    }

    #[test]
    fn clipping_follows_the_meters_clip_flag() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        s.recording = false;
        s.levels[0] = level(1.0, true);
        assert_eq!(s.step(&mut a, 0.1), vec![(true, AlarmKind::Clipping, Some(0))], "idle too: soundcheck");
        assert!(s.step(&mut a, 0.1).is_empty());
        s.levels[0] = level(0.5, false);
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Clipping, Some(0))]);
    }

    #[test]
    fn the_disk_alarms_clear_with_hysteresis() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        s.seconds_left = Some(599.0);
        assert_eq!(s.step(&mut a, 1.0), vec![(true, AlarmKind::DiskLow, None)]);
        assert_eq!(a.active()[0].text, "disk low: 9 min 59 s left at the current rate");
        s.seconds_left = Some(650.0);
        assert!(s.step(&mut a, 1.0).is_empty(), "within 10% of the line");
        s.seconds_left = Some(661.0);
        assert_eq!(s.step(&mut a, 1.0), vec![(false, AlarmKind::DiskLow, None)]);
        s.seconds_left = None;
        assert!(s.step(&mut a, 1.0).is_empty(), "unknown: no change");
        s.ring_fill = 0.51;
        assert_eq!(s.step(&mut a, 1.0), vec![(true, AlarmKind::DiskBehind, None)]);
        s.ring_fill = 0.3;
        assert!(s.step(&mut a, 1.0).is_empty());
        s.ring_fill = 0.2;
        assert_eq!(s.step(&mut a, 1.0), vec![(false, AlarmKind::DiskBehind, None)]);
        s.seconds_left = Some(1.0);
        assert_eq!(s.step(&mut a, 1.0), vec![(true, AlarmKind::DiskLow, None)]);
        a.set_thresholds(Thresholds { disk_seconds: 0.0, ..T });
        assert_eq!(s.step(&mut a, 1.0), vec![(false, AlarmKind::DiskLow, None)], "0: off");
        assert!(s.step(&mut a, 1.0).is_empty());
    }

    #[test]
    fn a_failing_offsite_copy_is_raised_while_it_fails_recording_or_not() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        s.recording = false;
        assert!(s.step(&mut a, 0.1).is_empty());
        s.offsite_error = Some("take t was not copied to s3://b: refused".into());
        assert_eq!(s.step(&mut a, 0.1), vec![(true, AlarmKind::Offsite, None)]);
        assert!(a.active()[0].text.contains("s3://b"));
        assert!(s.step(&mut a, 0.1).is_empty());
        s.offsite_error = None;
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Offsite, None)]);
    }

    #[test]
    fn a_gap_is_raised_again_as_it_grows_and_cleared_with_the_take() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        assert!(s.step(&mut a, 0.1).is_empty());
        s.lost = 256;
        assert_eq!(s.step(&mut a, 0.1), vec![(true, AlarmKind::Gap, None)]);
        assert!(s.step(&mut a, 0.1).is_empty());
        s.lost = 512;
        assert_eq!(s.step(&mut a, 0.1), vec![(true, AlarmKind::Gap, None)]);
        assert_eq!(a.active().len(), 1);
        assert!(a.active()[0].text.contains("512 frames lost"));
        s.recording = false;
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Gap, None)]);
    }

    #[test]
    fn fewer_inputs_take_their_alarms_with_them() {
        let mut a = Alarms::new(T);
        let mut s = Seen::new();
        s.levels[1] = level(1.0, true);
        s.step(&mut a, 0.1);
        s.levels.pop();
        assert_eq!(s.step(&mut a, 0.1), vec![(false, AlarmKind::Clipping, Some(1))]);
    }
}
