//! capstan: a lossless multitrack recorder for JACK.
//!
//! Data flow, one module per stage (docs/architecture.md has the module
//! graph):
//!
//! ```text
//! JACK ports ──► rt::capture (real-time callback) ──► rings (SPSC, per port + cycle log)
//!            ──► disk::DiskWriter (disk thread) ──► wav / flac writers ──► files
//! control: daemon (OSC) / session (NSM) / record ──► engine ──► disk commands
//! ```
//!
//! What runs on JACK's real-time thread is `rt::JackCapture::process` and
//! what it calls (`rt::Capture::process_cycle`, `rings::PortWriter::push_cycle`,
//! `rt::CallbackTimes::record`, the MIDI parser), checked by an allocation
//! guard in debug and test builds; the methods of `rt` that say "not
//! real-time" (summaries, windows, prefaulting) run on other threads.

// Every unsafe operation sits in its own block with a `// SAFETY:` comment
// saying why it is sound (rtrb's lints).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod disk;
pub mod durable;
pub mod engine;
pub mod export;
pub mod flac;
pub mod jack_meta;
pub mod lifecycle;
pub mod lock;
pub mod manifest;
pub mod naming;
pub mod offsite;
pub mod ports;
pub mod record;
pub mod recover;
pub mod retention;
pub mod rings;
pub mod rt;
pub mod session;
pub mod settings;
pub mod signals;
pub mod status;
pub mod takefiles;
pub mod tiers;
pub mod vocab;
pub mod volume;
pub mod wav;
pub mod web;

/// Test support: a seeded pseudo-random source for property and fuzz tests.
#[cfg(test)]
pub(crate) mod test_rng {
    /// xorshift64: the same sequence for the same seed, on every machine.
    pub fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }
}

/// The unit tests' allocator: the guard's, so an allocation inside
/// [`rt::guard`] aborts loudly. (The binaries declare it themselves, in
/// debug builds: a library that declares it would clash with its own test
/// build, which links the test bed and through it this library again.)
#[cfg(test)]
#[global_allocator]
static ALLOC_GUARD: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;
