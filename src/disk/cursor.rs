//! A take's write cursor: how far it may be written now (its start, its
//! stop point, the write delay, the cycle held back) and the writing of the
//! history's frames up to there, with the gaps they cross. Disk thread only.

use super::*;

/// At most 1/20 s of audio per step when catching up (see `advance_to`).
const CATCH_UP_SLICE: u64 = 20;

impl DiskWriter {
    /// Moves the active take forward: starts it once its first frame is in
    /// the history, writes what is due, and ends it at its stop point.
    pub(super) fn advance(&mut self) {
        self.advance_to(None, false)
    }

    /// [`Self::advance`], writing at least up to `at_least` (within the stop
    /// point) even if that is closer to the newest frame than `write_delay`.
    /// A take told to drain ends with the newest frame once every cycle
    /// that has arrived is taken in (`ending`: now, whatever is still in
    /// the cycle log).
    pub(super) fn advance_to(&mut self, at_least: Option<u64>, ending: bool) {
        let Some(a) = &self.active else { return };
        let (hist_start, hist_end) = (self.history.start(), self.history.end);
        if a.first_frame_time.is_none() {
            // No explicit start: the first frame the history holds.
            let want = a.want_first.unwrap_or(hist_start);
            if hist_end <= want || self.history.len() == 0 {
                return;
            }
            if let Err(e) = self.open_take(want.max(hist_start)) {
                return self.finish(Some(e));
            }
        }
        let a = self.active.as_ref().expect("active");
        let mut stop_end = match a.stop {
            Some(StopAt::Frame(f)) => self.timeline.unwrap(f).map(|s| self.timeline.boundary(s, true)),
            Some(StopAt::Before(f)) => self.timeline.unwrap(f),
            Some(StopAt::Time(t)) => self.wallclock.position_at(t),
            Some(StopAt::Drained) | None => None,
        };
        let drain = a.drain && (ending || self.cycles.is_empty());
        if drain {
            // What has arrived, and never past a stop point.
            stop_end = Some(stop_end.map_or(hist_end, |e| e.min(hist_end)));
        }
        // The newest cycle is held back until the next one shows whether it
        // repeats it (see `replace_repeat`); only a drained ending takes all.
        let held = hist_end.saturating_sub(self.timeline.newest_len());
        let mut limit = match (drain, stop_end) {
            (true, Some(e)) => e,
            (_, Some(e)) => e.min(held),
            (_, None) => {
                hist_end.saturating_sub(self.write_delay).min(held).max(at_least.unwrap_or(0).min(hist_end))
            }
        };
        // A disk that is behind catches up a slice at a time, so that the
        // thread gets back to its commands (what `make_room` must write
        // before the history lets go of it is written whole).
        let slice = (self.timeline.rate() as u64 / CATCH_UP_SLICE).max(self.timeline.newest_len());
        limit = limit.min(a.cursor.saturating_add(slice).max(at_least.unwrap_or(0)));
        limit = limit.min(a.cursor.saturating_add(a.take.remaining()));
        if let Err(e) = self.flush_history(limit) {
            return self.finish(Some(e));
        }
        let a = self.active.as_ref().expect("active");
        if stop_end.is_some_and(|e| a.cursor >= e) || a.take.remaining() == 0 {
            self.finish(None);
        }
    }

    /// Writes the history's frames from the take's cursor up to `limit`.
    pub(super) fn flush_history(&mut self, limit: u64) -> Result<(), WavError> {
        let Some(a) = &mut self.active else { return Ok(()) };
        let hist_start = self.history.start();
        if a.cursor < hist_start && a.cursor < limit {
            // Silence of a gap longer than the history (`make_room` wrote all
            // the audio before it): written here, exactly as long as it is.
            let to = hist_start.min(limit);
            record_gaps(&self.gaps, a, to);
            a.take.write_silence(to - a.cursor, SPARSE_SILENCE_FRAMES)?;
            if self.meter.next() <= a.cursor {
                self.meter.add(a.cursor, (to - a.cursor) as usize, None, &self.stats.levels);
            }
            a.cursor = to;
        }
        let from = a.cursor;
        if limit <= from {
            return Ok(());
        }
        record_gaps(&self.gaps, a, limit);
        let skip = from - self.history.start();
        let n = limit - from;
        a.cursor = limit;
        let t = Instant::now();
        let (stats, meter, mut at) = (&self.stats, &mut self.meter, from);
        // Straight from the rings into the encoder; gaps as silence. The
        // meters take their levels from the encoder (measured in cache):
        // frames they measured already (a pre-roll's) are written apart.
        let res = self.history.runs(skip, n, |len, chans| {
            let seen = (meter.next().saturating_sub(at) as usize).min(len);
            for (off, len, measure) in [(0, seen, false), (seen, len - seen, true)] {
                if len == 0 {
                    continue;
                }
                match chans {
                    // In pieces of at most a meter window, so that the
                    // meters and the picture's columns keep their grain
                    // (the last 0.2 s of a take come in one run).
                    Some(chans) => {
                        let piece = meter.window_frames();
                        for from in (off..off + len).step_by(piece) {
                            let n = piece.min(off + len - from);
                            a.take.clear_levels();
                            a.take.write(n, |c| Some(&chans[c][from..from + n]))?;
                            let peak = a.take.levels().iter().fold(0f32, |p, l| p.max(l.peak));
                            stats.peak.fetch_max(peak.to_bits(), Relaxed);
                            if measure {
                                meter.add(at + from as u64, n, Some(a.take.levels()), &stats.levels);
                            }
                        }
                    }
                    None => {
                        a.take.write_silence(len as u64, SPARSE_SILENCE_FRAMES)?;
                        if measure {
                            meter.add(at + off as u64, len, None, &stats.levels);
                        }
                    }
                }
            }
            at += len as u64;
            Ok(())
        });
        let ns = t.elapsed().as_nanos() as u64;
        self.stats.write_batches.fetch_add(1, Relaxed);
        self.stats.write_total_ns.fetch_add(ns, Relaxed);
        self.stats.write_max_ns.fetch_max(ns, Relaxed);
        res
    }
}

/// Removes `[from, to)` from the gaps (their frames arrived after all).
pub(super) fn cut_gaps(gaps: &mut VecDeque<Gap>, from: u64, to: u64) {
    let mut out = VecDeque::with_capacity(gaps.len() + 1);
    for g in gaps.drain(..) {
        let end = g.at + g.frames;
        if end <= from || g.at >= to {
            out.push_back(g);
            continue;
        }
        if g.at < from {
            out.push_back(Gap { frames: from - g.at, ..g });
        }
        if end > to {
            out.push_back(Gap { at: to, frames: end - to, ..g });
        }
    }
    *gaps = out;
}

/// Copies the gaps between the take's cursor and `to` into the take, at
/// offsets in its current segment (a gap cut by a write boundary stays one).
pub(super) fn record_gaps(gaps: &VecDeque<Gap>, a: &mut Active, to: u64) {
    let from = a.cursor;
    for g in gaps {
        let (s, e) = (g.at.max(from), (g.at + g.frames).min(to));
        if s >= e {
            continue;
        }
        let at = a.take.frames() + (s - from);
        match a.gaps.last_mut() {
            Some(last) if last.cause == g.cause && last.at + last.frames == at => last.frames += e - s,
            _ => a.gaps.push(Gap { at, frames: e - s, cause: g.cause }),
        }
    }
}
