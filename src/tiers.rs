//! `capstan tiers`: the lifecycle and the off-site tier on demand (what
//! the daemon's `--tier` and `--offsite` do in the background).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::lifecycle::{self, Lifecycle};
use crate::offsite::{fetch, pending, ship, status, verify, Pace, Shipped, Target};

#[derive(Subcommand, Debug)]
pub enum TiersCommand {
    /// Where each finished take is: with --tier, in which tier and where
    /// it is due; with --offsite, local only or also verified at URL.
    Status {
        /// The take directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The object store (s3://BUCKET/PREFIX or az://CONTAINER/PREFIX).
        #[arg(long = "offsite", value_name = "URL", required_unless_present = "tiers")]
        url: Option<String>,
        /// Read every recorded copy back and check it (exit 1 if one
        /// differs or is gone).
        #[arg(long, requires = "url")]
        verify: bool,
        #[command(flatten)]
        lifecycle: Lifecycle,
    },
    /// Apply the lifecycle now: every finished take moved to the tier its
    /// age asks for (a verified copy first, the original removed after),
    /// and deleted after --delete-after.
    Run {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        lifecycle: Lifecycle,
        /// A take leaves DIR only once its copy at URL is recorded (the
        /// daemon's --offsite).
        #[arg(long = "offsite", value_name = "URL")]
        url: Option<String>,
        /// Print what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy every finished take without a verified copy to URL now.
    Push {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long = "offsite", value_name = "URL")]
        url: String,
        /// Upload at most this many MB/s (0: no limit).
        #[arg(long, default_value_t = 0.0)]
        max_mbps: f64,
    },
    /// Bring a take back from URL into DIR, every file verified.
    Fetch {
        /// The take's name (as in NAME.take.json).
        take: String,
        /// Where to put it (created if missing; no file is replaced).
        into: PathBuf,
        #[arg(long = "offsite", value_name = "URL")]
        url: String,
    },
}

pub fn run(cmd: TiersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TiersCommand::Status { dir, url, verify: check, lifecycle } => {
            // Both views when both are asked for: the tiers, then the copies.
            if url.is_none() || !lifecycle.is_empty() {
                print_tiers(&dir, &lifecycle)?;
            }
            let bad = match url {
                Some(url) => print_copies(&dir, &url, check)?,
                None => 0,
            };
            Ok(if bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        TiersCommand::Run { dir, lifecycle, url, dry_run } => {
            if lifecycle.is_empty() {
                bail!("no tier given (--tier AGE=PLACE, --delete-after AGE)");
            }
            lifecycle.validate().map_err(|e| anyhow::anyhow!(crate::settings::flag_words(&e)))?;
            crate::lock::check_dir(&dir)?;
            // Never beside a running recorder: its housekeeping moves them.
            let _lock = if dry_run { None } else { Some(crate::lock::acquire_for_takes(&dir)?) };
            let store = lifecycle::store_of(&lifecycle)?;
            let now = std::time::SystemTime::now();
            let lines =
                lifecycle::apply_with(&dir, &lifecycle, store.as_ref(), url.as_deref(), now, dry_run)?;
            if lines.is_empty() {
                println!("nothing to move in {}", dir.display());
            }
            lines.iter().for_each(|l| println!("{l}"));
            let failed = lines.iter().any(|l| l.starts_with("failed: "));
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        TiersCommand::Push { dir, url, max_mbps } => {
            crate::lock::check_dir(&dir)?;
            // Never beside a running recorder: its own off-site thread
            // sends them, and two senders would race on the manifests.
            let _lock = crate::lock::acquire_for_takes(&dir)?;
            let target = Target::open(&url)?;
            let (todo, left) = pending(&dir, &url)?;
            left.iter().for_each(|l| println!("{l}"));
            let mut pace = Pace::new(max_mbps);
            for t in &todo {
                match ship(&dir, t, &target, &mut pace)
                    .with_context(|| format!("take {} was not copied (its files are untouched)", t.take))?
                {
                    Shipped::Copied { objects, bytes, kept } => {
                        let resumed = if kept > 0 {
                            format!("; {kept} bytes were there from an upload cut short")
                        } else {
                            String::new()
                        };
                        println!(
                            "{}  copied to {url} and verified ({objects} objects, {bytes} bytes{resumed})",
                            t.take
                        )
                    }
                    Shipped::Already => {}
                }
            }
            if todo.is_empty() {
                println!("nothing to copy: every finished take in {} is at {url}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        TiersCommand::Fetch { take, into, url } => {
            let target = Target::open(&url)?;
            if into.join(format!("{take}{}", crate::vocab::MANIFEST_SUFFIX)).exists() {
                bail!("{} already holds take {take}; nothing fetched", into.display());
            }
            for f in fetch(&target, &take, &into)? {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where each finished take is in the lifecycle, a line each.
fn print_tiers(dir: &std::path::Path, lifecycle: &Lifecycle) -> anyhow::Result<()> {
    lifecycle.validate().map_err(|e| anyhow::anyhow!(crate::settings::flag_words(&e)))?;
    let store = lifecycle::store_of(lifecycle)?;
    let now = std::time::SystemTime::now();
    for w in lifecycle::whereabouts(dir, lifecycle, store.as_ref(), now)? {
        let due = match w.due {
            None => "due for deletion".to_string(),
            Some(d) if d == w.tier => "in place".to_string(),
            Some(0) => "due back in the takes' directory (left there)".to_string(),
            Some(d) => format!("due in {}", lifecycle.tiers[d - 1].place),
        };
        let tier = if w.tier == 0 { "hot".to_string() } else { format!("tier {}", w.tier) };
        println!("{}  {tier}: {}  ({} old, {due})", w.take, w.place, lifecycle::age(w.age));
    }
    Ok(())
}

/// Each finished take's copy at `url`, a line each (`check`: read back
/// and verified now). Returns how many copies are bad.
fn print_copies(dir: &std::path::Path, url: &str, check: bool) -> anyhow::Result<usize> {
    let target = Target::open(url)?;
    let mut bad = 0;
    for t in status(dir, url)? {
        match &t.copy {
            None => println!("{}  local only (pending)", t.take),
            Some(c) if check => match verify(&target, c) {
                Ok(()) => println!("{}  verified now at {url} ({} objects)", t.take, c.objects.len()),
                Err(e) => {
                    bad += 1;
                    println!("{}  COPY BAD at {url}: {e}", t.take);
                }
            },
            Some(c) => println!("{}  copied to {url}, verified {}", t.take, c.verified),
        }
    }
    Ok(bad)
}
