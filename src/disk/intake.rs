//! Cycles in: each cycle of the log placed on the timeline, its frames
//! indexed in the history (gaps as silence, a repeat's newer copy in
//! place of the older), the triggers fed, the history kept to its window.
//! Disk thread only.

use super::*;

impl DiskWriter {
    /// Handles every cycle in the log; returns whether there was any.
    pub(super) fn drain_cycles(&mut self) -> bool {
        // The rings' fill beyond what the history keeps: what the callback
        // can still push before it must drop a cycle.
        let slack = self.history.ring_capacity().saturating_sub(self.history.cap);
        self.stats.ring_high_water.fetch_max(self.history.unhandled() as u64, Relaxed);
        self.stats.ring_capacity.store(slack as u64, Relaxed);
        let (mut any, t) = (false, Instant::now());
        while let Some(rec) = self.cycles.try_pop() {
            any = true;
            self.handle_cycle(rec);
            if t.elapsed() >= DRAIN_SLICE {
                break; // commands first; the rest in the next turn
            }
        }
        any
    }

    pub(super) fn handle_cycle(&mut self, rec: CycleRecord) {
        let n = rec.nframes as usize;
        self.history.hold_cycles(n);
        // The cycle's audio stays in the rings; the history reads it there.
        let src = rec.queued.then(|| self.history.accept(n));
        let p = self.timeline.place(&rec);
        let stale = self.stale.judge(&self.history, src.filter(|_| !rec.overtaken), n, p.skipped > 0);
        let clean = src.filter(|_| !rec.overtaken && !p.uncertain && !stale);
        if tracing::enabled!(tracing::Level::TRACE) {
            // What the callback was handed, for whoever asks what happened
            // (the stress bed tells silence JACK delivered from ours).
            let mut zero = clean.is_some();
            if let Some(src) = clean {
                let _ = self.history.ring_frames(src, n, &mut |_, chans| {
                    zero &= chans.is_none_or(|c| c.iter().all(|ch| ch.iter().all(|s| *s == 0.0)));
                    Ok::<(), ()>(())
                });
            }
            tracing::trace!(
                t = rec.frame_time,
                n = rec.nframes,
                rate = rec.rate,
                queued = rec.queued,
                overtaken = rec.overtaken,
                at = p.at,
                skipped = p.skipped,
                repeated = p.repeated,
                uncertain = p.uncertain,
                stale,
                zero,
                "cycle"
            );
        }
        self.wallclock.note_cycle(p.at, rec.usecs, rec.rate);
        let jack = self.timeline.jack_time(p.at);
        if let Some(e) = self.transport.cycle(rec.transport, rec.transport_frame, rec.nframes, jack) {
            let _ = self.events.send(DiskEvent::Transport(e));
        }
        if rec.rate != self.meter_rate && rec.rate > 0 {
            self.meter_rate = rec.rate;
            self.meter.set_rate(rec.rate);
        }
        let old = (p.repeated as usize).min(n);
        // The pictures need the columns from the running take's first frame
        // (and, before one starts, the history a pre-roll reaches into).
        let keep =
            self.active.as_ref().and_then(|a| a.first_pos).unwrap_or(u64::MAX).min(self.history.start());
        self.meter.columns.forget_before(keep);
        if let Some(w) = &mut self.level {
            // The cycle's new frames (a repeat's are already judged); a
            // cycle without clean audio is silence.
            let at = jack + old as u64;
            let mut events = Vec::new();
            match clean {
                Some(src) => {
                    let mut done = 0;
                    let _ = self.history.ring_frames(src + old as u64, n - old, &mut |len, chans| {
                        events.extend(w.cycle(chans, 0, len, at + done));
                        done += len as u64;
                        Ok::<(), ()>(())
                    });
                }
                None => events.extend(w.cycle(None, 0, n - old, at)),
            }
            for e in events {
                let _ = self.events.send(DiskEvent::Level(e));
            }
        }
        if p.rate_change.is_some() || p.clock_reset {
            self.new_clock(&p);
        }
        if p.repeated > 0 {
            self.replace_repeat(&p, clean);
        }
        // Into the history: gap segments as silence, then the cycle's new
        // frames (repeats are already there).
        let gap_at = p.at - p.missing();
        let new = (n as u64).saturating_sub(p.repeated);
        let cause = if !rec.queued {
            GapCause::DiskOverrun
        } else if rec.overtaken {
            GapCause::Torn
        } else if stale {
            GapCause::StaleBuffer
        } else {
            GapCause::LateUncertain
        };
        let segments = [
            (gap_at, p.overflow, GapCause::DiskOverrun, false),
            (gap_at + p.overflow, p.skipped, GapCause::JackSkipped, false),
            (p.first_new(), new, cause, clean.is_some()),
        ];
        for (at, len, cause, has_data) in segments {
            if len == 0 {
                continue;
            }
            let data = clean.filter(|_| has_data).map(|src| src + p.repeated);
            self.history.push(at, len, data);
            if !has_data {
                self.gaps.push_back(Gap { at, frames: len, cause });
            }
        }
        self.make_room();
        // Gaps the history and the take have both left behind.
        let oldest =
            self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map_or(u64::MAX, |a| a.cursor);
        let oldest = oldest.min(self.history.start());
        while self.gaps.front().is_some_and(|g| g.at + g.frames <= oldest) {
            self.gaps.pop_front();
        }
        // A start at a system-clock time is placed again with every cycle
        // until it opens: it stays where it was placed unless the clocks
        // drifted apart meanwhile (see `WallClock::position_at`).
        if self.active.as_ref().is_some_and(|a| {
            a.first_frame_time.is_none()
                && ((a.want_first.is_none() && a.start_at != StartAt::Next)
                    || matches!(a.start_at, StartAt::Time(_)))
        }) {
            self.place_start();
        }
        self.advance();
        self.meter_unwritten();
        self.publish();
    }

    /// The meters measure the history's frames that no take writes (idle,
    /// before a take opens, after it ends); while a take writes, its
    /// encoder measures them (see `flush_history`).
    fn meter_unwritten(&mut self) {
        if self.active.as_ref().is_some_and(|a| a.first_frame_time.is_some()) {
            return;
        }
        let start = self.history.start();
        let from = self.meter.next().max(start);
        if from >= self.history.end {
            return;
        }
        let (meter, levels, mut at) = (&mut self.meter, &self.stats.levels, from);
        let _ = self.history.runs(from - start, self.history.end - from, |len, chans| {
            meter.measure(at, chans, len, levels);
            at += len as u64;
            Ok::<(), ()>(())
        });
    }

    /// JACK delivered frames again (see [`timeline`]): the newer copy, if it
    /// is clean, replaces the earlier one where no take has written it yet
    /// (the takes hold the newest cycle back for this), and a gap there
    /// (an overtaken or dropped first copy) is filled.
    pub(super) fn replace_repeat(&mut self, p: &Placement, clean: Option<u64>) {
        let written = self.active.as_ref().filter(|a| a.first_frame_time.is_some()).map(|a| a.cursor);
        if let Some(a) = &mut self.active {
            if a.first_frame_time.is_some() {
                a.repeated += p.repeated;
            }
        }
        let Some(src) = clean else { return };
        let from = p.at.max(written.unwrap_or(0));
        let to = p.at + p.repeated;
        if from >= to {
            tracing::warn!(
                at = p.at,
                frames = p.repeated,
                "a repeated cycle came after its first copy was written"
            );
            return;
        }
        let skip = from - p.at;
        if self.history.overwrite(from, to - from, src + skip) {
            cut_gaps(&mut self.gaps, from, to);
        }
    }

    /// The history keeps its newest `cap` frames: before the older ones go
    /// (and their ring frames with them), the running take writes them
    /// (normally it trails by `write_delay`, far less than the history; a
    /// long gap can be longer).
    pub(super) fn make_room(&mut self) {
        let evicted_to = self.history.end.saturating_sub(self.history.cap as u64);
        if self.active.as_ref().is_some_and(|a| a.first_frame_time.is_some() && a.cursor < evicted_to) {
            self.advance_to(Some(evicted_to), false);
        }
        self.history.trim();
    }

    pub(super) fn publish(&self) {
        if let Some(a) = &self.active {
            self.stats.frames.store(a.take.frames(), Relaxed);
            self.stats.bytes.store(a.take.bytes(), Relaxed);
            self.stats.momentary.store(a.take.momentary().to_bits(), Relaxed);
            let lost =
                |jack: bool| a.gaps.iter().filter(|g| g.cause.by_jack() == jack).map(|g| g.frames).sum();
            self.stats.overflow_frames.store(lost(false), Relaxed);
            self.stats.skipped_frames.store(lost(true), Relaxed);
        }
    }
}
