//! Finalizing takes off the draining thread. A finished take's last
//! flushes, fdatasyncs (two per file) and manifest update can take seconds
//! on a slow or busy disk, or with hundreds of mono files; the disk thread
//! must go on draining the rings meanwhile, or they overflow and the next
//! take loses audio. So the disk thread hands the finished take here and
//! goes back to draining; this thread finalizes takes one at a time, in
//! order, and reports each one's end. Never real-time.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// Work for the finalizer: finalize one take and report it.
pub type Job = Box<dyn FnOnce() + Send>;

pub struct Finalizer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Finalizer {
    pub fn spawn() -> std::io::Result<Finalizer> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new().name("capstan-final".into()).spawn(move || {
            for job in rx {
                job();
            }
        })?;
        Ok(Finalizer { jobs: Some(tx), thread: Some(thread) })
    }

    /// Queues `job`. If the thread is gone (it panicked), the job runs
    /// here: a take is never left unfinalized.
    pub fn submit(&self, job: Job) {
        let Some(tx) = &self.jobs else { return job() };
        if let Err(e) = tx.send(job) {
            tracing::error!("finalizer thread is gone; finalizing on the disk thread");
            (e.0)();
        }
    }

    /// Waits until every queued take is final.
    pub fn finish(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        self.finish();
    }
}
