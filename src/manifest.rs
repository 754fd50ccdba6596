//! The take manifest: a JSON file beside the audio that says what the take
//! is and how it ended. Written at start, on rotation and errors, and at the
//! end, always atomically (temp file, fsync, rename, fsync of the directory),
//! so after any crash it is either the old or the new version, never half.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::durable;
use crate::vocab::Gap;

/// Suffix of manifest files: `<take name>.take.json`.
pub const SUFFIX: &str = crate::vocab::MANIFEST_SUFFIX;

/// The largest manifest read. capstan's own stay far below it (10,000
/// markers and 1,024 ports take about 4 MB); a larger file is not ours, and
/// reading it whole could exhaust memory (recover, prune, start-up).
pub const MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeState {
    /// Being recorded (or the recorder died: run `capstan recover`).
    #[default]
    Recording,
    Complete,
    /// Repaired by `capstan recover` after a crash.
    Recovered,
    /// Ended by an error; the files hold what was written before it.
    Failed,
}

/// One input port and what fed it when the take started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub sources: Vec<String>,
    /// What the files' iXML calls this channel, when it is not the port's
    /// name (a configured name or the source's pretty name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_name: Option<String>,
}

/// `Default` is a take being recorded with nothing known yet: creation and
/// tests fill in what they know.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub capstan_version: String,
    pub take_id: String,
    pub project: String,
    /// Audio files, by name, in the manifest's directory.
    pub files: Vec<String>,
    /// Each file's iXML FILE_UID, in the order of `files`.
    #[serde(default)]
    pub file_uids: Vec<String>,
    pub ports: Vec<PortInfo>,
    pub sample_rate: u32,
    pub sample_format: String,
    pub layout: String,
    /// JACK frame time of the first frame (the bext time_reference).
    pub first_frame_time: Option<u64>,
    /// The bext time_reference: samples since midnight of `started` (or
    /// `first_frame_time` with `--time-reference jack`).
    #[serde(default)]
    pub time_reference: Option<u64>,
    /// Wall-clock time of the first frame (RFC 3339, µs).
    pub started: Option<String>,
    /// Frames per channel written (at the last update).
    pub frames: u64,
    pub gaps: Vec<Gap>,
    /// While the take records (and after a crash): `gaps` lists every gap
    /// in the frames before this one, saved at a checkpoint; frames after
    /// it may hold gaps not yet saved. Absent once the take is finished:
    /// then every gap is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaps_until: Option<u64>,
    /// Frames JACK delivered a second time (already written once; dropped).
    #[serde(default)]
    pub repeated_frames: u64,
    pub xruns: u64,
    pub state: TakeState,
    pub error: Option<String>,
    /// EBU R 128 loudness of each file (in the order of `files`), when
    /// measured; set when the take ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loudness: Vec<crate::wav::Loudness>,
    /// Markers (`/record/mark`), in the files as cue points once final.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<crate::wav::Marker>,
    /// SHA-256 of each file (in the order of `files`), set when the take
    /// is archived: what its copy was verified against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sha256: Vec<String>,
    /// What started the take: "command", "transport rolled at …",
    /// "clock boundary …".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// What ended it, when that was not the end of the recorder: "command",
    /// "transport stopped", "clock boundary …".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// What `capstan recover` did, if it ran.
    pub recovery: Option<String>,
    /// Real-time and disk numbers over the take (set when it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<RtStats>,
    /// The take's previous segment (its name), when JACK's rate or clock
    /// changed during the take, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<Continuation>,
    /// The take's next segment (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_in: Option<String>,
    /// The take's picture (`NAME.png`, beside its files): each input's
    /// level over time, gaps and markers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// The alarms raised while it was recorded (one entry per kind and
    /// input, with a count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<crate::vocab::AlarmRecord>,
    /// Set when the take is final: every frame of its span is in its files
    /// as it arrived (no gap). A take with gaps has `false`, and its gaps
    /// say where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<bool>,
    /// Verified copies of the take in object stores (`--offsite`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsite: Vec<OffsiteCopy>,
    /// Every copy written as the take was recorded (`--mirror`), the
    /// take's own directory first, and how each ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyState>,
}

/// One copy of a take written as it was recorded (see `copies`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopyState {
    pub dir: String,
    /// "complete", or "failed" for a copy that stopped early.
    pub state: String,
    /// Frames the copy's files hold.
    pub frames: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A copy in another format than the take's (`flac mono s24`); none:
    /// byte for byte the take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A copy of the take in an object store, each object read back and
/// checked by its SHA-256 (see `offsite`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OffsiteCopy {
    /// The store and prefix, as configured (`s3://…`, `az://…`).
    pub url: String,
    /// The take's files and picture; the manifest itself is uploaded
    /// last, with this list in it.
    pub objects: Vec<OffsiteObject>,
    /// When the last object was verified (RFC 3339).
    pub verified: String,
}

/// One object of an [`OffsiteCopy`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OffsiteObject {
    /// The local file's name (in the take's directory).
    pub file: String,
    /// The object's key in the store.
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Where a segment comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Continuation {
    pub segment: String,
    pub reason: String,
}

/// How hard the take was on the machine: the callback's duration, how full
/// the rings got and how long the writes took, over this take only.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RtStats {
    pub callback: crate::rt::CallbackSummary,
    pub disk: crate::vocab::DiskSummary,
    /// The ring high-water mark in seconds of audio.
    pub ring_high_water_seconds: f64,
    /// Frames our rings could not take (the callback dropped the cycle).
    pub overflow_frames: u64,
}

impl Manifest {
    /// The manifest's path for a take named `name` in `dir`.
    pub fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}{SUFFIX}"))
    }

    /// Reads a manifest: a regular file, not through a symbolic link, and
    /// never blocking (a FIFO named like a manifest is refused).
    pub fn load(path: &Path) -> std::io::Result<Manifest> {
        use std::io::Read;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (_, f) = crate::takefiles::open_regular(dir, name, false)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let too_large = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {} MiB: not a capstan manifest; left alone", MAX_BYTES >> 20),
            )
        };
        if f.metadata()?.len() > MAX_BYTES {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        f.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(too_large());
        }
        serde_json::from_slice(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Writes `path` atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(path, &json)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content: temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        // Exclusive: a link planted at the temp name is never followed.
        let mut f = match durable::create_new(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?; // our own, from a crashed run
                durable::create_new(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        durable::sync_file(&f, &tmp)?;
        durable::rename(&tmp, path)?;
        durable::sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk's own loss is written `disk_overrun`; manifests written
    /// before, which say `overflow`, still read.
    #[test]
    fn a_disk_overrun_gap_is_named_so_and_the_old_name_reads() {
        use crate::vocab::GapCause;
        let g = Gap { at: 5, frames: 64, cause: GapCause::DiskOverrun };
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(text, r#"{"at":5,"frames":64,"cause":"disk_overrun"}"#);
        let old: Gap = serde_json::from_str(r#"{"at":5,"frames":64,"cause":"overflow"}"#).unwrap();
        assert_eq!(old, g);
    }

    /// A manifest is replaced so that a crash leaves the old or the new one:
    /// content synced before the rename, the directory synced after it.
    /// Fails if any sync is dropped or moved (see `durable::check`).
    #[test]
    fn atomic_writes_sync_in_the_order_crash_safety_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.take.json");
        durable::take_log();
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        let log = durable::take_log();
        durable::check(&log).unwrap();
        let syncs = log.iter().filter(|s| matches!(s, durable::Step::SyncFile(_))).count();
        assert_eq!(syncs, 2, "{log:?}");
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }

    /// A link planted at the temporary name is replaced, never followed.
    #[test]
    fn a_link_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"not ours").unwrap();
        let path = dir.path().join("t.take.json");
        let tmp = dir.path().join(format!(".t.take.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&path, b"ours").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"not ours");
        assert_eq!(fs::read(&path).unwrap(), b"ours");
    }

    pub fn sample() -> Manifest {
        Manifest {
            capstan_version: "0.1.0".into(),
            take_id: "a".into(),
            project: "p".into(),
            files: vec!["a.wav".into()],
            file_uids: vec![],
            ports: vec![PortInfo {
                name: "in_1".into(),
                sources: vec!["src:out_1".into()],
                track_name: None,
            }],
            sample_rate: 48000,
            sample_format: "float32".into(),
            layout: "interleaved".into(),
            first_frame_time: Some(5),
            frames: 10,
            ..Default::default()
        }
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = Manifest::path(dir.path(), "a");
        let mut m = sample();
        m.save(&p).unwrap();
        m.state = TakeState::Complete;
        m.save(&p).unwrap();
        assert_eq!(Manifest::load(&p).unwrap(), m);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.take.json")]);
        assert!(p.to_string_lossy().ends_with(".take.json"));
    }

    /// A huge manifest (a sparse 1 GiB file once made recover use 1 GB of
    /// memory) is refused before it is read, with a sentence.
    #[test]
    fn a_manifest_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let p = Manifest::path(dir.path(), "huge");
        let f = fs::File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap();
        let e = Manifest::load(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
    }
}
