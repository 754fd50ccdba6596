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
    /// The rings were full: the disk did not keep up (our loss).
    Overflow,
    /// JACK's frame time jumped: the server skipped cycles (an xrun).
    JackSkipped,
    /// JACK began the next cycle while the callback was still copying this
    /// one (an xrun in JACK2's asynchronous mode): the buffers may mix two
    /// cycles, so the cycle is not used.
    Torn,
}

impl std::fmt::Display for GapCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Overflow => "ring buffer overflow (disk too slow)",
            Self::JackSkipped => "JACK skipped cycles (xrun)",
            Self::Torn => "JACK overtook the cycle while it was copied (xrun)",
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
