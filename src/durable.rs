//! The filesystem steps whose order makes capstan's files survive a crash:
//! creating a name, syncing a file, renaming, syncing a directory. Every
//! such step goes through this module, and a thread that asks
//! ([`take_log`]) has each one recorded, so a test can check the order
//! ([`check`]): a test fails when a sync is missing or comes too late.
//! (The WAV writer's own data syncs go through `wav::fileio`, which tests
//! record the same way.) Never real-time.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// One logged step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new name, created exclusively.
    Create(PathBuf),
    /// A file's content (and size) forced to the disk.
    SyncFile(PathBuf),
    /// A directory's entries forced to the disk.
    SyncDir(PathBuf),
    Rename(PathBuf, PathBuf),
}

thread_local! {
    /// This thread's steps, once someone asked for them ([`take_log`]).
    static LOG: std::cell::RefCell<Option<Vec<Step>>> = const { std::cell::RefCell::new(None) };
}

fn log(step: impl FnOnce() -> Step) {
    LOG.with(|l| {
        if let Some(steps) = l.borrow_mut().as_mut() {
            steps.push(step());
        }
    });
}

/// The steps this thread took since the last call (none before the
/// first): a thread that calls it has its steps recorded from then on, so
/// that a crash-safety test can check their order ([`check`]). Threads
/// that never call it record nothing.
pub fn take_log() -> Vec<Step> {
    LOG.with(|l| l.borrow_mut().replace(Vec::new()).unwrap_or_default())
}

/// Creates `path` for writing; fails if anything (a file, a link) has that
/// name already, so nothing is overwritten or followed.
pub fn create_new(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)?;
    log(|| Step::Create(path.to_owned()));
    Ok(f)
}

pub fn sync_file(f: &File, path: &Path) -> io::Result<()> {
    f.sync_all()?;
    log(|| Step::SyncFile(path.to_owned()));
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    log(|| Step::SyncDir(dir.to_owned()));
    Ok(())
}

pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    log(|| Step::Rename(from.to_owned(), to.to_owned()));
    Ok(())
}

/// Renames `from` to `to`, both names in the directory `dir` (opened as
/// `dir_file`), only if nothing has the name `to` yet (`AlreadyExists`
/// otherwise): a file or link someone else put there is never replaced.
pub fn rename_new(dir_file: &File, dir: &Path, from: &str, to: &str) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    renameat2(dir_file, from, dir_file, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)?;
    log(|| Step::Rename(dir.join(from), dir.join(to)));
    Ok(())
}

fn parent(p: &Path) -> PathBuf {
    p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned()
}

/// The crash-safety rules, over a log of steps that ends where the caller
/// reports success:
/// - a file is synced after it was created and before it is renamed into
///   place (else the new name may point at an empty file after a crash);
/// - every created or renamed-to name is followed by a sync of its
///   directory (else the name itself may be gone after a crash).
pub fn check(steps: &[Step]) -> Result<(), String> {
    for (i, s) in steps.iter().enumerate() {
        let named = match s {
            Step::Create(p) => p,
            Step::Rename(from, to) => {
                let created = steps[..i].iter().rposition(|x| *x == Step::Create(from.clone())).unwrap_or(0);
                if !steps[created..i].contains(&Step::SyncFile(from.clone())) {
                    return Err(format!(
                        "step {i}: {} renamed before its content was synced",
                        from.display()
                    ));
                }
                to
            }
            _ => continue,
        };
        if !steps[i + 1..].contains(&Step::SyncDir(parent(named))) {
            return Err(format!("step {i}: no directory sync after {s:?}: a crash may lose the name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_catches_each_missing_or_late_sync() {
        let (tmp, dst, dir) = (PathBuf::from("/d/.a.tmp"), PathBuf::from("/d/a"), PathBuf::from("/d"));
        let good = vec![
            Step::Create(tmp.clone()),
            Step::SyncFile(tmp.clone()),
            Step::Rename(tmp.clone(), dst.clone()),
            Step::SyncDir(dir.clone()),
        ];
        check(&good).unwrap();
        for drop in [1, 3] {
            let mut bad = good.clone();
            bad.remove(drop);
            assert!(check(&bad).is_err(), "without step {drop}: {bad:?}");
        }
        let late = [good[0].clone(), good[2].clone(), good[1].clone(), good[3].clone()];
        assert!(check(&late).is_err());
    }
}
