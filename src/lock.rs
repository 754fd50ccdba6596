//! One recorder per directory: an fcntl record lock on `.capstan.lock`.
//!
//! The kernel drops the lock when the process dies (kill -9 included), so a
//! stale lock file never blocks a new start; the file itself stays and is
//! harmless. The holder's pid is read back with F_GETLK for the error message.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

pub const LOCK_FILE: &str = ".capstan.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another capstan (pid {pid}) is already recording into {dir}; stop it first or use another directory"
    )]
    Held { dir: PathBuf, pid: i32 },
    #[error(
        "{dir} is below {holder}, where another capstan (pid {pid}) is recording; its takes are its own \
         business until it stops"
    )]
    HeldAbove { dir: PathBuf, holder: PathBuf, pid: i32 },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}: no such directory")]
    Missing(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The held lock; released when dropped or when the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

fn flock(kind: libc::c_short) -> libc::flock {
    // SAFETY: libc::flock is a plain C struct; all-zero is a valid value
    // (whole-file range from offset 0) before we set the fields we need.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l
}

/// Takes the lock in `dir` (which must exist) or says who holds it.
/// The lock of a directory that may not exist yet: [`Claim::acquire`]
/// creates it (and the lock file) if needed and takes the lock; dropped, it
/// removes again what it created if nothing else was put there, so a run that
/// failed before recording (no JACK) leaves nothing behind.
#[derive(Debug)]
pub struct Claim {
    lock: Option<DirLock>,
    created_dirs: Vec<PathBuf>,
    created_lock_file: bool,
}

impl Claim {
    pub fn acquire(dir: &Path) -> Result<Claim, LockError> {
        let mut created_dirs = Vec::new();
        let mut d = dir.to_path_buf();
        while !d.as_os_str().is_empty() && !d.exists() {
            created_dirs.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        // A file where the directory, or its first missing parent, would
        // go: name that file.
        let in_the_way = created_dirs.last().and_then(|d| d.parent()).unwrap_or(dir);
        if in_the_way.is_file() {
            return Err(LockError::NotADirectory(in_the_way.to_owned()));
        }
        make_dir(dir)?;
        let created_lock_file = !dir.join(LOCK_FILE).exists();
        let mut claim = Claim { lock: None, created_dirs, created_lock_file };
        claim.lock = Some(acquire(dir)?); // on Err, `claim` drops and undoes
        Ok(claim)
    }
}

/// What a [`Claim`] created, to remove if nothing else was put there
/// (also from a thread that is about to end the process).
#[derive(Debug, Clone)]
pub struct Created {
    lock_file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Created {
    pub fn remove_if_unused(&self) {
        if let Some(f) = &self.lock_file {
            let parent = f.parent().unwrap_or(Path::new("."));
            if std::fs::read_dir(parent).map(|r| r.flatten().count() == 1).unwrap_or(false) {
                let _ = std::fs::remove_file(f);
            }
        }
        // Deepest first; remove_dir refuses a directory that is not empty.
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Claim {
    /// The lock, kept for good: what the claim created stays (the start
    /// succeeded).
    pub fn keep(mut self) -> DirLock {
        self.created_dirs.clear();
        self.created_lock_file = false;
        self.lock.take().expect("a claim holds its lock")
    }

    /// What this claim created.
    pub fn created(&self) -> Created {
        let lock_file = self.lock.as_ref().filter(|_| self.created_lock_file).map(|l| l.path.clone());
        Created { lock_file, dirs: self.created_dirs.clone() }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let created = self.created();
        drop(self.lock.take());
        created.remove_if_unused();
    }
}

pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
    check_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let io = |source: std::io::Error| LockError::Io { path: path.clone(), source };
    // Never through a link, never blocking on a FIFO: a lock file planted
    // as a link would otherwise be followed and truncated.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    if fcntl(&file, FcntlArg::F_SETLK(&flock(libc::F_WRLCK as libc::c_short))).is_err() {
        let mut probe = flock(libc::F_WRLCK as libc::c_short);
        let pid = match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
            Ok(_) if probe.l_type != libc::F_UNLCK as libc::c_short => probe.l_pid,
            _ => std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1),
        };
        return Err(LockError::Held { dir: dir.to_owned(), pid });
    }
    // Informational only: the lock, not the file's content, is the truth.
    // (A lock file capstan did not make, a regular file of that name, is
    // still written here: the name is capstan's own.)
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _file: file, path })
}

/// Makes `dir` (and its parents) if missing; a file in the way is said
/// as such.
pub fn make_dir(dir: &Path) -> Result<(), LockError> {
    std::fs::create_dir_all(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
            LockError::NotADirectory(dir.to_owned())
        }
        _ => LockError::Io { path: dir.to_owned(), source },
    })
}

/// That `dir` is an existing directory, or a sentence saying what it is.
pub fn check_dir(dir: &Path) -> Result<(), LockError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(LockError::NotADirectory(dir.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LockError::Missing(dir.to_owned())),
        Err(source) => Err(LockError::Io { path: dir.to_owned(), source }),
    }
}

/// Who holds the lock file `dir/.capstan.lock`, if anyone does (read
/// without creating anything).
fn holder(dir: &Path) -> Option<i32> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(LOCK_FILE))
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))?;
    let mut probe = flock(libc::F_WRLCK as libc::c_short);
    match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) if probe.l_type != libc::F_UNLCK as libc::c_short => Some(probe.l_pid),
        _ => None,
    }
}

/// The lock for working on the takes under `dir` (recover, prune): a
/// recorder holds every directory below its own, wherever it writes takes
/// (dated subdirectories, an NSM client's `takes/` folder). Refused if a
/// recorder holds `dir` or a directory above it; otherwise the lock of the
/// nearest directory above that has a lock file (a recorder's directory)
/// is taken, so that none starts meanwhile, and only where there is none is
/// a lock file made in `dir` itself.
pub fn acquire_for_takes(dir: &Path) -> Result<DirLock, LockError> {
    check_dir(dir)?;
    let full = std::fs::canonicalize(dir).map_err(|source| LockError::Io { path: dir.to_owned(), source })?;
    for above in full.ancestors() {
        if let Some(pid) = holder(above) {
            if above == full {
                return Err(LockError::Held { dir: dir.to_owned(), pid });
            }
            return Err(LockError::HeldAbove { dir: dir.to_owned(), holder: above.to_owned(), pid });
        }
    }
    match full.ancestors().find(|a| a.join(LOCK_FILE).is_file()) {
        Some(recorder_dir) => acquire(recorder_dir),
        None => acquire(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fcntl locks belong to a process, so the refusal (another process
    /// holding it) is tested end to end with two capstan processes; here:
    /// the pid is recorded and the lock can be taken again once dropped.
    #[test]
    fn records_the_pid_and_releases_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let l = acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&l.path).unwrap().trim(), std::process::id().to_string());
        drop(l);
        let _again = acquire(dir.path()).unwrap();
    }
}
