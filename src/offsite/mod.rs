//! The off-site tier: finished takes copied to an object store (S3, Azure
//! Blob Storage, or a server that speaks either, such as MinIO-like S3
//! servers and Azurite), every object read back and checked by its SHA-256
//! before the copy counts. The local files are never changed or removed
//! here; the take's manifest records each verified copy.
//!
//! - this file: where (`Target`), the settings and the errors;
//! - `ship`: one take up, verified; the queue is the takes' manifests
//!   themselves (a finished take without a verified copy is pending), so a
//!   crash or a restart resumes where it was, file by file;
//! - `fetch`: a take back from the store, verified against its manifest;
//! - `worker`: the daemon's background thread.
//!
//! Never on the recorder's threads: the object store's calls run on a
//! small runtime of the off-site thread (or of the `capstan tiers`
//! command).

mod fetch;
mod resume;
mod ship;
mod stored;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;

use crate::retention::hex;
use object_store::multipart::MultipartStore;
use object_store::ObjectStore;

pub use fetch::fetch;
pub use ship::{move_take, pending, remove_moved, ship, status, verify, Pace, Shipped, TakeStatus};
pub use stored::{delete_stored, stored, StoredTake};
pub use worker::{Progress, Worker};

/// Where the off-site copies go, for the command line and `capstan.json`.
/// Credentials and endpoints never go into `capstan.json`: they come from
/// the object store's own environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
/// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
/// `AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`, …).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default)]
pub struct OffsiteSettings {
    /// Copy every finished take here, verified: s3://BUCKET/PREFIX or
    /// az://CONTAINER/PREFIX (credentials from the environment).
    #[arg(long = "offsite", value_name = "URL")]
    pub url: Option<String>,
    /// Upload at most this many MB/s (0: as fast as the store takes them).
    #[arg(long = "offsite-max-mbps", value_name = "MB/S", default_value_t = 0.0)]
    pub max_mbps: f64,
    /// Remove a take's local files once its off-site copy is verified and
    /// the take is older than this (e.g. 7d, 12h); the copy is read back
    /// and checked again right before. Unset: local takes stay.
    #[arg(long = "offsite-delete-local-after", value_name = "AGE", value_parser = crate::retention::parse_duration)]
    #[serde(with = "crate::retention::secs_opt", default)]
    pub delete_local_after: Option<Duration>,
}

impl OffsiteSettings {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            Target::parse(url).map_err(|e| format!("offsite.url: {e}"))?;
        }
        if !(self.max_mbps.is_finite() && (0.0..=100_000.0).contains(&self.max_mbps)) {
            return Err(format!("offsite.max_mbps must be between 0 and 100000, got {}", self.max_mbps));
        }
        if self.delete_local_after.is_some() && self.url.is_none() {
            return Err("offsite.delete_local_after needs offsite.url: where the takes' copies are".into());
        }
        Ok(())
    }
}

/// What went wrong, and what it means for the take: nothing local is
/// ever removed or changed by a failure here.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("{0}")]
    Url(String),
    #[error("the object store refused {what}: {source}")]
    Store {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{key}: the stored copy does not match (SHA-256 {got}, the file's is {want}); the local copy stays"
    )]
    Mismatch { key: String, want: String, got: String },
    #[error("{0}")]
    Take(String),
}

impl OffsiteError {
    fn store(what: impl Into<String>, source: object_store::Error) -> Self {
        OffsiteError::Store { what: what.into(), source }
    }
    fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        OffsiteError::Io { path: path.display().to_string(), source }
    }
}

/// An object store and the prefix capstan's objects go under.
#[derive(Clone)]
pub struct Target {
    /// As the user gave it (it names the copy in the manifests).
    pub url: String,
    store: Arc<dyn ObjectStore>,
    /// The same store, for uploads in parts that outlive the process.
    parts: Arc<dyn MultipartStore>,
    prefix: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).finish()
    }
}

impl Target {
    /// Checks the URL's form: `s3://BUCKET[/PREFIX]` or
    /// `az://CONTAINER[/PREFIX]` (also `azure://`). Returns (scheme,
    /// bucket, prefix).
    fn parse(url: &str) -> Result<(&str, &str, String), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: expected s3://BUCKET/PREFIX or az://CONTAINER/PREFIX"))?;
        if !matches!(scheme, "s3" | "az" | "azure") {
            return Err(format!("{url:?}: unknown store {scheme:?} (s3 or az)"));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?}: no bucket or container named"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(format!("{url:?}: the prefix may not hold . or .."));
        }
        Ok((scheme, bucket, prefix))
    }

    /// Checks a URL's form only (nothing is opened): for validation.
    pub fn check_url(url: &str) -> Result<(), String> {
        Self::parse(url).map(drop)
    }

    /// A target on a store opened elsewhere (a local or in-memory store,
    /// say); `url` names it and gives the prefix.
    pub fn with_store<S: ObjectStore + MultipartStore>(
        url: &str,
        store: Arc<S>,
    ) -> Result<Target, OffsiteError> {
        let (_, _, prefix) = Self::parse(url).map_err(OffsiteError::Url)?;
        Ok(Target { url: url.to_string(), store: store.clone(), parts: store, prefix })
    }

    /// Opens the store `url` names, with credentials and endpoint from the
    /// environment (see [`OffsiteSettings`]).
    pub fn open(url: &str) -> Result<Target, OffsiteError> {
        let (scheme, bucket, _) = Self::parse(url).map_err(OffsiteError::Url)?;
        match scheme {
            "s3" => Self::with_store(
                url,
                Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        // The signature leaves the body out: hashing every
                        // part for it cost a fifth of the upload's CPU, and
                        // every object is read back and checked anyway.
                        .with_unsigned_payload(true)
                        .with_retry(retry())
                        .build()
                        .map_err(|e| OffsiteError::store(format!("the settings for {url}"), e))?,
                ),
            ),
            _ => Self::with_store(
                url,
                Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(bucket)
                        .with_retry(retry())
                        .build()
                        .map_err(|e| OffsiteError::store(format!("the settings for {url}"), e))?,
                ),
            ),
        }
    }

    /// The object key of `name` in the take directory `sub` (relative to
    /// the recording directory: dated directories keep their place).
    fn key(&self, sub: &str, name: &str) -> ObjectPath {
        let parts = [self.prefix.as_str(), sub, name];
        ObjectPath::from(parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/"))
    }
}

/// A few quick retries of a failed request: a store that is down is
/// reported (and the take sent again later) within seconds, not after the
/// library's default three minutes.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(10), ..Default::default() }
}

/// A runtime for the object store's calls, on the calling thread.
fn runtime() -> Result<tokio::runtime::Runtime, OffsiteError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| OffsiteError::io(std::path::Path::new("the off-site runtime"), e))
}

#[cfg(test)]
pub(crate) mod tests;
