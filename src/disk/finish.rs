//! A take's end: markers, the drained ending, and handing the ended take
//! to the finalizer (a rotated-in take starts right where it ended).
//! Disk thread only.

use super::*;

impl DiskWriter {
    /// Ends the take with everything that has arrived (quit, JACK gone):
    /// nothing is rotated in.
    pub(super) fn end_drained(&mut self) {
        let Some(a) = &mut self.active else { return };
        a.next = None;
        a.drain = true;
        // Writes up to the newest frame (a slice at a time) and finishes.
        while let Some(at) = self.active.as_ref().map(|a| a.cursor) {
            self.advance_to(None, true);
            if self.active.as_ref().is_none_or(|a| a.cursor == at) {
                break;
            }
        }
        self.finish(None); // in case a write error left it half done
    }

    /// Puts a marker into the take (segment) that holds JACK frame
    /// `frame_time`; until the take's first frame is known, it waits (and
    /// is saved with the take's start). It is saved, and reported saved,
    /// with the other markers of its burst ([`Self::save_marks`]).
    pub(super) fn mark(&mut self, frame_time: u64, label: String) {
        let refused = match &mut self.active {
            None => "no take is running; marker dropped",
            Some(a) => match a.segment_first {
                None => return a.marks.push((frame_time, label)),
                Some(first) if frame_time >= first => {
                    a.take.add_marker_unsaved(frame_time - first, frame_time, label);
                    return self.unsaved_marks.push(frame_time);
                }
                Some(_) => "before the segment's first frame; marker dropped",
            },
        };
        report_mark(&self.events, frame_time, Err(refused.to_string()));
    }

    /// Saves the markers added since the last save, in one manifest
    /// update, and reports each. Called before any other command and
    /// whenever the commands are drained, so the take they went into is
    /// still the active one.
    pub(super) fn save_marks(&mut self) {
        if self.unsaved_marks.is_empty() {
            return;
        }
        let saved = match &self.active {
            Some(a) => a.take.save_markers().map_err(|e| format!("marker not saved in the manifest: {e}")),
            None => Err("the take ended before its markers were saved".to_string()),
        };
        for frame_time in std::mem::take(&mut self.unsaved_marks) {
            report_mark(&self.events, frame_time, saved.clone());
        }
    }

    /// Notes an alarm in the running take's manifest, at the frame of JACK
    /// frame time `frame_time` (the take's start, if before it).
    pub(super) fn alarm(&mut self, frame_time: u64, mut record: crate::vocab::AlarmRecord) {
        let Some(a) = &mut self.active else { return };
        record.frame = a.segment_first.map_or(0, |first| frame_time.saturating_sub(first));
        if let Err(e) = a.take.add_alarm(record) {
            tracing::warn!("alarm not saved in the manifest: {e}");
        }
    }

    /// Ends the active take: finalize every file and report. A rotated-in
    /// take starts right where this one ended.
    pub(super) fn finish(&mut self, error: Option<WavError>) {
        let Some(mut a) = self.active.take() else { return };
        let name = a.take.name.clone();
        let sample_rate = a.take.spec.sample_rate;
        let frames = a.take.frames();
        let end = a.cursor;
        let next = if error.is_none() { a.next.take() } else { None };
        let rotated_into = next.as_ref().map(|n| n.name.clone());
        let xruns = self.xruns.load(Relaxed).saturating_sub(a.xruns_at_start);
        let msg = error.as_ref().map(|e| e.to_string()).or(a.abort.clone());
        let disk = self.stats.summary();
        let rt = RtStats {
            callback: match (&self.callback, &a.callback_window) {
                (Some(c), Some(w)) => c.callback.window_summary(w),
                _ => Default::default(),
            },
            disk,
            ring_high_water_seconds: disk.ring_high_water_frames as f64 / sample_rate.max(1) as f64,
            overflow_frames: self.stats.overflow_frames.load(Relaxed).saturating_sub(a.overflow_at_start),
        };
        a.take.note_repeated(a.repeated - a.repeated_before);
        // Markers past this take's end belong to the take rotated in.
        let carried: Vec<(u64, String)> =
            a.take.split_markers(frames).into_iter().map(|m| (m.frame_time, m.label)).collect();
        let events = self.events.clone();
        let take_started = a.started.map(|t| t.to_rfc3339());
        let (first_frame_time, repeated_frames) = (a.first_frame_time, a.repeated);
        let (segments, segment_first, abort) = (a.segments, a.segment_first, a.abort);
        let gaps = a.gaps;
        // The picture's levels: the meters' columns over the take.
        let levels =
            a.first_pos.filter(|_| frames > 0).map(|first| self.meter.columns.take_levels(first, frames));
        self.finalizer.submit(Box::new(move || {
            let picture = levels.and_then(|l| draw_picture(&mut a.take, &l, frames, sample_rate, &gaps));
            let (files, fin_err) = a.take.finalize(&gaps, xruns, msg.as_deref(), rt);
            // What the files really hold: a failed write loses the rest of
            // its buffer, but the part that reached the file before the
            // error (beyond the batches appended whole) is kept and counted.
            let frames = files.iter().map(|f| f.frames).min().unwrap_or(0);
            let error = error.or(fin_err);
            let error_kind = error.as_ref().and_then(|e| e.io_error()).map(|e| format!("{:?}", e.kind()));
            let error = error.map(|e| e.to_string()).or(abort);
            if let Some(e) = &error {
                tracing::error!(take = %name, "take ended by an error: {e}");
            }
            let mut report = TakeReport {
                name,
                files,
                frames,
                sample_rate,
                first_frame_time,
                started: take_started,
                gaps,
                repeated_frames,
                segments: Vec::new(),
                rotated_into,
                error,
                error_kind,
                picture,
            };
            if !segments.is_empty() {
                report.absorb_segments(segments, segment_first);
            }
            let _ = events.send(DiskEvent::Finished(Box::new(report)));
        }));
        if let Some(next) = next {
            self.begin(*next, StartAt::Next, 0);
            if let Some(a) = &mut self.active {
                a.want_first = Some(end);
                a.marks = carried;
            }
            self.advance();
        }
    }
}

/// Tells the daemon whether the marker at `frame_time` is saved (and logs
/// why not).
pub(super) fn report_mark(events: &Sender<DiskEvent>, frame_time: u64, saved: Result<(), String>) {
    if let Err(e) = &saved {
        tracing::warn!(frame_time, "{e}");
    }
    let _ = events.send(DiskEvent::Marked { frame_time, saved });
}

/// Draws the take's picture beside its files (`NAME.png`) and names it in
/// the manifest; a picture that cannot be written is only said (the audio
/// is what matters). Returns its path. Finalizer thread.
fn draw_picture(
    take: &mut Take,
    levels: &super::picture::Levels,
    frames: u64,
    sample_rate: u32,
    gaps: &[Gap],
) -> Option<std::path::PathBuf> {
    let name = format!("{}.png", take.name);
    let path = take.dir().join(&name);
    let markers = take.markers();
    let (step, curve) = take.loudness_curve();
    let curve = curve.to_vec();
    let pic = super::picture::render(
        &take.input_names(),
        levels,
        frames,
        sample_rate,
        gaps,
        &markers,
        (step, &curve),
    );
    match super::picture::write_png(&path, &pic) {
        Ok(()) => {
            take.note_picture(name);
            Some(path)
        }
        Err(e) => {
            tracing::warn!("{}: the take's picture was not written: {e}", path.display());
            None
        }
    }
}
