//! EBU R 128 loudness of a take, measured on the disk thread from the same
//! samples that go into the files (the `ebur128` crate, a port of
//! libebur128). Every input counts as a channel of weight 1.0: for a
//! multitrack take the numbers are those of all inputs played together at
//! unity gain; a mono file is measured on its own. Disk thread only.

use ebur128::{Channel, EbuR128, Mode};

pub use crate::wav::Loudness;

/// Measures one file's channels.
pub struct Meter {
    m: EbuR128,
    /// Frames since the momentary loudness was last read, and how often
    /// to read it (100 ms: EBU Tech 3341's rate for its maximum). Reading it
    /// sums 400 ms of every channel, so it is read at that rate only, never
    /// per cycle.
    since_poll: usize,
    poll_every: usize,
    /// Momentary reads since the short-term loudness (3 s of every
    /// channel) was last read: once a second.
    polls: u32,
    momentary: f64,
    max_momentary: f64,
    max_short: f64,
    /// Silence for channels that have none in a cycle.
    zeros: Vec<f32>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl Meter {
    /// A meter for `channels` channels at `rate`; `None` if the crate
    /// refuses the parameters (then the take simply has no loudness).
    pub fn new(channels: usize, rate: u32) -> Option<Meter> {
        let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK;
        let mut m = EbuR128::new(channels as u32, rate, mode).ok()?;
        m.set_channel_map(&vec![Channel::Center; channels]).ok()?;
        Some(Meter {
            m,
            since_poll: 0,
            poll_every: (rate / 10) as usize,
            polls: 0,
            momentary: f64::NEG_INFINITY,
            max_momentary: f64::NEG_INFINITY,
            max_short: f64::NEG_INFINITY,
            zeros: Vec::new(),
        })
    }

    /// Adds `n` frames; `channel(c)` is channel `c`'s samples or `None`
    /// for silence.
    pub fn add<'a>(&mut self, n: usize, channels: usize, channel: impl Fn(usize) -> Option<&'a [f32]>) {
        if self.zeros.len() < n {
            self.zeros.resize(n, 0.0);
        }
        let zeros = &self.zeros[..n];
        let planes: Vec<&[f32]> = (0..channels).map(|c| channel(c).map_or(zeros, |s| &s[..n])).collect();
        if self.m.add_frames_planar_f32(&planes).is_err() {
            return;
        }
        self.since_poll += n;
        if self.since_poll >= self.poll_every {
            self.since_poll = 0;
            self.momentary = self.m.loudness_momentary().unwrap_or(f64::NEG_INFINITY);
            self.max_momentary = self.max_momentary.max(self.momentary);
            self.polls += 1;
            if self.polls % 10 == 0 {
                if let Ok(s) = self.m.loudness_shortterm() {
                    self.max_short = self.max_short.max(s);
                }
            }
        }
    }

    /// Loudness over the 400 ms before the last read (at most 100 ms ago;
    /// LUFS, -inf in silence).
    pub fn momentary(&self) -> f64 {
        self.momentary
    }

    /// Everything measured so far.
    pub fn summary(&self) -> Loudness {
        let peak = (0..self.m.channels()).filter_map(|c| self.m.true_peak(c).ok()).fold(0.0f64, f64::max);
        Loudness {
            integrated_lufs: self.m.loudness_global().ok().and_then(finite),
            range_lu: self
                .m
                .loudness_range()
                .ok()
                .filter(|_| self.m.loudness_global().is_ok_and(f64::is_finite)),
            true_peak_dbtp: finite(20.0 * peak.log10()),
            max_momentary_lufs: finite(
                self.max_momentary.max(self.m.loudness_momentary().unwrap_or(f64::NEG_INFINITY)),
            ),
            max_short_term_lufs: finite(self.max_short),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 kHz sine at -20 dBFS (peak 0.1) in one channel: EBU R 128's
    /// K-weighting gives +0.69 dB at 1 kHz and the -0.691 offset takes it
    /// back, so it reads its mean square, 20 log10(0.1) - 3.01 = -23.0
    /// LUFS. Two such channels (weight 1.0 each) read 3.01 LU more.
    #[test]
    fn a_minus_20_dbfs_sine_reads_its_reference_loudness() {
        let rate = 48_000;
        let sine: Vec<f32> = (0..rate * 10)
            .map(|i| 0.1 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin() as f32)
            .collect();
        for (channels, want) in [(1usize, -23.01), (2, -20.0)] {
            let mut m = Meter::new(channels, rate as u32).unwrap();
            for block in sine.chunks(1024) {
                m.add(block.len(), channels, |_| Some(block));
            }
            let l = m.summary();
            let got = l.integrated_lufs.unwrap();
            assert!((got - want).abs() < 0.1, "{channels} ch: {got} LUFS, want {want}");
            assert!(l.range_lu.unwrap() < 0.1, "a steady tone has no range: {l:?}");
            let tp = l.true_peak_dbtp.unwrap();
            assert!((tp - -20.0).abs() < 0.2, "true peak {tp} dBTP");
            assert!((l.max_momentary_lufs.unwrap() - want).abs() < 0.2, "{l:?}");
        }
        // One channel with the tone and one silent: the silent one adds nothing.
        let mut m = Meter::new(2, rate as u32).unwrap();
        for block in sine.chunks(1024) {
            m.add(block.len(), 2, |c| (c == 0).then_some(block));
        }
        assert!((m.summary().integrated_lufs.unwrap() - -23.01).abs() < 0.1);
        // Silence has no loudness at all.
        let mut m = Meter::new(1, rate as u32).unwrap();
        m.add(48_000, 1, |_| None);
        assert_eq!(m.summary(), Loudness::default());
    }
}
