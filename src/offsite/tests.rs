//! The off-site tier against an in-memory object store (the integration
//! tests use real servers): the queue, verification, and a fetch that is
//! crash-safe and replaces nothing.

use std::sync::Arc;

use chrono::Local;
use object_store::memory::InMemory;
use object_store::{ObjectStore, PutPayload};

use super::*;
use crate::disk::{Take, TakeSpec};
use crate::manifest::{Manifest, RtStats};
use crate::vocab::Layout;
use crate::wav::SampleFormat;

/// A finished take of 4,800 frames on 2 channels in `dir`; its name.
fn finished_take(dir: &std::path::Path) -> String {
    finished_take_at(dir, Local::now())
}

/// [`finished_take`], started at `when`.
pub(crate) fn finished_take_at(dir: &std::path::Path, when: chrono::DateTime<Local>) -> String {
    let spec = TakeSpec::for_test(dir, 2, Layout::Interleaved, SampleFormat::F32);
    let mut take = Take::create(spec, when).unwrap();
    let data: Vec<Vec<f32>> = (0..2).map(|c| (0..4800).map(|i| (i * 2 + c) as f32 / 1e4).collect()).collect();
    take.write(4800, |c| Some(&data[c][..])).unwrap();
    let name = take.name.clone();
    let (_, err) = take.finalize(&[], 0, None, RtStats::default());
    assert!(err.is_none(), "{err:?}");
    // The disk thread records when a take started; a take on its own not.
    let path = Manifest::path(dir, &name);
    let mut m = Manifest::load(&path).unwrap();
    m.started = Some(when.to_rfc3339());
    m.save(&path).unwrap();
    name
}

fn memory_target() -> Target {
    Target::with_store("s3://mem/show", Arc::new(InMemory::new())).unwrap()
}

#[test]
fn a_take_goes_up_verified_once_and_comes_back_synced_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let name = finished_take(dir.path());
    let target = memory_target();
    let (todo, _) = pending(dir.path(), &target.url).unwrap();
    assert_eq!(todo.len(), 1);
    let mut pace = Pace::new(0.0);
    let Shipped::Copied { objects, bytes, .. } = ship(dir.path(), &todo[0], &target, &mut pace).unwrap()
    else {
        panic!("not copied")
    };
    let wav = dir.path().join(format!("{name}.wav"));
    assert_eq!(objects, 2, "the audio file and the manifest");
    assert!(bytes > std::fs::metadata(&wav).unwrap().len());
    // Recorded in the manifest; the queue is empty; a second run sends nothing.
    let m = Manifest::load(&Manifest::path(dir.path(), &name)).unwrap();
    assert_eq!(m.offsite.len(), 1);
    assert_eq!(m.offsite[0].objects[0].key, format!("show/{name}.wav"));
    assert!(pending(dir.path(), &target.url).unwrap().0.is_empty());
    assert_eq!(ship(dir.path(), &todo[0], &target, &mut pace).unwrap(), Shipped::Already);
    verify(&target, &m.offsite[0]).unwrap();
    // Back: every file synced before its name, the names before the end.
    let back = tempfile::tempdir().unwrap();
    let _ = crate::durable::take_log();
    let files = fetch(&target, &name, back.path()).unwrap();
    crate::durable::check(&crate::durable::take_log()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(std::fs::read(back.path().join(format!("{name}.wav"))).unwrap(), std::fs::read(&wav).unwrap());
    // A second fetch replaces nothing, and leaves no temporary file.
    let before = std::fs::read_dir(back.path()).unwrap().count();
    assert!(fetch(&target, &name, back.path()).is_err());
    assert_eq!(std::fs::read_dir(back.path()).unwrap().count(), before);
}

#[test]
fn a_corrupted_or_missing_object_is_found_and_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let name = finished_take(dir.path());
    let target = memory_target();
    let (todo, _) = pending(dir.path(), &target.url).unwrap();
    ship(dir.path(), &todo[0], &target, &mut Pace::new(0.0)).unwrap();
    let m = Manifest::load(&Manifest::path(dir.path(), &name)).unwrap();
    let copy = &m.offsite[0];
    let key = object_store::path::Path::from(copy.objects[0].key.as_str());
    let rt = runtime().unwrap();
    let mut bytes =
        rt.block_on(async { target.store.get(&key).await.unwrap().bytes().await.unwrap() }).to_vec();
    bytes[1000] ^= 1;
    rt.block_on(target.store.put(&key, PutPayload::from(bytes))).unwrap();
    assert!(matches!(verify(&target, copy), Err(OffsiteError::Mismatch { .. })));
    let back = tempfile::tempdir().unwrap();
    assert!(matches!(fetch(&target, &name, back.path()), Err(OffsiteError::Mismatch { .. })));
    assert_eq!(std::fs::read_dir(back.path()).unwrap().count(), 0, "nothing fetched, no temporary file left");
    rt.block_on(target.store.delete(&key)).unwrap();
    assert!(matches!(verify(&target, copy), Err(OffsiteError::Store { .. })));
}

#[test]
fn urls_name_a_store_a_bucket_and_a_prefix() {
    assert_eq!(Target::parse("s3://b/show/2026").unwrap(), ("s3", "b", "show/2026".into()));
    assert_eq!(Target::parse("az://c").unwrap(), ("az", "c", String::new()));
    assert_eq!(Target::parse("azure://c/p/").unwrap(), ("azure", "c", "p".into()));
    for bad in ["b/x", "gs://b/x", "s3:///x", "s3://b/../x", "s3://b/./x"] {
        assert!(Target::parse(bad).is_err(), "{bad}");
    }
    let s = OffsiteSettings { url: Some("ftp://x".into()), ..Default::default() };
    assert!(s.validate().unwrap_err().starts_with("offsite.url"));
    let s = OffsiteSettings { max_mbps: -1.0, ..Default::default() };
    assert!(s.validate().unwrap_err().contains("max_mbps"));
    let s = OffsiteSettings {
        delete_local_after: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    assert!(s.validate().unwrap_err().contains("needs offsite.url"));
}

#[test]
fn a_take_moves_off_site_only_once_its_copy_checks_again_and_a_cut_move_finishes() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let name = finished_take(dir.path());
    let target = memory_target();
    let wav = dir.path().join(format!("{name}.wav"));
    let audio = std::fs::read(&wav).unwrap();
    let now = SystemTime::now() + Duration::from_secs(60);
    assert!(remove_moved(dir.path(), &target, Duration::ZERO, now).unwrap().is_empty(), "no copy yet");
    let (todo, _) = pending(dir.path(), &target.url).unwrap();
    ship(dir.path(), &todo[0], &target, &mut Pace::new(0.0)).unwrap();
    // Too young: stays.
    assert!(remove_moved(dir.path(), &target, Duration::from_secs(3600), now).unwrap().is_empty());
    // The copy went bad in the store: the take stays, and the error says so.
    let key = object_store::path::Path::from(format!("show/{name}.wav"));
    let rt = runtime().unwrap();
    let mut bad = audio.clone();
    bad[5000] ^= 2;
    rt.block_on(target.store.put(&key, PutPayload::from(bad))).unwrap();
    assert!(matches!(
        remove_moved(dir.path(), &target, Duration::ZERO, now),
        Err(OffsiteError::Mismatch { .. })
    ));
    assert_eq!(std::fs::read(&wav).unwrap(), audio);
    rt.block_on(target.store.put(&key, PutPayload::from(audio.clone()))).unwrap();
    // A move cut short after the audio file went (a crash): the next pass
    // finishes it, and nothing of the take is left here.
    std::fs::remove_file(&wav).unwrap();
    assert_eq!(remove_moved(dir.path(), &target, Duration::ZERO, now).unwrap(), vec![name.clone()]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // And it comes back whole.
    let back = tempfile::tempdir().unwrap();
    fetch(&target, &name, back.path()).unwrap();
    assert_eq!(std::fs::read(back.path().join(format!("{name}.wav"))).unwrap(), audio);
}
