//! Sound on any input (`--trigger level`): when a sample first exceeds the
//! threshold, and when every input has stayed below it for the hold time,
//! to the frame. Measured on the disk thread from the cycles as they
//! arrive, never in the callback. Disk thread only.

use crate::vocab::LevelSpec;

/// What the sound did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// Sound from `frame_time` on (its first sample above the threshold).
    Rose,
    /// Silent (below the threshold) for the hold time: the sound's last
    /// sample above the threshold was `hold` frames before `frame_time`.
    Fell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelEvent {
    pub change: LevelChange,
    /// JACK frame time (unwrapped) where it happened.
    pub frame_time: u64,
}

/// The sound's state across cycles.
#[derive(Debug)]
pub struct LevelWatch {
    pub spec: LevelSpec,
    /// The last frame above the threshold, while there is sound.
    last_above: Option<u64>,
}

impl LevelWatch {
    pub fn new(spec: LevelSpec) -> LevelWatch {
        LevelWatch { spec, last_above: None }
    }

    /// A cycle of `n` frames at `frame_time`: each channel's samples (from
    /// `skip` on), or `None` for a cycle that brought no audio (silence).
    pub fn cycle(
        &mut self,
        chans: Option<&[&[f32]]>,
        skip: usize,
        n: usize,
        frame_time: u64,
    ) -> Option<LevelEvent> {
        let t = self.spec.threshold;
        let (mut first, mut last) = (usize::MAX, None::<usize>);
        for c in chans.unwrap_or(&[]) {
            let s = &c[skip..skip + n];
            if let Some(i) = s.iter().position(|x| x.abs() > t) {
                first = first.min(i);
                let j = s.iter().rposition(|x| x.abs() > t).expect("one is above");
                last = Some(last.map_or(j, |l| l.max(j)));
            }
        }
        match (self.last_above, last) {
            (None, Some(j)) => {
                self.last_above = Some(frame_time + j as u64);
                Some(LevelEvent { change: LevelChange::Rose, frame_time: frame_time + first as u64 })
            }
            (Some(_), Some(j)) => {
                self.last_above = Some(frame_time + j as u64);
                None
            }
            (Some(l), None) if frame_time + n as u64 >= l + 1 + self.spec.hold => {
                self.last_above = None;
                Some(LevelEvent { change: LevelChange::Fell, frame_time: l + 1 + self.spec.hold })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three channels of `n` frames, silent but for `at` on the third
    /// (leaked: a test's few cycles).
    fn cycle(n: usize, at: &[(usize, f32)]) -> Vec<&'static [f32]> {
        let mut c = vec![vec![0.0f32; n]; 3];
        for &(i, v) in at {
            c[2][i] = v;
        }
        c.into_iter().map(|v| &*Box::leak(v.into_boxed_slice())).collect()
    }

    #[test]
    fn rises_at_the_first_sample_and_falls_after_the_hold() {
        let mut w = LevelWatch::new(LevelSpec { threshold: 0.01, hold: 300 });
        assert_eq!(w.cycle(Some(&cycle(256, &[(5, 0.005)])), 0, 256, 0), None, "below the threshold");
        let e = w.cycle(Some(&cycle(256, &[(17, -0.5), (40, 0.2)])), 0, 256, 256).unwrap();
        assert_eq!((e.change, e.frame_time), (LevelChange::Rose, 256 + 17));
        // Last sound at 296: the hold ends at 597, inside the next cycle (a
        // gap: silence, the hold runs on through it).
        let e = w.cycle(None, 0, 256, 512).unwrap();
        assert_eq!((e.change, e.frame_time), (LevelChange::Fell, 296 + 1 + 300));
        assert_eq!(w.cycle(Some(&cycle(256, &[])), 0, 256, 768), None, "silence goes on");
    }

    #[test]
    fn sound_during_the_hold_keeps_it_going() {
        let mut w = LevelWatch::new(LevelSpec { threshold: 0.01, hold: 1000 });
        w.cycle(Some(&cycle(256, &[(0, 1.0)])), 0, 256, 0).unwrap();
        assert_eq!(w.cycle(Some(&cycle(256, &[])), 0, 256, 256), None);
        assert_eq!(w.cycle(Some(&cycle(256, &[(100, 1.0)])), 0, 256, 512), None, "sound again: no new rise");
        for k in 3..6 {
            assert_eq!(w.cycle(Some(&cycle(256, &[])), 0, 256, k * 256), None, "cycle {k}");
        }
        // Last sound at 612: the hold ends at 1613, inside the cycle at 1536.
        let e = w.cycle(Some(&cycle(256, &[])), 0, 256, 1536).unwrap();
        assert_eq!((e.change, e.frame_time), (LevelChange::Fell, 612 + 1 + 1000));
    }
}
