//! Checks made before a take creates anything: the directory, the free space,
//! the file name. Control thread only.

use std::path::Path;

use nix::sys::statvfs::{statvfs, FsFlags};

/// Thresholds (CLI / session settings).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Free space must hold at least this many minutes of the take…
    pub min_minutes: f64,
    /// …plus this fraction on top.
    pub reserve: f64,
    /// And the volume must keep at least this fraction free afterwards.
    pub min_free_fraction: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { min_minutes: 10.0, reserve: 0.2, min_free_fraction: 0.15 }
    }
}

pub use crate::volume::space;

/// Can a take of `bytes_per_second` start in `dir`? The error says why not.
pub fn check(dir: &Path, bytes_per_second: u64, limits: &Limits) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("output directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("output directory {} is not a directory", dir.display()));
    }
    let s = statvfs(dir).map_err(|e| format!("output directory {}: {e}", dir.display()))?;
    if s.flags().contains(FsFlags::ST_RDONLY)
        || nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).is_err()
    {
        return Err(format!("output directory {} is not writable", dir.display()));
    }
    let frag = s.fragment_size() as u64;
    let (free, total) = (s.blocks_available() as u64 * frag, s.blocks() as u64 * frag);
    let need = (bytes_per_second as f64 * limits.min_minutes * 60.0 * (1.0 + limits.reserve)) as u64;
    if free < need {
        return Err(format!(
            "not enough free space in {}: {} MiB free, a take needs {} MiB ({} min + {:.0}% reserve)",
            dir.display(),
            free >> 20,
            need >> 20,
            limits.min_minutes,
            limits.reserve * 100.0
        ));
    }
    if total > 0 && ((free - need) as f64 / total as f64) < limits.min_free_fraction {
        return Err(format!(
            "volume of {} would fall below {:.0}% free ({} MiB of {} MiB free)",
            dir.display(),
            limits.min_free_fraction * 100.0,
            free >> 20,
            total >> 20
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_dirs_files_and_impossible_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let l = Limits::default();
        assert!(check(dir.path(), 1000, &l).is_ok());
        assert!(check(&dir.path().join("missing"), 1000, &l).unwrap_err().contains("missing"));
        let f = dir.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert!(check(&f, 1000, &l).unwrap_err().contains("not a directory"));
        let err = check(dir.path(), u64::MAX / 1_000_000, &l).unwrap_err();
        assert!(err.contains("not enough free space"), "{err}");
        let strict = Limits { min_free_fraction: 1.0, ..l };
        assert!(check(dir.path(), 1, &strict).unwrap_err().contains("below 100% free"));
        // Nothing was created.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
