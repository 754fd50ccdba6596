//! The takes an object store holds, found by their manifests under the
//! prefix, and deleting one: only the objects its manifest lists (each
//! under the prefix), the manifest last, so that a deletion cut short is
//! found and finished by the next run.

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

use super::{runtime, OffsiteError, Target};
use crate::manifest::Manifest;

/// A take in the store.
#[derive(Debug, Clone)]
pub struct StoredTake {
    /// Its name (as in `NAME.take.json`).
    pub take: String,
    /// Its manifest's key.
    pub key: ObjectPath,
    pub manifest: Manifest,
}

impl StoredTake {
    /// When it started, from its manifest (`None`: not said).
    pub fn started(&self) -> Option<std::time::SystemTime> {
        let s = self.manifest.started.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(s).ok().map(std::time::SystemTime::from)
    }
}

/// Every take under the target's prefix whose manifest reads as one, and
/// a line for each manifest-named object that does not.
pub fn stored(target: &Target) -> Result<(Vec<StoredTake>, Vec<String>), OffsiteError> {
    runtime()?.block_on(async {
        let prefix = (!target.prefix.is_empty()).then(|| ObjectPath::from(target.prefix.as_str()));
        let mut keys = Vec::new();
        let mut list = target.store.list(prefix.as_ref());
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| OffsiteError::store(format!("the listing of {}", target.url), e))?;
            let name = meta.location.filename().unwrap_or_default();
            if let Some(take) = name.strip_suffix(crate::vocab::MANIFEST_SUFFIX) {
                keys.push((take.to_string(), meta.location));
            }
        }
        drop(list);
        let (mut takes, mut left) = (Vec::new(), Vec::new());
        for (take, key) in keys {
            let what = || format!("reading {key}");
            let json = target
                .store
                .get(&key)
                .await
                .map_err(|e| OffsiteError::store(what(), e))?
                .bytes()
                .await
                .map_err(|e| OffsiteError::store(what(), e))?;
            match serde_json::from_slice::<Manifest>(&json) {
                Ok(manifest) => takes.push(StoredTake { take, key, manifest }),
                Err(e) => left.push(format!("left alone: {key} is not a capstan manifest: {e}")),
            }
        }
        Ok((takes, left))
    })
}

/// Deletes take `s` from the store: the objects its manifest lists for
/// this target, then the manifest. An object already gone is not an
/// error (a run cut short); a listed key outside the prefix is, before
/// anything is deleted.
pub fn delete_stored(target: &Target, s: &StoredTake) -> Result<usize, OffsiteError> {
    let copy = s.manifest.offsite.iter().rev().find(|c| c.url == target.url);
    let objects: Vec<&str> =
        copy.map(|c| c.objects.iter().map(|o| o.key.as_str()).collect()).unwrap_or_default();
    let inside = |k: &str| target.prefix.is_empty() || k.starts_with(&format!("{}/", target.prefix));
    if let Some(k) = objects.iter().find(|k| !inside(k)) {
        return Err(OffsiteError::Take(format!(
            "{}: lists {k}, outside {}; nothing deleted",
            s.key, target.url
        )));
    }
    runtime()?.block_on(async {
        let keys = objects.iter().map(|k| ObjectPath::from(*k)).chain(std::iter::once(s.key.clone()));
        let mut n = 0;
        for key in keys {
            match target.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(OffsiteError::store(format!("deleting {key}"), e)),
            }
        }
        Ok(n)
    })
}
