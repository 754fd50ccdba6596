//! Everything that runs on JACK's real-time thread, and the guard that checks
//! it. Rules for what runs there: no allocation, no lock, no syscall, no
//! I/O, no logging; atomics and memcpy only. In debug and test builds every
//! callback runs inside [`guard`], which aborts the process on any
//! allocation. The read side of the callback's counters (summaries, windows,
//! prefaulting) lives beside it and runs on other threads; each such method
//! says "not real-time".

pub mod capture;
pub mod midi;

pub use capture::{CallbackSummary, Capture, CaptureCounters, JackCapture};

/// Runs `f` with allocation forbidden (debug and test builds); a no-op wrapper
/// in release builds. Real-time safe.
#[inline(always)]
pub fn guard<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(debug_assertions)]
    {
        assert_no_alloc::assert_no_alloc(f)
    }
    #[cfg(not(debug_assertions))]
    {
        f()
    }
}

#[cfg(test)]
mod tests {
    /// The guard must actually fire: run a child copy of this test binary that
    /// allocates inside it and check that the child was aborted.
    #[test]
    fn allocation_inside_guard_aborts() {
        if std::env::var_os("CAPSTAN_GUARD_CHILD").is_some() {
            let v = super::guard(|| vec![1u8; 16]);
            println!("not aborted {}", v.len());
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "rt::tests::allocation_inside_guard_aborts", "--nocapture"])
            .env("CAPSTAN_GUARD_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("not aborted"), "guard did not fire: {stdout}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(nix::libc::SIGABRT), "{:?}", out.status);
    }

    #[test]
    fn no_allocation_passes_the_guard() {
        let x = super::guard(|| 2 + 2);
        assert_eq!(x, 4);
    }
}
