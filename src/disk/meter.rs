//! Every input's level for the people watching: peak and RMS over short
//! windows (25 a second), and clipping, on the disk thread, idle or
//! recording, never in the callback. Each frame is read for it once: while
//! a take is written the encoder measures the frames as it encodes them
//! (so the meters show what the files get, 0.2 s after it was played);
//! otherwise the history's frames are measured as they arrive.
//! The newest window of every input is published in [`Levels`] for the
//! control side (the web page, the meter feeds) to copy. Disk thread only,
//! except [`Levels`]' readers.

use std::sync::Mutex;

use crate::vocab::ChannelLevel;

/// Windows per second.
pub const WINDOWS_PER_SECOND: u32 = 25;
/// A window that saw a clip shows it this many seconds.
const CLIP_HOLD_SECONDS: u32 = 2;

/// One input's newest window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct InputLevel {
    /// Largest |sample| in the window (linear, 1.0 = 0 dBFS).
    pub peak: f32,
    /// Root mean square over the window (linear).
    pub rms: f32,
    /// A sample reached full scale (|x| >= 1.0) within the last 2 s.
    pub clipped: bool,
}

impl InputLevel {
    pub fn peak_dbfs(&self) -> f64 {
        dbfs(self.peak)
    }

    pub fn rms_dbfs(&self) -> f64 {
        dbfs(self.rms)
    }
}

/// Decibels relative to full scale; silence is -inf (JSON: null).
pub fn dbfs(x: f32) -> f64 {
    20.0 * (x as f64).log10()
}

/// The newest window of every input, with a count that grows with each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelSnapshot {
    pub windows: u64,
    pub inputs: Vec<InputLevel>,
}

/// Where the disk thread publishes the levels (shared with the control
/// side, which copies them out). A reader never waits for the disk thread:
/// if it holds the lock (for the copy of a few floats per input, or
/// because it was stopped right then), the reader gets the last copy any
/// reader made, from a lock of the readers' own.
#[derive(Debug, Default)]
pub struct Levels {
    newest: Mutex<LevelSnapshot>,
    last_read: Mutex<LevelSnapshot>,
}

impl Levels {
    /// The newest windows (or the last ones read, if the disk thread holds
    /// them now). Never waits for the disk thread. Not real-time.
    pub fn snapshot(&self) -> LevelSnapshot {
        let last = || self.last_read.lock().map(|s| s.clone()).unwrap_or_default();
        match self.newest.try_lock() {
            Ok(s) => {
                let copy = s.clone();
                drop(s);
                if let Ok(mut l) = self.last_read.lock() {
                    l.clone_from(&copy);
                }
                copy
            }
            Err(std::sync::TryLockError::WouldBlock) => last(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
        }
    }
}

/// The disk thread's running window.
#[derive(Debug)]
pub struct Meter {
    /// The same peaks in columns of 0.1 s, kept for the takes' pictures.
    pub columns: super::picture::Columns,
    /// Each input's peak in the piece being added.
    piece: Vec<f32>,
    peak: Vec<f32>,
    sum_squares: Vec<f64>,
    /// Frames to go for which each input shows a clip.
    clip_left: Vec<u64>,
    frames: u64,
    window: u64,
    clip_hold: u64,
    /// Position up to which the frames are measured: each frame is
    /// measured once, by whichever reads it first (the encoder while a
    /// take is written, [`Meter::measure`] otherwise).
    next: u64,
    /// Frames measured so far.
    measured: u64,
    /// [`Meter::measure`]'s levels of the piece being measured.
    scratch: Vec<ChannelLevel>,
}

impl Meter {
    pub fn new(inputs: usize, sample_rate: u32) -> Meter {
        let mut m = Meter {
            columns: super::picture::Columns::new(inputs, sample_rate),
            piece: vec![0.0; inputs],
            peak: vec![0.0; inputs],
            sum_squares: vec![0.0; inputs],
            clip_left: vec![0; inputs],
            frames: 0,
            window: 1,
            clip_hold: 1,
            next: 0,
            measured: 0,
            scratch: vec![ChannelLevel::default(); inputs],
        };
        m.set_rate(sample_rate);
        m
    }

    /// JACK's rate changed: windows stay 1/25 s long.
    pub fn set_rate(&mut self, sample_rate: u32) {
        self.window = (sample_rate / WINDOWS_PER_SECOND).max(1) as u64;
        self.clip_hold = (sample_rate * CLIP_HOLD_SECONDS).max(1) as u64;
        self.columns.set_rate(sample_rate);
    }

    /// Frames in one window (1/25 s): the largest piece worth measuring as
    /// one.
    pub fn window_frames(&self) -> usize {
        self.window as usize
    }

    /// Frames measured so far (each once).
    pub fn measured(&self) -> u64 {
        self.measured
    }

    /// The first position not yet measured.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Measures `n` frames of every input from position `at` (`None`:
    /// silence), those before [`Self::next`] excepted; a full window is
    /// published into `out`.
    pub fn measure(&mut self, at: u64, chans: Option<&[&[f32]]>, n: usize, out: &Levels) {
        let skip = self.next.saturating_sub(at).min(n as u64) as usize;
        let Some(chans) = chans else {
            // Silence: one piece, however long (a gap).
            if skip < n {
                self.add(at + skip as u64, n - skip, None, out);
            }
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        // Audio in pieces of at most a window, so that the windows and the
        // picture's columns keep their grain.
        for from in (skip..n).step_by(self.window_frames()) {
            let len = self.window_frames().min(n - from);
            for (l, c) in scratch.iter_mut().zip(chans) {
                *l = ChannelLevel::of(&c[from..from + len]);
            }
            self.add(at + from as u64, len, Some(&scratch[..]), out);
        }
        self.scratch = scratch;
    }

    /// `n` frames from position `at` whose levels were measured already
    /// (by the encoder), or silence (`None`); a full window is published
    /// into `out`. `at` is not before [`Self::next`].
    pub fn add(&mut self, at: u64, n: usize, levels: Option<&[ChannelLevel]>, out: &Levels) {
        debug_assert!(at >= self.next, "frames from {at} measured up to {}", self.next);
        self.next = self.next.max(at + n as u64);
        self.measured += n as u64;
        self.piece.fill(0.0);
        for (i, l) in levels.unwrap_or(&[]).iter().enumerate().take(self.peak.len()) {
            self.piece[i] = l.peak;
            self.peak[i] = self.peak[i].max(l.peak);
            self.sum_squares[i] += l.squares;
            if l.peak >= 1.0 {
                self.clip_left[i] = self.clip_hold;
            }
        }
        self.columns.add(at, n as u64, &self.piece);
        self.frames += n as u64;
        if self.frames >= self.window {
            self.publish(out);
        }
    }

    fn publish(&mut self, out: &Levels) {
        let frames = self.frames.max(1) as f64;
        let Ok(mut s) = out.newest.lock() else { return };
        s.windows += 1;
        s.inputs.resize(self.peak.len(), InputLevel::default());
        for (i, level) in s.inputs.iter_mut().enumerate() {
            *level = InputLevel {
                peak: self.peak[i],
                rms: (self.sum_squares[i] / frames).sqrt() as f32,
                clipped: self.clip_left[i] > 0,
            };
            self.clip_left[i] = self.clip_left[i].saturating_sub(self.frames);
        }
        drop(s);
        self.peak.fill(0.0);
        self.sum_squares.fill(0.0);
        self.frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sine at -20 dBFS reads -20 dBFS peak and -23 dBFS RMS; silence
    /// reads -inf; a full-scale sample shows a clip for 2 s.
    #[test]
    fn a_tone_reads_its_level_and_a_clip_is_held() {
        let levels = Levels::default();
        let mut m = Meter::new(3, 48_000);
        let amp = 0.1f32; // -20 dBFS
        let tone: Vec<f32> = (0..48_000)
            .map(|i| amp * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let silence = vec![0f32; 48_000];
        let mut clip = vec![0f32; 48_000];
        clip[10] = -1.0;
        for k in 0..(48_000 / 256) {
            let r = k * 256..(k + 1) * 256;
            m.measure(k as u64 * 256, Some(&[&tone[r.clone()], &silence[r.clone()], &clip[r]]), 256, &levels);
        }
        let s = levels.snapshot();
        // Windows of whole cycles: 8 of 256 frames reach 1/25 s.
        assert_eq!(s.windows, 187 / 8);
        assert!((s.inputs[0].peak_dbfs() + 20.0).abs() < 0.05, "{:?}", s.inputs[0]);
        assert!((s.inputs[0].rms_dbfs() + 23.01).abs() < 0.05, "{:?}", s.inputs[0]);
        assert_eq!(s.inputs[1].peak_dbfs(), f64::NEG_INFINITY);
        assert!(!s.inputs[0].clipped && !s.inputs[1].clipped);
        assert!(s.inputs[2].clipped, "one second after the clip");
        // A cycle without audio is silence; 2 s after the clip it is gone.
        for k in 0..(48_000 / 256 * 2) {
            m.measure((187 + k) * 256, None, 256, &levels);
        }
        let s = levels.snapshot();
        assert!(!s.inputs[2].clipped, "{:?}", s.inputs[2]);
        assert_eq!(s.inputs[0].peak, 0.0);
    }

    /// A reader is never held by the disk thread: while the newest levels
    /// are locked, it gets the last ones read.
    #[test]
    fn a_reader_never_waits_for_the_disk_thread() {
        let levels = Levels::default();
        let mut m = Meter::new(1, 48_000);
        let loud = vec![0.5f32; 1920];
        m.measure(0, Some(&[&loud[..]]), 1920, &levels);
        let read = levels.snapshot();
        assert_eq!(read.inputs[0].peak, 0.5);
        let held = levels.newest.lock().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(levels.snapshot(), read, "the last copy read");
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        drop(held);
    }
}
