//! Segments: when JACK's rate or clock changes during a take, the running
//! file set is finalized and the take continues in a new one, chained
//! through the manifests. Disk thread only.

use std::path::PathBuf;

use super::*;

impl DiskWriter {
    /// JACK's rate or clock changed. A running take ends its segment with the
    /// last frame of the old clock and continues in a new file set at the new
    /// rate (the frames skipped at the change open the new segment as a gap).
    /// Audio of the old clock no longer serves as pre-roll.
    pub(super) fn new_clock(&mut self, p: &Placement) {
        let old_end = p.at - p.missing();
        if let Some((from, to)) = p.rate_change {
            tracing::warn!(from, to, "JACK's sample rate changed");
        }
        if p.clock_reset {
            tracing::warn!("JACK's clock was reset (frame time went back)");
        }
        let started = |w: &Self| w.active.as_ref().is_some_and(|a| a.first_frame_time.is_some());
        if started(self) {
            self.advance_to(Some(self.history.end), false);
            // Writing up to the change may have ended the take (at its stop
            // point): then there is nothing to continue.
            if started(self) {
                let why = match p.rate_change {
                    Some((from, to)) => format!("JACK's sample rate changed from {from} to {to} Hz"),
                    None => "JACK's clock was reset".to_string(),
                };
                if let Err(e) = self.next_segment(old_end, &why, None) {
                    return self.finish(Some(e));
                }
            }
        }
        self.history.clear(old_end);
        self.gaps.clear();
    }

    /// The take's disk is nearly full (`why`): it continues on the next
    /// spill directory at its very next frame, as a new segment; with none
    /// left, it ends there.
    pub(super) fn spill(&mut self, why: String) -> Result<(), WavError> {
        let Some(a) = &self.active else { return Ok(()) };
        let Some(dir) = a.take.spec.spill.first().cloned() else { return Ok(()) };
        let at = a.cursor;
        let why = format!("{why}; the take continues in {}", dir.display());
        tracing::warn!(take = %a.take.name, "{why}");
        self.next_segment(at, &why, Some(dir))
    }

    /// Finalizes the running segment and opens the next one at `at`
    /// (`why`: JACK's rate or clock changed, or the disk filled), in `dir`
    /// if given (a spill directory), else beside the running one.
    pub(super) fn next_segment(&mut self, at: u64, why: &str, dir: Option<PathBuf>) -> Result<(), WavError> {
        let rate = self.timeline.rate();
        let jack_first = self.timeline.jack_time(at);
        let a = self.active.as_mut().expect("active");
        let index = a.segments.len() + 2;
        let mut spec = a.take.spec.clone();
        spec.sample_rate = rate;
        if let Some(dir) = dir {
            spec.dir = dir;
            spec.spill.remove(0);
        }
        let base = a.segments.first().map_or(&a.take.name, |s| &s.name);
        spec.file = Some(format!("{base}_seg{index}.{}", spec.file_format.ext()));
        spec.take_id = Some(a.take.take_id().to_owned());
        // `--duration` covers the whole take: what is left of it, in time.
        spec.max_frames = a.take.spec.max_frames.map(|_| {
            let left = a.take.remaining() as f64 / a.take.spec.sample_rate.max(1) as f64;
            (left * rate as f64).round() as u64
        });
        let mut next = Take::create(spec, Local::now())?;
        let wall = self.wallclock.wall_time(at).unwrap_or_else(std::time::SystemTime::now);
        next.set_origin(jack_first, wall)?;
        next.set_continues(a.take.name.clone(), why)?;
        a.take.set_continued_in(next.name.clone())?;
        a.take.note_repeated(a.repeated - a.repeated_before);
        a.repeated_before = a.repeated;
        let old = std::mem::replace(&mut a.take, next);
        let gaps = std::mem::take(&mut a.gaps);
        let first = a.segment_first.replace(jack_first);
        let xruns = self.xruns.load(Relaxed).saturating_sub(a.xruns_at_start);
        let seg_rate = old.spec.sample_rate;
        let name = old.name.clone();
        let frames = old.frames();
        let (files, err) = old.finalize(&gaps, xruns, None, RtStats::default());
        tracing::warn!(take = %name, next = %a.take.name, "{why}: the take continues in a new segment");
        a.segments.push(SegmentReport {
            name,
            frames: files.iter().map(|f| f.frames).min().unwrap_or(0).min(frames),
            files,
            sample_rate: seg_rate,
            first_frame_time: first,
            gaps,
        });
        a.cursor = at;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
