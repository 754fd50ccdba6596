//! Command-line interface. `capstan <command>`; each command lives in its own
//! module and returns `anyhow::Result`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::ctl::CtlArgs;
use crate::daemon::DaemonArgs;
use crate::record::RecordArgs;

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

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Go ahead even if every take in the directory would go (asked for
        /// on a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        policy: crate::retention::Policy,
    },
    /// Export finished takes for a DAW: every take at its time of day on one
    /// timeline, a track per input, markers, takes and gaps in place. The
    /// project refers to the take files where they are.
    Export {
        /// Takes: manifests, their audio files, or directories of takes.
        #[arg(required = true)]
        takes: Vec<PathBuf>,
        /// Write an Ardour session in this directory (created if need be;
        /// named after it, or --name).
        #[arg(long, value_name = "DIR")]
        ardour: Option<PathBuf>,
        /// The Ardour session's name (default: its directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Copy the take files into the Ardour session (its
        /// interchange/NAME/audiofiles) instead of referring to them.
        #[arg(long, requires = "ardour")]
        copy: bool,
        /// Only the takes that run at or after this time of day (HH:MM[:SS]).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only the takes that begin before this time of day (HH:MM[:SS]).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Write a REAPER project (.RPP) here.
        #[arg(long, value_name = "FILE")]
        reaper: Option<PathBuf>,
        /// Write an Audacity label track here.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Write the takes, markers and gaps as CSV here.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
    /// The off-site tier: copy finished takes to an object store (S3 or
    /// Azure Blob), verified; show where each take is; bring one back.
    Tiers {
        #[command(subcommand)]
        action: crate::tiers::TiersCommand,
    },
    /// Repair takes a crash left open (manifest says "recording").
    Recover {
        /// A take directory, a manifest or an audio file.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

/// Parses the command line, sets up logging and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    if crate::session::launched_by_nsm() {
        let _log = init_logging(false, 0);
        return crate::session::run();
    }
    let cli = Cli::parse();
    let _log = init_logging(cli.quiet, cli.verbose);
    match cli.command {
        Command::Record(args) => crate::record::run(args, cli.quiet),
        Command::Daemon(args) => crate::daemon::run(args, cli.quiet),
        Command::Ctl(args) => crate::ctl::run(args),
        Command::Recover { path } => crate::recover::run(&path),
        Command::Tiers { action } => crate::tiers::run(action),
        Command::Export { takes, ardour, name, copy, from, to, reaper, labels, csv } => {
            use crate::export;
            if ardour.is_none() && reaper.is_none() && labels.is_none() && csv.is_none() {
                anyhow::bail!(
                    "nothing to write: give --ardour DIR, --reaper FILE, --labels FILE or --csv FILE"
                );
            }
            let mut show = export::Show::load(&takes)?;
            if from.is_some() || to.is_some() {
                show.keep_between(from.as_deref(), to.as_deref()).map_err(anyhow::Error::msg)?;
            }
            if let Some(dir) = ardour {
                let name = match name {
                    Some(n) => n,
                    None => std::path::absolute(&dir)?
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .ok_or_else(|| {
                            anyhow::anyhow!("--ardour {}: give the session a --name", dir.display())
                        })?,
                };
                if name.is_empty() || name.contains(['/', '\\']) {
                    anyhow::bail!("--name {name:?}: a session name cannot be empty or hold a slash");
                }
                if copy {
                    show.copy_files(&dir.join("interchange").join(&name).join("audiofiles"))?;
                }
                let file = export::ardour::write_session(&dir, &name, &show)?;
                println!("{}: {} takes, {} tracks", file.display(), show.takes.len(), show.tracks.len());
            }
            let outputs: [(Option<PathBuf>, export::Render); 3] = [
                (reaper, export::reaper::project),
                (labels, export::labels::audacity),
                (csv, export::labels::csv),
            ];
            for (path, render) in outputs {
                if let Some(path) = path {
                    export::write(&path, &render(&show))?;
                    println!("{}: {} takes, {} tracks", path.display(), show.takes.len(), show.tracks.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune { dir, dry_run, yes, policy } => {
            if policy.is_empty() {
                anyhow::bail!("no retention rule given (--keep-last, --max-age, --max-total, --keep-free)");
            }
            policy.validate().map_err(|e| anyhow::anyhow!(crate::settings::flag_words(&e)))?;
            crate::lock::check_dir(&dir)?;
            // Never under a running recorder: it prunes its own directory.
            let _lock = if dry_run { None } else { Some(crate::lock::acquire_for_takes(&dir)?) };
            let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
            if !dry_run && !yes && interactive {
                if let Some(n) = crate::retention::removes_every_take(&dir, &policy)? {
                    anyhow::bail!(
                        "this would remove all {n} takes in {}; look first with --dry-run, then add --yes",
                        dir.display()
                    );
                }
            }
            let lines = crate::retention::apply(&dir, &policy, dry_run)?;
            if lines.is_empty() {
                println!("nothing to prune in {}", dir.display());
            }
            lines.iter().for_each(|l| println!("{l}"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Lines the log holds for stderr before it drops new ones.
const LOG_LINES_BUFFERED: usize = 4096;

/// Sets up the log. Lines go to stderr from a thread of their own: a
/// stderr that blocks (a session manager's pipe nobody drains, a stuck
/// terminal) must never stop the control loop or the disk thread, so when
/// it does, lines beyond the buffer are dropped. The returned guard writes
/// out what is buffered when it is dropped (at most a second).
fn init_logging(quiet: bool, verbose: u8) -> Option<tracing_appender::non_blocking::WorkerGuard> {
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
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("capstan-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .with_target(false)
        .try_init()
        .ok()
        .map(|()| guard)
}
