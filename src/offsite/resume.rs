//! A large file's multipart upload that survives a crash or a restart:
//! every part the store confirmed is written down (a small journal beside
//! the file, replaced atomically after each part), and the next upload of
//! the same file to the same key goes on from the first part not
//! confirmed. The parts already sent are read again only to hash them
//! (the recorded SHA-256 covers the whole file), never sent again.
//!
//! The journal is removed once the upload is complete. One that does not
//! match (another size or time of the file, another key, or an upload the
//! store no longer knows) is dropped and the file is sent whole.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures::stream::{FuturesOrdered, StreamExt};
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, PutPayload};
use sha2::Digest;

use super::ship::Pace;
use super::{hex, OffsiteError, Target};

/// Each part (S3's least is 5 MiB; every part but the last the same size,
/// as some stores require).
pub const PART: usize = 8 << 20;
/// Parts on their way at once.
const IN_FLIGHT: usize = 2;

/// What has been sent of one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Journal {
    url: String,
    key: String,
    /// The file as it was when the upload began: its size and mtime.
    bytes: u64,
    modified_ns: i128,
    part: usize,
    upload: MultipartId,
    /// The store's id of each confirmed part, in order.
    parts: Vec<String>,
}

/// Where the journal of `file`'s upload to `target`'s `key` is kept.
fn journal_path(file: &Path, target: &Target, key: &ObjectPath) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tag = hex(&sha2::Sha256::digest(format!("{}\n{key}", target.url)))[..12].to_string();
    file.with_file_name(format!(".{name}.{tag}.upload.json"))
}

fn load(path: &Path) -> Option<Journal> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    // Our own file only: a link planted at the name is not followed.
    let (_, mut f) = crate::takefiles::open_regular(dir, name, false).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(path: &Path, j: &Journal) -> Result<(), OffsiteError> {
    let json = serde_json::to_vec(j).map_err(|e| OffsiteError::Take(e.to_string()))?;
    crate::manifest::write_atomic(path, &json).map_err(|e| OffsiteError::io(path, e))
}

fn forget(path: &Path) {
    if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Reads up to `buf.len()` bytes (less only at the end of the file).
fn fill(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// How an upload went: its size and SHA-256, and the part it resumed at
/// (0: from the start).
pub struct Uploaded {
    pub bytes: u64,
    pub sha256: String,
    pub resumed_at: usize,
}

/// Sends `f` (at `path`) to `key` in parts, resuming an upload cut short
/// earlier.
pub async fn upload(
    target: &Target,
    key: &ObjectPath,
    path: &Path,
    mut f: std::fs::File,
    pace: &mut Pace,
) -> Result<Uploaded, OffsiteError> {
    let meta = f.metadata().map_err(|e| OffsiteError::io(path, e))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    let jpath = journal_path(path, target, key);
    let fresh = Journal {
        url: target.url.clone(),
        key: key.to_string(),
        bytes: meta.len(),
        modified_ns,
        part: PART,
        upload: String::new(),
        parts: Vec::new(),
    };
    let mut j = match load(&jpath) {
        Some(j) if Journal { upload: String::new(), parts: Vec::new(), ..j.clone() } == fresh => j,
        other => {
            if other.is_some() {
                forget(&jpath);
            }
            let what = || format!("the upload of {key}");
            let upload =
                target.parts.create_multipart(key).await.map_err(|e| OffsiteError::store(what(), e))?;
            let j = Journal { upload, ..fresh };
            save(&jpath, &j)?;
            j
        }
    };
    let resumed_at = j.parts.len();
    let (mut h, mut buf) = (sha2::Sha256::new(), vec![0u8; PART]);
    // The parts the store has: hashed again, not sent.
    for _ in 0..resumed_at {
        let n = fill(&mut f, &mut buf).map_err(|e| OffsiteError::io(path, e))?;
        h.update(&buf[..n]);
    }
    let mut sent = resumed_at as u64 * PART as u64;
    // Up to IN_FLIGHT parts on their way at once (a long round trip
    // costs little); confirmations come back in order, and each is
    // written down before the next, so the journal always holds a prefix.
    let mut in_flight = FuturesOrdered::new();
    let (mut next, mut read_all) = (resumed_at, false);
    loop {
        while !read_all && in_flight.len() < IN_FLIGHT {
            let n = fill(&mut f, &mut buf).map_err(|e| OffsiteError::io(path, e))?;
            if n == 0 && next > 0 {
                read_all = true;
                break;
            }
            h.update(&buf[..n]);
            let (store, key, upload, idx) = (target.parts.clone(), key.clone(), j.upload.clone(), next);
            let payload = PutPayload::from(buf[..n].to_vec());
            in_flight.push_back(async move { (idx, n, store.put_part(&key, &upload, idx, payload).await) });
            next += 1;
            read_all = n < PART;
        }
        let Some((idx, n, confirmed)) = in_flight.next().await else { break };
        match confirmed {
            Ok(id) => j.parts.push(id.content_id),
            Err(e) => {
                // An upload the store no longer knows is started afresh
                // next time; any other failure keeps what was confirmed.
                if matches!(e, object_store::Error::NotFound { .. }) {
                    forget(&jpath);
                }
                return Err(OffsiteError::store(format!("part {idx} of {key}"), e));
            }
        }
        save(&jpath, &j)?;
        sent += n as u64;
        pace.sent(n).await;
    }
    let parts = j.parts.iter().map(|c| PartId { content_id: c.clone() }).collect();
    if let Err(e) = target.parts.complete_multipart(key, &j.upload, parts).await {
        if matches!(e, object_store::Error::NotFound { .. }) {
            forget(&jpath);
        }
        return Err(OffsiteError::store(format!("the upload of {key}"), e));
    }
    forget(&jpath);
    if sent != meta.len() {
        return Err(OffsiteError::Take(format!(
            "{} changed while it was sent ({sent} bytes, {} before)",
            path.display(),
            meta.len()
        )));
    }
    Ok(Uploaded { bytes: sent, sha256: hex(&h.finalize()), resumed_at })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use super::*;

    fn file(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let path = dir.join("x.wav");
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    #[test]
    fn an_upload_cut_short_goes_on_from_the_first_part_not_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = file(dir.path(), 2 * PART + PART / 2 + 123);
        let store = Arc::new(InMemory::new());
        let target = Target::with_store("s3://mem/show", store.clone()).unwrap();
        let key = ObjectPath::from("show/x.wav");
        let rt = super::super::runtime().unwrap();
        // A first upload had two parts confirmed when the process died.
        let first = rt.block_on(async {
            let id = target.parts.create_multipart(&key).await.unwrap();
            let mut parts = Vec::new();
            for i in 0..2 {
                let part = PutPayload::from(data[i * PART..(i + 1) * PART].to_vec());
                parts.push(target.parts.put_part(&key, &id, i, part).await.unwrap().content_id);
            }
            let m = std::fs::metadata(&path).unwrap();
            let ns = m.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
            let j = Journal {
                url: target.url.clone(),
                key: key.to_string(),
                bytes: m.len(),
                modified_ns: ns,
                part: PART,
                upload: id,
                parts,
            };
            save(&journal_path(&path, &target, &key), &j).unwrap();
            j
        });
        let f = std::fs::File::open(&path).unwrap();
        let up = rt.block_on(upload(&target, &key, &path, f, &mut Pace::new(0.0))).unwrap();
        assert_eq!(up.resumed_at, 2, "the two confirmed parts were not sent again");
        assert_eq!(
            (up.bytes, up.sha256.as_str()),
            (data.len() as u64, hex(&sha2::Sha256::digest(&data)).as_str())
        );
        let stored = rt.block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() });
        assert!(stored[..] == data[..], "the object is the file, parts in order");
        assert!(!journal_path(&path, &target, &key).exists(), "the journal goes with the upload's end");
        // A journal for the file as it was before (another size) is dropped,
        // and the file is sent whole.
        save(&journal_path(&path, &target, &key), &Journal { bytes: 1, ..first }).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let up = rt.block_on(upload(&target, &key, &path, f, &mut Pace::new(0.0))).unwrap();
        assert_eq!(up.resumed_at, 0);
        let stored = rt.block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() });
        assert!(stored[..] == data[..]);
    }
}
