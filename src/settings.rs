//! The recorder's settings, described once: the command line (clap),
//! `capstan.json` in an NSM session (serde) and OSC `/config/…` all read and
//! change this one type, and every value passes the one [`Settings::validate`]
//! whichever way it came in. Defaults live in [`defaults`] only.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::retention::Policy;
pub use crate::vocab::{FileFormat, Layout, LoudnessMode, TimeReference, Trigger};
use crate::wav::SampleFormat;

/// The format version of `capstan.json` this capstan writes and reads.
pub const VERSION: u32 = 1;

/// Every default, for clap and serde alike.
pub mod defaults {
    pub const PORTS: u16 = 2;
    pub const PROJECT: &str = "capstan";
    pub const BUFFER_SECONDS: f64 = 4.0;
    pub const OSC_PORT: u16 = 7770;
    pub const OSC_BIND: &str = "127.0.0.1";
    pub const HTTP_PORT: u16 = 7780;
    pub const HTTP_BIND: &str = "127.0.0.1";
    pub const PREROLL: f64 = 0.0;
    pub const MIN_MINUTES: f64 = 10.0;
    pub const MIN_FREE_FRACTION: f64 = 0.15;
    pub const DISK_MARGIN_SECONDS: f64 = 60.0;
    pub const THRESHOLD_DBFS: f64 = -40.0;
    pub const HOLD_SECONDS: f64 = 5.0;
    /// The pre-roll of `--trigger level` when `--preroll` is 0.
    pub const LEVEL_PREROLL: f64 = 2.0;
    pub const ALARM_SILENCE_DBFS: f64 = -60.0;
    pub const ALARM_SILENCE_SECONDS: f64 = 10.0;
    pub const ALARM_DISK_MINUTES: f64 = 30.0;
    pub const ALARM_RING_PERCENT: f64 = 50.0;
}

/// When the daemon raises an alarm (on the web page, as the OSC push
/// `/recording/alarm`, in the log and in the take's manifest).
#[derive(Args, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlarmSettings {
    /// Alarm when an input stays below this level (dBFS, -120 to 0)…
    #[arg(long, default_value_t = defaults::ALARM_SILENCE_DBFS, allow_hyphen_values = true)]
    pub alarm_silence_dbfs: f64,
    /// …for this many seconds (1 to 3600) while recording.
    #[arg(long, default_value_t = defaults::ALARM_SILENCE_SECONDS)]
    pub alarm_silence_seconds: f64,
    /// Alarm when the free space lasts less than this many minutes at the
    /// current rate (0 to 100000; 0: never).
    #[arg(long, default_value_t = defaults::ALARM_DISK_MINUTES)]
    pub alarm_disk_minutes: f64,
    /// Alarm when the ring buffers are fuller than this percent of their
    /// room (1 to 100): the disk is falling behind, and at 100% frames are
    /// lost.
    #[arg(long, default_value_t = defaults::ALARM_RING_PERCENT)]
    pub alarm_ring_percent: f64,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            alarm_silence_dbfs: defaults::ALARM_SILENCE_DBFS,
            alarm_silence_seconds: defaults::ALARM_SILENCE_SECONDS,
            alarm_disk_minutes: defaults::ALARM_DISK_MINUTES,
            alarm_ring_percent: defaults::ALARM_RING_PERCENT,
        }
    }
}

impl AlarmSettings {
    pub fn validate(&self) -> Result<(), String> {
        range("alarm_silence_dbfs", self.alarm_silence_dbfs, -120.0, 0.0)?;
        range("alarm_silence_seconds", self.alarm_silence_seconds, 1.0, 3600.0)?;
        range("alarm_disk_minutes", self.alarm_disk_minutes, 0.0, 100_000.0)?;
        range("alarm_ring_percent", self.alarm_ring_percent, 1.0, 100.0)
    }

    /// Sets one by its `/config/alarm` name (unchecked: validate after).
    pub fn set(&mut self, name: &str, v: f64) -> Result<(), String> {
        *match name {
            "silence_dbfs" => &mut self.alarm_silence_dbfs,
            "silence_seconds" => &mut self.alarm_silence_seconds,
            "disk_minutes" => &mut self.alarm_disk_minutes,
            "ring_percent" => &mut self.alarm_ring_percent,
            _ => {
                return Err(format!(
                    "unknown alarm setting {name:?} (one of {})",
                    crate::control::alarms::SETTING_NAMES.join(", ")
                ))
            }
        } = v;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "silence_dbfs" => self.alarm_silence_dbfs,
            "silence_seconds" => self.alarm_silence_seconds,
            "disk_minutes" => self.alarm_disk_minutes,
            "ring_percent" => self.alarm_ring_percent,
            _ => return None,
        })
    }

    /// In the alarm machine's units.
    pub fn thresholds(&self) -> crate::control::alarms::Thresholds {
        crate::control::alarms::Thresholds {
            silence: 10f64.powf(self.alarm_silence_dbfs / 20.0) as f32,
            silence_seconds: self.alarm_silence_seconds,
            disk_seconds: self.alarm_disk_minutes * 60.0,
            ring_fraction: self.alarm_ring_percent / 100.0,
        }
    }
}

/// How takes are written (shared by `record` and `daemon`).
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TakeFormat {
    /// Project name used in default file names [default: capstan; under NSM
    /// the session's name].
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long, value_enum, default_value_t = Layout::Interleaved)]
    pub layout: Layout,
    /// float32 (lossless), s16, s24 or s32 [default: float32 for WAV, s24
    /// for FLAC, which holds integers only].
    #[arg(long)]
    pub sample_format: Option<SampleFormat>,
    /// Seconds of audio the ring buffers hold per port (0.5-600).
    #[arg(long, default_value_t = defaults::BUFFER_SECONDS)]
    pub buffer_seconds: f64,
    /// What the bext time_reference holds: samples since midnight (the
    /// Broadcast Wave convention DAWs place regions by) or JACK's frame time.
    #[arg(long, value_enum, default_value_t = TimeReference::Midnight)]
    pub time_reference: TimeReference,
    /// Time stamps in UTC instead of local time.
    #[arg(long)]
    pub utc: bool,
    /// Measure EBU R 128 loudness (manifest, bext, status): on, off, or
    /// auto (on for takes of up to 8 inputs, where a programme loudness
    /// means something; it costs about 1.4 ms of CPU per second per input).
    #[arg(long, value_enum, default_value_t = LoudnessMode::Auto)]
    pub loudness: LoudnessMode,
    /// File format: wav (Broadcast Wave/RF64) or flac (lossless, s16/s24,
    /// at most 8 channels per file: use --layout mono for more inputs).
    #[arg(long = "format", value_enum, default_value_t = FileFormat::Wav)]
    #[serde(rename = "format")]
    pub file_format: FileFormat,
    /// Write through the page cache instead of O_DIRECT (for measuring
    /// the difference: make bench's capstan-buffered row).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub buffered_io: bool,
}

impl Default for TakeFormat {
    fn default() -> Self {
        TakeFormat {
            project: None,
            layout: Layout::Interleaved,
            sample_format: None,
            buffer_seconds: defaults::BUFFER_SECONDS,
            time_reference: TimeReference::Midnight,
            utc: false,
            loudness: LoudnessMode::Auto,
            file_format: FileFormat::Wav,
            buffered_io: false,
        }
    }
}

/// The settings `/config/storage` changes: where takes are written and
/// where they go.
pub const STORAGE_KEYS: [&str; 5] = ["mirror", "mirror_as", "spill", "offsite", "lifecycle"];

/// A copy of every take in another format (`--mirror-as FORMAT=DIR`):
/// written `flac,mono=/mnt/usb/rec`, the same on the command line and in
/// `capstan.json`. What FORMAT does not say is the take's own.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MirrorAs {
    pub dir: std::path::PathBuf,
    pub file_format: Option<FileFormat>,
    pub layout: Option<Layout>,
    pub sample_format: Option<SampleFormat>,
}

impl std::str::FromStr for MirrorAs {
    type Err = String;
    fn from_str(s: &str) -> Result<MirrorAs, String> {
        let (format, dir) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected FORMAT=DIR, e.g. flac,mono=/mnt/usb/rec"))?;
        if dir.is_empty() {
            return Err(format!("{s:?}: no directory named"));
        }
        let mut m = MirrorAs { dir: dir.into(), file_format: None, layout: None, sample_format: None };
        for word in format.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_lowercase().as_str() {
                "wav" => m.file_format = Some(FileFormat::Wav),
                "flac" => m.file_format = Some(FileFormat::Flac),
                "mono" => m.layout = Some(Layout::Mono),
                "interleaved" | "poly" => m.layout = Some(Layout::Interleaved),
                other => {
                    m.sample_format = Some(other.parse().map_err(|_| {
                        format!("{s:?}: {other:?} is not a format (wav, flac, mono, interleaved, s16, s24, s32, float32)")
                    })?)
                }
            }
        }
        Ok(m)
    }
}

impl TryFrom<String> for MirrorAs {
    type Error = String;
    fn try_from(s: String) -> Result<MirrorAs, String> {
        s.parse()
    }
}

impl From<MirrorAs> for String {
    fn from(m: MirrorAs) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for MirrorAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut words = Vec::new();
        words.extend(self.file_format.map(|x| x.ext().to_string()));
        words.extend(self.layout.map(|l| if l == Layout::Mono { "mono" } else { "interleaved" }.to_string()));
        words.extend(self.sample_format.map(|x| x.to_string()));
        write!(f, "{}={}", words.join(","), self.dir.display())
    }
}

impl MirrorAs {
    /// The copy's file format, layout and sample format, given the take's.
    pub fn resolve(&self, take: &TakeFormat) -> (FileFormat, Layout, SampleFormat) {
        let file_format = self.file_format.unwrap_or(take.file_format);
        let layout = self.layout.unwrap_or(take.layout);
        let default = TakeFormat { file_format, sample_format: None, ..take.clone() }.sample_format();
        let sample_format = self.sample_format.or(take.sample_format).unwrap_or(default);
        // FLAC holds integers: a float take's FLAC copy is s24.
        let sample_format = match (file_format, sample_format) {
            (FileFormat::Flac, SampleFormat::F32) if self.sample_format.is_none() => SampleFormat::S24,
            (_, f) => f,
        };
        (file_format, layout, sample_format)
    }

    /// Whether the copy's format can be written (FLAC: integers, at most
    /// 8 channels in one file).
    pub fn check(&self, take: &TakeFormat, inputs: usize) -> Result<(), String> {
        let (file_format, layout, format) = self.resolve(take);
        if file_format != FileFormat::Flac {
            return Ok(());
        }
        // The take's own rules decide; the advice is said in FORMAT's
        // words (the flags' advice, --sample-format or --layout, would
        // change the take, not the copy).
        let dir = self.dir.display();
        crate::flac::FlacSpec::new(1, 48_000, format).map_err(|_| {
            format!(
                "mirror_as {self}: FLAC holds 16- or 24-bit integers, not {format}: write flac,s24={dir} \
                 (or flac,s16=…)"
            )
        })?;
        let copy = TakeFormat { file_format, layout, sample_format: Some(format), ..take.clone() };
        copy.check_channels(inputs).map_err(|_| {
            format!(
                "mirror_as {self}: a FLAC file holds at most {} channels, and the copy would put \
                 {inputs} inputs in one file: write flac,mono={dir} (one FLAC file per input), or wav={dir}",
                crate::flac::MAX_CHANNELS
            )
        })?;
        Ok(())
    }
}

/// A validation message as the command line says it: its leading
/// `capstan.json` key (`buffer_seconds`, `retention.keep_free`, `dir_layout`)
/// becomes the flag the user typed (`--buffer-seconds`, `--keep-free`).
pub fn flag_words(message: &str) -> String {
    let key_len =
        message.find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c == '.')).unwrap_or(message.len());
    let key = &message[..key_len];
    let known = serde_json::to_value(Settings::default()).expect("plain data serializes");
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let is_key = match key.split_once('.') {
        Some((group, k)) => known.get(group).and_then(|g| g.get(k)).is_some(),
        None => known.get(key).is_some(),
    };
    if key.is_empty() || !is_key {
        return message.to_owned();
    }
    let flag = match key {
        // The off-site group's flags carry its name (`--offsite URL`).
        "offsite.url" => "offsite".to_string(),
        k if k.starts_with("offsite.") => format!("offsite-{}", leaf.replace('_', "-")),
        "lifecycle.tiers" => "tier".to_string(),
        "lifecycle.max_mbps" => "tier-max-mbps".to_string(),
        _ => leaf.replace('_', "-"),
    };
    format!("--{flag}{}", &message[key_len..])
}

fn range(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be between {lo} and {hi}, got {v}"))
    }
}

impl TakeFormat {
    /// The sample format takes are written in: the one chosen, else JACK's
    /// own float32 for WAV and s24 for FLAC (which holds integers only).
    pub fn sample_format(&self) -> SampleFormat {
        self.sample_format.unwrap_or(match self.file_format {
            FileFormat::Wav => SampleFormat::F32,
            FileFormat::Flac => SampleFormat::S24,
        })
    }

    /// The project name takes are named after.
    pub fn project_name(&self) -> &str {
        self.project.as_deref().unwrap_or(defaults::PROJECT)
    }

    /// Whether a take of `inputs` inputs fits the format: a FLAC file holds
    /// at most 8 channels.
    pub fn check_channels(&self, inputs: usize) -> Result<(), String> {
        let max = crate::flac::MAX_CHANNELS;
        if self.file_format == FileFormat::Flac && self.layout == Layout::Interleaved && inputs > max {
            return Err(format!(
                "a FLAC file holds at most {max} channels, and {inputs} inputs were asked for in one \
                 interleaved file: use --layout mono (one FLAC file per input), or --format wav"
            ));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        range("buffer_seconds", self.buffer_seconds, 0.5, 600.0)?;
        if self.file_format == FileFormat::Flac {
            crate::flac::FlacSpec::new(1, 48_000, self.sample_format())?;
        }
        if self.project.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err("project must not be empty".into());
        }
        Ok(())
    }
}

/// Everything the daemon (and a session's `capstan.json`) is set up with.
#[derive(Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `capstan.json`'s format version.
    #[arg(skip = VERSION)]
    pub version: u32,
    /// Number of input ports (in_1 … in_N), 1-1024.
    #[arg(long, default_value_t = defaults::PORTS)]
    pub ports: u16,
    /// Names for the inputs, in order (e.g. kick,snare); the rest are in_K.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub port_names: Vec<String>,
    /// Connect output ports matching PATTERN to the inputs at start-up.
    #[arg(long, short = 'c', value_name = "PATTERN")]
    pub connect: Vec<String>,
    /// UDP port for OSC commands.
    #[arg(long, default_value_t = defaults::OSC_PORT)]
    pub osc_port: u16,
    /// Address to listen on. The default accepts commands from this machine
    /// only; 0.0.0.0 lets anyone on the network start and stop takes.
    #[arg(long, default_value = defaults::OSC_BIND)]
    pub osc_bind: String,
    /// TCP port of the web control surface (meters, record, stop, markers,
    /// the takes); another free one if it is taken (the daemon says which).
    #[arg(long, default_value_t = defaults::HTTP_PORT)]
    pub http_port: u16,
    /// Address the web page listens on. The default serves this machine
    /// only; on any other address every command needs the token printed at
    /// start.
    #[arg(long, default_value = defaults::HTTP_BIND)]
    pub http_bind: String,
    /// No web control surface.
    #[arg(long)]
    pub no_http: bool,
    /// Keep this many seconds (0-600) of every input in memory while idle; a
    /// take then starts that far in the past (timemachine mode).
    #[arg(long, default_value_t = defaults::PREROLL)]
    pub preroll: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub format: TakeFormat,
    /// Refuse a take unless the disk holds this many minutes of it (+20%).
    #[arg(long, default_value_t = defaults::MIN_MINUTES)]
    pub min_minutes: f64,
    /// …and keeps this fraction of the volume free (also checked while
    /// recording).
    #[arg(long, default_value_t = defaults::MIN_FREE_FRACTION)]
    pub min_free_fraction: f64,
    /// While recording, stop the take cleanly when the free space would
    /// last less than this many seconds.
    #[arg(long, default_value_t = defaults::DISK_MARGIN_SECONDS)]
    pub disk_margin_seconds: f64,
    /// While recording, rotate to a new take at every multiple of this
    /// duration since midnight (local, or UTC with --utc): e.g. 15m, 1h.
    /// The split is at the exact frame of the boundary.
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    /// Put each take into a dated subdirectory of --dir, made as needed:
    /// a strftime pattern such as %Y/%m/%d (local time, or UTC with --utc).
    /// Recovery and retention look into these subdirectories.
    #[arg(long, value_name = "PATTERN")]
    pub dir_layout: Option<String>,
    /// After each take, write or update that day's Ardour session in
    /// DIR/<date>/<date>.ardour: every finished take of the day in the
    /// take's directory, a track per input, markers in place (see `capstan
    /// export`). A session Ardour has saved since is left alone.
    #[arg(long, value_name = "DIR")]
    pub ardour_session: Option<std::path::PathBuf>,
    /// Start and stop takes by themselves: `transport` records while JACK
    /// transport rolls (a take per roll, split where it is relocated);
    /// `level` records while any input has sound (with the pre-roll before
    /// it, 2 s unless --preroll says otherwise, and --hold after it).
    #[arg(long, value_enum)]
    pub trigger: Option<Trigger>,
    /// With --trigger level: a sample above this level (dBFS, -120 to 0)
    /// on any input is sound.
    #[arg(long, default_value_t = defaults::THRESHOLD_DBFS, allow_hyphen_values = true)]
    pub threshold: f64,
    /// With --trigger level: the take ends after this many seconds (0.1 to
    /// 3600) below the threshold on every input.
    #[arg(long, default_value_t = defaults::HOLD_SECONDS)]
    pub hold: f64,
    /// A JACK MIDI input `control`: MIDI Machine Control RECORD STROBE
    /// starts a take, RECORD EXIT and STOP end it, at the event's frame.
    #[arg(long)]
    pub midi: bool,
    /// With --midi: a note-on of this note (0-127, any channel) starts a
    /// take, or ends the running one.
    #[arg(long, value_name = "NOTE", requires = "midi")]
    pub midi_note: Option<u8>,
    /// With --trigger transport: go on recording this many seconds after
    /// the transport stops (0-600), so that tails are kept.
    #[arg(long, default_value_t = 0.0)]
    pub post_roll: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub alarms: AlarmSettings,
    /// Retention, applied at start-up and every hour (see `capstan prune`).
    #[command(flatten)]
    pub retention: Policy,
    /// Write every take to this directory too, as it is recorded (repeat
    /// for more copies; WAV only): each copy with a thread of its own; a
    /// copy whose disk fails stops, the take goes on.
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub mirror: Vec<std::path::PathBuf>,
    /// Write every take to DIR too, in another format, as it is recorded:
    /// FORMAT=DIR, FORMAT a comma list of wav or flac, mono or
    /// interleaved, and a sample format (what is not said is the take's
    /// own), e.g. flac,mono=/mnt/usb/rec. Each copy is a take of its own,
    /// encoded and written by a thread of its own; one that fails stops,
    /// the take goes on. Repeat for more.
    #[arg(long, value_name = "FORMAT=DIR")]
    #[serde(default)]
    pub mirror_as: Vec<MirrorAs>,
    /// When the takes' disk fills (see --disk-margin-seconds), the running
    /// take continues here at its very next frame, as a new segment
    /// (repeat for more, used in turn).
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub spill: Vec<std::path::PathBuf>,
    /// The off-site tier: every finished take copied to an object store,
    /// verified (see `capstan tiers`).
    #[command(flatten)]
    pub offsite: crate::offsite::OffsiteSettings,
    /// The lifecycle: finished takes moved on to each tier by age, then
    /// deleted (see `capstan tiers run`); applied at start-up and every
    /// hour.
    #[command(flatten)]
    pub lifecycle: crate::lifecycle::Lifecycle,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version: VERSION,
            ports: defaults::PORTS,
            port_names: Vec::new(),
            connect: Vec::new(),
            osc_port: defaults::OSC_PORT,
            osc_bind: defaults::OSC_BIND.into(),
            http_port: defaults::HTTP_PORT,
            http_bind: defaults::HTTP_BIND.into(),
            no_http: false,
            preroll: defaults::PREROLL,
            format: TakeFormat::default(),
            min_minutes: defaults::MIN_MINUTES,
            min_free_fraction: defaults::MIN_FREE_FRACTION,
            disk_margin_seconds: defaults::DISK_MARGIN_SECONDS,
            rotate_every: None,
            dir_layout: None,
            ardour_session: None,
            trigger: None,
            midi: false,
            midi_note: None,
            threshold: defaults::THRESHOLD_DBFS,
            hold: defaults::HOLD_SECONDS,
            post_roll: 0.0,
            alarms: AlarmSettings::default(),
            retention: Policy::default(),
            offsite: Default::default(),
            lifecycle: Default::default(),
            mirror: Vec::new(),
            mirror_as: Vec::new(),
            spill: Vec::new(),
        }
    }
}

impl Settings {
    /// Checks every value; the message names the first bad one. The same
    /// for a flag, a `capstan.json` field and an OSC `/config/…` change.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(if self.version > VERSION {
                format!("version {} was written by a newer capstan (this one reads {VERSION})", self.version)
            } else {
                format!("unknown version {}", self.version)
            });
        }
        if !(1..=1024).contains(&self.ports) {
            return Err(format!("ports must be between 1 and 1024, got {}", self.ports));
        }
        crate::ports::input_names(self.ports as usize, &self.port_names)?;
        self.format.check_channels(self.ports as usize)?;
        if let Some(d) = &self.rotate_every {
            crate::control::clock::parse_duration(d)?;
        }
        range("post_roll", self.post_roll, 0.0, 600.0)?;
        if let Some(p) = &self.dir_layout {
            crate::naming::dated_dir(p, &chrono::Utc::now())?;
        }
        if self.midi_note.is_some_and(|n| n > 127) {
            return Err(format!("midi_note must be between 0 and 127, got {}", self.midi_note.unwrap_or(0)));
        }
        range("threshold", self.threshold, -120.0, 0.0)?;
        range("hold", self.hold, 0.1, 3600.0)?;
        range("preroll", self.preroll, 0.0, 600.0)?;
        self.format.validate()?;
        range("min_minutes", self.min_minutes, 0.0, 1e6)?;
        range("min_free_fraction", self.min_free_fraction, 0.0, 1.0)?;
        range("disk_margin_seconds", self.disk_margin_seconds, 0.0, 1e6)?;
        self.retention.validate()?;
        self.offsite.validate()?;
        self.lifecycle.validate()?;
        if !self.lifecycle.tiers.is_empty() {
            if self.retention.archive.is_some() {
                return Err(
                    "lifecycle.tiers moves takes on by age; retention.archive is the one-tier form of \
                            it: use one or the other"
                        .into(),
                );
            }
            if self.offsite.delete_local_after.is_some() {
                return Err(
                    "lifecycle.tiers moves takes on by age; offsite.delete_local_after as well: use \
                            one or the other"
                        .into(),
                );
            }
        }
        if !self.mirror.is_empty() && self.format.file_format == FileFormat::Flac {
            return Err(
                "mirror copies WAV takes byte for byte; for a FLAC take use mirror_as flac=DIR".into()
            );
        }
        for m in &self.mirror_as {
            m.check(&self.format, self.ports as usize)?;
        }
        if self.mirror.iter().any(|m| m.as_os_str().is_empty()) {
            return Err("mirror: an empty directory name".into());
        }
        if self.spill.iter().any(|m| m.as_os_str().is_empty()) {
            return Err("spill: an empty directory name".into());
        }
        self.alarms.validate()?;
        if self.osc_bind.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("osc_bind must be an IP address, got {:?}", self.osc_bind));
        }
        if self.http_bind.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("http_bind must be an IP address, got {:?}", self.http_bind));
        }
        Ok(())
    }

    /// [`Settings::validate`], worded for the command line: flags instead
    /// of `capstan.json`'s keys, and flags that would do nothing without
    /// another one refused (a session's file may keep a value for later).
    pub fn validate_command_line(&self) -> Result<(), String> {
        self.validate().map_err(|e| flag_words(&e))?;
        if self.post_roll > 0.0 && self.trigger != Some(Trigger::Transport) {
            return Err("--post-roll needs --trigger transport: it is what is recorded after the transport \
                        stops"
                .into());
        }
        Ok(())
    }

    /// Reads settings from JSON text: missing fields take their defaults
    /// (older files keep loading); unknown fields and bad values are
    /// refused, so a typo such as `"prots": 24` is reported, not ignored.
    pub fn from_json(text: &str) -> Result<Settings, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(fields) = &value else {
            return Err("expected a JSON object".into());
        };
        let known = serde_json::to_value(Settings::default()).expect("plain data serializes");
        if let Some(k) = fields.keys().find(|k| known.get(k.as_str()).is_none()) {
            return Err(format!("unknown field `{k}`"));
        }
        for group in ["retention", "offsite", "lifecycle"] {
            if let Some(serde_json::Value::Object(r)) = fields.get(group) {
                if let Some(k) = r.keys().find(|k| known[group].get(k.as_str()).is_none()) {
                    return Err(format!("unknown field `{group}.{k}`"));
                }
            }
        }
        let settings: Settings = serde_json::from_value(value).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    /// The storage settings as `/config/storage` and `/api/config/storage`
    /// show them: a JSON object of [`STORAGE_KEYS`].
    pub fn storage_json(&self) -> serde_json::Value {
        let all = serde_json::to_value(self).expect("plain data serializes");
        STORAGE_KEYS
            .iter()
            .map(|k| (k.to_string(), all[*k].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// These settings with the storage settings in `text` (a JSON object
    /// of some of [`STORAGE_KEYS`]; a group's fields replace those given,
    /// the others stay), through the one validation.
    pub fn with_storage(&self, text: &str) -> Result<Settings, String> {
        let change: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let serde_json::Value::Object(change) = change else {
            return Err("expected a JSON object, e.g. {\"mirror\": [\"/mnt/usb/rec\"]}".into());
        };
        let mut all = serde_json::to_value(self).expect("plain data serializes");
        for (k, v) in change {
            if !STORAGE_KEYS.contains(&k.as_str()) {
                return Err(format!("{k} is not a storage setting ({})", STORAGE_KEYS.join(", ")));
            }
            match (all.get_mut(&k), v) {
                (Some(serde_json::Value::Object(group)), serde_json::Value::Object(fields)) => {
                    group.extend(fields)
                }
                (_, v) => all[k.as_str()] = v,
            }
        }
        Settings::from_json(&all.to_string())
    }

    /// The pre-roll takes get: `--preroll`, or 2 s for `--trigger level`
    /// (whose takes must never cut the attack) when it is 0.
    pub fn effective_preroll(&self) -> f64 {
        if self.trigger == Some(Trigger::Level) && self.preroll == 0.0 {
            defaults::LEVEL_PREROLL
        } else {
            self.preroll
        }
    }

    /// What `--trigger level` listens for, at `rate`.
    pub fn level_spec(&self, rate: u32) -> crate::vocab::LevelSpec {
        crate::vocab::LevelSpec {
            threshold: 10f64.powf(self.threshold / 20.0) as f32,
            hold: (self.hold * rate as f64).round() as u64,
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn daemon_settings(args: &[&str]) -> Result<Settings, String> {
        let argv = ["capstan", "daemon"].iter().chain(args).copied();
        match crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?.command {
            crate::cli::Command::Daemon(a) => Ok(a.settings),
            _ => unreachable!(),
        }
    }

    /// One set of defaults: the command line's are the file's.
    #[test]
    fn the_command_line_and_the_file_have_the_same_defaults() {
        assert_eq!(daemon_settings(&[]).unwrap(), Settings::default());
        assert_eq!(Settings::from_json("{}").unwrap(), Settings::default());
        Settings::default().validate().unwrap();
    }

    /// A value is refused with the same words however it comes in.
    #[test]
    fn one_validation_for_flags_and_files() {
        for (flag, value, field, reason) in [
            ("--buffer-seconds", "0.1", "buffer_seconds", "buffer_seconds must be between 0.5 and 600"),
            ("--preroll", "601", "preroll", "preroll must be between 0 and 600"),
            ("--min-free-fraction", "2", "min_free_fraction", "min_free_fraction must be between 0 and 1"),
            ("--ports", "0", "ports", "ports must be between 1 and 1024"),
            ("--osc-bind", "everywhere", "osc_bind", "osc_bind must be an IP address"),
            ("--http-bind", "anywhere", "http_bind", "http_bind must be an IP address"),
            (
                "--alarm-ring-percent",
                "0",
                "alarm_ring_percent",
                "alarm_ring_percent must be between 1 and 100",
            ),
            (
                "--alarm-silence-dbfs",
                "-130",
                "alarm_silence_dbfs",
                "alarm_silence_dbfs must be between -120 and 0",
            ),
        ] {
            let from_flag = daemon_settings(&[flag, value]).unwrap().validate().unwrap_err();
            let json = match value.parse::<f64>() {
                Ok(_) => format!("{{\"{field}\": {value}}}"),
                Err(_) => format!("{{\"{field}\": \"{value}\"}}"),
            };
            let from_file = Settings::from_json(&json).unwrap_err();
            assert!(from_flag.contains(reason), "{flag}: {from_flag}");
            assert_eq!(from_flag, from_file, "{flag} and {json}");
        }
    }

    /// On the command line a refusal names the flag the user typed; the
    /// file's words stay the file's.
    #[test]
    fn the_command_line_names_flags() {
        let said = |args: &[&str]| daemon_settings(args).unwrap().validate_command_line().unwrap_err();
        assert!(said(&["--buffer-seconds", "0.1"]).starts_with("--buffer-seconds must be between 0.5"));
        assert!(said(&["--keep-free", "2"]).starts_with("--keep-free must be between 0 and 1"));
        assert!(
            said(&["--rotate-every", "soon"]).starts_with("--rotate-every"),
            "{}",
            said(&["--rotate-every", "soon"])
        );
        assert!(said(&["--post-roll", "2"]).contains("needs --trigger transport"));
        assert!(said(&["--trigger", "level", "--post-roll", "2"]).contains("needs --trigger transport"));
        daemon_settings(&["--trigger", "transport", "--post-roll", "2"])
            .unwrap()
            .validate_command_line()
            .unwrap();
        assert!(Settings::from_json(r#"{"retention": {"keep_free": 2}}"#)
            .unwrap_err()
            .starts_with("retention.keep_free"));
        assert_eq!(flag_words("not a key at all"), "not a key at all");
        assert!(said(&["--offsite", "ftp://x/y"]).starts_with("--offsite: \"ftp://x/y\": unknown store"));
        assert!(said(&["--offsite-max-mbps", "1e9"]).starts_with("--offsite-max-mbps must be"));
        assert!(said(&["--tier", "30d=/b", "--tier", "7d=/c"]).starts_with("--tier: 7d=/c comes after"));
        assert!(said(&["--tier", "7d=/b", "--delete-after", "1d"]).starts_with("--delete-after (1d) must be"));
        assert!(said(&["--tier", "7d=/b", "--archive", "/a"]).starts_with("--tier moves takes on"));
        let s = Settings::from_json(
            r#"{"lifecycle": {"tiers": ["7d=/hdd", "30d=az://c/p"], "delete_after": 86400000}}"#,
        )
        .unwrap();
        assert_eq!(s.lifecycle.tiers[1].to_string(), "30d=az://c/p");
        assert!(Settings::from_json(r#"{"lifecycle": {"tiers": ["7d"]}}"#)
            .unwrap_err()
            .contains("AGE=PLACE"));
        assert!(said(&["--format", "flac", "--mirror", "/mnt/usb"]).starts_with("--mirror copies WAV takes"));
        assert_eq!(daemon_settings(&["--spill", "/a", "--spill", "/b"]).unwrap().spill.len(), 2);
        let m = &daemon_settings(&["--mirror-as", "flac,mono=/mnt/usb"]).unwrap().mirror_as[0];
        assert_eq!(m.resolve(&TakeFormat::default()), (FileFormat::Flac, Layout::Mono, SampleFormat::S24));
        assert_eq!(m.to_string(), "flac,mono=/mnt/usb");
        assert!(said(&["--mirror-as", "flac,f32=/x"]).starts_with("--mirror-as flac,float32=/x: "));
        assert!("mp3=/x".parse::<MirrorAs>().unwrap_err().contains("\"mp3\" is not a format"));
        let many = said(&["--ports", "16", "--mirror-as", "flac=/x"]);
        assert!(many.contains("at most 8 channels") && many.contains("write flac,mono=/x"), "{many}");
        assert!(!many.contains("--layout"), "{many}");
        let float = said(&["--mirror-as", "flac,f32=/x"]);
        assert!(float.contains("write flac,s24=/x") && !float.contains("--sample-format"), "{float}");
        // /config/storage: storage keys only, a group's fields merged, the
        // one validation.
        let base = Settings::from_json(r#"{"offsite": {"url": "s3://b/p", "max_mbps": 5}}"#).unwrap();
        let s = base.with_storage(r#"{"mirror": ["/m"], "offsite": {"max_mbps": 20}}"#).unwrap();
        assert_eq!(
            (s.mirror.len(), s.offsite.url.as_deref(), s.offsite.max_mbps),
            (1, Some("s3://b/p"), 20.0)
        );
        assert_eq!(s.storage_json()["offsite"]["max_mbps"], 20.0);
        assert!(base.with_storage(r#"{"ports": 4}"#).unwrap_err().contains("ports is not a storage setting"));
        assert!(base.with_storage(r#"{"lifecycle": {"tiers": ["7d"]}}"#).unwrap_err().contains("AGE=PLACE"));
        assert!(base.with_storage(r#"{"offsite": {"bucket": 1}}"#).unwrap_err().contains("offsite.bucket"));
        assert!(base.with_storage("[1]").unwrap_err().contains("expected a JSON object"));
        let s = Settings::from_json(r#"{"mirror_as": ["wav,mono,s16=/b"]}"#).unwrap();
        assert_eq!(
            s.mirror_as[0].resolve(&TakeFormat::default()),
            (FileFormat::Wav, Layout::Mono, SampleFormat::S16)
        );
        let two = daemon_settings(&["--mirror", "/a", "--mirror", "/b"]).unwrap();
        assert_eq!(two.mirror.len(), 2);
        assert_eq!(
            Settings::from_json(r#"{"mirror": ["/a"]}"#).unwrap().mirror,
            [std::path::PathBuf::from("/a")]
        );
        let s = Settings::from_json(r#"{"offsite": {"url": "s3://b/show", "max_mbps": 20}}"#).unwrap();
        assert_eq!((s.offsite.url.as_deref(), s.offsite.max_mbps), (Some("s3://b/show"), 20.0));
        assert!(Settings::from_json(r#"{"offsite": {"bucket": "b"}}"#)
            .unwrap_err()
            .contains("offsite.bucket"));
        assert!(crate::cli::Cli::try_parse_from(["capstan", "daemon", "--midi-note", "60"]).is_err());
        // FLAC alone: s24; WAV alone: float32; a choice is kept.
        let flac = daemon_settings(&["--format", "flac"]).unwrap();
        flac.validate_command_line().unwrap();
        assert_eq!(flac.format.sample_format(), crate::wav::SampleFormat::S24);
        assert_eq!(Settings::default().format.sample_format(), crate::wav::SampleFormat::F32);
        assert!(daemon_settings(&["--format", "flac", "--sample-format", "float32"])
            .unwrap()
            .validate()
            .is_err());
    }

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let mut s = Settings { ports: 8, port_names: vec!["kick".into()], ..Default::default() };
        s.format.project = Some("gig".into());
        s.retention.keep_last = Some(5);
        assert_eq!(Settings::from_json(&s.to_json()).unwrap(), s);
        assert!(Settings::from_json(r#"{"prots": 3}"#).unwrap_err().contains("unknown field `prots`"));
        assert!(Settings::from_json(r#"{"retention": {"keep_lst": 3}}"#).unwrap_err().contains("keep_lst"));
        assert!(Settings::from_json("[]").is_err());
    }
}
