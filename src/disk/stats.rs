//! Live numbers the disk thread publishes for status lines and manifests
//! (atomics, written by the disk thread only).

use super::*;

/// Live numbers for the status line; written by the disk thread only.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Largest |sample| since the reader last swapped it out (f32 bits).
    pub peak: AtomicU32,
    pub overflow_frames: AtomicU64,
    pub skipped_frames: AtomicU64,
    /// Most frames a port ring has held when the disk thread came to drain it.
    pub ring_high_water: AtomicU64,
    pub ring_capacity: AtomicU64,
    /// Write batches (history → take files) and their durations.
    pub write_batches: AtomicU64,
    pub write_total_ns: AtomicU64,
    pub write_max_ns: AtomicU64,
    /// EBU R 128 momentary loudness of the running take (f64 bits; 0:
    /// none).
    pub momentary: AtomicU64,
    /// Every input's newest level window (idle or recording).
    pub levels: super::meter::Levels,
    /// The running take's copies that stopped (`--mirror`), in sentences.
    pub mirror_failures: std::sync::Mutex<Vec<String>>,
}

impl DiskStats {
    /// The running take's momentary loudness in LUFS (-inf: silence, not
    /// measured or no take).
    pub fn momentary_lufs(&self) -> f64 {
        match self.momentary.load(Relaxed) {
            0 => f64::NEG_INFINITY,
            bits => f64::from_bits(bits),
        }
    }

    /// Ring and write numbers start afresh with each take.
    pub(super) fn reset_take(&self) {
        if let Ok(mut f) = self.mirror_failures.lock() {
            f.clear(); // the new take's copies say for themselves
        }
        self.ring_high_water.store(0, Relaxed);
        self.write_batches.store(0, Relaxed);
        self.write_total_ns.store(0, Relaxed);
        self.write_max_ns.store(0, Relaxed);
    }

    pub fn summary(&self) -> DiskSummary {
        let hw = self.ring_high_water.load(Relaxed);
        let cap = self.ring_capacity.load(Relaxed).max(1);
        let n = self.write_batches.load(Relaxed);
        DiskSummary {
            ring_high_water_frames: hw,
            ring_high_water_percent: 100.0 * hw as f64 / cap as f64,
            write_batches: n,
            write_mean_us: self.write_total_ns.load(Relaxed) as f64 / n.max(1) as f64 / 1000.0,
            write_max_us: self.write_max_ns.load(Relaxed) as f64 / 1000.0,
        }
    }

    /// Frames the running take lost so far (silence in its gaps).
    pub fn lost_frames(&self) -> u64 {
        self.overflow_frames.load(Relaxed) + self.skipped_frames.load(Relaxed)
    }

    /// Peak since the last call, linear full scale = 1.0.
    pub fn take_peak(&self) -> f32 {
        f32::from_bits(self.peak.swap(0, Relaxed))
    }
}
