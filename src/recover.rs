//! `capstan recover`: finish takes that a crash left open (manifest still
//! says "recording"): each file's header is made to cover the whole frames
//! on disk, and the manifest is marked "recovered". Complete takes are never
//! touched; running it twice changes nothing the second time.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::manifest::{self, Manifest, TakeState};
use crate::{takefiles, wav};

/// What recovery did to one take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovered {
    pub manifest: PathBuf,
    pub files: Vec<(PathBuf, wav::Repair)>,
    /// Frames per channel now in the take (the shortest file).
    pub frames: u64,
    /// The take never began (no first frame, no audio: a take prepared
    /// for the next clock boundary or a start cut short by the crash): its
    /// empty files and manifest were removed instead.
    pub removed: bool,
}

/// Manifests under `path`: a directory (not recursive), a manifest, or an
/// audio file (the manifest that lists it).
fn manifests(path: &Path) -> Result<Vec<PathBuf>> {
    let is_manifest = |p: &Path| p.to_string_lossy().ends_with(manifest::SUFFIX);
    if path.is_dir() {
        // With the dated subdirectories of `--dir-layout`.
        return takefiles::manifest_paths(path, None).with_context(|| format!("reading {}", path.display()));
    }
    if is_manifest(path) {
        return Ok(vec![path.to_owned()]);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(manifests(dir)?
        .into_iter()
        .filter(|m| Manifest::load(m).is_ok_and(|m| m.files.contains(&name)))
        .collect())
}

/// A take that could not be recovered, and why. Nothing of it was changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failed {
    pub manifest: PathBuf,
    pub error: String,
}

/// What a recovery run did: every take on its own.
#[derive(Debug, Default)]
pub struct Report {
    pub recovered: Vec<Recovered>,
    pub failed: Vec<Failed>,
}

/// Recovers every open take under `path`, each on its own: a take that
/// cannot be recovered (a file that is not its own, unreadable, truncated
/// before its header…) is reported and left exactly as it was, and the
/// others are recovered. Only the files [`takefiles::open`] accepts are
/// ever written. The caller holds the directory's lock (see [`run`]).
pub fn recover(path: &Path) -> Result<Report> {
    let mut report = Report::default();
    for mpath in manifests(path)? {
        match recover_take(&mpath) {
            Ok(Some(r)) => report.recovered.push(r),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("{}: not recovered: {e:#}", mpath.display());
                report.failed.push(Failed { manifest: mpath, error: format!("{e:#}") });
            }
        }
    }
    Ok(report)
}

/// Recovers one take if it is open; `None` if there is nothing to do.
fn recover_take(mpath: &Path) -> Result<Option<Recovered>> {
    let mut m = Manifest::load(mpath).context("unreadable manifest")?;
    if m.state != TakeState::Recording {
        return Ok(None);
    }
    let take = takefiles::take_name(mpath).context("not a manifest name")?;
    let dir = mpath.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Every file is checked before any is written: a take is recovered
    // whole or not at all.
    let opened = m
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| takefiles::open(dir, f, &take, m.file_uids.get(i).map(String::as_str), true))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = Vec::new();
    for f in &opened {
        let r = match &f.info {
            Some(info) => wav::repair_open(&f.file, info),
            // FLAC: a torn last frame is cut off, STREAMINFO claims the
            // whole frames (MD5 zero: unknown).
            None => crate::flac::scan::repair(&f.file).map(|r| wav::Repair {
                frames_before: r.frames_before,
                frames_after: r.frames_after,
                rf64: false,
            }),
        }
        .with_context(|| format!("repairing {}", f.path.display()))?;
        files.push((f.path.clone(), r));
    }
    let frames = files.iter().map(|(_, r)| r.frames_after).min().unwrap_or(0);
    let never_started =
        m.first_frame_time.is_none() && m.started.is_none() && files.iter().all(|(_, r)| r.frames_after == 0);
    if never_started {
        // Every file was checked above to be this take's own.
        for (p, _) in &files {
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
        }
        std::fs::remove_file(mpath).with_context(|| format!("removing {}", mpath.display()))?;
        crate::durable::sync_dir(dir)?;
        return Ok(Some(Recovered { manifest: mpath.to_owned(), files, frames: 0, removed: true }));
    }
    // Every marker the manifest saved goes into the files as a cue point
    // (as a normal stop would have written them); one past the audio that
    // reached the disk is put on its last frame, and the manifest keeps its
    // true frame and says so.
    m.markers.sort_by_key(|k| k.frame);
    let last = frames.saturating_sub(1);
    let clamped = m.markers.iter().filter(|k| k.frame > last).count();
    let cues: Vec<wav::Marker> =
        m.markers.iter().map(|k| wav::Marker { frame: k.frame.min(last), ..k.clone() }).collect();
    let trailer = wav::cue::trailer(&cues);
    for (f, (_, r)) in opened.iter().zip(&files) {
        if let Some(info) = &f.info {
            wav::append_trailer(&f.file, info, r.frames_after, &trailer)
                .with_context(|| format!("writing markers into {}", f.path.display()))?;
        }
    }
    // The gaps saved at a checkpoint, within the recovered audio; frames
    // past `gaps_until` may hold gaps that were never saved. A crashed take
    // is not clean.
    m.gaps.retain(|g| g.at < frames);
    if let Some(g) = m.gaps.last_mut() {
        g.frames = g.frames.min(frames - g.at);
    }
    m.gaps_until = Some(m.gaps_until.unwrap_or(0).min(frames));
    m.clean = Some(false);
    m.frames = frames;
    m.state = TakeState::Recovered;
    m.recovery = Some(format!(
        "recovered by capstan {} on {}: {}",
        env!("CARGO_PKG_VERSION"),
        chrono::Local::now().to_rfc3339(),
        files
            .iter()
            .map(|(p, r)| format!(
                "{}: header had {} frames, {} whole frames on disk",
                p.file_name().unwrap_or_default().to_string_lossy(),
                r.frames_before,
                r.frames_after
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    if clamped > 0 {
        if let Some(r) = &mut m.recovery {
            r.push_str(&format!(
                "; {clamped} marker(s) past the recovered audio put on its last frame in the files \
                 (their true frames are in this manifest)"
            ));
        }
    }
    m.save(mpath).with_context(|| format!("updating {}", mpath.display()))?;
    Ok(Some(Recovered { manifest: mpath.to_owned(), files, frames, removed: false }))
}

/// The `capstan recover` command: takes the directory's lock first (a
/// running recorder's takes are its own business), recovers what it can,
/// reports every take it could not recover and exits 1 if there was one.
pub fn run(path: &Path) -> Result<std::process::ExitCode> {
    let dir = if path.is_dir() {
        path.to_owned()
    } else {
        path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned()
    };
    if !path.exists() {
        anyhow::bail!("{}: no such directory or file", path.display());
    }
    // A running recorder recovers its own takes; never touch them under it
    // (nor in a directory below its own).
    let _lock = crate::lock::acquire_for_takes(&dir)?;
    let report = recover(path)?;
    if report.recovered.is_empty() && report.failed.is_empty() {
        println!("nothing to recover in {}", path.display());
    }
    for r in &report.recovered {
        if r.removed {
            println!(
                "removed {}: the take never began (no audio); its empty files are gone",
                r.manifest.display()
            );
            continue;
        }
        println!("recovered {} ({} frames)", r.manifest.display(), r.frames);
        for (p, rep) in &r.files {
            println!("  {}: header had {} frames, now {}", p.display(), rep.frames_before, rep.frames_after);
        }
    }
    for f in &report.failed {
        eprintln!("not recovered (left as it was): {}: {}", f.manifest.display(), f.error);
    }
    Ok(if report.failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Take, TakeSpec};
    use crate::vocab::Layout;
    use crate::wav::SampleFormat;
    use std::io::Write;

    fn open_take(dir: &Path) -> (Take, PathBuf) {
        let spec = TakeSpec::for_test(dir, 2, Layout::Interleaved, SampleFormat::S24);
        let take = Take::create(spec, chrono::Local::now()).unwrap();
        let path = take.paths()[0].to_owned();
        (take, path)
    }

    /// A take prepared for the next clock boundary (or a start cut short)
    /// that a kill -9 left behind with no first frame and no audio is
    /// removed, not kept as an empty "recovered" take; one that began is
    /// recovered even with no audio.
    #[test]
    fn a_take_that_never_began_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (take, wav) = open_take(dir.path());
        let manifest = Manifest::path(dir.path(), &take.name);
        std::mem::forget(take); // the crash
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let done = recover(dir.path()).unwrap().recovered;
        assert_eq!(done.len(), 1);
        assert!(done[0].removed);
        assert!(!wav.exists() && !manifest.exists());
        assert!(dir.path().join("notes.txt").exists());
        // Begun (a first frame), no audio yet: recovered.
        let (mut take, wav) = open_take(dir.path());
        take.set_origin(77, std::time::SystemTime::now()).unwrap();
        std::mem::forget(take);
        let done = recover(dir.path()).unwrap().recovered;
        assert!(!done[0].removed && wav.exists());
    }

    #[test]
    fn a_crashed_take_is_repaired_once_and_complete_takes_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut take, wav) = open_take(dir.path());
        let data = vec![0.25f32; 1000];
        take.write(1000, |_| Some(&data[..])).unwrap();
        take.checkpoint().unwrap();
        take.write(500, |_| Some(&data[..500])).unwrap();
        take.checkpoint().unwrap(); // writes the data; then "crash":
        std::mem::forget(take);
        // Simulate a crash after the data hit the file but before the header
        // was updated: put the header back to 1000 frames.
        let f = std::fs::OpenOptions::new().write(true).open(&wav).unwrap();
        let info = crate::wav::read_info(&wav).unwrap();
        crate::wav::writer::write_sizes(&f, info.data_at, 1000 * 6, 6, 0).unwrap();
        assert_eq!(crate::wav::read_info(&wav).unwrap().frames(), 1000);

        let done = recover(dir.path()).unwrap().recovered;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].frames, 1500);
        assert_eq!(hound::WavReader::open(&wav).unwrap().duration(), 1500);
        let m = Manifest::load(&done[0].manifest).unwrap();
        assert_eq!(m.state, TakeState::Recovered);
        assert!(m.recovery.unwrap().contains("header had 1000 frames"));
        // Idempotent.
        assert!(recover(dir.path()).unwrap().recovered.is_empty());
        // A complete take is never touched.
        let (mut t2, wav2) = open_take(dir.path());
        t2.write(10, |_| Some(&data[..10])).unwrap();
        t2.finalize(&[], 0, None, Default::default());
        let before = std::fs::read(&wav2).unwrap();
        assert!(recover(&wav2).unwrap().recovered.is_empty());
        assert_eq!(std::fs::read(&wav2).unwrap(), before);
    }

    /// A hostile or broken directory: manifests that name files outside it,
    /// links, a directory, FIFOs (also as the manifest), the manifest itself,
    /// an empty file and a WAV that someone else wrote. Nothing outside the
    /// take's own files is written, nothing blocks, every bad take is
    /// reported and left as it was, and the one real crashed take is
    /// recovered all the same.
    #[test]
    fn hostile_manifests_touch_nothing_and_do_not_stop_the_others() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("takes");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let foreign = outside.join("v.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&foreign, spec).unwrap();
        (0..1000).for_each(|i| w.write_sample(i as i16).unwrap());
        w.finalize().unwrap();
        // Someone else's bytes after the data chunk, as sox writes a LIST.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&foreign)
            .unwrap()
            .write_all(b"LIST\x04\0\0\0INFO")
            .unwrap();
        let foreign_bytes = std::fs::read(&foreign).unwrap();
        std::fs::copy(&foreign, dir.join("sox.wav")).unwrap();
        std::os::unix::fs::symlink(&foreign, dir.join("link.wav")).unwrap();
        std::fs::create_dir(dir.join("adir.wav")).unwrap();
        let fifo = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&dir.join("pipe.wav"), fifo).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo.take.json"), fifo).unwrap();
        std::fs::write(dir.join("empty.wav"), b"").unwrap();
        std::fs::write(dir.join("text.wav"), b"not a wav at all").unwrap();
        // The real crashed take.
        let (mut take, wav) = open_take(&dir);
        let data = vec![0.25f32; 1000];
        take.write(1000, |_| Some(&data[..])).unwrap();
        take.checkpoint().unwrap();
        take.write(500, |_| Some(&data[..500])).unwrap();
        take.checkpoint().unwrap();
        std::mem::forget(take);
        let f = std::fs::OpenOptions::new().write(true).open(&wav).unwrap();
        let info = crate::wav::read_info(&wav).unwrap();
        crate::wav::writer::write_sizes(&f, info.data_at, 1000 * 6, 6, 0).unwrap();
        let real = Manifest::load(&Manifest::path(&dir, wav.file_stem().unwrap().to_str().unwrap())).unwrap();
        // Hostile manifests, each "recording", each naming one bad file.
        let bad: Vec<String> = vec![
            "../outside/v.wav".into(),
            foreign.display().to_string(),
            "link.wav".into(),
            "adir.wav".into(),
            "pipe.wav".into(),
            "h6.take.json".into(),
            "empty.wav".into(),
            "text.wav".into(),
            "sox.wav".into(),
            "missing.wav".into(),
        ];
        for (i, name) in bad.iter().enumerate() {
            let mut m = real.clone();
            m.files = vec![name.clone()];
            m.save(&Manifest::path(&dir, &format!("h{i}"))).unwrap();
        }
        let manifests_before: Vec<Vec<u8>> =
            (0..bad.len()).map(|i| std::fs::read(Manifest::path(&dir, &format!("h{i}"))).unwrap()).collect();
        let report = recover(&dir).unwrap();
        assert_eq!(report.recovered.len(), 1, "{report:?}");
        assert_eq!(report.recovered[0].frames, 1500);
        // Every hostile take and the FIFO manifest: reported, unchanged.
        assert_eq!(report.failed.len(), bad.len() + 1, "{report:?}");
        for (i, before) in manifests_before.iter().enumerate() {
            assert_eq!(&std::fs::read(Manifest::path(&dir, &format!("h{i}"))).unwrap(), before, "{}", bad[i]);
        }
        assert_eq!(std::fs::read(&foreign).unwrap(), foreign_bytes);
        assert_eq!(std::fs::read(dir.join("sox.wav")).unwrap(), foreign_bytes);
        assert_eq!(std::fs::read(dir.join("text.wav")).unwrap(), b"not a wav at all");
    }

    /// Power loss: a copy cut at arbitrary byte offsets is repaired to the
    /// whole frames it holds, every one of them intact.
    #[test]
    fn truncated_copies_keep_every_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut take, wav) = open_take(dir.path());
        let a: Vec<f32> = (0..4000).map(|i| ((i % 2000) as f32 - 1000.0) / 32768.0).collect();
        take.write(4000, |_| Some(&a[..])).unwrap();
        take.finalize(&[], 0, None, Default::default());
        let full = std::fs::read(&wav).unwrap();
        let data_at = crate::wav::read_info(&wav).unwrap().data_at as usize;
        for cut in [data_at, data_at + 1, data_at + 5, data_at + 6 * 1234 + 4, full.len() - 1, full.len()] {
            let copy = dir.path().join("copy.wav");
            std::fs::write(&copy, &full[..cut]).unwrap();
            let r = crate::wav::repair(&copy).unwrap();
            assert_eq!(r.frames_after, ((cut - data_at) / 6) as u64, "cut {cut}");
            let got: Vec<i32> =
                hound::WavReader::open(&copy).unwrap().samples::<i32>().map(|s| s.unwrap()).collect();
            assert_eq!(got.len() as u64, r.frames_after * 2);
            for (i, s) in got.iter().enumerate() {
                assert_eq!(*s, (a[i / 2] * 8_388_608.0) as i32, "cut {cut} sample {i}");
            }
            std::fs::remove_file(&copy).unwrap();
        }
    }
}
