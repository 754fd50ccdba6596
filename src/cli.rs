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
    /// Stay up with one JACK client and record takes on OSC commands.
    Daemon(DaemonArgs),
    /// Send a command to a running daemon and print its reply.
    Ctl(CtlArgs),
    /// Apply a retention policy: delete finished takes, or move them to an
    /// archive directory. Only takes with a capstan manifest are touched.
    Prune {
        /// The take directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        policy: crate::retention::Policy,
    },
    /// Repair takes a crash left open (manifest says "recording").
    Recover {
        /// A take directory, a manifest or an audio file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// JACK client name.
    #[arg(long, default_value = "capstan")]
    pub name: String,
    /// Number of input ports (in_1 … in_N).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ports: u16,
    /// Names for the inputs, in order (e.g. kick,snare); the rest are in_K.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub port_names: Vec<String>,
    /// Connect output ports matching PATTERN to the inputs at start-up.
    #[arg(long, short = 'c', value_name = "PATTERN")]
    pub connect: Vec<String>,
    /// Directory for the takes (created if missing; locked against a second
    /// capstan).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// UDP port for OSC commands.
    #[arg(long, default_value_t = 7770)]
    pub osc_port: u16,
    /// Address to listen on. The default accepts commands from this machine
    /// only; 0.0.0.0 lets anyone on the network start and stop takes.
    #[arg(long, default_value = "127.0.0.1")]
    pub osc_bind: String,
    /// Keep this many seconds of every input in memory while idle; a take
    /// then starts that far in the past (timemachine mode).
    #[arg(long, default_value_t = 0.0, value_parser = parse_preroll)]
    pub preroll: f64,
    #[command(flatten)]
    pub format: TakeFormat,
    /// Refuse a take unless the disk holds this many minutes of it (+20%).
    #[arg(long, default_value_t = 10.0)]
    pub min_minutes: f64,
    /// …and keeps this fraction of the volume free (also checked while
    /// recording).
    #[arg(long, default_value_t = 0.15)]
    pub min_free_fraction: f64,
    /// While recording, stop the take cleanly when the free space would
    /// last less than this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub disk_margin_seconds: f64,
    /// Retention, applied at start-up and every hour (see `capstan prune`).
    #[command(flatten)]
    pub retention: crate::retention::Policy,
}

fn parse_preroll(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (0.0..=600.0).contains(&v) {
        Ok(v)
    } else {
        Err("pre-roll must be between 0 and 600 seconds".into())
    }
}

#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// Where the daemon listens.
    #[arg(long, default_value = "127.0.0.1:7770")]
    pub osc: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Print the reply as one JSON object with named values (frame and byte
    /// counts as exact integers).
    #[arg(long)]
    pub json: bool,
    /// start [take_id] [file] | stop [take_id] | rotate [take_id] [file] |
    /// status | list | reset
    pub command: String,
    pub args: Vec<String>,
}

/// How takes are written (shared by `record` and `daemon`).
#[derive(Args, Debug, Clone)]
pub struct TakeFormat {
    /// Project name used in default file names.
    #[arg(long, default_value = "capstan")]
    pub project: String,
    #[arg(long, value_enum, default_value_t = Layout::Interleaved)]
    pub layout: Layout,
    /// float32 (default, lossless), s16, s24 or s32.
    #[arg(long, default_value_t = SampleFormat::F32)]
    pub sample_format: SampleFormat,
    /// Seconds of audio the ring buffers hold per port.
    #[arg(long, default_value_t = 4.0)]
    pub buffer_seconds: f64,
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
    /// File name (inside --dir) instead of the default; never overwritten.
    /// In the mono layout it is the stem of the per-port names.
    #[arg(long)]
    pub file: Option<String>,
    #[command(flatten)]
    pub format: TakeFormat,
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
    if crate::session::launched_by_nsm() {
        init_logging(false, 0);
        return crate::session::run();
    }
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    match cli.command {
        Command::Record(args) => crate::record::run(args, cli.quiet),
        Command::Daemon(args) => crate::daemon::run(args, cli.quiet),
        Command::Ctl(args) => crate::ctl::run(args),
        Command::Recover { path } => crate::recover::run(&path),
        Command::Prune { dir, dry_run, policy } => {
            if policy.is_empty() {
                anyhow::bail!("no retention rule given (--keep-last, --max-age, --max-total, --keep-free)");
            }
            // Never under a running recorder: it prunes its own directory.
            let _lock = if dry_run { None } else { Some(crate::lock::acquire(&dir)?) };
            let lines = crate::retention::apply(&dir, &policy, dry_run)?;
            if lines.is_empty() {
                println!("nothing to prune in {}", dir.display());
            }
            lines.iter().for_each(|l| println!("{l}"));
            Ok(ExitCode::SUCCESS)
        }
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
