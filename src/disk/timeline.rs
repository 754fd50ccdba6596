//! Where each cycle's audio belongs on JACK's timeline. A pure model (no I/O,
//! no JACK), fed one [`CycleRecord`] at a time by the disk thread.
//!
//! The rule: **the frame time JACK reports for a cycle is where its audio
//! belongs.** Measured on JACK2 (asynchronous and synchronous) and on
//! PipeWire's JACK layer with a source that writes its own frame time into
//! the audio, the samples a client reads always belong to the frame time it
//! reads in the same callback (docs/architecture.md, "The timeline"):
//!
//! - cycles a client misses (stalled, preempted, a PipeWire quantum or rate
//!   change) make the frame time jump forward by exactly the frames it never
//!   received: a *skip*, which becomes silence of exactly that length;
//! - JACK2 in asynchronous mode runs a client that was late (it overran, or
//!   was stopped) twice on one frame time: the first run comes from a
//!   wake-up left over from the cycle before and may read the upstream's
//!   buffers before the upstream has written this cycle (measured: the
//!   audio of the frame time one period earlier); the second run comes from
//!   the upstream's own wake-up and reads this cycle's audio. The second run
//!   *rewinds*: its frames are a *repeat*, and the newer clean copy replaces
//!   the earlier one (the disk thread holds the newest cycle back until the
//!   next one shows whether it repeats). Nothing is written twice or moved;
//! - the first run after a skip may be such a left-over wake-up with *no*
//!   repeat after it (measured under load, about 1 stall in 300: its buffers
//!   held the audio of 1, 3 or 27 periods earlier, see issue 23). Nothing in
//!   the callback tells which cycle the upstream last wrote, so that cycle is
//!   *uncertain*: a reported gap of its own cause unless a repeat replaces it
//!   (docs/architecture.md, "The late callback");
//! - our own dropped cycles (rings full) are known exactly from the capture
//!   core, and are part of the jump the next logged cycle shows. Our callback
//!   ran for each of them, so they leave nothing uncertain.
//!
//! There is no threshold that turns a jump into "jitter": every frame of
//! every placed cycle sits at its own frame time.
//!
//! Positions are unwrapped `u64` frame times (JACK's wrap at 2^32 removed),
//! monotonic for the life of the model. A rewind too long to be a repeat
//! (more than [`MAX_REPEAT_SECONDS`]) means JACK's clock itself was reset;
//! positions then continue where they were and [`Timeline::jack_time`]
//! follows the new clock from there on.

use crate::rings::CycleRecord;

/// A rewind of up to this long is a repeat of frames already placed; longer,
/// it is a clock reset.
pub const MAX_REPEAT_SECONDS: u64 = 1;

/// Where one cycle goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Position of the cycle's first frame.
    pub at: u64,
    /// Frames before `at` that nobody delivered, part of them dropped by us
    /// (`overflow`, rings full) and the rest skipped by JACK (`skipped`).
    /// They end at `at`.
    pub overflow: u64,
    pub skipped: u64,
    /// Frames at the front of the cycle that repeat frames already placed:
    /// not to be written. Positions `at .. at + repeated` are already taken.
    pub repeated: u64,
    /// The cycle's rate differs from the cycle before (`Some((old, new))`).
    pub rate_change: Option<(u32, u32)>,
    /// JACK's clock went back by more than a repeat can explain.
    pub clock_reset: bool,
    /// JACK skipped frames just before this cycle, so its callback may have
    /// run from a wake-up left over from a missed cycle, before the upstream
    /// wrote this one: which cycle its buffers hold is not known.
    pub uncertain: bool,
}

impl Placement {
    /// Frames missing before the cycle.
    pub fn missing(&self) -> u64 {
        self.overflow + self.skipped
    }

    /// Position of the first frame of the cycle that is to be written.
    pub fn first_new(&self) -> u64 {
        self.at + self.repeated
    }
}

/// The relation between JACK's frame time and positions, kept as state.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Position the next cycle is expected at (just after the newest frame).
    next: Option<u64>,
    /// position − jack_time, from the last clock reset on (wrapping).
    offset: u64,
    rate: u32,
    /// Start and length of the newest cycle (for cycle boundaries).
    last: Option<(u64, u64)>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Position just after the newest frame placed, if any cycle came yet.
    pub fn end(&self) -> Option<u64> {
        self.next
    }

    /// Length of the newest cycle (0 before the first): how much the takes
    /// hold back, so that a repeat of it can still replace it.
    pub fn newest_len(&self) -> u64 {
        self.last.map_or(0, |l| l.1)
    }

    /// The rate of the newest cycle (0 before the first).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Places one cycle.
    pub fn place(&mut self, rec: &CycleRecord) -> Placement {
        let n = rec.nframes as u64;
        let rate_change = (self.rate != 0 && rec.rate != self.rate).then_some((self.rate, rec.rate));
        if rec.rate != 0 {
            self.rate = rec.rate;
        }
        let Some(next) = self.next else {
            let at = rec.frame_time as u64;
            self.next = Some(at + n);
            self.offset = 0;
            self.last = Some((at, n));
            return Placement { at, rate_change, ..Placement::default() };
        };
        let expected = self.jack_time(next) as u32;
        let delta = rec.frame_time.wrapping_sub(expected) as i32 as i64;
        let mut p = Placement { rate_change, ..Placement::default() };
        let max_repeat = MAX_REPEAT_SECONDS * self.rate.max(1) as u64;
        if delta >= 0 {
            let missing = delta as u64;
            p.at = next + missing;
            p.overflow = (rec.unlogged_before as u64).min(missing);
            p.skipped = missing - p.overflow;
            p.uncertain = p.skipped > 0;
        } else if delta.unsigned_abs() <= max_repeat {
            // Frames already placed, delivered again: keep what is new.
            p.at = next - delta.unsigned_abs();
            p.repeated = delta.unsigned_abs().min(n);
        } else {
            // JACK's clock was reset: continue the positions, follow its
            // new frame time from here.
            p.at = next;
            p.clock_reset = true;
            self.offset = next.wrapping_sub(rec.frame_time as u64);
        }
        self.next = Some(next.max(p.at + n));
        self.last = Some((p.at, n));
        p
    }

    /// JACK's frame time (unwrapped within this clock) of a position.
    pub fn jack_time(&self, pos: u64) -> u64 {
        pos.wrapping_sub(self.offset)
    }

    /// The position of a 32-bit JACK frame time near the newest frame (within
    /// ±2^31 frames, 12 hours at 48 kHz). `None` before the first cycle.
    pub fn unwrap(&self, t: u32) -> Option<u64> {
        let base = self.next?;
        let d = t.wrapping_sub(self.jack_time(base) as u32) as i32 as i64;
        Some(base.saturating_add_signed(d))
    }

    /// The first cycle boundary at or after `pos` (strictly after with
    /// `after`), assuming cycles keep the newest cycle's length.
    pub fn boundary(&self, pos: u64, after: bool) -> u64 {
        let Some((start, n)) = self.last.filter(|c| c.1 > 0) else { return pos };
        let pos = pos + after as u64;
        if pos >= start {
            start + (pos - start).div_ceil(n) * n
        } else {
            start - ((start - pos) / n) * n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(frame_time: u32, nframes: u32) -> CycleRecord {
        CycleRecord {
            frame_time,
            nframes,
            queued: true,
            unlogged_before: 0,
            overtaken: false,
            rate: 48000,
            usecs: 0,
            transport: Default::default(),
            transport_frame: 0,
        }
    }

    #[test]
    fn continuous_cycles_follow_each_other() {
        let mut tl = Timeline::new();
        assert_eq!(tl.place(&rec(1000, 256)).at, 1000);
        let p = tl.place(&rec(1256, 256));
        assert_eq!(p, Placement { at: 1256, ..Default::default() });
        assert_eq!(tl.end(), Some(1512));
    }

    /// The measured SIGSTOP case: a 70 ms stall at period 1024 is three
    /// skipped cycles, and the offset never lingers.
    #[test]
    fn a_skip_of_any_length_is_exact_and_does_not_linger() {
        for skipped in [1u32, 2, 3, 5, 50, 48_000 / 1024 * 60] {
            let mut tl = Timeline::new();
            tl.place(&rec(0, 1024));
            let p = tl.place(&rec(1024 + skipped * 1024, 1024));
            assert_eq!(
                (p.at, p.skipped, p.overflow),
                (1024 + skipped as u64 * 1024, skipped as u64 * 1024, 0)
            );
            let p = tl.place(&rec(2048 + skipped * 1024, 1024));
            assert_eq!(p, Placement { at: 2048 + skipped as u64 * 1024, ..Default::default() });
        }
    }

    /// JACK2 asynchronous mode after an overrun: the next cycle's frame time
    /// (one cycle skipped), then the same frame time again (a repeat).
    #[test]
    fn jack2_overrun_is_a_skip_then_a_repeat() {
        let mut tl = Timeline::new();
        tl.place(&rec(120_832, 1024));
        let p = tl.place(&rec(122_880, 1024));
        assert_eq!((p.at, p.skipped, p.repeated, p.uncertain), (122_880, 1024, 0, true));
        let p = tl.place(&rec(122_880, 1024));
        assert_eq!((p.at, p.skipped, p.repeated, p.uncertain), (122_880, 0, 1024, false));
        let p = tl.place(&rec(123_904, 1024));
        assert_eq!(p, Placement { at: 123_904, ..Default::default() });
    }

    #[test]
    fn our_own_drops_are_told_apart_from_jacks() {
        let mut tl = Timeline::new();
        tl.place(&rec(0, 64));
        let mut r = rec(64 * 5, 64);
        r.unlogged_before = 128; // two cycles whose records did not fit
        let p = tl.place(&r);
        assert_eq!((p.overflow, p.skipped, p.uncertain), (128, 128, true));
        // Only our own drops: our callback ran every cycle, nothing is
        // uncertain.
        let mut r = rec(64 * 8, 64);
        r.unlogged_before = 128;
        let p = tl.place(&r);
        assert_eq!((p.overflow, p.skipped, p.uncertain), (128, 0, false));
    }

    #[test]
    fn buffer_size_changes_keep_positions() {
        let mut tl = Timeline::new();
        let mut t = 5000u32;
        for n in [256, 1024, 128, 128, 2048, 16] {
            let p = tl.place(&rec(t, n));
            assert_eq!((p.at, p.missing(), p.repeated), (t as u64, 0, 0));
            t += n;
        }
        // PipeWire skips the first cycle at a new quantum.
        let p = tl.place(&rec(t + 256, 256));
        assert_eq!((p.at, p.skipped), (t as u64 + 256, 256));
    }

    #[test]
    fn the_32_bit_frame_counter_wraps_without_a_jump() {
        let mut tl = Timeline::new();
        let start = u32::MAX - 1023;
        tl.place(&rec(start, 512));
        let p = tl.place(&rec(start.wrapping_add(512), 512));
        assert_eq!(p.at, start as u64 + 512);
        let p = tl.place(&rec(0, 512));
        assert_eq!((p.at, p.missing()), (1 << 32, 0));
        assert_eq!(tl.unwrap(100), Some((1 << 32) + 100));
        assert_eq!(tl.unwrap(u32::MAX), Some((1 << 32) - 1));
    }

    #[test]
    fn rate_changes_are_flagged() {
        let mut tl = Timeline::new();
        tl.place(&rec(0, 1024));
        let mut r = rec(3072, 1024);
        r.rate = 44100;
        let p = tl.place(&r);
        assert_eq!((p.rate_change, p.skipped), (Some((48000, 44100)), 2048));
        assert_eq!(tl.rate(), 44100);
    }

    #[test]
    fn a_clock_reset_continues_positions_and_follows_the_new_clock() {
        let mut tl = Timeline::new();
        tl.place(&rec(10_000_000, 1024));
        let p = tl.place(&rec(512, 1024));
        assert!(p.clock_reset);
        assert_eq!(p.at, 10_001_024);
        assert_eq!(tl.jack_time(p.at), 512);
        let p = tl.place(&rec(1536, 1024));
        assert_eq!((p.at, p.missing(), p.clock_reset), (10_002_048, 0, false));
        assert_eq!(tl.unwrap(2560 + 64), Some(10_003_072 + 64));
    }

    #[test]
    fn boundaries_follow_the_newest_cycle() {
        let mut tl = Timeline::new();
        tl.place(&rec(1000, 64));
        assert_eq!(tl.boundary(1000, false), 1000);
        assert_eq!(tl.boundary(1001, false), 1064);
        assert_eq!(tl.boundary(1000, true), 1064);
        assert_eq!(tl.boundary(900, false), 936);
    }

    /// Random cycle sequences with skips, overruns (skip + repeat), our own
    /// drops, buffer-size changes and the 32-bit wrap, against a reference:
    /// every delivered frame is placed at its true frame time exactly once,
    /// and the missing frames are exactly the ones never delivered.
    #[test]
    fn property_every_delivered_frame_lands_at_its_true_time() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for case in 0..500 {
            let mut tl = Timeline::new();
            // Start near the wrap in some cases.
            let t0 = if case % 3 == 0 { u32::MAX as u64 - rand(1 << 20) } else { rand(1 << 30) };
            let mut t = t0; // true (unwrapped) frame time of the next cycle
            let mut n = [16u64, 64, 128, 256, 1024, 4096][rand(6) as usize];
            let mut placed: Vec<(u64, u64)> = Vec::new(); // [from, to) written
            let mut missing = 0u64;
            let mut delivered = 0u64;
            for step in 0..200 {
                if rand(10) == 0 {
                    n = [16u64, 64, 128, 256, 1024, 4096][rand(6) as usize];
                }
                let kind = rand(12);
                let mut unlogged = 0;
                if kind == 0 {
                    t += n * (1 + rand(60)); // JACK skipped cycles
                } else if kind == 1 {
                    unlogged = n * (1 + rand(3)); // our drops, records lost
                    t += unlogged;
                }
                let r = CycleRecord {
                    frame_time: t as u32,
                    nframes: n as u32,
                    queued: true,
                    unlogged_before: unlogged as u32,
                    overtaken: false,
                    rate: 48000,
                    usecs: 0,
                    transport: Default::default(),
                    transport_frame: 0,
                };
                let p = tl.place(&r);
                assert!(!p.clock_reset, "case {case}");
                assert_eq!(
                    p.uncertain,
                    kind == 0 && step > 0,
                    "case {case}: uncertain exactly after JACK's skips"
                );
                missing += p.missing();
                let from = p.first_new();
                let to = p.at + n;
                assert_eq!(p.at - t0, t - t0, "case {case}: cycle placed away from its frame time");
                if from < to {
                    if let Some(&(_, end)) = placed.last() {
                        assert!(from >= end, "case {case}: frames written twice");
                        assert_eq!(from - end, p.missing(), "case {case}: unreported hole");
                    }
                    placed.push((from, to));
                    delivered += to - from;
                }
                if kind == 2 {
                    // An overrun: this cycle again (JACK2 async), all repeats.
                    let p = tl.place(&r);
                    assert_eq!((p.at, p.repeated, p.missing()), (t, n, 0), "case {case}");
                }
                t += n;
            }
            let span = placed.last().unwrap().1 - placed[0].0;
            assert_eq!(span, delivered + missing, "case {case}: frames neither placed nor missing");
        }
    }
}
