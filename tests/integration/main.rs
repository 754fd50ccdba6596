//! One integration-test binary (shared harness, one link step), driving the
//! built `capstan` against private dummy jackd servers.

mod alarms;
mod clients;
mod daemon;
mod export;
mod flac;
mod harness;
mod metadata;
mod mirror;
mod offsite;
mod overload;
mod record;
mod session;
mod storage;
mod timeline;
mod triggers;
mod usage;
mod web;
