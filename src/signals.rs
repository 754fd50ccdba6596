//! Signal handling shared by every long-running command.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A flag raised by SIGINT or SIGTERM (finish and exit). SIGHUP is ignored:
/// a closed terminal must not end a take.
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::new(AtomicBool::new(false)))?;
    Ok(term)
}

/// Runs `f`, which may block in a library that ignores signals (libjack's
/// client open can hang for many seconds against a busy or dying server).
/// If `term` is raised meanwhile, `undo` runs and the process exits with
/// code 1 within 0.1 s. So `f` must be something that leaves nothing
/// half-written, like opening a JACK client before any file exists.
pub fn exit_if_stopped_during<T>(
    term: &Arc<AtomicBool>,
    what: &str,
    undo: impl FnOnce() + Send + 'static,
    f: impl FnOnce() -> T,
) -> T {
    use std::sync::atomic::Ordering::Relaxed;
    let done = Arc::new(AtomicBool::new(false));
    let (t, d, what) = (term.clone(), done.clone(), what.to_owned());
    std::thread::spawn(move || {
        while !d.load(Relaxed) {
            if t.load(Relaxed) {
                undo();
                eprintln!("capstan: stopped by a signal while {what}; nothing was recorded");
                std::process::exit(1);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let out = f();
    done.store(true, Relaxed);
    out
}
