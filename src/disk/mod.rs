//! The disk thread: drains the rings in cycle order and writes takes.
//!
//! It keeps JACK's timeline: where a cycle was dropped (rings full) or JACK's
//! frame time jumped (skipped cycles), it writes exactly that many frames of
//! silence on every channel and records the gap. Everything here may block
//! on I/O; nothing here runs on the real-time thread.

mod finalizer;
pub mod take;
pub mod timeline;
#[cfg(test)]
mod timeline_writer_tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};
use ringbuf::traits::{Consumer, Observer};

use crate::manifest::RtStats;
use crate::rings::{CycleRecord, DiskRings};
use crate::rt::capture::CallbackWindow;
use crate::rt::CaptureCounters;
use crate::wav::WavError;
pub use take::{FileReport, Layout, Take, TakeSpec};
use timeline::{Placement, Timeline};

/// How often the headers are refreshed (the crash-loss bound).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// A run of silence this long or longer is written sparse (the file is
/// extended without writing zeros): a long jump in JACK's timeline costs no
/// disk bandwidth.
const SPARSE_SILENCE_FRAMES: u64 = 1 << 16;

/// Why frames in a take are silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The rings were full: the disk did not keep up (our loss).
    Overflow,
    /// JACK's frame time jumped: the server skipped cycles (an xrun).
    JackSkipped,
    /// JACK began the next cycle while the callback was still copying this
    /// one (an xrun in JACK2's asynchronous mode): the buffers may mix two
    /// cycles, so the cycle is not used.
    Torn,
}

impl std::fmt::Display for GapCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Overflow => "ring buffer overflow (disk too slow)",
            Self::JackSkipped => "JACK skipped cycles (xrun)",
            Self::Torn => "JACK overtook the cycle while it was copied (xrun)",
        })
    }
}

/// A run of silence written in place of frames that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    /// Frame offset in the take.
    pub at: u64,
    pub frames: u64,
    pub cause: GapCause,
}

/// When a take ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// With the last frame of the cycle that contains this JACK frame time.
    Frame(u32),
    /// Once the rings hold nothing more (JACK is gone).
    Drained,
}

pub enum DiskCommand {
    /// Record into `take`, from the first cycle boundary at or after
    /// `start_at` (the next cycle if `None`), reaching `preroll` frames into
    /// the past if the history holds them.
    Start {
        take: Box<Take>,
        start_at: Option<u32>,
        preroll: u64,
    },
    Stop(StopAt),
    /// End the take with what has arrived because of `reason` (JACK is
    /// gone): the manifest says it failed and why.
    Abort(String),
    /// End the running take with the cycle containing `at`; `next` starts on
    /// the very next frame (no frame lost or repeated between them).
    Rotate {
        next: Box<Take>,
        at: u32,
    },
    /// Finish any take and end the thread.
    Quit,
}

/// One file set of a take at one sample rate. A take has several when the
/// server's rate (or clock) changed while it ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentReport {
    pub name: String,
    pub files: Vec<FileReport>,
    pub frames: u64,
    pub sample_rate: u32,
    /// JACK frame time of the segment's first frame.
    pub first_frame_time: Option<u64>,
    /// Gaps, at frame offsets in this segment.
    pub gaps: Vec<Gap>,
}

/// What happened to a take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TakeReport {
    pub name: String,
    /// Every file of every segment.
    pub files: Vec<FileReport>,
    /// Frames per channel in the take (all segments).
    pub frames: u64,
    /// The first segment's rate.
    pub sample_rate: u32,
    /// JACK frame time of the first frame (the bext time_reference).
    pub first_frame_time: Option<u64>,
    pub started: Option<String>,
    /// Every gap, at frame offsets in the take (segments follow each other).
    pub gaps: Vec<Gap>,
    /// Frames JACK delivered a second time (JACK2 runs a late client twice on
    /// one frame time): written once, from the newer clean copy.
    pub repeated_frames: u64,
    /// The take's segments, when the rate or JACK's clock changed during it
    /// (empty for a take in one piece).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentReport>,
    /// The take that continues this one (a rotation), if one began: it runs
    /// even if finalizing this one failed.
    #[serde(skip)]
    pub rotated_into: Option<String>,
    /// Set when the take ended because of an error; the files are finalized
    /// up to the last frame written.
    pub error: Option<String>,
    /// The OS error kind behind `error` (e.g. "StorageFull"), if any.
    pub error_kind: Option<String>,
}

impl TakeReport {
    /// Makes the report (which describes the last segment) the whole take's:
    /// files, frames and gaps of every segment, in order.
    fn absorb_segments(&mut self, mut earlier: Vec<SegmentReport>, last_first: Option<u64>) {
        earlier.push(SegmentReport {
            name: self.name.clone(),
            files: self.files.clone(),
            frames: self.frames,
            sample_rate: self.sample_rate,
            first_frame_time: last_first,
            gaps: self.gaps.clone(),
        });
        let first = &earlier[0];
        self.name = first.name.clone();
        self.sample_rate = first.sample_rate;
        let mut offset = 0;
        self.files.clear();
        self.gaps.clear();
        for seg in &earlier {
            self.files.extend(seg.files.iter().cloned());
            self.gaps.extend(seg.gaps.iter().map(|g| Gap { at: g.at + offset, ..*g }));
            offset += seg.frames;
        }
        self.frames = offset;
        self.segments = earlier;
    }

    /// The take's length in seconds (segments may differ in rate).
    pub fn seconds(&self) -> f64 {
        if self.segments.is_empty() {
            return self.frames as f64 / self.sample_rate.max(1) as f64;
        }
        self.segments.iter().map(|s| s.frames as f64 / s.sample_rate.max(1) as f64).sum()
    }

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
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Largest |sample| since the reader last swapped it out (f32 bits).
    pub peak: AtomicU32,
    pub overflow_frames: AtomicU64,
    pub skipped_frames: AtomicU64,
    /// Most frames a port ring has held when the disk thread came to drain it.
    pub ring_high_water: AtomicU64,
    pub ring_capacity: AtomicU64,
    /// Write batches (history → take files) and their durations.
    pub write_batches: AtomicU64,
    pub write_total_ns: AtomicU64,
    pub write_max_ns: AtomicU64,
}

/// The disk side's numbers, for summaries and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiskSummary {
    pub ring_high_water_frames: u64,
    pub ring_high_water_percent: f64,
    pub write_batches: u64,
    pub write_mean_us: f64,
    pub write_max_us: f64,
}

impl DiskStats {
    /// Ring and write numbers start afresh with each take.
    fn reset_take(&self) {
        self.ring_high_water.store(0, Relaxed);
        self.write_batches.store(0, Relaxed);
        self.write_total_ns.store(0, Relaxed);
        self.write_max_ns.store(0, Relaxed);
    }

    pub fn summary(&self) -> DiskSummary {
        let hw = self.ring_high_water.load(Relaxed);
        let cap = self.ring_capacity.load(Relaxed).max(1);
        let n = self.write_batches.load(Relaxed);
        DiskSummary {
            ring_high_water_frames: hw,
            ring_high_water_percent: 100.0 * hw as f64 / cap as f64,
            write_batches: n,
            write_mean_us: self.write_total_ns.load(Relaxed) as f64 / n.max(1) as f64 / 1000.0,
            write_max_us: self.write_max_ns.load(Relaxed) as f64 / 1000.0,
        }
    }

    /// Peak since the last call, linear full scale = 1.0.
    pub fn take_peak(&self) -> f32 {
        f32::from_bits(self.peak.swap(0, Relaxed))
    }
}

/// The last stretch of audio, kept in memory for pre-roll and for starts
/// that must reach back to a frame the disk thread has already passed. One
/// fixed ring per channel, all sharing one head and length, so any range is
/// at most two slices with the same split on every channel (no reshuffling).
struct History {
    chans: Vec<Vec<f32>>,
    /// Index of the oldest frame in every channel's ring.
    head: usize,
    len: usize,
    /// Unwrapped frame time just after the newest frame.
    end: u64,
    cap: usize,
}

impl History {
    fn new(channels: usize, cap: usize) -> History {
        History { chans: vec![vec![0.0; cap]; channels], head: 0, len: 0, end: 0, cap }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn start(&self) -> u64 {
        self.end - self.len as u64
    }

    /// Overwrites the frames at positions `[pos, pos + n)`, if the history
    /// holds them, with each channel's samples `data[c][offset..offset + n]`.
    fn overwrite(&mut self, pos: u64, n: usize, data: &[Vec<f32>], offset: usize) -> bool {
        if pos < self.start() || pos + n as u64 > self.end {
            return false;
        }
        let at = (self.head + (pos - self.start()) as usize) % self.cap;
        self.fill_ring(at, n, Some((data, offset)));
        true
    }

    /// Writes `n` frames into every channel's ring from ring index `at`
    /// (wrapping): each channel's samples from `offset` on, or silence.
    fn fill_ring(&mut self, at: usize, n: usize, data: Option<(&[Vec<f32>], usize)>) {
        let first = n.min(self.cap - at);
        for (c, ring) in self.chans.iter_mut().enumerate() {
            match data {
                Some((d, offset)) => {
                    let src = &d[c][offset..offset + n];
                    ring[at..at + first].copy_from_slice(&src[..first]);
                    ring[..n - first].copy_from_slice(&src[first..]);
                }
                None => {
                    ring[at..at + first].fill(0.0);
                    ring[..n - first].fill(0.0);
                }
            }
        }
    }

    /// Forgets everything; the next frame is at `end`.
    fn clear(&mut self, end: u64) {
        self.len = 0;
        self.end = end;
    }

    /// Appends `n` frames at time `t`: each channel's samples from `offset`
    /// on (`data` None: silence).
    fn push(&mut self, t: u64, n: usize, data: Option<(&[Vec<f32>], usize)>) {
        if t != self.end {
            self.len = 0;
        }
        // Only the newest `cap` frames can be kept.
        let skip = n.saturating_sub(self.cap);
        let m = n - skip;
        let tail = (self.head + self.len) % self.cap;
        self.fill_ring(tail, m, data.map(|(d, offset)| (d, offset + skip)));
        let overflow = (self.len + m).saturating_sub(self.cap);
        self.head = (self.head + overflow) % self.cap;
        self.len = self.len + m - overflow;
        self.end = t + n as u64;
    }

    /// The frames `[from, from + n)` (offsets from the oldest) of every
    /// channel, as one or two runs of slices.
    fn runs(&self, from: usize, n: usize) -> Vec<Vec<&[f32]>> {
        let start = (self.head + from) % self.cap;
        let first = n.min(self.cap - start);
        let mut runs = vec![self.chans.iter().map(|r| &r[start..start + first]).collect::<Vec<_>>()];
        if first < n {
            runs.push(self.chans.iter().map(|r| &r[..n - first]).collect());
        }
        runs
    }
}

struct Active {
    take: Take,
    /// Unwrapped frame time the take starts at, until it has started.
    want_first: Option<u64>,
    start_at: Option<u32>,
    preroll: u64,
    first_frame_time: Option<u64>,
    /// Position (see [`Timeline`]) of the take's next frame (its write cursor).
    cursor: u64,
    started: Option<DateTime<Local>>,
    /// Gaps of the current segment.
    gaps: Vec<Gap>,
    stop: Option<StopAt>,
    next: Option<Box<Take>>,
    last_checkpoint: Instant,
    repeated: u64,
    /// `repeated` when the current segment began.
    repeated_before: u64,
    /// Segments already finished (rate or clock changes).
    segments: Vec<SegmentReport>,
    /// JACK frame time of the current segment's first frame.
    segment_first: Option<u64>,
    /// Why the take was cut short from outside (JACK gone), if it was.
    abort: Option<String>,
    xruns_at_start: u64,
    overflow_at_start: u64,
    callback_window: Option<CallbackWindow>,
}

/// How long the disk thread waits when there was nothing to drain…
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// …and while a take waits for its first or last frame.
const EDGE_WAIT: Duration = Duration::from_millis(2);

/// The disk thread's state. [`DiskWriter::run`] is its body.
pub struct DiskWriter {
    rings: DiskRings,
    commands: Receiver<DiskCommand>,
    events: Sender<DiskEvent>,
    stats: Arc<DiskStats>,
    scratch: Vec<Vec<f32>>,
    /// Where each cycle belongs on JACK's timeline.
    timeline: Timeline,
    history: History,
    /// Gaps (unwrapped position) still inside the history.
    gaps: VecDeque<Gap>,
    /// How far the takes trail the newest audio, so that a stop or rotate
    /// that arrives a little late still cuts at the exact frame.
    write_delay: u64,
    active: Option<Active>,
    /// JACK's xrun counter (for the manifests).
    xruns: Arc<AtomicU64>,
    space: Option<SpaceGuard>,
    /// The callback's duration histogram, for each take's manifest.
    callback: Option<Arc<CaptureCounters>>,
    /// Finalizes ended takes, so that draining never waits for their syncs.
    finalizer: finalizer::Finalizer,
}

/// Stop a take before the disk fills up (checked with every checkpoint).
#[derive(Debug, Clone, Copy)]
pub struct SpaceGuard {
    /// Stop when the free space would last less than this many seconds.
    pub margin_seconds: f64,
    /// …or when the volume's free fraction falls below this.
    pub min_free_fraction: f64,
}

impl DiskWriter {
    /// `history_frames`: audio kept in memory for pre-roll; `write_delay`:
    /// frames the takes trail the newest audio (must be below the history).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rings: DiskRings,
        commands: Receiver<DiskCommand>,
        events: Sender<DiskEvent>,
        stats: Arc<DiskStats>,
        history_frames: usize,
        write_delay: usize,
        xruns: Arc<AtomicU64>,
        space: Option<SpaceGuard>,
    ) -> Self {
        let ch = rings.ports.len();
        // Always at least a few large cycles: every take is written from it.
        let cap = history_frames.max(write_delay) + 16384;
        let history = History::new(ch, cap);
        DiskWriter {
            rings,
            commands,
            events,
            stats,
            scratch: vec![Vec::new(); ch],
            timeline: Timeline::new(),
            history,
            gaps: VecDeque::new(),
            write_delay: write_delay as u64,
            active: None,
            xruns,
            space,
            callback: None,
            finalizer: finalizer::Finalizer::spawn().expect("cannot start the finalizer thread"),
        }
    }

    /// Lets each take's manifest carry the callback's numbers over the take.
    pub fn with_callback_times(mut self, counters: Arc<CaptureCounters>) -> Self {
        self.callback = Some(counters);
        self
    }

    /// Runs until [`DiskCommand::Quit`] or until the command sender is gone.
    pub fn run(mut self) {
        let mut pending = None;
        loop {
            let command = match pending.take() {
                Some(c) => Ok(c),
                None => self.commands.try_recv(),
            };
            match command {
                Ok(DiskCommand::Start { take, start_at, preroll }) => {
                    if self.active.is_some() {
                        self.finish(None); // never two takes at once
                    }
                    self.begin(*take, start_at, preroll);
                    continue;
                }
                Ok(DiskCommand::Stop(at)) => {
                    if let Some(a) = &mut self.active {
                        a.stop = Some(at);
                        self.advance();
                    }
                    continue;
                }
                Ok(DiskCommand::Abort(reason)) => {
                    if let Some(a) = &mut self.active {
                        a.abort = Some(reason);
                        a.stop = Some(StopAt::Drained);
                        self.advance();
                    }
                    continue;
                }
                Ok(DiskCommand::Rotate { next, at }) => {
                    match &mut self.active {
                        Some(a) => {
                            a.stop = Some(StopAt::Frame(at));
                            a.next = Some(next);
                        }
                        None => self.begin(*next, Some(at), 0),
                    }
                    continue;
                }
                Ok(DiskCommand::Quit) | Err(TryRecvError::Disconnected) => {
                    self.drain_cycles();
                    self.end_drained();
                    self.finalizer.finish(); // every take final before we return
                    return;
                }
                Err(TryRecvError::Empty) => {}
            }
            let worked = self.drain_cycles();
            if self.active.as_ref().is_some_and(|a| a.stop == Some(StopAt::Drained)) {
                self.end_drained();
                continue;
            }
            self.maybe_checkpoint();
            if !worked {
                self.advance();
                // Nothing to drain: wait for a command or the next batch of
                // cycles. A command wakes the thread at once; audio can wait
                // (the rings hold seconds), and fewer wake-ups cost less CPU.
                // A take waiting for its first or last frame polls quickly:
                // the start and stop replies wait for it.
                let waiting =
                    self.active.as_ref().is_some_and(|a| a.first_frame_time.is_none() || a.stop.is_some());
                let wait = if waiting { EDGE_WAIT } else { IDLE_WAIT };
                match self.commands.recv_timeout(wait) {
                    Ok(c) => pending = Some(c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => pending = Some(DiskCommand::Quit),
                }
            }
        }
    }

    /// Ends the take with everything that has arrived (quit, JACK gone):
    /// nothing is rotated in.
    fn end_drained(&mut self) {
        let Some(a) = &mut self.active else { return };
        a.next = None;
        a.stop = Some(StopAt::Drained);
        self.advance(); // writes up to the newest frame and finishes
        self.finish(None); // in case a write error left it half done
    }

    fn begin(&mut self, take: Take, start_at: Option<u32>, preroll: u64) {
        self.stats.frames.store(take.frames(), Relaxed);
        self.stats.reset_take();
        self.active = Some(Active {
            take,
            want_first: None,
            start_at,
            preroll,
            first_frame_time: None,
            cursor: 0,
            started: None,
            gaps: Vec::new(),
            stop: None,
            next: None,
            last_checkpoint: Instant::now(),
            repeated: 0,
            repeated_before: 0,
            segments: Vec::new(),
            segment_first: None,
            abort: None,
            xruns_at_start: self.xruns.load(Relaxed),
            overflow_at_start: self.stats.overflow_frames.load(Relaxed),
            callback_window: self.callback.as_ref().map(|c| c.callback.open_window()),
        });
        if start_at.is_none() && preroll == 0 {
            // From the next cycle on (the first one ever, if none came yet).
            let next = self.timeline.end();
            if let Some(a) = &mut self.active {
                a.want_first = next;
            }
        } else {
            self.place_start();
        }
    }

    /// Works out where a take asked to start at `start_at` begins (a cycle
    /// boundary, minus the pre-roll), then lets [`Self::advance`] write it.
    fn place_start(&mut self) {
        let Some(next_frame) = self.timeline.end() else { return }; // no cycle yet
        let Some(a) = &self.active else { return };
        if a.first_frame_time.is_some() {
            return;
        }
        let start = a.start_at.and_then(|s| self.timeline.unwrap(s)).unwrap_or(next_frame);
        let start = self.timeline.boundary(start, false);
        let want = start.saturating_sub(a.preroll);
        if let Some(a) = &mut self.active {
            a.want_first = Some(want);
        }
        self.advance();
    }

    /// Marks the take as started at `first`: bext origin, event.
    /// The wall-clock time of `first` is now minus how far it trails the
    /// newest frame (the disk thread's own lag, a few ms, is not counted).
    fn open_take(&mut self, first: u64) -> Result<(), WavError> {
        let rate = self.timeline.rate();
        let jack_first = self.timeline.jack_time(first);
        let a = self.active.as_mut().expect("active");
        if rate != 0 && rate != a.take.spec.sample_rate {
            // The server's rate changed since the take was prepared.
            tracing::warn!(take = %a.take.name, from = a.take.spec.sample_rate, to = rate, "take recorded at JACK's new rate");
            a.take.set_sample_rate(rate)?;
        }
        let back = Duration::from_secs_f64(
            self.history.end.saturating_sub(first) as f64 / a.take.spec.sample_rate.max(1) as f64,
        );
        let wall: DateTime<Local> = (SystemTime::now() - back).into();
        a.first_frame_time = Some(jack_first);
        a.segment_first = Some(jack_first);
        a.cursor = first;
        a.started = Some(wall);
        a.take.set_origin(jack_first, wall)?;
        let _ =
            self.events.send(DiskEvent::Started { name: a.take.name.clone(), first_frame_time: jack_first });
        Ok(())
    }

    /// Handles every cycle in the log; returns whether there was any.
    fn drain_cycles(&mut self) -> bool {
        if let Some(r) = self.rings.ports.first() {
            self.stats.ring_high_water.fetch_max(r.occupied_len() as u64, Relaxed);
            self.stats.ring_capacity.store(r.capacity().get() as u64, Relaxed);
        }
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
        let p = self.timeline.place(&rec);
        if p.rate_change.is_some() || p.clock_reset {
            self.new_clock(&p);
        }
        if p.repeated > 0 {
            self.replace_repeat(&p, rec.queued && !rec.overtaken);
        }
        // Into the history: gap segments as silence, then the cycle's new
        // frames (repeats are already there).
        let gap_at = p.at - p.missing();
        let new = (n as u64).saturating_sub(p.repeated);
        let cause = if rec.queued { GapCause::Torn } else { GapCause::Overflow };
        let segments = [
            (gap_at, p.overflow, GapCause::Overflow, false),
            (gap_at + p.overflow, p.skipped, GapCause::JackSkipped, false),
            (p.first_new(), new, cause, rec.queued && !rec.overtaken),
        ];
        for (at, len, cause, has_data) in segments {
            if len == 0 {
                continue;
            }
            self.make_room(len);
            let data = has_data.then(|| (&self.scratch[..], p.repeated as usize));
            self.history.push(at, len as usize, data);
            if !has_data {
                self.gaps.push_back(Gap { at, frames: len, cause });
            }
        }
        // Gaps the history and the take have both left behind.
        let oldest =
            self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map_or(u64::MAX, |a| a.cursor);
        let oldest = oldest.min(self.history.start());
        while self.gaps.front().is_some_and(|g| g.at + g.frames <= oldest) {
            self.gaps.pop_front();
        }
        if self.active.as_ref().is_some_and(|a| a.want_first.is_none() && a.start_at.is_some()) {
            self.place_start();
        }
        self.advance();
        self.publish();
    }

    /// JACK delivered frames again (see [`timeline`]): the newer copy, if it
    /// is clean, replaces the earlier one where no take has written it yet
    /// (the takes hold the newest cycle back for this), and a gap there
    /// (an overtaken or dropped first copy) is filled.
    fn replace_repeat(&mut self, p: &Placement, clean: bool) {
        let written = self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map(|a| a.cursor);
        if let Some(a) = &mut self.active {
            if a.first_frame_time.is_some() {
                a.repeated += p.repeated;
            }
        }
        if !clean {
            return;
        }
        let from = p.at.max(written.unwrap_or(0));
        let to = p.at + p.repeated;
        if from >= to {
            tracing::warn!(
                at = p.at,
                frames = p.repeated,
                "a repeated cycle came after its first copy was written"
            );
            return;
        }
        let skip = (from - p.at) as usize;
        if self.history.overwrite(from, (to - from) as usize, &self.scratch, skip) {
            cut_gaps(&mut self.gaps, from, to);
        }
    }

    /// Before `len` more frames enter the history, the running take writes
    /// every frame that they would push out of it (normally it trails by
    /// `write_delay`, far less than the history; a long gap can be longer).
    fn make_room(&mut self, len: u64) {
        let Some(a) = &self.active else { return };
        if a.first_frame_time.is_none() {
            return;
        }
        let evicted_to = (self.history.end + len).saturating_sub(self.history.cap as u64);
        if a.cursor < evicted_to.min(self.history.end) {
            self.advance_to(Some(evicted_to.min(self.history.end)));
        }
    }

    /// JACK's rate or clock changed. A running take ends its segment with the
    /// last frame of the old clock and continues in a new file set at the new
    /// rate (the frames skipped at the change open the new segment as a gap).
    /// Audio of the old clock no longer serves as pre-roll.
    fn new_clock(&mut self, p: &Placement) {
        let old_end = p.at - p.missing();
        if let Some((from, to)) = p.rate_change {
            tracing::warn!(from, to, "JACK's sample rate changed");
        }
        if p.clock_reset {
            tracing::warn!("JACK's clock was reset (frame time went back)");
        }
        if self.active.as_ref().is_some_and(|a| a.first_frame_time.is_some()) {
            self.advance_to(Some(self.history.end));
            if let Err(e) = self.next_segment(old_end, p) {
                return self.finish(Some(e));
            }
        }
        self.history.clear(old_end);
        self.gaps.clear();
    }

    /// Finalizes the running segment and opens the next one at `at`.
    fn next_segment(&mut self, at: u64, p: &Placement) -> Result<(), WavError> {
        let rate = self.timeline.rate();
        let jack_first = self.timeline.jack_time(at);
        let a = self.active.as_mut().expect("active");
        let index = a.segments.len() + 2;
        let mut spec = a.take.spec.clone();
        spec.sample_rate = rate;
        let base = a.segments.first().map_or(&a.take.name, |s| &s.name);
        spec.file = Some(format!("{base}_seg{index}.wav"));
        spec.take_id = Some(a.take.take_id().to_owned());
        // `--duration` covers the whole take: what is left of it, in time.
        spec.max_frames = a.take.spec.max_frames.map(|_| {
            let left = a.take.remaining() as f64 / a.take.spec.sample_rate.max(1) as f64;
            (left * rate as f64).round() as u64
        });
        let mut next = Take::create(spec, Local::now())?;
        next.set_origin(jack_first, Local::now())?;
        let why = match p.rate_change {
            Some((from, to)) => format!("JACK's sample rate changed from {from} to {to} Hz"),
            None => "JACK's clock was reset".to_string(),
        };
        next.set_continues(a.take.name.clone(), &why)?;
        a.take.set_continued_in(next.name.clone())?;
        a.take.note_repeated(a.repeated - a.repeated_before);
        a.repeated_before = a.repeated;
        let old = std::mem::replace(&mut a.take, next);
        let gaps = std::mem::take(&mut a.gaps);
        let first = a.segment_first.replace(jack_first);
        let xruns = self.xruns.load(Relaxed).saturating_sub(a.xruns_at_start);
        let seg_rate = old.spec.sample_rate;
        let name = old.name.clone();
        let frames = old.frames();
        let (files, err) = old.finalize(&gaps, xruns, None, RtStats::default());
        tracing::warn!(take = %name, next = %a.take.name, "{why}: the take continues in a new segment");
        a.segments.push(SegmentReport {
            name,
            frames: files.iter().map(|f| f.frames).min().unwrap_or(0).min(frames),
            files,
            sample_rate: seg_rate,
            first_frame_time: first,
            gaps,
        });
        a.cursor = at;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Moves the active take forward: starts it once its first frame is in
    /// the history, writes what is due, and ends it at its stop point.
    fn advance(&mut self) {
        self.advance_to(None)
    }

    /// [`Self::advance`], writing at least up to `at_least` (within the stop
    /// point) even if that is closer to the newest frame than `write_delay`.
    fn advance_to(&mut self, at_least: Option<u64>) {
        let Some(a) = &self.active else { return };
        let (hist_start, hist_end) = (self.history.start(), self.history.end);
        if a.first_frame_time.is_none() {
            // No explicit start: the first frame the history holds.
            let want = a.want_first.unwrap_or(hist_start);
            if hist_end <= want || self.history.len() == 0 {
                return;
            }
            if let Err(e) = self.open_take(want.max(hist_start)) {
                return self.finish(Some(e));
            }
        }
        let a = self.active.as_ref().expect("active");
        let stop_end = match a.stop {
            Some(StopAt::Frame(f)) => self.timeline.unwrap(f).map(|s| self.timeline.boundary(s, true)),
            Some(StopAt::Drained) => Some(hist_end),
            None => None,
        };
        // The newest cycle is held back until the next one shows whether it
        // repeats it (see `replace_repeat`); only a drained ending takes all.
        let held = hist_end.saturating_sub(self.timeline.newest_len());
        let mut limit = match (a.stop, stop_end) {
            (Some(StopAt::Drained), _) => hist_end,
            (_, Some(e)) => e.min(held),
            (_, None) => {
                hist_end.saturating_sub(self.write_delay).min(held).max(at_least.unwrap_or(0).min(hist_end))
            }
        };
        limit = limit.min(a.cursor.saturating_add(a.take.remaining()));
        if let Err(e) = self.flush_history(limit) {
            return self.finish(Some(e));
        }
        let a = self.active.as_ref().expect("active");
        if stop_end.is_some_and(|e| a.cursor >= e) || a.take.remaining() == 0 {
            self.finish(None);
        }
    }

    /// Writes the history's frames from the take's cursor up to `limit`.
    fn flush_history(&mut self, limit: u64) -> Result<(), WavError> {
        let Some(a) = &mut self.active else { return Ok(()) };
        let hist_start = self.history.start();
        if a.cursor < hist_start && a.cursor < limit {
            // Silence of a gap longer than the history (`make_room` wrote all
            // the audio before it): written here, exactly as long as it is.
            let to = hist_start.min(limit);
            record_gaps(&self.gaps, a, to);
            a.take.write_silence(to - a.cursor, SPARSE_SILENCE_FRAMES)?;
            a.cursor = to;
        }
        let from = a.cursor;
        if limit <= from {
            return Ok(());
        }
        record_gaps(&self.gaps, a, limit);
        let skip = (from - self.history.start()) as usize;
        let n = (limit - from) as usize;
        a.cursor = limit;
        let t = Instant::now();
        let mut res = Ok(());
        for run in self.history.runs(skip, n) {
            let peak = run.iter().flat_map(|c| c.iter()).fold(0f32, |m, &x| m.max(x.abs()));
            self.stats.peak.fetch_max(peak.to_bits(), Relaxed);
            let len = run[0].len();
            res = a.take.write(len, |c| Some(run[c]));
            if res.is_err() {
                break;
            }
        }
        let ns = t.elapsed().as_nanos() as u64;
        self.stats.write_batches.fetch_add(1, Relaxed);
        self.stats.write_total_ns.fetch_add(ns, Relaxed);
        self.stats.write_max_ns.fetch_max(ns, Relaxed);
        res
    }

    fn publish(&self) {
        if let Some(a) = &self.active {
            self.stats.frames.store(a.take.frames(), Relaxed);
            self.stats.bytes.store(a.take.bytes(), Relaxed);
            let lost = |c| a.gaps.iter().filter(|g| g.cause == c).map(|g| g.frames).sum::<u64>();
            self.stats.overflow_frames.store(lost(GapCause::Overflow), Relaxed);
            self.stats.skipped_frames.store(lost(GapCause::JackSkipped) + lost(GapCause::Torn), Relaxed);
        }
    }

    fn maybe_checkpoint(&mut self) {
        let Some(a) = &mut self.active else { return };
        if a.last_checkpoint.elapsed() < CHECKPOINT_INTERVAL {
            return;
        }
        a.last_checkpoint = Instant::now();
        if let Err(e) = a.take.checkpoint() {
            return self.finish(Some(e));
        }
        if let Some(g) = self.space {
            if let Some(why) = space_low(&a.take, g) {
                let source = std::io::Error::new(std::io::ErrorKind::StorageFull, why);
                let path = a.take.manifest_path().to_owned();
                let frames_safe = a.take.frames();
                self.finish(Some(WavError::Io { path, op: "disk space guard", frames_safe, source }));
            }
        }
    }

    /// Ends the active take: finalize every file and report. A rotated-in
    /// take starts right where this one ended.
    fn finish(&mut self, error: Option<WavError>) {
        let Some(mut a) = self.active.take() else { return };
        let name = a.take.name.clone();
        let sample_rate = a.take.spec.sample_rate;
        let frames = a.take.frames();
        let end = a.cursor;
        let next = if error.is_none() { a.next.take() } else { None };
        let rotated_into = next.as_ref().map(|n| n.name.clone());
        let xruns = self.xruns.load(Relaxed).saturating_sub(a.xruns_at_start);
        let msg = error.as_ref().map(|e| e.to_string()).or(a.abort.clone());
        let disk = self.stats.summary();
        let rt = RtStats {
            callback: match (&self.callback, &a.callback_window) {
                (Some(c), Some(w)) => c.callback.window_summary(w),
                _ => Default::default(),
            },
            disk,
            ring_high_water_seconds: disk.ring_high_water_frames as f64 / sample_rate.max(1) as f64,
            overflow_frames: self.stats.overflow_frames.load(Relaxed).saturating_sub(a.overflow_at_start),
        };
        a.take.note_repeated(a.repeated - a.repeated_before);
        let events = self.events.clone();
        let take_started = a.started.map(|t| t.to_rfc3339());
        let (first_frame_time, repeated_frames) = (a.first_frame_time, a.repeated);
        let (segments, segment_first, abort) = (a.segments, a.segment_first, a.abort);
        let gaps = a.gaps;
        self.finalizer.submit(Box::new(move || {
            let (files, fin_err) = a.take.finalize(&gaps, xruns, msg.as_deref(), rt);
            // What the files really hold (a failed last write loses its buffer).
            let frames = files.iter().map(|f| f.frames).min().unwrap_or(0).min(frames);
            let error = error.or(fin_err);
            let error_kind = error.as_ref().and_then(|e| e.io_error()).map(|e| format!("{:?}", e.kind()));
            let error = error.map(|e| e.to_string()).or(abort);
            if let Some(e) = &error {
                tracing::error!(take = %name, "take ended by an error: {e}");
            }
            let mut report = TakeReport {
                name,
                files,
                frames,
                sample_rate,
                first_frame_time,
                started: take_started,
                gaps,
                repeated_frames,
                segments: Vec::new(),
                rotated_into,
                error,
                error_kind,
            };
            if !segments.is_empty() {
                report.absorb_segments(segments, segment_first);
            }
            let _ = events.send(DiskEvent::Finished(report));
        }));
        if let Some(next) = next {
            self.begin(*next, None, 0);
            if let Some(a) = &mut self.active {
                a.want_first = Some(end);
            }
            self.advance();
        }
    }
}

/// Removes `[from, to)` from the gaps (their frames arrived after all).
fn cut_gaps(gaps: &mut VecDeque<Gap>, from: u64, to: u64) {
    let mut out = VecDeque::with_capacity(gaps.len() + 1);
    for g in gaps.drain(..) {
        let end = g.at + g.frames;
        if end <= from || g.at >= to {
            out.push_back(g);
            continue;
        }
        if g.at < from {
            out.push_back(Gap { frames: from - g.at, ..g });
        }
        if end > to {
            out.push_back(Gap { at: to, frames: end - to, ..g });
        }
    }
    *gaps = out;
}

/// Copies the gaps between the take's cursor and `to` into the take, at
/// offsets in its current segment (a gap cut by a write boundary stays one).
fn record_gaps(gaps: &VecDeque<Gap>, a: &mut Active, to: u64) {
    let from = a.cursor;
    for g in gaps {
        let (s, e) = (g.at.max(from), (g.at + g.frames).min(to));
        if s >= e {
            continue;
        }
        let at = a.take.frames() + (s - from);
        match a.gaps.last_mut() {
            Some(last) if last.cause == g.cause && last.at + last.frames == at => last.frames += e - s,
            _ => a.gaps.push(Gap { at, frames: e - s, cause: g.cause }),
        }
    }
}

/// Why the take's disk is too full to go on, if it is.
fn space_low(take: &Take, g: SpaceGuard) -> Option<String> {
    let (free, total) = crate::control::preflight::space(&take.spec.dir).ok()?;
    let channels = take.spec.port_names.len() as f64;
    let bps = channels * take.spec.sample_rate as f64 * take.spec.format.bytes() as f64;
    if (free as f64) < bps * g.margin_seconds {
        return Some(format!(
            "disk almost full: {} MiB free is less than {} s of recording; take stopped",
            free >> 20,
            g.margin_seconds
        ));
    }
    if total > 0 && (free as f64 / total as f64) < g.min_free_fraction {
        return Some(format!(
            "disk almost full: less than {:.0}% of the volume free; take stopped",
            g.min_free_fraction * 100.0
        ));
    }
    None
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
            take_id: None,
            sources: vec![],
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
        let w = DiskWriter::new(disk, crx, etx, Arc::new(DiskStats::default()), 0, 0, Arc::default(), None);
        let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
        ctx.send(DiskCommand::Start { take: Box::new(take), start_at: None, preroll: 0 }).unwrap();
        drop(ctx);
        let signal = |t: u32, c: usize| (t % 100_000) as f32 + c as f32 * 0.5;
        let cycle = |t: u32, n: u32| -> Vec<Vec<f32>> {
            (0..2).map(|c| (0..n).map(|i| signal(t + i, c)).collect()).collect()
        };
        // 1000, 1064, [5 cycles skipped by JACK], 1448, then 8100 frames that
        // do not fit in the rings, then one more cycle skipped and 64 frames.
        for (t, n) in [(1000u32, 64u32), (1064, 64), (1448, 64), (1512, 8100), (9612 + 64, 64)] {
            let b = cycle(t, n);
            capture.process_cycle(t, n, 48000, |i| &b[i], || t);
        }
        assert_eq!(counters.overflow_frames.load(Relaxed), 8100);
        w.run();
        let DiskEvent::Started { first_frame_time, .. } = erx.recv().unwrap() else { panic!() };
        assert_eq!(first_frame_time, 1000);
        let DiskEvent::Finished(rep) = erx.recv().unwrap() else { panic!() };
        assert_eq!(rep.frames, 64 * 4 + 320 + 8100 + 64);
        assert_eq!(
            rep.gaps,
            vec![
                Gap { at: 128, frames: 320, cause: GapCause::JackSkipped },
                Gap { at: 512, frames: 8100, cause: GapCause::Overflow },
                Gap { at: 8612, frames: 64, cause: GapCause::JackSkipped }
            ]
        );
        assert_eq!(rep.repeated_frames, 0);
        let mut r = hound::WavReader::open(&rep.files[0].path).unwrap();
        let s: Vec<f32> = r.samples::<f32>().map(|x| x.unwrap()).collect();
        for i in 0..rep.frames as usize {
            let in_gap = (128..448).contains(&i) || (512..512 + 8100 + 64).contains(&i);
            for c in 0..2 {
                // Every frame at its own frame time.
                let t = 1000 + i as u32;
                let want = if in_gap { 0.0 } else { signal(t, c) };
                assert_eq!(s[i * 2 + c], want, "frame {i} ch {c}");
            }
        }
    }

    fn signal(t: u64, c: usize) -> f32 {
        (t % 100_000) as f32 + c as f32 * 0.5
    }

    /// Feeds `cycles` 64-frame cycles starting at frame time `t0`.
    fn feed(capture: &mut Capture, t0: u32, cycles: u32) {
        for k in 0..cycles {
            let t = t0 + k * 64;
            let b: Vec<Vec<f32>> =
                (0..2).map(|c| (0..64).map(|i| signal((t + i) as u64, c)).collect()).collect();
            capture.process_cycle(t, 64, 48000, |i| &b[i], || t);
        }
    }

    fn samples(path: &std::path::Path) -> Vec<f32> {
        hound::WavReader::open(path).unwrap().samples::<f32>().map(|x| x.unwrap()).collect()
    }

    fn assert_signal(s: &[f32], first: u64) {
        for (i, f) in s.chunks(2).enumerate() {
            for (c, x) in f.iter().enumerate() {
                assert_eq!(*x, signal(first + i as u64, c), "frame {i} ch {c}");
            }
        }
    }

    /// A disk writer fed by a capture core (2 channels, no JACK) with
    /// `history` frames of history and half of that as write delay.
    pub(super) fn writer(history: usize) -> (DiskWriter, Capture, Receiver<DiskEvent>, tempfile::TempDir) {
        let (cap, disk) = rings::allocate(2, 65536);
        let (_ctx, crx) = channel();
        let (etx, erx) = channel();
        let w = DiskWriter::new(
            disk,
            crx,
            etx,
            Arc::new(DiskStats::default()),
            history,
            history / 2,
            Arc::default(),
            None,
        );
        (w, Capture::new(cap, Arc::new(CaptureCounters::default())), erx, tempfile::tempdir().unwrap())
    }

    fn stop_drained(w: &mut DiskWriter) {
        w.active.as_mut().unwrap().stop = Some(StopAt::Drained);
        w.advance();
    }

    /// The next finished take (finalized on the finalizer thread).
    pub(super) fn finished(erx: &Receiver<DiskEvent>) -> TakeReport {
        loop {
            let ev = erx.recv_timeout(Duration::from_secs(10)).expect("a finished take");
            if let DiskEvent::Finished(r) = ev {
                return r;
            }
        }
    }

    /// A take started late reaches back into the history: pre-roll from
    /// exactly `preroll` frames before the start boundary, gap-free.
    #[test]
    fn preroll_reaches_back_exactly_and_gap_free() {
        let (mut w, mut capture, erx, dir) = writer(48_000);
        feed(&mut capture, 1000, 20);
        w.drain_cycles();
        let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
        // Start "now" = 1000 + 20*64 (next cycle), 5 cycles of pre-roll.
        w.begin(take, Some(1000 + 20 * 64 + 10), 5 * 64);
        feed(&mut capture, 1000 + 20 * 64, 10);
        w.drain_cycles();
        stop_drained(&mut w);
        let r = finished(&erx);
        // Start rounds up to the boundary 1000+21*64, minus 5 cycles.
        let first = 1000 + 16 * 64;
        assert_eq!(r.first_frame_time, Some(first));
        assert_eq!(r.frames, 14 * 64);
        assert!(r.gaps.is_empty());
        assert_signal(&samples(&r.files[0].path), first);
    }

    /// Rotation: take 2 begins on the frame after take 1's last, nothing
    /// lost or repeated, even when the disk thread is behind.
    #[test]
    fn rotate_continues_on_the_next_frame() {
        for history in [0, 48_000] {
            let (mut w, mut capture, erx, dir) = writer(history);
            let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
            w.begin(take, None, 0);
            feed(&mut capture, 1000, 20);
            w.drain_cycles();
            // Rotate at a frame inside cycle 10, which was already written.
            let mut s2 = spec(dir.path(), 2, None);
            s2.file = Some(format!("second-{history}.wav"));
            let next = Take::create(s2, Local::now()).unwrap();
            let a = w.active.as_mut().unwrap();
            a.stop = Some(StopAt::Frame(1000 + 10 * 64 + 5));
            a.next = Some(Box::new(next));
            feed(&mut capture, 1000 + 20 * 64, 5);
            w.drain_cycles();
            let r1 = finished(&erx);
            stop_drained(&mut w);
            let r2 = finished(&erx);
            if history > 0 {
                // The takes trail by a delay, so the late stop is still exact:
                // take 1 ends with the cycle that contains the stop frame.
                assert_eq!(r1.frames, 11 * 64);
            }
            let end1 = r1.first_frame_time.unwrap() + r1.frames;
            assert_eq!(r1.first_frame_time, Some(1000));
            assert_eq!(r2.first_frame_time, Some(end1), "history {history}");
            assert_eq!(r1.frames + r2.frames, 25 * 64, "history {history}");
            assert_signal(&samples(&r1.files[0].path), 1000);
            assert_signal(&samples(&r2.files[0].path), end1);
        }
    }

    /// A rotated-out take's finalize (its syncs) waits on a slow disk: the
    /// disk thread goes on draining into the next take meanwhile, and the
    /// old take is reported once its files are final.
    #[test]
    fn finalizing_never_holds_up_draining() {
        use crate::wav::writer::probe::{Gate, Probe};
        let (mut w, mut capture, erx, dir) = writer(48_000);
        let mut take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
        let gate = Arc::new(Gate::default());
        let probe = Probe { sync_gate: Some(gate.clone()), ..Default::default() };
        take.set_probe(Arc::new(std::sync::Mutex::new(probe)));
        w.begin(take, None, 0);
        feed(&mut capture, 1000, 10);
        w.drain_cycles();
        let mut s2 = spec(dir.path(), 2, None);
        s2.file = Some("second.wav".into());
        let a = w.active.as_mut().unwrap();
        a.stop = Some(StopAt::Frame(1000 + 5 * 64));
        a.next = Some(Box::new(Take::create(s2, Local::now()).unwrap()));
        // The rotation happens here; the old take's syncs wait at the gate.
        for k in 0..40 {
            feed(&mut capture, 1000 + (10 + k * 100) * 64, 100);
            w.drain_cycles();
        }
        let second = w.active.as_ref().expect("the next take runs").take.frames();
        assert!(second >= 200_000, "the next take got {second} frames while the old one finalized");
        assert!(
            !erx.try_iter().any(|e| matches!(e, DiskEvent::Finished(_))),
            "the old take cannot be final before its syncs"
        );
        gate.open();
        let r1 = finished(&erx);
        assert!(!gate.timed_out.load(Relaxed), "draining waited for the old take's syncs");
        assert_eq!((r1.frames, r1.error), (6 * 64, None));
        stop_drained(&mut w);
        assert_eq!(finished(&erx).frames, 4010 * 64 - 6 * 64);
    }

    #[test]
    fn history_ring_keeps_the_newest_frames_across_wraps() {
        let mut h = History::new(2, 10);
        let cycle = |t: u64, n: usize| -> Vec<Vec<f32>> {
            (0..2).map(|c| (0..n).map(|i| (t + i as u64) as f32 + c as f32 * 1000.0).collect()).collect()
        };
        let mut t = 0;
        for n in [3, 4, 5, 6, 25, 1] {
            h.push(t, n, Some((&cycle(t, n), 0)));
            t += n as u64;
        }
        h.push(t, 2, None); // silence
        t += 2;
        assert_eq!(h.len(), 10);
        assert_eq!(h.start(), t - 10);
        let runs = h.runs(0, 10);
        for c in 0..2 {
            let all: Vec<f32> = runs.iter().flat_map(|r| r[c].iter().copied()).collect();
            let want: Vec<f32> =
                (t - 10..t).map(|x| if x >= t - 2 { 0.0 } else { x as f32 + c as f32 * 1000.0 }).collect();
            assert_eq!(all, want, "channel {c}");
        }
        // A discontinuity starts over.
        h.push(t + 100, 3, Some((&cycle(t + 100, 3), 0)));
        assert_eq!((h.len(), h.start()), (3, t + 100));
    }
}
