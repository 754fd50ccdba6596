//! Creating a take's files: names (never an existing one), every name
//! reserved before anything is written, the header metadata of each file
//! (bext, iXML or FLAC comments) and the first manifest.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use super::mirror::Mirror;
use super::{AudioFile, Take, TakeSpec};
use crate::manifest::{Manifest, PortInfo, TakeState};
use crate::naming;
use crate::vocab::FileFormat;
use crate::vocab::Layout;
use crate::wav::{Bext, Ixml, SampleFormat, WavError, WavSpec, WavWriter};

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
        // A client's take id goes into the file name, never into the
        // project the files are tagged with.
        let base = match &spec.take_id {
            Some(id) => format!("{}_{}", spec.project, naming::sanitize(id)),
            None => spec.project.clone(),
        };
        let mut seq = 1;
        loop {
            let stem = naming::default_stem(&base, now, seq, 1);
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
                None => {
                    let mut w = WavWriter::start(file, &path, wspec, &bext, &ixml.encode())?;
                    w.set_max_buffer_age(buffer_age(names.len()));
                    AudioFile::Wav(w)
                }
                Some(fs) => AudioFile::Flac(Box::new(crate::flac::FlacWriter::start(
                    file,
                    &path,
                    fs,
                    &crate::disk::audiofile::flac_comments(&bext, &ixml),
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
            state: TakeState::Recording,
            started_by: Some(spec.started_by.clone()),
            ..Default::default()
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
                .filter_map(|_| crate::disk::loudness::Meter::new(channels as usize, spec.sample_rate))
                .collect()
        } else {
            Vec::new()
        };
        let levels = vec![crate::vocab::ChannelLevel::default(); spec.port_names.len()];
        let spec_rate = spec.sample_rate;
        let (mirrors, mirrors_unmade) = make_mirrors(&spec, names, manifest_path, &manifest, &mut files);
        let (companions, companions_unmade) = make_companions(&spec, &name, &manifest.take_id, now);
        Ok(Take {
            spec,
            name,
            manifest,
            manifest_path: manifest_path.to_owned(),
            files,
            bexts,
            ixmls,
            meters,
            levels,
            curve: Vec::new(),
            curve_step: (spec_rate / 10).max(1) as u64,
            frames: 0,
            checkpoints: 0,
            mirrors,
            mirrors_unmade,
            companions,
            companions_unmade,
        })
    }
}

/// The take's copies in other formats (`--mirror-as`): each a take of its
/// own under the take's name and id, in its directory, with a thread of its
/// own. One that cannot be made is noted (the take goes on without it).
fn make_companions(
    spec: &TakeSpec,
    name: &str,
    take_id: &str,
    now: DateTime<Local>,
) -> (Vec<super::companion::Companion>, Vec<(PathBuf, String, String)>) {
    let (mut made, mut unmade) = (Vec::new(), Vec::new());
    for c in &spec.companions {
        let what = c.describe();
        let copy = TakeSpec {
            dir: c.dir.clone(),
            file: Some(format!("{name}.{}", c.file_format.ext())),
            take_id: Some(take_id.to_owned()),
            layout: c.layout,
            format: c.format,
            file_format: c.file_format,
            loudness: false,
            max_frames: None,
            mirrors: vec![],
            spill: vec![],
            companions: vec![],
            ..spec.clone()
        };
        let started = Take::create(copy, now)
            .map_err(|e| e.to_string())
            .and_then(|t| super::companion::Companion::start(t, what.clone()));
        match started {
            Ok(c) => made.push(c),
            Err(why) => {
                tracing::error!(dir = %c.dir.display(), "the take's {what} copy was not made: {why}");
                unmade.push((c.dir.clone(), what, why));
            }
        }
    }
    (made, unmade)
}

/// The take's copies (`--mirror`), each in its directory under the take's
/// names, and every WAV file's operations passed on to them. A copy that
/// cannot be made is noted (the take goes on without it).
fn make_mirrors(
    spec: &TakeSpec,
    names: &[String],
    manifest_path: &Path,
    manifest: &Manifest,
    files: &mut [AudioFile],
) -> (Vec<Mirror>, Vec<(PathBuf, String)>) {
    let (mut made, mut unmade) = (Vec::new(), Vec::new());
    if spec.mirrors.is_empty() {
        return (made, unmade);
    }
    let manifest_name =
        manifest_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let first = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    let headers: std::io::Result<Vec<Vec<u8>>> = files.iter().map(|f| std::fs::read(f.path())).collect();
    for dir in &spec.mirrors {
        let result = match (&headers, spec.file_format) {
            (_, FileFormat::Flac) => Err("FLAC takes are not mirrored (WAV only)".to_string()),
            (Err(e), _) => Err(format!("cannot read the take's headers: {e}")),
            (Ok(h), FileFormat::Wav) => Mirror::create(dir, names, &manifest_name, h, &first),
        };
        match result {
            Ok(m) => made.push(m),
            Err(why) => {
                tracing::error!(dir = %dir.display(), "the take's copy was not made: {why}");
                unmade.push((dir.clone(), why));
            }
        }
    }
    for (i, f) in files.iter_mut().enumerate() {
        if let AudioFile::Wav(w) = f {
            w.wrap_io(|io| Mirror::wrap(io, i, &made));
        }
    }
    (made, unmade)
}

/// How long audio may wait in each file's buffer: 50 ms for one file, and
/// longer as files multiply (50 ms each, up to the checkpoint interval, which
/// writes everything out anyway), so that hundreds of files write in large
/// pieces rather than one small write each every 50 ms. A kill -9 loses what
/// waits: at most 0.5 s in the mono layout.
fn buffer_age(files: usize) -> std::time::Duration {
    (crate::wav::MAX_BUFFER_AGE * files.max(1) as u32).min(crate::disk::CHECKPOINT_INTERVAL)
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
