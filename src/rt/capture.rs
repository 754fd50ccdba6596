//! The JACK process callback: copy every port's buffer into its ring and log
//! the cycle. Real-time thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ringbuf::traits::{Observer, Producer};

use crate::rings::{CaptureRings, CycleClock, CycleRecord, Pushed, Transport};

/// Counters the callback updates and every other thread may read.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Cycles seen.
    pub cycles: AtomicU64,
    /// Frames dropped because the rings were full (our own overflow, never a
    /// JACK xrun).
    pub overflow_frames: AtomicU64,
    /// How long each callback took.
    pub callback: CallbackTimes,
    /// Frames the rings had room for after the newest cycle: the control
    /// side sees the disk thread fall behind even when it has stopped.
    pub ring_room: AtomicU64,
    /// The newest cycle the callback saw (see [`Self::last_cycle`]).
    last_cycle: AtomicU64,
    /// The callback panicked: rust-jack then asks JACK to stop calling it,
    /// and no more audio arrives while the server runs on.
    pub callback_died: std::sync::atomic::AtomicBool,
}

impl CaptureCounters {
    /// Notes the cycle the callback handles: one relaxed store
    /// (real-time safe).
    fn note_cycle(&self, frame_time: u32, nframes: u32) {
        self.last_cycle.store((frame_time as u64) << 32 | nframes as u64, Relaxed);
    }

    /// The newest cycle the callback saw (JACK frame time, frames), if any.
    /// The control side ends a take "now" at that cycle's end (or the one
    /// after), a frame it knows exactly (see [`cycle_end`]).
    pub fn last_cycle(&self) -> Option<(u32, u32)> {
        match self.last_cycle.load(Relaxed) {
            0 => None,
            c => Some(((c >> 32) as u32, c as u32)),
        }
    }
}

/// The end (exclusive JACK frame time) of the cycle that holds frame time
/// `f`, counting cycles of `n` frames from the cycle that began at `at`
/// (JACK's frame time wraps at 2^32). A command's "now" is JACK's estimate
/// of the current frame, inside the cycle being processed: it ends with
/// that cycle, which the callback may not have seen yet.
pub fn cycle_end(at: u32, n: u32, f: u32) -> u32 {
    let n = n.max(1) as i64;
    let d = f.wrapping_sub(at) as i32 as i64;
    at.wrapping_add(((d.div_euclid(n) + 1) * n) as u32)
}

/// Notes a panic unwinding out of the callback (an atomic store in `drop`:
/// real-time safe, like the rest of the unwinding path up to rust-jack's
/// `catch_unwind`).
struct DeathWatch<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Relaxed);
        }
    }
}

/// A lock-free histogram of callback durations: 1 µs buckets up to 1 ms,
/// plus the exact maximum.
#[derive(Debug)]
pub struct CallbackTimes {
    buckets: [AtomicU64; BUCKETS],
    max_ns: AtomicU64,
    /// Maximum since the last [`CallbackTimes::open_window`] (one take).
    window_max_ns: AtomicU64,
}

/// The histogram as it was when a take began (see
/// [`CallbackTimes::window_summary`]).
#[derive(Debug, Clone)]
pub struct CallbackWindow {
    counts: Vec<u64>,
}

const BUCKETS: usize = 1001;

impl Default for CallbackTimes {
    fn default() -> Self {
        CallbackTimes {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_ns: AtomicU64::new(0),
            window_max_ns: AtomicU64::new(0),
        }
    }
}

/// Percentiles of the callback's duration, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallbackSummary {
    pub cycles: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl CallbackTimes {
    /// Real-time safe: three atomic operations.
    #[inline]
    pub fn record(&self, ns: u64) {
        let b = ((ns / 1000) as usize).min(BUCKETS - 1);
        self.buckets[b].fetch_add(1, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
        self.window_max_ns.fetch_max(ns, Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// p50/p99 (bucket upper bounds, 1 µs resolution) and the exact maximum,
    /// over the client's whole life. Not real-time (control and disk
    /// threads read it).
    pub fn summary(&self) -> CallbackSummary {
        summarize(&self.counts(), self.max_ns.load(Relaxed))
    }

    /// Starts a window (a take). Not real-time: allocates the snapshot.
    pub fn open_window(&self) -> CallbackWindow {
        self.window_max_ns.store(0, Relaxed);
        CallbackWindow { counts: self.counts() }
    }

    /// The summary of the cycles since `w` was opened. Not real-time.
    pub fn window_summary(&self, w: &CallbackWindow) -> CallbackSummary {
        let now = self.counts();
        let diff: Vec<u64> = now.iter().zip(&w.counts).map(|(n, o)| n.saturating_sub(*o)).collect();
        summarize(&diff, self.window_max_ns.load(Relaxed))
    }
}

fn summarize(counts: &[u64], max_ns: u64) -> CallbackSummary {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return CallbackSummary::default();
    }
    let pct = |q: f64| {
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (i + 1) as f64;
            }
        }
        BUCKETS as f64
    };
    let max_us = max_ns as f64 / 1000.0;
    CallbackSummary { cycles: n, p50_us: pct(0.5).min(max_us), p99_us: pct(0.99).min(max_us), max_us }
}

/// The capture core: what one process cycle does, independent of JACK so it
/// can be tested without a server.
pub struct Capture {
    rings: CaptureRings,
    pub counters: Arc<CaptureCounters>,
    /// Frames dropped whole because even the cycle log was full; reported in
    /// the next record that fits.
    unlogged: u32,
}

impl Capture {
    pub fn new(rings: CaptureRings, counters: Arc<CaptureCounters>) -> Capture {
        Capture { rings, counters, unlogged: 0 }
    }

    /// See [`CaptureRings::prefault`]. Not real-time safe.
    pub fn prefault(&mut self) {
        self.rings.prefault();
    }

    /// Queues one cycle. `buffer(i)` returns port `i`'s buffer of `nframes`
    /// samples. A cycle is queued on every port or on none, so the channels
    /// can never drift apart. `frame_time_now()` is read again after the
    /// copy: if it is no longer `frame_time`, the cycle was overtaken.
    ///
    /// Real-time safe: no allocation, no lock, no syscall.
    #[inline]
    pub fn process_cycle<'a>(
        &mut self,
        frame_time: u32,
        nframes: u32,
        rate: u32,
        clock: CycleClock,
        buffer: impl Fn(usize) -> &'a [f32],
        frame_time_now: impl FnOnce() -> u32,
    ) {
        self.counters.cycles.fetch_add(1, Relaxed);
        self.counters.note_cycle(frame_time, nframes);
        let n = nframes as usize;
        // The cycle log must have room too, or the audio would be in the
        // rings with no record saying where it belongs.
        let pushed = if self.rings.cycles.vacant_len() > 0 {
            self.rings.ports.push_cycle(n, buffer)
        } else {
            Pushed::NoRoom
        };
        self.counters.ring_room.store(self.rings.ports.room_left() as u64, Relaxed);
        let fits = pushed != Pushed::NoRoom;
        if !fits {
            self.counters.overflow_frames.fetch_add(n as u64, Relaxed);
        }
        // A port buffer shorter than the cycle is reported as a torn gap.
        let short = pushed == Pushed::Short;
        // The frame time after the copies: the buffer reads above come first
        // (a load is not reordered before earlier loads on x86; the fence
        // keeps the compiler from doing it). JACK advances its frame time
        // before it wakes the clients of the next cycle, so any write of the
        // next cycle that the copy could have seen shows here.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let overtaken = short || frame_time_now() != frame_time;
        let record = CycleRecord {
            frame_time,
            nframes,
            queued: fits,
            unlogged_before: self.unlogged,
            overtaken,
            rate,
            usecs: clock.usecs,
            transport: clock.transport,
            transport_frame: clock.transport_frame,
        };
        if self.rings.cycles.try_push(record).is_ok() {
            self.unlogged = 0;
        } else {
            self.unlogged = self.unlogged.saturating_add(nframes);
        }
    }
}

/// The [`jack::ProcessHandler`] wrapping [`Capture`] and the client's input
/// ports. Port buffers are only reachable through the `ProcessScope`.
pub struct JackCapture {
    pub ports: Vec<jack::Port<jack::AudioIn>>,
    pub core: Capture,
    /// The same counters as the core's: where a panic is noted.
    pub counters: Arc<CaptureCounters>,
    /// The MIDI control input (`--midi`).
    pub midi: Option<super::midi::MidiControl>,
}

impl jack::ProcessHandler for JackCapture {
    /// Real-time thread. Runs inside the allocation guard in debug builds.
    fn process(&mut self, client: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        // A monotonic clock read at entry and exit (vDSO, no syscall) is the
        // only thing the instrumentation adds to this thread.
        let entry = std::time::Instant::now();
        let _watch = DeathWatch(&self.counters.callback_died);
        super::guard(|| {
            // The frame time and the audio read in one callback belong
            // together (measured on JACK2 and PipeWire; see disk::timeline).
            let frame_time = ps.last_frame_time();
            // A read of a field JACK keeps for the client (JACK2: engine
            // control in shared memory; PipeWire: the rate of the cycle being
            // processed), no syscall.
            let rate = client.sample_rate();
            // JACK's clock at this cycle's start: shared-memory reads, no
            // syscall, no allocation (the error values are static).
            let usecs = match ps.cycle_times() {
                Ok(c) if c.current_frames == frame_time => c.current_usecs,
                _ => 0,
            };
            // The transport as it is for this whole cycle: a read of JACK's
            // shared state (two atomic counts for the crate's liveness
            // check), real-time safe by JACK's API.
            let (transport, transport_frame) = match client.transport().query() {
                Ok(t) => (
                    match t.state {
                        jack::TransportState::Rolling => Transport::Rolling,
                        jack::TransportState::Starting => Transport::Starting,
                        jack::TransportState::Stopped => Transport::Stopped,
                    },
                    t.pos.frame(),
                ),
                Err(_) => (Transport::Stopped, 0),
            };
            let clock = CycleClock { usecs, transport, transport_frame };
            if let Some(m) = &mut self.midi {
                m.process(ps, frame_time);
            }
            let ports = &self.ports;
            self.core.process_cycle(
                frame_time,
                ps.n_frames(),
                rate,
                clock,
                |i| ports[i].as_slice(ps),
                || ps.last_frame_time(),
            );
        });
        self.core.counters.callback.record(entry.elapsed().as_nanos() as u64);
        jack::Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings;

    /// A panic unwinding through the callback's watch is noted; a normal
    /// return is not.
    #[test]
    fn a_panic_in_the_callback_is_noted() {
        let counters = CaptureCounters::default();
        drop(DeathWatch(&counters.callback_died));
        assert!(!counters.callback_died.load(Relaxed));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _watch = DeathWatch(&counters.callback_died);
            panic!("in the callback");
        }));
        assert!(r.is_err());
        assert!(counters.callback_died.load(Relaxed));
    }
    use ringbuf::traits::Consumer;

    #[test]
    fn a_cycle_end_is_the_end_of_the_cycle_that_holds_the_frame() {
        // The cycle seen last, the one after it, one before; across the wrap.
        assert_eq!(cycle_end(1024, 256, 1024), 1280);
        assert_eq!(cycle_end(1024, 256, 1279), 1280);
        assert_eq!(cycle_end(1024, 256, 1280), 1536);
        assert_eq!(cycle_end(1024, 256, 1023), 1024);
        assert_eq!(cycle_end(u32::MAX - 99, 256, 100), 156);
        assert_eq!(cycle_end(u32::MAX - 99, 256, u32::MAX), 156);
    }

    #[test]
    fn queues_whole_cycles_on_every_port_or_none() {
        let (cap, mut disk) = rings::allocate(3, 8192).unwrap();
        let counters = Arc::new(CaptureCounters::default());
        let mut c = Capture::new(cap, counters.clone());
        let bufs: Vec<Vec<f32>> = (0..3).map(|p| vec![p as f32; 4096]).collect();
        // Fill the rings: 8192 frames fit (two cycles), the third does not.
        for k in 0..3u32 {
            crate::rt::guard(|| {
                c.process_cycle(k * 4096, 4096, 48000, Default::default(), |i| &bufs[i], || k * 4096)
            });
        }
        assert_eq!(counters.overflow_frames.load(Relaxed), 4096);
        let recs: Vec<CycleRecord> = disk.cycles.pop_iter().collect();
        assert_eq!(recs.len(), 3);
        assert!(recs[0].queued && recs[1].queued && !recs[2].queued);
        assert_eq!(recs[2].frame_time, 8192);
        for p in 0..3 {
            let (a, b) = disk.ports.slices(p);
            assert_eq!(a.len() + b.len(), 8192, "port {p}");
        }
    }

    /// Cycles of odd sizes wrap the rings many times: every port's ring
    /// reads back exactly the samples pushed, in order (the push does not
    /// read the consumer's index, so this is what shows it right).
    #[test]
    fn pushes_wrap_the_rings_sample_exact() {
        let (cap, mut disk) = rings::allocate(2, 8192).unwrap();
        let mut c = Capture::new(cap, Arc::new(CaptureCounters::default()));
        let (mut t, mut next_read) = (0u32, 0u32);
        for n in (1..200u32).map(|k| 1 + (k * 977) % 3001) {
            let bufs: Vec<Vec<f32>> =
                (0..2).map(|p| (0..n).map(|i| ((t + i) * 2 + p) as f32).collect()).collect();
            crate::rt::guard(|| c.process_cycle(t, n, 48000, Default::default(), |i| &bufs[i], || t));
            t += n;
            while let Some(rec) = disk.cycles.try_pop() {
                assert!(rec.queued, "cycle at {} dropped", rec.frame_time);
                for p in 0..2 {
                    let (a, b) = disk.ports.slices(p);
                    let got: Vec<f32> = a.iter().chain(b).take(rec.nframes as usize).copied().collect();
                    let want: Vec<f32> =
                        (0..rec.nframes).map(|i| ((next_read + i) * 2 + p as u32) as f32).collect();
                    assert_eq!(got, want, "port {p} at {next_read}");
                }
                disk.ports.release(rec.nframes as usize);
                next_read += rec.nframes;
            }
        }
        assert_eq!(next_read, t);
    }

    /// A port buffer shorter than the cycle keeps the rings in step (the
    /// rest is silence) and the cycle is flagged, so it is a reported gap.
    #[test]
    fn a_short_port_buffer_keeps_the_rings_in_step_and_is_flagged() {
        let (cap, mut disk) = rings::allocate(2, 8192).unwrap();
        let mut c = Capture::new(cap, Arc::new(CaptureCounters::default()));
        let (full, short) = (vec![1.0f32; 256], vec![1.0f32; 100]);
        crate::rt::guard(|| {
            c.process_cycle(0, 256, 48000, Default::default(), |i| if i == 0 { &full } else { &short }, || 0)
        });
        let rec = disk.cycles.try_pop().unwrap();
        assert!(rec.queued && rec.overtaken, "{rec:?}");
        assert!((0..2).all(|p| {
            let (a, b) = disk.ports.slices(p);
            a.len() + b.len() == 256
        }));
    }

    #[test]
    fn callback_percentiles_come_from_the_histogram() {
        let t = CallbackTimes::default();
        for us in 1..=100u64 {
            crate::rt::guard(|| t.record(us * 1000 - 500));
        }
        t.record(5_000_000); // one 5 ms outlier
        let s = t.summary();
        assert_eq!(s.cycles, 101);
        assert_eq!(s.p50_us, 51.0);
        assert_eq!(s.p99_us, 100.0);
        assert_eq!(s.max_us, 5000.0);
        // A window sees only its own cycles and its own maximum.
        let w = t.open_window();
        assert_eq!(t.window_summary(&w), CallbackSummary::default());
        t.record(7_500);
        t.record(2_500);
        let s = t.window_summary(&w);
        assert_eq!((s.cycles, s.p50_us, s.max_us), (2, 3.0, 7.5));
    }

    #[test]
    fn a_full_cycle_log_is_reported_in_the_next_record() {
        let (cap, mut disk) = rings::allocate(1, 8192).unwrap();
        let counters = Arc::new(CaptureCounters::default());
        let mut c = Capture::new(cap, counters);
        let buf = [0.0f32; 16];
        let slots = disk.cycles.vacant_len();
        let mut t = 0;
        for _ in 0..slots + 2 {
            c.process_cycle(t, 16, 48000, Default::default(), |_| &buf, || t);
            t += 16;
        }
        // Drain the log and some audio, then one more cycle.
        let n = disk.cycles.pop_iter().count();
        assert_eq!(n, slots);
        disk.ports.release(disk.ports.occupied());
        c.process_cycle(t, 16, 48000, Default::default(), |_| &buf, || t);
        let rec = disk.cycles.try_pop().unwrap();
        assert_eq!(rec.unlogged_before, 32);
        assert_eq!(rec.frame_time, t);
    }
}
