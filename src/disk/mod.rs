//! The disk thread: drains the rings in cycle order and writes takes.
//!
//! It keeps JACK's timeline: where a cycle was dropped (rings full) or JACK's
//! frame time jumped (skipped cycles), it writes exactly that many frames of
//! silence on every channel and records the gap. Everything here may block
//! on I/O; nothing here runs on the real-time thread.
//!
//! - this file: the disk thread's loop, taking cycles in, starting and
//!   ending takes;
//! - `timeline`: where each cycle belongs on JACK's timeline (pure);
//! - `history`: the in-memory stretch that takes are written from;
//! - `cursor`: how far a take may be written, and writing it;
//! - `segments`: a take continuing in a new file set (rate, clock reset);
//! - `space`: checkpoints and the space guard;
//! - `finalizer`: ended takes finalized off the draining thread;
//! - `take`: one take's files and manifest; `report`, `stats`: what the
//!   thread is told and tells.

pub(crate) mod audiofile;
mod cursor;
mod finalizer;
mod history;
pub mod level;
pub mod loudness;
mod report;
mod segments;
mod space;
mod stats;
pub mod take;
#[cfg(test)]
mod tests;
pub mod timeline;
#[cfg(test)]
mod timeline_writer_tests;
pub mod transport;
mod wallclock;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;

use crate::manifest::RtStats;
use crate::rings::{CycleRecord, DiskRings};
use crate::rt::capture::CallbackWindow;
use crate::rt::CaptureCounters;
use crate::wav::WavError;
use cursor::cut_gaps;
use history::History;
pub use report::*;
pub use space::{SpaceGuard, CHECKPOINT_INTERVAL};
pub use stats::*;
pub use take::{FileReport, Layout, Take, TakeSpec};
use timeline::{Placement, Timeline};

/// A run of silence this long or longer is written sparse (the file is
/// extended without writing zeros): a long jump in JACK's timeline costs no
/// disk bandwidth.
const SPARSE_SILENCE_FRAMES: u64 = 1 << 16;

struct Active {
    take: Take,
    /// Unwrapped frame time the take starts at, until it has started.
    want_first: Option<u64>,
    start_at: StartAt,
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
    /// Markers (JACK frame time, label) waiting for the take's first frame.
    marks: Vec<(u64, String)>,
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
    /// The cycle log (the port rings are the history's).
    cycles: HeapCons<CycleRecord>,
    commands: Receiver<DiskCommand>,
    events: Sender<DiskEvent>,
    stats: Arc<DiskStats>,
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
    /// Maps frames to the system clock (the files' time stamps).
    wallclock: wallclock::WallClock,
    /// JACK transport changes, for `--trigger transport`.
    transport: transport::TransportWatch,
    /// Sound on the inputs, for `--trigger level`.
    level: Option<level::LevelWatch>,
}

impl DiskWriter {
    /// `history_frames`: audio kept for pre-roll; `write_delay`: frames the
    /// takes trail the newest audio. The history lives in the port rings,
    /// which must hold [`keep_frames`] on top of their slack (see
    /// [`ring_frames`]).
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
        let cap = keep_frames(history_frames, write_delay);
        let history = History::new(rings.ports, cap);
        assert!(
            history.ring_capacity() == 0 || history.ring_capacity() > cap,
            "port rings of {} frames cannot keep a history of {cap}",
            history.ring_capacity()
        );
        DiskWriter {
            cycles: rings.cycles,
            commands,
            events,
            stats,
            timeline: Timeline::new(),
            history,
            gaps: VecDeque::new(),
            write_delay: write_delay as u64,
            active: None,
            xruns,
            space,
            callback: None,
            finalizer: finalizer::Finalizer::spawn().expect("cannot start the finalizer thread"),
            wallclock: wallclock::WallClock::default(),
            transport: transport::TransportWatch::default(),
            level: None,
        }
    }

    /// Reads JACK's clock with `jack_now` (µs), so that takes are stamped
    /// through JACK's own frame↔time mapping.
    pub fn with_jack_clock(mut self, jack_now: fn() -> u64) -> Self {
        self.wallclock = wallclock::WallClock::new(Some(jack_now));
        self
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
                            a.stop = Some(at);
                            a.next = Some(next);
                        }
                        None => self.begin(*next, StartAt::after(at), 0),
                    }
                    continue;
                }
                Ok(DiskCommand::Level(spec)) => {
                    self.level = spec.map(level::LevelWatch::new);
                    continue;
                }
                Ok(DiskCommand::Mark { frame_time, label }) => {
                    self.mark(frame_time, label);
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

    fn begin(&mut self, take: Take, start_at: StartAt, preroll: u64) {
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
            marks: Vec::new(),
            xruns_at_start: self.xruns.load(Relaxed),
            overflow_at_start: self.stats.overflow_frames.load(Relaxed),
            callback_window: self.callback.as_ref().map(|c| c.callback.open_window()),
        });
        if start_at == StartAt::Next && preroll == 0 {
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
        let start = match a.start_at {
            StartAt::Time(t) => match self.wallclock.position_at(t) {
                Some(p) => p,
                None => return, // JACK's clock not known yet: the next cycle
            },
            StartAt::Frame(f) => self.timeline.boundary(self.timeline.unwrap(f).unwrap_or(next_frame), false),
            StartAt::At(f) => self.timeline.unwrap(f).unwrap_or(next_frame),
            StartAt::Next => self.timeline.boundary(next_frame, false),
        };
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
        // Without JACK's clock (tests), the system clock when the frame is
        // taken, minus how far it trails the newest audio.
        let wall = self.wallclock.wall_time(first).unwrap_or_else(|| SystemTime::now() - back);
        a.first_frame_time = Some(jack_first);
        a.segment_first = Some(jack_first);
        a.cursor = first;
        a.started = Some(wall.into());
        a.take.set_origin(jack_first, wall)?;
        for (frame_time, label) in std::mem::take(&mut a.marks) {
            match frame_time.checked_sub(jack_first) {
                Some(frame) => a.take.add_marker(frame, frame_time, label)?,
                None => tracing::warn!(frame_time, "marker {label:?} before the take's first frame dropped"),
            }
        }
        let _ =
            self.events.send(DiskEvent::Started { name: a.take.name.clone(), first_frame_time: jack_first });
        Ok(())
    }

    /// Handles every cycle in the log; returns whether there was any.
    fn drain_cycles(&mut self) -> bool {
        // The rings' fill beyond what the history keeps: what the callback
        // can still push before it must drop a cycle.
        let slack = self.history.ring_capacity().saturating_sub(self.history.cap);
        self.stats.ring_high_water.fetch_max(self.history.unhandled() as u64, Relaxed);
        self.stats.ring_capacity.store(slack as u64, Relaxed);
        let mut any = false;
        while let Some(rec) = self.cycles.try_pop() {
            any = true;
            self.handle_cycle(rec);
        }
        any
    }

    fn handle_cycle(&mut self, rec: CycleRecord) {
        let n = rec.nframes as usize;
        // The cycle's audio stays in the rings; the history reads it there.
        let src = rec.queued.then(|| self.history.accept(n));
        let clean = src.filter(|_| !rec.overtaken);
        let p = self.timeline.place(&rec);
        self.wallclock.note_cycle(p.at, rec.usecs, rec.rate);
        let jack = self.timeline.jack_time(p.at);
        if let Some(e) = self.transport.cycle(rec.transport, rec.transport_frame, rec.nframes, jack) {
            let _ = self.events.send(DiskEvent::Transport(e));
        }
        if let Some(w) = &mut self.level {
            // The cycle's new frames (a repeat's are already judged); a
            // cycle without clean audio is silence.
            let old = (p.repeated as usize).min(n);
            let at = jack + old as u64;
            let mut events = Vec::new();
            match clean {
                Some(src) => {
                    let mut done = 0;
                    let _ = self.history.ring_frames(src + old as u64, n - old, &mut |len, chans| {
                        events.extend(w.cycle(chans, 0, len, at + done));
                        done += len as u64;
                        Ok::<(), ()>(())
                    });
                }
                None => events.extend(w.cycle(None, 0, n - old, at)),
            }
            for e in events {
                let _ = self.events.send(DiskEvent::Level(e));
            }
        }
        if p.rate_change.is_some() || p.clock_reset {
            self.new_clock(&p);
        }
        if p.repeated > 0 {
            self.replace_repeat(&p, clean);
        }
        // Into the history: gap segments as silence, then the cycle's new
        // frames (repeats are already there).
        let gap_at = p.at - p.missing();
        let new = (n as u64).saturating_sub(p.repeated);
        let cause = if rec.queued { GapCause::Torn } else { GapCause::Overflow };
        let segments = [
            (gap_at, p.overflow, GapCause::Overflow, false),
            (gap_at + p.overflow, p.skipped, GapCause::JackSkipped, false),
            (p.first_new(), new, cause, clean.is_some()),
        ];
        for (at, len, cause, has_data) in segments {
            if len == 0 {
                continue;
            }
            let data = clean.filter(|_| has_data).map(|src| src + p.repeated);
            self.history.push(at, len, data);
            if !has_data {
                self.gaps.push_back(Gap { at, frames: len, cause });
            }
        }
        self.make_room();
        // Gaps the history and the take have both left behind.
        let oldest =
            self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map_or(u64::MAX, |a| a.cursor);
        let oldest = oldest.min(self.history.start());
        while self.gaps.front().is_some_and(|g| g.at + g.frames <= oldest) {
            self.gaps.pop_front();
        }
        // A start at a system-clock time is placed again with every cycle
        // until it opens: the newest cycles map that time best.
        if self.active.as_ref().is_some_and(|a| {
            a.first_frame_time.is_none()
                && ((a.want_first.is_none() && a.start_at != StartAt::Next)
                    || matches!(a.start_at, StartAt::Time(_)))
        }) {
            self.place_start();
        }
        self.advance();
        self.publish();
    }

    /// JACK delivered frames again (see [`timeline`]): the newer copy, if it
    /// is clean, replaces the earlier one where no take has written it yet
    /// (the takes hold the newest cycle back for this), and a gap there
    /// (an overtaken or dropped first copy) is filled.
    fn replace_repeat(&mut self, p: &Placement, clean: Option<u64>) {
        let written = self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map(|a| a.cursor);
        if let Some(a) = &mut self.active {
            if a.first_frame_time.is_some() {
                a.repeated += p.repeated;
            }
        }
        let Some(src) = clean else { return };
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
        let skip = from - p.at;
        if self.history.overwrite(from, to - from, src + skip) {
            cut_gaps(&mut self.gaps, from, to);
        }
    }

    /// The history keeps its newest `cap` frames: before the older ones go
    /// (and their ring frames with them), the running take writes them
    /// (normally it trails by `write_delay`, far less than the history; a
    /// long gap can be longer).
    fn make_room(&mut self) {
        let evicted_to = self.history.end.saturating_sub(self.history.cap as u64);
        if self.active.as_ref().is_some_and(|a| a.first_frame_time.is_some() && a.cursor < evicted_to) {
            self.advance_to(Some(evicted_to));
        }
        self.history.trim();
    }

    fn publish(&self) {
        if let Some(a) = &self.active {
            self.stats.frames.store(a.take.frames(), Relaxed);
            self.stats.bytes.store(a.take.bytes(), Relaxed);
            self.stats.momentary.store(a.take.momentary().to_bits(), Relaxed);
            let lost = |c| a.gaps.iter().filter(|g| g.cause == c).map(|g| g.frames).sum::<u64>();
            self.stats.overflow_frames.store(lost(GapCause::Overflow), Relaxed);
            self.stats.skipped_frames.store(lost(GapCause::JackSkipped) + lost(GapCause::Torn), Relaxed);
        }
    }

    /// Puts a marker into the take (segment) that holds JACK frame
    /// `frame_time`; until the take's first frame is known, it waits.
    fn mark(&mut self, frame_time: u64, label: String) {
        let Some(a) = &mut self.active else {
            return tracing::warn!(frame_time, "marker {label:?} with no take running dropped");
        };
        match a.segment_first {
            None => a.marks.push((frame_time, label)),
            Some(first) if frame_time >= first => {
                if let Err(e) = a.take.add_marker(frame_time - first, frame_time, label) {
                    tracing::error!(take = %a.take.name, "marker not saved in the manifest: {e}");
                }
            }
            Some(_) => {
                tracing::warn!(frame_time, "marker {label:?} before the segment's first frame dropped")
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
        // Markers past this take's end belong to the take rotated in.
        let carried: Vec<(u64, String)> =
            a.take.split_markers(frames).into_iter().map(|m| (m.frame_time, m.label)).collect();
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
            self.begin(*next, StartAt::Next, 0);
            if let Some(a) = &mut self.active {
                a.want_first = Some(end);
                a.marks = carried;
            }
            self.advance();
        }
    }
}

/// Frames of timeline the disk thread keeps in the port rings: the
/// pre-roll (`history_frames`) or the write delay, whichever is longer,
/// and room for the newest cycles (up to 8192 frames each) held back.
pub fn keep_frames(history_frames: usize, write_delay: usize) -> usize {
    history_frames.max(write_delay) + 16384
}

/// Frames each port ring needs: `slack` for the disk thread to fall behind
/// by, on top of what the history keeps.
pub fn ring_frames(slack: usize, history_frames: usize, write_delay: usize) -> usize {
    slack + keep_frames(history_frames, write_delay)
}

/// Spawns the disk thread.
pub fn spawn(writer: DiskWriter) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("capstan-disk".into()).spawn(move || writer.run())
}
