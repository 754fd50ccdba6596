//! A picture of every take: each input's level over time as one row of a
//! heat map, labelled with the input's name, gaps in red and markers in
//! white above it, written as `NAME.png` beside the take's files.
//!
//! Built from the meters' data (the largest peak of every input in columns
//! of 0.1 s, which the meter collects as the cycles arrive), never from
//! the audio again. Disk thread ([`Columns`]) and finalizer thread
//! ([`render`], [`write_png`]).

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use font8x8::UnicodeFonts;

use crate::vocab::Gap;

/// Columns a second.
const COLUMNS_PER_SECOND: u32 = 10;
/// A take keeps at most this many columns: beyond, neighbours merge and a
/// column covers twice the time (so a day-long take costs as much memory as
/// a 7-minute one).
const MAX_COLUMNS: usize = 4096;

/// One column: where it starts (the timeline's position) and every
/// input's largest |sample| in it.
#[derive(Debug, Clone)]
struct Column {
    at: u64,
    peaks: Box<[f32]>,
}

/// The level columns of the newest audio, and of the running take from its
/// first frame on.
#[derive(Debug)]
pub struct Columns {
    inputs: usize,
    /// Frames a new column covers (0.1 s).
    frames: u64,
    /// Frames a kept column covers (doubled by each merge).
    span: u64,
    /// The column being filled: its start and its peaks so far.
    open: Option<Column>,
    open_frames: u64,
    done: VecDeque<Column>,
}

/// What a take's picture is drawn from.
#[derive(Debug, Clone, Default)]
pub struct Levels {
    /// Frames per column.
    pub column_frames: u64,
    /// Column-major: `peaks[k * inputs + i]`.
    pub peaks: Vec<f32>,
    pub columns: usize,
}

impl Columns {
    pub fn new(inputs: usize, sample_rate: u32) -> Columns {
        Columns {
            inputs,
            frames: (sample_rate / COLUMNS_PER_SECOND).max(1) as u64,
            span: (sample_rate / COLUMNS_PER_SECOND).max(1) as u64,
            open: None,
            open_frames: 0,
            done: VecDeque::new(),
        }
    }

    /// The rate changed: columns stay 0.1 s long from the next one on.
    pub fn set_rate(&mut self, sample_rate: u32) {
        self.frames = (sample_rate / COLUMNS_PER_SECOND).max(1) as u64;
        self.span = self.span.max(self.frames);
    }

    /// `n` frames from position `at` whose inputs peaked at `peaks`.
    pub fn add(&mut self, at: u64, n: u64, peaks: &[f32]) {
        let c = self.open.get_or_insert_with(|| Column { at, peaks: vec![0.0; peaks.len()].into() });
        for (p, &x) in c.peaks.iter_mut().zip(peaks) {
            *p = p.max(x);
        }
        self.open_frames += n;
        if self.open_frames >= self.span {
            self.done.extend(self.open.take());
            self.open_frames = 0;
        }
        if self.done.len() > 2 * MAX_COLUMNS {
            self.merge();
        }
    }

    /// Neighbouring columns merge (their peaks' maximum): half as many,
    /// each twice as long.
    fn merge(&mut self) {
        let old: Vec<Column> = self.done.drain(..).collect();
        for pair in old.chunks(2) {
            let mut c = pair[0].clone();
            if let Some(b) = pair.get(1) {
                for (p, &x) in c.peaks.iter_mut().zip(b.peaks.iter()) {
                    *p = p.max(x);
                }
            }
            self.done.push_back(c);
        }
        self.span *= 2;
    }

    /// Forgets columns that end before `pos` (nothing will need them: no
    /// take, or before the running take's first frame).
    pub fn forget_before(&mut self, pos: u64) {
        while self.done.len() > 1 && self.done[1].at <= pos {
            self.done.pop_front();
        }
    }

    /// The columns of `frames` frames from position `first` on, for a
    /// take's picture, on an even grid (stretches without audio, gaps, are
    /// silence there).
    pub fn take_levels(&self, first: u64, frames: u64) -> Levels {
        let span = self.span;
        if frames == 0 {
            return Levels { column_frames: span, columns: 0, peaks: Vec::new() };
        }
        let columns = frames.div_ceil(span).max(1) as usize;
        let mut peaks = vec![0f32; columns * self.inputs];
        let end = first + frames;
        for c in self.done.iter().chain(self.open.iter()) {
            if c.at + span <= first || c.at >= end {
                continue;
            }
            // Every slot the column overlaps.
            let k0 = (c.at.max(first) - first) / span;
            let k1 = ((c.at + span).min(end) - 1).saturating_sub(first) / span;
            for k in k0 as usize..=(k1 as usize).min(columns - 1) {
                for (p, &x) in peaks[k * self.inputs..(k + 1) * self.inputs].iter_mut().zip(c.peaks.iter()) {
                    *p = p.max(x);
                }
            }
        }
        Levels { column_frames: span, columns, peaks }
    }
}

/// A take's picture, drawn.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// RGB, row by row.
    pub rgb: Vec<u8>,
}

const LABEL_W: u32 = 140;
const PLOT_W: u32 = 1200;
const TOP: u32 = 28;
const BG: [u8; 3] = [17, 20, 23];
const TEXT: [u8; 3] = [220, 224, 228];
const DIM: [u8; 3] = [120, 130, 140];
const RED: [u8; 3] = [229, 72, 77];
const WHITE: [u8; 3] = [255, 255, 255];
const YELLOW: [u8; 3] = [232, 197, 71];

/// A level's colour: black for silence, dark blue at -60 dBFS through
/// green (-20) and yellow (-6) to red at full scale.
fn heat(peak: f32) -> [u8; 3] {
    if peak <= 0.0 {
        return [0, 0, 0];
    }
    let db = 20.0 * peak.log10();
    let stops: [(f32, [f32; 3]); 5] = [
        (-60.0, [20.0, 30.0, 70.0]),
        (-40.0, [30.0, 90.0, 160.0]),
        (-20.0, [62.0, 196.0, 109.0]),
        (-6.0, [232.0, 197.0, 71.0]),
        (0.0, [229.0, 72.0, 77.0]),
    ];
    if db <= stops[0].0 {
        let k = ((db + 90.0) / 30.0).clamp(0.0, 1.0);
        return stops[0].1.map(|v| (v * k) as u8);
    }
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if db <= b {
            let t = (db - a) / (b - a);
            return [0, 1, 2].map(|i| (ca[i] + (cb[i] - ca[i]) * t) as u8);
        }
    }
    stops[4].1.map(|v| v as u8)
}

/// Draws the picture of a take of `frames` frames at `sample_rate`: one
/// row per input, `gaps` in red and `markers` (frame, label) in white
/// along the top, and the loudness curve (`loudness`: a value in LUFS
/// every `.0` frames; none when empty) in a band below the rows.
pub fn render(
    names: &[String],
    levels: &Levels,
    frames: u64,
    sample_rate: u32,
    gaps: &[Gap],
    markers: &[(u64, String)],
    loudness: (u64, &[f32]),
) -> Picture {
    let inputs = names.len().max(1);
    let row = (720 / inputs as u32).clamp(2, 24);
    let band = if loudness.1.is_empty() { 0 } else { LOUDNESS_H + 6 };
    let rows_end = TOP + row * inputs as u32;
    let (width, height) = (LABEL_W + PLOT_W + 8, rows_end + band + 20);
    let mut p = Picture { width, height, rgb: BG.repeat((width * height) as usize) };
    let frames = frames.max(1);
    let x_of =
        |frame: u64| LABEL_W + ((frame.min(frames) as f64 / frames as f64) * (PLOT_W - 1) as f64) as u32;
    // Rows: each pixel column shows the loudest column it covers.
    for px in 0..PLOT_W {
        let from = (px as u64 * frames) / PLOT_W as u64;
        let to = ((px as u64 + 1) * frames) / PLOT_W as u64;
        let col_of = |f: u64| (f / levels.column_frames.max(1)) as usize;
        let (c0, c1) = (col_of(from), col_of(to.saturating_sub(1)).max(col_of(from)));
        for i in 0..names.len() {
            let mut peak = 0f32;
            for k in c0..=c1.min(levels.columns.saturating_sub(1)) {
                if levels.columns > 0 {
                    peak = peak.max(levels.peaks.get(k * names.len() + i).copied().unwrap_or(0.0));
                }
            }
            let colour = heat(peak);
            let y0 = TOP + i as u32 * row;
            for y in y0..y0 + row.saturating_sub(u32::from(row > 4)) {
                p.set(LABEL_W + px, y, colour);
            }
        }
    }
    // Labels: every input's name where the rows are tall enough, else
    // every k-th.
    let every = (10 / row).max(1) as usize;
    for (i, name) in names.iter().enumerate().step_by(every) {
        let y = TOP + i as u32 * row + row.saturating_sub(8) / 2;
        p.text(4, y, &clip(name, 16), TEXT);
    }
    // Gaps (red) and markers (white) along the top, and through the rows.
    for g in gaps {
        let (a, b) = (x_of(g.at), x_of(g.at + g.frames).max(x_of(g.at) + 1));
        for x in a..b {
            for y in 2..TOP - 14 {
                p.set(x, y, RED);
            }
            for y in TOP..rows_end + band {
                p.blend(x, y, RED);
            }
        }
    }
    for (frame, label) in markers {
        let x = x_of(*frame);
        for y in TOP - 12..rows_end + band {
            p.set(x, y, WHITE);
        }
        p.text(x + 3, TOP - 12, &clip(label, 20), WHITE);
    }
    if band > 0 {
        draw_loudness(&mut p, rows_end + 6, loudness, &x_of);
    }
    // Time axis: seconds at a readable step.
    let secs = frames as f64 / sample_rate.max(1) as f64;
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0]
        .into_iter()
        .find(|s| secs / s <= 12.0)
        .unwrap_or(7200.0);
    let mut t = 0.0;
    while t <= secs {
        let x = x_of((t * sample_rate as f64) as u64);
        p.text(x, height - 14, &clock(t), DIM);
        t += step;
    }
    let legend = if band > 0 {
        "level (dBFS peak) per input; yellow: loudness (LUFS, momentary); red: gaps; white: markers"
    } else {
        "level (dBFS peak) per input; red: gaps; white: markers"
    };
    p.text(4, 4, legend, DIM);
    p
}

/// The loudness band's height, and the loudness at its bottom and top.
const LOUDNESS_H: u32 = 64;
const LOUDNESS_FLOOR: f32 = -60.0;
const LOUDNESS_TOP: f32 = 0.0;

/// The loudness curve in a band from `y0`: grid lines at -46, -23 (EBU
/// R 128's target) and 0 LUFS, the curve in yellow.
fn draw_loudness(p: &mut Picture, y0: u32, (step, curve): (u64, &[f32]), x_of: &impl Fn(u64) -> u32) {
    let y_of = |lufs: f32| {
        let t = ((lufs - LOUDNESS_FLOOR) / (LOUDNESS_TOP - LOUDNESS_FLOOR)).clamp(0.0, 1.0);
        y0 + LOUDNESS_H - 1 - (t * (LOUDNESS_H - 1) as f32) as u32
    };
    for y in y0..y0 + LOUDNESS_H {
        for x in LABEL_W..LABEL_W + PLOT_W {
            p.set(x, y, [24, 28, 33]);
        }
    }
    for (lufs, label) in [(-23.0, "-23 LUFS"), (-46.0, "-46")] {
        let y = y_of(lufs);
        for x in (LABEL_W..LABEL_W + PLOT_W).step_by(3) {
            p.set(x, y, DIM);
        }
        p.text(LABEL_W - 8 * label.len() as u32 - 4, y.saturating_sub(3), label, DIM);
    }
    p.text(4, y0 + 2, "loudness", TEXT);
    let mut last: Option<(u32, u32)> = None;
    for (k, &v) in curve.iter().enumerate() {
        let x = x_of((k as u64 + 1) * step);
        if !v.is_finite() || v < LOUDNESS_FLOOR {
            last = None;
            continue;
        }
        let y = y_of(v);
        // A vertical run joins each point to the one before.
        let (from, to) = match last {
            Some((_, ly)) => (ly.min(y), ly.max(y)),
            None => (y, y),
        };
        let x0 = last.map_or(x, |(lx, _)| lx);
        for xx in x0..=x {
            p.set(xx, y, YELLOW);
        }
        for yy in from..=to {
            p.set(x, yy, YELLOW);
        }
        last = Some((x, y));
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn clock(secs: f64) -> String {
    let s = secs as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

impl Picture {
    fn set(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 3) as usize;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn blend(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = ((y * self.width + x) * 3) as usize;
            for (px, ch) in self.rgb[i..i + 3].iter_mut().zip(c) {
                *px = ((*px as u16 + ch as u16) / 2) as u8;
            }
        }
    }

    /// 8x8 bitmap text (ASCII; anything else a `?`).
    fn text(&mut self, x: u32, y: u32, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let glyph =
                font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.set(x + k as u32 * 8 + col, y + row as u32, c);
                    }
                }
            }
        }
    }
}

/// Writes `p` as a PNG at `path`, which must not exist (nothing is
/// overwritten), synced before the take's manifest names it.
pub fn write_png(path: &Path, p: &Picture) -> io::Result<()> {
    let file = crate::durable::create_new(path)?;
    let result = (|| {
        let mut w = io::BufWriter::new(&file);
        let mut enc = png::Encoder::new(&mut w, p.width, p.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(io::Error::other)?;
        writer.write_image_data(&p.rgb).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)?;
        io::Write::flush(&mut w)?;
        drop(w);
        crate::durable::sync_file(&file, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::GapCause;

    /// Columns follow the audio, merge past their maximum, and a take gets
    /// the ones from its first frame on; the picture shows a loud input
    /// bright, a silent one black, and a gap in red.
    #[test]
    fn a_take_picture_shows_levels_gaps_and_markers() {
        let mut c = Columns::new(2, 48_000);
        // 10 s of cycles of 480 frames: input 0 at -6 dBFS, input 1 silent.
        for k in 0..1000u64 {
            c.add(1000 + k * 480, 480, &[0.5, 0.0]);
        }
        c.forget_before(1000 + 48_000);
        let levels = c.take_levels(1000 + 48_000, 48_000 * 5);
        assert_eq!((levels.column_frames, levels.columns), (4800, 50));
        assert!(levels.peaks.chunks(2).all(|p| p == [0.5, 0.0]), "{:?}", levels.peaks);
        let names = vec!["vox".to_string(), "spare".to_string()];
        let gaps = [Gap { at: 48_000, frames: 4800, cause: GapCause::JackSkipped }];
        let curve: Vec<f32> = (0..50).map(|k| if k < 10 { f32::NEG_INFINITY } else { -23.0 }).collect();
        let pic =
            render(&names, &levels, 48_000 * 5, 48_000, &gaps, &[(96_000, "chorus".into())], (4800, &curve));
        let px = |x: u32, y: u32| {
            let i = ((y * pic.width + x) * 3) as usize;
            [pic.rgb[i], pic.rgb[i + 1], pic.rgb[i + 2]]
        };
        let row = (720 / 2u32).clamp(2, 24);
        let (y_vox, y_spare) = (TOP + row / 2, TOP + row + row / 2);
        assert_eq!(px(LABEL_W + 100, y_vox), heat(0.5), "the loud input");
        assert_eq!(px(LABEL_W + 100, y_spare), [0, 0, 0], "the silent input");
        assert_eq!(px(LABEL_W + PLOT_W / 5 + 2, 2), RED, "the gap at 1 s");
        assert_eq!(px(LABEL_W + 2 * (PLOT_W - 1) / 5, y_spare), WHITE, "the marker at 2 s");
        // The loudness band below the rows: -23 LUFS from 1 s on (silence
        // before it draws nothing).
        let y0 = TOP + 2 * row + 6;
        let y23 = y0 + LOUDNESS_H - 1 - ((37.0 / 60.0) * (LOUDNESS_H - 1) as f32) as u32;
        let x_at = |frame: u64| LABEL_W + ((frame as f64 / 240_000.0) * (PLOT_W - 1) as f64) as u32;
        assert_eq!(px(x_at(31 * 4800), y23), YELLOW, "-23 LUFS at 3.1 s");
        assert!((y0..y0 + LOUDNESS_H).all(|y| px(x_at(6 * 4800), y) != YELLOW), "silence at 0.6 s");
        assert_eq!(pic.height, TOP + 2 * row + LOUDNESS_H + 6 + 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        write_png(&path, &pic).unwrap();
        let d = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let r = d.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), (pic.width, pic.height));
        assert!(write_png(&path, &pic).is_err(), "never overwrites");
        // A take that ended before its first frame was written has no
        // columns (it once underflowed, in the disk thread).
        assert_eq!(c.take_levels(1000 + 48_000 + 100, 0).columns, 0);
        // A day-long take stays bounded: columns merge.
        let mut c = Columns::new(1, 48_000);
        for k in 0..(24 * 3600 * 10u64) {
            c.add(k * 4800, 4800, &[0.1]);
        }
        assert!(c.done.len() <= 2 * MAX_COLUMNS);
    }
}
