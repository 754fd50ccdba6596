use std::process::ExitCode;

/// In debug builds every allocation goes through the guard's allocator, so
/// an allocation inside the real-time callback (`capstan::rt::guard`)
/// aborts loudly; every integration test runs this debug binary.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOC_GUARD: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn main() -> ExitCode {
    match capstan::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capstan: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
