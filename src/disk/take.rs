//! The files of one take: created up front (so a bad name or a read-only
//! directory fails before anything is recorded), filled by the disk thread.
//! Disk thread only (except [`Take::create`], which the control side calls).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use super::audiofile::AudioFile;
use super::Gap;
use crate::manifest::{Continuation, Manifest, PortInfo, RtStats, TakeState};
use crate::naming;
use crate::settings::FileFormat;
use crate::settings::TimeReference;
use crate::wav::{Bext, Ixml, SampleFormat, WavError, WavSpec, WavWriter};

/// One interleaved file, or one mono file per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Interleaved,
    Mono,
}

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
    frames: u64,
}

/// The bext coding history (EBU R 98): how the audio was made, e.g.
/// `A=PCM,F=48000,W=24,M=multitrack,T=capstan 0.1.0`. R 98 has no code for
/// floating point, so float files say `A=PCM` with `W=32` and name the
/// format in the text field.
fn coding_history(rate: u32, format: SampleFormat, channels: u16) -> String {
    let mode = match channels {
        1 => "mono",
        2 => "stereo",
        _ => "multitrack",
    };
    let float = if format.is_float() { " float" } else { "" };
    format!("A=PCM,F={rate},W={},M={mode},T=capstan {}{float}\r\n", format.bits(), env!("CARGO_PKG_VERSION"))
}

/// A file as it was left.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub frames: u64,
    pub bytes: u64,
    pub rf64: bool,
}

impl Take {
    /// Picks names and creates every file (O_EXCL). On failure nothing is
    /// left behind: files this call created are removed again.
    pub fn create(spec: TakeSpec, now: DateTime<Local>) -> Result<Take, WavError> {
        let mono = spec.layout == Layout::Mono;
        let ports = mono.then_some(spec.port_names.as_slice());
        let ext = spec.file_format.ext();
        if let Some(file) = &spec.file {
            let stem = file.strip_suffix(&format!(".{ext}")).unwrap_or(file);
            let names = if mono { naming::file_names(stem, ports, ext) } else { vec![file.clone()] };
            return Self::create_files(spec.clone(), stem.to_owned(), &names, now);
        }
        let mut seq = 1;
        loop {
            let stem = naming::default_stem(&spec.project, now, seq, 1);
            if !naming::stem_taken(&spec.dir, &stem) {
                match Self::create_files(
                    spec.clone(),
                    stem.clone(),
                    &naming::file_names(&stem, ports, ext),
                    now,
                ) {
                    Err(WavError::Exists { .. }) => {} // lost a race: next number
                    other => return other,
                }
            }
            seq += 1;
        }
    }

    /// Creates the take's files named `names` and its manifest. Every name
    /// is reserved (O_EXCL) before anything is written into any of them, so
    /// a take can never replace another take's file or manifest; on any
    /// failure everything reserved is removed again.
    fn create_files(
        spec: TakeSpec,
        name: String,
        names: &[String],
        now: DateTime<Local>,
    ) -> Result<Take, WavError> {
        let manifest_path = Manifest::path(&spec.dir, &name);
        let mut reserved: Vec<PathBuf> = Vec::with_capacity(names.len() + 1);
        let result = Self::reserve_and_write(spec, name, names, now, &manifest_path, &mut reserved);
        if result.is_err() {
            for p in &reserved {
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }

    fn reserve_and_write(
        spec: TakeSpec,
        name: String,
        names: &[String],
        now: DateTime<Local>,
        manifest_path: &Path,
        reserved: &mut Vec<PathBuf>,
    ) -> Result<Take, WavError> {
        let mut manifest_file = crate::wav::writer::reserve(manifest_path)?;
        reserved.push(manifest_path.to_owned());
        let mut audio = Vec::with_capacity(names.len());
        for n in names {
            let path = spec.dir.join(n);
            audio.push((crate::wav::writer::reserve(&path)?, path.clone()));
            reserved.push(path);
        }
        // New names must survive a crash as well as their content.
        crate::durable::sync_dir(&spec.dir)
            .map_err(|source| WavError::Create { path: spec.dir.clone(), source })?;
        let mono = spec.layout == Layout::Mono;
        let channels = if mono { 1 } else { spec.port_names.len() as u16 };
        let wspec = WavSpec { channels, sample_rate: spec.sample_rate, format: spec.format };
        let take_id = spec.take_id.clone().unwrap_or_else(|| name.clone());
        let family = mono.then(crate::wav::new_uid);
        let flac = match spec.file_format {
            FileFormat::Wav => None,
            FileFormat::Flac => {
                Some(crate::flac::FlacSpec::new(channels, spec.sample_rate, spec.format).map_err(|e| {
                    WavError::Create {
                        path: spec.dir.join(&names[0]),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                    }
                })?)
            }
        };
        let mut files: Vec<AudioFile> = Vec::with_capacity(names.len());
        let mut bexts = Vec::with_capacity(names.len());
        let mut ixmls = Vec::with_capacity(names.len());
        for (i, (file, path)) in audio.into_iter().enumerate() {
            let ports = if mono { spec.port_names[i].clone() } else { spec.port_names.join(",") };
            let bext = Bext {
                description: format!("capstan take {take_id}; project {}; ports {ports}", spec.project),
                originator: "capstan".into(),
                originator_reference: name.clone(),
                origination_date: now.format("%Y-%m-%d").to_string(),
                origination_time: now.format("%H:%M:%S").to_string(),
                time_reference: 0,
                coding_history: coding_history(spec.sample_rate, spec.format, channels),
                loudness: Default::default(),
            };
            let track = |c: usize, interleave: usize| crate::wav::Track {
                channel_index: c + 1,
                interleave_index: interleave,
                name: spec.track_names.get(c).unwrap_or(&spec.port_names[c]).clone(),
            };
            let ixml = Ixml {
                project: spec.project.clone(),
                take: take_id.clone(),
                tape: spec.tape.clone(),
                file_uid: crate::wav::new_uid(),
                file_set: family.clone().map(|f| (f, i + 1, names.len())),
                sample_rate: spec.sample_rate,
                bit_depth: spec.format.bits(),
                samples_since_midnight: 0,
                jack_frame_time: None,
                tracks: if mono {
                    vec![track(i, 1)]
                } else {
                    (0..spec.port_names.len()).map(|c| track(c, c + 1)).collect()
                },
            };
            files.push(match flac {
                None => AudioFile::Wav(WavWriter::start(file, &path, wspec, &bext, &ixml.encode())?),
                Some(fs) => AudioFile::Flac(Box::new(crate::flac::FlacWriter::start(
                    file,
                    &path,
                    fs,
                    &super::audiofile::flac_comments(&bext, &ixml),
                )?)),
            });
            bexts.push(bext);
            ixmls.push(ixml);
        }
        let manifest = Manifest {
            capstan_version: env!("CARGO_PKG_VERSION").into(),
            take_id,
            project: spec.project.clone(),
            files: names.to_vec(),
            file_uids: ixmls.iter().map(|x| x.file_uid.clone()).collect(),
            ports: spec
                .port_names
                .iter()
                .enumerate()
                .map(|(i, p)| PortInfo {
                    name: p.clone(),
                    sources: spec.sources.get(i).cloned().unwrap_or_default(),
                    track_name: spec.track_names.get(i).filter(|t| *t != p).cloned(),
                })
                .collect(),
            sample_rate: spec.sample_rate,
            sample_format: spec.format.to_string(),
            layout: format!("{:?}", spec.layout).to_lowercase(),
            first_frame_time: None,
            time_reference: None,
            started: None,
            frames: 0,
            gaps: Vec::new(),
            repeated_frames: 0,
            xruns: 0,
            state: TakeState::Recording,
            error: None,
            loudness: Vec::new(),
            markers: Vec::new(),
            recovery: None,
            rt: None,
            continues: None,
            continued_in: None,
        };
        // The first version goes into the reserved file itself; later
        // versions replace it atomically (Manifest::save).
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other);
        json.and_then(|j| {
            use std::io::Write;
            manifest_file.write_all(&j)?;
            crate::durable::sync_file(&manifest_file, manifest_path)
        })
        .map_err(|source| WavError::Create { path: manifest_path.to_owned(), source })?;
        let meters = if spec.loudness {
            files
                .iter()
                .filter_map(|_| super::loudness::Meter::new(channels as usize, spec.sample_rate))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Take {
            spec,
            name,
            manifest,
            manifest_path: manifest_path.to_owned(),
            files,
            bexts,
            ixmls,
            meters,
            frames: 0,
        })
    }

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
        self.manifest.markers.push(crate::wav::Marker { frame, frame_time, label });
        self.save_manifest()
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
        self.manifest.continues = Some(Continuation { segment: previous, reason: reason.to_owned() });
        self.save_manifest()
    }

    /// The take goes on in segment `next`.
    pub fn set_continued_in(&mut self, next: String) -> Result<(), WavError> {
        self.manifest.continued_in = Some(next);
        self.save_manifest()
    }

    fn save_manifest(&self) -> Result<(), WavError> {
        self.manifest.save(&self.manifest_path).map_err(|source| WavError::Io {
            path: self.manifest_path.clone(),
            op: "manifest update",
            frames_safe: self.files.first().map_or(0, |f| f.frames_committed()),
            source,
        })
    }

    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// Appends `n` frames; `channel(c)` gives channel `c`'s samples, or `None`
    /// for silence.
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
                f.append(n, &[channel(c)], format)?;
            }
            for (c, m) in self.meters.iter_mut().enumerate() {
                m.add(n, 1, |_| channel(c));
            }
        } else {
            let chans: Vec<Option<&[f32]>> = (0..channels).map(&channel).collect();
            self.files[0].append(n, &chans, format)?;
            if let Some(m) = self.meters.first_mut() {
                m.add(n, channels, |c| chans[c]);
            }
        }
        self.frames += n as u64;
        Ok(())
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
        self.frames += n;
        Ok(())
    }

    /// Frames of this take (segment) that JACK delivered twice.
    pub fn note_repeated(&mut self, frames: u64) {
        self.manifest.repeated_frames = frames;
    }

    /// Makes everything written so far crash-safe (see [`WavWriter::checkpoint`]).
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        AudioFile::checkpoint_all(&mut self.files)
    }

    /// Finalizes every file, even if one fails, and the manifest (complete,
    /// or failed with `error`); returns what each file holds and the first
    /// error.
    /// Test builds: every file of the take reports to (and obeys) `p`.
    #[cfg(test)]
    pub(crate) fn set_probe(
        &mut self,
        p: std::sync::Arc<std::sync::Mutex<crate::wav::writer::probe::Probe>>,
    ) {
        for f in &mut self.files {
            if let AudioFile::Wav(w) = f {
                w.probe = Some(p.clone());
            }
        }
    }

    /// Test hook: starts the files with `n` frames of sparse silence (to
    /// reach the 4 GiB RF64 promotion quickly). Only before the first frame.
    #[cfg(feature = "test-hooks")]
    pub fn lead_in_silence(&mut self, n: u64) -> Result<(), WavError> {
        assert_eq!(self.frames, 0, "a lead-in comes before any audio");
        let channels = if self.spec.layout == Layout::Mono { 1 } else { self.spec.port_names.len() };
        for f in &mut self.files {
            f.append_silence(n, channels)?;
        }
        self.frames = n;
        Ok(())
    }

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
        let mut m = self.manifest;
        m.markers = markers;
        m.loudness = loudness;
        m.frames = reports.iter().map(|r| r.frames).min().unwrap_or(0);
        m.gaps = gaps.to_vec();
        m.xruns = xruns;
        m.rt = Some(rt);
        let err = error.map(str::to_owned).or_else(|| first_err.as_ref().map(|e| e.to_string()));
        m.state = if err.is_some() { TakeState::Failed } else { TakeState::Complete };
        m.error = err;
        if let Err(source) = m.save(&self.manifest_path) {
            let e = WavError::Io {
                path: self.manifest_path.clone(),
                op: "manifest update",
                frames_safe: m.frames,
                source,
            };
            first_err.get_or_insert(e);
        }
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
}
