//! A take back from the store: its manifest found under the prefix, every
//! object it lists downloaded into a new file, checked against the SHA-256
//! the manifest records, synced, and only then given its name (never over
//! a file that is there: a name taken is an error, and nothing is
//! replaced).

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::ObjectStore;
use sha2::Digest;

use super::{hex, runtime, OffsiteError, Target};
use crate::durable;
use crate::manifest::Manifest;

/// Brings take `take` (its name, as in `NAME.take.json`) from `target`
/// into `into` (created if missing); returns the files written, the
/// manifest last.
pub fn fetch(target: &Target, take: &str, into: &Path) -> Result<Vec<PathBuf>, OffsiteError> {
    if !crate::takefiles::plain_name(take) {
        return Err(OffsiteError::Take(format!("{take:?} is not a take's name")));
    }
    std::fs::create_dir_all(into).map_err(|e| OffsiteError::io(into, e))?;
    let dir_file = std::fs::File::open(into).map_err(|e| OffsiteError::io(into, e))?;
    runtime()?.block_on(async {
        let want = format!("{take}{}", crate::vocab::MANIFEST_SUFFIX);
        let prefix =
            (!target.prefix.is_empty()).then(|| object_store::path::Path::from(target.prefix.as_str()));
        let mut list = target.store.list(prefix.as_ref());
        let mut found = None;
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| OffsiteError::store(format!("the listing of {}", target.url), e))?;
            if meta.location.filename() == Some(want.as_str()) {
                found = Some(meta.location);
                break;
            }
        }
        drop(list);
        let key = found.ok_or_else(|| OffsiteError::Take(format!("{} holds no take {take}", target.url)))?;
        let json = target
            .store
            .get(&key)
            .await
            .map_err(|e| OffsiteError::store(format!("reading {key}"), e))?
            .bytes()
            .await
            .map_err(|e| OffsiteError::store(format!("reading {key}"), e))?;
        let m: Manifest = serde_json::from_slice(&json)
            .map_err(|e| OffsiteError::Take(format!("{key} is not a capstan manifest: {e}")))?;
        let copy = m
            .offsite
            .iter()
            .rev()
            .find(|c| c.url == target.url)
            .or(m.offsite.last())
            .ok_or_else(|| OffsiteError::Take(format!("{key} lists no objects")))?;
        let mut written = Vec::new();
        for o in &copy.objects {
            if !crate::takefiles::plain_name(&o.file) {
                return Err(OffsiteError::Take(format!("{key} names a file {:?}; refused", o.file)));
            }
            let obj = object_store::path::Path::from(o.key.as_str());
            let got =
                target.store.get(&obj).await.map_err(|e| OffsiteError::store(format!("reading {obj}"), e))?;
            let tmp = format!(".{}.part-{}", o.file, std::process::id());
            let tmp_path = into.join(&tmp);
            let mut f = durable::create_new(&tmp_path).map_err(|e| OffsiteError::io(&tmp_path, e))?;
            let (mut h, mut n) = (sha2::Sha256::new(), 0u64);
            let mut stream = got.into_stream();
            let res: Result<(), OffsiteError> = async {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| OffsiteError::store(format!("reading {obj}"), e))?;
                    h.update(&chunk);
                    n += chunk.len() as u64;
                    f.write_all(&chunk).map_err(|e| OffsiteError::io(&tmp_path, e))?;
                }
                let sha = hex(&h.finalize());
                if n != o.bytes || sha != o.sha256 {
                    return Err(OffsiteError::Mismatch {
                        key: o.key.clone(),
                        want: o.sha256.clone(),
                        got: sha,
                    });
                }
                durable::sync_file(&f, &tmp_path).map_err(|e| OffsiteError::io(&tmp_path, e))?;
                durable::rename_new(&dir_file, into, &tmp, &o.file)
                    .map_err(|e| OffsiteError::io(&into.join(&o.file), e))
            }
            .await;
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(e);
            }
            written.push(into.join(&o.file));
        }
        // The manifest as the store holds it (it lists the copy).
        let tmp = format!(".{want}.part-{}", std::process::id());
        let tmp_path = into.join(&tmp);
        let mut f = durable::create_new(&tmp_path).map_err(|e| OffsiteError::io(&tmp_path, e))?;
        f.write_all(&json).map_err(|e| OffsiteError::io(&tmp_path, e))?;
        durable::sync_file(&f, &tmp_path).map_err(|e| OffsiteError::io(&tmp_path, e))?;
        if let Err(e) = durable::rename_new(&dir_file, into, &tmp, &want) {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(OffsiteError::io(&into.join(&want), e));
        }
        durable::sync_dir(into).map_err(|e| OffsiteError::io(into, e))?;
        written.push(into.join(&want));
        Ok(written)
    })
}
