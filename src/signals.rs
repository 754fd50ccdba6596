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
