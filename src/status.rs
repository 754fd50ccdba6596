//! What the user sees: the live one-line status and the end-of-take summary.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::disk::TakeReport;
use crate::engine::Engine;
use crate::vocab::GapCause;

/// Peak in dBFS, "-inf" for silence.
pub fn dbfs(peak: f32) -> String {
    if peak <= 0.0 {
        "-inf".into()
    } else {
        format!("{:.1}", 20.0 * peak.log10())
    }
}

pub fn clock(frames: u64, rate: u32) -> String {
    let tenths = frames * 10 / rate.max(1) as u64;
    let s = tenths / 10;
    format!("{:02}:{:02}:{:02}.{}", s / 3600, s / 60 % 60, s % 60, tenths % 10)
}

pub fn bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", b as f64 / 1024.0 / MIB)
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}

/// Live status: on a terminal a redrawn line and a meter per input (peak
/// hold, clip) below it, as jack_capture draws; a tracing line every few
/// seconds otherwise.
pub struct LiveStatus {
    tty: bool,
    quiet: bool,
    last: Instant,
    drawn: bool,
    screen: MeterScreen,
}

/// A status line with a meter per input below it, redrawn in place on a
/// terminal (`capstan record`, `capstan ctl watch`).
#[derive(Debug, Default)]
pub struct MeterScreen {
    /// Lines drawn below the status line last time (to draw over).
    below: usize,
    /// Each input's held peak and until when it holds.
    holds: Vec<(f32, Instant)>,
}

impl MeterScreen {
    /// The text that draws `line` and the meters over the last drawing.
    pub fn frame(
        &mut self,
        line: &str,
        names: &[String],
        levels: &[crate::disk::meter::InputLevel],
    ) -> String {
        let now = Instant::now();
        self.holds.resize(levels.len(), (0.0, now));
        for (h, l) in self.holds.iter_mut().zip(levels) {
            if l.peak >= h.0 || now >= h.1 {
                *h = (l.peak, now + HOLD);
            }
        }
        let holds: Vec<f32> = self.holds.iter().map(|h| h.0).collect();
        let meters = meter_lines(names, levels, &holds, 100);
        // Back to the status line, clear to the end, draw it all again.
        let mut out = String::new();
        if self.below > 0 {
            let _ = write!(out, "\x1b[{}F", self.below);
        }
        let _ = write!(out, "\r\x1b[J{line}");
        for m in &meters {
            let _ = write!(out, "\n{m}");
        }
        self.below = meters.len();
        out
    }
}

/// How long a meter holds its peak.
const HOLD: Duration = Duration::from_secs(2);
/// dBFS at a meter's left end.
const FLOOR_DB: f32 = -60.0;
/// Above this many inputs, one character each, in rows.
const COMPACT_ABOVE: usize = 16;

fn fraction(peak: f32) -> f32 {
    if peak <= 0.0 {
        return 0.0;
    }
    ((20.0 * peak.log10() - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0)
}

/// The meters as text lines: a bar per input with its held peak (`|`), its
/// level and `CLIP`, or, above 16 inputs, one character per input (a block
/// as high as its level, `!` if it clipped) in rows of 64.
pub fn meter_lines(
    names: &[String],
    levels: &[crate::disk::meter::InputLevel],
    holds: &[f32],
    width: usize,
) -> Vec<String> {
    const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if names.len() > COMPACT_ABOVE {
        let cells: Vec<char> = levels
            .iter()
            .map(|l| if l.clipped { '!' } else { BLOCKS[(fraction(l.peak) * 8.0).round() as usize] })
            .collect();
        return cells
            .chunks(64)
            .enumerate()
            .map(|(k, row)| format!("{:>4} {}", k * 64 + 1, row.iter().collect::<String>()))
            .collect();
    }
    let bar = width.saturating_sub(32).clamp(10, 60);
    names
        .iter()
        .zip(levels)
        .enumerate()
        .map(|(i, (name, l))| {
            let filled = (fraction(l.peak) * bar as f32).round() as usize;
            let hold =
                ((fraction(holds.get(i).copied().unwrap_or(0.0)) * bar as f32).round() as usize).min(bar);
            let mut cells: Vec<char> = (0..bar).map(|k| if k < filled { '█' } else { '·' }).collect();
            if hold > 0 && hold > filled {
                cells[hold - 1] = '|';
            }
            format!(
                "{:<10} {} {:>6}{}",
                name.chars().take(10).collect::<String>(),
                cells.iter().collect::<String>(),
                dbfs(l.peak),
                if l.clipped { " CLIP" } else { "" }
            )
        })
        .collect()
}

impl LiveStatus {
    pub fn new(quiet: bool) -> LiveStatus {
        use std::io::IsTerminal;
        LiveStatus {
            tty: std::io::stderr().is_terminal(),
            quiet,
            last: Instant::now(),
            drawn: false,
            screen: MeterScreen::default(),
        }
    }

    /// Call often; draws at most every 200 ms (terminal) or 5 s (log).
    pub fn tick(&mut self, engine: &Engine) {
        if self.quiet {
            return;
        }
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(5) };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let d = &engine.disk_stats;
        let frames = d.frames.load(Relaxed);
        let lost = d.lost_frames();
        let line = format!(
            "REC {}  {}  peak {} dBFS  lost {}  xruns {}",
            clock(frames, engine.sample_rate),
            bytes(d.bytes.load(Relaxed)),
            dbfs(d.take_peak()),
            lost,
            engine.jack.xruns.load(Relaxed)
        );
        if self.tty {
            let snap = d.levels.snapshot();
            eprint!("{}", self.screen.frame(&line, &engine.port_names, &snap.inputs));
            self.drawn = true;
        } else {
            tracing::info!("{line}");
        }
    }

    /// Ends the status line so the summary starts on a fresh line.
    pub fn clear(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// The human summary of a finished take.
pub fn summary(r: &TakeReport, channels: usize, format: &str, xruns: u64) -> String {
    let mut s = String::new();
    let secs = r.frames as f64 / r.sample_rate.max(1) as f64;
    let _ = writeln!(s, "take {}", r.name);
    for f in &r.files {
        let _ = writeln!(
            s,
            "  file    {} ({}{})",
            f.path.display(),
            bytes(f.bytes),
            if f.rf64 { ", RF64" } else { "" }
        );
    }
    let _ = writeln!(s, "  format  {channels} ch, {format}, {} Hz", r.sample_rate);
    let _ = write!(s, "  frames  {} ({secs:.3} s)", r.frames);
    match r.first_frame_time {
        Some(t) => {
            let _ = writeln!(s, ", first frame at JACK frame time {t}");
        }
        None => {
            let _ = writeln!(s, ", no cycle reached the disk");
        }
    }
    let overflow = r.lost_frames(GapCause::DiskOverrun);
    let skipped: u64 = r.gaps.iter().filter(|g| g.cause.by_jack()).map(|g| g.frames).sum();
    let _ = writeln!(s, "  xruns   {xruns} reported by JACK");
    let _ = writeln!(
        s,
        "  lost    {} frames ({overflow} ring overflow, {skipped} skipped by JACK); silence written in their place",
        overflow + skipped
    );
    if r.repeated_frames > 0 {
        let _ = writeln!(
            s,
            "  repeat  {} frames JACK delivered twice (a late cycle run again); written once, at their place",
            r.repeated_frames
        );
    }
    for (i, seg) in r.segments.iter().enumerate() {
        let _ = writeln!(
            s,
            "  segment {}: {} frames at {} Hz from JACK frame time {}, {}",
            i + 1,
            seg.frames,
            seg.sample_rate,
            seg.first_frame_time.map_or("-".into(), |t| t.to_string()),
            seg.files.first().map_or(String::new(), |f| f.path.display().to_string())
        );
    }
    for g in r.gaps.iter().take(20) {
        let _ = writeln!(s, "    at frame {}: {} frames, {}", g.at, g.frames, g.cause);
    }
    if r.gaps.len() > 20 {
        let _ = writeln!(s, "    … {} more gaps", r.gaps.len() - 20);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "  error   {e}");
    }
    s
}

/// What the recording cost: callback time, ring use, write batches.
pub fn costs(engine: &Engine) -> String {
    let c = engine.capture.callback.summary();
    let d = engine.disk_stats.summary();
    let ring_s = d.ring_high_water_frames as f64 / engine.sample_rate.max(1) as f64;
    format!(
        "  rt      callback p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} cycles\n  \
         disk    ring high-water {:.1}% ({ring_s:.2} s), write batch mean {:.0} µs, max {:.1} ms\n",
        c.p50_us,
        c.p99_us,
        c.max_us,
        c.cycles,
        d.ring_high_water_percent,
        d.write_mean_us,
        d.write_max_us / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::meter::InputLevel;

    /// Bars show the level, the held peak and a clip; many inputs get one
    /// character each.
    #[test]
    fn meters_in_the_terminal() {
        let names: Vec<String> = ["kick", "snare"].iter().map(|s| s.to_string()).collect();
        let l = |peak: f32, clipped| InputLevel { peak, rms: peak, clipped };
        let lines = meter_lines(&names, &[l(0.1, false), l(1.0, true)], &[0.5, 1.0], 92);
        assert_eq!(lines.len(), 2);
        // -20 dBFS is two thirds of a 60-cell bar; the hold at -6 dB later.
        assert_eq!(lines[0].chars().filter(|c| *c == '█').count(), 40, "{}", lines[0]);
        assert_eq!(lines[0].chars().position(|c| c == '|'), Some(11 + 54 - 1), "{}", lines[0]);
        assert!(lines[0].ends_with(" -20.0"), "{}", lines[0]);
        assert!(lines[1].ends_with("0.0 CLIP"), "{}", lines[1]);
        let many: Vec<String> = (1..=70).map(|i| format!("in_{i}")).collect();
        let mut levels = vec![l(0.0, false); 70];
        levels[0] = l(1.0, false);
        levels[69] = l(0.5, true);
        let rows = meter_lines(&many, &levels, &[], 100);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].chars().nth(5), Some('█'));
        assert_eq!(rows[1], format!("  65 {}!", " ".repeat(5)));
    }

    #[test]
    fn formats_levels_and_times() {
        assert_eq!(dbfs(1.0), "0.0");
        assert_eq!(dbfs(0.5), "-6.0");
        assert_eq!(dbfs(0.0), "-inf");
        assert_eq!(clock(48000 * 3725 + 24000, 48000), "01:02:05.5");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
