//! Where a frame lies on the wall clock, for the files' time-of-day stamps.
//! JACK maps frames to its own microsecond clock (the callback records each
//! cycle's start in it, see `CycleRecord::usecs`); the offset from JACK's
//! clock to the system clock is read back to back when a take starts. So a
//! stamp is as good as the system clock (NTP/PTP), plus the few µs between
//! the two reads; the converter's capture latency is not subtracted.
//! Disk thread only.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, Timelike, Utc};

/// A cycle whose start JACK's clock knows.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Timeline position of the cycle's first frame.
    pos: u64,
    /// JACK's clock (µs) at that frame.
    usecs: u64,
    rate: u32,
}

/// The newest anchor and a way to read JACK's clock now.
#[derive(Debug, Default)]
pub struct WallClock {
    anchor: Option<Anchor>,
    /// JACK's clock now (µs); `None` without JACK (unit tests).
    jack_now: Option<fn() -> u64>,
}

impl WallClock {
    pub fn new(jack_now: Option<fn() -> u64>) -> WallClock {
        WallClock { anchor: None, jack_now }
    }

    /// A cycle at timeline position `pos` started at `usecs` on JACK's
    /// clock (0: unknown).
    pub fn note_cycle(&mut self, pos: u64, usecs: u64, rate: u32) {
        if usecs != 0 && rate != 0 {
            self.anchor = Some(Anchor { pos, usecs, rate });
        }
    }

    /// The system-clock time of the frame at timeline position `pos`, from
    /// the newest anchor; `None` if JACK's clock is not known.
    pub fn wall_time(&self, pos: u64) -> Option<SystemTime> {
        let a = self.anchor?;
        let jack_now = self.jack_now?;
        let (sys, jack) = (SystemTime::now(), jack_now());
        // ns from now back to the anchor, then from the anchor to `pos`.
        let back = (jack as i128 - a.usecs as i128) * 1000;
        let along = (pos as i128 - a.pos as i128) * 1_000_000_000 / a.rate as i128;
        let offset = along - back;
        Some(if offset >= 0 {
            sys + Duration::from_nanos(offset as u64)
        } else {
            sys - Duration::from_nanos((-offset) as u64)
        })
    }
}

impl WallClock {
    /// The timeline position of the frame at system-clock time `t`: the
    /// inverse of [`WallClock::wall_time`], rounded to the nearest frame.
    pub fn position_at(&self, t: SystemTime) -> Option<u64> {
        let a = self.anchor?;
        let jack_now = self.jack_now?;
        let (sys, jack) = (SystemTime::now(), jack_now());
        let ahead = match t.duration_since(sys) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        // ns from the anchor's frame to `t`.
        let ns = ahead + (jack as i128 - a.usecs as i128) * 1000;
        let frames = (ns * a.rate as i128 + ns.signum() * 500_000_000) / 1_000_000_000;
        u64::try_from(a.pos as i128 + frames).ok()
    }
}

/// A take's time stamp: the bext date, time and time_reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// `yyyy-mm-dd`
    pub date: String,
    /// `hh:mm:ss`
    pub time: String,
    /// Samples since that day's midnight, at `rate`.
    pub samples_since_midnight: u64,
}

impl Stamp {
    /// The stamp of `when` in local time, or UTC with `utc`.
    pub fn of(when: SystemTime, rate: u32, utc: bool) -> Stamp {
        if utc {
            Self::from_datetime(DateTime::<Utc>::from(when).naive_utc(), rate)
        } else {
            Self::from_datetime(DateTime::<Local>::from(when).naive_local(), rate)
        }
    }

    fn from_datetime(t: chrono::NaiveDateTime, rate: u32) -> Stamp {
        let secs = t.time().num_seconds_from_midnight() as u64;
        // A leap second shows as nanosecond >= 1e9: count it in this second.
        let nanos = (t.time().nanosecond() as u64).min(999_999_999);
        let rate = rate as u64;
        Stamp {
            date: t.format("%Y-%m-%d").to_string(),
            time: t.format("%H:%M:%S").to_string(),
            samples_since_midnight: secs * rate + (nanos * rate + 500_000_000) / 1_000_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_since_midnight_in_utc_and_rounded() {
        // 2026-11-26 13:45:07.5 UTC
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_700_000_000 + 7_500);
        let s = Stamp::of(t, 48000, true);
        let dt = DateTime::<Utc>::from(t);
        let secs = dt.time().num_seconds_from_midnight() as u64;
        assert_eq!(s.samples_since_midnight, secs * 48000 + 24000);
        assert_eq!(s.time, dt.format("%H:%M:%S").to_string());
        assert_eq!(s.date, dt.format("%Y-%m-%d").to_string());
        // Just before midnight stays on its day.
        let day = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 20_000);
        let s = Stamp::of(day - Duration::from_nanos(1), 44100, true);
        assert_eq!(s.samples_since_midnight, 86_400 * 44100);
        assert_eq!(s.time, "23:59:59");
        assert_eq!(Stamp::of(day, 44100, true).samples_since_midnight, 0);
    }

    #[test]
    fn a_frame_maps_through_the_anchor() {
        fn jack_now() -> u64 {
            5_000_000
        }
        let mut c = WallClock::new(Some(jack_now));
        assert!(c.wall_time(0).is_none(), "no anchor yet");
        // Frame 48000 began at JACK time 4.5 s, i.e. 0.5 s ago; frame 0 was
        // 1 s before that.
        c.note_cycle(48_000, 4_500_000, 48_000);
        let before = SystemTime::now();
        let t = c.wall_time(0).unwrap();
        let after = SystemTime::now();
        assert!(t >= before - Duration::from_millis(1500) && t <= after - Duration::from_millis(1500));
        assert!(WallClock::new(None).wall_time(0).is_none());
        // And back: 20.834 ms after frame 0 is frame 1000 (the system clock
        // moves on between the two reads, by less than a frame unless this
        // thread is preempted in between).
        let p = c.position_at(t + Duration::from_micros(20_834)).unwrap();
        assert!((999..=1000).contains(&p), "{p}");
    }
}
