//! What the disk thread is told and what it tells: stop points, commands,
//! gaps, take and segment reports, events. Plain data; never real-time.

use super::*;

/// When a take ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// With the last frame of the cycle that contains this JACK frame time
    /// (a command's frame is JACK's estimate of "now": the cycle is what it
    /// knows for sure).
    Frame(u32),
    /// Just before this JACK frame time, wherever it falls in its cycle (a
    /// frame known exactly).
    Before(u32),
    /// Just before the frame at this system-clock time (a clock boundary):
    /// found through the same mapping that stamps the files, so the next
    /// take's time stamp is this time, to the frame.
    Time(std::time::SystemTime),
    /// Once the rings hold nothing more (JACK is gone).
    Drained,
}

/// Where a take begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// With the next cycle that arrives.
    Next,
    /// With the first cycle boundary at or after this JACK frame time (a
    /// command's frame is JACK's estimate of "now").
    Frame(u32),
    /// With the frame at this system-clock time, wherever it falls in its
    /// cycle (a timetag): found through the mapping that stamps the files.
    Time(std::time::SystemTime),
    /// With exactly this JACK frame time, wherever it falls in its cycle
    /// (a frame known exactly: where sound began).
    At(u32),
}

impl StartAt {
    /// Where a take begins that a rotation ending at `end` would have
    /// started (a rotation with no take running starts one there).
    pub fn after(end: StopAt) -> StartAt {
        match end {
            StopAt::Frame(f) => StartAt::Frame(f),
            StopAt::Before(f) => StartAt::At(f),
            StopAt::Time(t) => StartAt::Time(t),
            StopAt::Drained => StartAt::Next,
        }
    }
}

pub enum DiskCommand {
    /// Record into `take`, from the first cycle boundary at or after
    /// `start_at` (see [`StartAt`]), reaching `preroll` frames into
    /// the past if the history holds them.
    Start {
        take: Box<Take>,
        start_at: StartAt,
        preroll: u64,
    },
    Stop(StopAt),
    /// End the take with what has arrived because of `reason` (JACK is
    /// gone): the manifest says it failed and why.
    Abort(String),
    /// End the running take where `at` says; `next` starts on the very next
    /// frame (no frame lost or repeated between them).
    Rotate {
        next: Box<Take>,
        at: StopAt,
    },
    /// Listen for sound (`Some`), or stop listening (see [`super::level`]).
    Level(Option<crate::vocab::LevelSpec>),
    /// A marker at JACK frame time `frame_time` (unwrapped) in the take
    /// that holds that frame: the running one, or the one a pending
    /// rotation starts.
    Mark {
        frame_time: u64,
        label: String,
    },
    /// An alarm raised at JACK frame time `frame_time` (unwrapped), noted
    /// in the running take's manifest (its `frame` is set here).
    Alarm {
        frame_time: u64,
        record: crate::vocab::AlarmRecord,
    },
    /// Finish any take and end the thread by `by`: what the disk has not
    /// written by then (it is behind) is left out, and the manifest says so.
    Quit {
        by: std::time::Instant,
    },
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
    /// The take's picture (`NAME.png` beside its files), if it was drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<std::path::PathBuf>,
}

impl TakeReport {
    /// Makes the report (which describes the last segment) the whole take's:
    /// files, frames and gaps of every segment, in order.
    pub(super) fn absorb_segments(&mut self, mut earlier: Vec<SegmentReport>, last_first: Option<u64>) {
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
    Started {
        name: String,
        first_frame_time: u64,
    },
    Finished(Box<TakeReport>),
    /// JACK transport started, stopped or relocated (see
    /// [`super::transport`]).
    Transport(super::transport::TransportEvent),
    /// Sound began or ended (see [`super::level`]).
    Level(super::level::LevelEvent),
    /// The marker at `frame_time` is saved in its take's manifest (synced),
    /// or why not.
    Marked {
        frame_time: u64,
        saved: Result<(), String>,
    },
}
