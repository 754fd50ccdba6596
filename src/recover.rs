//! `capstan recover`: finish takes that a crash left open (manifest still
//! says "recording"): each file's header is made to cover the whole frames
//! on disk, and the manifest is marked "recovered". Complete takes are never
//! touched; running it twice changes nothing the second time.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::manifest::{self, Manifest, TakeState};
use crate::wav;

/// What recovery did to one take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovered {
    pub manifest: PathBuf,
    pub files: Vec<(PathBuf, wav::Repair)>,
    /// Frames per channel now in the take (the shortest file).
    pub frames: u64,
}

/// Manifests under `path`: a directory (not recursive), a manifest, or an
/// audio file (the manifest that lists it).
fn manifests(path: &Path) -> Result<Vec<PathBuf>> {
    let is_manifest = |p: &Path| p.to_string_lossy().ends_with(manifest::SUFFIX);
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_manifest(p))
            .collect();
        v.sort();
        return Ok(v);
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

/// Recovers every open take under `path`.
pub fn recover(path: &Path) -> Result<Vec<Recovered>> {
    let mut done = Vec::new();
    for mpath in manifests(path)? {
        let mut m = match Manifest::load(&mpath) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{}: unreadable manifest, left alone: {e}", mpath.display());
                continue;
            }
        };
        if m.state != TakeState::Recording {
            continue;
        }
        let dir = mpath.parent().unwrap_or(Path::new("."));
        let mut files = Vec::new();
        for f in &m.files {
            let p = dir.join(f);
            let r = wav::repair(&p).with_context(|| format!("repairing {}", p.display()))?;
            files.push((p, r));
        }
        let frames = files.iter().map(|(_, r)| r.frames_after).min().unwrap_or(0);
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
        m.save(&mpath).with_context(|| format!("updating {}", mpath.display()))?;
        done.push(Recovered { manifest: mpath, files, frames });
    }
    Ok(done)
}

/// The `capstan recover` command.
pub fn run(path: &Path) -> Result<std::process::ExitCode> {
    let done = recover(path)?;
    if done.is_empty() {
        println!("nothing to recover in {}", path.display());
    }
    for r in &done {
        println!("recovered {} ({} frames)", r.manifest.display(), r.frames);
        for (p, rep) in &r.files {
            println!("  {}: header had {} frames, now {}", p.display(), rep.frames_before, rep.frames_after);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Layout, Take, TakeSpec};
    use crate::wav::SampleFormat;

    fn open_take(dir: &Path) -> (Take, PathBuf) {
        let spec = TakeSpec {
            dir: dir.to_owned(),
            project: "t".into(),
            file: None,
            layout: Layout::Interleaved,
            format: SampleFormat::S24,
            sample_rate: 48000,
            port_names: vec!["in_1".into(), "in_2".into()],
            max_frames: None,
            lead_in_silence: 0,
            take_id: None,
            sources: vec![],
        };
        let take = Take::create(spec, chrono::Local::now()).unwrap();
        let path = take.paths()[0].to_owned();
        (take, path)
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
        crate::wav::writer::write_sizes(&f, info.data_at, 1000 * 6, 6, false).unwrap();
        assert_eq!(crate::wav::read_info(&wav).unwrap().frames(), 1000);

        let done = recover(dir.path()).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].frames, 1500);
        assert_eq!(hound::WavReader::open(&wav).unwrap().duration(), 1500);
        let m = Manifest::load(&done[0].manifest).unwrap();
        assert_eq!(m.state, TakeState::Recovered);
        assert!(m.recovery.unwrap().contains("header had 1000 frames"));
        // Idempotent.
        assert!(recover(dir.path()).unwrap().is_empty());
        // A complete take is never touched.
        let (mut t2, wav2) = open_take(dir.path());
        t2.write(10, |_| Some(&data[..10])).unwrap();
        t2.finalize(&[], 0, None, Default::default());
        let before = std::fs::read(&wav2).unwrap();
        assert!(recover(&wav2).unwrap().is_empty());
        assert_eq!(std::fs::read(&wav2).unwrap(), before);
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
