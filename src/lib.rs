//! capstan: a lossless multitrack recorder for JACK.
//!
//! Data flow, one module per stage:
//!
//! ```text
//! JACK ports ──► rt::capture (real-time callback) ──► rings (SPSC, per port + cycle log)
//!            ──► disk::DiskWriter (disk thread) ──► wav::WavWriter ──► files
//! ```
//!
//! Everything under [`rt`] runs on JACK's real-time thread and is checked by
//! an allocation guard in debug and test builds. Nothing else does.

pub mod wav;
