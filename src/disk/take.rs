//! The files of one take: created up front (so a bad name or a read-only
//! directory fails before anything is recorded), filled by the disk thread.
//! Disk thread only (except [`Take::create`], which the control side calls).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use super::audiofile::AudioFile;

/// The loudness curve's values at most (then its steps double).
const MAX_CURVE: usize = 4096;
use crate::manifest::{Continuation, Manifest, RtStats, TakeState};
use crate::vocab::{ChannelLevel, FileFormat, Gap, Layout, TimeReference};
use crate::wav::{Bext, Ixml, SampleFormat, WavError};

/// Everything needed to create a take's files.
#[derive(Debug, Clone)]
pub struct TakeSpec {
    pub dir: PathBuf,
    pub project: String,
    /// Exact file name chosen by the user (interleaved) or stem (mono); `None`
    /// for the default collision-resistant name.
    pub file: Option<String>,
    pub layout: Layout,
    pub format: SampleFormat,
    pub sample_rate: u32,
    /// Short names of the ports, one per channel.
    pub port_names: Vec<String>,
    /// Stop by itself after this many frames.
    pub max_frames: Option<u64>,
    /// The take id the user gave (defaults to the take name).
    pub take_id: Option<String>,
    /// What fed each port when the take started (for the manifest).
    pub sources: Vec<Vec<String>>,
    /// What each channel is called in the files' iXML (see
    /// `Engine::track_names`); empty: the port names.
    pub track_names: Vec<String>,
    /// The NSM session's name (iXML TAPE); empty outside a session.
    pub tape: String,
    /// What the bext time_reference holds, and in which time zone.
    pub time_reference: TimeReference,
    pub utc: bool,
    /// Measure EBU R 128 loudness (see [`super::loudness`]).
    pub loudness: bool,
    /// WAV or FLAC files.
    pub file_format: FileFormat,
    /// What started the take (for its manifest).
    pub started_by: String,
    /// Directories that get a copy of the take as it is written
    /// (`--mirror`; see [`mirror`]).
    pub mirrors: Vec<PathBuf>,
    /// Where the take goes on, in turn, when its disk fills (`--spill`).
    pub spill: Vec<PathBuf>,
    /// Copies in another format, each a take of its own written by a
    /// thread of its own (`--mirror-as`; see [`companion`]).
    pub companions: Vec<companion::CompanionSpec>,
}

#[cfg(test)]
impl TakeSpec {
    /// A take of `channels` inputs (`in_1`…) in `dir`, named by default.
    pub(crate) fn for_test(dir: &Path, channels: usize, layout: Layout, format: SampleFormat) -> TakeSpec {
        TakeSpec {
            dir: dir.to_owned(),
            project: "t".into(),
            file: None,
            layout,
            format,
            sample_rate: 48000,
            port_names: (1..=channels).map(|i| format!("in_{i}")).collect(),
            max_frames: None,
            take_id: None,
            sources: vec![],
            track_names: vec![],
            tape: String::new(),
            time_reference: TimeReference::Midnight,
            utc: false,
            loudness: true,
            file_format: FileFormat::Wav,
            started_by: "command".into(),
            mirrors: vec![],
            spill: vec![],
            companions: vec![],
        }
    }
}

/// A take whose files exist on disk.
pub struct Take {
    pub spec: TakeSpec,
    pub name: String,
    manifest: Manifest,
    manifest_path: PathBuf,
    files: Vec<AudioFile>,
    bexts: Vec<Bext>,
    ixmls: Vec<Ixml>,
    /// One loudness meter per file (none if not measured).
    meters: Vec<super::loudness::Meter>,
    /// Each channel's level as the encoder measured it (see `levels`).
    levels: Vec<ChannelLevel>,
    /// The loudest file's momentary loudness every `curve_step` frames,
    /// where measured: the picture's loudness curve.
    curve: Vec<f32>,
    curve_step: u64,
    frames: u64,
    /// Checkpoints so far (which group of files the next one syncs).
    checkpoints: u64,
    /// The copies being written (`--mirror`), and those that could not
    /// even be made (directory, why).
    mirrors: Vec<mirror::Mirror>,
    mirrors_unmade: Vec<(PathBuf, String)>,
    /// The copies in another format, and those not made (directory, what,
    /// why).
    companions: Vec<companion::Companion>,
    companions_unmade: Vec<(PathBuf, String, String)>,
}

/// Files per sync group: a take of more files syncs them in turns, one
/// group per checkpoint, at most [`MAX_SYNC_GROUPS`] turns.
pub const SYNC_GROUP: usize = 64;
/// So each file is synced at least every 4 checkpoints (2 s).
pub const MAX_SYNC_GROUPS: usize = 4;

/// Which files checkpoint number `turn` syncs, of a take of `files`: all
/// of them up to [`SYNC_GROUP`]; beyond, one of up to [`MAX_SYNC_GROUPS`]
/// groups in turn, so the cost of syncing does not grow as files ×
/// checkpoints (each file's header still claims only its synced frames).
pub fn sync_group(files: usize, turn: u64) -> std::ops::Range<usize> {
    let groups = (files / SYNC_GROUP).clamp(1, MAX_SYNC_GROUPS);
    let per = files.div_ceil(groups);
    let g = (turn % groups as u64) as usize;
    (g * per).min(files)..((g + 1) * per).min(files)
}

/// A file as it was left.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub frames: u64,
    pub bytes: u64,
    pub rf64: bool,
}

pub mod companion;
mod create;
pub mod mirror;

impl Take {
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path()).collect()
    }

    /// Frames written per channel so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes of all the take's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.file_bytes()).sum()
    }

    /// Bytes its files have allocated ahead of their audio: disk space
    /// the take will fill, which the free count no longer shows.
    pub fn reserved_ahead(&self) -> u64 {
        self.files.iter().map(|f| f.reserved_ahead()).sum()
    }

    /// Frames still allowed by `max_frames`.
    pub fn remaining(&self) -> u64 {
        self.spec.max_frames.map_or(u64::MAX, |m| m.saturating_sub(self.frames))
    }

    /// Records where and when the first frame was: JACK's `frame_time` and
    /// the system clock's `when`. The bext time_reference gets samples since
    /// midnight (or the frame time, see [`TimeReference`]), the bext and
    /// iXML the date and time, the manifest both.
    pub fn set_origin(&mut self, frame_time: u64, when: std::time::SystemTime) -> Result<(), WavError> {
        let stamp = super::wallclock::Stamp::of(when, self.spec.sample_rate, self.spec.utc);
        let time_reference = match self.spec.time_reference {
            TimeReference::Midnight => stamp.samples_since_midnight,
            TimeReference::Jack => frame_time,
        };
        for ((f, b), x) in self.files.iter_mut().zip(&mut self.bexts).zip(&mut self.ixmls) {
            b.time_reference = time_reference;
            b.origination_date = stamp.date.clone();
            b.origination_time = stamp.time.clone();
            x.samples_since_midnight = stamp.samples_since_midnight;
            x.jack_frame_time = Some(frame_time);
            f.update_meta(b, x)?;
        }
        self.companions.iter().for_each(|c| c.origin(frame_time, when));
        self.manifest.first_frame_time = Some(frame_time);
        self.manifest.time_reference = Some(time_reference);
        self.manifest.started = Some(if self.spec.utc {
            DateTime::<chrono::Utc>::from(when).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        } else {
            DateTime::<Local>::from(when).to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        });
        self.save_manifest()
    }

    /// A marker at `frame` (offset in the files; JACK frame time
    /// `frame_time`), saved in the manifest at once so that it survives a
    /// crash (`capstan recover` writes it into the files).
    pub fn add_marker(&mut self, frame: u64, frame_time: u64, label: String) -> Result<(), WavError> {
        self.add_marker_unsaved(frame, frame_time, label);
        self.save_manifest()
    }

    /// [`Self::add_marker`] without the save: a burst of markers is saved
    /// once ([`Self::save_markers`]), not once each (1,000 marks cost
    /// 1,000 growing manifests and syncs, and held the disk thread seconds).
    pub fn add_marker_unsaved(&mut self, frame: u64, frame_time: u64, label: String) {
        self.companions.iter().for_each(|c| c.marker(frame, frame_time, label.clone()));
        self.manifest.markers.push(crate::wav::Marker { frame, frame_time, label });
    }

    /// Saves the take's gaps so far in its manifest, if they changed since
    /// the last save: a take recovered after a crash still says where its
    /// frames were lost (before, only the finished take said so). Called at
    /// checkpoints, so a machine that loses a cycle every 90 ms saves the
    /// manifest at most twice a second for it.
    pub fn save_gaps(&mut self, gaps: &[Gap]) -> Result<(), WavError> {
        if self.manifest.gaps == gaps {
            return Ok(());
        }
        self.manifest.gaps = gaps.to_vec();
        self.manifest.gaps_until = Some(self.frames);
        self.save_manifest()
    }

    /// Saves the markers added with [`Self::add_marker_unsaved`].
    pub fn save_markers(&self) -> Result<(), WavError> {
        self.save_manifest()
    }

    /// An alarm raised during the take: the first of its kind (and input)
    /// is saved at once, so that it survives a crash; later ones are
    /// counted, and saved with the next manifest update.
    pub fn add_alarm(&mut self, record: crate::vocab::AlarmRecord) -> Result<(), WavError> {
        let alarms = &mut self.manifest.alarms;
        match alarms.iter_mut().find(|a| a.kind == record.kind && a.input == record.input) {
            Some(a) => {
                a.count += 1;
                Ok(())
            }
            None => {
                alarms.push(crate::vocab::AlarmRecord { count: 1, ..record });
                self.save_manifest()
            }
        }
    }

    /// Removes and returns the markers at `frames` or later (they belong to
    /// the take that continues this one). The manifest is saved when the
    /// take is finalized.
    pub fn split_markers(&mut self, frames: u64) -> Vec<crate::wav::Marker> {
        let (keep, rest) =
            std::mem::take(&mut self.manifest.markers).into_iter().partition(|m| m.frame < frames);
        self.manifest.markers = keep;
        rest
    }

    /// The take id the manifest carries (shared by all its segments).
    pub fn take_id(&self) -> &str {
        &self.manifest.take_id
    }

    /// Re-labels the files with JACK's new rate before any audio is written.
    pub fn set_sample_rate(&mut self, rate: u32) -> Result<(), WavError> {
        let old = format!("F={},", self.spec.sample_rate);
        self.spec.sample_rate = rate;
        self.companions.iter().for_each(|c| c.rate(rate));
        for ((f, b), x) in self.files.iter_mut().zip(&mut self.bexts).zip(&mut self.ixmls) {
            b.coding_history = b.coding_history.replace(&old, &format!("F={rate},"));
            x.sample_rate = rate;
            f.set_sample_rate(rate, b, x)?;
        }
        self.manifest.sample_rate = rate;
        self.save_manifest()
    }

    /// This segment continues the take's segment `previous` (JACK's rate or
    /// clock changed: `reason`).
    pub fn set_continues(&mut self, previous: String, reason: &str) -> Result<(), WavError> {
        self.companions.iter().for_each(|c| c.continues(previous.clone(), reason));
        self.manifest.continues = Some(Continuation { segment: previous, reason: reason.to_owned() });
        self.save_manifest()
    }

    /// The take goes on in segment `next`.
    pub fn set_continued_in(&mut self, next: String) -> Result<(), WavError> {
        self.companions.iter().for_each(|c| c.continued_in(next.clone()));
        self.manifest.continued_in = Some(next);
        self.save_manifest()
    }

    fn save_manifest(&self) -> Result<(), WavError> {
        let json = serde_json::to_vec_pretty(&self.manifest).map_err(std::io::Error::other);
        json.and_then(|j| {
            crate::manifest::write_atomic(&self.manifest_path, &j)?;
            for m in &self.mirrors {
                m.manifest(&j);
            }
            Ok(())
        })
        .map_err(|source| WavError::Io {
            path: self.manifest_path.clone(),
            op: "manifest update",
            frames_safe: self.files.first().map_or(0, |f| f.frames_committed()),
            source,
        })
    }

    /// The copies that stopped (`--mirror`), each said in a sentence: which
    /// copy, at which frame, why.
    pub fn mirror_failures(&self) -> Vec<String> {
        let unmade = self
            .mirrors_unmade
            .iter()
            .map(|(d, why)| format!("the copy in {} was not made: {why}", d.display()))
            .chain(
                self.companions_unmade
                    .iter()
                    .map(|(d, what, why)| format!("the {what} copy in {} was not made: {why}", d.display())),
            );
        let formats = self.companions.iter().filter_map(|c| {
            c.failure()
                .map(|why| format!("the copy in {} stopped in take {}: {why}", c.dir.display(), self.name))
        });
        let stopped = self.mirrors.iter().filter_map(|m| {
            m.failure().map(|why| {
                format!(
                    "the copy in {} stopped at frame {} of take {}: {why}",
                    m.dir.display(),
                    m.frames_held(),
                    self.name
                )
            })
        });
        unmade.chain(stopped).chain(formats).collect()
    }

    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// Appends `n` frames; `channel(c)` gives channel `c`'s samples, or `None`
    /// for silence. Each channel's level is added to [`Self::levels`].
    pub fn write<'a>(
        &mut self,
        n: usize,
        channel: impl Fn(usize) -> Option<&'a [f32]>,
    ) -> Result<(), WavError> {
        let format = self.spec.format;
        let channels = self.spec.port_names.len();
        // One encoder for both layouts: a mono file is a one-channel
        // interleave.
        if self.spec.layout == Layout::Mono {
            for (c, f) in self.files.iter_mut().enumerate() {
                f.append(n, &[channel(c)], format, &mut self.levels[c..c + 1])?;
            }
            for (c, m) in self.meters.iter_mut().enumerate() {
                m.add(n, 1, |_| channel(c));
            }
        } else {
            let chans: Vec<Option<&[f32]>> = (0..channels).map(&channel).collect();
            self.files[0].append(n, &chans, format, &mut self.levels)?;
            if let Some(m) = self.meters.first_mut() {
                m.add(n, channels, |c| chans[c]);
            }
        }
        self.companions.iter().for_each(|c| c.audio(n, channels, &channel));
        self.frames += n as u64;
        self.note_curve(false);
        Ok(())
    }

    /// Samples the loudness for the curve at every step the take passed
    /// (`silent`: through a stretch of silence the meters did not see).
    fn note_curve(&mut self, silent: bool) {
        if self.meters.is_empty() {
            return;
        }
        while (self.curve.len() as u64 + 1) * self.curve_step <= self.frames {
            self.curve.push(if silent { f32::NEG_INFINITY } else { self.momentary() as f32 });
            if self.curve.len() >= MAX_CURVE {
                // Twice as long steps, the louder of each pair kept.
                self.curve = self
                    .curve
                    .chunks(2)
                    .map(|p| p.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)))
                    .collect();
                self.curve_step *= 2;
            }
        }
    }

    /// The loudness curve: momentary loudness (LUFS; -inf in silence) at
    /// every `step` frames from the take's start (empty when not
    /// measured). Returns (step, values).
    pub fn loudness_curve(&self) -> (u64, &[f32]) {
        (self.curve_step, &self.curve)
    }

    /// Each channel's level (peak, sum of squares) over what was written
    /// since [`Self::clear_levels`], measured by the encoder.
    pub fn levels(&self) -> &[ChannelLevel] {
        &self.levels
    }

    pub fn clear_levels(&mut self) {
        self.levels.fill(ChannelLevel::default());
    }

    /// The loudest file's momentary loudness (LUFS; -inf in silence or
    /// when not measured).
    pub fn momentary(&self) -> f64 {
        self.meters.iter().map(|m| m.momentary()).fold(f64::NEG_INFINITY, f64::max)
    }

    /// Appends `n` frames of silence on every channel; from `sparse_min`
    /// frames on, the files are extended sparsely instead of written.
    pub fn write_silence(&mut self, n: u64, sparse_min: u64) -> Result<(), WavError> {
        if n < sparse_min {
            return self.write(n as usize, |_| None);
        }

        let channels = if self.spec.layout == Layout::Mono { 1 } else { self.spec.port_names.len() };
        for f in &mut self.files {
            f.append_silence(n, channels)?;
        }
        self.companions.iter().for_each(|c| c.silence(n, sparse_min));
        self.frames += n;
        self.note_curve(true);
        Ok(())
    }

    /// Frames of this take (segment) that JACK delivered twice.
    pub fn note_repeated(&mut self, frames: u64) {
        self.manifest.repeated_frames = frames;
    }

    /// The markers set so far: (frame offset in the take, label).
    pub fn markers(&self) -> Vec<(u64, String)> {
        self.manifest.markers.iter().map(|m| (m.frame, m.label.clone())).collect()
    }

    /// The take's picture is written, by this file name (in the take's
    /// directory); the manifest names it.
    pub fn note_picture(&mut self, name: String) {
        self.manifest.picture = Some(name);
    }

    /// The directory the take's files are in.
    pub fn dir(&self) -> &Path {
        self.files.first().and_then(|f| f.path().parent()).unwrap_or(&self.spec.dir)
    }

    /// What the take's inputs are called (JACK's pretty names where set).
    pub fn input_names(&self) -> Vec<String> {
        let s = &self.spec;
        (0..s.port_names.len())
            .map(|i| s.track_names.get(i).filter(|t| !t.is_empty()).unwrap_or(&s.port_names[i]).clone())
            .collect()
    }

    /// Makes everything written so far to this checkpoint's group of files
    /// crash-safe (see [`WavWriter::checkpoint`] and [`sync_group`]).
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        let group = sync_group(self.files.len(), self.checkpoints);
        self.checkpoints += 1;
        self.companions.iter().for_each(|c| c.checkpoint());
        AudioFile::checkpoint_all(&mut self.files[group])
    }

    /// The take's WAV files (none for FLAC), e.g. to wrap their I/O.
    pub fn wav_writers(&mut self) -> impl Iterator<Item = &mut crate::wav::WavWriter> {
        self.files.iter_mut().filter_map(|f| match f {
            AudioFile::Wav(w) => Some(w),
            AudioFile::Flac(_) => None,
        })
    }

    /// Finalizes every file, even if one fails, and the manifest (complete,
    /// or failed with `error`); returns what each file holds and the first
    /// error.
    pub fn finalize(
        mut self,
        gaps: &[Gap],
        xruns: u64,
        error: Option<&str>,
        rt: RtStats,
    ) -> (Vec<FileReport>, Option<WavError>) {
        let mut reports = Vec::new();
        let mut first_err = None;
        let mut markers = std::mem::take(&mut self.manifest.markers);
        markers.sort_by_key(|m| m.frame);
        markers.retain(|m| m.frame < self.frames);
        let trailer = crate::wav::cue::trailer(&markers);
        let loudness: Vec<crate::wav::Loudness> = self.meters.iter().map(|m| m.summary()).collect();
        for (i, f) in self.files.iter_mut().enumerate() {
            if let Some(l) = loudness.get(i) {
                self.bexts[i].loudness = *l;
                if let Err(e) = f.update_meta(&self.bexts[i], &self.ixmls[i]) {
                    tracing::warn!("{}: loudness not written into the bext: {e}", f.path().display());
                }
            }
        }
        for f in self.files {
            let path = f.path().to_owned();
            let bytes = f.file_bytes();
            let committed = f.frames_committed();
            let rf64 = f.is_rf64();
            match f.finalize(&trailer) {
                Ok((frames, rf64)) => reports.push(FileReport { path, frames, bytes, rf64 }),
                Err(e) => {
                    let frames = match &e {
                        WavError::Io { frames_safe, .. } => *frames_safe,
                        _ => committed,
                    };
                    let bytes = std::fs::metadata(&path).map_or(bytes, |m| m.len());
                    reports.push(FileReport { path, frames, bytes, rf64 });
                    first_err.get_or_insert(e);
                }
            }
        }
        // The copies finish what was sent to them (the final headers).
        let err = error.map(str::to_owned).or_else(|| first_err.as_ref().map(|e| e.to_string()));
        let rendered: Vec<companion::CompanionEnd> =
            self.companions.into_iter().map(|c| c.finish(gaps, xruns, err.as_deref(), rt)).collect();
        let mut ends: Vec<mirror::MirrorEnd> = self.mirrors.into_iter().map(mirror::Mirror::finish).collect();
        ends.extend(self.mirrors_unmade.into_iter().map(|(dir, why)| mirror::MirrorEnd {
            dir,
            made: false,
            failed: Some(why),
            frames: 0,
        }));
        let mut m = self.manifest;
        m.markers = markers;
        m.loudness = loudness;
        m.frames = reports.iter().map(|r| r.frames).min().unwrap_or(0);
        m.gaps = gaps.to_vec();
        m.gaps_until = None;
        m.xruns = xruns;
        m.rt = Some(rt);
        m.state = if err.is_some() { TakeState::Failed } else { TakeState::Complete };
        m.clean = Some(err.is_none() && gaps.is_empty());
        m.error = err;
        let primary = self.spec.dir.display().to_string();
        mirror::note_copies(&mut m, &primary, &ends);
        companion::note_copies(&mut m, &primary, &rendered, &self.companions_unmade);
        if let Err(source) = m.save(&self.manifest_path) {
            let e = WavError::Io {
                path: self.manifest_path.clone(),
                op: "manifest update",
                frames_safe: m.frames,
                source,
            };
            first_err.get_or_insert(e);
        }
        let name = self.manifest_path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        mirror::finish_copies(&m, &name, &self.spec.dir, &ends);
        (reports, first_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creating a take: every name it reserves, and its first manifest, are
    /// on the disk before the take is reported created (see
    /// `durable::check`); the manifest's content is synced too.
    #[test]
    fn a_created_take_survives_a_crash_names_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        for layout in [Layout::Interleaved, Layout::Mono] {
            crate::durable::take_log();
            let t = Take::create(TakeSpec::for_test(dir.path(), 3, layout, SampleFormat::F32), Local::now())
                .unwrap();
            let log = crate::durable::take_log();
            crate::durable::check(&log).unwrap();
            let created = log.iter().filter(|s| matches!(s, crate::durable::Step::Create(_))).count();
            assert_eq!(created, t.paths().len() + 1, "{log:?}");
            assert!(log.contains(&crate::durable::Step::SyncFile(t.manifest_path().to_owned())), "{log:?}");
        }
    }

    fn spec(dir: &Path, file: &str, layout: Layout) -> TakeSpec {
        TakeSpec { file: Some(file.into()), ..TakeSpec::for_test(dir, 2, layout, SampleFormat::F32) }
    }

    /// `--file X` in mono, then `--file X` interleaved: the second take's
    /// manifest would be the first's. Every name a take uses is reserved
    /// before any is written, so the second is refused and leaves nothing.
    #[test]
    fn a_take_never_replaces_another_takes_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let first = Take::create(spec(dir.path(), "X", Layout::Mono), Local::now()).unwrap();
        first.finalize(&[], 0, None, Default::default());
        let manifest = std::fs::read(Manifest::path(dir.path(), "X")).unwrap();
        let listing = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let before = listing(dir.path());
        for layout in [Layout::Interleaved, Layout::Mono] {
            let again = Take::create(spec(dir.path(), "X", layout), Local::now());
            assert!(matches!(again, Err(WavError::Exists { .. })), "{layout:?}");
            assert_eq!(std::fs::read(Manifest::path(dir.path(), "X")).unwrap(), manifest);
            assert_eq!(listing(dir.path()), before);
        }
    }

    /// Up to 64 files every checkpoint syncs them all; beyond, the groups
    /// are disjoint, cover every file within 4 checkpoints (2 s), and hold
    /// fewer than 128 files or a quarter of them.
    #[test]
    fn sync_groups_cover_every_file_within_four_checkpoints() {
        for files in [0, 1, 2, 63, 64, 127, 128, 200, 256, 257, 512, 1000, 1024] {
            let groups = (files / SYNC_GROUP).clamp(1, MAX_SYNC_GROUPS);
            let mut seen = vec![0; files];
            for turn in 0..groups as u64 {
                let g = sync_group(files, turn);
                if files <= SYNC_GROUP {
                    assert_eq!(g, 0..files);
                }
                assert!(
                    g.len() < 2 * SYNC_GROUP || g.len() <= files.div_ceil(MAX_SYNC_GROUPS),
                    "{files}: {g:?}"
                );
                g.for_each(|i| seen[i] += 1);
            }
            assert!(seen.iter().all(|&n| n == 1), "{files}: {seen:?}");
            assert_eq!(sync_group(files, groups as u64), sync_group(files, 0), "{files}: in turns");
        }
    }

    /// A mono take of 130 files syncs them in two groups, one per
    /// checkpoint: after the first, the first group's headers claim what was
    /// written and the second's still claim nothing; after the second, all
    /// of them claim it (a sync left out would leave a file at 0).
    #[test]
    fn a_take_of_many_files_syncs_them_in_turns_and_every_file_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TakeSpec::for_test(dir.path(), 130, Layout::Mono, SampleFormat::F32);
        let mut t = Take::create(spec, Local::now()).unwrap();
        let audio = vec![0.25f32; 4800];
        t.write(4800, |_| Some(&audio[..])).unwrap();
        let committed = |t: &Take| t.files.iter().map(|f| f.frames_committed()).collect::<Vec<u64>>();
        t.checkpoint().unwrap();
        let after_one = committed(&t);
        assert!(after_one[..65].iter().all(|&n| n == 4800), "{after_one:?}");
        assert!(after_one[65..].iter().all(|&n| n == 0), "{after_one:?}");
        t.checkpoint().unwrap();
        assert!(committed(&t).iter().all(|&n| n == 4800), "{:?}", committed(&t));
        t.finalize(&[], 0, None, Default::default());
    }
}
