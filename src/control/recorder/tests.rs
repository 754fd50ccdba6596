//! Every state the recorder can reach × every input: what state follows,
//! who is answered how, and what the disk thread is told.
//!
//! The states are reached by driving the machine from IDLE (so each is one
//! that really occurs), the inputs are applied to a fresh copy each, and
//! [`expected`] is the specification, one arm per behaviour.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::disk::FileReport;

/// Requester 1 asked for what the disk thread owes in the set-up; 2 sends
/// the input under test.
type Rec = Recorder<u32>;
type Fx = Vec<Effect<u32, &'static str>>;

fn take(name: &str) -> TakeRef {
    TakeRef {
        id: format!("id-{name}"),
        name: name.into(),
        files: vec![format!("{name}.wav")],
        first_frame_time: None,
        marks: 0,
    }
}

fn report(name: &str, error: Option<&str>, kind: Option<&str>) -> Box<TakeReport> {
    Box::new(TakeReport {
        name: name.into(),
        files: vec![FileReport {
            path: PathBuf::from(format!("{name}.wav")),
            frames: 480,
            bytes: 2000,
            rf64: false,
        }],
        frames: 480,
        sample_rate: 48000,
        first_frame_time: Some(1000),
        started: None,
        gaps: Vec::new(),
        repeated_frames: 0,
        segments: Vec::new(),
        rotated_into: None,
        error: error.map(Into::into),
        error_kind: kind.map(Into::into),
        picture: None,
    })
}

/// The states the recorder can be in, as reached from IDLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Idle,
    Starting,
    StartingAborted,
    Recording,
    /// A rotation from take a to take b, neither reported yet.
    Rotating,
    /// …the old take is final, the new one has no first frame yet.
    RotatingOldDone,
    /// …the new take began, the old one is not final yet.
    RotatingNewBegun,
    RecordingAborted,
    Stopping,
    /// A stop JACK's stall kept from its frame (half the deadline passed).
    StoppingDrained,
    /// A stop answered while the disk, behind, still writes the take.
    StoppingWriting,
    StoppingAborted,
    ErrorJackGone,
    /// A stop the disk thread never confirmed: ERROR, the take drained.
    ErrorDraining,
    ErrorDiskFull,
}

const SETUPS: [Setup; 15] = [
    Setup::Idle,
    Setup::Starting,
    Setup::StartingAborted,
    Setup::Recording,
    Setup::Rotating,
    Setup::RotatingOldDone,
    Setup::RotatingNewBegun,
    Setup::RecordingAborted,
    Setup::Stopping,
    Setup::StoppingDrained,
    Setup::StoppingWriting,
    Setup::StoppingAborted,
    Setup::ErrorJackGone,
    Setup::ErrorDraining,
    Setup::ErrorDiskFull,
];

fn on(r: &mut Rec, input: Input<u32, &'static str>, at: Instant) -> Result<Fx, Refusal> {
    let before = r.state();
    let fx = r.on(input, at);
    let after = r.state();
    assert!(before == after || is_legal(before, after), "{before} -> {after} is not an edge");
    fx
}

fn ok(r: &mut Rec, input: Input<u32, &'static str>, at: Instant) -> Fx {
    on(r, input, at).expect("accepted")
}

fn start(to: u32, name: &str) -> Input<u32, &'static str> {
    Input::Start { to: Some(to), take: take(name), order: "take", at: StartAt::Next }
}

/// Drives a fresh recorder from IDLE into `setup` (its clock: `t0`).
fn reach(setup: Setup, t0: Instant) -> Rec {
    let mut r = Rec::new();
    let started = |r: &mut Rec, name: &str| {
        ok(r, Input::Started { name: name.into(), first_frame_time: 1000 }, t0);
    };
    let gone = Input::JackGone { what: "JACK server shut down" };
    match setup {
        Setup::Idle => {}
        Setup::Starting => {
            ok(&mut r, start(1, "a"), t0);
        }
        Setup::StartingAborted => {
            ok(&mut r, start(1, "a"), t0);
            ok(&mut r, gone, t0);
        }
        Setup::Recording
        | Setup::Rotating
        | Setup::RotatingOldDone
        | Setup::RotatingNewBegun
        | Setup::RecordingAborted
        | Setup::Stopping
        | Setup::StoppingDrained
        | Setup::StoppingWriting
        | Setup::StoppingAborted
        | Setup::ErrorDraining
        | Setup::ErrorDiskFull => {
            ok(&mut r, start(9, "a"), t0);
            started(&mut r, "a");
            match setup {
                Setup::Rotating | Setup::RotatingOldDone | Setup::RotatingNewBegun => {
                    ok(
                        &mut r,
                        Input::Rotate {
                            to: Some(1),
                            next: take("b"),
                            order: "next",
                            at: StopAt::Frame(2000),
                        },
                        t0,
                    );
                    if setup == Setup::RotatingOldDone {
                        ok(&mut r, Input::Finished { report: report("a", None, None), jack_gone: false }, t0);
                    }
                    if setup == Setup::RotatingNewBegun {
                        started(&mut r, "b");
                    }
                }
                Setup::RecordingAborted => {
                    ok(&mut r, gone, t0);
                }
                Setup::StoppingWriting => {
                    ok(&mut r, Input::Stop { to: Some(9), take_id: None, at: StopAt::Before(2000) }, t0);
                    ok(&mut r, Input::Progress { written: 100, rate: 48000, captured_to: 3000 }, t0);
                    ok(&mut r, Input::Tick, t0 + STOP_ANSWER);
                }
                Setup::Stopping | Setup::StoppingDrained | Setup::StoppingAborted | Setup::ErrorDraining => {
                    ok(&mut r, Input::Stop { to: Some(1), take_id: None, at: StopAt::Frame(2000) }, t0);
                    match setup {
                        Setup::StoppingDrained => {
                            ok(&mut r, Input::Tick, t0 + CONFIRM * 6 / 10);
                        }
                        Setup::StoppingAborted => {
                            ok(&mut r, gone, t0);
                        }
                        Setup::ErrorDraining => {
                            ok(&mut r, Input::Tick, t0 + CONFIRM);
                        }
                        _ => {}
                    }
                }
                Setup::ErrorDiskFull => {
                    let full = report("a", Some("disk full"), Some("StorageFull"));
                    ok(&mut r, Input::Finished { report: full, jack_gone: false }, t0);
                }
                _ => {}
            }
        }
        Setup::ErrorJackGone => {
            ok(&mut r, gone, t0);
        }
    }
    r
}

/// The inputs under test (requester 2 sends the commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Start,
    Stop,
    StopOther,
    Rotate,
    Reset,
    ResetNoJack,
    StartedCurrent,
    StartedOther,
    FinishedCurrent,
    FinishedCurrentError,
    FinishedCurrentDiskFull,
    FinishedCurrentJackGone,
    FinishedOther,
    FinishedOtherError,
    JackGone,
    JackBack,
    SpaceBack,
    Fail,
    /// Half the confirmation deadline after the set-up.
    TickHalf,
    /// Long after every deadline.
    TickLate,
    /// The disk thread wrote more of the take.
    Progress,
}

const INPUTS: [In; 21] = [
    In::Start,
    In::Stop,
    In::StopOther,
    In::Rotate,
    In::Reset,
    In::ResetNoJack,
    In::StartedCurrent,
    In::StartedOther,
    In::FinishedCurrent,
    In::FinishedCurrentError,
    In::FinishedCurrentDiskFull,
    In::FinishedCurrentJackGone,
    In::FinishedOther,
    In::FinishedOtherError,
    In::JackGone,
    In::JackBack,
    In::SpaceBack,
    In::Fail,
    In::TickHalf,
    In::TickLate,
    In::Progress,
];

fn input(i: In, r: &Rec, t0: Instant) -> (Input<u32, &'static str>, Instant) {
    let current = r.current().map_or_else(|| "a".to_string(), |c| c.name.clone());
    let fin = |error, kind, jack_gone| Input::Finished { report: report(&current, error, kind), jack_gone };
    let input = match i {
        In::Start => start(2, "c"),
        In::Stop => Input::Stop { to: Some(2), take_id: None, at: StopAt::Frame(3000) },
        In::StopOther => Input::Stop { to: Some(2), take_id: Some("zz".into()), at: StopAt::Frame(3000) },
        In::Rotate => Input::Rotate { to: Some(2), next: take("c"), order: "next", at: StopAt::Frame(3000) },
        In::Reset => Input::Reset { to: 2, jack_running: true },
        In::ResetNoJack => Input::Reset { to: 2, jack_running: false },
        In::StartedCurrent => Input::Started { name: current.clone(), first_frame_time: 5000 },
        In::StartedOther => Input::Started { name: "zz".into(), first_frame_time: 5000 },
        In::FinishedCurrent => fin(None, None, false),
        In::FinishedCurrentError => fin(Some("write failed"), None, false),
        In::FinishedCurrentDiskFull => fin(Some("disk full"), Some("StorageFull"), false),
        In::FinishedCurrentJackGone => fin(None, None, true),
        In::FinishedOther => Input::Finished { report: report("zz", None, None), jack_gone: false },
        In::FinishedOtherError => {
            Input::Finished { report: report("zz", Some("write failed"), None), jack_gone: false }
        }
        In::JackGone => Input::JackGone { what: "JACK server shut down" },
        In::JackBack => Input::JackBack,
        In::SpaceBack => Input::SpaceBack,
        In::Fail => Input::Fail { code: Code::JackGone, text: "re-creating the JACK client failed".into() },
        In::TickHalf | In::TickLate => Input::Tick,
        In::Progress => Input::Progress { written: 200, rate: 48000, captured_to: 3000 },
    };
    let at = match i {
        In::TickHalf => t0 + CONFIRM * 6 / 10,
        In::TickLate => t0 + Duration::from_secs(60),
        _ => t0,
    };
    (input, at)
}

/// What an input did, in short.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    state: State,
    /// The command was refused with this code (nothing changed).
    refused: Option<Code>,
    /// Requesters answered: (who, Ok or the refusal's code).
    answers: Vec<(Option<u32>, Result<(), Code>)>,
    /// Orders to the disk thread and the engine.
    orders: Vec<&'static str>,
    /// An error was pushed to the subscribers.
    error_pushed: bool,
}

fn outcome(r: &Rec, result: Result<Fx, Refusal>) -> Outcome {
    let mut o = Outcome {
        state: r.state(),
        refused: None,
        answers: Vec::new(),
        orders: Vec::new(),
        error_pushed: false,
    };
    match result {
        Err(refusal) => o.refused = Some(refusal.code),
        Ok(fx) => {
            for e in fx {
                match e {
                    Effect::Answer(to, a) => o.answers.push((to, a.map(|_| ()).map_err(|r| r.code))),
                    Effect::StartTake(..) => o.orders.push("start"),
                    Effect::StopTake(StopAt::Drained) => o.orders.push("drain"),
                    Effect::StopTake(_) => o.orders.push("stop"),
                    Effect::RotateTake(..) => o.orders.push("rotate"),
                    Effect::AbortTake(_) => o.orders.push("abort"),
                    Effect::CloseEngine => o.orders.push("close"),
                    Effect::PushError { .. } => o.error_pushed = true,
                    Effect::PushState { .. } | Effect::Notice(..) => {}
                }
            }
        }
    }
    o
}

/// The specification: what each input does in each state.
fn expected(setup: Setup, i: In) -> Outcome {
    use Setup as S;
    let state = match setup {
        S::Idle => State::Idle,
        S::Starting | S::StartingAborted => State::Starting,
        S::Recording | S::Rotating | S::RotatingOldDone | S::RotatingNewBegun | S::RecordingAborted => {
            State::Recording
        }
        S::Stopping | S::StoppingDrained | S::StoppingWriting | S::StoppingAborted => State::Stopping,
        S::ErrorJackGone | S::ErrorDraining | S::ErrorDiskFull => State::Error,
    };
    let error = state == State::Error;
    let aborted = matches!(setup, S::StartingAborted | S::RecordingAborted | S::StoppingAborted);
    let rotating = matches!(setup, S::Rotating | S::RotatingOldDone | S::RotatingNewBegun);
    // Who waits for the disk thread (requester 1), and what for.
    let owed = matches!(setup, S::Starting | S::Stopping | S::StoppingDrained) || rotating;
    let same = Outcome { state, refused: None, answers: vec![], orders: vec![], error_pushed: false };
    let refused = |code| Outcome { refused: Some(code), ..same.clone() };
    let busy = refused(if error { Code::ErrorState } else { Code::Busy });
    let to = |s: State, answers: Vec<(Option<u32>, Result<(), Code>)>, orders: Vec<&'static str>| Outcome {
        state: s,
        refused: None,
        answers,
        orders,
        error_pushed: s == State::Error && state != State::Error,
    };
    let one = |r: Result<(), Code>| if owed { vec![(Some(1), r)] } else { vec![] };
    match i {
        In::Start => match setup {
            S::Idle => to(State::Starting, vec![], vec!["start"]),
            _ => busy,
        },
        In::Stop | In::StopOther => match setup {
            S::Idle => refused(Code::NotRecording),
            S::Recording if i == In::StopOther => refused(Code::NotRecording),
            S::Recording => to(State::Stopping, vec![], vec!["stop"]),
            _ => busy,
        },
        In::Rotate => match setup {
            // The daemon makes a rotation in IDLE a start before asking.
            S::Idle => refused(Code::NotRecording),
            S::Recording => to(State::Recording, vec![], vec!["rotate"]),
            _ => busy,
        },
        In::Reset if error => to(State::Idle, vec![(Some(2), Ok(()))], vec![]),
        In::ResetNoJack if error => Outcome { answers: vec![(Some(2), Err(Code::JackGone))], ..same },
        In::Reset | In::ResetNoJack => Outcome { answers: vec![(Some(2), Ok(()))], ..same },
        In::StartedCurrent => match setup {
            S::Starting => to(State::Recording, vec![(Some(1), Ok(()))], vec![]),
            // The old take is final and the new one began: rotated.
            S::RotatingOldDone => to(State::Recording, vec![(Some(1), Ok(()))], vec![]),
            _ => same,
        },
        In::StartedOther => same,
        In::FinishedCurrent
        | In::FinishedCurrentError
        | In::FinishedCurrentDiskFull
        | In::FinishedCurrentJackGone => {
            let code = match i {
                In::FinishedCurrentError => Some(Code::Write),
                In::FinishedCurrentDiskFull => Some(Code::DiskFull),
                _ => None,
            };
            if matches!(setup, S::Idle | S::ErrorJackGone) {
                // No take runs: a take rotated out earlier; only its
                // failure is said.
                return Outcome { error_pushed: code.is_some(), ..same };
            }
            let fails = code.is_some() || i == In::FinishedCurrentJackGone;
            let next = if fails || error { State::Error } else { State::Idle };
            let stop = matches!(setup, S::Stopping | S::StoppingDrained);
            // A stop is answered with the take; a start or a rotation whose
            // take ended before it began failed.
            let reply = match code {
                Some(c) => Err(c),
                None if stop => Ok(()),
                None => Err(Code::Write),
            };
            Outcome { state: next, refused: None, answers: one(reply), orders: vec![], error_pushed: fails }
        }
        In::FinishedOther => same,
        In::FinishedOtherError => Outcome { error_pushed: true, ..same },
        In::JackGone => match setup {
            _ if aborted => same,
            S::Idle => to(State::Error, vec![], vec!["close"]),
            _ if error => Outcome { orders: vec!["close"], ..same },
            _ => Outcome { answers: one(Err(Code::JackGone)), orders: vec!["abort"], ..same },
        },
        In::JackBack => match setup {
            S::ErrorJackGone => to(State::Idle, vec![], vec![]),
            _ => same,
        },
        In::SpaceBack => match setup {
            S::ErrorDiskFull => to(State::Idle, vec![], vec![]),
            _ => same,
        },
        In::Fail => {
            let taking = !error && setup != S::Idle;
            Outcome {
                error_pushed: true,
                ..to(State::Error, one(Err(Code::JackGone)), if taking { vec!["drain"] } else { vec![] })
            }
        }
        In::TickHalf => match setup {
            // JACK stalled: the stop takes what is there.
            S::Stopping => Outcome { orders: vec!["drain"], ..same },
            _ => same,
        },
        In::Progress => same,
        In::TickLate => match setup {
            S::Idle | S::Recording | S::ErrorJackGone | S::ErrorDiskFull | S::ErrorDraining => same,
            // JACK's death was never confirmed by the take's end.
            _ if aborted => Outcome { error_pushed: true, ..to(State::Error, vec![], vec![]) },
            // The disk thread never confirmed: ERROR, the take is drained.
            _ => Outcome { error_pushed: true, ..to(State::Error, one(Err(Code::Write)), vec!["drain"]) },
        },
    }
}

#[test]
fn every_state_and_input_does_what_the_specification_says() {
    let t0 = Instant::now();
    let mut wrong = Vec::new();
    for setup in SETUPS {
        for i in INPUTS {
            let mut r = reach(setup, t0);
            let (inp, at) = input(i, &r, t0);
            let result = on(&mut r, inp, at);
            let got = outcome(&r, result);
            let want = expected(setup, i);
            if got != want {
                wrong.push(format!("{setup:?} × {i:?}:\n  got  {got:?}\n  want {want:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} pairs differ:\n{}",
        wrong.len(),
        SETUPS.len() * INPUTS.len(),
        wrong.join("\n")
    );
}

fn args(fx: &Fx, who: u32) -> Vec<OscType> {
    fx.iter()
        .find_map(|e| match e {
            Effect::Answer(Some(w), Ok(a)) if *w == who => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer to {who} in {fx:?}"))
}

/// A start is answered when its first frame is written, with the take's
/// id, that frame's time and the files.
#[test]
fn a_start_is_answered_with_its_first_frame() {
    let t0 = Instant::now();
    let mut r = Rec::new();
    let fx = ok(&mut r, start(1, "a"), t0);
    assert!(fx.iter().all(|e| !matches!(e, Effect::Answer(..))), "{fx:?}");
    assert_eq!(r.mark_target().unwrap_err().message, "the take has not started yet");
    let fx = ok(&mut r, Input::Started { name: "a".into(), first_frame_time: 777 }, t0);
    assert_eq!(args(&fx, 1), vec![s("id-a"), count(777), s("a.wav")]);
    assert!(fx.contains(&Effect::PushState {
        take: "id-a".into(),
        state: State::Recording,
        first_frame_time: 777
    }));
}

/// A rotation is answered once the old take is final and the new one has
/// its first frame, whichever comes first; markers go to the old take until
/// the new one begins.
#[test]
fn a_rotation_is_answered_when_both_takes_are_so_in_either_order() {
    let t0 = Instant::now();
    for old_first in [true, false] {
        let mut r = reach(Setup::Recording, t0);
        ok(
            &mut r,
            Input::Rotate { to: Some(1), next: take("b"), order: "next", at: StopAt::Frame(2000) },
            t0,
        );
        assert_eq!(r.mark_target().unwrap().id, "id-a", "a marker during the rotation goes to the old take");
        let finished = Input::Finished { report: report("a", None, None), jack_gone: false };
        let begun = Input::Started { name: "b".into(), first_frame_time: 2000 };
        let (first, second) = if old_first { (finished, begun) } else { (begun, finished) };
        let fx = ok(&mut r, first, t0);
        assert!(fx.iter().all(|e| !matches!(e, Effect::Answer(..))), "{fx:?}");
        let fx = ok(&mut r, second, t0);
        assert_eq!(args(&fx, 1), vec![s("id-a"), count(480), s("id-b"), count(2000), s("b.wav")]);
        assert_eq!((r.state(), r.waiting()), (State::Recording, false));
        assert_eq!(r.mark_target().unwrap().id, "id-b");
        assert_eq!(r.files(), Some(("id-b", &["b.wav".to_string()][..])));
    }
}

/// The old take of a rotation failed while finalizing, but the new one
/// began: the rotation is refused with the error, the recording goes on.
#[test]
fn a_rotation_whose_old_take_failed_goes_on_in_the_new_one() {
    let t0 = Instant::now();
    let mut r = reach(Setup::Recording, t0);
    ok(&mut r, Input::Rotate { to: Some(1), next: take("b"), order: "next", at: StopAt::Frame(2000) }, t0);
    let mut failed = report("a", Some("fsync failed"), None);
    failed.rotated_into = Some("b".into());
    let fx = ok(&mut r, Input::Finished { report: failed, jack_gone: false }, t0);
    assert!(fx.is_empty(), "the new take has not begun: {fx:?}");
    let fx = ok(&mut r, Input::Started { name: "b".into(), first_frame_time: 2000 }, t0);
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Answer(Some(1), Err(r)) if r.code == Code::Write)),
        "{fx:?}"
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::PushError { take, .. } if take == "a")), "{fx:?}");
    assert_eq!((r.state(), r.current().map(|c| c.name.as_str())), (State::Recording, Some("b")));
    // Without a new take, the failure ends the recording.
    let mut r = reach(Setup::Recording, t0);
    ok(&mut r, Input::Rotate { to: Some(1), next: take("b"), order: "next", at: StopAt::Frame(2000) }, t0);
    let fx =
        ok(&mut r, Input::Finished { report: report("a", Some("fsync failed"), None), jack_gone: false }, t0);
    assert_eq!(r.state(), State::Error);
    assert!(fx.contains(&Effect::StopTake(StopAt::Drained)), "the new take may still begin: {fx:?}");
    assert!(r.waiting());
}

/// The refusals say why, and in ERROR how to get back.
#[test]
fn refusals_say_why_and_the_way_back() {
    let t0 = Instant::now();
    let r = reach(Setup::Recording, t0);
    assert_eq!(r.may_start().unwrap_err().message, "take id-a is already recording");
    let r = reach(Setup::ErrorDiskFull, t0);
    let m = r.may_start().unwrap_err().message;
    assert!(m.contains("disk full") && m.ends_with("send /record/reset"), "{m}");
    let r = reach(Setup::ErrorJackGone, t0);
    assert!(r.may_start().unwrap_err().message.contains("returns to idle by itself"));
    let mut r = reach(Setup::Recording, t0);
    let e = r.on::<&str>(Input::Stop { to: None, take_id: Some("x".into()), at: StopAt::Frame(0) }, t0);
    assert_eq!(e.unwrap_err().message, "no take x; the running take is id-a");
}

/// Every state has a way back to IDLE, by commands and the deadlines alone
/// (the disk thread says nothing more).
#[test]
fn every_reachable_state_gets_back_to_idle() {
    let t0 = Instant::now();
    for setup in SETUPS {
        let mut r = reach(setup, t0);
        let mut now = t0;
        let mut steps = 0;
        while r.state() != State::Idle {
            now += Duration::from_secs(10);
            let next = match r.state() {
                State::Recording if !r.waiting() => {
                    Input::Stop { to: Some(3), take_id: None, at: StopAt::Frame(0) }
                }
                State::Error if !r.waiting() => Input::Reset { to: 3, jack_running: true },
                _ => Input::Tick,
            };
            ok(&mut r, next, now);
            steps += 1;
            assert!(steps < 10, "{setup:?} is stuck in {}", r.state());
        }
    }
}

/// A stop whose end JACK delivered but the disk has not written (it is
/// behind) is answered after [`STOP_ANSWER`] with the length the take
/// will have; commands are refused meanwhile (not queued), saying why; the
/// take's end answers nobody again. A stop JACK's stall keeps from its
/// frame is not answered early (it takes what is there at half the
/// deadline), nor one the disk has written up to (only finalizing is left).
#[test]
fn a_stop_the_disk_is_behind_on_is_answered_with_the_takes_length() {
    let t0 = Instant::now();
    let stopping = |progress: Option<(u64, u32)>| {
        let mut r = reach(Setup::Recording, t0);
        ok(&mut r, Input::Stop { to: Some(2), take_id: None, at: StopAt::Before(49_000) }, t0);
        if let Some((written, captured_to)) = progress {
            ok(&mut r, Input::Progress { written, rate: 48000, captured_to }, t0);
        }
        r
    };
    let mut r = stopping(Some((12_000, 50_000)));
    assert!(ok(&mut r, Input::Tick, t0 + STOP_ANSWER / 2).is_empty());
    let fx = ok(&mut r, Input::Tick, t0 + STOP_ANSWER);
    let a = args(&fx, 2);
    assert_eq!(a[..3], [s("id-a"), count(48_000), OscType::Double(1.0)]);
    assert_eq!((r.state(), r.waiting()), (State::Stopping, false));
    let busy = r.on(start(3, "c"), t0 + STOP_ANSWER).unwrap_err();
    assert!(
        busy.message.contains("the disk is writing it (12000 of 48000 frames written)"),
        "{}",
        busy.message
    );
    // Progress keeps the deadline off; its end answers nobody.
    ok(&mut r, Input::Progress { written: 40_000, rate: 48000, captured_to: 60_000 }, t0 + CONFIRM);
    assert!(ok(&mut r, Input::Tick, t0 + CONFIRM + STOP_ANSWER).is_empty());
    let mut done = report("a", None, None);
    done.frames = 48_000;
    let fx = ok(&mut r, Input::Finished { report: done, jack_gone: false }, t0 + CONFIRM * 2);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Answer(..))), "{fx:?}");
    assert_eq!(r.state(), State::Idle);
    // JACK stalled before the stop's end: no early answer, a drain.
    let mut r = stopping(Some((12_000, 48_000)));
    assert!(ok(&mut r, Input::Tick, t0 + STOP_ANSWER).is_empty());
    let fx = ok(&mut r, Input::Tick, t0 + CONFIRM * 6 / 10);
    assert!(fx.iter().any(|e| matches!(e, Effect::StopTake(StopAt::Drained))), "{fx:?}");
    // Written to the end, finalizing: the take's end answers.
    let mut r = stopping(Some((48_000, 50_000)));
    assert!(ok(&mut r, Input::Tick, t0 + STOP_ANSWER).is_empty());
    assert!(r.waiting());
    // No progress for CONFIRM after the answer: ERROR, and why.
    let mut r = stopping(Some((12_000, 50_000)));
    ok(&mut r, Input::Tick, t0 + STOP_ANSWER);
    let fx = ok(&mut r, Input::Tick, t0 + STOP_ANSWER + CONFIRM);
    assert_eq!(r.state(), State::Error);
    assert!(r.error().unwrap().1.contains("written nothing of take id-a for 3 s"), "{:?}", r.error());
    assert!(fx.iter().any(|e| matches!(e, Effect::StopTake(StopAt::Drained))), "{fx:?}");
}
