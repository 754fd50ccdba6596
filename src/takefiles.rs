//! What a take manifest may name, and the proof that a file is ours.
//!
//! `recover`, `prune` and the archive follow the file names a manifest
//! lists, and a manifest is only a JSON file in a directory: anyone who can
//! write there can make it list `../other/x.wav`, `/etc/passwd`, a symlink,
//! a FIFO or the manifest itself. capstan never touches a file it did not
//! create, so every such name goes through [`open`] first:
//!
//! - a plain name in the manifest's own directory: no `/`, not `.` or `..`,
//!   not a manifest;
//! - opened with `O_NOFOLLOW` (a symlink fails) and `O_NONBLOCK` (a FIFO
//!   never blocks the open), then `fstat`: a regular file only;
//! - its `bext` chunk says capstan wrote it, for this take: originator
//!   `capstan` and originator reference = the take's name (as much of it as
//!   the 32-byte field holds), which capstan writes into every file it
//!   creates;
//! - if it has an iXML chunk (capstan 0.2 on), its FILE_UID is the one the
//!   manifest lists for it: 128 random bits, so a manifest cannot claim
//!   another take's file even when their names agree in the first 32 bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::wav;

/// Why a listed file is left alone.
#[derive(Debug, thiserror::Error)]
pub enum NotOurs {
    #[error("{name:?} is not a plain file name in the take's directory; left alone")]
    BadName { name: String },
    #[error("{path}: a symbolic link; left alone")]
    Link { path: PathBuf },
    #[error("{path}: not a regular file; left alone")]
    NotRegular { path: PathBuf },
    #[error("{path}: not written by capstan for take {take:?} ({why}); left alone")]
    Foreign { path: PathBuf, take: String, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A file a manifest lists, checked, and open (for writing with `write`).
#[derive(Debug)]
pub struct TakeFile {
    pub path: PathBuf,
    pub file: File,
    /// The WAV header; `None` for a FLAC file.
    pub info: Option<wav::WavInfo>,
}

/// Whether `name` names an entry of a directory itself (not a path).
fn entry_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Whether `name` can name a take's audio file: a plain name, not a
/// manifest.
pub fn plain_name(name: &str) -> bool {
    entry_name(name) && !name.ends_with(crate::vocab::MANIFEST_SUFFIX)
}

/// Opens a regular file in `dir` without following a link and without
/// blocking on a FIFO or device.
pub fn open_regular(dir: &Path, name: &str, write: bool) -> Result<(PathBuf, File), NotOurs> {
    if !entry_name(name) {
        return Err(NotOurs::BadName { name: name.to_owned() });
    }
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(NotOurs::Link { path }),
        Err(e) if e.raw_os_error() == Some(nix::libc::EISDIR) => return Err(NotOurs::NotRegular { path }),
        Err(source) => return Err(NotOurs::Io { path, source }),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => Ok((path, file)),
        Ok(_) => Err(NotOurs::NotRegular { path }),
        Err(source) => Err(NotOurs::Io { path, source }),
    }
}

/// Opens `name`, listed by the manifest of take `take` in `dir`, if and only
/// if it is one of that take's own files (see the module documentation).
pub fn open(dir: &Path, name: &str, take: &str, uid: Option<&str>, write: bool) -> Result<TakeFile, NotOurs> {
    if !plain_name(name) {
        return Err(NotOurs::BadName { name: name.to_owned() });
    }
    let (path, mut file) = open_regular(dir, name, write)?;
    let foreign = |why: String| NotOurs::Foreign { path: path.clone(), take: take.to_owned(), why };
    // A FLAC file says whose it is in its comments.
    if let Some(comments) = crate::flac::read_comments(&file).map_err(|e| foreign(e.to_string()))? {
        let tag = |k| crate::flac::comment(&comments, k);
        if tag("CAPSTAN_TAKE") != Some(take) {
            return Err(foreign(format!("its CAPSTAN_TAKE is {:?}", tag("CAPSTAN_TAKE"))));
        }
        if tag("CAPSTAN_FILE_UID") != uid {
            return Err(foreign(format!(
                "its FILE_UID {:?} is not the one the manifest lists ({uid:?})",
                tag("CAPSTAN_FILE_UID")
            )));
        }
        return Ok(TakeFile { path, file, info: None });
    }
    let info = wav::read_info_from(&mut file).map_err(|e| foreign(e.to_string()))?;
    match &info.bext {
        Some(b) if b.originator == "capstan" && b.originator_reference == wav::bext::clip(take, 32) => {}
        Some(b) => {
            return Err(foreign(format!("bext names {:?} / {:?}", b.originator, b.originator_reference)));
        }
        None => return Err(foreign("no bext chunk".into())),
    }
    if let Some(found) = info.ixml.as_deref().and_then(wav::file_uid) {
        if uid != Some(found.as_str()) {
            return Err(foreign(format!("its FILE_UID {found} is not the one the manifest lists ({uid:?})")));
        }
    }
    Ok(TakeFile { path, file, info: Some(info) })
}

/// How deep take directories may lie below the recorder's directory
/// (`--dir-layout %Y/%m/%d/%H` is four).
pub const MAX_DEPTH: usize = crate::vocab::TAKE_DIR_DEPTH;

/// The manifests in `dir` and in its subdirectories (dated take
/// directories, `--dir-layout`), sorted: at most [`MAX_DEPTH`] levels deep,
/// never into a directory through a symbolic link, and never inside `skip`
/// (an archive kept below the takes).
pub fn manifest_paths(dir: &Path, skip: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let skip = skip.and_then(|s| std::fs::canonicalize(s).ok());
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_owned(), 0usize)];
    while let Some((d, depth)) = todo.pop() {
        if skip.as_ref().is_some_and(|s| std::fs::canonicalize(&d).is_ok_and(|c| c == *s)) {
            continue;
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if depth == 0 => return Err(e),
            Err(_) => continue, // an unreadable subdirectory is not ours to judge
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue }; // lstat: links stay links
            let p = e.path();
            if kind.is_dir() && depth < MAX_DEPTH {
                todo.push((p, depth + 1));
            } else if !kind.is_dir() && p.to_string_lossy().ends_with(crate::vocab::MANIFEST_SUFFIX) {
                // Links and FIFOs too: loading refuses them, and says so.
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes (as needed) the take subdirectory `sub` (relative, plain names:
/// `naming::dated_dir`) below `base`, one component at a time, never
/// through a symbolic link: a link planted at `2026` in the take directory
/// once sent takes to its target. Returns the directory's path, or why it
/// is not ours.
pub fn make_take_dir(base: &Path, sub: &Path) -> io::Result<PathBuf> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut at: std::os::fd::OwnedFd = std::fs::File::open(base)?.into();
    let mut path = base.to_owned();
    for part in sub.components() {
        let std::path::Component::Normal(name) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain name", sub.display()),
            ));
        };
        path.push(name);
        match mkdirat(&at, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot create {}: {e}", path.display()),
                ))
            }
        }
        at = match openat(&at, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is a link or not a directory: not a take directory of ours", path.display()),
                ))
            }
            Err(e) => {
                return Err(io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))
            }
        };
    }
    Ok(path)
}

/// The take name of a manifest path (`<take>.take.json`).
pub fn take_name(manifest_path: &Path) -> Option<String> {
    let name = manifest_path.file_name()?.to_str()?;
    name.strip_suffix(crate::vocab::MANIFEST_SUFFIX).filter(|n| !n.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Take, TakeSpec};
    use crate::vocab::Layout;
    use crate::wav::SampleFormat;

    /// A link named like a dated directory (`2026`) once sent takes to its
    /// target; now the take is refused and the target is untouched.
    #[test]
    fn take_directories_are_made_without_following_links() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("takes");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let made = make_take_dir(&base, Path::new("2025/11/26")).unwrap();
        assert_eq!(made, base.join("2025/11/26"));
        assert!(made.is_dir());
        assert_eq!(make_take_dir(&base, Path::new("2025/11/26")).unwrap(), made, "existing: fine");
        std::os::unix::fs::symlink(&outside, base.join("2026")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("2025/12")).unwrap();
        std::fs::write(base.join("2024"), b"a file").unwrap();
        for sub in ["2026", "2026/01", "2025/12/01", "2024/01"] {
            let e = make_take_dir(&base, Path::new(sub)).unwrap_err();
            assert!(e.to_string().contains("not a take directory of ours"), "{sub}: {e}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing made through the links");
    }

    /// A finished take in `dir`: its name and its file's FILE_UID.
    fn take(dir: &Path, project: &str) -> (String, String) {
        let spec = TakeSpec {
            project: project.into(),
            ..TakeSpec::for_test(dir, 1, Layout::Interleaved, SampleFormat::S16)
        };
        let t = Take::create(spec, chrono::Local::now()).unwrap();
        let name = t.name.clone();
        t.finalize(&[], 0, None, Default::default());
        let m = crate::manifest::Manifest::load(&crate::manifest::Manifest::path(dir, &name)).unwrap();
        (name, m.file_uids[0].clone())
    }

    #[test]
    fn only_the_takes_own_regular_files_open() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("takes");
        std::fs::create_dir(&dir).unwrap();
        let (name, uid) = take(&dir, "t");
        let wav = format!("{name}.wav");
        assert!(open(&dir, &wav, &name, Some(&uid), true).is_ok());
        // The FILE_UID must be the manifest's.
        assert!(matches!(open(&dir, &wav, &name, Some("0123"), false), Err(NotOurs::Foreign { .. })));
        assert!(matches!(open(&dir, &wav, &name, None, false), Err(NotOurs::Foreign { .. })));
        // A take name longer than the bext field (32 bytes) still opens.
        let (long, long_uid) = take(&dir, "a_rather_long_project_name");
        assert!(long.len() > 32);
        assert!(open(&dir, &format!("{long}.wav"), &long, Some(&long_uid), true).is_ok());
        // Another take's name, paths out of the directory, the manifest.
        assert!(matches!(open(&dir, &wav, "other", Some(&uid), false), Err(NotOurs::Foreign { .. })));
        for bad in ["../x.wav", "/etc/passwd", "", ".", "..", "a/b.wav", &format!("{name}.take.json")] {
            assert!(
                matches!(open(&dir, bad, &name, Some(&uid), false), Err(NotOurs::BadName { .. })),
                "{bad}"
            );
        }
        // A symlink to our own file, a directory, a FIFO (never blocks), a
        // WAV that someone else wrote.
        std::os::unix::fs::symlink(dir.join(&wav), dir.join("link.wav")).unwrap();
        assert!(matches!(open(&dir, "link.wav", &name, Some(&uid), true), Err(NotOurs::Link { .. })));
        std::fs::create_dir(dir.join("d.wav")).unwrap();
        assert!(matches!(open(&dir, "d.wav", &name, Some(&uid), false), Err(NotOurs::NotRegular { .. })));
        assert!(matches!(open(&dir, "d.wav", &name, Some(&uid), true), Err(NotOurs::NotRegular { .. })));
        nix::unistd::mkfifo(&dir.join("f.wav"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(open(&dir, "f.wav", &name, Some(&uid), true), Err(NotOurs::NotRegular { .. })));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join("sox.wav"), spec).unwrap();
        w.write_sample(1i16).unwrap();
        w.finalize().unwrap();
        assert!(matches!(open(&dir, "sox.wav", &name, Some(&uid), true), Err(NotOurs::Foreign { .. })));
        std::fs::write(dir.join("empty.wav"), b"").unwrap();
        assert!(matches!(open(&dir, "empty.wav", &name, Some(&uid), true), Err(NotOurs::Foreign { .. })));
    }
}
