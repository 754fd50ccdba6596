//! Commands in OSC bundles timetagged for later: start, stop and rotate
//! are held until shortly before their time, then handed to the disk
//! thread with that time, which it turns into the exact frame (inside its
//! cycle) through the mapping that stamps the files. Several capstans on
//! several machines with disciplined clocks (NTP/PTP) thus start and stop
//! the same take together. Control thread only.

use std::time::{Duration, SystemTime};

use super::endpoint::Requester;
use super::Daemon;
use crate::control::osc::{Code, Command, Refusal};
use crate::disk::{StartAt, StopAt};

/// Timed commands waiting at once, at most.
const MAX_TIMED: usize = 64;
/// How far ahead a timetag may be: further is refused, so that nobody can
/// fill the table for years (a show is planned within a day).
pub(super) const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);
/// How long before its time a command is handed to the disk thread (which
/// then waits for the time's frame).
pub(super) const LEAD: Duration = Duration::from_millis(700);

/// A command waiting for its time.
pub(super) struct Timed {
    at: SystemTime,
    to: Requester,
    cmd: Command,
}

/// Whether `cmd` is one that runs at its bundle's time (the others run at
/// once; markers take their time themselves).
pub(super) fn runs_at_its_time(cmd: &Command) -> bool {
    matches!(cmd, Command::Start { .. } | Command::Stop { .. } | Command::Rotate { .. })
}

impl Daemon {
    /// Holds `cmd` until `at`; answered when it has run.
    pub(super) fn schedule(&mut self, to: Requester, cmd: Command, at: SystemTime) {
        if self.timed.len() >= MAX_TIMED {
            let r = Refusal::new(Code::Busy, format!("{MAX_TIMED} timetagged commands wait already"));
            return self.osc.answer(&to, Err(r));
        }
        let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
        if ahead > MAX_AHEAD {
            let r = Refusal::new(
                Code::BadArgs,
                format!(
                    "timetag is {:.1} h ahead; at most {} h",
                    ahead.as_secs_f64() / 3600.0,
                    MAX_AHEAD.as_secs() / 3600
                ),
            );
            return self.osc.answer(&to, Err(r));
        }
        tracing::info!(from = %to.from, "{} scheduled {:.3} s ahead", to.path, ahead.as_secs_f64());
        self.timed.push(Timed { at, to, cmd });
        self.timed.sort_by_key(|t| t.at);
    }

    /// Drops every waiting timed command, answering each with code 14
    /// (`/record/reset`, `/trigger/disarm`).
    pub(super) fn cancel_timed(&mut self, why: &str) {
        for t in std::mem::take(&mut self.timed) {
            let r = Refusal::new(Code::Cancelled, format!("cancelled by {why}"));
            self.osc.answer(&t.to, Err(r));
        }
    }

    /// Runs the first timed command once its time is near (and no other
    /// operation is under way: its time is exact, so a little wait moves
    /// nothing).
    pub(super) fn run_timed(&mut self) {
        if self.recorder.waiting() {
            return;
        }
        let due = self.timed.first().is_some_and(|t| t.at <= SystemTime::now() + LEAD);
        if !due {
            return;
        }
        let Timed { at, to, cmd } = self.timed.remove(0);
        let result = match cmd {
            Command::Start { take_id, file } => {
                self.start(Some(to.clone()), take_id, file, Some(StartAt::Time(at)))
            }
            Command::Stop { take_id } => self.stop(Some(to.clone()), take_id, Some(StopAt::Time(at))),
            Command::Rotate { take_id, file } => {
                self.rotate(Some(to.clone()), take_id, file, Some(StopAt::Time(at)))
            }
            _ => unreachable!("only start, stop and rotate are timed"),
        };
        match result {
            Ok(Some(args)) => self.osc.answer(&to, Ok(args)),
            Ok(None) => {}
            Err(r) => self.osc.answer(&to, Err(r)),
        }
    }
}
