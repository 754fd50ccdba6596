//! One finished take up to the store: every file streamed up in parts
//! while its SHA-256 is computed, then read back and checked; the manifest
//! goes last, listing the objects and their checksums, and the local
//! manifest records the copy only when every object is verified. A crash
//! at any point leaves the local take as it was, and the next run sends
//! the take again (objects are overwritten whole; nothing else is touched).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::{ObjectStore, PutPayload};
use sha2::Digest;

use super::{hex, runtime, OffsiteError, Target};
use crate::manifest::{Manifest, OffsiteCopy, OffsiteObject};
use crate::retention::{takes, TakeOnDisk};

use super::resume::PART;
/// Reads of the local file.
const READ: usize = 1 << 20;

/// What [`ship`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Shipped {
    /// Every object sent and verified now; `kept` bytes of it were in
    /// the store already (parts of an upload cut short earlier).
    Copied { objects: usize, bytes: u64, kept: u64 },
    /// The manifest already records a verified copy there.
    Already,
}

/// Paces uploads to at most `mbps` MB/s (0: no limit).
pub struct Pace {
    bytes_per_s: f64,
    start: Instant,
    sent: u64,
}

impl Pace {
    pub fn new(mbps: f64) -> Pace {
        Pace { bytes_per_s: mbps * 1e6, start: Instant::now(), sent: 0 }
    }

    /// How long to wait after `n` more bytes, if at all.
    fn wait(&mut self, n: usize) -> Option<Duration> {
        self.sent += n as u64;
        if self.bytes_per_s > 0.0 {
            let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_s);
            return due.checked_sub(self.start.elapsed());
        }
        None
    }

    pub(super) async fn sent(&mut self, n: usize) {
        if let Some(wait) = self.wait(n) {
            tokio::time::sleep(wait).await;
        }
    }

    /// [`Pace`] for a thread of its own (copies between directories).
    pub fn sent_blocking(&mut self, n: usize) {
        if let Some(wait) = self.wait(n) {
            std::thread::sleep(wait);
        }
    }
}

/// The take directory of `t` relative to the recording directory `dir`
/// ("" for `dir` itself), as keys use it.
fn sub_dir(dir: &Path, t: &TakeOnDisk) -> String {
    let parent = t.manifest.parent().unwrap_or(dir);
    parent.strip_prefix(dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Opens one of the take's files again, checked to be its own (a file
/// swapped for a link or another file since the scan is refused).
fn open_own(t: &TakeOnDisk, path: &Path) -> Result<std::fs::File, OffsiteError> {
    let opened = if t.picture.as_deref() == Some(path) {
        crate::retention::own_picture(t, path)
    } else {
        crate::retention::open_own(t, path)
    };
    opened.map_err(|e| OffsiteError::Take(format!("{}: {e:#}", path.display())))
}

/// Sends `f` up to `key`: in one request if it is small, else in parts
/// that a restart resumes ([`super::resume`]). Returns its size, SHA-256
/// and the part the upload resumed at.
async fn upload(
    target: &Target,
    key: &object_store::path::Path,
    path: &Path,
    mut f: std::fs::File,
    pace: &mut Pace,
) -> Result<super::resume::Uploaded, OffsiteError> {
    let len = f.metadata().map_err(|e| OffsiteError::io(path, e))?.len();
    if len > PART as u64 {
        return super::resume::upload(target, key, path, f, pace).await;
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.read_to_end(&mut buf).map_err(|e| OffsiteError::io(path, e))?;
    let (bytes, sha256) = (buf.len() as u64, hex(&sha2::Sha256::digest(&buf)));
    target
        .store
        .put(key, PutPayload::from(buf))
        .await
        .map_err(|e| OffsiteError::store(format!("the upload of {key}"), e))?;
    pace.sent(bytes as usize).await;
    Ok(super::resume::Uploaded { bytes, sha256, resumed_at: 0 })
}

/// Reads `key` back; its size and SHA-256.
async fn digest(target: &Target, key: &object_store::path::Path) -> Result<(u64, String), OffsiteError> {
    let what = || format!("reading {key} back");
    let got = target.store.get(key).await.map_err(|e| OffsiteError::store(what(), e))?;
    let mut stream = got.into_stream();
    let (mut h, mut bytes) = (sha2::Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| OffsiteError::store(what(), e))?;
        h.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Ok((bytes, hex(&h.finalize())))
}

/// Checks that `key` holds exactly what the local file `f` holds, read
/// side by side: the check right after an upload, which costs a memory
/// comparison instead of a second SHA-256 (the one recorded was computed
/// as the file went up).
async fn same_as(
    target: &Target,
    key: &object_store::path::Path,
    path: &Path,
    mut f: std::fs::File,
    sha: &str,
) -> Result<(), OffsiteError> {
    let what = || format!("reading {key} back");
    let got = target.store.get(key).await.map_err(|e| OffsiteError::store(what(), e))?;
    let mut stream = got.into_stream();
    let mut local = vec![0u8; READ];
    let differs = || OffsiteError::Mismatch {
        key: key.to_string(),
        want: sha.to_string(),
        got: "another content (compared with the file byte for byte)".into(),
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| OffsiteError::store(what(), e))?;
        for part in chunk.chunks(READ) {
            let mine = &mut local[..part.len()];
            match f.read_exact(mine) {
                Ok(()) if mine == part => {}
                Ok(()) => return Err(differs()),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(differs()),
                Err(e) => return Err(OffsiteError::io(path, e)),
            }
        }
    }
    match f.read(&mut local[..1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(differs()),
        Err(e) => Err(OffsiteError::io(path, e)),
    }
}

/// Checks that `key` holds exactly `bytes` bytes of SHA-256 `sha`.
async fn check(
    target: &Target,
    key: &object_store::path::Path,
    bytes: u64,
    sha: &str,
) -> Result<(), OffsiteError> {
    let (n, got) = digest(target, key).await?;
    if n != bytes || got != sha {
        return Err(OffsiteError::Mismatch { key: key.to_string(), want: sha.to_string(), got });
    }
    Ok(())
}

/// Copies take `t` (of the recording directory `dir`) to `target`,
/// verified, and records the copy in its manifest.
pub fn ship(dir: &Path, t: &TakeOnDisk, target: &Target, pace: &mut Pace) -> Result<Shipped, OffsiteError> {
    runtime()?.block_on(ship_async(dir, t, target, pace))
}

async fn ship_async(
    dir: &Path,
    t: &TakeOnDisk,
    target: &Target,
    pace: &mut Pace,
) -> Result<Shipped, OffsiteError> {
    let mut m = Manifest::load(&t.manifest).map_err(|e| OffsiteError::io(&t.manifest, e))?;
    if m.offsite.iter().any(|c| c.url == target.url) {
        return Ok(Shipped::Already);
    }
    let sub = sub_dir(dir, t);
    let (mut objects, mut kept) = (Vec::new(), 0u64);
    for path in t.files.iter().chain(t.picture.iter()) {
        let f = open_own(t, path)?;
        let key = target.key(&sub, &file_name(path));
        let up = upload(target, &key, path, f, pace).await?;
        if up.resumed_at > 0 {
            tracing::info!(key = %key, part = up.resumed_at, "an upload cut short went on from where it was");
            kept += (up.resumed_at * PART) as u64;
        }
        let (bytes, sha) = (up.bytes, up.sha256);
        same_as(target, &key, path, open_own(t, path)?, &sha).await?;
        objects.push(OffsiteObject { file: file_name(path), key: key.to_string(), bytes, sha256: sha });
    }
    let (n, total) = (objects.len(), objects.iter().map(|o| o.bytes).sum::<u64>());
    m.offsite.push(OffsiteCopy {
        url: target.url.clone(),
        objects,
        verified: chrono::Local::now().to_rfc3339(),
    });
    // The manifest last: a store holding it holds the whole take, and it
    // lists what every object must hash to.
    let json = serde_json::to_vec_pretty(&m).map_err(|e| OffsiteError::Take(e.to_string()))?;
    let key = target.key(&sub, &file_name(&t.manifest));
    let sha = hex(&sha2::Sha256::digest(&json));
    let len = json.len() as u64;
    target
        .store
        .put(&key, PutPayload::from(json))
        .await
        .map_err(|e| OffsiteError::store(format!("the upload of {key}"), e))?;
    pace.sent(len as usize).await;
    check(target, &key, len, &sha).await?;
    // Recorded only if the take is still there and still this take (a
    // prune may have removed it meanwhile): never a manifest re-created.
    match Manifest::load(&t.manifest) {
        Ok(now) if now.take_id == m.take_id && now.files == m.files => {}
        _ => {
            return Err(OffsiteError::Take(format!(
                "{} went away while it was copied; its copy is in the store, not recorded here",
                t.manifest.display()
            )))
        }
    }
    m.save(&t.manifest).map_err(|e| OffsiteError::io(&t.manifest, e))?;
    Ok(Shipped::Copied { objects: n + 1, bytes: total + len, kept })
}

/// The finished takes of `dir` without a verified copy at `url`, oldest
/// first (the off-site queue), and lines for takes left alone.
pub fn pending(dir: &Path, url: &str) -> Result<(Vec<TakeOnDisk>, Vec<String>), OffsiteError> {
    let (all, left) = takes(dir, None).map_err(|e| OffsiteError::Take(format!("{e:#}")))?;
    let todo = all
        .into_iter()
        .filter(|t| Manifest::load(&t.manifest).is_ok_and(|m| !m.offsite.iter().any(|c| c.url == url)))
        .collect();
    Ok((todo, left))
}

/// Where each finished take of `dir` is.
#[derive(Debug, Clone)]
pub struct TakeStatus {
    pub take: String,
    pub manifest: PathBuf,
    /// The copy at the target, if the manifest records one.
    pub copy: Option<OffsiteCopy>,
}

pub fn status(dir: &Path, url: &str) -> Result<Vec<TakeStatus>, OffsiteError> {
    let (all, _) = takes(dir, None).map_err(|e| OffsiteError::Take(format!("{e:#}")))?;
    Ok(all
        .into_iter()
        .map(|t| {
            let copy =
                Manifest::load(&t.manifest).ok().and_then(|m| m.offsite.into_iter().find(|c| c.url == url));
            TakeStatus { take: t.take, manifest: t.manifest, copy }
        })
        .collect())
}

/// Reads every object of a recorded copy back and checks it; the first
/// object that differs or is missing is the error.
pub fn verify(target: &Target, copy: &OffsiteCopy) -> Result<(), OffsiteError> {
    runtime()?.block_on(async {
        for o in &copy.objects {
            check(target, &object_store::path::Path::from(o.key.as_str()), o.bytes, &o.sha256).await?;
        }
        Ok(())
    })
}

/// Removes the local files of every finished take of `dir` older than
/// `age` whose copy at `target` is recorded, after reading that copy back
/// and checking it again: a take counts as moved only when every object is
/// verified. Returns the takes removed; the first copy that fails its
/// check stops the pass (its take stays, and the error says why).
/// Interrupted (a crash), the next pass finishes: a take whose files are
/// partly gone is still found by its manifest, which goes last.
pub fn remove_moved(
    dir: &Path,
    target: &Target,
    age: Duration,
    now: std::time::SystemTime,
) -> Result<Vec<String>, OffsiteError> {
    let (all, _) = takes(dir, None).map_err(|e| OffsiteError::Take(format!("{e:#}")))?;
    let mut removed = Vec::new();
    for t in all {
        if now.duration_since(t.when).unwrap_or_default() < age {
            continue;
        }
        if remove_verified(&t, target)? {
            removed.push(t.take);
        }
    }
    Ok(removed)
}

/// Removes take `t`'s local files if its manifest records a copy at
/// `target` and that copy reads back and checks now; `false` if it
/// records none.
fn remove_verified(t: &TakeOnDisk, target: &Target) -> Result<bool, OffsiteError> {
    remove_copied(t, target, true)
}

/// [`remove_verified`]; `check: false` when every object was read back
/// and checked a moment ago (by [`ship`]).
fn remove_copied(t: &TakeOnDisk, target: &Target, check: bool) -> Result<bool, OffsiteError> {
    let m = Manifest::load(&t.manifest).map_err(|e| OffsiteError::io(&t.manifest, e))?;
    let Some(copy) = m.offsite.iter().find(|c| c.url == target.url) else { return Ok(false) };
    if check {
        verify(target, copy)?;
    }
    crate::retention::delete_take(t)
        .map_err(|e| OffsiteError::Take(format!("{}: {e:#}", t.manifest.display())))?;
    Ok(true)
}

/// Moves take `t` of `dir` to `target`: copied and verified (unless its
/// manifest records a copy there already), read back and checked again,
/// and only then its local files removed (the manifest last). Cut short
/// at any point, the take is whole in one place at least, and the next
/// move finishes it.
pub fn move_take(dir: &Path, t: &TakeOnDisk, target: &Target, pace: &mut Pace) -> Result<(), OffsiteError> {
    let just_checked = matches!(ship(dir, t, target, pace)?, Shipped::Copied { .. });
    match remove_copied(t, target, !just_checked)? {
        true => Ok(()),
        false => Err(OffsiteError::Take(format!("{}: its copy was not recorded", t.manifest.display()))),
    }
}
