//! The history: the newest stretch of every channel, in memory, that takes
//! are written from (pre-roll, the write delay for exact late cuts, and the
//! cycle held back in case JACK repeats it). Disk thread only.

/// The last stretch of audio, kept in memory for pre-roll and for starts
/// that must reach back to a frame the disk thread has already passed. One
/// fixed ring per channel, all sharing one head and length, so any range is
/// at most two slices with the same split on every channel (no reshuffling).
pub(super) struct History {
    pub(super) chans: Vec<Vec<f32>>,
    /// Index of the oldest frame in every channel's ring.
    pub(super) head: usize,
    pub(super) len: usize,
    /// Unwrapped frame time just after the newest frame.
    pub(super) end: u64,
    pub(super) cap: usize,
}

impl History {
    pub(super) fn new(channels: usize, cap: usize) -> History {
        History { chans: vec![vec![0.0; cap]; channels], head: 0, len: 0, end: 0, cap }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn start(&self) -> u64 {
        self.end - self.len as u64
    }

    /// Overwrites the frames at positions `[pos, pos + n)`, if the history
    /// holds them, with each channel's samples `data[c][offset..offset + n]`.
    pub(super) fn overwrite(&mut self, pos: u64, n: usize, data: &[Vec<f32>], offset: usize) -> bool {
        if pos < self.start() || pos + n as u64 > self.end {
            return false;
        }
        let at = (self.head + (pos - self.start()) as usize) % self.cap;
        self.fill_ring(at, n, Some((data, offset)));
        true
    }

    /// Writes `n` frames into every channel's ring from ring index `at`
    /// (wrapping): each channel's samples from `offset` on, or silence.
    pub(super) fn fill_ring(&mut self, at: usize, n: usize, data: Option<(&[Vec<f32>], usize)>) {
        let first = n.min(self.cap - at);
        for (c, ring) in self.chans.iter_mut().enumerate() {
            match data {
                Some((d, offset)) => {
                    let src = &d[c][offset..offset + n];
                    ring[at..at + first].copy_from_slice(&src[..first]);
                    ring[..n - first].copy_from_slice(&src[first..]);
                }
                None => {
                    ring[at..at + first].fill(0.0);
                    ring[..n - first].fill(0.0);
                }
            }
        }
    }

    /// Forgets everything; the next frame is at `end`.
    pub(super) fn clear(&mut self, end: u64) {
        self.len = 0;
        self.end = end;
    }

    /// Appends `n` frames at time `t`: each channel's samples from `offset`
    /// on (`data` None: silence).
    pub(super) fn push(&mut self, t: u64, n: usize, data: Option<(&[Vec<f32>], usize)>) {
        if t != self.end {
            self.len = 0;
        }
        // Only the newest `cap` frames can be kept.
        let skip = n.saturating_sub(self.cap);
        let m = n - skip;
        let tail = (self.head + self.len) % self.cap;
        self.fill_ring(tail, m, data.map(|(d, offset)| (d, offset + skip)));
        let overflow = (self.len + m).saturating_sub(self.cap);
        self.head = (self.head + overflow) % self.cap;
        self.len = self.len + m - overflow;
        self.end = t + n as u64;
    }

    /// The frames `[from, from + n)` (offsets from the oldest) of every
    /// channel, as one or two runs of slices.
    pub(super) fn runs(&self, from: usize, n: usize) -> Vec<Vec<&[f32]>> {
        let start = (self.head + from) % self.cap;
        let first = n.min(self.cap - start);
        let mut runs = vec![self.chans.iter().map(|r| &r[start..start + first]).collect::<Vec<_>>()];
        if first < n {
            runs.push(self.chans.iter().map(|r| &r[..n - first]).collect());
        }
        runs
    }
}
