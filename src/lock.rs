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
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io { path: dir.to_owned(), source })?;
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
    let path = dir.join(LOCK_FILE);
    let io = |source: std::io::Error| LockError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(io)?;
    if fcntl(&file, FcntlArg::F_SETLK(&flock(libc::F_WRLCK as libc::c_short))).is_err() {
        let mut probe = flock(libc::F_WRLCK as libc::c_short);
        let pid = match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
            Ok(_) if probe.l_type != libc::F_UNLCK as libc::c_short => probe.l_pid,
            _ => std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1),
        };
        return Err(LockError::Held { dir: dir.to_owned(), pid });
    }
    // Informational only: the lock, not the file's content, is the truth.
    file.set_len(0).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _file: file, path })
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
