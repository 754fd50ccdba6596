//! A take's start: where it begins on the timeline (a cycle boundary, a
//! frame, a system-clock time, minus the pre-roll) and its opening there.
//! Disk thread only.

use super::*;

impl DiskWriter {
    pub(super) fn begin(&mut self, take: Take, start_at: StartAt, preroll: u64) {
        self.stats.frames.store(take.frames(), Relaxed);
        self.stats.reset_take();
        self.active = Some(Active {
            take,
            want_first: None,
            start_at,
            preroll,
            first_frame_time: None,
            first_pos: None,
            cursor: 0,
            started: None,
            gaps: Vec::new(),
            stop: None,
            drain: false,
            next: None,
            last_checkpoint: Instant::now(),
            repeated: 0,
            repeated_before: 0,
            segments: Vec::new(),
            segment_first: None,
            abort: None,
            marks: Vec::new(),
            xruns_at_start: self.xruns.load(Relaxed),
            overflow_at_start: self.stats.overflow_frames.load(Relaxed),
            callback_window: self.callback.as_ref().map(|c| c.callback.open_window()),
        });
        if start_at == StartAt::Next && preroll == 0 {
            // From the next cycle on (the first one ever, if none came yet).
            let next = self.timeline.end();
            if let Some(a) = &mut self.active {
                a.want_first = next;
            }
        } else {
            self.place_start();
        }
    }

    /// Works out where a take asked to start at `start_at` begins (a cycle
    /// boundary, minus the pre-roll), then lets [`Self::advance`] write it.
    pub(super) fn place_start(&mut self) {
        let Some(next_frame) = self.timeline.end() else { return }; // no cycle yet
        let Some(a) = &self.active else { return };
        if a.first_frame_time.is_some() {
            return;
        }
        let start = match a.start_at {
            StartAt::Time(t) => match self.wallclock.position_at(t) {
                Some(p) => p,
                None => return, // JACK's clock not known yet: the next cycle
            },
            StartAt::Frame(f) => self.timeline.boundary(self.timeline.unwrap(f).unwrap_or(next_frame), false),
            StartAt::At(f) => self.timeline.unwrap(f).unwrap_or(next_frame),
            StartAt::Next => self.timeline.boundary(next_frame, false),
        };
        let want = start.saturating_sub(a.preroll);
        if let Some(a) = &mut self.active {
            a.want_first = Some(want);
        }
        self.advance();
    }

    /// Marks the take as started at `first`: bext origin, event.
    /// The wall-clock time of `first` is now minus how far it trails the
    /// newest frame (the disk thread's own lag, a few ms, is not counted).
    pub(super) fn open_take(&mut self, first: u64) -> Result<(), WavError> {
        let rate = self.timeline.rate();
        let jack_first = self.timeline.jack_time(first);
        let a = self.active.as_mut().expect("active");
        if rate != 0 && rate != a.take.spec.sample_rate {
            // The server's rate changed since the take was prepared.
            tracing::warn!(take = %a.take.name, from = a.take.spec.sample_rate, to = rate, "take recorded at JACK's new rate");
            a.take.set_sample_rate(rate)?;
        }
        let back = Duration::from_secs_f64(
            self.history.end.saturating_sub(first) as f64 / a.take.spec.sample_rate.max(1) as f64,
        );
        // Without JACK's clock (tests), the system clock when the frame is
        // taken, minus how far it trails the newest audio.
        let wall = self.wallclock.wall_time(first).unwrap_or_else(|| SystemTime::now() - back);
        // Boundaries placed after it chain with this stamp (see
        // `WallClock::note_placed`).
        self.wallclock.note_placed(first, wall, rate);
        a.first_frame_time = Some(jack_first);
        a.segment_first = Some(jack_first);
        a.cursor = first;
        a.first_pos = Some(first);
        a.started = Some(wall.into());
        a.take.set_origin(jack_first, wall)?;
        for (frame_time, label) in std::mem::take(&mut a.marks) {
            let saved = match frame_time.checked_sub(jack_first) {
                Some(frame) => a.take.add_marker(frame, frame_time, label).map_err(|e| e.to_string()),
                None => Err("before the take's first frame; marker dropped".to_string()),
            };
            super::finish::report_mark(&self.events, frame_time, saved);
        }
        let _ =
            self.events.send(DiskEvent::Started { name: a.take.name.clone(), first_frame_time: jack_first });
        Ok(())
    }
}
