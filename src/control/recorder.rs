//! The recorder: the five states and what moves them, as a pure machine.
//!
//! [`Recorder::on`] takes one [`Input`] (a command, an event of the disk
//! thread, JACK's death or return, a tick) and returns the [`Effect`]s the
//! shell (`daemon/`) carries out: orders to the disk thread, answers,
//! pushes, notices. It does no I/O and reads no clock (the time comes with
//! each call), so every transition is unit-tested here, including those
//! that only a stalled disk thread or a dying JACK server reach.
//!
//! Each state holds only what it has: a take while one runs, the operation
//! the disk thread owes an answer for, and in ERROR why. Invalid
//! combinations (IDLE with a running take, a rotation while stopping) are
//! not representable. The edges are those of [`super::state::EDGES`].
//!
//! Generic over `R`, who is answered (an OSC requester in the daemon), and
//! `T`, the take handed to the disk thread (a `disk::Take`): the machine
//! only passes them through.

use std::time::{Duration, Instant};

use rosc::OscType;

use super::osc::{files_text, Code, Refusal};
use super::replies::count;
use super::state::{is_legal, State};
use crate::disk::{StartAt, StopAt, TakeReport};

/// Longest wait for the disk thread to confirm a start, stop or end; a
/// stop that JACK's stall keeps from its frame takes what is there after
/// half of it.
pub const CONFIRM: Duration = Duration::from_secs(3);

/// A stop whose frames JACK has delivered but the disk has not yet
/// written is answered this long after it came, with the length the take
/// will have: a disk that is behind never holds the answer (the files are
/// final later, at the `/recording/state` push of IDLE).
pub const STOP_ANSWER: Duration = Duration::from_millis(700);

/// Markers one take can hold (each one is a manifest update).
pub const MAX_MARKS: usize = 10_000;

/// A take as the control side knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeRef {
    /// The id clients know it by (theirs, or the take's name).
    pub id: String,
    /// The take's name (its files' stem), as the disk thread reports it.
    pub name: String,
    pub files: Vec<String>,
    /// Set when the disk thread has written its first frame.
    pub first_frame_time: Option<u64>,
    /// Markers set in it.
    pub marks: usize,
}

/// What moves the recorder.
#[derive(Debug)]
pub enum Input<R, T> {
    /// Start `take` (already created) at `at`. Ask [`Recorder::may_start`]
    /// before creating it.
    Start { to: Option<R>, take: TakeRef, order: T, at: StartAt },
    /// End the running take at `at`; `take_id`, if given, must name it.
    Stop { to: Option<R>, take_id: Option<String>, at: StopAt },
    /// End the running take at `at` and continue in `next` from the very
    /// next frame. Ask [`Recorder::may_rotate`] before creating `next`.
    Rotate { to: Option<R>, next: TakeRef, order: T, at: StopAt },
    /// `/record/reset`: leave ERROR (only while JACK runs).
    Reset { to: R, jack_running: bool },
    /// The disk thread wrote take `name`'s first frame.
    Started { name: String, first_frame_time: u64 },
    /// The disk thread finalized a take; `jack_gone`: JACK had shut down.
    Finished { report: Box<TakeReport>, jack_gone: bool },
    /// JACK shut down, or the process callback stopped running (`what`).
    JackGone { what: &'static str },
    /// A JACK client is open again.
    JackBack,
    /// A take would fit on the disk again.
    SpaceBack,
    /// Something outside the take failed (re-creating the JACK client).
    Fail { code: Code, text: String },
    /// How far the disk thread has written the running take (`written`
    /// frames, at `rate`), and the JACK frame time up to which the callback
    /// has captured audio (the end of the newest cycle).
    Progress { written: u64, rate: u32, captured_to: u32 },
    /// Time passes: the deadlines of what the disk thread owes.
    Tick,
}

/// What the shell does, in this order.
#[derive(Debug, PartialEq)]
pub enum Effect<R, T> {
    /// Answer a requester (`None`: nobody asked, a trigger or the clock).
    Answer(Option<R>, Result<Vec<OscType>, Refusal>),
    /// `/recording/state` to the subscribers.
    PushState {
        take: String,
        state: State,
        first_frame_time: u64,
    },
    /// `/recording/error` to the subscribers.
    PushError {
        take: String,
        code: Code,
        text: String,
    },
    /// For the session manager's window: priority 0-3, 3 most important.
    Notice(i32, String),
    /// Orders for the disk thread.
    StartTake(T, StartAt),
    StopTake(StopAt),
    RotateTake(T, StopAt),
    AbortTake(String),
    /// Close the JACK client (it is gone); feed back its last events.
    CloseEngine,
}

/// A rotation under way: done when the old take is final and the new one
/// has its first frame (in either order), or at once if the old failed.
#[derive(Debug)]
struct Rotation<R> {
    to: Option<R>,
    old: TakeRef,
    old_report: Option<Box<TakeReport>>,
    new_first: Option<u64>,
}

#[derive(Debug)]
enum StartWait<R> {
    /// Done at the take's `Started`.
    Start { to: Option<R> },
    /// JACK is gone: the take ends with what arrived.
    Abort,
}

#[derive(Debug)]
enum RecordWait<R> {
    Rotate(Rotation<R>),
    Abort,
}

#[derive(Debug)]
enum StopWait<R> {
    /// Done at the take's `Finished`; `drained`: JACK stalled, so the disk
    /// thread was told to take what is there. `end`: the JACK frame time the
    /// take ends just before, where it is known; `progress`: the latest
    /// [`Input::Progress`] (written, rate, captured_to).
    Stop {
        to: Option<R>,
        drained: bool,
        end: Option<u32>,
        progress: Option<(u64, u32, u32)>,
    },
    /// Answered (the disk is behind): the take ends at `frames` once the
    /// disk has written them. `written` frames so far, the last more of
    /// them at `since`.
    Writing {
        frames: u64,
        written: u64,
        since: Instant,
    },
    Abort,
}

#[derive(Debug)]
enum Phase<R> {
    Idle,
    Starting {
        take: TakeRef,
        wait: StartWait<R>,
        since: Instant,
    },
    Recording {
        take: TakeRef,
        wait: Option<(RecordWait<R>, Instant)>,
    },
    Stopping {
        take: TakeRef,
        wait: StopWait<R>,
        since: Instant,
    },
    /// `take`: the one that was running (its id in pushes); `draining`:
    /// since when the disk thread is ending a take that may still run.
    Error {
        code: Code,
        text: String,
        take: Option<TakeRef>,
        draining: Option<Instant>,
    },
}

impl<R> Phase<R> {
    fn state(&self) -> State {
        match self {
            Phase::Idle => State::Idle,
            Phase::Starting { .. } => State::Starting,
            Phase::Recording { .. } => State::Recording,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Error { .. } => State::Error,
        }
    }

    fn take(&self) -> Option<&TakeRef> {
        match self {
            Phase::Idle => None,
            Phase::Starting { take, .. } | Phase::Recording { take, .. } | Phase::Stopping { take, .. } => {
                Some(take)
            }
            Phase::Error { take, .. } => take.as_ref(),
        }
    }

    fn take_mut(&mut self) -> Option<&mut TakeRef> {
        match self {
            Phase::Idle => None,
            Phase::Starting { take, .. } | Phase::Recording { take, .. } | Phase::Stopping { take, .. } => {
                Some(take)
            }
            Phase::Error { take, .. } => take.as_mut(),
        }
    }

    fn into_take(self) -> Option<TakeRef> {
        match self {
            Phase::Idle => None,
            Phase::Starting { take, .. } | Phase::Recording { take, .. } | Phase::Stopping { take, .. } => {
                Some(take)
            }
            Phase::Error { take, .. } => take,
        }
    }
}

/// Where a marker goes: the take that records now (during a rotation, the
/// one being ended until the next has its first frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkTarget {
    pub id: String,
    pub first_frame_time: u64,
    /// Markers already set in the running take.
    pub marks: usize,
}

/// The recorder's state and the last finished take's files.
#[derive(Debug)]
pub struct Recorder<R> {
    phase: Phase<R>,
    last_files: Option<(String, Vec<String>)>,
}

impl<R> Default for Recorder<R> {
    fn default() -> Self {
        Recorder { phase: Phase::Idle, last_files: None }
    }
}

fn s(v: impl Into<String>) -> OscType {
    OscType::String(v.into())
}

type Effects<R, T> = Vec<Effect<R, T>>;

impl<R: Clone> Recorder<R> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts in ERROR (JACK is not running yet).
    pub fn failed(code: Code, text: String) -> Self {
        Recorder { phase: Phase::Error { code, text, take: None, draining: None }, last_files: None }
    }
}

impl<R: Clone> Recorder<R> {
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// The take that runs (or ran, in ERROR).
    pub fn current(&self) -> Option<&TakeRef> {
        self.phase.take()
    }

    /// The disk thread owes an answer: commands that change the recorder
    /// wait for it, triggers and timed commands too.
    pub fn waiting(&self) -> bool {
        match &self.phase {
            Phase::Idle => false,
            // Answered: commands are refused while the disk catches up.
            Phase::Stopping { wait: StopWait::Writing { .. }, .. } => false,
            Phase::Starting { .. } | Phase::Stopping { .. } => true,
            Phase::Recording { wait, .. } => wait.is_some(),
            Phase::Error { draining, .. } => draining.is_some(),
        }
    }

    /// The disk thread is ending the take because JACK is gone.
    pub fn aborting(&self) -> bool {
        matches!(
            &self.phase,
            Phase::Starting { wait: StartWait::Abort, .. }
                | Phase::Recording { wait: Some((RecordWait::Abort, _)), .. }
                | Phase::Stopping { wait: StopWait::Abort, .. }
        )
    }

    /// Why the recorder is in ERROR.
    pub fn error(&self) -> Option<(Code, &str)> {
        match &self.phase {
            Phase::Error { code, text, .. } => Some((*code, text)),
            _ => None,
        }
    }

    /// The running (or else the last finished) take's id and files.
    pub fn files(&self) -> Option<(&str, &[String])> {
        match (self.current(), &self.last_files) {
            (Some(c), _) => Some((&c.id, &c.files)),
            (None, Some((id, files))) => Some((id, files)),
            (None, None) => None,
        }
    }

    /// Whether a start may be prepared now (its files created).
    pub fn may_start(&self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Idle => Ok(()),
            _ => Err(self.busy()),
        }
    }

    /// Whether a rotation may be prepared now; `Ok(true)`: the recorder is
    /// idle, and a rotation is a start.
    pub fn may_rotate(&self) -> Result<bool, Refusal> {
        match self.phase {
            Phase::Idle => Ok(true),
            Phase::Recording { wait: None, .. } => Ok(false),
            _ => Err(self.busy()),
        }
    }

    /// Where a marker set now goes.
    pub fn mark_target(&self) -> Result<MarkTarget, Refusal> {
        let not = |m: &str| Err(Refusal::new(Code::NotRecording, m));
        let (take, rotating) = match &self.phase {
            Phase::Recording { take, wait } => {
                let old = match wait {
                    Some((RecordWait::Rotate(Rotation { old, old_report: None, .. }), _)) => Some(old),
                    _ => None,
                };
                (take, old)
            }
            Phase::Starting { .. } => return not("the take has not started yet"),
            Phase::Stopping { .. } => return not("no take is recording"),
            Phase::Idle | Phase::Error { .. } => return not("no take is running"),
        };
        let (id, first) = match (take.first_frame_time, rotating) {
            (Some(first), _) => (take.id.clone(), first),
            (None, Some(TakeRef { id, first_frame_time: Some(first), .. })) => (id.clone(), *first),
            _ => return not("no take is recording"),
        };
        if take.marks >= MAX_MARKS {
            return Err(Refusal::new(Code::Full, format!("{MAX_MARKS} markers in this take already")));
        }
        Ok(MarkTarget { id, first_frame_time: first, marks: take.marks })
    }

    /// A marker was set in the running take.
    pub fn marked(&mut self) {
        if let Some(t) = self.phase.take_mut() {
            t.marks += 1;
        }
    }

    /// The refusal for a command that the state does not allow.
    pub fn busy(&self) -> Refusal {
        match (&self.phase, self.current()) {
            (Phase::Error { code: Code::JackGone, .. }, _) => Refusal::new(
                Code::ErrorState,
                "recorder is in ERROR: JACK is not running; capstan returns to idle by itself once it is",
            ),
            (Phase::Error { text, .. }, _) => {
                Refusal::new(Code::ErrorState, format!("recorder is in ERROR ({text}); send /record/reset"))
            }
            (Phase::Stopping { wait: StopWait::Writing { frames, written, .. }, .. }, Some(c)) => {
                Refusal::new(
                    Code::Busy,
                    format!(
                        "take {} is stopping: the disk is writing it ({written} of {frames} frames written)",
                        c.id
                    ),
                )
            }
            (p, Some(c)) => Refusal::new(Code::Busy, format!("take {} is already {}", c.id, p.state())),
            (p, None) => Refusal::new(Code::Busy, format!("recorder is {}", p.state())),
        }
    }

    /// One input: the recorder moves and says what to do. A command it
    /// refuses changes nothing and comes back as `Err`; events are never
    /// refused.
    pub fn on<T>(&mut self, input: Input<R, T>, now: Instant) -> Result<Effects<R, T>, Refusal> {
        let mut fx = Vec::new();
        match input {
            Input::Start { to, take, order, at } => {
                self.may_start()?;
                self.enter(State::Idle, Phase::Starting { take, wait: StartWait::Start { to }, since: now });
                fx.push(Effect::StartTake(order, at));
                self.push_state(&mut fx);
            }
            Input::Stop { to, take_id, at } => self.stop(to, take_id, at, now, &mut fx)?,
            Input::Rotate { to, next, order, at } => {
                if self.may_rotate()? {
                    return Err(Refusal::new(Code::NotRecording, "no take is running"));
                }
                let Phase::Recording { take: old, .. } = std::mem::replace(&mut self.phase, Phase::Idle)
                else {
                    unreachable!("checked")
                };
                let rotation = Rotation { to, old, old_report: None, new_first: None };
                self.phase = Phase::Recording { take: next, wait: Some((RecordWait::Rotate(rotation), now)) };
                fx.push(Effect::RotateTake(order, at));
            }
            Input::Reset { to, jack_running } => {
                let reply = match &self.phase {
                    Phase::Error { .. } if !jack_running => Err(Refusal::new(
                        Code::JackGone,
                        "JACK is not running; capstan returns to idle once it is",
                    )),
                    Phase::Error { .. } => {
                        self.recovered(&mut fx);
                        Ok(vec![s("idle")])
                    }
                    p => Ok(vec![s(p.state().name())]),
                };
                fx.push(Effect::Answer(Some(to), reply));
            }
            Input::Started { name, first_frame_time } => self.started(&name, first_frame_time, &mut fx),
            Input::Finished { report, jack_gone } => self.take_finished(*report, jack_gone, &mut fx),
            Input::JackGone { what } => self.jack_gone(what, now, &mut fx),
            Input::JackBack => {
                if matches!(self.phase, Phase::Error { code: Code::JackGone, .. }) {
                    self.recovered(&mut fx);
                }
            }
            Input::SpaceBack => {
                if matches!(self.phase, Phase::Error { code: Code::DiskFull, draining: None, .. }) {
                    self.recovered(&mut fx);
                }
            }
            Input::Fail { code, text } => {
                // Whoever waits is told; a take that may still run in the
                // disk thread is ended with what arrived.
                let taking = matches!(
                    self.phase,
                    Phase::Starting { .. } | Phase::Recording { .. } | Phase::Stopping { .. }
                );
                if let Owed::Start(to) | Owed::Stop(to) | Owed::Rotate(to) = self.end_wait() {
                    fx.push(Effect::Answer(to, Err(Refusal::new(code, text.clone()))));
                }
                self.fail(code, text, &mut fx);
                if taking {
                    self.drain(now, &mut fx);
                }
            }
            Input::Progress { written, rate, captured_to } => self.progress(written, rate, captured_to, now),
            Input::Tick => self.tick(now, &mut fx),
        }
        Ok(fx)
    }

    /// Moves from `from` to `phase` along a legal edge (or stays in the
    /// same state).
    fn enter(&mut self, from: State, phase: Phase<R>) {
        let to = phase.state();
        debug_assert!(from == to || is_legal(from, to), "{from} -> {to}");
        self.phase = phase;
    }

    fn push_state<T>(&self, fx: &mut Effects<R, T>) {
        let (take, first) = match self.current() {
            Some(c) => (c.id.clone(), c.first_frame_time.unwrap_or(0)),
            None => (String::new(), 0),
        };
        fx.push(Effect::PushState { take, state: self.state(), first_frame_time: first });
    }

    fn stop<T>(
        &mut self,
        to: Option<R>,
        take_id: Option<String>,
        at: StopAt,
        now: Instant,
        fx: &mut Effects<R, T>,
    ) -> Result<(), Refusal> {
        let current = match &self.phase {
            Phase::Recording { take, wait: None } => take.id.clone(),
            Phase::Idle => return Err(Refusal::new(Code::NotRecording, "no take is running")),
            _ => return Err(self.busy()),
        };
        if let Some(id) = take_id.filter(|id| *id != current) {
            return Err(Refusal::new(
                Code::NotRecording,
                format!("no take {id}; the running take is {current}"),
            ));
        }
        let take = std::mem::replace(&mut self.phase, Phase::Idle).into_take().expect("recording");
        let end = match at {
            StopAt::Before(f) => Some(f),
            _ => None,
        };
        let wait = StopWait::Stop { to, drained: false, end, progress: None };
        self.enter(State::Recording, Phase::Stopping { take, wait, since: now });
        self.push_state(fx);
        fx.push(Effect::StopTake(at));
        Ok(())
    }

    fn started<T>(&mut self, name: &str, first: u64, fx: &mut Effects<R, T>) {
        let Some(c) = self.phase.take_mut().filter(|c| c.name == name) else {
            return tracing::debug!("disk thread started {name}, which is not the current take");
        };
        c.first_frame_time = Some(first);
        tracing::info!(take = %c.id, first_frame_time = first, "recording {}", c.files.join(", "));
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Starting { take, wait: StartWait::Start { to }, .. } => {
                let reply = vec![s(take.id.clone()), count(first), s(files_text(&take.files))];
                self.enter(State::Starting, Phase::Recording { take, wait: None });
                self.push_state(fx);
                fx.push(Effect::Answer(to, Ok(reply)));
            }
            Phase::Recording { take, wait: Some((RecordWait::Rotate(mut r), since)) } => {
                r.new_first = Some(first);
                self.phase = Phase::Recording { take, wait: Some((RecordWait::Rotate(r), since)) };
                self.rotation_done(fx);
            }
            other => self.phase = other,
        }
    }

    fn take_finished<T>(&mut self, r: TakeReport, jack_gone: bool, fx: &mut Effects<R, T>) {
        if let Phase::Recording { wait: Some((RecordWait::Rotate(rot), _)), .. } = &mut self.phase {
            if rot.old.name == r.name {
                rot.old_report = Some(Box::new(r));
                return self.rotation_done(fx);
            }
        }
        let is_current = self.current().is_some_and(|c| c.name == r.name);
        if !is_current {
            // A take rotated out earlier: its failure is reported, and
            // nothing the disk thread owes ends with it.
            return self.finished(r, false, jack_gone, fx);
        }
        let files: Vec<String> = r.files.iter().map(|f| f.path.display().to_string()).collect();
        let id = self.current().map_or_else(|| r.name.clone(), |c| c.id.clone());
        let (frames, secs, error) = (r.frames, r.seconds(), r.error.clone());
        let picture = r.picture.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let text = files_text(&files);
        if let Phase::Stopping { wait: StopWait::Writing { frames: promised, .. }, .. } = self.phase {
            if error.is_none() && frames != promised {
                let t = format!("take {id} ends at {frames} frames; its stop answered {promised}");
                tracing::warn!("{t}");
                fx.push(Effect::Notice(2, t));
            }
        }
        self.last_files = Some((id.clone(), files));
        // What the disk thread owed ends with the take's end.
        let owed = self.end_wait();
        self.finished(r, true, jack_gone, fx);
        let reply = match &error {
            None => Ok(vec![s(id), count(frames), OscType::Double(secs), s(text), s(picture)]),
            Some(e) => Err(Refusal::new(self.error().map_or(Code::Write, |e| e.0), e.clone())),
        };
        match owed {
            Owed::Stop(to) => fx.push(Effect::Answer(to, reply)),
            // Ended before it started (an error at its first frame), or a
            // rotated-in take that failed: the operation failed.
            Owed::Start(to) | Owed::Rotate(to) => {
                let r = reply.and(Err(Refusal::new(Code::Write, "the take ended before it started")));
                fx.push(Effect::Answer(to, r));
            }
            Owed::Nothing => {}
        }
    }

    /// Drops what the disk thread owed (its take ended), leaving the state
    /// as it is; says who waited for it.
    fn end_wait(&mut self) -> Owed<R> {
        match &mut self.phase {
            Phase::Starting { wait, .. } => match std::mem::replace(wait, StartWait::Abort) {
                StartWait::Start { to } => Owed::Start(to),
                StartWait::Abort => Owed::Nothing,
            },
            Phase::Recording { wait, .. } => match wait.take() {
                Some((RecordWait::Rotate(r), _)) => Owed::Rotate(r.to),
                _ => Owed::Nothing,
            },
            Phase::Stopping { wait, .. } => match std::mem::replace(wait, StopWait::Abort) {
                StopWait::Stop { to, .. } => Owed::Stop(to),
                StopWait::Writing { .. } | StopWait::Abort => Owed::Nothing,
            },
            Phase::Error { draining, .. } => {
                *draining = None;
                Owed::Nothing
            }
            Phase::Idle => Owed::Nothing,
        }
    }

    /// Answers a rotation once the old take is final and the new one runs,
    /// or at once if the old one failed.
    fn rotation_done<T>(&mut self, fx: &mut Effects<R, T>) {
        let Phase::Recording { wait: Some((RecordWait::Rotate(rot), _)), .. } = &self.phase else { return };
        let Some(old_report) = &rot.old_report else { return };
        // A failed old take still continues in the new one if that began.
        if rot.new_first.is_none() && (old_report.error.is_none() || old_report.rotated_into.is_some()) {
            return;
        }
        let Phase::Recording { take, wait: Some((RecordWait::Rotate(rot), since)) } =
            std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            unreachable!("checked")
        };
        self.phase = Phase::Recording { take, wait: None };
        let Rotation { to, old, old_report, new_first } = rot;
        let report = *old_report.expect("checked");
        let files: Vec<String> = report.files.iter().map(|f| f.path.display().to_string()).collect();
        self.last_files = Some((old.id.clone(), files));
        let (old_frames, error) = (report.frames, report.error.clone());
        let new_running = new_first.is_some();
        self.finished(report, !new_running, false, fx);
        let reply = match (error, new_first) {
            (None, Some(first)) => {
                self.push_state(fx);
                let c = self.current().expect("rotated in");
                Ok(vec![s(old.id), count(old_frames), s(c.id.clone()), count(first), s(files_text(&c.files))])
            }
            (Some(e), _) => Err(Refusal::new(Code::Write, e)),
            (None, None) => unreachable!("checked above"),
        };
        fx.push(Effect::Answer(to, reply));
        if !new_running && self.state() == State::Error {
            // The new take may still begin in the disk thread: end it.
            self.drain(since, fx);
        }
    }

    /// In ERROR, a take may still run in the disk thread: it is told to end
    /// with what arrived, and its end is awaited (from `since`).
    fn drain<T>(&mut self, since: Instant, fx: &mut Effects<R, T>) {
        if let Phase::Error { draining, .. } = &mut self.phase {
            *draining = Some(since);
            fx.push(Effect::StopTake(StopAt::Drained));
        }
    }

    /// A take ended (by stop, rotation, error or JACK's death). `current`:
    /// it was the running take (its end moves the state machine); else it
    /// is one rotated out, whose failure is reported but ends nothing.
    fn finished<T>(&mut self, r: TakeReport, current: bool, jack_gone: bool, fx: &mut Effects<R, T>) {
        if !current {
            if let Some(e) = &r.error {
                let text = format!("take {} ended: {e}; {} frames saved", r.name, r.frames);
                tracing::error!("{text}");
                fx.push(Effect::PushError { take: r.name.clone(), code: Code::Write, text: text.clone() });
                fx.push(Effect::Notice(3, text));
            }
        } else if jack_gone {
            self.fail(
                Code::JackGone,
                format!("JACK server shut down; take {} saved ({} frames)", r.name, r.frames),
                fx,
            );
        } else if let Some(e) = &r.error {
            let code =
                if r.error_kind.as_deref() == Some("StorageFull") { Code::DiskFull } else { Code::Write };
            self.fail(code, format!("take {} ended: {e}; {} frames saved", r.name, r.frames), fx);
        } else if matches!(
            self.phase,
            Phase::Starting { .. } | Phase::Recording { .. } | Phase::Stopping { .. }
        ) {
            // Starting or recording, a take that ended without an error
            // still ended: nothing records any more.
            if self.state() != State::Stopping {
                tracing::warn!(take = %r.name, "the take ended without being stopped");
            }
            self.phase = Phase::Idle;
            self.push_state(fx);
        }
        if r.segments.len() > 1 {
            let rates: Vec<String> = r.segments.iter().map(|s| s.sample_rate.to_string()).collect();
            fx.push(Effect::Notice(
                2,
                format!(
                    "take {}: JACK's rate changed during the take; it is in {} segments ({} Hz)",
                    r.name,
                    r.segments.len(),
                    rates.join(" → ")
                ),
            ));
        }
        let lost: u64 = r.gaps.iter().map(|g| g.frames).sum();
        if lost > 0 {
            fx.push(Effect::Notice(
                2,
                format!("take {}: {lost} frames lost in {} gaps (filled with silence)", r.name, r.gaps.len()),
            ));
        }
        tracing::info!(take = %r.name, frames = r.frames, "take finished");
    }

    /// Enters ERROR from wherever it is (all such edges are legal); the
    /// take that ran stays named, and a disk-thread end under way stays
    /// awaited.
    fn fail<T>(&mut self, code: Code, text: String, fx: &mut Effects<R, T>) {
        let draining = match &self.phase {
            Phase::Error { draining, .. } => *draining,
            _ => None,
        };
        let take = std::mem::replace(&mut self.phase, Phase::Idle).into_take();
        let id = take.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        tracing::error!(take = %id, "{text}");
        fx.push(Effect::PushError { take: id, code, text: text.clone() });
        fx.push(Effect::Notice(3, text.clone()));
        self.phase = Phase::Error { code, text, take, draining };
        self.push_state(fx);
    }

    /// Leaves ERROR for IDLE (reset, JACK back, disk space back).
    fn recovered<T>(&mut self, fx: &mut Effects<R, T>) {
        self.enter(self.state(), Phase::Idle);
        self.push_state(fx);
    }

    /// The deadlines of what the disk thread owes: a stop that JACK's stall
    /// keeps from its frame takes what is there after half of
    /// [`CONFIRM`]; no answer within it is a failure.
    fn tick<T>(&mut self, now: Instant, fx: &mut Effects<R, T>) {
        let since = match &self.phase {
            Phase::Idle | Phase::Recording { wait: None, .. } | Phase::Error { draining: None, .. } => return,
            Phase::Stopping { wait: StopWait::Writing { since, .. }, .. } => *since,
            Phase::Starting { since, .. } | Phase::Stopping { since, .. } => *since,
            Phase::Recording { wait: Some((_, since)), .. } => *since,
            Phase::Error { draining: Some(since), .. } => *since,
        };
        let age = now.saturating_duration_since(since);
        if age < CONFIRM {
            if age >= STOP_ANSWER {
                self.answer_stop_early(now, fx);
            }
            if let Phase::Stopping { wait: StopWait::Stop { drained: drained @ false, .. }, .. } =
                &mut self.phase
            {
                if age >= CONFIRM / 2 {
                    *drained = true; // JACK stalled: take what is there
                    fx.push(Effect::StopTake(StopAt::Drained));
                }
            }
            return;
        }
        let (what, aborting) = match &self.phase {
            Phase::Starting { wait: StartWait::Start { .. }, .. } => ("start", false),
            Phase::Stopping { wait: StopWait::Stop { .. } | StopWait::Writing { .. }, .. } => ("stop", false),
            Phase::Recording { wait: Some((RecordWait::Rotate(_), _)), .. } => ("rotation", false),
            _ => ("end of the take", true),
        };
        let text = match &self.phase {
            Phase::Stopping { take, wait: StopWait::Writing { frames, written, .. }, .. } => format!(
                "the disk has written nothing of take {} for {} s (is it stuck?); it holds {written} of \
                 its {frames} frames, and ends there when the disk moves again (else `capstan recover` \
                 finalizes it)",
                take.id,
                CONFIRM.as_secs()
            ),
            _ => format!("the disk thread did not confirm the {what}"),
        };
        if let Phase::Error { draining, .. } = &mut self.phase {
            *draining = None;
            return tracing::error!("{text}");
        }
        let owed = self.end_wait();
        if aborting {
            // JACK is gone and the take's end never came: ERROR, and the
            // client is closed as after any death of JACK.
            return self.fail(Code::JackGone, format!("JACK server shut down; {text}"), fx);
        }
        if let Owed::Start(to) | Owed::Stop(to) | Owed::Rotate(to) = owed {
            fx.push(Effect::Answer(to, Err(Refusal::new(Code::Write, text.clone()))));
        }
        self.fail(Code::Write, text, fx);
        self.drain(now, fx);
    }

    /// The disk thread's progress on the running take (see
    /// [`Input::Progress`]): kept while a stop waits, and in
    /// [`StopWait::Writing`] new frames put the deadline off.
    fn progress(&mut self, written: u64, rate: u32, captured_to: u32, now: Instant) {
        match &mut self.phase {
            Phase::Stopping { wait: StopWait::Stop { progress, .. }, .. } => {
                *progress = Some((written, rate, captured_to));
            }
            Phase::Stopping { wait: StopWait::Writing { written: w, since, .. }, .. } if written > *w => {
                (*w, *since) = (written, now);
            }
            _ => {}
        }
    }

    /// A stop whose end JACK has delivered, but which the disk has not
    /// written yet (it is behind), is answered now with the length the take
    /// will have; the take ends when the disk gets there.
    fn answer_stop_early<T>(&mut self, now: Instant, fx: &mut Effects<R, T>) {
        let Phase::Stopping { take, wait: StopWait::Stop { end: Some(end), progress: Some(p), .. }, .. } =
            &self.phase
        else {
            return;
        };
        let (Some(first), (written, rate, captured_to)) = (take.first_frame_time, *p) else { return };
        let frames = end.wrapping_sub(first as u32) as u64;
        let delivered = captured_to.wrapping_sub(*end) as i32 >= 0;
        if !delivered || written >= frames {
            return; // JACK has not delivered it (a stall), or only the finalizing is left
        }
        let reply = vec![
            s(take.id.clone()),
            count(frames),
            OscType::Double(frames as f64 / rate.max(1) as f64),
            s(files_text(&take.files)),
            s(""),
        ];
        tracing::warn!(
            take = %take.id,
            "stopped; the disk is behind: {written} of {frames} frames written, the files are final when it \
             has caught up"
        );
        let Phase::Stopping { wait, .. } = &mut self.phase else { unreachable!("checked") };
        let StopWait::Stop { to, .. } =
            std::mem::replace(wait, StopWait::Writing { frames, written, since: now })
        else {
            unreachable!("checked")
        };
        fx.push(Effect::Answer(to, Ok(reply)));
    }

    /// JACK shut down (or the callback stopped): a running take ends with
    /// what arrived (its manifest says why), and whoever waited is told;
    /// without a take, ERROR at once and the client is closed.
    fn jack_gone<T>(&mut self, what: &'static str, now: Instant, fx: &mut Effects<R, T>) {
        if self.aborting() {
            return; // waiting for the take to end
        }
        let taking =
            matches!(self.phase, Phase::Starting { .. } | Phase::Recording { .. } | Phase::Stopping { .. });
        if taking {
            if let Owed::Start(to) | Owed::Stop(to) | Owed::Rotate(to) = self.end_wait() {
                fx.push(Effect::Answer(to, Err(Refusal::new(Code::JackGone, what))));
            }
            match &mut self.phase {
                Phase::Starting { wait, since, .. } => (*wait, *since) = (StartWait::Abort, now),
                Phase::Recording { wait, .. } => *wait = Some((RecordWait::Abort, now)),
                Phase::Stopping { wait, since, .. } => (*wait, *since) = (StopWait::Abort, now),
                _ => unreachable!("taking"),
            }
            fx.push(Effect::AbortTake(format!("{what} during the take; it holds everything up to then")));
            return;
        }
        if self.state() != State::Error {
            self.fail(Code::JackGone, what.into(), fx);
        }
        fx.push(Effect::CloseEngine);
    }
}

/// Who waited for what the disk thread owed.
enum Owed<R> {
    Start(Option<R>),
    Stop(Option<R>),
    Rotate(Option<R>),
    Nothing,
}

#[cfg(test)]
mod tests;
