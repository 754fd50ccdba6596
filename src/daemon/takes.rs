//! Takes: the factory that checks and creates a take's files, the take
//! commands (start, stop, rotate, mark) and the disk thread's events, all
//! fed to the recorder (`control::recorder`), whose effects the daemon
//! carries out. Control thread only.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use rosc::OscType;

use super::endpoint::Requester;
use super::{s, Daemon};
use crate::control::osc::{Code, Refusal};
use crate::control::preflight::{self, Limits};
use crate::control::recorder::{Input, TakeRef, CONFIRM};
use crate::control::replies::count;
use crate::control::state::State;
use crate::disk::take::companion::CompanionSpec;
use crate::disk::{DiskEvent, StartAt, StopAt, Take, TakeReport, TakeSpec};
use crate::naming;

/// JACK's 32-bit frame time `now`, unwrapped around `first` (a take's
/// first frame, unwrapped): within 2^31 frames (12 h at 48 kHz) of it.
pub(super) fn unwrap_near(first: u64, now: u32) -> u64 {
    first.wrapping_add(now.wrapping_sub(first as u32) as i32 as i64 as u64)
}

/// A marker the disk thread has not confirmed as saved yet: its requester
/// is answered then.
pub struct UnsavedMark {
    frame_time: u64,
    to: Requester,
    reply: Vec<OscType>,
    since: Instant,
}

impl Daemon {
    /// Every event the disk thread has sent so far.
    pub(super) fn disk_events(&mut self) {
        while let Some(ev) = self.engine.as_ref().and_then(|e| e.next_event(std::time::Duration::ZERO)) {
            self.disk_event(ev);
        }
    }

    pub(super) fn disk_event(&mut self, ev: DiskEvent) {
        match ev {
            DiskEvent::Started { name, first_frame_time } => {
                self.feed(Input::Started { name, first_frame_time });
            }
            DiskEvent::Finished(r) => {
                if let Some(w) = &self.offsite {
                    w.nudge(); // its turn in the off-site queue
                }
                self.note_ended_by(&r);
                self.update_day_session(&r);
                if self.recorder.current().is_some_and(|c| c.name == r.name) {
                    self.level_take = false; // whatever ended it, silence ends no other take
                }
                let jack_gone = self.engine.as_ref().is_some_and(|e| e.jack.shutdown.load(Relaxed));
                self.feed(Input::Finished { report: r, jack_gone });
            }
            DiskEvent::Transport(e) => self.transport_changed(e),
            DiskEvent::Level(e) => self.level_changed(e),
            DiskEvent::Marked { frame_time, saved } => self.marked(frame_time, saved),
        }
    }

    /// The disk thread saved (or dropped) the marker at `frame_time`: its
    /// requester gets the reply now.
    fn marked(&mut self, frame_time: u64, saved: Result<(), String>) {
        let Some(i) = self.unsaved_marks.iter().position(|m| m.frame_time == frame_time) else { return };
        let Some(m) = self.unsaved_marks.remove(i) else { return };
        let answer = saved.map(|()| m.reply).map_err(|e| Refusal::new(Code::Write, e));
        self.osc.answer(&m.to, answer);
    }

    /// Markers the disk thread has not confirmed within [`CONFIRM`] are
    /// answered with code 9: they are not known to be saved.
    pub(super) fn check_marks(&mut self) {
        while self.unsaved_marks.front().is_some_and(|m| m.since.elapsed() >= CONFIRM) {
            let Some(UnsavedMark { to, .. }) = self.unsaved_marks.pop_front() else { return };
            let r = Refusal::new(
                Code::Write,
                "the disk thread did not confirm the marker within 3 s; it is saved only if the take goes on",
            );
            self.osc.answer(&to, Err(r));
        }
    }

    /// Would a take fit on the disk now (directory, space, free fraction)?
    fn preflight(&self, sample_rate: u32) -> Result<(), String> {
        self.preflight_at(&self.args.dir, sample_rate)
    }

    /// [`Self::preflight`] for another directory (a spill directory).
    fn preflight_at(&self, dir: &std::path::Path, sample_rate: u32) -> Result<(), String> {
        let a = &self.args;
        let bps =
            sample_rate as u64 * a.settings.ports as u64 * a.settings.format.sample_format().bytes() as u64;
        let limits = Limits {
            min_minutes: a.settings.min_minutes,
            reserve: 0.2,
            min_free_fraction: a.settings.min_free_fraction,
        };
        preflight::check(dir, bps, &limits)
    }

    /// Where a take starts: the takes' directory if it passes the
    /// preflight, else the first spill directory that does (the take then
    /// spills on to the ones after it). Returns that directory and the
    /// spill directories left; the error is the takes' directory's.
    pub(super) fn start_dir(
        &self,
        sample_rate: u32,
    ) -> Result<(std::path::PathBuf, &[std::path::PathBuf]), String> {
        let a = &self.args;
        let own = match self.preflight(sample_rate) {
            Ok(()) => return Ok((a.dir.clone(), &a.settings.spill)),
            Err(e) => e,
        };
        for (i, s) in a.settings.spill.iter().enumerate() {
            match self.preflight_at(s, sample_rate) {
                Ok(()) => {
                    tracing::warn!(
                        spill = %s.display(),
                        "the takes' directory cannot take a take ({own}); it starts in the spill directory"
                    );
                    return Ok((s.clone(), &a.settings.spill[i + 1..]));
                }
                Err(e) => tracing::warn!("spill directory {}: {e}", s.display()),
            }
        }
        Err(own)
    }

    /// Checks and creates a take's files; nothing is created on refusal.
    fn prepare(&mut self, take_id: Option<String>, file: Option<String>) -> Result<Take, Refusal> {
        // Named and filed by when it starts: a clock rotation's next take
        // by its boundary (it is prepared just before it).
        let when: chrono::DateTime<chrono::Utc> =
            self.next_take_time.take().map_or_else(chrono::Utc::now, Into::into);
        let engine =
            self.engine.as_ref().ok_or_else(|| Refusal::new(Code::JackGone, "JACK is not running"))?;
        if engine.jack.shutdown.load(Relaxed) {
            return Err(Refusal::new(Code::JackGone, "JACK server shut down"));
        }
        let file = match file {
            Some(f) => Some(
                naming::validate_user_name(&f, self.args.settings.format.file_format.ext())
                    .map_err(|e| Refusal::new(Code::File, e.to_string()))?,
            ),
            None => None,
        };
        let (root, spill_roots) =
            self.start_dir(engine.sample_rate).map_err(|e| Refusal::new(Code::Preflight, e))?;
        let a = &self.args;
        let project = a.settings.format.project_name().to_string();
        let sources = engine.connections();
        let sub = match &a.settings.dir_layout {
            None => None,
            Some(p) => {
                let now = when;
                let sub = if a.settings.format.utc {
                    naming::dated_dir(p, &now)
                } else {
                    naming::dated_dir(p, &now.with_timezone(&chrono::Local))
                };
                Some(sub.map_err(|e| Refusal::new(Code::File, e))?)
            }
        };
        let dir = match &sub {
            None => root.clone(),
            Some(sub) => crate::takefiles::make_take_dir(&root, sub)
                .map_err(|e| Refusal::new(Code::File, e.to_string()))?,
        };
        // Each copy (and each spill directory) in the same place below its
        // own directory. One that cannot be made costs the copy (or that
        // spill), not the take.
        let below = |roots: &[std::path::PathBuf], what: &'static str| -> Vec<std::path::PathBuf> {
            roots
                .iter()
                .filter_map(|root| match &sub {
                    None => Some(root.clone()),
                    Some(sub) => crate::takefiles::make_take_dir(root, sub)
                        .inspect_err(|e| tracing::error!(dir = %root.display(), "no {what} there: {e}"))
                        .ok(),
                })
                .collect()
        };
        let mirrors = below(&a.settings.mirror, "copy of the take");
        let spill = below(spill_roots, "spill-over for the take");
        let roots: Vec<std::path::PathBuf> = a.settings.mirror_as.iter().map(|m| m.dir.clone()).collect();
        let made = below(&roots, "copy of the take");
        let companions = a
            .settings
            .mirror_as
            .iter()
            .zip(&roots)
            .filter_map(|(m, root)| {
                // The copy's directory below its own root (or the root).
                let dir = made.iter().find(|d| d.starts_with(root))?.clone();
                let (file_format, layout, format) = m.resolve(&a.settings.format);
                Some(CompanionSpec { dir, layout, file_format, format })
            })
            .collect();
        let spec = TakeSpec {
            dir,
            project,
            file,
            layout: a.settings.format.layout,
            format: a.settings.format.sample_format(),
            sample_rate: engine.sample_rate,
            port_names: engine.port_names.clone(),
            max_frames: None,
            take_id,
            track_names: engine.track_names(&sources),
            sources,
            tape: self.hosting.session.clone().unwrap_or_default(),
            time_reference: a.settings.format.time_reference,
            started_by: self.next_cause.take().unwrap_or_else(|| "command".into()),
            utc: a.settings.format.utc,
            loudness: a.settings.format.loudness.measures(engine.port_names.len()),
            file_format: a.settings.format.file_format,
            mirrors,
            spill,
            companions,
        };
        Take::create(spec, when.with_timezone(&chrono::Local))
            .map_err(|e| Refusal::new(Code::File, e.to_string()))
    }

    /// How the recorder knows a freshly created take.
    fn take_ref(take: &Take, take_id: Option<String>) -> TakeRef {
        TakeRef {
            id: take_id.unwrap_or_else(|| take.name.clone()),
            name: take.name.clone(),
            files: take.paths().iter().map(|p| p.display().to_string()).collect(),
            first_frame_time: None,
            marks: 0,
        }
    }

    /// Writes what ended a take into its (final) manifest, beside its
    /// files (a dated subdirectory with `--dir-layout`).
    /// With `--ardour-session`: the day's Ardour session gets the take, on a
    /// thread of its own (it reads the day's manifests); one at a time.
    fn update_day_session(&self, r: &TakeReport) {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let Some(out) = self.args.settings.ardour_session.clone() else { return };
        let Some(date) = r.started.as_deref().and_then(|s| s.get(..10)).map(str::to_string) else { return };
        let Some(dir) = r.files.first().and_then(|f| f.path.parent()).map(|d| d.to_path_buf()) else {
            return;
        };
        let spawned = std::thread::Builder::new().name("capstan-ardour".into()).spawn(move || {
            let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            match crate::export::day_session(&dir, &date, &out) {
                Ok(file) => {
                    tracing::info!(session = %file.display(), "the day's Ardour session is up to date")
                }
                Err(e) => tracing::warn!("the day's Ardour session was not updated: {e}"),
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("the day's Ardour session was not updated: {e}");
        }
    }

    fn note_ended_by(&mut self, r: &TakeReport) {
        let Some(why) = self.ended_by.take() else { return };
        let dir = r.files.first().and_then(|f| f.path.parent()).unwrap_or(&self.args.dir);
        let path = crate::manifest::Manifest::path(dir, &r.name);
        let note = |path: &std::path::Path, take_id: Option<&str>| {
            let saved = crate::manifest::Manifest::load(path).and_then(|mut m| {
                if take_id.is_some_and(|id| id != m.take_id) {
                    return Ok(None); // not this take's copy: left alone
                }
                m.ended_by = Some(why.clone());
                m.save(path).map(|()| Some(m))
            });
            saved.inspect_err(|e| tracing::warn!("{}: cannot note what ended the take: {e}", path.display()))
        };
        // The take's own manifest, then each copy's (`--mirror`).
        if let Ok(Some(m)) = note(&path, None) {
            for c in m.copies.iter().skip(1) {
                let _ = note(
                    &crate::manifest::Manifest::path(std::path::Path::new(&c.dir), &r.name),
                    Some(&m.take_id),
                );
            }
        }
    }

    /// `--rotate-every`: shortly before a clock boundary, hands the disk
    /// thread the next take and the boundary's exact JACK frame (JACK's own
    /// time-to-frames mapping), where it cuts, inside its cycle if need be:
    /// no frame lost or repeated between the files.
    pub(super) fn rotate_on_clock(&mut self) {
        let Some(every) = self.args.settings.rotate_every.as_deref() else { return };
        let Ok(every) = crate::control::clock::parse_duration(every) else { return };
        if self.recorder.state() != State::Recording || self.recorder.waiting() {
            return;
        }
        let Some(first) = self.recorder.current().and_then(|c| c.first_frame_time) else { return };
        let now = SystemTime::now();
        let boundary = crate::control::clock::next_boundary(now, every, self.args.settings.format.utc);
        if boundary.duration_since(now).unwrap_or_default() > super::timed::LEAD
            || self.clock_boundary == Some(boundary)
        {
            return;
        }
        let Some(engine) = self.engine.as_ref() else { return };
        let at = engine.frame_at(boundary);
        // A take that began after the boundary's frame (it started within
        // the lead time) has nothing to cut.
        if (at.wrapping_sub(first as u32) as i32) <= 0 {
            return;
        }
        self.clock_boundary = Some(boundary);
        let when = chrono::DateTime::<chrono::Local>::from(boundary).to_rfc3339();
        tracing::info!(frame_time = at, "clock rotation at {when}");
        self.next_cause = Some(format!("clock boundary {when} (--rotate-every)"));
        self.next_take_time = Some(boundary);
        self.ended_by = Some(format!("clock boundary {when} (--rotate-every)"));
        if let Err(r) = self.rotate(None, None, None, Some(StopAt::Time(boundary))) {
            self.trigger_failed("clock rotation", r);
        }
    }

    /// `/record/mark [label]`: a marker in the running take at the frame
    /// JACK is at now, or at the frame of `when` (a bundle's timetag, which
    /// may lie in the past or the future). Answered at once with the JACK
    /// frame time and the frame offset in the take.
    pub(super) fn mark(
        &mut self,
        to: &Requester,
        label: Option<String>,
        when: Option<SystemTime>,
    ) -> Result<(), Refusal> {
        let target = self.recorder.mark_target()?;
        let Some(engine) = self.engine.as_ref() else {
            return Err(Refusal::new(Code::NotRecording, "no take is running"));
        };
        // While a rotation is under way (0.7 s before each clock boundary)
        // the next take has no first frame yet, and the take it ends is
        // still recording: the marker is placed by its frame (the disk
        // thread puts one past the cut into the next take), and the reply
        // names the take being ended.
        let (id, first) = (target.id, target.first_frame_time);
        let now = match when {
            Some(t) => engine.frame_at(t),
            None => engine.frame_time(),
        };
        // Unwrap JACK's 32-bit frame time around the take's first frame.
        let frame_time = unwrap_near(first, now);
        if frame_time < first || frame_time > first + (1 << 40) {
            return Err(Refusal::new(Code::BadArgs, "that time is before the take's first frame"));
        }
        let label = crate::wav::cue::clip(&label.unwrap_or_else(|| format!("M{}", target.marks + 1)));
        self.recorder.marked();
        engine.mark(frame_time, label.clone());
        tracing::info!(take = %id, frame_time, frame = frame_time - first, "marker {label:?}");
        let reply = vec![s(id), count(frame_time), count(frame_time - first), s(label)];
        self.unsaved_marks.push_back(UnsavedMark {
            frame_time,
            to: to.clone(),
            reply,
            since: Instant::now(),
        });
        Ok(())
    }

    /// `/record/start`: answered when the take's first frame is written.
    /// `at`: where the take begins (default: the next cycle boundary).
    pub(super) fn start(
        &mut self,
        to: Option<Requester>,
        take_id: Option<String>,
        file: Option<String>,
        at: Option<StartAt>,
    ) -> Result<Option<Vec<OscType>>, Refusal> {
        self.recorder.may_start()?;
        let take = self.prepare(take_id.clone(), file)?;
        let info = Self::take_ref(&take, take_id);
        self.lost_reported = 0;
        let engine = self.engine.as_ref().expect("prepared");
        let at = at.unwrap_or(StartAt::Frame(engine.frame_time()));
        self.feed_command(Input::Start { to, take: info, order: take, at })?;
        Ok(None)
    }

    /// `/record/stop`: answered when the take's files are final.
    /// `at`: where the take ends (default: with the current cycle).
    pub(super) fn stop(
        &mut self,
        to: Option<Requester>,
        take_id: Option<String>,
        at: Option<StopAt>,
    ) -> Result<Option<Vec<OscType>>, Refusal> {
        let at = at.unwrap_or_else(|| self.engine.as_ref().map_or(StopAt::Drained, |e| e.stop_now()));
        self.feed_command(Input::Stop { to, take_id, at })?;
        self.ended_by.get_or_insert_with(|| "command".into());
        Ok(None)
    }

    /// `/record/rotate`: the running take ends with the current cycle and
    /// the next begins at the very next frame; answered when both are so.
    pub(super) fn rotate(
        &mut self,
        to: Option<Requester>,
        take_id: Option<String>,
        file: Option<String>,
        at: Option<StopAt>,
    ) -> Result<Option<Vec<OscType>>, Refusal> {
        if self.recorder.may_rotate()? {
            return self.start(to, take_id, file, at.map(StartAt::after));
        }
        let next = self.prepare(take_id.clone(), file)?;
        let info = Self::take_ref(&next, take_id);
        let engine = self.engine.as_ref().expect("recording");
        let at = at.unwrap_or_else(|| engine.stop_now());
        self.feed_command(Input::Rotate { to, next: info, order: next, at })?;
        self.ended_by.get_or_insert_with(|| "command".into());
        Ok(None)
    }
}
