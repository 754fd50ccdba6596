//! Alarms from the daemon as a user meets them: a silent input, a clipping
//! input, a nearly full disk and a stalled disk thread each raise their
//! alarm, pushed to OSC subscribers (`/recording/alarm`), shown in the web
//! page's status and kept in the take's manifest.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::harness::*;

/// A socket subscribed to the daemon's pushes.
/// Waits for the alarm push of `kind` about `input` that is raised (or
/// cleared); returns its text.
fn alarm_push(sock: &UdpSocket, kind: &str, input: &str, raised: bool, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let Some(args) = push_on(sock, "/recording/alarm", deadline - Instant::now()) else { break };
        match &args[..] {
            [OscType::String(k), OscType::String(i), OscType::Int(r), OscType::String(text)]
                if k == kind && i == input && (*r == 1) == raised =>
            {
                return text.clone();
            }
            [_, _, OscType::Int(_), OscType::String(_)] => {}
            other => panic!("a malformed alarm push: {other:?}"),
        }
    }
    panic!("no /recording/alarm {kind} {input:?} raised={raised} within {within:?}")
}

/// The web page's `/api/status`, as JSON.
fn web_status(http_port: u16) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    write!(s, "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").expect("an HTTP answer").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn http_port(port: u16) -> u16 {
    let (_, st) = osc(port, "/record/status", vec![]).unwrap();
    let OscType::Int(http) = st[14] else { panic!("{st:?}") };
    http as u16
}

/// A +1 dBFS tone on in_1 clips (raised idle: the soundcheck), in_2 is
/// left unconnected and is silent for the second the test sets: both are
/// pushed, shown on the page and kept in the take's manifest, which is
/// clean (no frame lost). Out-of-range thresholds are refused.
#[test]
fn a_silent_input_and_a_clipping_input_raise_alarms_everywhere() {
    let server = JackServer::start(256);
    let src = server.source_with(1, &["--tone", "1"]);
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--http-port", "0", "--alarm-silence-seconds", "1"],
    );
    let sock = subscriber(d.port);
    let text = alarm_push(&sock, "clipping", "in_1", true, Duration::from_secs(5));
    assert!(text.contains("in_1 clipping"), "{text}");
    let st = web_status(http_port(d.port));
    let alarms = st["status"]["alarms"].as_array().unwrap_or_else(|| panic!("{st}"));
    assert!(alarms.iter().any(|a| a["kind"] == "clipping" && a["input"] == "in_1"), "{st}");
    // Idle: silence is no alarm (nothing is being recorded).
    assert!(!alarms.iter().any(|a| a["kind"] == "silent"), "{st}");
    // Out of range and unknown: refused with the settings' words.
    let (addr, args) =
        osc(d.port, "/config/alarm", vec![OscType::String("ring_percent".into()), OscType::Float(0.0)])
            .unwrap();
    assert_eq!(addr, "/error", "{args:?}");
    assert!(format!("{args:?}").contains("alarm_ring_percent must be between 1 and 100"), "{args:?}");
    let (addr, _) =
        osc(d.port, "/config/alarm", vec![OscType::String("loudness".into()), OscType::Float(1.0)]).unwrap();
    assert_eq!(addr, "/error");
    let (addr, args) =
        osc(d.port, "/config/alarm", vec![OscType::String("silence_dbfs".into()), OscType::Int(-50)])
            .unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    // Record: in_2 is silent for a second.
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let text = alarm_push(&sock, "silent", "in_2", true, Duration::from_secs(5));
    assert_eq!(text, "in_2 silent: below -50 dBFS for 1 s");
    std::thread::sleep(Duration::from_millis(300));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    alarm_push(&sock, "silent", "in_2", false, Duration::from_secs(3));
    src.stop();
    let wav = wavs(dir.path()).pop().expect("a take");
    let m = manifest_of(&wav);
    let alarms = m["alarms"].as_array().unwrap_or_else(|| panic!("no alarms in {m}"));
    let find = |kind: &str, input: &str| {
        alarms
            .iter()
            .find(|a| a["kind"] == kind && a["input"] == input)
            .unwrap_or_else(|| panic!("{m}"))
            .clone()
    };
    let silent = find("silent", "in_2");
    // Raised a second after the start (the meters trail the files' writes
    // by 0.2 s): its frame is inside the take, about 1 s in.
    let frame = silent["frame"].as_u64().unwrap();
    assert!((40_000..=96_000).contains(&frame), "{silent}");
    assert!(find("clipping", "in_1")["count"].as_u64().unwrap() >= 1);
    // Level alarms never make a take unclean; only lost frames do (a busy
    // machine may make JACK skip the recorder: then the gaps say so).
    let gapless = m["gaps"].as_array().is_none_or(|g| g.is_empty());
    assert_eq!(m["clean"], gapless, "{m}");
    assert!(d.log.lock().unwrap().contains("alarm: in_2 silent"), "the log says it");
}

/// A disk whose free space lasts less than the alarm's minutes at the
/// current rate raises `disk_low` (idle too: before the show); setting the
/// alarm off clears it.
#[test]
fn a_nearly_full_disk_raises_disk_low() {
    let server = JackServer::start(256);
    let base = tempdir();
    let disk = base.path().join("disk");
    if !crate::storage::mount_tmpfs(&disk, "16m") {
        return;
    }
    // 2 inputs of float at 48 kHz: 384 kB/s, 16 MiB last about 44 s.
    let d = Daemon::start(&server, &disk, &["--ports", "2", "--no-http", "--alarm-disk-minutes", "2"]);
    let sock = subscriber(d.port);
    let text = alarm_push(&sock, "disk_low", "", true, Duration::from_secs(5));
    assert!(text.starts_with("disk low: 4") && text.ends_with("s left at the current rate"), "{text}");
    let (addr, _) =
        osc(d.port, "/config/alarm", vec![OscType::String("disk_minutes".into()), OscType::Int(0)]).unwrap();
    assert_eq!(addr, "/reply");
    alarm_push(&sock, "disk_low", "", false, Duration::from_secs(3));
    drop(d);
    crate::storage::umount(&disk);
}

/// The daemon's disk thread is stopped (ptrace stops that one thread; the
/// callback goes on filling the rings): `disk_behind` is raised before the
/// rings are full, and cleared once the thread runs again and catches up.
/// Nothing is lost: every frame of the take is at its position.
#[test]
fn a_stalled_disk_thread_raises_disk_behind_before_anything_is_lost() {
    if !root_for("stopping another process's thread (ptrace)") {
        return;
    }
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--no-http", "--buffer-seconds", "8"],
    );
    let sock = subscriber(d.port);
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    std::thread::sleep(Duration::from_millis(500));
    // Let go of the thread however this test ends (before the daemon is
    // told to quit, which needs it): dropped before `d`.
    let stopped = StoppedThread::named(d.child.as_ref().unwrap().id(), "capstan-disk");
    // 50% of 8 s of room: raised after about 4 s, 4 s before the rings
    // are full (the take's frames say whether it was in time).
    let text = alarm_push(&sock, "disk_behind", "", true, Duration::from_secs(7));
    // The status says how far behind, though the disk thread is stopped.
    let fill = match osc(d.port, "/record/status", vec![]).map(|(_, st)| st.get(15).cloned()) {
        Some(Some(OscType::Double(f))) => f,
        other => panic!("{other:?}"),
    };
    drop(stopped);
    assert!((50.0..100.0).contains(&fill), "ring_fill_percent {fill}");
    assert!(text.starts_with("disk falling behind: the buffers are"), "{text}");
    alarm_push(&sock, "disk_behind", "", false, Duration::from_secs(5));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (_, truth) = src.stop_truth();
    let wav = wavs(dir.path()).pop().expect("a take");
    // Every frame at its position, silence exactly where the manifest says.
    let v = assert_take(&wav, Some(&truth));
    let m = manifest_of(&wav);
    // Nothing lost to the disk. A busy machine may make JACK skip cycles
    // (xruns, reported as JACK's): those are the only silence allowed.
    let gaps = m["gaps"].as_array().unwrap();
    assert!(gaps.iter().all(|g| g["cause"] != "disk_overrun"), "{m}");
    if gaps.is_empty() {
        assert_eq!(v.silent_frames(), 0, "{v:?}");
        assert_eq!(m["clean"], true, "{m}");
    }
    assert!(m["alarms"].as_array().is_some_and(|a| a.iter().any(|a| a["kind"] == "disk_behind")), "{m}");
}
