//! `capstan export` on real takes: an interleaved WAV take with a marker, a
//! mono take and a FLAC take, recorded by the daemon from the test source,
//! exported as a REAPER project, a label track and CSV; every take and
//! marker at its time of day (the manifests' time_reference), a track per
//! input. A take whose file moved is refused, naming the file.

use std::time::Duration;

use rosc::OscType;

use crate::harness::*;

fn take(server: &JackServer, dir: &std::path::Path, name: &str, extra: &[&str], mark: Option<&str>) {
    let mut args = vec!["--connect", "src:out_*"];
    args.extend_from_slice(extra);
    let mut d = Daemon::start(server, dir, &args);
    let (addr, a) = osc(d.port, "/record/start", vec![OscType::String(name.into())]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    std::thread::sleep(Duration::from_millis(300));
    if let Some(label) = mark {
        let (addr, a) = osc(d.port, "/record/mark", vec![OscType::String(label.into())]).unwrap();
        assert_eq!(addr, "/reply", "{a:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (addr, a) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    d.terminate();
}

#[test]
fn export_places_every_take_and_marker_at_its_time_of_day() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let label = "chorus \"A\", <&> 'x'";
    take(&server, dir.path(), "one", &[], Some(label));
    take(&server, dir.path(), "two", &["--layout", "mono"], None);
    take(&server, dir.path(), "three", &["--format", "flac"], None);
    let out = tempdir();
    let (rpp, labels, csv) =
        (out.path().join("show.RPP"), out.path().join("labels.txt"), out.path().join("show.csv"));
    let session = out.path().join("the show");
    let mut c = std::process::Command::new(CAPSTAN);
    c.arg("export")
        .arg(dir.path())
        .arg("--reaper")
        .arg(&rpp)
        .arg("--labels")
        .arg(&labels)
        .arg("--csv")
        .arg(&csv)
        .arg("--ardour")
        .arg(&session);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The manifests: where each take and the marker must be.
    let mut manifests: Vec<(u64, serde_json::Value)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".take.json"))
        .map(|p| {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (m["time_reference"].as_u64().unwrap(), m)
        })
        .collect();
    manifests.sort_by_key(|m| m.0);
    assert_eq!(manifests.len(), 3);
    let csv = std::fs::read_to_string(&csv).unwrap();
    let takes: Vec<&str> = csv.lines().filter(|l| l.starts_with("take,")).collect();
    assert_eq!(takes.len(), 3, "{csv}");
    for ((tr, m), line) in manifests.iter().zip(&takes) {
        let f: Vec<&str> = line.split(',').collect();
        let frames = m["frames"].as_u64().unwrap();
        assert_eq!(
            (f[3].parse::<u64>().unwrap(), f[4].parse::<u64>().unwrap()),
            (*tr, tr + frames),
            "{line}"
        );
    }
    let marked = &manifests[0].1;
    let at = manifests[0].0 + marked["markers"][0]["frame"].as_u64().unwrap();
    let want =
        format!("marker,{},\"chorus \"\"A\"\", <&> 'x'\",{at},{at},", takes[0].split(',').nth(1).unwrap());
    assert!(csv.lines().any(|l| l.starts_with(&want)), "{want}\n{csv}");
    // The label track: the marker at its second of the day.
    let labels = std::fs::read_to_string(&labels).unwrap();
    let secs = format!("{:.6}\t{:.6}\t{label}", at as f64 / 48_000.0, at as f64 / 48_000.0);
    assert!(labels.lines().any(|l| l == secs), "{secs}\n{labels}");
    // REAPER: two tracks named after the inputs, three items on each (the
    // interleaved take's channel picked, the FLAC as FLAC), every item at
    // its take's time of day.
    let rpp = std::fs::read_to_string(&rpp).unwrap();
    assert_eq!(rpp.matches("<TRACK").count(), 2, "{rpp}");
    assert!(rpp.contains("NAME \"in_1\"") && rpp.contains("NAME \"in_2\""), "{rpp}");
    assert_eq!(rpp.matches("<ITEM").count(), 6);
    assert_eq!(rpp.matches("<SOURCE FLAC").count(), 2);
    assert_eq!(rpp.matches("CHANMODE 4").count(), 2, "channel 2 of the interleaved WAV and FLAC takes");
    for (tr, _) in &manifests {
        let pos = format!("POSITION {:.6}", *tr as f64 / 48_000.0);
        assert_eq!(rpp.matches(&pos).count(), 2, "{pos}\n{rpp}");
    }
    // The real Ardour loads the session: a track per input, each take's
    // region on each at its time of day with its length, the marker, each
    // take as a range and the session range around them.
    let ardour = ardour_read(&session, "the show");
    let want_tracks = ["in_1", "in_2"];
    assert_eq!(
        ardour.iter().filter(|l| l[0] == "track").map(|l| l[1].as_str()).collect::<Vec<_>>(),
        want_tracks
    );
    for track in want_tracks {
        let regions: Vec<(u64, u64)> = ardour
            .iter()
            .filter(|l| l[0] == "region" && l[1] == track)
            .map(|l| (l[3].parse().unwrap(), l[4].parse().unwrap()))
            .collect();
        let want: Vec<(u64, u64)> =
            manifests.iter().map(|(tr, m)| (*tr, m["frames"].as_u64().unwrap())).collect();
        assert_eq!(regions, want, "{track}: {ardour:?}");
    }
    let loc = |name: &str| ardour.iter().find(|l| l[0] == "location" && l[1] == name).cloned();
    let mark = loc(label).unwrap_or_else(|| panic!("no marker {label}: {ardour:?}"));
    assert_eq!((mark[2].parse::<u64>().unwrap(), mark[4].as_str()), (at, "mark"), "{mark:?}");
    let first = manifests[0].0;
    let last = manifests[2].0 + manifests[2].1["frames"].as_u64().unwrap();
    let range = loc("session").unwrap();
    assert_eq!((range[2].parse::<u64>().unwrap(), range[3].parse::<u64>().unwrap()), (first, last));
    let take_ranges = ardour.iter().filter(|l| l[0] == "location" && l[4] == "range").count();
    assert_eq!(
        take_ranges,
        3 + manifests.iter().map(|m| m.1["gaps"].as_array().unwrap().len()).sum::<usize>()
    );
    // A take whose file moved: refused, naming the file; nothing written.
    let wav = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_two_") && p.extension().is_some_and(|e| e == "wav"))
        .unwrap();
    std::fs::rename(&wav, out.path().join("moved.wav")).unwrap();
    let fresh = out.path().join("again.csv");
    let mut c = std::process::Command::new(CAPSTAN);
    c.arg("export").arg(dir.path()).arg("--csv").arg(&fresh);
    let o = run(c);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&*wav.file_name().unwrap().to_string_lossy()) && err.contains("moved or deleted"),
        "{err}"
    );
    assert!(!fresh.exists());
}

/// Loads the session `name` in `dir` with the real Ardour (`ardour7-lua`,
/// headless) and returns what it holds: `track NAME`, `region TRACK NAME
/// POSITION LENGTH` and `location NAME START END KIND` lines, tab-split.
fn ardour_read(dir: &std::path::Path, name: &str) -> Vec<Vec<String>> {
    let script = dir.join("read.lua");
    std::fs::write(
        &script,
        format!(
            r#"s = load_session("{}", "{name}")
for t in s:get_tracks():iter() do
  print("@track\t" .. t:name())
  for r in t:to_track():playlist():region_list():iter() do
    print("@region\t" .. t:name() .. "\t" .. r:name() .. "\t" .. r:position():samples() .. "\t" .. r:length():samples())
  end
end
for l in s:locations():list():iter() do
  local kind = l:is_session_range() and "session" or (l:is_mark() and "mark" or (l:is_range_marker() and "range" or "other"))
  print("@location\t" .. l:name() .. "\t" .. l:start():samples() .. "\t" .. l:_end():samples() .. "\t" .. kind)
end
close_session()
"#,
            dir.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("ardour7-lua")
        .arg(&script)
        .env("QT_QPA_PLATFORM", "offscreen")
        .output()
        .expect("ardour7-lua (apt-get install ardour)");
    let stdout = text(&out.stdout);
    let lines: Vec<Vec<String>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('@'))
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    assert!(!lines.is_empty(), "Ardour did not load the session: {stdout}{}", text(&out.stderr));
    lines
}

/// `--ardour-session DIR`: after each take the day's session holds every
/// take of the day so far (Ardour reads both takes' regions and the
/// marker); once Ardour has saved the session, the daemon leaves it alone.
#[test]
fn the_daemon_keeps_the_days_ardour_session_up_to_date() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let out = tempdir();
    let out_arg = out.path().to_string_lossy().to_string();
    let mut d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*", "--ardour-session", &out_arg]);
    let take = |name: &str, mark: bool| {
        let (addr, a) = osc(d.port, "/record/start", vec![OscType::String(name.into())]).unwrap();
        assert_eq!(addr, "/reply", "{a:?}");
        std::thread::sleep(Duration::from_millis(300));
        if mark {
            let (addr, a) = osc(d.port, "/record/mark", vec![OscType::String("solo".into())]).unwrap();
            assert_eq!(addr, "/reply", "{a:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
        let (addr, a) = osc(d.port, "/record/stop", vec![]).unwrap();
        assert_eq!(addr, "/reply", "{a:?}");
    };
    // The session file of the day, once it names the take.
    let session_with = |take: &str| -> std::path::PathBuf {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = std::fs::read_dir(out.path()).ok().and_then(|mut days| days.next()).map(|e| {
                let day = e.unwrap().path();
                let name = day.file_name().unwrap().to_string_lossy().to_string();
                (day.clone(), day.join(format!("{name}.ardour")))
            });
            if let Some((_, file)) = &found {
                if std::fs::read_to_string(file).is_ok_and(|t| t.contains(&format!("_{take}_"))) {
                    return file.clone();
                }
            }
            assert!(std::time::Instant::now() < deadline, "no session naming take {take}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    take("one", true);
    session_with("one");
    take("two", false);
    let file = session_with("two");
    let day = file.parent().unwrap();
    let name = file.file_stem().unwrap().to_string_lossy().to_string();
    let ardour = ardour_read(day, &name);
    let regions = ardour.iter().filter(|l| l[0] == "region" && l[1] == "in_1").count();
    assert_eq!(regions, 2, "{ardour:?}");
    assert!(ardour.iter().any(|l| l[0] == "location" && l[1] == "solo" && l[4] == "mark"), "{ardour:?}");
    // Ardour saves it: the daemon no longer touches it.
    let saved = std::fs::read_to_string(&file)
        .unwrap()
        .replace("modified-with=\"capstan ", "modified-with=\"Ardour ");
    std::fs::write(&file, &saved).unwrap();
    take("three", false);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
    d.terminate();
    let log = d.log.lock().unwrap().clone();
    assert!(log.contains("was not updated") && log.contains("left alone"), "{log}");
}

/// A rotation chain (`--rotate-every 1s`) exports (`--copy`: its files
/// copied into the session) as regions that follow each other exactly on
/// every track in Ardour: each ends where the next begins, as the files
/// chain on JACK's timeline.
#[test]
fn a_rotation_chain_exports_as_regions_end_to_end() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*", "--rotate-every", "1s"]);
    let (addr, a) = osc(d.port, "/record/start", vec![OscType::String("chain".into())]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    std::thread::sleep(Duration::from_millis(3300));
    let (addr, a) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    d.terminate();
    let out = tempdir();
    let session = out.path().join("chain");
    let mut c = std::process::Command::new(CAPSTAN);
    c.arg("export").arg(dir.path()).arg("--ardour").arg(&session).arg("--copy");
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // --copy: the files are in the session, and the session refers to them.
    let copies = session.join("interchange/chain/audiofiles");
    let n = std::fs::read_dir(&copies).unwrap().count();
    assert!(n >= 3, "{n} files in {}", copies.display());
    let xml = std::fs::read_to_string(session.join("chain.ardour")).unwrap();
    assert!(xml.contains(&*copies.to_string_lossy()), "the sources are not the copies");
    let ardour = ardour_read(&session, "chain");
    for track in ["in_1", "in_2"] {
        let regions: Vec<(u64, u64)> = ardour
            .iter()
            .filter(|l| l[0] == "region" && l[1] == track)
            .map(|l| (l[3].parse().unwrap(), l[4].parse().unwrap()))
            .collect();
        assert!(regions.len() >= 3, "{track}: {regions:?}");
        for w in regions.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{track}: regions do not chain: {regions:?}");
        }
    }
}
