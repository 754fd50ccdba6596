//! The disk thread: drains the rings in cycle order and writes takes.
//!
//! It keeps JACK's timeline: where a cycle was dropped (rings full) or JACK's
//! frame time jumped (skipped cycles), it writes exactly that many frames of
//! silence on every channel and records the gap. Everything here may block
//! on I/O; nothing here runs on the real-time thread.

pub mod take;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};
use ringbuf::traits::Consumer;

use crate::rings::{CycleRecord, DiskRings};
use crate::wav::WavError;
pub use take::{FileReport, Layout, Take, TakeSpec};

/// How often the headers are refreshed (the crash-loss bound).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// A jump of JACK's frame time smaller than this many periods is treated as
/// timer jitter, not as lost cycles. JACK2 in asynchronous mode lets a client
/// that runs late read the *next* cycle's frame time, so around an xrun the
/// reading can be a period ahead (and later fall back) while no cycle was
/// missed: measured on the dummy backend, the audio on both sides of such a
/// "jump" is continuous. Genuine timeline jumps (driver restarts, freewheel)
/// are many periods long.
pub const JITTER_PERIODS: i64 = 4;

/// Why frames in a take are silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The rings were full: the disk did not keep up (our loss).
    Overflow,
    /// JACK's frame time jumped: the server skipped cycles (an xrun).
    JackSkipped,
}

impl std::fmt::Display for GapCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Overflow => "ring buffer overflow (disk too slow)",
            Self::JackSkipped => "JACK skipped cycles (xrun)",
        })
    }
}

/// A run of silence written in place of frames that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// Frame offset in the take.
    pub at: u64,
    pub frames: u64,
    pub cause: GapCause,
}

/// When a take ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// After the cycle that contains this JACK frame time.
    Frame(u32),
    /// Once the rings hold nothing more (JACK is gone).
    Drained,
}

pub enum DiskCommand {
    /// Record into `take`, starting with the first cycle whose frame time is
    /// at or after `start_at` (any cycle if `None`).
    Start {
        take: Box<Take>,
        start_at: Option<u32>,
    },
    Stop(StopAt),
    /// Finish any take and end the thread.
    Quit,
}

/// What happened to a take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TakeReport {
    pub name: String,
    pub files: Vec<FileReport>,
    /// Frames per channel in the take.
    pub frames: u64,
    pub sample_rate: u32,
    /// JACK frame time of the first frame (the bext time_reference).
    pub first_frame_time: Option<u64>,
    pub started: Option<String>,
    pub gaps: Vec<Gap>,
    /// Cycles whose JACK frame time disagreed with the sample count by less
    /// than [`JITTER_PERIODS`] (xrun artifacts; no silence inserted).
    pub timer_jitter: u64,
    /// Set when the take ended because of an error; the files are finalized
    /// up to the last frame written.
    pub error: Option<String>,
}

impl TakeReport {
    pub fn lost_frames(&self, cause: GapCause) -> u64 {
        self.gaps.iter().filter(|g| g.cause == cause).map(|g| g.frames).sum()
    }
}

pub enum DiskEvent {
    Started { name: String, first_frame_time: u64 },
    Finished(TakeReport),
}

/// Live numbers for the status line; written by the disk thread only.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub recording: AtomicBool,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Largest |sample| since the reader last swapped it out (f32 bits).
    pub peak: AtomicU32,
    pub overflow_frames: AtomicU64,
    pub skipped_frames: AtomicU64,
}

impl DiskStats {
    /// Peak since the last call, linear full scale = 1.0.
    pub fn take_peak(&self) -> f32 {
        f32::from_bits(self.peak.swap(0, Relaxed))
    }
}

struct Active {
    take: Take,
    start_at: Option<u32>,
    first_frame_time: Option<u64>,
    started: Option<DateTime<Local>>,
    gaps: Vec<Gap>,
    stop: Option<StopAt>,
    last_checkpoint: Instant,
    timer_jitter: u64,
}

/// The disk thread's state. [`DiskWriter::run`] is its body.
pub struct DiskWriter {
    rings: DiskRings,
    commands: Receiver<DiskCommand>,
    events: Sender<DiskEvent>,
    stats: Arc<DiskStats>,
    scratch: Vec<Vec<f32>>,
    /// Unwrapped JACK frame time the next cycle should have.
    next_frame: Option<u64>,
    active: Option<Active>,
    /// Frame-time readings that disagreed with the sample count (all time).
    timer_jitter: u64,
}

impl DiskWriter {
    pub fn new(
        rings: DiskRings,
        commands: Receiver<DiskCommand>,
        events: Sender<DiskEvent>,
        stats: Arc<DiskStats>,
    ) -> Self {
        let scratch = vec![Vec::new(); rings.ports.len()];
        DiskWriter {
            rings,
            commands,
            events,
            stats,
            scratch,
            next_frame: None,
            active: None,
            timer_jitter: 0,
        }
    }

    /// Runs until [`DiskCommand::Quit`] or until the command sender is gone.
    pub fn run(mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(DiskCommand::Start { take, start_at }) => {
                    if self.active.is_some() {
                        self.finish(None); // never two takes at once
                    }
                    self.stats.frames.store(take.frames(), Relaxed);
                    self.active = Some(Active {
                        take: *take,
                        start_at,
                        first_frame_time: None,
                        started: None,
                        gaps: Vec::new(),
                        stop: None,
                        last_checkpoint: Instant::now(),
                        timer_jitter: 0,
                    });
                    self.stats.recording.store(true, Relaxed);
                    continue;
                }
                Ok(DiskCommand::Stop(at)) => {
                    if let Some(a) = &mut self.active {
                        a.stop = Some(at);
                    }
                    continue;
                }
                Ok(DiskCommand::Quit) | Err(TryRecvError::Disconnected) => {
                    self.drain_cycles();
                    if self.active.is_some() {
                        self.finish(None);
                    }
                    return;
                }
                Err(TryRecvError::Empty) => {}
            }
            let worked = self.drain_cycles();
            if let Some(a) = &self.active {
                if a.stop == Some(StopAt::Drained) {
                    self.finish(None);
                    continue;
                }
            }
            self.maybe_checkpoint();
            if !worked {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Handles every cycle in the log; returns whether there was any.
    fn drain_cycles(&mut self) -> bool {
        let mut any = false;
        while let Some(rec) = self.rings.cycles.try_pop() {
            any = true;
            self.handle_cycle(rec);
        }
        any
    }

    fn handle_cycle(&mut self, rec: CycleRecord) {
        let n = rec.nframes as usize;
        // Take this cycle's audio out of every ring, so the rings stay in step
        // whatever happens to it next.
        if rec.queued {
            for (ring, buf) in self.rings.ports.iter_mut().zip(&mut self.scratch) {
                buf.resize(n, 0.0);
                let got = ring.pop_slice(buf);
                debug_assert_eq!(got, n, "port ring out of step with the cycle log");
            }
        }
        // Our own drops are known exactly; JACK's timer is only trusted for
        // large jumps (see `JITTER_PERIODS`).
        let (t, unlogged, jump) = self.place_cycle(&rec);
        let Some(a) = &mut self.active else { return };
        if a.first_frame_time.is_none() {
            if let Some(start) = a.start_at {
                let ahead = rec.frame_time.wrapping_sub(start) as i32;
                if ahead < 0 {
                    return; // cycle before the start command
                }
            }
            let wall: DateTime<Local> = (SystemTime::now() - age_of(rec.usecs)).into();
            a.first_frame_time = Some(t);
            a.started = Some(wall);
            if let Err(e) = a.take.set_origin(t, wall) {
                self.finish(Some(e));
                return;
            }
            let _ = self.events.send(DiskEvent::Started { name: a.take.name.clone(), first_frame_time: t });
        } else {
            for (len, cause) in [(unlogged, GapCause::Overflow), (jump, GapCause::JackSkipped)] {
                let len = len.min(a.take.remaining());
                if len == 0 {
                    continue;
                }
                a.gaps.push(Gap { at: a.take.frames(), frames: len, cause });
                if let Err(e) = a.take.write(len as usize, |_| None) {
                    self.finish(Some(e));
                    return;
                }
            }
        }
        // The cycle itself.
        let len = (n as u64).min(a.take.remaining()) as usize;
        if len > 0 {
            let res = if rec.queued {
                let peak = self.scratch.iter().flat_map(|b| &b[..len]).fold(0f32, |m, &x| m.max(x.abs()));
                self.stats.peak.fetch_max(peak.to_bits(), Relaxed);
                let scratch = &self.scratch;
                a.take.write(len, |c| Some(&scratch[c][..]))
            } else {
                a.gaps.push(Gap { at: a.take.frames(), frames: len as u64, cause: GapCause::Overflow });
                a.take.write(len, |_| None)
            };
            if let Err(e) = res {
                self.finish(Some(e));
                return;
            }
        }
        self.publish();
        let a = self.active.as_ref().expect("active take");
        let stop_here = match a.stop {
            Some(StopAt::Frame(f)) => (f.wrapping_sub(rec.frame_time) as i32) < rec.nframes as i32,
            _ => false,
        };
        if stop_here || a.take.remaining() == 0 {
            self.finish(None);
        }
    }

    /// Places a cycle on the take's timeline: returns its (unwrapped) frame
    /// time, the frames dropped unlogged before it, and any real JACK jump.
    fn place_cycle(&mut self, rec: &CycleRecord) -> (u64, u64, u64) {
        let unlogged = rec.unlogged_before as u64;
        let Some(expected) = self.next_frame.map(|e| e + unlogged) else {
            self.next_frame = Some(rec.frame_time as u64 + rec.nframes as u64);
            return (rec.frame_time as u64, 0, 0);
        };
        let delta = rec.frame_time.wrapping_sub(expected as u32) as i32 as i64;
        let (t, jump) = if delta >= JITTER_PERIODS * rec.nframes as i64 {
            (expected + delta as u64, delta as u64)
        } else {
            if delta != 0 {
                let at = self.active.as_ref().map(|a| a.take.frames());
                tracing::debug!(delta, ?at, "frame time jitter");
                self.timer_jitter += 1;
                if let Some(a) = &mut self.active {
                    a.timer_jitter += 1;
                }
                if self.timer_jitter == 1 {
                    tracing::info!(
                        delta,
                        "JACK frame time jittered around an xrun; keeping the sample count as the timeline"
                    );
                }
            }
            (expected, 0)
        };
        self.next_frame = Some(t + rec.nframes as u64);
        (t, unlogged, jump)
    }

    fn publish(&self) {
        if let Some(a) = &self.active {
            self.stats.frames.store(a.take.frames(), Relaxed);
            self.stats.bytes.store(a.take.bytes(), Relaxed);
            let lost = |c| a.gaps.iter().filter(|g| g.cause == c).map(|g| g.frames).sum::<u64>();
            self.stats.overflow_frames.store(lost(GapCause::Overflow), Relaxed);
            self.stats.skipped_frames.store(lost(GapCause::JackSkipped), Relaxed);
        }
    }

    fn maybe_checkpoint(&mut self) {
        let Some(a) = &mut self.active else { return };
        if a.last_checkpoint.elapsed() < CHECKPOINT_INTERVAL {
            return;
        }
        a.last_checkpoint = Instant::now();
        if let Err(e) = a.take.checkpoint() {
            self.finish(Some(e));
        }
    }

    /// Ends the active take: finalize every file and report.
    fn finish(&mut self, error: Option<WavError>) {
        let Some(a) = self.active.take() else { return };
        self.stats.recording.store(false, Relaxed);
        let name = a.take.name.clone();
        let sample_rate = a.take.spec.sample_rate;
        let frames = a.take.frames();
        let (files, fin_err) = a.take.finalize();
        let error = error.or(fin_err).map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::error!(take = %name, "take ended by an error: {e}");
        }
        let report = TakeReport {
            name,
            files,
            frames,
            sample_rate,
            first_frame_time: a.first_frame_time,
            started: a.started.map(|t| t.to_rfc3339()),
            gaps: a.gaps,
            timer_jitter: a.timer_jitter,
            error,
        };
        let _ = self.events.send(DiskEvent::Finished(report));
    }
}

/// How long ago JACK's microsecond clock read `usecs`. JACK2 on Linux uses
/// CLOCK_MONOTONIC for it; anything implausible counts as "just now".
fn age_of(usecs: u64) -> Duration {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else {
        return Duration::ZERO;
    };
    let now = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    match now.checked_sub(usecs) {
        Some(age) if usecs > 0 && age < 10_000_000 => Duration::from_micros(age),
        _ => Duration::ZERO,
    }
}

/// Spawns the disk thread.
pub fn spawn(writer: DiskWriter) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("capstan-disk".into()).spawn(move || writer.run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings;
    use crate::rt::{Capture, CaptureCounters};
    use crate::wav::SampleFormat;
    use std::sync::mpsc::channel;

    fn spec(dir: &std::path::Path, channels: usize, max: Option<u64>) -> TakeSpec {
        TakeSpec {
            dir: dir.to_owned(),
            project: "t".into(),
            file: None,
            layout: Layout::Interleaved,
            format: SampleFormat::F32,
            sample_rate: 48000,
            port_names: (1..=channels).map(|i| format!("in_{i}")).collect(),
            max_frames: max,
            lead_in_silence: 0,
        }
    }

    /// Feeds cycles through the real capture core and disk writer (no JACK):
    /// a skipped cycle and an overflowed cycle both become silence of exactly
    /// the right length, and the audio around them stays aligned.
    #[test]
    fn gaps_become_aligned_silence_and_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, disk) = rings::allocate(2, 8192);
        let counters = Arc::new(CaptureCounters::default());
        let mut capture = Capture::new(cap, counters.clone());
        let (ctx, crx) = channel();
        let (etx, erx) = channel();
        let w = DiskWriter::new(disk, crx, etx, Arc::new(DiskStats::default()));
        let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
        ctx.send(DiskCommand::Start { take: Box::new(take), start_at: None }).unwrap();
        drop(ctx);
        let signal = |t: u32, c: usize| (t % 100_000) as f32 + c as f32 * 0.5;
        let cycle = |t: u32, n: u32| -> Vec<Vec<f32>> {
            (0..2).map(|c| (0..n).map(|i| signal(t + i, c)).collect()).collect()
        };
        // 1000, 1064, [5 cycles skipped by JACK], 1448, then 8100 frames that
        // do not fit in the rings, then 64 more (one period late: jitter).
        for (t, n) in [(1000u32, 64u32), (1064, 64), (1448, 64), (1512, 8100), (9612 + 64, 64)] {
            let b = cycle(t, n);
            capture.process_cycle(t, 0, n, |i| &b[i]);
        }
        assert_eq!(counters.overflow_frames.load(Relaxed), 8100);
        w.run();
        let DiskEvent::Started { first_frame_time, .. } = erx.recv().unwrap() else { panic!() };
        assert_eq!(first_frame_time, 1000);
        let DiskEvent::Finished(rep) = erx.recv().unwrap() else { panic!() };
        assert_eq!(rep.frames, 64 * 4 + 320 + 8100);
        assert_eq!(
            rep.gaps,
            vec![
                Gap { at: 128, frames: 320, cause: GapCause::JackSkipped },
                Gap { at: 512, frames: 8100, cause: GapCause::Overflow }
            ]
        );
        assert_eq!(rep.timer_jitter, 1);
        let mut r = hound::WavReader::open(&rep.files[0].path).unwrap();
        let s: Vec<f32> = r.samples::<f32>().map(|x| x.unwrap()).collect();
        for i in 0..rep.frames as usize {
            let in_gap = (128..448).contains(&i) || (512..512 + 8100).contains(&i);
            for c in 0..2 {
                // The last cycle came one period "late" (jitter): it follows on.
                let t = if i >= 8612 { 9676 + i as u32 - 8612 } else { 1000 + i as u32 };
                let want = if in_gap { 0.0 } else { signal(t, c) };
                assert_eq!(s[i * 2 + c], want, "frame {i} ch {c}");
            }
        }
    }
}
