//! Takes: the factory that checks and creates a take's files, and the take
//! operations (start, stop, rotate, abort). An operation sends its request
//! to the disk thread and waits, without blocking the control loop, for the
//! disk thread's events: `Started` when a take's first frame is written,
//! `Finished` when its files are final. Control thread only.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use rosc::OscType;

use super::endpoint::Requester;
use super::{s, Current, Daemon, CONFIRM};
use crate::control::osc::{self, Code, Refusal};
use crate::control::preflight::{self, Limits};
use crate::control::replies::count;
use crate::control::state::State;
use crate::disk::{DiskEvent, StartAt, StopAt, Take, TakeReport, TakeSpec};
use crate::naming;

/// Markers one take can hold (each one is a manifest update).
const MAX_MARKS: usize = 10_000;

/// A request the disk thread has not answered yet.
pub enum Operation {
    /// A take was started; done at its `Started` (first frame written).
    Start { to: Option<Requester> },
    /// The running take was asked to stop; done at its `Finished`.
    Stop { to: Option<Requester>, drained: bool },
    /// The running take ends where the next begins; done when the old take
    /// is `Finished` and the new one `Started` (in either order).
    Rotate {
        to: Option<Requester>,
        old: Current,
        old_report: Option<Box<TakeReport>>,
        new_first: Option<u64>,
    },
    /// JACK is gone: the take ends with what arrived.
    Abort,
    /// After a failure, a take the disk thread may still run is ended.
    Drain,
}

/// A marker the disk thread has not confirmed as saved yet: its requester
/// is answered then.
pub struct UnsavedMark {
    frame_time: u64,
    to: Requester,
    reply: Vec<OscType>,
    since: Instant,
}

pub struct Pending {
    op: Operation,
    since: Instant,
}

impl Pending {
    pub fn is_abort(&self) -> bool {
        matches!(self.op, Operation::Abort)
    }
}

impl Operation {
    /// What the disk thread was to confirm (for the failure's sentence).
    fn what(&self) -> &'static str {
        match self {
            Operation::Start { .. } => "start",
            Operation::Stop { .. } => "stop",
            Operation::Rotate { .. } => "rotation",
            Operation::Abort | Operation::Drain => "end of the take",
        }
    }

    /// Who waits for the answer, if anyone.
    fn requester(self) -> Option<Requester> {
        match self {
            Operation::Start { to } | Operation::Stop { to, .. } | Operation::Rotate { to, .. } => to,
            Operation::Abort | Operation::Drain => None,
        }
    }
}

impl Daemon {
    pub(super) fn begin(&mut self, op: Operation) {
        self.op = Some(Pending { op, since: Instant::now() });
    }

    /// The operation is over: commands that waited for it run now, in order.
    fn end_op(&mut self) {
        self.op = None;
        while self.op.is_none() {
            let Some((to, cmd)) = self.queued.pop_front() else { break };
            self.run_command(to, cmd);
        }
    }

    /// Answers the pending operation's requester with `refusal` and drops it.
    pub(super) fn abandon_pending(&mut self, code: Code, text: &str) {
        if let Some(to) = self.op.take().and_then(|p| p.op.requester()) {
            self.osc.answer(&to, Err(Refusal::new(code, text)));
        }
    }

    /// Every event the disk thread has sent so far.
    pub(super) fn disk_events(&mut self) {
        while let Some(ev) = self.engine.as_ref().and_then(|e| e.next_event(std::time::Duration::ZERO)) {
            self.disk_event(ev);
        }
    }

    /// Deadlines of the pending operation: a stop that JACK's stall keeps
    /// from its frame takes what is there; no answer at all is a failure.
    pub(super) fn check_pending(&mut self) {
        let Some(p) = &mut self.op else { return };
        let age = p.since.elapsed();
        if let Operation::Stop { drained: drained @ false, .. } = &mut p.op {
            if age >= CONFIRM / 2 {
                *drained = true; // JACK stalled: take what is there
                if let Some(e) = &self.engine {
                    e.stop_take(StopAt::Drained);
                }
            }
        }
        if age < CONFIRM {
            return;
        }
        let op = self.op.take().expect("checked").op;
        let text = format!("the disk thread did not confirm the {}", op.what());
        if matches!(op, Operation::Abort | Operation::Drain) {
            tracing::error!("{text}");
            return self.end_op();
        }
        if let Some(to) = op.requester() {
            self.osc.answer(&to, Err(Refusal::new(Code::Write, text.clone())));
        }
        self.fail(Code::Write, text);
        self.drain_after_failure();
    }

    /// After a failure while a take may still run in the disk thread: end
    /// it with what arrived.
    fn drain_after_failure(&mut self) {
        if let Some(e) = &self.engine {
            e.stop_take(StopAt::Drained);
            self.begin(Operation::Drain);
        } else {
            self.end_op();
        }
    }

    pub(super) fn disk_event(&mut self, ev: DiskEvent) {
        match ev {
            DiskEvent::Started { name, first_frame_time } => self.started(&name, first_frame_time),
            DiskEvent::Finished(r) => self.take_finished(r),
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

    fn started(&mut self, name: &str, first: u64) {
        let Some(c) = self.current.as_mut().filter(|c| c.name == name) else {
            return tracing::debug!("disk thread started {name}, which is not the current take");
        };
        c.first_frame_time = Some(first);
        tracing::info!(take = %c.id, first_frame_time = first, "recording {}", c.files.join(", "));
        let Some(p) = self.op.as_mut() else { return };
        match &mut p.op {
            Operation::Start { .. } => {
                let Some(Pending { op: Operation::Start { to }, .. }) = self.op.take() else {
                    unreachable!()
                };
                let _ = self.state.transition(State::Starting, State::Recording);
                self.push_state();
                let c = self.current.as_ref().expect("current");
                let reply = vec![s(c.id.clone()), count(first), s(osc::files_text(&c.files))];
                if let Some(to) = to {
                    self.osc.answer(&to, Ok(reply));
                }
                self.end_op();
            }
            Operation::Rotate { new_first, .. } => {
                *new_first = Some(first);
                self.rotation_done();
            }
            _ => {}
        }
    }

    fn take_finished(&mut self, r: TakeReport) {
        self.note_ended_by(&r);
        let is_current = self.current.as_ref().is_some_and(|c| c.name == r.name);
        if is_current {
            self.level_take = false; // whatever ended it, silence ends no other take
        }
        if let Some(Pending { op: Operation::Rotate { old, old_report, .. }, .. }) = &mut self.op {
            if old.name == r.name {
                *old_report = Some(Box::new(r));
                return self.rotation_done();
            }
        }
        let files: Vec<String> = r.files.iter().map(|f| f.path.display().to_string()).collect();
        let id = match &self.current {
            Some(c) if is_current => c.id.clone(),
            _ => r.name.clone(),
        };
        let (frames, secs, error) = (r.frames, r.seconds(), r.error.clone());
        let text = osc::files_text(&files);
        self.last_files = Some((id.clone(), files));
        self.finished(r, is_current);
        let reply = match &error {
            None => Ok(vec![s(id), count(frames), OscType::Double(secs), s(text)]),
            Some(e) => Err(Refusal::new(self.error.as_ref().map_or(Code::Write, |e| e.0), e.clone())),
        };
        let Some(p) = self.op.take() else { return };
        match p.op {
            Operation::Stop { to, .. } => {
                if let Some(to) = to {
                    self.osc.answer(&to, reply);
                }
            }
            // Ended before it started (an error at its first frame), or a
            // rotated-in take that failed: the operation failed.
            Operation::Start { to } | Operation::Rotate { to, .. } => {
                if let Some(to) = to {
                    let r = reply.and(Err(Refusal::new(Code::Write, "the take ended before it started")));
                    self.osc.answer(&to, r);
                }
            }
            Operation::Abort | Operation::Drain => {}
        }
        self.end_op();
    }

    /// Answers a rotation once the old take is final and the new one runs,
    /// or at once if the old one failed.
    fn rotation_done(&mut self) {
        let Some(Pending { op: Operation::Rotate { old_report: Some(old), new_first, .. }, .. }) = &self.op
        else {
            return;
        };
        // A failed old take still continues in the new one if that began.
        if new_first.is_none() && (old.error.is_none() || old.rotated_into.is_some()) {
            return;
        }
        let Some(Pending { op: Operation::Rotate { to, old, old_report, new_first }, .. }) = self.op.take()
        else {
            unreachable!()
        };
        let report = *old_report.expect("checked");
        let files: Vec<String> = report.files.iter().map(|f| f.path.display().to_string()).collect();
        self.last_files = Some((old.id.clone(), files));
        let (old_frames, error) = (report.frames, report.error.clone());
        let new_running = new_first.is_some();
        self.finished(report, !new_running);
        let reply = match (error, new_first) {
            (None, Some(first)) => {
                self.push_state();
                let c = self.current.as_ref().expect("rotated in");
                Ok(vec![
                    s(old.id),
                    count(old_frames),
                    s(c.id.clone()),
                    count(first),
                    s(osc::files_text(&c.files)),
                ])
            }
            (Some(e), _) => Err(Refusal::new(Code::Write, e)),
            (None, None) => unreachable!("checked above"),
        };
        if let Some(to) = to {
            self.osc.answer(&to, reply);
        }
        if self.state.get() == State::Error && !new_running {
            // The new take may still begin in the disk thread: end it.
            return self.drain_after_failure();
        }
        self.end_op();
    }

    /// A take ended (by stop, rotation, error or JACK's death). `current`:
    /// it was the running take (its end moves the state machine); else it
    /// is one rotated out, whose failure is reported but ends nothing.
    fn finished(&mut self, r: TakeReport, current: bool) {
        let gone = self.engine.as_ref().is_some_and(|e| e.jack.shutdown.load(Relaxed));
        if !current {
            if let Some(e) = &r.error {
                let text = format!("take {} ended: {e}; {} frames saved", r.name, r.frames);
                tracing::error!("{text}");
                self.push_error(&r.name, Code::Write, &text);
                self.notice(3, text);
            }
        } else if gone {
            self.fail(
                Code::JackGone,
                format!("JACK server shut down; take {} saved ({} frames)", r.name, r.frames),
            );
        } else if let Some(e) = &r.error {
            let code =
                if r.error_kind.as_deref() == Some("StorageFull") { Code::DiskFull } else { Code::Write };
            self.fail(code, format!("take {} ended: {e}; {} frames saved", r.name, r.frames));
        } else if self.state.get() == State::Stopping {
            let _ = self.state.transition(State::Stopping, State::Idle);
            self.current = None;
            self.push_state();
        }
        if r.segments.len() > 1 {
            let rates: Vec<String> = r.segments.iter().map(|s| s.sample_rate.to_string()).collect();
            self.notice(
                2,
                format!(
                    "take {}: JACK's rate changed during the take; it is in {} segments ({} Hz)",
                    r.name,
                    r.segments.len(),
                    rates.join(" → ")
                ),
            );
        }
        let lost: u64 = r.gaps.iter().map(|g| g.frames).sum();
        if lost > 0 {
            self.notice(
                2,
                format!("take {}: {lost} frames lost in {} gaps (filled with silence)", r.name, r.gaps.len()),
            );
        }
        tracing::info!(take = %r.name, frames = r.frames, "take finished");
    }

    /// Would a take fit on the disk now (directory, space, free fraction)?
    pub(super) fn preflight(&self, sample_rate: u32) -> Result<(), String> {
        let a = &self.args;
        let bps =
            sample_rate as u64 * a.settings.ports as u64 * a.settings.format.sample_format().bytes() as u64;
        let limits = Limits {
            min_minutes: a.settings.min_minutes,
            reserve: 0.2,
            min_free_fraction: a.settings.min_free_fraction,
        };
        preflight::check(&a.dir, bps, &limits)
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
        self.preflight(engine.sample_rate).map_err(|e| Refusal::new(Code::Preflight, e))?;
        let a = &self.args;
        let project = a.settings.format.project_name().to_string();
        let sources = engine.connections();
        let dir = match &a.settings.dir_layout {
            None => a.dir.clone(),
            Some(p) => {
                let now = when;
                let sub = if a.settings.format.utc {
                    naming::dated_dir(p, &now)
                } else {
                    naming::dated_dir(p, &now.with_timezone(&chrono::Local))
                };
                let sub = sub.map_err(|e| Refusal::new(Code::File, e))?;
                crate::takefiles::make_take_dir(&a.dir, &sub)
                    .map_err(|e| Refusal::new(Code::File, e.to_string()))?
            }
        };
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
        };
        Take::create(spec, when.with_timezone(&chrono::Local))
            .map_err(|e| Refusal::new(Code::File, e.to_string()))
    }

    /// A new current take from a freshly created one.
    fn current_for(take: &Take, take_id: Option<String>) -> Current {
        Current {
            id: take_id.unwrap_or_else(|| take.name.clone()),
            name: take.name.clone(),
            files: take.paths().iter().map(|p| p.display().to_string()).collect(),
            first_frame_time: None,
            marks: 0,
        }
    }

    /// Writes what ended a take into its (final) manifest, beside its
    /// files (a dated subdirectory with `--dir-layout`).
    fn note_ended_by(&mut self, r: &TakeReport) {
        let Some(why) = self.ended_by.take() else { return };
        let dir = r.files.first().and_then(|f| f.path.parent()).unwrap_or(&self.args.dir);
        let path = crate::manifest::Manifest::path(dir, &r.name);
        let saved = crate::manifest::Manifest::load(&path).and_then(|mut m| {
            m.ended_by = Some(why);
            m.save(&path)
        });
        if let Err(e) = saved {
            tracing::warn!("{}: cannot note what ended the take: {e}", path.display());
        }
    }

    /// `--rotate-every`: shortly before a clock boundary, hands the disk
    /// thread the next take and the boundary's exact JACK frame (JACK's own
    /// time-to-frames mapping), where it cuts, inside its cycle if need be:
    /// no frame lost or repeated between the files.
    pub(super) fn rotate_on_clock(&mut self) {
        let Some(every) = self.args.settings.rotate_every.as_deref() else { return };
        let Ok(every) = crate::control::clock::parse_duration(every) else { return };
        if self.state.get() != State::Recording || self.op.is_some() {
            return;
        }
        let Some(first) = self.current.as_ref().and_then(|c| c.first_frame_time) else { return };
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
        let (Some(engine), Some(c)) = (self.engine.as_ref(), self.current.as_mut()) else {
            return Err(Refusal::new(Code::NotRecording, "no take is running"));
        };
        // While a rotation is under way (0.7 s before each clock boundary)
        // the next take has no first frame yet, and the take it ends is
        // still recording: the marker is placed by its frame (the disk
        // thread puts one past the cut into the next take), and the reply
        // names the take being ended.
        let rotating = match &self.op {
            Some(Pending { op: Operation::Rotate { old, old_report: None, .. }, .. }) => Some(old),
            _ => None,
        };
        let (id, first) = match (self.state.get(), c.first_frame_time, rotating) {
            (State::Recording, Some(first), _) => (c.id.clone(), first),
            (State::Recording, None, Some(Current { id, first_frame_time: Some(first), .. })) => {
                (id.clone(), *first)
            }
            (State::Starting, _, _) => {
                return Err(Refusal::new(Code::NotRecording, "the take has not started yet"))
            }
            _ => return Err(Refusal::new(Code::NotRecording, "no take is recording")),
        };
        if c.marks >= MAX_MARKS {
            return Err(Refusal::new(Code::Full, format!("{MAX_MARKS} markers in this take already")));
        }
        let now = match when {
            Some(t) => engine.frame_at(t),
            None => engine.frame_time(),
        };
        // Unwrap JACK's 32-bit frame time around the take's first frame.
        let frame_time = first.wrapping_add(now.wrapping_sub(first as u32) as i32 as i64 as u64);
        if frame_time < first || frame_time > first + (1 << 40) {
            return Err(Refusal::new(Code::BadArgs, "that time is before the take's first frame"));
        }
        let label = crate::wav::cue::clip(&label.unwrap_or_else(|| format!("M{}", c.marks + 1)));
        c.marks += 1;
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
        self.state.transition(State::Idle, State::Starting).map_err(|_| self.busy())?;
        let take = match self.prepare(take_id.clone(), file) {
            Ok(t) => t,
            Err(r) => {
                let _ = self.state.transition(State::Starting, State::Idle);
                return Err(r);
            }
        };
        self.current = Some(Self::current_for(&take, take_id));
        self.lost_reported = 0;
        let engine = self.engine.as_ref().expect("prepared");
        let preroll = (self.args.settings.effective_preroll() * engine.sample_rate as f64) as u64;
        engine.start_take(take, at.unwrap_or(StartAt::Frame(engine.frame_time())), preroll);
        self.push_state();
        self.begin(Operation::Start { to });
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
        let state = self.state.get();
        if state != State::Recording {
            return Err(match state {
                State::Idle => Refusal::new(Code::NotRecording, "no take is running"),
                _ => self.busy(),
            });
        }
        let current = self.current.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        if let Some(id) = take_id.filter(|id| *id != current) {
            return Err(Refusal::new(
                Code::NotRecording,
                format!("no take {id}; the running take is {current}"),
            ));
        }
        self.state.transition(State::Recording, State::Stopping).map_err(|_| self.busy())?;
        self.ended_by.get_or_insert_with(|| "command".into());
        self.push_state();
        let engine = self.engine.as_ref().expect("recording");
        engine.stop_take(at.unwrap_or(StopAt::Frame(engine.frame_time())));
        self.begin(Operation::Stop { to, drained: false });
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
        if self.state.get() == State::Idle {
            return self.start(to, take_id, file, at.map(StartAt::after));
        }
        if self.state.get() != State::Recording {
            return Err(self.busy());
        }
        let next = self.prepare(take_id.clone(), file)?;
        self.ended_by.get_or_insert_with(|| "command".into());
        let new = Self::current_for(&next, take_id);
        let old = self.current.replace(new).expect("recording has a take");
        let engine = self.engine.as_ref().expect("recording");
        engine.rotate_take(next, at.unwrap_or(StopAt::Frame(engine.frame_time())));
        self.begin(Operation::Rotate { to, old, old_report: None, new_first: None });
        Ok(None)
    }
}
