//! Mirrored destinations (issue 27): every take written to more than one
//! directory at once, and a copy whose disk fills stops there while the
//! take and the other copies go on, exact.

use std::path::Path;
use std::time::Duration;

use rosc::OscType;

use crate::harness::*;
use crate::storage::{mount_tmpfs, umount};

/// Unmounts at the end of the test, however it ends.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        umount(self.0);
    }
}

/// Three copies of a 4-input take: on the takes' disk, on a healthy second
/// disk, and on a 3 MiB tmpfs that fills after about four seconds. The
/// take and the healthy copy are identical, byte for byte, and every frame
/// is at its position; the full copy stops, its manifest says where and
/// why, its file holds exactly that many frames, each in place; the alarm
/// names the copy and the frame.
#[test]
fn a_copy_on_a_disk_that_fills_stops_there_and_the_take_and_the_other_copy_are_exact() {
    let base = tempdir();
    let small = base.path().join("small");
    if !mount_tmpfs(&small, "3m") {
        return;
    }
    let _m = Mounted(&small);
    let server = JackServer::start(256);
    let src = server.source(4);
    let (dir, safe) = (tempdir(), tempdir());
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "4", "--connect", "src:out_*", "--no-http", "--mirror", small.to_str().unwrap()]
            .into_iter()
            .chain(["--mirror", safe.path().to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let alarms = subscriber(d.port);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    let raised = loop {
        let a = push_on(&alarms, "/recording/alarm", Duration::from_secs(15)).expect("the mirror alarm");
        if a[0] == OscType::String("mirror".into()) {
            break a;
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (_, truth) = src.stop_truth();
    let OscType::String(text) = &raised[3] else { panic!("{raised:?}") };
    assert!(text.contains(&small.display().to_string()) && text.contains("stopped at frame"), "{text}");
    let wav = wavs(dir.path()).pop().expect("the take");
    let name = wav.file_name().unwrap();
    let v = assert_take(&wav, Some(&truth));
    let m = manifest_of(&wav);
    assert_eq!(m["state"], "complete", "{m}");
    let copies = m["copies"].as_array().unwrap();
    let states: Vec<&str> = copies.iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["complete", "failed", "complete"], "{m}");
    assert!(copies[1]["error"].as_str().unwrap().contains("No space left"), "{m}");
    // The healthy copy is the take.
    assert_eq!(std::fs::read(safe.path().join(name)).unwrap(), std::fs::read(&wav).unwrap());
    assert_eq!(manifest_of(&safe.path().join(name)), m);
    // The full copy: what its header claims, each frame in place.
    let stopped = copies[1]["frames"].as_u64().unwrap();
    assert!(stopped > 48_000 && stopped < v.frames, "{stopped} of {}", v.frames);
    let part = small.join(name);
    // The copy holds the take's frames up to where it stopped, the take's
    // reported gaps included (a busy machine: JACK skipped the recorder).
    let gaps = gaps_within(&gap_runs(m["gaps"].as_array().unwrap()), stopped);
    let pv = assert_position_exact(&part, 0, &gaps, Some(&truth));
    assert_eq!((pv.frames, pv.first_frame_time), (stopped, v.first_frame_time));
    let pm = manifest_of(&part);
    assert_eq!((pm["state"].as_str(), pm["frames"].as_u64()), (Some("failed"), Some(stopped)), "{pm}");
    assert!(pm["error"].as_str().unwrap().contains("this copy stopped early"), "{pm}");
}

/// Spill-over: the takes' disk (a 12 MiB tmpfs) fills mid-take, and the
/// take continues in the spill directory at its very next frame as a
/// second segment, never interrupted: the two files chain exactly on
/// JACK's timeline, every frame of both in its place, and the manifests
/// link them under one take id.
#[test]
fn a_take_spills_to_the_next_disk_when_its_own_fills_and_the_chain_is_exact() {
    let base = tempdir();
    let small = base.path().join("small");
    if !mount_tmpfs(&small, "12m") {
        return;
    }
    let _m = Mounted(&small);
    let server = JackServer::start(256);
    let src = server.source(16);
    let spill = tempdir();
    // 16 inputs of float: 3 MiB/s; the guard moves on with 1 s of room left.
    let d = Daemon::start(
        &server,
        &small,
        &["--ports", "16", "--connect", "src:out_*", "--no-http", "--disk-margin-seconds", "1"]
            .into_iter()
            .chain([
                "--min-free-fraction",
                "0",
                "--min-minutes",
                "0.01",
                "--spill",
                spill.path().to_str().unwrap(),
            ])
            .collect::<Vec<_>>(),
    );
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(5000));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (_, truth) = src.stop_truth();
    let first = wavs(&small).pop().expect("the first segment");
    let second = wavs(spill.path()).pop().expect("the take went on in the spill directory");
    let (m1, m2) = (manifest_of(&first), manifest_of(&second));
    assert_eq!(m1["take_id"], m2["take_id"]);
    assert_eq!(m1["continued_in"].as_str(), second.file_stem().and_then(|s| s.to_str()), "{m1}");
    assert!(m2["continues"]["reason"].as_str().unwrap().contains("disk almost full"), "{m2}");
    let v1 = assert_position_exact(&first, 0, &gap_runs(m1["gaps"].as_array().unwrap()), Some(&truth));
    let v2 = assert_position_exact(&second, 0, &gap_runs(m2["gaps"].as_array().unwrap()), Some(&truth));
    assert_eq!(
        v2.first_frame_time,
        v1.first_frame_time + v1.frames,
        "the second segment starts at the next frame"
    );
    assert!(v1.frames > 48_000 && v2.frames > 48_000, "{} + {}", v1.frames, v2.frames);
    assert_eq!(m1["state"], "complete", "{m1}");
    assert_eq!(m2["state"], "complete", "{m2}");
}

/// The takes' disk (a 3 MiB tmpfs) has no room for a take at all: a start
/// is not refused, the take starts in the spill directory, every frame in
/// its place; without a spill directory the same start is refused and
/// says why.
#[test]
fn a_take_starts_in_the_spill_directory_when_its_own_disk_is_already_full() {
    let base = tempdir();
    let small = base.path().join("small");
    if !mount_tmpfs(&small, "3m") {
        return;
    }
    let _m = Mounted(&small);
    let server = JackServer::start(256);
    let src = server.source(16);
    let spill = tempdir();
    let args = ["--ports", "16", "--connect", "src:out_*", "--no-http", "--min-minutes", "1"];
    {
        let d = Daemon::start(&server, &small, &args);
        let (addr, said) = osc(d.port, "/record/start", vec![]).unwrap();
        assert_eq!(addr, "/error", "{said:?}");
        assert!(format!("{said:?}").contains("not enough free space"), "{said:?}");
    }
    let with_spill: Vec<&str> =
        args.iter().copied().chain(["--spill", spill.path().to_str().unwrap()]).collect();
    let d = Daemon::start(&server, &small, &with_spill);
    let (addr, said) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{said:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let (addr, said) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{said:?}");
    let (_, truth) = src.stop_truth();
    assert!(wavs(&small).is_empty(), "nothing on the full disk");
    let wav = wavs(spill.path()).pop().expect("the take is in the spill directory");
    let m = manifest_of(&wav);
    assert_eq!(m["state"], "complete", "{m}");
    let v = assert_position_exact(&wav, 0, &gap_runs(m["gaps"].as_array().unwrap()), Some(&truth));
    assert!(v.frames > 48_000, "{v:?}");
    assert!(d.log.lock().unwrap().contains("it starts in the spill directory"));
}

/// Copies in other formats (`--mirror-as`): a float interleaved take, a
/// mono FLAC copy, and a mono s24 WAV copy on a 1 MiB tmpfs that fills
/// after about two seconds. The FLAC copy is complete, every frame of
/// every input at its place on JACK's timeline, decoded by the reference
/// decoder; the full copy stops (its manifest and the take's say so, and
/// what it holds is exact); the take itself is complete and exact.
#[test]
fn copies_in_other_formats_are_exact_and_a_full_one_stops_without_the_take() {
    let base = tempdir();
    let small = base.path().join("small");
    if !mount_tmpfs(&small, "1m") {
        return;
    }
    let _m = Mounted(&small);
    let server = JackServer::start(256);
    let src = server.source(4);
    let (dir, flac) = (tempdir(), tempdir());
    let as_flac = format!("flac,mono={}", flac.path().display());
    let as_s24 = format!("wav,mono,s24={}", small.display());
    let d = Daemon::start(
        &server,
        dir.path(),
        &[
            "--ports",
            "4",
            "--connect",
            "src:out_*",
            "--no-http",
            "--mirror-as",
            &as_flac,
            "--mirror-as",
            &as_s24,
        ],
    );
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(3500));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (_, truth) = src.stop_truth();
    let wav = wavs(dir.path()).pop().expect("the take");
    let m = manifest_of(&wav);
    assert_eq!(m["state"], "complete", "{m}");
    let gaps = gap_runs(m["gaps"].as_array().unwrap());
    let v = assert_position_exact(&wav, 0, &gaps, Some(&truth));
    assert!(v.frames > 3 * 48_000, "{v:?}");
    let stem = wav.file_stem().unwrap().to_string_lossy().into_owned();
    for i in 0..4 {
        let f = flac.path().join(format!("{stem}_in_{}.flac", i + 1));
        let c = assert_position_exact(&f, i, &gaps, Some(&truth));
        assert_eq!((c.first_frame_time, c.frames), (v.first_frame_time, v.frames), "input {}", i + 1);
    }
    let copies = m["copies"].as_array().unwrap();
    let of =
        |dir: &Path| copies.iter().find(|c| Path::new(c["dir"].as_str().unwrap()) == dir).unwrap().clone();
    let f = of(flac.path());
    assert_eq!((f["state"].as_str(), f["format"].as_str()), (Some("complete"), Some("flac mono s24")), "{m}");
    let s = of(&small);
    assert_eq!(s["state"], "failed", "{m}");
    let held = s["frames"].as_u64().unwrap();
    assert!(held > 0 && held < v.frames, "{s}");
    let cm = manifest_of(&small.join(format!("{stem}.wav"))); // its manifest, by the take's name
    assert_eq!(cm["state"], "failed", "{cm}");
    assert_eq!(cm["take_id"], m["take_id"]);
    for i in 0..4 {
        let f = small.join(format!("{stem}_in_{}.wav", i + 1));
        let held_here = capstan::wav::read_info(&f).unwrap().frames();
        let c = assert_position_exact(&f, i, &gaps_within(&gaps, held_here), Some(&truth));
        assert_eq!(c.first_frame_time, v.first_frame_time);
        assert!(c.frames <= held + 48_000, "{} frames in {}", c.frames, f.display());
    }
    assert!(d.log.lock().unwrap().contains("the take's copy stopped"), "{}", d.log.lock().unwrap());
}

/// One HTTP request to the daemon's page; (status code, JSON body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    (code, serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The storage settings over OSC (`/config/storage`) and HTTP
/// (`/api/config/storage`): a copy in another format added while the
/// daemon runs goes to the next take, exact; a change the settings'
/// validation refuses, or a directory inside the takes', is refused with
/// why, and nothing changes.
#[test]
fn storage_settings_change_over_osc_and_http_and_bad_ones_are_refused() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let (dir, copy, spill) = (tempdir(), tempdir(), tempdir());
    let d = Daemon::start(&server, dir.path(), &["--ports", "2", "--connect", "src:out_*"]);
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    let OscType::Int(web) = st[14] else { panic!("{st:?}") };
    let web = web as u16;
    let change = format!(r#"{{"mirror_as": ["flac,mono={}"]}}"#, copy.path().display());
    let (addr, args) = osc(d.port, "/config/storage", vec![OscType::String(change)]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let OscType::String(now) = &args[1] else { panic!("{args:?}") };
    let now: serde_json::Value = serde_json::from_str(now).unwrap();
    assert_eq!(now["mirror_as"][0], format!("flac,mono={}", copy.path().display()));
    // Refused: inside the takes' directory; a key that is not storage; a
    // value the validation refuses. Nothing changes.
    let inside = format!(r#"{{"mirror": ["{}"]}}"#, dir.path().join("copy").display());
    let (addr, args) = osc(d.port, "/config/storage", vec![OscType::String(inside)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(12)), "{args:?}");
    assert!(format!("{args:?}").contains("not inside or above it"), "{args:?}");
    let (code, j) = http(web, "POST", "/api/config/storage", r#"{"ports": 3}"#);
    assert_eq!(code, 400, "{j}");
    assert!(j["error"].as_str().unwrap().contains("ports is not a storage setting"), "{j}");
    let (code, j) =
        http(web, "POST", "/api/config/storage", r#"{"lifecycle": {"tiers": ["30d=/a", "7d=/b"]}}"#);
    assert_eq!(code, 400, "{j}");
    assert!(j["error"].as_str().unwrap().contains("its age must be greater"), "{j}");
    let (code, j) = http(web, "GET", "/api/config/storage", "");
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["storage"]["mirror"], serde_json::json!([]), "{j}");
    assert_eq!(j["storage"]["lifecycle"]["tiers"], serde_json::json!([]), "{j}");
    // Over HTTP: a spill directory.
    let body = format!(r#"{{"spill": ["{}"]}}"#, spill.path().display());
    let (code, j) = http(web, "POST", "/api/config/storage", &body);
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["storage"]["spill"][0], spill.path().display().to_string());
    assert_eq!(j["storage"]["mirror_as"].as_array().unwrap().len(), 1, "the earlier change stays");
    // The next take has its copy.
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
    let (_, truth) = src.stop_truth();
    let wav = wavs(dir.path()).pop().expect("the take");
    let m = manifest_of(&wav);
    let v = assert_position_exact(&wav, 0, &gap_runs(m["gaps"].as_array().unwrap()), Some(&truth));
    let stem = wav.file_stem().unwrap().to_string_lossy().into_owned();
    for i in 0..2 {
        let f = copy.path().join(format!("{stem}_in_{}.flac", i + 1));
        let c = assert_position_exact(&f, i, &gap_runs(m["gaps"].as_array().unwrap()), Some(&truth));
        assert_eq!((c.first_frame_time, c.frames), (v.first_frame_time, v.frames));
    }
}
