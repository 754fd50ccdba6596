//! Retention and the lifecycle on their own thread: deleting or moving
//! old takes can take minutes (a copy to another disk or an object
//! store), and the control loop must keep answering OSC and the session
//! manager meanwhile. Control thread only.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use crate::retention::Policy;

/// How often the policy is applied (and once at start-up).
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one retention run printed, or why it failed.
type Outcome = anyhow::Result<Vec<String>>;

#[derive(Default)]
pub struct Retention {
    last: Option<Instant>,
    running: Option<JoinHandle<Outcome>>,
}

impl Retention {
    /// Applies `policy` to `dir` when due, on a thread of its own; reports a
    /// finished run. Never waits for a run.
    /// Each copy's and spill directory (`mirrors`) gets the same rules on
    /// its own takes, without the archive (one archive holds one copy).
    /// Then the lifecycle moves the takes of `dir` on (`offsite`: the URL
    /// whose copy a take waits for before it leaves `dir`).
    pub fn tick(
        &mut self,
        dir: &std::path::Path,
        mirrors: &[std::path::PathBuf],
        policy: &Policy,
        lifecycle: &Lifecycle,
        offsite: Option<&str>,
    ) {
        if policy.is_empty() && lifecycle.is_empty() {
            return;
        }
        let (dir, mirrors, policy) = (dir.to_path_buf(), mirrors.to_vec(), policy.clone());
        let (lifecycle, offsite) = (lifecycle.clone(), offsite.map(str::to_string));
        self.tick_with(move || {
            let mut lines = Vec::new();
            if !policy.is_empty() {
                lines.extend(crate::retention::apply(&dir, &policy, false)?);
                let copies = Policy { archive: None, ..policy };
                for m in &mirrors {
                    lines.extend(crate::retention::apply(m, &copies, false)?);
                }
            }
            if !lifecycle.is_empty() {
                let now = std::time::SystemTime::now();
                lines.extend(crate::lifecycle::apply(&dir, &lifecycle, offsite.as_deref(), now, false)?);
            }
            Ok(lines)
        });
    }

    /// [`Self::tick`] with the work given (tests give one that blocks).
    pub fn tick_with(&mut self, job: impl FnOnce() -> Outcome + Send + 'static) {
        if self.running.as_ref().is_some_and(|h| h.is_finished()) {
            match self.running.take().expect("checked").join() {
                Ok(Ok(lines)) => lines.iter().for_each(|l| tracing::info!("retention: {l}")),
                Ok(Err(e)) => tracing::error!("retention: {e:#}"),
                Err(_) => tracing::error!("retention: the retention thread panicked"),
            }
        }
        if self.running.is_some() || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        match std::thread::Builder::new().name("capstan-retention".into()).spawn(job) {
            Ok(h) => self.running = Some(h),
            Err(e) => tracing::error!("retention: cannot start its thread: {e}"),
        }
    }

    #[cfg(test)]
    fn running(&self) -> bool {
        self.running.as_ref().is_some_and(|h| !h.is_finished())
    }

    #[cfg(test)]
    fn finish(&mut self) {
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_slow_run_never_holds_up_the_caller() {
        let mut r = Retention::default();
        let (release, wait) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        // Blocks until released; run inline, it would time out and say so.
        r.tick_with(move || {
            let released = wait.recv_timeout(Duration::from_secs(5)).is_ok();
            done_tx.send(released).unwrap();
            Ok(vec![])
        });
        assert!(r.running(), "the run is on its own thread and still going");
        // Not due again while it runs, and ticking does not wait for it.
        r.tick_with(|| panic!("a second run while the first is going"));
        release.send(()).unwrap();
        assert!(done.recv().unwrap(), "the run was released by the caller, after tick returned");
        r.finish();
        assert!(!r.running());
    }

    #[test]
    fn runs_once_per_period() {
        let mut r = Retention::default();
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        r.tick_with(move || {
            t.send(1).unwrap();
            Ok(vec!["pruned".into()])
        });
        r.finish();
        r.tick_with(move || {
            tx.send(2).unwrap();
            Ok(vec![])
        });
        r.finish();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1]);
    }
}
