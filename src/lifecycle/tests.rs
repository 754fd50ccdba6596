//! The lifecycle against directories and an in-memory object store (the
//! integration tests use a real server and a kill -9 in the middle).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Local;
use object_store::memory::InMemory;
use object_store::ObjectStore;

use super::*;
use crate::offsite::tests::finished_take_at;

const DAY: Duration = Duration::from_secs(86400);

fn takes_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = retention::takes(dir, None).unwrap().0.into_iter().map(|t| t.take).collect();
    v.sort();
    v
}

fn policy(tiers: &[&str], delete_after: Option<&str>) -> Lifecycle {
    Lifecycle {
        tiers: tiers.iter().map(|t| t.parse().unwrap()).collect(),
        delete_after: delete_after.map(|d| parse_duration(d).unwrap()),
        max_mbps: 0.0,
    }
}

#[test]
fn tiers_read_and_write_as_age_and_place_and_are_checked_in_order() {
    let t: Tier = "7d=/mnt/hdd/takes".parse().unwrap();
    assert_eq!((t.after, &t.place), (7 * DAY, &Place::Dir("/mnt/hdd/takes".into())));
    assert_eq!(t.to_string(), "7d=/mnt/hdd/takes");
    let s: Tier = "36h=az://takes/show".parse().unwrap();
    assert_eq!(s.place, Place::Store("az://takes/show".into()));
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"36h=az://takes/show\"");
    assert_eq!(serde_json::from_str::<Tier>("\"36h=az://takes/show\"").unwrap(), s);
    for bad in ["/mnt/hdd", "7x=/a", "0d=/a", "7d=", "7d=ftp://x/y"] {
        assert!(bad.parse::<Tier>().is_err(), "{bad} was taken");
    }
    let ok = policy(&["7d=/warm", "30d=s3://b/cold"], Some("365d"));
    ok.validate().unwrap();
    let said = |tiers: &[&str], del: Option<&str>| policy(tiers, del).validate().unwrap_err();
    assert!(said(&["30d=/warm", "7d=/cold"], None).contains("its age must be greater"));
    assert!(said(&["7d=s3://b/x", "30d=/cold"], None).contains("must be the last tier"));
    assert!(said(&["7d=/warm", "30d=/warm"], None).contains("named twice"));
    assert!(said(&["7d=/warm"], Some("7d")).contains("greater than the last tier's age"));
}

#[test]
fn each_take_goes_to_the_tier_its_age_asks_for_and_is_deleted_after_the_last_age() {
    let root = tempfile::tempdir().unwrap();
    let (hot, warm, cold) = (root.path().join("hot"), root.path().join("warm"), root.path().join("cold"));
    std::fs::create_dir(&hot).unwrap();
    let at = |days: i64| finished_take_at(&hot, Local::now() - chrono::Duration::days(days));
    let (new, ten, forty, old) = (at(0), at(10), at(40), at(400));
    std::fs::write(hot.join("notes.txt"), b"mine").unwrap();
    let lc = policy(&[&format!("7d={}", warm.display()), &format!("30d={}", cold.display())], Some("365d"));
    let now = SystemTime::now();
    // A dry run changes nothing and says what would happen.
    let lines = apply_with(&hot, &lc, None, None, now, true).unwrap();
    assert_eq!(lines.iter().filter(|l| l.starts_with("would ")).count(), 3, "{lines:?}");
    assert_eq!(takes_in(&hot).len(), 4);
    let lines = apply_with(&hot, &lc, None, None, now, false).unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(takes_in(&hot), std::slice::from_ref(&new));
    assert_eq!(takes_in(&warm), std::slice::from_ref(&ten), "10 days old: warm");
    assert_eq!(
        takes_in(&cold),
        std::slice::from_ref(&forty),
        "40 days old goes straight to the tier it is due in"
    );
    assert!(
        ![&hot, &warm, &cold].iter().any(|d| std::fs::read_dir(d)
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().contains(&old) })),
        "400 days old: deleted"
    );
    assert_eq!(std::fs::read(hot.join("notes.txt")).unwrap(), b"mine");
    // Nothing more to do; 25 days later every take is a tier further on.
    assert!(apply_with(&hot, &lc, None, None, now, false).unwrap().is_empty());
    apply_with(&hot, &lc, None, None, now + 25 * DAY, false).unwrap();
    assert_eq!(takes_in(&hot), Vec::<String>::new());
    assert_eq!(takes_in(&warm), [new]);
    assert_eq!(takes_in(&cold), [forty, ten], "oldest first, as the names sort");
    let w = whereabouts(&hot, &lc, None, now + 25 * DAY).unwrap();
    assert_eq!(w.iter().map(|w| w.tier).collect::<Vec<_>>(), [1, 2, 2]);
}

#[test]
fn the_store_tier_takes_verified_copies_and_deletes_only_its_own_objects_when_they_are_old() {
    let root = tempfile::tempdir().unwrap();
    let hot = root.path().join("hot");
    std::fs::create_dir(&hot).unwrap();
    let store = Arc::new(InMemory::new());
    let target = Target::with_store("s3://mem/show", store.clone()).unwrap();
    let name = finished_take_at(&hot, Local::now() - chrono::Duration::days(40));
    let young = finished_take_at(&hot, Local::now() - chrono::Duration::days(1));
    let lc = policy(&["30d=s3://mem/show"], Some("365d"));
    // With --offsite set and no copy recorded, the take waits in hot.
    let lines =
        apply_with(&hot, &lc, Some(&target), Some("s3://mem/other"), SystemTime::now(), false).unwrap();
    assert!(lines[0].contains("waits for its off-site copy"), "{lines:?}");
    let lines = apply_with(&hot, &lc, Some(&target), None, SystemTime::now(), false).unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(takes_in(&hot), std::slice::from_ref(&young), "moved: the local files are gone");
    let (stored, _) = offsite::stored(&target).unwrap();
    assert_eq!(stored.iter().map(|s| s.take.as_str()).collect::<Vec<_>>(), [name.as_str()]);
    // Someone else's object under the prefix is never touched.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let theirs = object_store::path::Path::from("show/theirs.wav");
    rt.block_on(store.put(&theirs, object_store::PutPayload::from_static(b"x"))).unwrap();
    // A year on, the stored take is deleted: its objects, then its manifest.
    let later = SystemTime::now() + 330 * DAY;
    let lines = apply_with(&hot, &lc, Some(&target), None, later, false).unwrap();
    assert!(lines.iter().any(|l| l.contains(&format!("delete {name} from s3://mem/show"))), "{lines:?}");
    // (The young take, 331 days old by then, has moved up meanwhile.)
    let (stored, _) = offsite::stored(&target).unwrap();
    assert_eq!(stored.iter().map(|s| s.take.as_str()).collect::<Vec<_>>(), [young.as_str()]);
    let left: Vec<_> = rt.block_on(futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))).unwrap();
    let left: Vec<String> = left.iter().map(|m| m.location.to_string()).collect();
    assert!(left.contains(&"show/theirs.wav".to_string()), "{left:?}");
    assert!(!left.iter().any(|k| k.contains(&name)), "{left:?}");
}
