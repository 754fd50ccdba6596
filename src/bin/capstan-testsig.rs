//! capstan-testsig: the project's deterministic JACK test-signal source and
//! its verifier (used by the tests, `make run` and `make bench`).
//!
//! ```text
//! capstan-testsig source --channels 64 [--name src]   # until SIGINT/SIGTERM
//! capstan-testsig verify FILE [--first-channel N] [--skip FRAMES]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use capstan::testsignal;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "capstan's deterministic JACK test signal and verifier")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a JACK client with output ports out_1..out_N carrying the signal.
    /// On SIGINT/SIGTERM prints `xruns N cycles N` and exits.
    Source {
        #[arg(long, default_value_t = 2)]
        channels: usize,
        #[arg(long, default_value = "src")]
        name: String,
    },
    /// Check a recording sample by sample; prints a JSON verdict, exits 1 if
    /// any frame is neither the signal nor silence, 2 if there is silence.
    Verify {
        file: std::path::PathBuf,
        /// Signal channel of the file's first channel.
        #[arg(long, default_value_t = 0)]
        first_channel: usize,
        /// Frames at the start not to check.
        #[arg(long, default_value_t = 0)]
        skip: u64,
    },
}

struct Source {
    ports: Vec<jack::Port<jack::AudioOut>>,
    cycles: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Source {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        capstan::rt::guard(|| {
            let t = ps.last_frame_time();
            for (c, p) in self.ports.iter_mut().enumerate() {
                testsignal::fill(p.as_mut_slice(ps), t, c);
            }
            self.cycles.fetch_add(1, Relaxed);
        });
        jack::Control::Continue
    }
}

struct Notes {
    xruns: Arc<AtomicU64>,
    gone: Arc<AtomicBool>,
}

impl jack::NotificationHandler for Notes {
    unsafe fn shutdown(&mut self, _: jack::ClientStatus, _: &str) {
        self.gone.store(true, Relaxed);
    }
    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.xruns.fetch_add(1, Relaxed);
        jack::Control::Continue
    }
}

fn source(channels: usize, name: &str) -> Result<()> {
    let client = capstan::engine::open_client(name, true)?;
    let ports = (1..=channels)
        .map(|i| client.register_port(&format!("out_{i}"), jack::AudioOut::default()))
        .collect::<Result<Vec<_>, _>>()
        .context("registering output ports")?;
    let term = capstan::signals::stop_flag()?;
    let cycles = Arc::new(AtomicU64::new(0));
    let xruns = Arc::new(AtomicU64::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let active = client
        .activate_async(
            Notes { xruns: xruns.clone(), gone: gone.clone() },
            Source { ports, cycles: cycles.clone() },
        )
        .map_err(|e| anyhow::anyhow!("activate: {e:?}"))?;
    println!("ready {}", active.as_client().name());
    while !term.load(Relaxed) && !gone.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("xruns {} cycles {}", xruns.load(Relaxed), cycles.load(Relaxed));
    if !gone.load(Relaxed) {
        let _ = active.deactivate();
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Source { channels, name } => source(channels, &name),
        Cmd::Verify { file, first_channel, skip } => {
            let v = testsignal::verify(&file, first_channel, skip)
                .with_context(|| format!("reading {}", file.display()))?;
            println!("{}", serde_json::to_string(&v)?);
            if v.mismatched > 0 {
                bail!(
                    "{}: {} frames are neither the signal nor silence; first: {:?}",
                    file.display(),
                    v.mismatched,
                    v.first_mismatch
                );
            }
            if !v.silent.is_empty() {
                eprintln!(
                    "{}: {} frames of silence in {} runs",
                    file.display(),
                    v.silent_frames(),
                    v.silent.len()
                );
                std::process::exit(2);
            }
            Ok(())
        }
    }
}
