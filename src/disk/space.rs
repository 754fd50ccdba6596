//! Checkpoints and the space policy: every `CHECKPOINT_INTERVAL` the take's
//! headers are brought up to what is synced, and the free space is checked
//! against the guard, which ends the take cleanly before the disk is full.
//! Disk thread only.

use super::*;

/// How often the headers are refreshed (the crash-loss bound).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Stop a take before the disk fills up (checked with every checkpoint).
#[derive(Debug, Clone, Copy)]
pub struct SpaceGuard {
    /// Stop when the free space would last less than this many seconds.
    pub margin_seconds: f64,
    /// …or when the volume's free fraction falls below this.
    pub min_free_fraction: f64,
}

impl DiskWriter {
    pub(super) fn maybe_checkpoint(&mut self) {
        let Some(a) = &mut self.active else { return };
        if a.last_checkpoint.elapsed() < CHECKPOINT_INTERVAL {
            return;
        }
        a.last_checkpoint = Instant::now();
        if let Err(e) = a.take.checkpoint().and_then(|()| a.take.save_gaps(&a.gaps)) {
            return self.finish(Some(e));
        }
        let failures = a.take.mirror_failures();
        if let Ok(mut f) = self.stats.mirror_failures.lock() {
            if *f != failures {
                for why in failures.iter().filter(|w| !f.contains(w)) {
                    tracing::error!("{why}; the take goes on");
                }
                *f = failures;
            }
        }
        if let Some(g) = self.space {
            if let Some(why) = space_low(&a.take, g) {
                if a.first_frame_time.is_some() && !a.take.spec.spill.is_empty() {
                    let why = why.trim_end_matches("; take stopped").to_string();
                    if let Err(e) = self.spill(why) {
                        self.finish(Some(e));
                    }
                    return;
                }
                let source = std::io::Error::new(std::io::ErrorKind::StorageFull, why);
                let path = a.take.manifest_path().to_owned();
                let frames_safe = a.take.frames();
                self.finish(Some(WavError::Io { path, op: "disk space guard", frames_safe, source }));
            }
        }
    }
}

/// Why the take's disk is too full to go on, if it is.
pub(super) fn space_low(take: &Take, g: SpaceGuard) -> Option<String> {
    let (free, total) = crate::volume::space(&take.spec.dir).ok()?;
    let channels = take.spec.port_names.len() as f64;
    let bps = channels * take.spec.sample_rate as f64 * take.spec.format.bytes() as f64;
    space_verdict(free, total, take.reserved_ahead(), bps, g)
}

/// The guard's verdict on a volume with `free` of `total` bytes free, for
/// a take of `bytes_per_second` whose files reserved `reserved` bytes
/// ahead: those blocks are not free on the disk, but they are the take's
/// to fill, so they count as free.
fn space_verdict(
    free: u64,
    total: u64,
    reserved: u64,
    bytes_per_second: f64,
    g: SpaceGuard,
) -> Option<String> {
    let free = free + reserved;
    if (free as f64) < bytes_per_second * g.margin_seconds {
        return Some(format!(
            "disk almost full: {} MiB free is less than {} s of recording; take stopped",
            free >> 20,
            g.margin_seconds
        ));
    }
    if total > 0 && (free as f64 / total as f64) < g.min_free_fraction {
        return Some(format!(
            "disk almost full: less than {:.0}% of the volume free; take stopped",
            g.min_free_fraction * 100.0
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARD: SpaceGuard = SpaceGuard { margin_seconds: 10.0, min_free_fraction: 0.05 };

    /// 1 MB/s with 10 s of margin needs 10 MB; the volume is 1 GB.
    #[test]
    fn blocks_the_take_reserved_count_as_free() {
        let (total, bps) = (1_000_000_000, 1_000_000.0);
        let seconds_only = SpaceGuard { min_free_fraction: 0.0, ..GUARD };
        let short = space_verdict(9_000_000, total, 0, bps, seconds_only);
        assert!(short.is_some_and(|w| w.contains("less than 10 s")));
        assert_eq!(space_verdict(9_000_000, total, 2_000_000, bps, seconds_only), None);
        // The fraction too: 40 MB free of 1 GB is under 5%, 60 MB is not.
        assert!(space_verdict(40_000_000, total, 0, bps, GUARD).is_some_and(|w| w.contains("5%")));
        assert_eq!(space_verdict(40_000_000, total, 20_000_000, bps, GUARD), None);
    }

    #[test]
    fn an_unknown_total_checks_only_the_seconds() {
        assert_eq!(space_verdict(20_000_000, 0, 0, 1_000_000.0, GUARD), None);
    }
}
