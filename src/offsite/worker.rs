//! The daemon's off-site thread: sends every finished take that has no
//! verified copy yet, oldest first, one at a time, paced; looks again when
//! told a take finished and every half minute; after a failure, again
//! after 5 s, then less often (at most every 2 min). Never a recorder
//! thread: it reads finished files and writes only their manifests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ship::{pending, remove_moved, ship, Pace, Shipped};
use super::{OffsiteSettings, Target};

/// How often the queue is looked at without being told.
const LOOK_EVERY: Duration = Duration::from_secs(30);
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(120);

/// What the off-site thread last found, for status and alarms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Takes without a verified copy, as last counted.
    pub pending: usize,
    /// Takes copied and verified since the daemon started.
    pub copied: u64,
    /// The last attempt's failure, until a take is copied again.
    pub error: Option<String>,
}

pub struct Worker {
    nudge: Sender<()>,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
}

impl Worker {
    /// Starts the thread for the takes of `dir` (nothing if no URL is set).
    /// A URL or settings the store refuses are an error now.
    pub fn spawn(dir: PathBuf, settings: &OffsiteSettings) -> Result<Option<Worker>, super::OffsiteError> {
        let Some(url) = &settings.url else { return Ok(None) };
        let target = Target::open(url)?;
        let (nudge, rx) = channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (st, pr, mbps, age) =
            (stop.clone(), progress.clone(), settings.max_mbps, settings.delete_local_after);
        std::thread::Builder::new()
            .name("capstan-offsite".into())
            .spawn(move || {
                let mut retry = RETRY_FIRST;
                let mut wait = Duration::ZERO;
                while !st.load(Relaxed) {
                    match rx.recv_timeout(wait) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    while rx.try_recv().is_ok() {} // one look for many nudges
                    let sent = send_pending(&dir, &target, mbps, &st, &pr);
                    let sent = sent
                        .and_then(|()| age.map_or(Ok(()), |age| remove_moved_takes(&dir, &target, age, &pr)));
                    wait = match sent {
                        Ok(()) => {
                            retry = RETRY_FIRST;
                            LOOK_EVERY
                        }
                        Err(()) => {
                            let w = retry;
                            retry = (retry * 2).min(RETRY_MAX);
                            w
                        }
                    };
                }
            })
            .map_err(|e| super::OffsiteError::io(std::path::Path::new("the off-site thread"), e))?;
        tracing::info!(url = %url, "finished takes are copied off-site");
        Ok(Some(Worker { nudge, stop, progress }))
    }

    /// A take finished: look at the queue now.
    pub fn nudge(&self) {
        let _ = self.nudge.send(());
    }

    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for Worker {
    /// The thread stops after the object it is sending (an upload cut
    /// short is sent again whole by the next run); nobody waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Sends what is pending; `Err` after a failure (logged and kept in
/// `progress`), where the queue stops until the retry.
fn send_pending(
    dir: &std::path::Path,
    target: &Target,
    mbps: f64,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> Result<(), ()> {
    let set = |f: &dyn Fn(&mut Progress)| {
        if let Ok(mut p) = progress.lock() {
            f(&mut p)
        }
    };
    let (todo, _) = match pending(dir, &target.url) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("off-site: {e}");
            set(&|p| p.error = Some(e.to_string()));
            return Err(());
        }
    };
    set(&|p| p.pending = todo.len());
    let mut pace = Pace::new(mbps);
    for (i, t) in todo.iter().enumerate() {
        if stop.load(Relaxed) {
            return Ok(());
        }
        match ship(dir, t, target, &mut pace) {
            Ok(Shipped::Copied { objects, bytes, kept }) => {
                tracing::info!(take = %t.take, objects, bytes, kept, url = %target.url, "copied off-site and verified");
                set(&|p| {
                    p.copied += 1;
                    p.pending = todo.len() - i - 1;
                    p.error = None;
                });
            }
            Ok(Shipped::Already) => {}
            Err(e) => {
                let text = format!("take {} was not copied to {}: {e}", t.take, target.url);
                tracing::error!("off-site: {text}");
                set(&|p| p.error = Some(text.clone()));
                return Err(());
            }
        }
    }
    Ok(())
}

/// `--offsite-delete-local-after`: the local files of takes whose copy is
/// verified (again, now) and that are old enough go; `Err` after a
/// failure (logged and kept in `progress`: the take stays).
fn remove_moved_takes(
    dir: &std::path::Path,
    target: &Target,
    age: Duration,
    progress: &Mutex<Progress>,
) -> Result<(), ()> {
    match remove_moved(dir, target, age, std::time::SystemTime::now()) {
        Ok(removed) => {
            for take in removed {
                tracing::info!(take = %take, url = %target.url, "moved off-site: the copy was checked again and the local files removed");
            }
            Ok(())
        }
        Err(e) => {
            let text = format!("a take's local files were kept: {e}");
            tracing::error!("off-site: {text}");
            if let Ok(mut p) = progress.lock() {
                p.error = Some(text);
            }
            Err(())
        }
    }
}
