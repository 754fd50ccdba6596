//! A copy of the take in another format (`--mirror-as flac,mono=DIR`,
//! say poly WAV on the SSD and mono FLAC on the second disk): a take of
//! its own, with its own files, encoder, checkpoints and manifest, written
//! by a thread of its own from the samples the take's files get. The take
//! hands it each block of samples (one copy in memory) and every event
//! that shapes the files (origin, rate, markers, silence, checkpoints,
//! the end), in order.
//!
//! A copy never holds up the take: a copy whose disk fails, or that falls
//! more than [`MAX_QUEUED`] behind, stops there; its files keep what its
//! last checkpoint made safe, its manifest says `failed` and why, and the
//! take's manifest lists it (`copies`). Disk thread and the copy's thread;
//! never real-time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use super::mirror::{Stopped, FINISH_WAIT};
use super::Take;
use crate::manifest::RtStats;
use crate::vocab::{FileFormat, Gap, Layout};
use crate::wav::SampleFormat;

/// Bytes of samples a copy may fall behind before it is given up (about
/// 10 s of 32 channels at 48 kHz).
pub const MAX_QUEUED: u64 = 64 << 20;

/// Where a copy in another format goes, and in which format.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanionSpec {
    pub dir: PathBuf,
    pub layout: Layout,
    pub file_format: FileFormat,
    pub format: SampleFormat,
}

impl CompanionSpec {
    /// How it is said: `flac mono s24`.
    pub fn describe(&self) -> String {
        let layout = match self.layout {
            Layout::Mono => "mono",
            Layout::Interleaved => "interleaved",
        };
        format!("{} {layout} {}", self.file_format.ext(), self.format)
    }
}

enum Op {
    Origin(u64, SystemTime),
    Rate(u32),
    Marker(u64, u64, String),
    Continues(String, String),
    ContinuedIn(String),
    /// `n` frames; each channel's samples, `None` for silence.
    Audio(usize, Vec<Option<Vec<f32>>>),
    Silence(u64, u64),
    Checkpoint,
    Finish {
        gaps: Vec<Gap>,
        xruns: u64,
        error: Option<String>,
        rt: RtStats,
    },
}

#[derive(Default)]
struct Health {
    queued: AtomicU64,
    stopped: Stopped,
    /// Frames the copy's files hold, once it finished.
    frames: AtomicU64,
}

/// How a copy ended, for the take's manifest.
#[derive(Debug, Clone)]
pub struct CompanionEnd {
    pub dir: PathBuf,
    pub what: String,
    pub frames: u64,
    pub failed: Option<String>,
}

/// One copy in another format, being written.
pub struct Companion {
    pub dir: PathBuf,
    what: String,
    tx: Option<Sender<Op>>,
    health: Arc<Health>,
    thread: Option<JoinHandle<()>>,
}

impl Companion {
    /// Starts the thread that writes `take` (created already: its names are
    /// reserved, its first manifest written).
    pub fn start(take: Take, what: String) -> Result<Companion, String> {
        let dir = take.spec.dir.clone();
        let (tx, rx) = channel();
        let health = Arc::new(Health::default());
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("capstan-copy".into())
            .spawn(move || run(take, rx, &h))
            .map_err(|e| format!("its thread could not start: {e}"))?;
        Ok(Companion { dir, what, tx: Some(tx), health, thread: Some(thread) })
    }

    fn send(&self, op: Op, bytes: u64) {
        if self.health.stopped.why().is_some() {
            return;
        }
        let queued = self.health.queued.fetch_add(bytes, Relaxed) + bytes;
        if queued > MAX_QUEUED {
            self.health.stopped.set(format!("its disk fell more than {} MiB behind", MAX_QUEUED >> 20));
            return;
        }
        if let Some(tx) = &self.tx {
            if tx.send(op).is_err() {
                self.health.stopped.set("its thread stopped".into());
            }
        }
    }

    pub fn origin(&self, frame_time: u64, when: SystemTime) {
        self.send(Op::Origin(frame_time, when), 0);
    }
    pub fn rate(&self, rate: u32) {
        self.send(Op::Rate(rate), 0);
    }
    pub fn marker(&self, frame: u64, frame_time: u64, label: String) {
        self.send(Op::Marker(frame, frame_time, label), 0);
    }
    pub fn continues(&self, previous: String, reason: &str) {
        self.send(Op::Continues(previous, reason.to_owned()), 0);
    }
    pub fn continued_in(&self, next: String) {
        self.send(Op::ContinuedIn(next), 0);
    }
    pub fn checkpoint(&self) {
        self.send(Op::Checkpoint, 0);
    }
    pub fn silence(&self, n: u64, sparse_min: u64) {
        self.send(Op::Silence(n, sparse_min), 0);
    }

    /// `n` frames of `channels` channels, copied for the copy's thread.
    pub fn audio<'a>(&self, n: usize, channels: usize, channel: impl Fn(usize) -> Option<&'a [f32]>) {
        if self.health.stopped.why().is_some() {
            return;
        }
        let data: Vec<Option<Vec<f32>>> =
            (0..channels).map(|c| channel(c).map(|s| s[..n].to_vec())).collect();
        let bytes = data.iter().flatten().map(|v| v.len() as u64 * 4).sum();
        self.send(Op::Audio(n, data), bytes);
    }

    /// Why the copy stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.health.stopped.why()
    }

    /// Ends the copy with the take's own end, and waits (at most
    /// [`FINISH_WAIT`]) for it to be final.
    pub fn finish(mut self, gaps: &[Gap], xruns: u64, error: Option<&str>, rt: RtStats) -> CompanionEnd {
        let finish = Op::Finish { gaps: gaps.to_vec(), xruns, error: error.map(str::to_owned), rt };
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(finish);
        }
        let deadline = std::time::Instant::now() + FINISH_WAIT;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                if t.join().is_err() {
                    self.health.stopped.set("its thread panicked".into());
                }
            } else {
                self.health.stopped.set(format!("it did not finish within {} s", FINISH_WAIT.as_secs()));
            }
        }
        CompanionEnd {
            dir: self.dir.clone(),
            what: self.what.clone(),
            frames: self.health.frames.load(Relaxed),
            failed: self.health.stopped.why(),
        }
    }
}

/// The copy's own disk guard, at each checkpoint: a copy whose disk has
/// less than a second of it left (and 256 KiB for its manifest and
/// headers) stops there, cleanly, while it can still finish its files.
fn room_left(take: &Take) -> Option<String> {
    let s = &take.spec;
    let per_second = s.sample_rate as u64 * s.port_names.len() as u64 * s.format.bytes() as u64;
    let (free, _) = crate::volume::space(&s.dir).ok()?;
    (free < per_second + (256 << 10)).then(|| format!("its disk is almost full ({} KiB left)", free >> 10))
}

/// The copy's thread: every operation in order on its own take; after a
/// failure, nothing more is written, and the end finalizes what is there.
fn run(mut take: Take, rx: Receiver<Op>, health: &Health) {
    let mut end = None;
    // Markers not yet saved: a burst is saved once, before the next other
    // operation (audio follows within a cycle or two).
    let mut unsaved_marks = false;
    for op in rx.iter() {
        let bytes = match &op {
            Op::Audio(_, d) => d.iter().flatten().map(|v| v.len() as u64 * 4).sum(),
            _ => 0,
        };
        if let Op::Finish { gaps, xruns, error, rt } = op {
            end = Some((gaps, xruns, error, rt));
            break;
        }
        if health.stopped.why().is_none() {
            if unsaved_marks && !matches!(op, Op::Marker(..)) {
                unsaved_marks = false;
                if let Err(e) = take.save_markers() {
                    tracing::warn!(dir = %take.spec.dir.display(), "the copy's markers were not saved: {e}");
                }
            }
            let done = match op {
                Op::Origin(t, w) => take.set_origin(t, w),
                Op::Rate(r) => take.set_sample_rate(r),
                Op::Marker(f, t, l) => {
                    take.add_marker_unsaved(f, t, l);
                    unsaved_marks = true;
                    Ok(())
                }
                Op::Continues(p, r) => take.set_continues(p, &r),
                Op::ContinuedIn(n) => take.set_continued_in(n),
                Op::Audio(n, data) => take.write(n, |c| data[c].as_deref()),
                Op::Silence(n, s) => take.write_silence(n, s),
                Op::Checkpoint => take.checkpoint().map(|()| {
                    if let Some(why) = room_left(&take) {
                        tracing::error!(dir = %take.spec.dir.display(), "the take's copy stopped: {why}");
                        health.stopped.set(why);
                    }
                }),
                Op::Finish { .. } => Ok(()),
            };
            if let Err(e) = done {
                tracing::error!(dir = %take.spec.dir.display(), "the take's copy stopped: {e}");
                health.stopped.set(e.to_string());
            }
        }
        health.queued.fetch_sub(bytes, Relaxed);
    }
    // Ended by the take, or left (the take was dropped): final either way.
    let (gaps, xruns, error, rt) = end.unwrap_or_default();
    let why = health.stopped.why().or(error);
    let (reports, err) = take.finalize(&gaps, xruns, why.as_deref(), rt);
    if let Some(e) = err {
        health.stopped.set(e.to_string());
    }
    health.frames.store(reports.iter().map(|r| r.frames).min().unwrap_or(0), Relaxed);
}

/// Lists the copies in other formats in the take's manifest (`copies`),
/// after the take's own entry (made here if no mirror made it).
pub fn note_copies(
    m: &mut crate::manifest::Manifest,
    primary: &str,
    ends: &[CompanionEnd],
    unmade: &[(PathBuf, String, String)],
) {
    use crate::manifest::CopyState;
    if ends.is_empty() && unmade.is_empty() {
        return;
    }
    if m.copies.is_empty() {
        m.copies.push(CopyState {
            dir: primary.to_owned(),
            state: if m.error.is_some() { "failed" } else { "complete" }.into(),
            frames: m.frames,
            error: m.error.clone(),
            format: None,
        });
    }
    for e in ends {
        m.copies.push(CopyState {
            dir: e.dir.display().to_string(),
            state: if e.failed.is_some() { "failed" } else { "complete" }.into(),
            frames: e.frames,
            error: e.failed.clone(),
            format: Some(e.what.clone()),
        });
    }
    for (dir, what, why) in unmade {
        m.copies.push(CopyState {
            dir: dir.display().to_string(),
            state: "failed".into(),
            frames: 0,
            error: Some(format!("not made: {why}")),
            format: Some(what.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::Local;

    use super::*;
    use crate::disk::TakeSpec;
    use crate::manifest::{Manifest, TakeState};

    fn copy(
        dir: &std::path::Path,
        file_format: FileFormat,
        layout: Layout,
        format: SampleFormat,
    ) -> CompanionSpec {
        CompanionSpec { dir: dir.to_owned(), layout, file_format, format }
    }

    /// A float interleaved take with a mono s16 WAV copy, a FLAC copy, and
    /// a copy whose directory is gone: the two made are takes of their own
    /// under the take's name and id, every sample where the take has it;
    /// the take's manifest lists each copy, its format and how it ended.
    #[test]
    fn copies_in_other_formats_hold_the_takes_samples_and_the_manifest_lists_them() {
        let (a, b, c) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let gone = c.path().join("gone");
        let mut spec = TakeSpec::for_test(a.path(), 2, Layout::Interleaved, SampleFormat::F32);
        spec.companions = vec![
            copy(b.path(), FileFormat::Wav, Layout::Mono, SampleFormat::S16),
            copy(c.path(), FileFormat::Flac, Layout::Interleaved, SampleFormat::S24),
            copy(&gone, FileFormat::Wav, Layout::Mono, SampleFormat::S16),
        ];
        let mut take = Take::create(spec, Local::now()).unwrap();
        // On the s16 grid, so that the s16 copy holds them exactly.
        let data: Vec<Vec<f32>> = (0..2)
            .map(|ch| (0..4800).map(|i| ((i * 3 + ch * 1000) % 30000) as f32 / 32768.0).collect())
            .collect();
        take.set_origin(123_456, std::time::SystemTime::now()).unwrap();
        take.write(2400, |ch| Some(&data[ch][..2400])).unwrap();
        take.add_marker(100, 123_556, "verse".into()).unwrap();
        take.checkpoint().unwrap();
        take.write(2400, |ch| Some(&data[ch][2400..])).unwrap();
        let name = take.name.clone();
        let manifest = take.manifest_path().to_owned();
        assert_eq!(take.mirror_failures().len(), 1, "{:?}", take.mirror_failures());
        let (_, err) = take.finalize(&[], 0, None, RtStats::default());
        assert!(err.is_none(), "{err:?}");
        let m = Manifest::load(&manifest).unwrap();
        assert_eq!(m.copies.len(), 4, "{:?}", m.copies);
        assert_eq!(m.copies[1].format.as_deref(), Some("wav mono s16"));
        assert_eq!((m.copies[1].state.as_str(), m.copies[1].frames), ("complete", 4800));
        assert_eq!(m.copies[2].format.as_deref(), Some("flac interleaved s24"));
        assert_eq!((m.copies[2].state.as_str(), m.copies[2].frames), ("complete", 4800));
        assert_eq!(m.copies[3].state, "failed");
        for (ch, want) in data.iter().enumerate() {
            let f = b.path().join(format!("{name}_in_{}.wav", ch + 1));
            let got: Vec<f32> = hound::WavReader::open(&f)
                .unwrap()
                .samples::<i16>()
                .map(|s| s.unwrap() as f32 / 32768.0)
                .collect();
            assert_eq!(&got, want, "channel {ch}");
        }
        for dir in [b.path(), c.path()] {
            let cm = Manifest::load(&Manifest::path(dir, &name)).unwrap();
            assert_eq!(cm.take_id, m.take_id, "one take id for the take and its copies");
            assert_eq!((cm.state, cm.frames), (TakeState::Complete, 4800));
            assert_eq!(cm.first_frame_time, Some(123_456));
            assert_eq!(cm.markers.len(), 1, "the marker went to the copy too");
        }
        assert!(c.path().join(format!("{name}.flac")).exists());
    }
}
