//! Buffers the upstream had not written again. Right after JACK skipped
//! cycles, a server may hand a client the same buffer twice: PipeWire ran
//! capstan twice on one frame time with the upstream's old audio both times
//! (measured by the stress bed after the source was stopped), where JACK2's
//! second run carries the new audio. A cycle whose audio is bit for bit the
//! cycle before's, on a channel that is not silent, holds no new audio: it
//! is a reported gap (`stale_buffer`), and as a repeat it replaces nothing.
//!
//! Only in a short window after a skip: there the upstream may lag, and
//! elsewhere a signal that repeats exactly every cycle (a test tone whose
//! period divides the cycle) must be recorded as it is. The window closes
//! at the first cycle with new audio. Disk thread only; a pure judgement
//! over the history's ring frames.

use super::history::History;

/// Cycles after a skip in which a repeated buffer is looked for.
const WINDOW: u32 = 16;

#[derive(Debug, Default)]
pub(super) struct StaleWatch {
    /// Cycles of the window left.
    left: u32,
    /// Ring offset and length of the newest queued cycle.
    prev: Option<(u64, usize)>,
}

impl StaleWatch {
    /// Judges one cycle (`src`: its ring offset if its audio is usable,
    /// `after_skip`: JACK skipped frames just before it). True if it holds
    /// the cycle before's audio again.
    pub(super) fn judge(&mut self, history: &History, src: Option<u64>, n: usize, after_skip: bool) -> bool {
        if after_skip {
            self.left = WINDOW;
        }
        let prev = std::mem::replace(&mut self.prev, src.map(|s| (s, n)));
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        let (Some(s), Some((ps, pn))) = (src, prev) else { return false };
        let stale = history.same_audio(s, ps, n.min(pn));
        if !stale && !after_skip {
            // New audio: the upstream writes again.
            self.left = 0;
        }
        stale
    }
}
