//! Export: a set of finished takes as a DAW project or marker lists, every
//! take at its time of day on one timeline, every input a named track,
//! every marker, take and gap in place. Reads manifests only (never writes
//! next to the takes): the project refers to the files where they are.
//!
//! Formats: an Ardour session (`ardour`), a REAPER project (`reaper`), an
//! Audacity label track and CSV (`labels`). Each is a pure function of the [`Show`], tested on its own.

pub mod ardour;
pub mod labels;
pub mod reaper;

use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, SUFFIX};

/// What went wrong, saying which take or file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no capstan take found in {0}")]
    NoTakes(String),
    #[error("{path}: not a capstan manifest: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error(
        "takes of different sample rates cannot share one timeline: {a} is {a_rate} Hz, {b} is {b_rate} Hz"
    )]
    MixedRates { a: String, a_rate: u32, b: String, b_rate: u32 },
    #[error("take {take}: its file {file} is not there (moved or deleted?)")]
    Missing { take: String, file: PathBuf },
    #[error("take {take} has no time of day (no time_reference): it was never started")]
    NoTime { take: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One audio file of a take and the take's channels it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeFile {
    pub path: PathBuf,
    /// (channel in the file, track name) for each channel.
    pub channels: Vec<(usize, String)>,
}

/// A marker or a gap, by its offset in the take.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub frame: u64,
    pub frames: u64,
    pub label: String,
}

/// One take (one segment of it) placed on the day's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedTake {
    pub name: String,
    /// Samples since midnight of its first frame (the bext time_reference),
    /// or where the take it continues ends (see [`chain`]).
    pub position: u64,
    pub frames: u64,
    /// JACK frame time of its first frame (unwrapped).
    pub first_frame_time: Option<u64>,
    pub files: Vec<TakeFile>,
    pub markers: Vec<Point>,
    pub gaps: Vec<Point>,
}

/// The takes to export, in time order, and the tracks they make.
#[derive(Debug, Clone, PartialEq)]
pub struct Show {
    pub sample_rate: u32,
    pub takes: Vec<PlacedTake>,
    /// Track names in first-seen order (one track per input).
    pub tracks: Vec<String>,
}

impl Show {
    /// Reads the takes named by `paths` (manifests, audio files of takes, or
    /// directories holding takes). Refuses takes of different rates and
    /// takes whose files are missing. Does not read the audio.
    pub fn load(paths: &[PathBuf]) -> Result<Show, ExportError> {
        Show::load_where(paths, |_| true)
    }

    /// [`Show::load`], keeping only the takes whose manifest `keep` accepts.
    pub fn load_where(paths: &[PathBuf], keep: impl Fn(&Manifest) -> bool) -> Result<Show, ExportError> {
        let mut manifests = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| ExportError::Manifest { path: p.clone(), why: e.to_string() })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.to_string_lossy().ends_with(SUFFIX))
                    .collect();
                found.sort();
                manifests.extend(found);
            } else {
                manifests.push(manifest_of(p));
            }
        }
        let none = |paths: &[PathBuf]| {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            ExportError::NoTakes(names.join(", "))
        };
        if manifests.is_empty() {
            return Err(none(paths));
        }
        let mut takes = Vec::new();
        let mut rate: Option<(String, u32)> = None;
        for path in manifests {
            let m = Manifest::load(&path)
                .map_err(|e| ExportError::Manifest { path: path.clone(), why: e.to_string() })?;
            if !keep(&m) {
                continue;
            }
            let name =
                path.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(SUFFIX).to_string();
            match &rate {
                Some((a, r)) if *r != m.sample_rate => {
                    return Err(ExportError::MixedRates {
                        a: a.clone(),
                        a_rate: *r,
                        b: name,
                        b_rate: m.sample_rate,
                    })
                }
                None => rate = Some((name.clone(), m.sample_rate)),
                _ => {}
            }
            takes.push(place(&path, &name, &m)?);
        }
        if takes.is_empty() {
            return Err(none(paths));
        }
        takes.sort_by_key(|t| (t.position, t.name.clone()));
        chain(&mut takes, rate.as_ref().map_or(48_000, |r| r.1));
        takes.sort_by_key(|t| (t.position, t.name.clone()));
        let mut tracks: Vec<String> = Vec::new();
        for t in &takes {
            for f in &t.files {
                for (_, n) in &f.channels {
                    if !tracks.contains(n) {
                        tracks.push(n.clone());
                    }
                }
            }
        }
        Ok(Show { sample_rate: rate.map_or(48_000, |r| r.1), takes, tracks })
    }
}

impl Show {
    /// Keeps the takes that overlap `[from, to)` (times of day, `HH:MM` or
    /// `HH:MM:SS`); the tracks stay.
    pub fn keep_between(&mut self, from: Option<&str>, to: Option<&str>) -> Result<(), String> {
        let rate = self.sample_rate as u64;
        let at = |t: Option<&str>, default: u64| -> Result<u64, String> {
            t.map_or(Ok(default), |t| time_of_day(t).map(|s| s * rate))
        };
        let (from, to) = (at(from, 0)?, at(to, u64::MAX)?);
        if from >= to {
            return Err("--from must come before --to".into());
        }
        self.takes.retain(|t| t.position < to && t.position + t.frames > from);
        if self.takes.is_empty() {
            return Err("no take between those times".into());
        }
        Ok(())
    }

    /// Copies every take file into `to` (made if need be) and refers to the
    /// copies. Refuses a file already there rather than replace it.
    pub fn copy_files(&mut self, to: &Path) -> Result<(), ExportError> {
        let err = |path: &Path, e| ExportError::Write { path: path.to_path_buf(), source: e };
        std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
        for t in &mut self.takes {
            for f in &mut t.files {
                let dest = to.join(f.path.file_name().unwrap_or_default());
                if dest.symlink_metadata().is_ok() {
                    let e =
                        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already there; left alone");
                    return Err(err(&dest, e));
                }
                let tmp = dest.with_extension("capstan-tmp");
                std::fs::copy(&f.path, &tmp).map_err(|e| err(&f.path, e))?;
                std::fs::File::open(&tmp).and_then(|c| c.sync_all()).map_err(|e| err(&tmp, e))?;
                std::fs::rename(&tmp, &dest).map_err(|e| err(&dest, e))?;
                f.path = dest;
            }
        }
        Ok(())
    }
}

/// Seconds since midnight of `HH:MM` or `HH:MM:SS`.
fn time_of_day(t: &str) -> Result<u64, String> {
    let bad = || format!("{t:?}: a time of day is HH:MM or HH:MM:SS");
    let parts: Vec<u64> =
        t.split(':').map(|p| p.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    match parts[..] {
        [h, m] if h < 24 && m < 60 => Ok(h * 3600 + m * 60),
        [h, m, s] if h < 24 && m < 60 && s < 60 => Ok(h * 3600 + m * 60 + s),
        _ => Err(bad()),
    }
}

/// The manifest of a take named by one of its files (or the manifest).
fn manifest_of(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if s.ends_with(SUFFIX) {
        return p.to_path_buf();
    }
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.rsplit_once('.').map_or(name.as_ref(), |(a, _)| a);
    // Mono files are `<take>_in_N.wav` (or the port's name after the take).
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut stem = stem.to_string();
    loop {
        let m = dir.join(format!("{stem}{SUFFIX}"));
        if m.exists() {
            return m;
        }
        match stem.rsplit_once('_') {
            Some((a, _)) => stem = a.to_string(),
            None => return dir.join(format!("{name}{SUFFIX}")),
        }
    }
}

/// Places each take that continues another on JACK's timeline (its first
/// frame is the other's end: a rotation, a segment) right after it, so a
/// chain plays without holes or overlaps. Each one's time of day was read
/// from the system clock at its first frame, and JACK's clock drifts from
/// that (crystals by parts per million; a busy dummy backend by percent).
/// Only where the two agree within a second: frame times of different
/// runs of capstan are not comparable. `takes` sorted by position.
fn chain(takes: &mut [PlacedTake], rate: u32) {
    for i in 1..takes.len() {
        let Some(first) = takes[i].first_frame_time else { continue };
        let prev = takes[..i]
            .iter()
            .rev()
            .find(|p| p.first_frame_time.is_some_and(|f| f + p.frames == first))
            .map(|p| p.position + p.frames);
        if let Some(end) = prev.filter(|&end| end.abs_diff(takes[i].position) <= u64::from(rate)) {
            takes[i].position = end;
        }
    }
}

fn place(path: &Path, name: &str, m: &Manifest) -> Result<PlacedTake, ExportError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let position = m.time_reference.ok_or_else(|| ExportError::NoTime { take: name.to_string() })?;
    let track = |i: usize| {
        let p = m.ports.get(i);
        p.and_then(|p| p.track_name.clone())
            .or_else(|| p.map(|p| p.name.rsplit(':').next().unwrap_or(&p.name).to_string()))
            .unwrap_or_else(|| format!("in_{}", i + 1))
    };
    let mut files = Vec::new();
    let mono = m.files.len() > 1 || m.layout == "mono";
    for (i, f) in m.files.iter().enumerate() {
        let fpath = dir.join(f);
        if !fpath.is_file() {
            return Err(ExportError::Missing { take: name.to_string(), file: fpath });
        }
        let fpath = fpath.canonicalize().unwrap_or(fpath);
        let channels = if mono {
            vec![(0, track(i))]
        } else {
            (0..m.ports.len().max(1)).map(|c| (c, track(c))).collect()
        };
        files.push(TakeFile { path: fpath, channels });
    }
    let markers =
        m.markers.iter().map(|k| Point { frame: k.frame, frames: 0, label: k.label.clone() }).collect();
    let gaps = m
        .gaps
        .iter()
        .map(|g| Point { frame: g.at, frames: g.frames, label: format!("gap: {}", g.cause) })
        .collect();
    Ok(PlacedTake {
        name: name.to_string(),
        position,
        frames: m.frames,
        first_frame_time: m.first_frame_time,
        files,
        markers,
        gaps,
    })
}

/// Writes or updates the Ardour session of the day `date` (`YYYY-MM-DD`)
/// in `out/<date>/`: every finished take of that day in `take_dir`. Not
/// real-time; for the daemon after each take (`--ardour-session`).
pub fn day_session(take_dir: &Path, date: &str, out: &Path) -> Result<PathBuf, ExportError> {
    use crate::manifest::TakeState;
    let show = Show::load_where(&[take_dir.to_path_buf()], |m| {
        m.state != TakeState::Recording && m.started.as_deref().is_some_and(|s| s.starts_with(date))
    })?;
    ardour::update_session(&out.join(date), date, &show)
}

/// A format: the show as a file's text.
pub type Render = fn(&Show) -> String;

/// Seconds of `samples` at `rate`, for formats that count in seconds.
pub(crate) fn seconds(samples: u64, rate: u32) -> f64 {
    samples as f64 / rate.max(1) as f64
}

/// Writes `text` to `path` (a new file or one capstan's export wrote:
/// refuses to follow a symbolic link).
pub fn write(path: &Path, text: &str) -> Result<(), ExportError> {
    let err = |e| ExportError::Write { path: path.to_path_buf(), source: e };
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a symbolic link; left alone",
        )));
    }
    let tmp = path.with_extension("capstan-tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
pub(crate) mod tests;
