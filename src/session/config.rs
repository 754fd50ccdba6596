//! `<client path>/capstan.json`: capstan's settings inside an NSM session.
//! Control thread only.
//!
//! Missing fields take their defaults (older files keep loading); unknown
//! fields and out-of-range values make the file invalid, so a typo such as
//! `"prots": 24` is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use crate::daemon::DaemonArgs;
use crate::settings::{defaults, Settings};

pub const FILE: &str = "capstan.json";
/// The largest settings file read.
const MAX_BYTES: u64 = 1 << 20;

/// Everything a session remembers about its capstan: the recorder's
/// [`Settings`], where `format.project` `null` means the session's name.
pub type SessionConfig = Settings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid capstan settings file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl Settings {
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
        Settings::from_json(&text).map(Some).map_err(|reason| ConfigError::Invalid { path, reason })
    }

    /// Writes `<dir>/capstan.json` atomically (temp file, fsync, rename,
    /// directory fsync): a crash leaves the old file or the new one.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(FILE);
        crate::manifest::write_atomic(&path, self.to_json().as_bytes())
            .map_err(|source| ConfigError::Write { path, source })
    }

    /// The daemon settings for this session: JACK client `client_id`, takes
    /// in `<path>/takes`, file names from the project or `display_name`.
    pub fn to_args(&self, client_id: &str, path: &Path, display_name: &str) -> DaemonArgs {
        let project = self.format.project.clone().unwrap_or_else(|| display_name.to_string());
        let project = match crate::naming::sanitize(project.trim()) {
            p if p.is_empty() => defaults::PROJECT.to_string(),
            p => p,
        };
        let mut settings = self.clone();
        settings.format.project = Some(project);
        DaemonArgs { name: client_id.to_string(), dir: path.join("takes"), settings }
    }

    /// Takes over what changed while running (over OSC); what only the
    /// session decides (the project's `null`, the saved OSC and web ports)
    /// stays.
    pub fn update_from(&mut self, args: &DaemonArgs) {
        let (project, osc_port, http_port) = (self.format.project.take(), self.osc_port, self.http_port);
        *self = args.settings.clone();
        self.format.project = project;
        self.osc_port = osc_port;
        self.http_port = http_port;
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
    use crate::wav::SampleFormat;

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
        assert_eq!(
            (c.ports, c.osc_port, c.format.sample_format()),
            (3, defaults::OSC_PORT, SampleFormat::F32)
        );
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
        assert_eq!(a.settings.format.project_name(), crate::naming::sanitize("My Session"));
        let mut named = c;
        named.format.project = Some("gig".into());
        assert_eq!(named.to_args("x", Path::new("/p"), "My Session").settings.format.project_name(), "gig");
    }
}
