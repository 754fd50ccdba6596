//! Where a frame lies on the wall clock, for the files' time-of-day stamps.
//! JACK maps frames to its own microsecond clock (the callback records each
//! cycle's start in it, see `CycleRecord::usecs`; the mapping averages the
//! last 64 cycles, whose wake-ups jitter); the offset from JACK's clock to
//! the system clock is read back to back whenever it is used. So a stamp or
//! a cut is as good as the system clock (NTP/PTP), plus the few µs between
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

/// Cycles averaged into the mapping: each cycle's time is its wake-up,
/// which jitters by tens of µs (more under load); the mean over the last
/// 64 cycles (0.34 s at 256 frames) puts a frame within a fraction of a
/// frame of where the cycles say, where one cycle alone was off by up to
/// 3 frames (measured).
const WINDOW: usize = 64;

/// How far the mapping of a time may stray from the last placed time's
/// position plus the frames between the two times before it is taken as
/// the clocks drifting apart rather than jitter (see
/// [`WallClock::position_at`]).
const DRIFT: Duration = Duration::from_millis(1);

/// The recent anchors and a way to read JACK's clock now.
#[derive(Debug, Default)]
pub struct WallClock {
    anchors: std::collections::VecDeque<Anchor>,
    /// JACK's clock now (µs); `None` without JACK (unit tests).
    jack_now: Option<fn() -> u64>,
    /// The last system-clock time placed on the timeline (ns since 1970),
    /// its position and the rate then.
    placed: Option<(i128, u64, u32)>,
}

impl WallClock {
    pub fn new(jack_now: Option<fn() -> u64>) -> WallClock {
        WallClock { anchors: Default::default(), jack_now, placed: None }
    }

    /// A cycle at timeline position `pos` started at `usecs` on JACK's
    /// clock (0: unknown). A new rate, or a position that went back,
    /// starts the average afresh.
    pub fn note_cycle(&mut self, pos: u64, usecs: u64, rate: u32) {
        if usecs == 0 || rate == 0 {
            return;
        }
        if self.anchors.back().is_some_and(|a| a.rate != rate || a.pos >= pos) {
            self.anchors.clear();
            self.placed = None;
        }
        if self.anchors.len() == WINDOW {
            self.anchors.pop_front();
        }
        self.anchors.push_back(Anchor { pos, usecs, rate });
    }

    /// JACK's clock (ns) at the newest anchor's position, averaged over
    /// the window, with that position and the rate.
    fn mapping(&self) -> Option<(u64, i128, u32)> {
        let last = *self.anchors.back()?;
        let rate = last.rate as i128;
        let sum: i128 = self
            .anchors
            .iter()
            .map(|a| a.usecs as i128 * 1000 + (last.pos - a.pos) as i128 * 1_000_000_000 / rate)
            .sum();
        Some((last.pos, sum / self.anchors.len() as i128, last.rate))
    }

    /// JACK's clock and the system clock, read back to back: the system
    /// time minus JACK's (ns). The system clock is read on both sides of
    /// JACK's, a few times, and the tightest bracket wins: the thread may
    /// be preempted between two reads (tens of µs on a loaded machine, a
    /// frame or two), which shows as a wide bracket.
    fn offset(&self) -> Option<i128> {
        let jack_now = self.jack_now?;
        let ns = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_nanos() as i128);
        let mut best: Option<(i128, i128)> = None; // (bracket width, offset)
        for _ in 0..5 {
            let (a, jack, b) = (SystemTime::now(), jack_now(), SystemTime::now());
            let (a, b) = (ns(a)?, ns(b)?);
            let (width, off) = (b - a, (a + b) / 2 - jack as i128 * 1000);
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, off));
            }
            if width < 2_000 {
                break;
            }
        }
        best.map(|(_, off)| off)
    }

    /// The system-clock time of the frame at timeline position `pos`;
    /// `None` if JACK's clock is not known.
    ///
    /// Like [`Self::position_at`], it goes from the last placed time where
    /// that is within [`DRIFT`] of the mapping: a take started at a placed
    /// time (a timetag, a rotation boundary) is stamped with that time.
    pub fn wall_time(&self, pos: u64) -> Option<SystemTime> {
        let (apos, ans, rate) = self.mapping()?;
        let ns_in = |frames: i128| frames * 1_000_000_000 / rate as i128;
        let mut ns = self.offset()? + ans + ns_in(pos as i128 - apos as i128);
        if let Some((pt, ppos, prate)) = self.placed {
            let chained = pt + ns_in(pos as i128 - ppos as i128);
            if prate == rate && (chained - ns).abs() <= DRIFT.as_nanos() as i128 {
                ns = chained;
            }
        }
        u64::try_from(ns).ok().map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
    }

    /// The timeline position of the frame at system-clock time `t`: the
    /// inverse of [`WallClock::wall_time`], rounded to the nearest frame.
    ///
    /// Times placed one after another (a start and a stop, clock rotation
    /// boundaries, the same time asked again) are as many frames apart as
    /// their times say: each is placed from the one before, unless that is
    /// more than [`DRIFT`] from where the mapping puts it (then the clocks
    /// really drifted, and the mapping wins). Each mapping alone wanders by
    /// a frame or two with the cycles' wake-ups under load; without this a
    /// take between two timetags, or a file between two boundaries, came
    /// out a frame or two off its length.
    /// Notes that timeline position `pos` was stamped with time `t` (a
    /// take's first frame): times placed after it are placed from it (see
    /// [`Self::position_at`]), so a clock boundary after the start of a
    /// take is as many frames after it as the two stamps say, and the two
    /// takes chain exactly in samples since midnight.
    pub fn note_placed(&mut self, pos: u64, t: SystemTime, rate: u32) {
        if let (Ok(d), true) = (t.duration_since(SystemTime::UNIX_EPOCH), rate > 0) {
            self.placed = Some((d.as_nanos() as i128, pos, rate));
        }
    }

    pub fn position_at(&mut self, t: SystemTime) -> Option<u64> {
        let (apos, ans, rate) = self.mapping()?;
        let t = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos() as i128;
        let frames_in = |ns: i128| (ns * rate as i128 + ns.signum() * 500_000_000) / 1_000_000_000;
        // ns from the anchor's frame to `t`.
        let mapped = apos as i128 + frames_in(t - self.offset()? - ans);
        let pos = match self.placed {
            Some((pt, ppos, prate)) if prate == rate => {
                let chained = ppos as i128 + frames_in(t - pt);
                let drift = frames_in(DRIFT.as_nanos() as i128);
                if (chained - mapped).abs() <= drift {
                    chained
                } else {
                    mapped
                }
            }
            _ => mapped,
        };
        let pos = u64::try_from(pos).ok()?;
        self.placed = Some((t, pos, rate));
        Some(pos)
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

    /// Wake-ups that jitter by ±50 µs around a steady clock: the mapping
    /// follows the steady clock to within 5 µs (a quarter frame), where one
    /// cycle alone would be 50 µs (2.4 frames) off.
    #[test]
    fn jittery_cycles_average_out() {
        fn jack_now() -> u64 {
            10_000_000
        }
        let mut c = WallClock::new(Some(jack_now));
        for k in 0..100u64 {
            let steady = 1_000_000 + k * 256 * 1_000_000 / 48_000;
            let jitter = if k % 2 == 0 { 50 } else { 0 };
            c.note_cycle(k * 256, steady + jitter, 48_000);
        }
        let (pos, ns, _) = c.mapping().unwrap();
        let steady_ns = (1_000_000 + 99 * 256 * 1_000_000u64 / 48_000) as i128 * 1000 + 25_000;
        assert_eq!(pos, 99 * 256);
        assert!((ns - steady_ns).abs() < 5_000, "{} ns off", ns - steady_ns);
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

    /// A take's start and the clock boundary after it, while the mapping
    /// wanders by 3 frames in between: the take's samples since midnight
    /// plus its frames are the boundary's, exactly (its file and the next
    /// one chain in a DAW). Found by the export test on a loaded machine,
    /// 5 samples apart before the start was noted.
    #[test]
    fn a_take_started_before_a_boundary_chains_with_it_in_samples_since_midnight() {
        fn jack_now() -> u64 {
            10_000_000
        }
        for offset in [1234u64, 77, 40_001] {
            let mut c = WallClock::new(Some(jack_now));
            c.note_cycle(480_000, 9_000_000, 48_000);
            let first = 480_000 + offset;
            let start = c.wall_time(first).unwrap();
            c.note_placed(first, start, 48_000);
            c.note_cycle(480_256, 9_000_000 + 256 * 1_000_000 / 48_000 + 63, 48_000);
            c.anchors.retain(|a| a.pos == 480_256);
            let ns = start.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
            let boundary = SystemTime::UNIX_EPOCH + Duration::from_secs(ns / 1_000_000_000 + 2);
            let at = c.position_at(boundary).unwrap();
            let (s1, s2) = (Stamp::of(start, 48_000, true), Stamp::of(boundary, 48_000, true));
            assert_eq!(
                s1.samples_since_midnight + (at - first),
                s2.samples_since_midnight,
                "offset {offset}"
            );
        }
    }

    /// Two times placed one after the other are exactly as many frames
    /// apart as their times say while the mapping wanders by jitter (here
    /// 3 frames), and follow the mapping once it moved by more than the
    /// drift allowance (here 2 ms: the clocks drifted apart).
    #[test]
    fn times_placed_in_turn_keep_their_distance_through_jitter() {
        fn jack_now() -> u64 {
            10_000_000
        }
        let mut c = WallClock::new(Some(jack_now));
        c.note_cycle(480_000, 9_000_000, 48_000);
        let t0 = SystemTime::now() + Duration::from_secs(1);
        let p0 = c.position_at(t0).unwrap();
        assert_eq!(c.position_at(t0), Some(p0), "the same time asked again");
        // The cycles now say frame 480 000 began 62.5 µs (3 frames) later.
        c.note_cycle(480_256, 9_000_000 + 256 * 1_000_000 / 48_000 + 63, 48_000);
        c.anchors.retain(|a| a.pos == 480_256);
        let t1 = t0 + Duration::from_millis(1250);
        assert_eq!(c.position_at(t1), Some(p0 + 60_000));
        // And the frame placed there is stamped with that very time.
        assert_eq!(c.wall_time(p0 + 60_000), Some(t1));
        // Then the cycles start 2.063 ms later: that is drift, and the
        // mapping wins.
        c.anchors.clear();
        c.note_cycle(480_512, 9_000_000 + 512 * 1_000_000 / 48_000 + 2_063, 48_000);
        let t2 = t1 + Duration::from_millis(1250);
        let p2 = c.position_at(t2).unwrap();
        assert!(p2.abs_diff(p0 + 120_000 - 99) <= 2, "{p2} follows the mapping (2.063 ms = 99 frames)");
    }
}
