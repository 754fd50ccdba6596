//! The disk thread: drains the rings in cycle order and writes takes.
//!
//! It keeps JACK's timeline: where a cycle was dropped (rings full) or JACK's
//! frame time jumped (skipped cycles), it writes exactly that many frames of
//! silence on every channel and records the gap. Everything here may block
//! on I/O; nothing here runs on the real-time thread.
//!
//! - this file: the disk thread's loop and its commands;
//! - `intake`: each cycle into the timeline and the history;
//! - `timeline`: where each cycle belongs on JACK's timeline (pure);
//! - `history`: the stretch of timeline that takes are written from, an
//!   index over the port rings (the audio is read in place);
//! - `start`, `finish`: a take's first frame and its end;
//! - `cursor`: how far a take may be written, and writing it;
//! - `segments`: a take continuing in a new file set (rate, clock reset);
//! - `space`: checkpoints and the space guard;
//! - `finalizer`: ended takes finalized off the draining thread;
//! - `take`: one take's files and manifest; `report`, `stats`: what the
//!   thread is told and tells.

pub(crate) mod audiofile;
mod cursor;
mod finalizer;
mod finish;
mod history;
mod intake;
pub mod level;
pub mod loudness;
pub mod meter;
pub mod picture;
mod report;
mod segments;
mod space;
mod stale;
mod start;
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
use ringbuf::traits::{Consumer, Observer};
use ringbuf::HeapCons;

use crate::manifest::RtStats;
use crate::rings::{CycleRecord, DiskRings};
use crate::rt::capture::CallbackWindow;
use crate::rt::CaptureCounters;
use crate::vocab::{DiskSummary, Gap, GapCause};
use crate::wav::WavError;
use cursor::cut_gaps;
use history::History;
pub use report::*;
pub use space::{SpaceGuard, CHECKPOINT_INTERVAL};
pub use stats::*;
pub use take::{FileReport, Take, TakeSpec};
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
    /// Position (see [`Timeline`]) of the take's first frame.
    first_pos: Option<u64>,
    /// Position (see [`Timeline`]) of the take's next frame (its write cursor).
    cursor: u64,
    started: Option<DateTime<Local>>,
    /// Gaps of the current segment.
    gaps: Vec<Gap>,
    stop: Option<StopAt>,
    /// End with what has arrived (JACK gone, quitting, a stop JACK's stall
    /// keeps from its frame), but never past `stop`: a stop point once set
    /// holds however far behind the disk is.
    drain: bool,
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

/// The longest the disk thread takes in cycles (writing them) before it
/// looks at its commands again: a disk that is behind never keeps a stop
/// or a quit waiting.
const DRAIN_SLICE: Duration = Duration::from_millis(50);
/// What quitting leaves for finalizing the take (headers, syncs, manifest).
const FINALIZE_TIME: Duration = Duration::from_millis(600);
/// How long quitting may take when nobody said (the control side is gone).
const QUIT_WAIT: Duration = Duration::from_secs(10);

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
    /// Frame times of markers added to the active take and not yet saved
    /// (a burst is saved once, see `save_marks`).
    unsaved_marks: Vec<u64>,
    /// Every input's level, idle or recording (published in
    /// `stats.levels`), and the rate it was set for.
    meter: meter::Meter,
    meter_rate: u32,
    /// Buffers handed over again after a skip.
    stale: stale::StaleWatch,
}

impl DiskWriter {
    /// `history_frames`: audio kept for pre-roll; `write_delay`: frames the
    /// takes trail the newest audio. The history lives in the port rings,
    /// which must hold [`keep_frames`] on top of their slack (see
    /// [`ring_frames`]); the held cycles are counted as they arrive.
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
        let window = history_frames.max(write_delay);
        let inputs = rings.ports.len();
        let history = History::new(rings.ports, window);
        assert!(
            history.ring_capacity() == 0 || history.ring_capacity() > window + HELD_CYCLES * MAX_PERIOD,
            "port rings of {} frames cannot keep a history of {window} and the held cycles",
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
            unsaved_marks: Vec::new(),
            meter: meter::Meter::new(inputs, 48_000),
            meter_rate: 48_000,
            stale: stale::StaleWatch::default(),
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
            if !matches!(command, Ok(DiskCommand::Mark { .. })) {
                self.save_marks();
            }
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
                        match at {
                            StopAt::Drained => a.drain = true,
                            at => a.stop = Some(at),
                        }
                        self.advance();
                    }
                    continue;
                }
                Ok(DiskCommand::Abort(reason)) => {
                    if let Some(a) = &mut self.active {
                        a.abort = Some(reason);
                        a.drain = true;
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
                Ok(DiskCommand::Alarm { frame_time, record }) => {
                    self.alarm(frame_time, record);
                    continue;
                }
                Ok(DiskCommand::Quit { by }) => return self.quit(by),
                Err(TryRecvError::Disconnected) => return self.quit(Instant::now() + QUIT_WAIT),
                Err(TryRecvError::Empty) => {}
            }
            let worked = self.drain_cycles();
            if self.active.as_ref().is_some_and(|a| a.drain) && self.cycles.is_empty() {
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
                let waiting = self
                    .active
                    .as_ref()
                    .is_some_and(|a| a.first_frame_time.is_none() || a.stop.is_some() || a.drain);
                let wait = if waiting { EDGE_WAIT } else { IDLE_WAIT };
                match self.commands.recv_timeout(wait) {
                    Ok(c) => pending = Some(c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        pending = Some(DiskCommand::Quit { by: Instant::now() + QUIT_WAIT })
                    }
                }
            }
        }
    }
}

impl DiskWriter {
    /// Ends the thread by `by`: takes in and writes what has arrived while
    /// there is time, then finalizes the take. A disk that is behind ends
    /// the take where it got to, and the manifest says how much audio the
    /// disk never got.
    fn quit(mut self, by: Instant) {
        let write_until = by.checked_sub(FINALIZE_TIME).unwrap_or(by);
        // After the first, a slice is begun only if it and one more write
        // (as long as the longest of this take) end in time: on a slow disk
        // one write can take a good part of a second, and it cannot be cut
        // short.
        let one_write = DRAIN_SLICE + Duration::from_nanos(self.stats.write_max_ns.load(Relaxed));
        let caught_up = loop {
            if !self.drain_cycles() {
                break true;
            }
            if Instant::now() + one_write >= write_until {
                break false;
            }
        };
        let unhandled: u64 = self.cycles.iter().map(|r| r.nframes as u64).sum();
        match &mut self.active {
            Some(a) if !caught_up => {
                a.next = None;
                let left = unhandled + self.history.end.saturating_sub(a.cursor);
                let behind = left as f64 / self.timeline.rate().max(1) as f64;
                let text = format!(
                    "capstan quit while the disk was {behind:.1} s behind: the take ends at frame {}, and the \
                     {behind:.1} s of audio after it never reached the disk",
                    a.take.frames()
                );
                tracing::error!(take = %a.take.name, "{text}");
                a.abort = Some(text);
                self.finish(None);
            }
            _ => self.end_drained(),
        }
        self.finalizer.finish(); // every take final before we return
    }
}

/// Cycles the history keeps beyond its window: the newest cycle, held back
/// until the next one shows whether JACK repeats it, and the one after it.
pub const HELD_CYCLES: usize = 2;

/// The longest period (frames) the rings leave room for holding back when
/// the server's period grows after they were made (JACK's and PipeWire's
/// usual maximum).
pub const MAX_PERIOD: usize = 8192;

/// Frames of timeline the disk thread keeps in the port rings at a period
/// of `period` frames: the pre-roll (`history_frames`) or the write delay,
/// whichever is longer, and the held-back cycles.
pub fn keep_frames(history_frames: usize, write_delay: usize, period: usize) -> usize {
    history_frames.max(write_delay) + HELD_CYCLES * period
}

/// Frames each port ring needs: `slack` for the disk thread to fall behind
/// by, on top of what the history keeps at the period the server runs now.
/// The slack is at least the hold of the longest period, so a period that
/// grows later takes its held cycles out of the slack, never out of the
/// window (the pre-roll stays whole).
pub fn ring_frames(slack: usize, history_frames: usize, write_delay: usize, period: usize) -> usize {
    slack.max(HELD_CYCLES * MAX_PERIOD) + keep_frames(history_frames, write_delay, period)
}

/// Spawns the disk thread.
pub fn spawn(writer: DiskWriter) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("capstan-disk".into()).spawn(move || writer.run())
}
