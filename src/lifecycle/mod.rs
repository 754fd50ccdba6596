//! The lifecycle of finished takes as one ordered policy: a take starts
//! in the takes' directory (hot), moves to each tier in turn once it is
//! old enough (a directory, say on a big slow disk: warm; an object store,
//! last: cold), and is deleted, wherever it is, after a set age.
//!
//! Every move is a verified copy first and a removal after, so a crash at
//! any point leaves the take whole in one place at least, and the next
//! run finishes the move (see `retention::archive_take` and
//! `offsite::move_take`). Only finished takes with a capstan manifest are
//! moved or deleted; a take still recording never is. Runs on the
//! housekeeping thread of the daemon, or `capstan tiers run`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::manifest::Manifest;
use crate::offsite::{self, Pace, Target};
use crate::retention::{self, parse_duration, TakeOnDisk};

/// Where a tier keeps its takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    Dir(PathBuf),
    /// An object store's URL (`s3://…`, `az://…`).
    Store(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Dir(d) => write!(f, "{}", d.display()),
            Place::Store(u) => f.write_str(u),
        }
    }
}

/// One tier: takes older than `after` belong in `place`. Written
/// `AGE=PLACE` (`7d=/mnt/hdd/takes`, `30d=az://takes/show`), the same on
/// the command line and in `capstan.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tier {
    pub after: Duration,
    pub place: Place,
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        let (age, place) =
            s.split_once('=').ok_or_else(|| format!("{s:?}: expected AGE=PLACE, e.g. 7d=/mnt/hdd/takes"))?;
        let after = parse_duration(age)?;
        if after.is_zero() {
            return Err(format!("{s:?}: a tier's age must be more than 0"));
        }
        let place = if place.contains("://") {
            Target::check_url(place)?;
            Place::Store(place.to_string())
        } else if place.is_empty() {
            return Err(format!("{s:?}: no directory named"));
        } else {
            Place::Dir(PathBuf::from(place))
        };
        Ok(Tier { after, place })
    }
}

impl TryFrom<String> for Tier {
    type Error = String;
    fn try_from(s: String) -> Result<Tier, String> {
        s.parse()
    }
}

impl From<Tier> for String {
    fn from(t: Tier) -> String {
        t.to_string()
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", age(self.after), self.place)
    }
}

/// An age as `parse_duration` reads it, in the largest whole unit (days
/// at most).
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s > 0 && s % n == 0 {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// The policy (`capstan.json`'s `lifecycle`; every flag is optional).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default)]
pub struct Lifecycle {
    /// Move finished takes older than AGE to PLACE: a directory, or an
    /// object store (s3://BUCKET/PREFIX, az://CONTAINER/PREFIX; the last
    /// tier). Repeat in order, ages rising: --tier 7d=/mnt/hdd/takes
    /// --tier 30d=az://takes/show.
    #[arg(long = "tier", value_name = "AGE=PLACE")]
    pub tiers: Vec<Tier>,
    /// Delete takes older than this, in whichever tier they are (the
    /// object store's copy too).
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    #[serde(with = "crate::retention::secs_opt", default)]
    pub delete_after: Option<Duration>,
    /// Move at most this many MB/s between tiers (0: no limit).
    #[arg(id = "tier_max_mbps", long = "tier-max-mbps", value_name = "MB/S", default_value_t = 0.0)]
    pub max_mbps: f64,
}

impl Lifecycle {
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty() && self.delete_after.is_none()
    }

    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.tiers.iter().enumerate() {
            if let Some(prev) = i.checked_sub(1).map(|p| &self.tiers[p]) {
                if t.after <= prev.after {
                    return Err(format!(
                        "lifecycle.tiers: {t} comes after {prev}, so its age must be greater"
                    ));
                }
                if matches!(prev.place, Place::Store(_)) {
                    return Err(format!(
                        "lifecycle.tiers: {prev} is an object store, which must be the last tier"
                    ));
                }
            }
            if self.tiers[..i].iter().any(|o| o.place == t.place) {
                return Err(format!("lifecycle.tiers: {} is named twice", t.place));
            }
        }
        if let (Some(d), Some(last)) = (self.delete_after, self.tiers.last()) {
            if d <= last.after {
                return Err(format!(
                    "lifecycle.delete_after ({}) must be greater than the last tier's age ({last})",
                    age(d)
                ));
            }
        }
        if !(self.max_mbps.is_finite() && (0.0..=100_000.0).contains(&self.max_mbps)) {
            return Err(format!("lifecycle.max_mbps must be between 0 and 100000, got {}", self.max_mbps));
        }
        Ok(())
    }

    /// The directory tiers (where recovery and `status` look too).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.tiers.iter().filter_map(|t| match &t.place {
            Place::Dir(d) => Some(d.as_path()),
            Place::Store(_) => None,
        })
    }
}

/// The tier a take of age `age` belongs in (0: the takes' directory),
/// `None` once it is to be deleted.
fn due(lc: &Lifecycle, age: Duration) -> Option<usize> {
    if lc.delete_after.is_some_and(|d| age > d) {
        return None;
    }
    Some(lc.tiers.iter().rposition(|t| age > t.after).map_or(0, |i| i + 1))
}

/// Applies the policy to the takes of `hot` and of every tier; one line
/// per take moved or deleted (or that would be, with `dry_run`), and per
/// take left alone or that could not be moved. One take that cannot be
/// moved never stops the others. With `offsite` (the `--offsite` URL
/// whose thread copies takes from `hot`), a take leaves `hot` only once
/// that copy is recorded.
pub fn apply(
    hot: &Path,
    lc: &Lifecycle,
    offsite: Option<&str>,
    now: SystemTime,
    dry_run: bool,
) -> Result<Vec<String>> {
    apply_with(hot, lc, store_of(lc)?.as_ref(), offsite, now, dry_run)
}

/// The last tier's store, opened (`None`: the last tier is a directory).
pub fn store_of(lc: &Lifecycle) -> Result<Option<Target>> {
    Ok(match lc.tiers.last().map(|t| &t.place) {
        Some(Place::Store(url)) => Some(Target::open(url).with_context(|| format!("opening {url}"))?),
        _ => None,
    })
}

/// [`apply`] with the last tier's store opened (`None` if it has none).
pub fn apply_with(
    hot: &Path,
    lc: &Lifecycle,
    store: Option<&Target>,
    offsite: Option<&str>,
    now: SystemTime,
    dry_run: bool,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut pace = Pace::new(lc.max_mbps);
    let places: Vec<&Path> = std::iter::once(hot).chain(lc.dirs()).collect();
    for (i, dir) in places.iter().enumerate() {
        // A tier's directory inside this one is not this one's.
        let inner = places.iter().skip(i + 1).find(|d| d.starts_with(dir)).copied();
        let (found, left) = match retention::takes(dir, inner) {
            Ok(x) => x,
            // A tier made by its first move.
            Err(_) if i > 0 && !dir.exists() => continue,
            Err(e) => return Err(e),
        };
        lines.extend(left);
        for t in found {
            let age = now.duration_since(t.when).unwrap_or_default();
            let what = match due(lc, age) {
                Some(j) if j <= i => continue,
                None => format!("delete {} (older than {})", t.manifest.display(), age_of(lc)),
                Some(j) => {
                    if i == 0 && offsite.is_some_and(|u| !copied_to(&t, u)) {
                        lines.push(format!(
                            "{} waits for its off-site copy before it moves on",
                            t.manifest.display()
                        ));
                        continue;
                    }
                    format!("move {} to {}", t.manifest.display(), lc.tiers[j - 1].place)
                }
            };
            if !dry_run {
                let done = match due(lc, age) {
                    None => retention::delete_take(&t),
                    Some(j) => match (&lc.tiers[j - 1].place, store) {
                        (Place::Dir(to), _) => {
                            retention::archive_take_paced(&t, to, &mut |n| pace.sent_blocking(n))
                        }
                        (Place::Store(_), Some(target)) => {
                            offsite::move_take(dir, &t, target, &mut pace).map_err(anyhow::Error::from)
                        }
                        (Place::Store(u), None) => Err(anyhow::anyhow!("{u} is not the last tier")),
                    },
                };
                if let Err(e) = done {
                    lines.push(format!("failed: {what}: {e:#}"));
                    continue;
                }
            }
            lines.push(retention::done_line(dry_run, &what, &t));
        }
    }
    if let (Some(target), Some(limit)) = (store, lc.delete_after) {
        lines.extend(delete_stored(target, limit, now, dry_run)?);
    }
    Ok(lines)
}

fn age_of(lc: &Lifecycle) -> String {
    lc.delete_after.map(age).unwrap_or_default()
}

/// Whether take `t`'s manifest records a verified copy at `url`.
fn copied_to(t: &TakeOnDisk, url: &str) -> bool {
    Manifest::load(&t.manifest).is_ok_and(|m| m.offsite.iter().any(|c| c.url == url))
}

/// The store's takes older than `limit` deleted (objects first, manifest
/// last).
fn delete_stored(target: &Target, limit: Duration, now: SystemTime, dry_run: bool) -> Result<Vec<String>> {
    let (found, mut lines) = offsite::stored(target)?;
    for s in found {
        let Some(started) = s.started() else {
            lines.push(format!("left alone: {}: its manifest says no start time", s.key));
            continue;
        };
        if now.duration_since(started).unwrap_or_default() <= limit {
            continue;
        }
        let what = format!("delete {} from {} (older than {})", s.take, target.url, age(limit));
        if dry_run {
            lines.push(format!("would {what}"));
            continue;
        }
        match offsite::delete_stored(target, &s) {
            Ok(n) => lines.push(format!("{what}, {n} objects")),
            Err(e) => lines.push(format!("failed: {what}: {e}")),
        }
    }
    Ok(lines)
}

/// Where a take is, for `capstan tiers status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Whereabouts {
    pub take: String,
    /// 0: the takes' directory; then the tiers, in order.
    pub tier: usize,
    pub place: String,
    /// Its age now, and the tier it is due in (`None`: due for deletion).
    pub age: Duration,
    pub due: Option<usize>,
}

/// Every finished take of `hot` and of the tiers, with its place (the
/// last tier's store opened as `store`).
pub fn whereabouts(
    hot: &Path,
    lc: &Lifecycle,
    store: Option<&Target>,
    now: SystemTime,
) -> Result<Vec<Whereabouts>> {
    let mut out = Vec::new();
    let places: Vec<&Path> = std::iter::once(hot).chain(lc.dirs()).collect();
    let tier_of =
        |p: &Path| lc.tiers.iter().position(|t| t.place == Place::Dir(p.to_path_buf())).map_or(0, |i| i + 1);
    for (i, dir) in places.iter().enumerate() {
        let inner = places.iter().skip(i + 1).find(|d| d.starts_with(dir)).copied();
        let found = match retention::takes(dir, inner) {
            Ok((found, _)) => found,
            Err(_) if i > 0 && !dir.exists() => continue,
            Err(e) => return Err(e),
        };
        for t in found {
            let age = now.duration_since(t.when).unwrap_or_default();
            out.push(Whereabouts {
                take: t.take,
                tier: tier_of(dir),
                place: dir.display().to_string(),
                age,
                due: due(lc, age),
            });
        }
    }
    if let Some(target) = store {
        for s in offsite::stored(target)?.0 {
            let age = s.started().map(|w| now.duration_since(w).unwrap_or_default()).unwrap_or_default();
            let place = target.url.clone();
            out.push(Whereabouts { take: s.take, tier: lc.tiers.len(), place, age, due: due(lc, age) });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
