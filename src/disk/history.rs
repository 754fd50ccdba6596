//! The history: the newest stretch of JACK's timeline, which takes are
//! written from (pre-roll, the write delay for exact late cuts, and the
//! cycle held back in case JACK repeats it). Disk thread only.
//!
//! It holds no audio of its own. The frames stay in the port rings where the
//! callback put them, and the history is an index over them: a short list of
//! spans, each either a stretch of ring frames or silence (a gap). The disk
//! thread releases ring frames only once they fall out of the history's
//! window, so a take reads them in place, straight into its encoder: one
//! pass over each sample after the callback's copy (docs/benchmarks.md).

use std::collections::VecDeque;

use crate::rings::PortReader;

/// A stretch of the timeline: `len` frames from position `at`, held in the
/// rings from ring offset `src` on, or silence (`src` None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u64,
    len: u64,
    src: Option<u64>,
}

/// The newest `cap` frames of the timeline, over the port rings. A ring
/// offset counts every frame the callback ever queued (all rings move in
/// lockstep, so one count serves every port).
pub(super) struct History {
    rings: PortReader,
    /// In position order, without holes: `[start, end)`.
    spans: VecDeque<Span>,
    len: u64,
    /// Position just after the newest frame.
    pub(super) end: u64,
    /// Frames of timeline kept: the window, and the held-back cycles of
    /// the longest period seen so far (see [`Self::hold_cycles`]).
    pub(super) cap: usize,
    /// The pre-roll or write delay the history must always hold.
    window: usize,
    /// Ring offset of the rings' read index (frames released so far).
    released: u64,
    /// Ring offset just after the newest frame the cycle log announced.
    accepted: u64,
    /// Ring offset of the newest announced cycle: kept until the next one,
    /// as the cycle in hand may still be pushed after a `clear`.
    newest: u64,
}

impl History {
    /// A history of `window` frames, growing by the held cycles as they
    /// come (see [`Self::hold_cycles`]).
    pub(super) fn new(rings: PortReader, window: usize) -> History {
        History {
            rings,
            spans: VecDeque::new(),
            len: 0,
            end: 0,
            cap: window,
            window,
            released: 0,
            accepted: 0,
            newest: 0,
        }
    }

    /// A cycle of `n` frames came: the history keeps room for holding back
    /// [`super::HELD_CYCLES`] of them on top of its window. The keep only
    /// grows (a period that shrinks again leaves it as it was), and never
    /// past what leaves the callback room for one more cycle.
    pub(super) fn hold_cycles(&mut self, n: usize) {
        let mut want = self.window + super::HELD_CYCLES * n;
        if self.ring_capacity() > 0 {
            want = want.min(self.ring_capacity().saturating_sub(n).max(self.window));
        }
        self.cap = self.cap.max(want);
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    pub(super) fn start(&self) -> u64 {
        self.end - self.len
    }

    /// A queued cycle's `n` frames are in the rings (the callback pushes a
    /// cycle's record after its audio): returns their ring offset.
    pub(super) fn accept(&mut self, n: usize) -> u64 {
        let at = self.accepted;
        self.accepted += n as u64;
        self.newest = at;
        at
    }

    /// Ring frames the disk thread has not accounted for yet (the callback's
    /// newest cycles, not in the cycle log yet or not handled): the ring
    /// fill that matters for overflow.
    pub(super) fn unhandled(&self) -> usize {
        let held = (self.accepted - self.released) as usize;
        self.rings.occupied().saturating_sub(held)
    }

    pub(super) fn ring_capacity(&self) -> usize {
        self.rings.capacity()
    }

    /// Appends `n` frames at position `t`: ring frames from offset `src` on,
    /// or silence. A position other than `end` starts over (a new clock).
    pub(super) fn push(&mut self, t: u64, n: u64, src: Option<u64>) {
        if t != self.end {
            self.spans.clear();
            self.len = 0;
        }
        match self.spans.back_mut() {
            Some(last) if last.src.map(|s| s + last.len) == src || (last.src.is_none() && src.is_none()) => {
                last.len += n;
            }
            _ => self.spans.push_back(Span { at: t, len: n, src }),
        }
        self.len += n;
        self.end = t + n;
    }

    /// Makes positions `[pos, pos + n)` read from ring offset `src` on (a
    /// newer copy of frames JACK delivered twice), if the history holds
    /// them.
    pub(super) fn overwrite(&mut self, pos: u64, n: u64, src: u64) -> bool {
        if pos < self.start() || pos + n > self.end || n == 0 {
            return false;
        }
        let end = pos + n;
        let mut out = VecDeque::with_capacity(self.spans.len() + 2);
        let mut placed = false;
        for s in self.spans.drain(..) {
            let s_end = s.at + s.len;
            if s_end <= pos {
                out.push_back(s);
                continue;
            }
            if s.at < pos {
                out.push_back(Span { len: pos - s.at, ..s });
            }
            if !placed {
                out.push_back(Span { at: pos, len: n, src: Some(src) });
                placed = true;
            }
            if s_end > end {
                let lo = s.at.max(end);
                out.push_back(Span { at: lo, len: s_end - lo, src: s.src.map(|x| x + (lo - s.at)) });
            }
        }
        self.spans = out;
        true
    }

    /// Whether some channel carries exactly the same audio, and not
    /// silence, at ring offsets `a` and `b` for `n` frames: a buffer the
    /// upstream had not written again (see `disk::stale`).
    pub(super) fn same_audio(&self, a: u64, b: u64, n: usize) -> bool {
        let (x, y) = (self.channel_frames(a, n), self.channel_frames(b, n));
        x.iter().zip(&y).any(|(p, q)| p == q && p.iter().any(|s| *s != 0.0))
    }

    /// Every channel's `n` frames from ring offset `src`, copied.
    fn channel_frames(&self, src: u64, n: usize) -> Vec<Vec<f32>> {
        let mut out = vec![Vec::with_capacity(n); self.rings.len()];
        let _ = self.ring_frames(src, n, &mut |_, chans| {
            for (o, c) in out.iter_mut().zip(chans.unwrap_or(&[])) {
                o.extend_from_slice(c);
            }
            Ok::<(), ()>(())
        });
        out
    }

    /// Forgets the positions before `end - cap` and releases every ring
    /// frame no span needs any more.
    pub(super) fn trim(&mut self) {
        let keep_from = self.end.saturating_sub(self.cap as u64).max(self.start());
        while let Some(s) = self.spans.front_mut() {
            if s.at >= keep_from {
                break;
            }
            let s_end = s.at + s.len;
            if s_end <= keep_from {
                self.spans.pop_front();
                continue;
            }
            let cut = keep_from - s.at;
            *s = Span { at: keep_from, len: s.len - cut, src: s.src.map(|x| x + cut) };
        }
        self.len = self.end - keep_from;
        self.release();
    }

    /// Forgets everything; the next frame is at `end`.
    pub(super) fn clear(&mut self, end: u64) {
        self.spans.clear();
        self.len = 0;
        self.end = end;
        self.release();
    }

    /// Gives the rings back every frame below the oldest one a span reads
    /// (and below the cycle in hand).
    fn release(&mut self) {
        let needed = self.spans.iter().filter_map(|s| s.src).fold(self.newest, u64::min);
        if needed > self.released {
            self.rings.release((needed - self.released) as usize);
            self.released = needed;
        }
    }

    /// Calls `f(len, chans)` for the frames `[from, from + n)` (offsets from
    /// the oldest) in order, in contiguous pieces: `chans` holds every
    /// channel's samples, or is None for silence. Stops at the first error.
    pub(super) fn runs<E>(
        &self,
        from: u64,
        n: u64,
        mut f: impl FnMut(usize, Option<&[&[f32]]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (from, to) = (self.start() + from, self.start() + from + n);
        debug_assert!(to <= self.end);
        for s in &self.spans {
            let (a, b) = (s.at.max(from), (s.at + s.len).min(to));
            if a >= b {
                continue;
            }
            match s.src {
                None => f((b - a) as usize, None)?,
                Some(src) => self.ring_frames(src + (a - s.at), (b - a) as usize, &mut f)?,
            }
        }
        Ok(())
    }

    /// Calls `f(len, Some(chans))` for the `n` ring frames from offset `src`
    /// on: one piece, or two where the rings wrap.
    pub(super) fn ring_frames<E>(
        &self,
        src: u64,
        n: usize,
        f: &mut impl FnMut(usize, Option<&[&[f32]]>) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(src >= self.released && src + n as u64 <= self.accepted);
        let idx = (src - self.released) as usize;
        // Every ring's read index is the same, so the wrap is at the same
        // place in all of them; the first ring (pushed first) shows where.
        let ports = 0..self.rings.len();
        let split = if self.rings.is_empty() { 0 } else { self.rings.slices(0).0.len() };
        let mut chans: Vec<&[f32]> = Vec::with_capacity(self.rings.len());
        if idx + n <= split || idx >= split {
            let in_second = idx >= split;
            let at = if in_second { idx - split } else { idx };
            chans.extend(ports.map(|i| {
                let (x, y) = self.rings.slices(i);
                let s = if in_second { y } else { x };
                &s[at..at + n]
            }));
            return f(n, Some(&chans));
        }
        let first = split - idx;
        chans.extend(ports.clone().map(|i| &self.rings.slices(i).0[idx..split]));
        f(first, Some(&chans))?;
        chans.clear();
        chans.extend(ports.map(|i| &self.rings.slices(i).1[..n - first]));
        f(n - first, Some(&chans))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings::PortWriter;

    /// Two rings of `size` frames and a history of `cap` over them.
    fn bed(size: usize, cap: usize) -> (PortWriter, History) {
        let (w, r) = crate::rings::port_rings(2, size).unwrap();
        (w, History::new(r, cap))
    }

    #[test]
    fn keeps_the_held_cycles_of_the_longest_period_on_top_of_its_window() {
        let (_w, mut h) = bed(1000, 100);
        assert_eq!(h.cap, 100, "the window alone before any cycle");
        h.hold_cycles(64);
        assert_eq!(h.cap, 100 + 2 * 64);
        h.hold_cycles(32);
        assert_eq!(h.cap, 100 + 2 * 64, "a shorter period keeps what the longer one needed");
        h.hold_cycles(600);
        assert_eq!(h.cap, 1000 - 600, "never so much that the callback has no room for a cycle");
        let (_w, mut h) = bed(1000, 950);
        h.hold_cycles(600);
        assert_eq!(h.cap, 950, "never less than the window");
    }

    #[test]
    fn rings_hold_the_slack_the_window_and_the_held_cycles() {
        use crate::disk::{ring_frames, HELD_CYCLES, MAX_PERIOD};
        assert_eq!(ring_frames(192_000, 0, 0, 1024), 192_000 + 2048, "4 s at period 1024, no pre-roll");
        assert_eq!(ring_frames(192_000, 48_000, 24_000, 256), 192_000 + 48_000 + 512);
        // A slack shorter than the longest period's hold grows to it, so a
        // period raised later cannot eat into the window.
        assert_eq!(ring_frames(4_800, 0, 0, 64), HELD_CYCLES * MAX_PERIOD + 128);
    }

    fn value(t: u64, c: usize) -> f32 {
        t as f32 + c as f32 * 1000.0
    }

    /// Pushes a cycle of `n` frames of position `t` into the rings, as the
    /// callback does, and accepts it; returns its ring offset.
    fn cycle(prods: &mut PortWriter, h: &mut History, t: u64, n: usize) -> u64 {
        let v: Vec<Vec<f32>> = (0..2).map(|c| (0..n as u64).map(|i| value(t + i, c)).collect()).collect();
        assert_eq!(prods.push_cycle(n, |c| &v[c]), crate::rings::Pushed::Whole, "ring full");
        h.accept(n)
    }

    /// Every channel of `[from, from + n)` (offsets from the oldest), None
    /// for silence.
    fn read(h: &History, from: u64, n: u64) -> Vec<Vec<Option<f32>>> {
        let mut out = vec![Vec::new(); 2];
        h.runs(from, n, |len, chans| {
            for (c, o) in out.iter_mut().enumerate() {
                match chans {
                    Some(ch) => o.extend(ch[c].iter().map(|&x| Some(x))),
                    None => o.extend(std::iter::repeat_n(None, len)),
                }
            }
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn keeps_the_newest_frames_across_ring_wraps_and_releases_the_rest() {
        let (mut prods, mut h) = bed(17, 10);
        let mut t = 0;
        for n in [3, 4, 5, 6, 7, 1] {
            let src = cycle(&mut prods, &mut h, t, n);
            h.push(t, n as u64, Some(src));
            h.trim();
            t += n as u64;
        }
        h.push(t, 2, None); // silence: no ring frames
        t += 2;
        h.trim();
        assert_eq!((h.len(), h.start()), (10, t - 10));
        // Only what the window reads is still in the rings.
        assert_eq!(prods.occupied(), 8);
        for c in 0..2 {
            let want: Vec<Option<f32>> = (t - 10..t).map(|x| (x < t - 2).then(|| value(x, c))).collect();
            assert_eq!(read(&h, 0, 10)[c], want, "channel {c}");
        }
        // A discontinuity starts over, and frees the rings.
        let src = cycle(&mut prods, &mut h, t + 100, 3);
        h.push(t + 100, 3, Some(src));
        h.trim();
        assert_eq!((h.len(), h.start()), (3, t + 100));
        assert_eq!(prods.occupied(), 3);
    }

    /// A repeated cycle's newer copy replaces the older frames in place;
    /// the older copy's ring frames go once nothing reads them.
    #[test]
    fn a_newer_copy_replaces_frames_in_the_middle() {
        let (mut prods, mut h) = bed(64, 32);
        let src = cycle(&mut prods, &mut h, 0, 8);
        h.push(0, 8, Some(src));
        // JACK delivers frames 4..8 again (different values: position 100+).
        let again = cycle(&mut prods, &mut h, 104, 4);
        assert!(h.overwrite(4, 4, again));
        assert!(!h.overwrite(6, 4, again), "beyond the newest frame");
        let src = cycle(&mut prods, &mut h, 8, 4);
        h.push(8, 4, Some(src));
        let got = read(&h, 0, 12);
        let want: Vec<Option<f32>> = (0..4).chain(104..108).chain(8..12).map(|x| Some(value(x, 1))).collect();
        assert_eq!(got[1], want);
        // The window moves past the first copy: it is released, the newer
        // copy (read at positions 4..8) is kept.
        h.cap = 9;
        h.trim();
        assert_eq!(h.start(), 3);
        assert_eq!(read(&h, 0, 9)[0][..2], [Some(value(3, 0)), Some(value(104, 0))]);
        assert_eq!(prods.occupied(), 16 - 3);
        h.cap = 4;
        h.trim();
        assert_eq!(prods.occupied(), 4, "only 8..12 read now");
    }
}
