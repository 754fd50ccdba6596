//! Retention: which finished takes to delete or move to an archive
//! directory, and doing it crash-safely. Only takes with a capstan manifest
//! are ever touched, never one whose manifest says "recording" (the running
//! take, or a crashed one waiting for `capstan recover`), and never any other
//! file in the directory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::manifest::{Manifest, TakeState};
use crate::takefiles;

/// The retention policy; every rule is optional.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
pub struct Policy {
    /// Keep at most this many finished takes.
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Remove takes older than this (e.g. 30d, 12h, 90m).
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "secs_opt", default)]
    pub max_age: Option<Duration>,
    /// Keep the takes' total size under this (e.g. 500G, 20M).
    #[arg(long, value_parser = parse_size)]
    pub max_total: Option<u64>,
    /// Remove the oldest takes while the volume has less than this fraction
    /// free (0.0-1.0).
    #[arg(long)]
    pub keep_free: Option<f64>,
    /// Move takes here (copy, fsync, verify, then delete) instead of
    /// deleting them.
    #[arg(long)]
    pub archive: Option<PathBuf>,
}

pub(crate) mod secs_opt {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&d.map(|d| d.as_secs()), s)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<u64> = serde::Deserialize::deserialize(d)?;
        Ok(v.map(Duration::from_secs))
    }
}

impl Policy {
    /// Checks every value (the same words for `--keep-free` and
    /// `capstan.json`'s `retention.keep_free`): a typo must never delete
    /// takes.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(f) = self.keep_free {
            if !(f.is_finite() && (0.0..=1.0).contains(&f)) {
                return Err(format!("retention.keep_free must be between 0 and 1 (a fraction), got {f}"));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.max_age.is_none()
            && self.max_total.is_none()
            && self.keep_free.is_none()
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) =
        s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected e.g. 30d, 12h, 90m, 45s"))?;
    let mul = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d, w)")),
    };
    Ok(Duration::from_secs(n * mul))
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len()));
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: expected e.g. 500G, 20M"))?;
    let mul = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        u => return Err(format!("{s:?}: unknown unit {u:?} (K, M, G, T)")),
    };
    Ok((n * mul as f64) as u64)
}

/// A finished take on disk.
#[derive(Debug, Clone)]
pub struct TakeOnDisk {
    pub manifest: PathBuf,
    /// The take's name (its files carry it in their bext).
    pub take: String,
    /// Its files, each checked to be its own (see [`takefiles::open`]).
    pub files: Vec<PathBuf>,
    /// Each file's FILE_UID as the manifest lists it.
    pub uids: Vec<Option<String>>,
    /// The take's picture (`NAME.png`, named by its manifest), if it is
    /// there and is one: a regular file that starts as a PNG.
    pub picture: Option<PathBuf>,
    pub bytes: u64,
    pub when: SystemTime,
}

/// The first bytes of every PNG file.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Opens a take's picture if it is the one capstan draws: named `TAKE.png`
/// as the manifest says, a regular file (no link) that starts as a PNG.
fn open_picture(dir: &Path, take: &str, name: &str) -> Option<(PathBuf, File)> {
    if name != format!("{take}.png") {
        return None;
    }
    let (path, mut f) = takefiles::open_regular(dir, name, false).ok()?;
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    std::io::Seek::rewind(&mut f).ok()?;
    (head == PNG_SIGNATURE).then_some((path, f))
}

/// A take's picture, checked again right before it is copied or removed.
pub(crate) fn own_picture(t: &TakeOnDisk, f: &Path) -> Result<File> {
    let dir = f.parent().unwrap_or(Path::new("."));
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    open_picture(dir, &t.take, name)
        .map(|(_, file)| file)
        .with_context(|| format!("{} is no longer the take's picture; left alone", f.display()))
}

/// Finished takes in `dir` and its take subdirectories (`--dir-layout`;
/// never inside `archive`), oldest first, and a line for each take left
/// alone because its manifest names a file that is not its own.
pub fn takes(dir: &Path, archive: Option<&Path>) -> Result<(Vec<TakeOnDisk>, Vec<String>)> {
    let mut v = Vec::new();
    let mut left_alone = Vec::new();
    let manifests =
        takefiles::manifest_paths(dir, archive).with_context(|| format!("reading {}", dir.display()))?;
    for p in manifests {
        let dir = p.parent().unwrap_or(dir);
        let Ok(m) = Manifest::load(&p) else { continue };
        if m.state == TakeState::Recording {
            continue;
        }
        let Some(take) = takefiles::take_name(&p) else { continue };
        let (mut files, mut uids, mut bytes, mut foreign) = (Vec::new(), Vec::new(), 0, None);
        for (i, name) in m.files.iter().enumerate() {
            let uid = m.file_uids.get(i).cloned();
            match takefiles::open(dir, name, &take, uid.as_deref(), false) {
                Ok(f) => {
                    bytes += f.file.metadata().map_or(0, |m| m.len());
                    files.push(f.path);
                    uids.push(uid);
                }
                // Gone already (an interrupted prune): nothing to do for it.
                Err(takefiles::NotOurs::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    foreign = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = foreign {
            left_alone.push(format!("left alone: {}: {e}", p.display()));
            continue;
        }
        let when = m
            .started
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(SystemTime::from)
            .or_else(|| fs::metadata(&p).and_then(|m| m.modified()).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let picture =
            m.picture.as_deref().and_then(|name| open_picture(dir, &take, name)).map(|(path, _)| path);
        v.push(TakeOnDisk { manifest: p, take, files, uids, picture, bytes, when });
    }
    v.sort_by_key(|t| t.when);
    Ok((v, left_alone))
}

/// Checks again, right before a file is removed or copied, that it is still
/// the take's own.
fn recheck(t: &TakeOnDisk, f: &Path) -> Result<()> {
    open_own(t, f).map(drop)
}

/// What a policy does to a directory.
pub struct Plan {
    /// The takes it removes, oldest first, with the reason.
    pub remove: Vec<(TakeOnDisk, String)>,
    /// A line for each take left alone (see [`takes`]).
    pub left_alone: Vec<String>,
    /// Finished takes found (those removed among them).
    pub finished: usize,
}

/// What the policy does to `dir` now.
pub fn plan(dir: &Path, policy: &Policy, now: SystemTime) -> Result<Plan> {
    let (all, left_alone) = takes(dir, policy.archive.as_deref())?;
    let mut out: Vec<(TakeOnDisk, String)> = Vec::new();
    let n = all.len();
    let mut total: u64 = all.iter().map(|t| t.bytes).sum();
    let (mut free, vol) = crate::volume::space(dir).unwrap_or((0, 0));
    let frees_space = policy.archive.as_ref().is_none_or(|a| !same_volume(dir, a));
    for (i, t) in all.into_iter().enumerate() {
        let remaining = n - i;
        let reason = if policy.keep_last.is_some_and(|k| remaining > k) {
            Some(format!("more than {} takes", policy.keep_last.unwrap_or(0)))
        } else if policy.max_age.is_some_and(|a| now.duration_since(t.when).is_ok_and(|age| age > a)) {
            Some("older than --max-age".to_string())
        } else if policy.max_total.is_some_and(|m| total > m) {
            Some("takes over --max-total".to_string())
        } else if frees_space && vol > 0 && policy.keep_free.is_some_and(|f| (free as f64 / vol as f64) < f) {
            Some("volume under --keep-free".to_string())
        } else {
            None
        };
        if let Some(r) = reason {
            total -= t.bytes;
            if frees_space {
                free += t.bytes;
            }
            out.push((t, r));
        }
    }
    Ok(Plan { remove: out, left_alone, finished: n })
}

fn same_volume(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

/// Moves a take to `archive`: copy every file, fsync, verify the copy's
/// content against the original (SHA-256, recorded in the archived
/// manifest), and only then delete the originals (manifest last). Nothing in
/// the archive is followed or replaced: each copy is made under a fresh
/// temporary name created exclusively and takes its final name only if that
/// name is free, or holds a verified copy of the same content (left by an
/// interrupted run). A crash at any point leaves at least one complete
/// copy; re-running finishes.
pub fn archive_take(t: &TakeOnDisk, archive: &Path) -> Result<()> {
    archive_take_paced(t, archive, &mut |_| {})
}

/// [`archive_take`], calling `pace` after each chunk written with its
/// size (it may sleep: the lifecycle's rate limit).
pub fn archive_take_paced(t: &TakeOnDisk, archive: &Path, pace: &mut dyn FnMut(usize)) -> Result<()> {
    copy_to_archive(t, archive, pace)?;
    // A crash from here on leaves both copies; the next run finds the
    // archived ones verified and deletes the originals.
    for f in &t.files {
        recheck(t, f)?;
        fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    remove_picture(t)?;
    fs::remove_file(&t.manifest)?;
    Ok(())
}

/// Removes the take's picture, if it has one and it is still its own.
fn remove_picture(t: &TakeOnDisk) -> Result<()> {
    let Some(p) = &t.picture else { return Ok(()) };
    if own_picture(t, p).is_ok() {
        if let Err(e) = fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).with_context(|| format!("removing {}", p.display()));
            }
        }
    }
    Ok(())
}

/// The first half of [`archive_take`]: every file and the manifest copied
/// into `archive`, verified and synced; nothing deleted yet.
fn copy_to_archive(t: &TakeOnDisk, archive: &Path, pace: &mut dyn FnMut(usize)) -> Result<()> {
    fs::create_dir_all(archive).with_context(|| format!("creating {}", archive.display()))?;
    let archive_dir = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut sums = Vec::new();
    for f in &t.files {
        let mut src = open_own(t, f)?;
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        sums.push(copy_verified(&mut src, &archive_dir, archive, name, pace)?);
    }
    if let Some(p) = &t.picture {
        // Verified like the audio; an interrupted run's copy is taken.
        let mut src = own_picture(t, p)?;
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        copy_verified(&mut src, &archive_dir, archive, name, pace)?;
    }
    let mut m = Manifest::load(&t.manifest).with_context(|| format!("reading {}", t.manifest.display()))?;
    m.sha256 = sums;
    let mname = t.manifest.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match takefiles::open_regular(archive, mname, false) {
        // An interrupted run's copy of this very take (same files, same
        // content) is taken; anything else at that name is not ours.
        Ok(_) => match Manifest::load(&archive.join(mname)) {
            Ok(a) if a.take_id == m.take_id && a.files == m.files && a.sha256 == m.sha256 => {}
            _ => bail!("{} already holds a different {mname}; original kept", archive.display()),
        },
        Err(takefiles::NotOurs::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let json = serde_json::to_vec_pretty(&m)?;
            let tmp = copy_new(&mut json.as_slice(), archive, mname, pace)?.0;
            place(&archive_dir, archive, &tmp, mname)
                .with_context(|| format!("{} already holds a {mname}; original kept", archive.display()))?;
        }
        Err(e) => bail!("{e}; original kept"),
    }
    crate::durable::sync_dir(archive)?;
    Ok(())
}

/// Opens a take's file, checking (again) that it is the take's own.
pub(crate) fn open_own(t: &TakeOnDisk, f: &Path) -> Result<File> {
    let dir = f.parent().unwrap_or(Path::new("."));
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let uid = t.files.iter().position(|x| x == f).and_then(|i| t.uids[i].as_deref());
    let mut file = takefiles::open(dir, name, &t.take, uid, false)?.file;
    // Reading the header moved the file's position.
    std::io::Seek::rewind(&mut file)?;
    Ok(file)
}

/// Lowercase hex of a digest (the form manifests keep checksums in).
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `r` to its end, handing each chunk to `f`.
fn each_chunk(
    r: &mut impl std::io::Read,
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(()),
            n => f(&buf[..n])?,
        }
    }
}

/// SHA-256 of everything `r` reads.
fn sha256_of(r: &mut impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    each_chunk(r, |c| {
        h.update(c);
        Ok(())
    })?;
    Ok(hex(&h.finalize()))
}

/// Copies `src` into a new temporary file in `dir` (created exclusively
/// under a name nobody has: never a planted link), synced; returns its name
/// and the SHA-256 of what was copied.
fn copy_new(
    src: &mut impl std::io::Read,
    dir: &Path,
    name: &str,
    pace: &mut dyn FnMut(usize),
) -> Result<(String, String)> {
    use sha2::Digest;
    use std::io::Write;
    sweep_parts(dir, name);
    for n in 0..100u32 {
        let tmp = format!(".{name}.{}-{n}.part", std::process::id());
        let mut out = match crate::durable::create_new(&dir.join(&tmp)) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            other => other.with_context(|| format!("creating {}", dir.join(&tmp).display()))?,
        };
        let mut h = sha2::Sha256::new();
        let copied = each_chunk(src, |c| {
            h.update(c);
            out.write_all(c)?;
            pace(c.len());
            Ok(())
        })
        .and_then(|()| crate::durable::sync_file(&out, &dir.join(&tmp)));
        if let Err(e) = copied {
            let _ = fs::remove_file(dir.join(&tmp));
            return Err(e).with_context(|| format!("copying to {}", dir.join(&tmp).display()));
        }
        return Ok((tmp, hex(&h.finalize())));
    }
    bail!("no free temporary name for {name} in {}", dir.display())
}

/// Removes what a copy of `name` into `dir` killed midway left: its
/// temporary files (`.NAME.PID-N.part`, as [`copy_new`] names them) of a
/// process that is gone. Regular files only; anything else is left alone.
fn sweep_parts(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let head = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&head)) else { continue };
        let Some((pid, n)) = rest.strip_suffix(".part").and_then(|r| r.split_once('-')) else { continue };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u32>()) else { continue };
        let gone = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        if gone && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Gives the temporary file `tmp` its final `name`, only if the name is free.
fn place(dir_file: &File, dir: &Path, tmp: &str, name: &str) -> std::io::Result<()> {
    let placed = crate::durable::rename_new(dir_file, dir, tmp, name);
    if placed.is_err() {
        let _ = fs::remove_file(dir.join(tmp));
    }
    placed
}

/// Copies one file of a take into the archive and verifies the copy by its
/// content; returns its SHA-256.
fn copy_verified(
    src: &mut File,
    dir_file: &File,
    dir: &Path,
    name: &str,
    pace: &mut dyn FnMut(usize),
) -> Result<String> {
    let (tmp, sum) = copy_new(src, dir, name, pace)?;
    let written = takefiles::open_regular(dir, &tmp, false)
        .map_err(anyhow::Error::from)
        .and_then(|(_, mut f)| sha256_of(&mut f).map_err(anyhow::Error::from));
    if written.as_deref().ok() != Some(sum.as_str()) {
        let _ = fs::remove_file(dir.join(&tmp));
        bail!("the copy of {name} in {} does not read back as written; original kept", dir.display());
    }
    match place(dir_file, dir, &tmp, name) {
        Ok(()) => Ok(sum),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // An interrupted run's copy counts only if its content is the
            // original's; anything else there (a link, another file) is
            // left alone, and so is the take.
            let same = takefiles::open_regular(dir, name, false)
                .ok()
                .and_then(|(_, mut f)| sha256_of(&mut f).ok())
                .is_some_and(|s| s == sum);
            if same {
                Ok(sum)
            } else {
                bail!("{} already holds a different {name}; original kept", dir.display())
            }
        }
        Err(e) => Err(e).with_context(|| format!("naming {}", dir.join(name).display())),
    }
}

pub fn delete_take(t: &TakeOnDisk) -> Result<()> {
    for f in &t.files {
        recheck(t, f)?;
        if let Err(e) = fs::remove_file(f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).with_context(|| format!("removing {}", f.display()));
            }
        }
    }
    remove_picture(t)?;
    fs::remove_file(&t.manifest).with_context(|| format!("removing {}", t.manifest.display()))
}

/// `Some(n)` when the policy would remove every one of the `n` (> 0)
/// finished takes in `dir`: likely a mistake (`--keep-free 2` for 0.2).
pub fn removes_every_take(dir: &Path, policy: &Policy) -> Result<Option<usize>> {
    let p = plan(dir, policy, SystemTime::now())?;
    Ok((p.finished > 0 && p.remove.len() == p.finished).then_some(p.finished))
}

/// Applies the policy; returns one line per take moved or deleted.
pub fn apply(dir: &Path, policy: &Policy, dry_run: bool) -> Result<Vec<String>> {
    let Plan { remove, left_alone: mut lines, .. } = plan(dir, policy, SystemTime::now())?;
    for (t, why) in remove {
        let what = match &policy.archive {
            Some(a) => format!("move {} to {} ({why})", t.manifest.display(), a.display()),
            None => format!("delete {} ({why})", t.manifest.display()),
        };
        if !dry_run {
            let done = match &policy.archive {
                Some(a) => archive_take(&t, a),
                None => delete_take(&t),
            };
            // One take that cannot be pruned does not stop the others.
            if let Err(e) = done {
                lines.push(format!("failed: {what}: {e:#}"));
                continue;
            }
        }
        lines.push(done_line(dry_run, &what, &t));
    }
    Ok(lines)
}

/// What a pass did to a take (or would do, with `dry_run`), in a line.
pub fn done_line(dry_run: bool, what: &str, t: &TakeOnDisk) -> String {
    format!("{}{what}, {} files, {} bytes", if dry_run { "would " } else { "" }, t.files.len(), t.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A take's file as capstan writes it (its bext names the take), with
    /// `bytes` bytes of audio.
    fn wav(dir: &Path, file: &str, take: &str, bytes: usize) {
        let spec =
            crate::wav::WavSpec { channels: 1, sample_rate: 48000, format: crate::wav::SampleFormat::S16 };
        let bext = crate::wav::Bext {
            originator: "capstan".into(),
            originator_reference: take.into(),
            coding_history: "A=PCM\r\n".into(),
            ..Default::default()
        };
        let mut w = crate::wav::WavWriter::create_new(&dir.join(file), spec, &bext, "").unwrap();
        w.append(&vec![0u8; bytes]).unwrap();
        w.finalize().unwrap();
    }

    /// The size of a take file's header.
    fn header() -> u64 {
        let d = tempfile::tempdir().unwrap();
        wav(d.path(), "x.wav", "x", 0);
        fs::metadata(d.path().join("x.wav")).unwrap().len()
    }

    fn take(dir: &Path, name: &str, age_h: u64, bytes: usize, state: TakeState) {
        wav(dir, &format!("{name}.wav"), name, bytes);
        let mut png = PNG_SIGNATURE.to_vec();
        png.extend_from_slice(name.as_bytes());
        fs::write(dir.join(format!("{name}.png")), png).unwrap();
        let when = chrono::Local::now() - chrono::Duration::hours(age_h as i64);
        let m = Manifest {
            capstan_version: "t".into(),
            take_id: name.into(),
            project: "p".into(),
            files: vec![format!("{name}.wav")],
            file_uids: vec![],
            ports: vec![],
            sample_rate: 48000,
            sample_format: "float32".into(),
            layout: "interleaved".into(),
            first_frame_time: Some(0),
            started: Some(when.to_rfc3339()),
            state,
            picture: Some(format!("{name}.png")),
            ..Default::default()
        };
        m.save(&Manifest::path(dir, name)).unwrap();
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        take(d.path(), "a", 50, 100, TakeState::Complete);
        take(d.path(), "b", 40, 200, TakeState::Recovered);
        take(d.path(), "c", 30, 300, TakeState::Failed);
        take(d.path(), "d", 20, 400, TakeState::Complete);
        take(d.path(), "live", 60, 500, TakeState::Recording);
        fs::write(d.path().join("notes.txt"), b"mine").unwrap();
        fs::write(d.path().join("other.wav"), b"not a take").unwrap();
        fs::write(d.path().join("other.png"), b"not a take's picture").unwrap();
        d
    }

    fn names(dir: &Path, p: &Policy) -> Vec<String> {
        plan(dir, p, SystemTime::now())
            .unwrap()
            .remove
            .iter()
            .map(|(t, _)| t.files[0].file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_rule_picks_the_oldest_finished_takes() {
        let d = setup();
        assert_eq!(names(d.path(), &Policy { keep_last: Some(2), ..Default::default() }), ["a", "b"]);
        let age = Policy { max_age: Some(Duration::from_secs(35 * 3600)), ..Default::default() };
        assert_eq!(names(d.path(), &age), ["a", "b"]);
        let d_size = header() + 400;
        assert_eq!(
            names(d.path(), &Policy { max_total: Some(d_size), ..Default::default() }),
            ["a", "b", "c"]
        );
        assert!(names(d.path(), &Policy::default()).is_empty());
        assert!(names(d.path(), &Policy { keep_free: Some(0.0), ..Default::default() }).is_empty());
        assert_eq!(names(d.path(), &Policy { keep_free: Some(1.01), ..Default::default() }).len(), 4);
    }

    #[test]
    fn prune_deletes_only_takes_and_never_the_running_one_or_foreign_files() {
        let d = setup();
        let lines = apply(d.path(), &Policy { keep_last: Some(0), ..Default::default() }, false).unwrap();
        assert_eq!(lines.len(), 4);
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The pictures went with their takes; a file named like one that is
        // not a take's picture stays.
        assert_eq!(left, ["live.png", "live.take.json", "live.wav", "notes.txt", "other.png", "other.wav"]);
    }

    /// Manifests that name files outside the directory, links, or files
    /// that someone else wrote: prune leaves the take alone, says so, and
    /// deletes nothing that is not a take's own file.
    #[test]
    fn prune_never_follows_a_manifest_out_of_its_own_files() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("takes");
        fs::create_dir(&d).unwrap();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("v.wav"), b"someone else's").unwrap();
        let names = [
            "../outside/v.wav".to_string(),
            outside.join("v.wav").display().to_string(),
            "link.wav".into(),
            "own.wav".into(),
        ];
        std::os::unix::fs::symlink(outside.join("v.wav"), d.join("link.wav")).unwrap();
        fs::write(d.join("own.wav"), b"not written by capstan").unwrap();
        for (i, n) in names.iter().enumerate() {
            take(&d, &format!("t{i}"), 50, 10, TakeState::Complete);
            let p = Manifest::path(&d, &format!("t{i}"));
            let mut m = Manifest::load(&p).unwrap();
            m.files = vec![n.clone()];
            m.save(&p).unwrap();
        }
        take(&d, "good", 10, 10, TakeState::Complete);
        let lines = apply(&d, &Policy { keep_last: Some(0), ..Default::default() }, false).unwrap();
        assert_eq!(lines.iter().filter(|l| l.starts_with("left alone")).count(), 4, "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("delete") && l.contains("good")), "{lines:?}");
        assert_eq!(fs::read(outside.join("v.wav")).unwrap(), b"someone else's");
        assert_eq!(fs::read(d.join("own.wav")).unwrap(), b"not written by capstan");
        assert!(fs::symlink_metadata(d.join("link.wav")).is_ok());
        for i in 0..4 {
            assert!(Manifest::path(&d, &format!("t{i}")).exists());
        }
        assert!(!Manifest::path(&d, "good").exists() && !d.join("good.wav").exists());
    }

    /// A take's picture replaced by a link (or by something that is not a
    /// PNG): the take goes, the link and what it points at stay.
    #[test]
    fn a_planted_picture_is_left_alone() {
        let d = setup();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious.png");
        fs::write(&precious, b"someone else's").unwrap();
        fs::remove_file(d.path().join("a.png")).unwrap();
        std::os::unix::fs::symlink(&precious, d.path().join("a.png")).unwrap();
        fs::write(d.path().join("b.png"), b"not a png").unwrap();
        apply(d.path(), &Policy { keep_last: Some(2), ..Default::default() }, false).unwrap();
        assert!(!d.path().join("a.wav").exists() && !d.path().join("b.wav").exists());
        assert!(fs::symlink_metadata(d.path().join("a.png")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&precious).unwrap(), b"someone else's");
        assert_eq!(fs::read(d.path().join("b.png")).unwrap(), b"not a png");
    }

    #[test]
    fn dry_run_changes_nothing() {
        let d = setup();
        let before = fs::read_dir(d.path()).unwrap().count();
        let lines = apply(d.path(), &Policy { keep_last: Some(1), ..Default::default() }, true).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("would delete"));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), before);
    }

    #[test]
    fn archive_moves_and_an_interrupted_move_is_finished_later() {
        let d = setup();
        let arch = tempfile::tempdir().unwrap();
        let p = Policy { keep_last: Some(3), archive: Some(arch.path().to_owned()), ..Default::default() };
        crate::durable::take_log();
        apply(d.path(), &p, false).unwrap();
        // Each copy is synced before its final name, the names before any
        // original is removed.
        let log = crate::durable::take_log();
        crate::durable::check(&log).unwrap();
        assert!(log.contains(&crate::durable::Step::SyncDir(arch.path().to_owned())), "{log:?}");
        assert!(arch.path().join("a.wav").exists() && arch.path().join("a.take.json").exists());
        assert!(!d.path().join("a.wav").exists() && !d.path().join("a.take.json").exists());
        assert_eq!(fs::read(arch.path().join("a.png")).unwrap()[8..], *b"a", "the picture moved with it");
        assert!(!d.path().join("a.png").exists());
        assert_eq!(fs::read(arch.path().join("a.wav")).unwrap().len() as u64, header() + 100);
        // Interrupted after copying (simulated: copy exists, original too):
        fs::copy(d.path().join("b.wav"), arch.path().join("b.wav")).unwrap();
        let p = Policy { keep_last: Some(2), ..p };
        apply(d.path(), &p, false).unwrap();
        assert!(arch.path().join("b.take.json").exists());
        assert!(!d.path().join("b.wav").exists());
        // A crash between the copy (files and manifest archived, synced)
        // and the delete: both copies exist, and the next run finishes.
        let (all, _) = takes(d.path(), Some(arch.path())).unwrap();
        let c = all.iter().find(|t| t.take == "c").unwrap();
        copy_to_archive(c, arch.path(), &mut |_| {}).unwrap();
        assert!(d.path().join("c.wav").exists() && arch.path().join("c.wav").exists());
        assert!(arch.path().join("c.take.json").exists() && Manifest::path(d.path(), "c").exists());
        apply(d.path(), &Policy { keep_last: Some(1), ..p }, false).unwrap();
        assert!(!d.path().join("c.wav").exists() && !Manifest::path(d.path(), "c").exists());
        let archived = fs::read(arch.path().join("c.wav")).unwrap();
        assert_eq!(archived.len() as u64, header() + 300);
    }

    /// A move killed midway leaves its temporary copy; the next copy of
    /// that file removes it if its process is gone, and nothing else.
    #[test]
    fn a_killed_copys_temporary_file_is_removed_by_the_next_and_nothing_else() {
        let d = setup();
        let arch = tempfile::tempdir().unwrap();
        // Process ids are below 2^22 on Linux: 4194305 was never one.
        let dead = arch.path().join(".a.wav.4194305-0.part");
        fs::write(&dead, b"half a copy").unwrap();
        let alive = arch.path().join(format!(".a.wav.{}-7.part", 1));
        fs::write(&alive, b"init's, say").unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x"), b"theirs").unwrap();
        let link = arch.path().join(".a.wav.4194306-0.part");
        std::os::unix::fs::symlink(outside.path().join("x"), &link).unwrap();
        let other = arch.path().join(".a.wav.4194307-x.part");
        fs::write(&other, b"not our pattern").unwrap();
        let p = Policy { keep_last: Some(3), archive: Some(arch.path().to_owned()), ..Default::default() };
        apply(d.path(), &p, false).unwrap();
        assert!(arch.path().join("a.wav").exists());
        assert!(!dead.exists(), "the dead process's part file is gone");
        assert!(alive.exists() && other.exists() && link.symlink_metadata().is_ok());
        assert_eq!(fs::read(outside.path().join("x")).unwrap(), b"theirs");
    }

    /// Links and files planted in the archive: at the temporary name a
    /// copy once overwrote the link's target outside both directories; at
    /// the final name (same length) the take counted as archived and the
    /// original was deleted while the only "copy" was someone else's data.
    /// Now nothing planted is followed or replaced, the take stays where
    /// it is, and the archived manifest records each copy's SHA-256.
    #[test]
    fn archive_follows_no_planted_link_and_verifies_copies_by_content() {
        let d = setup();
        let arch = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"someone else's").unwrap();
        let pid = std::process::id();
        for name in [".a.wav.part".to_string(), format!(".a.wav.{pid}-0.part")] {
            std::os::unix::fs::symlink(&victim, arch.path().join(name)).unwrap();
        }
        // b: a file of the same length at the final name.
        let blen = fs::metadata(d.path().join("b.wav")).unwrap().len() as usize;
        fs::write(arch.path().join("b.wav"), vec![7u8; blen]).unwrap();
        // c: a link at the final name to a copy of the same length.
        let clen = fs::metadata(d.path().join("c.wav")).unwrap().len() as usize;
        fs::write(outside.path().join("c-like"), vec![9u8; clen]).unwrap();
        std::os::unix::fs::symlink(outside.path().join("c-like"), arch.path().join("c.wav")).unwrap();
        let p = Policy { keep_last: Some(1), archive: Some(arch.path().to_owned()), ..Default::default() };
        let lines = apply(d.path(), &p, false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"someone else's");
        assert_eq!(fs::read(arch.path().join("b.wav")).unwrap(), vec![7u8; blen]);
        assert_eq!(fs::read(outside.path().join("c-like")).unwrap(), vec![9u8; clen]);
        for kept in ["b", "c"] {
            assert!(d.path().join(format!("{kept}.wav")).exists(), "{kept}: {lines:?}");
            assert!(Manifest::path(d.path(), kept).exists());
            assert!(lines
                .iter()
                .any(|l| l.starts_with("failed") && l.contains(&format!("{kept}.take.json"))));
        }
        // a was archived, verified by content.
        assert!(!d.path().join("a.wav").exists(), "{lines:?}");
        let m = Manifest::load(&Manifest::path(arch.path(), "a")).unwrap();
        let mut f = fs::File::open(arch.path().join("a.wav")).unwrap();
        assert_eq!(m.sha256, vec![sha256_of(&mut f).unwrap()]);
        // No temporary file of ours is left behind.
        let parts: Vec<_> = fs::read_dir(arch.path())
            .unwrap()
            .flatten()
            .filter(|e| fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".part"))
            .collect();
        assert!(parts.is_empty(), "{parts:?}");
    }

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_size("500G").unwrap(), 500 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("20MiB").unwrap(), 20 << 20);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("3y").is_err());
    }
}
