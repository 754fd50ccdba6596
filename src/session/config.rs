//! `<client path>/capstan.json`: capstan's settings inside an NSM session.
//! Control thread only.
//!
//! Missing fields take their defaults (older files keep loading); unknown
//! fields and out-of-range values make the file invalid, so a typo such as
//! `"prots": 24` is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::{DaemonArgs, TakeFormat};
use crate::disk::Layout;
use crate::retention::Policy;
use crate::wav::SampleFormat;

pub const FILE: &str = "capstan.json";
/// The format version this capstan writes and reads.
pub const VERSION: u32 = 1;
/// The first OSC port a new session tries (then the next free one).
pub const DEFAULT_OSC_PORT: u16 = 7770;
/// The largest settings file read.
const MAX_BYTES: u64 = 1 << 20;

/// Everything a session remembers about its capstan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub version: u32,
    /// Number of JACK inputs.
    pub ports: u16,
    /// Names for the first inputs; the rest are `in_K`.
    pub port_names: Vec<String>,
    pub sample_format: SampleFormat,
    pub layout: Layout,
    /// Seconds of audio each input's ring buffer holds.
    pub buffer_seconds: f64,
    /// UDP port for OSC commands (chosen when the session is created).
    pub osc_port: u16,
    /// Address the OSC socket listens on (127.0.0.1: this machine only).
    pub osc_bind: String,
    /// Seconds of audio kept in memory so a take starts in the past.
    pub preroll: f64,
    /// File-name prefix for takes; `null` means the session's display name.
    pub project: Option<String>,
    /// Output ports to connect at start-up (globs). Usually empty: the
    /// session's patchbay restores connections.
    pub connect: Vec<String>,
    pub min_minutes: f64,
    pub min_free_fraction: f64,
    pub disk_margin_seconds: f64,
    pub retention: Policy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            version: VERSION,
            ports: 2,
            port_names: Vec::new(),
            sample_format: SampleFormat::F32,
            layout: Layout::Interleaved,
            buffer_seconds: 4.0,
            osc_port: DEFAULT_OSC_PORT,
            osc_bind: "127.0.0.1".into(),
            preroll: 0.0,
            project: None,
            connect: Vec::new(),
            min_minutes: 10.0,
            min_free_fraction: 0.15,
            disk_margin_seconds: 60.0,
            retention: Policy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid capstan settings file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn range(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be between {lo} and {hi}, got {v}"))
    }
}

impl SessionConfig {
    /// Checks every value; the message names the first bad one.
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
        range("buffer_seconds", self.buffer_seconds, 0.5, 600.0)?;
        range("preroll", self.preroll, 0.0, 600.0)?;
        range("min_minutes", self.min_minutes, 0.0, 1e6)?;
        range("min_free_fraction", self.min_free_fraction, 0.0, 1.0)?;
        range("disk_margin_seconds", self.disk_margin_seconds, 0.0, 1e6)?;
        if let Some(f) = self.retention.keep_free {
            range("retention.keep_free", f, 0.0, 1.0)?;
        }
        if self.osc_bind.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("osc_bind must be an IP address, got {:?}", self.osc_bind));
        }
        if self.project.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err("project must not be empty (use null for the session's name)".into());
        }
        Ok(())
    }

    /// Reads `<dir>/capstan.json`; `Ok(None)` if there is none yet.
    pub fn load(dir: &Path) -> Result<Option<SessionConfig>, ConfigError> {
        let path = dir.join(FILE);
        // Never follows a link or blocks on a FIFO; never reads more than
        // any settings file can need.
        let file = match crate::takefiles::open_regular(dir, FILE, false) {
            Ok((_, f)) => f,
            Err(crate::takefiles::NotOurs::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(crate::takefiles::NotOurs::Io { path, source }) => {
                return Err(ConfigError::Read { path, source })
            }
            Err(e) => return Err(ConfigError::Invalid { path, reason: e.to_string() }),
        };
        let mut text = String::new();
        use std::io::Read;
        if let Err(source) = file.take(MAX_BYTES + 1).read_to_string(&mut text) {
            return Err(ConfigError::Read { path, source });
        }
        if text.len() as u64 > MAX_BYTES {
            return Err(ConfigError::Invalid { path, reason: format!("larger than {MAX_BYTES} bytes") });
        }
        let config: SessionConfig = serde_json::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.clone(), reason: e.to_string() })?;
        config.validate().map_err(|reason| ConfigError::Invalid { path, reason })?;
        Ok(Some(config))
    }

    /// Writes `<dir>/capstan.json` atomically (temp file, fsync, rename,
    /// directory fsync): a crash leaves the old file or the new one.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(FILE);
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        crate::manifest::write_atomic(&path, text.as_bytes())
            .map_err(|source| ConfigError::Write { path, source })
    }

    /// The daemon settings for this session: JACK client `client_id`, takes
    /// in `<path>/takes`, file names from the project or `display_name`.
    pub fn to_args(&self, client_id: &str, path: &Path, display_name: &str) -> DaemonArgs {
        let project = self.project.clone().unwrap_or_else(|| display_name.to_string());
        let project = match crate::naming::sanitize(project.trim()) {
            p if p.is_empty() => "capstan".to_string(),
            p => p,
        };
        DaemonArgs {
            name: client_id.to_string(),
            ports: self.ports,
            port_names: self.port_names.clone(),
            connect: self.connect.clone(),
            dir: path.join("takes"),
            osc_port: self.osc_port,
            osc_bind: self.osc_bind.clone(),
            preroll: self.preroll,
            format: TakeFormat {
                project,
                layout: self.layout,
                sample_format: self.sample_format,
                buffer_seconds: self.buffer_seconds,
            },
            min_minutes: self.min_minutes,
            min_free_fraction: self.min_free_fraction,
            disk_margin_seconds: self.disk_margin_seconds,
            retention: self.retention.clone(),
        }
    }

    /// Takes over the settings that can change while running (over OSC).
    pub fn update_from(&mut self, args: &DaemonArgs) {
        self.ports = args.ports;
        self.port_names = args.port_names.clone();
        self.sample_format = args.format.sample_format;
        self.layout = args.format.layout;
        self.preroll = args.preroll;
    }
}

/// The OSC ports that the other capstans of the session (sibling client
/// directories with a `capstan.json`) have saved: a capstan whose own port
/// is taken must not take one of theirs. Unreadable files are skipped.
pub fn sibling_ports(client_dir: &Path) -> Vec<u16> {
    let Some(session) = client_dir.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(session) else { return Vec::new() };
    let own = client_dir.file_name();
    entries
        .filter_map(Result::ok)
        .take(1024)
        .filter(|e| Some(e.file_name().as_os_str()) != own && e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| SessionConfig::load(&e.path()).ok().flatten())
        .map(|c| c.osc_port)
        .collect()
}

/// Renames a bad settings file to `capstan.json.bad-<time>` so that it is
/// kept for the user and never overwritten.
pub fn set_aside(dir: &Path) -> std::io::Result<PathBuf> {
    let from = dir.join(FILE);
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    for n in 0..100 {
        let to = match n {
            0 => dir.join(format!("{FILE}.bad-{stamp}")),
            n => dir.join(format!("{FILE}.bad-{stamp}-{n}")),
        };
        // hard_link fails if `to` exists: never replaces an earlier bad file.
        match std::fs::hard_link(&from, &to) {
            Ok(()) => {
                std::fs::remove_file(&from)?;
                return Ok(to);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many set-aside settings files"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_missing_fields_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SessionConfig::load(dir.path()).unwrap(), None);
        let mut c = SessionConfig { ports: 8, port_names: vec!["kick".into()], ..Default::default() };
        c.retention.keep_last = Some(5);
        c.save(dir.path()).unwrap();
        assert_eq!(SessionConfig::load(dir.path()).unwrap(), Some(c));
        std::fs::write(dir.path().join(FILE), r#"{"ports": 3}"#).unwrap();
        let c = SessionConfig::load(dir.path()).unwrap().unwrap();
        assert_eq!((c.ports, c.osc_port, c.sample_format), (3, DEFAULT_OSC_PORT, SampleFormat::F32));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        for (text, reason) in [
            ("{not json", "key must be a string"),
            (r#"{"prots": 3}"#, "unknown field `prots`"),
            (r#"{"ports": 0}"#, "ports must be between 1 and 1024"),
            (r#"{"ports": "two"}"#, "invalid type"),
            (r#"{"version": 2}"#, "newer capstan"),
            (r#"{"preroll": 1000}"#, "preroll must be between"),
            (r#"{"port_names": ["a", "a"]}"#, "used twice"),
            (r#"{"osc_bind": "everywhere"}"#, "osc_bind"),
            (r#"{"sample_format": "mp3"}"#, "unknown variant"),
            ("", "EOF"),
        ] {
            std::fs::write(dir.path().join(FILE), text).unwrap();
            let err = SessionConfig::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn set_aside_keeps_every_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "first").unwrap();
        let a = set_aside(dir.path()).unwrap();
        std::fs::write(dir.path().join(FILE), "second").unwrap();
        let b = set_aside(dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(a).unwrap(), "first");
        assert_eq!(std::fs::read_to_string(b).unwrap(), "second");
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn args_follow_the_session() {
        let c = SessionConfig::default();
        let a = c.to_args("nABCD", Path::new("/s/capstan.nABCD"), "My Session");
        assert_eq!(a.name, "nABCD");
        assert_eq!(a.dir, Path::new("/s/capstan.nABCD/takes"));
        assert_eq!(a.format.project, crate::naming::sanitize("My Session"));
        let named = SessionConfig { project: Some("gig".into()), ..c };
        assert_eq!(named.to_args("x", Path::new("/p"), "My Session").format.project, "gig");
    }
}
