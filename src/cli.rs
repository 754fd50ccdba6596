//! Command-line interface. `capstan <command>`; each command lives in its own
//! module and returns `anyhow::Result`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::disk::Layout;
use crate::wav::SampleFormat;

#[derive(Parser, Debug)]
#[command(name = "capstan", version, about = "Lossless multitrack recorder for JACK")]
pub struct Cli {
    /// No live status line and no progress logging; errors are still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Record one take from JACK input ports until --duration or Ctrl-C.
    Record(RecordArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// JACK client name (JACK renames it, e.g. capstan-01, if taken).
    #[arg(long, default_value = "capstan")]
    pub name: String,
    /// Number of input ports (in_1 … in_N). Default: as many as --connect
    /// matches, or 2.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ports: Option<u16>,
    /// Connect the JACK output ports matching this pattern (`*` is a
    /// wildcard) to in_1, in_2, … in order. Repeatable. A pattern that matches
    /// nothing is an error.
    #[arg(long, short = 'c', value_name = "PATTERN")]
    pub connect: Vec<String>,
    /// Stop after this many seconds (exactly duration × rate frames).
    #[arg(long, short = 'd', value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Directory for the takes (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Project name used in default file names.
    #[arg(long, default_value = "capstan")]
    pub project: String,
    /// File name (inside --dir) instead of the default; never overwritten.
    /// In the mono layout it is the stem of the per-port names.
    #[arg(long)]
    pub file: Option<String>,
    #[arg(long, value_enum, default_value_t = Layout::Interleaved)]
    pub layout: Layout,
    /// float32 (default, lossless), s16, s24 or s32.
    #[arg(long, default_value_t = SampleFormat::F32)]
    pub sample_format: SampleFormat,
    /// Seconds of audio the ring buffers hold per port.
    #[arg(long, default_value_t = 4.0)]
    pub buffer_seconds: f64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Test hook: start the file with this many frames of sparse silence
    /// (reaches the 4 GiB RF64 promotion quickly).
    #[arg(long, hide = true, default_value_t = 0)]
    pub test_lead_in_frames: u64,
}

/// Parses the command line, sets up logging and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    match cli.command {
        Command::Record(args) => crate::record::run(args, cli.quiet),
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    // libjack's own messages (through the jack crate's `log` output) repeat
    // what capstan's errors already say; show them with -v.
    let default = match (quiet, verbose) {
        (true, 0) => "warn,jack=off",
        (false, 0) => "info,jack=off",
        (_, 1) => "debug,jack=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
