//! `capstan record`: one take from now until --duration, SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::disk::{DiskEvent, StopAt, Take, TakeReport, TakeSpec};
use crate::engine::{self, Engine};
use crate::{naming, ports, status};

/// `record` has no pre-flight: it only stops before the disk is actually full.
const RECORD_SPACE_GUARD: crate::disk::SpaceGuard =
    crate::disk::SpaceGuard { margin_seconds: 10.0, min_free_fraction: 0.0 };

/// How long a stop may take before we stop waiting for JACK's cycles.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// `capstan record`'s arguments.
#[derive(clap::Args, Debug, Clone)]
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
    pub dir: std::path::PathBuf,
    /// File name (inside --dir) instead of the default; never overwritten.
    /// In the mono layout it is the stem of the per-port names.
    #[arg(long)]
    pub file: Option<String>,
    #[command(flatten)]
    pub format: crate::settings::TakeFormat,
    /// Write the take to this directory too, as it is recorded (repeat for
    /// more copies; WAV only; see `capstan daemon --mirror`).
    #[arg(long, value_name = "DIR")]
    pub mirror: Vec<std::path::PathBuf>,
    /// Write the take to DIR too, in another format (see `capstan daemon
    /// --mirror-as`), e.g. flac,mono=/mnt/usb/rec.
    #[arg(long, value_name = "FORMAT=DIR")]
    pub mirror_as: Vec<crate::settings::MirrorAs>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    take: &'a TakeReport,
    channels: usize,
    sample_format: String,
    xruns: u64,
    jack_shutdown: bool,
    sources: &'a [String],
    /// This process's CPU time and peak memory (getrusage).
    cpu_user_s: f64,
    cpu_sys_s: f64,
    max_rss_kib: i64,
    /// Real-time callback duration (µs).
    callback: crate::rt::CallbackSummary,
    /// Ring high-water and write batches.
    disk: crate::vocab::DiskSummary,
}

pub fn run(args: RecordArgs, quiet: bool) -> Result<ExitCode> {
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds, got {d}");
        }
    }
    args.format.validate().map_err(|e| anyhow::anyhow!(crate::settings::flag_words(&e)))?;
    crate::wav::use_direct_io(!args.format.buffered_io);
    if !args.mirror.is_empty() && args.format.file_format == crate::vocab::FileFormat::Flac {
        bail!("--mirror copies WAV takes byte for byte; for a FLAC take use --mirror-as flac=DIR");
    }
    for m in &args.mirror {
        crate::lock::make_dir(m)?;
    }
    for m in &args.mirror_as {
        m.check(&args.format, 1).map_err(|e| anyhow::anyhow!(crate::settings::flag_words(&e)))?;
        crate::lock::make_dir(&m.dir)?;
    }
    if args.format.file_format == crate::vocab::FileFormat::Flac && args.format.sample_format.is_none() {
        tracing::info!("FLAC holds integers: recording s24 (--sample-format s16 for 16 bits)");
    }
    let ext = args.format.file_format.ext();
    let file = args.file.as_deref().map(|f| naming::validate_user_name(f, ext)).transpose()?;

    // The directory's lock first: a second capstan on the same directory
    // stops here, before it touches JACK. If JACK then turns out to be
    // missing, the claim removes what it created: nothing is left behind.
    let claim = crate::lock::Claim::acquire(&args.dir)?;
    let term = crate::signals::stop_flag()?;
    let created = claim.created();
    let client = crate::signals::exit_if_stopped_during(
        &term,
        "connecting to JACK",
        move || created.remove_if_unused(),
        || engine::open_client(&args.name, false),
    )?;
    let sources = if args.connect.is_empty() {
        Vec::new()
    } else {
        ports::select_sources(&args.connect, &engine::audio_outputs(&client))?
    };
    let n_ports = match args.ports {
        Some(p) => p as usize,
        None if !sources.is_empty() => sources.len(),
        None => 2,
    };
    if sources.len() > n_ports {
        return Err(ports::SelectError::TooMany { matched: sources.len(), ports: n_ports }.into());
    }
    args.format.check_channels(n_ports).map_err(anyhow::Error::msg)?;
    let engine = Engine::start(
        client,
        &crate::ports::default_names(n_ports),
        args.format.buffer_seconds,
        0.0,
        0.0,
        Some(RECORD_SPACE_GUARD),
        false,
    )?;
    let result = record_take(&engine, &args, file, &sources, quiet, term);
    engine.close();
    drop(claim);
    result
}

fn record_take(
    engine: &Engine,
    args: &RecordArgs,
    file: Option<String>,
    sources: &[String],
    quiet: bool,
    term: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<ExitCode> {
    engine.connect_sources(sources)?;
    if !sources.is_empty() && sources.len() < engine.port_names.len() {
        tracing::warn!(
            "{} of {} inputs connected; the rest record silence unless patched",
            sources.len(),
            engine.port_names.len()
        );
    }
    let connections = engine.connections();
    let spec = TakeSpec {
        mirrors: args.mirror.clone(),
        spill: vec![],
        companions: args
            .mirror_as
            .iter()
            .map(|m| {
                let (file_format, layout, format) = m.resolve(&args.format);
                crate::disk::take::companion::CompanionSpec {
                    dir: m.dir.clone(),
                    layout,
                    file_format,
                    format,
                }
            })
            .collect(),
        dir: args.dir.clone(),
        project: args.format.project_name().to_string(),
        file,
        layout: args.format.layout,
        format: args.format.sample_format(),
        sample_rate: engine.sample_rate,
        port_names: engine.port_names.clone(),
        max_frames: args.duration.map(|d| (d * engine.sample_rate as f64).round() as u64),
        take_id: None,
        track_names: engine.track_names(&connections),
        sources: connections,
        tape: String::new(),
        time_reference: args.format.time_reference,
        utc: args.format.utc,
        loudness: args.format.loudness.measures(engine.port_names.len()),
        file_format: args.format.file_format,
        started_by: "capstan record".into(),
    };
    let take = Take::create(spec, chrono::Local::now())?;
    let paths: Vec<String> = take.paths().iter().map(|p| p.display().to_string()).collect();

    // Start with the first cycle that is sure to see the new connections.
    let start_at = engine.frame_time().wrapping_add(2 * engine.buffer_size);
    engine.start_take(take, crate::disk::StartAt::Frame(start_at), 0);
    tracing::info!("recording {} ports into {}", engine.port_names.len(), paths.join(", "));

    let mut live = status::LiveStatus::new(quiet);
    let mut stop_sent: Option<Instant> = None;
    let mut jack_gone = false;
    let report = loop {
        match engine.next_event(Duration::from_millis(50)) {
            Some(DiskEvent::Finished(r)) => break r,
            Some(DiskEvent::Started { first_frame_time, .. }) => {
                tracing::debug!(first_frame_time, "first frame on disk");
            }
            Some(DiskEvent::Transport(_) | DiskEvent::Level(_) | DiskEvent::Marked { .. }) | None => {}
        }
        live.tick(engine);
        let died = engine.capture.callback_died.load(Relaxed);
        if !jack_gone && (engine.jack.shutdown.load(Relaxed) || died) {
            jack_gone = true;
            live.clear();
            let what = if died { "the JACK process callback panicked" } else { "JACK server shut down" };
            tracing::error!("{what} mid-take; finalizing what was recorded");
            engine.abort_take(&format!("{what} during the take; it holds everything up to then"));
        }
        if term.load(Relaxed) && stop_sent.is_none() && !jack_gone {
            live.clear();
            tracing::info!("stopping on signal");
            engine.stop_take(StopAt::Frame(engine.frame_time()));
            stop_sent = Some(Instant::now());
        }
        if stop_sent.is_some_and(|t| t.elapsed() > STOP_GRACE) {
            engine.stop_take(StopAt::Drained);
        }
    };
    live.clear();

    let xruns = engine.jack.xruns.load(Relaxed);
    if args.json {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        let j = JsonSummary {
            cpu_user_s: secs(usage.user_time()),
            cpu_sys_s: secs(usage.system_time()),
            max_rss_kib: usage.max_rss(),
            callback: engine.capture.callback.summary(),
            disk: engine.disk_stats.summary(),
            take: &report,
            channels: engine.port_names.len(),
            sample_format: args.format.sample_format().to_string(),
            xruns,
            jack_shutdown: jack_gone,
            sources,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!(
            "{}",
            status::summary(
                &report,
                engine.port_names.len(),
                &args.format.sample_format().to_string(),
                xruns
            )
        );
        print!("{}", status::costs(engine));
    }
    if jack_gone {
        bail!("the JACK server shut down during the take; {} frames were saved and finalized", report.frames);
    }
    if let Some(e) = &report.error {
        bail!("the take ended early: {e}; {} frames were saved and finalized", report.frames);
    }
    Ok(ExitCode::SUCCESS)
}
