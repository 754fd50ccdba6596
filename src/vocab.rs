//! The words every stage shares: what a take's files are (layout, file
//! format, time reference, loudness), what starts takes (triggers), what a
//! gap is, the disk's summary numbers and the manifest's name. Plain data;
//! depends on nothing else in capstan, so that everything may depend on it
//! (symphonia's `core` is the model).

use serde::{Deserialize, Serialize};

/// Suffix of take manifests: `<take name>.take.json`.
pub const MANIFEST_SUFFIX: &str = ".take.json";

/// How deep take directories may lie below the recorder's directory
/// (`--dir-layout %Y/%m/%d/%H` is four): recovery and retention look this
/// deep, and a layout deeper than this is refused.
pub const TAKE_DIR_DEPTH: usize = 6;

/// One interleaved file, or one mono file per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Interleaved,
    Mono,
}

/// What the takes' files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    #[default]
    Wav,
    Flac,
}

impl FileFormat {
    /// The files' extension, without the dot.
    pub fn ext(self) -> &'static str {
        match self {
            FileFormat::Wav => "wav",
            FileFormat::Flac => "flac",
        }
    }
}

/// Whether takes are measured for loudness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LoudnessMode {
    /// On for takes of up to [`LoudnessMode::AUTO_MAX_INPUTS`] inputs.
    #[default]
    Auto,
    On,
    Off,
}

impl LoudnessMode {
    pub const AUTO_MAX_INPUTS: usize = 8;

    /// Whether a take of `inputs` inputs is measured.
    pub fn measures(self, inputs: usize) -> bool {
        match self {
            LoudnessMode::Auto => inputs <= Self::AUTO_MAX_INPUTS,
            LoudnessMode::On => true,
            LoudnessMode::Off => false,
        }
    }
}

/// What starts and stops takes besides commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// JACK transport: a take starts with the cycle in which it starts
    /// rolling and ends when it stops (after `post_roll`).
    Transport,
    /// Sound: a take starts `preroll` before the first sample above
    /// `threshold` on any input and ends `hold` after the last one.
    Level,
}

/// What the bext time_reference of a take holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TimeReference {
    /// Samples since (local, or UTC) midnight of the first frame.
    #[default]
    Midnight,
    /// JACK's frame time of the first frame (capstan 0.1's stamp).
    Jack,
}

/// What to listen for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSpec {
    /// Linear threshold: a sample whose magnitude exceeds it is sound.
    pub threshold: f32,
    /// Frames below the threshold on every input that end the sound.
    pub hold: u64,
}

/// Why frames in a take are silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The rings were full: the disk did not keep up (our loss). Called
    /// `overflow` before; manifests that say so still read.
    #[serde(alias = "overflow")]
    DiskOverrun,
    /// JACK's frame time jumped: the server skipped cycles (an xrun).
    JackSkipped,
    /// JACK began the next cycle while the callback was still copying this
    /// one (an xrun in JACK2's asynchronous mode): the buffers may mix two
    /// cycles, so the cycle is not used.
    Torn,
    /// The first cycle after JACK skipped some: the callback may have run
    /// from a wake-up left over from a cycle it missed, before the upstream
    /// wrote this one, so which cycle its buffers hold is not known. Not
    /// used unless a repeat of it follows (see `disk::timeline`).
    LateUncertain,
    /// Right after a skip, the server handed over the cycle before's audio
    /// again (the upstream had not written this cycle; see `disk::stale`).
    StaleBuffer,
}

impl GapCause {
    /// Frames JACK did not hand over usable (everything but our own
    /// overrun): what summaries count as "skipped by JACK".
    pub fn by_jack(self) -> bool {
        self != GapCause::DiskOverrun
    }
}

impl std::fmt::Display for GapCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DiskOverrun => "the disk did not keep up (the ring buffers were full)",
            Self::JackSkipped => "JACK skipped cycles (xrun)",
            Self::Torn => "JACK overtook the cycle while it was copied (xrun)",
            Self::LateUncertain => "the first cycle after an xrun may hold an earlier cycle's audio",
            Self::StaleBuffer => "after an xrun, JACK handed over the cycle before's audio again",
        })
    }
}

/// A run of silence written in place of frames that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    /// Frame offset in the take.
    pub at: u64,
    pub frames: u64,
    pub cause: GapCause,
}

/// The disk side's numbers, for summaries and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiskSummary {
    pub ring_high_water_frames: u64,
    pub ring_high_water_percent: f64,
    pub write_batches: u64,
    pub write_mean_us: f64,
    pub write_max_us: f64,
}

/// One channel's level over a stretch of frames: its largest |sample| and
/// the sum of its squares. The encoder measures it while the samples are in
/// cache and the meters add the stretches up, so that recording reads the
/// audio once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChannelLevel {
    /// Largest |sample| (linear, 1.0 = 0 dBFS; NaN ignored).
    pub peak: f32,
    /// Sum of the squares (NaN counts as 0).
    pub squares: f64,
}

impl ChannelLevel {
    /// Measures `samples` in one pass (8 lanes, so that the compiler
    /// vectorizes it).
    #[inline]
    pub fn of(samples: &[f32]) -> ChannelLevel {
        let mut peak = [0f32; 8];
        let mut sq = [0f32; 8];
        let chunks = samples.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..8 {
                peak[k] = peak[k].max(c[k].abs());
                sq[k] += c[k] * c[k];
            }
        }
        let mut p = peak.iter().fold(0f32, |a, &b| a.max(b));
        let mut q: f64 = sq.iter().map(|&x| x as f64).sum();
        for &x in rest {
            p = p.max(x.abs());
            q += (x * x) as f64;
        }
        ChannelLevel { peak: p, squares: if q.is_nan() { 0.0 } else { q } }
    }

    /// Adds a later stretch.
    #[inline]
    pub fn add(&mut self, other: ChannelLevel) {
        self.peak = self.peak.max(other.peak);
        self.squares += other.squares;
    }
}

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// An input below the silence threshold for the set time, recording.
    Silent,
    /// An input reached full scale.
    Clipping,
    /// The disk holds less than the set time at the current rate.
    DiskLow,
    /// The rings are filling: the disk thread falls behind.
    DiskBehind,
    /// The take has a gap (frames lost, silence in their place).
    Gap,
    /// Finished takes are not reaching the off-site store.
    Offsite,
    /// A copy of the running take (`--mirror`) stopped.
    Mirror,
}

impl AlarmKind {
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::Silent => "silent",
            AlarmKind::Clipping => "clipping",
            AlarmKind::DiskLow => "disk_low",
            AlarmKind::DiskBehind => "disk_behind",
            AlarmKind::Gap => "gap",
            AlarmKind::Offsite => "offsite",
            AlarmKind::Mirror => "mirror",
        }
    }
}

/// An alarm raised during a take, as its manifest keeps it: one entry per
/// kind and input, where it was first raised and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRecord {
    pub kind: AlarmKind,
    /// The input's name, for an alarm about one input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Frame offset in the take where it was first raised.
    pub frame: u64,
    /// Times it was raised in this take.
    pub count: u32,
    /// What it said when first raised.
    pub text: String,
}
