//! A disk that cannot keep up (issue 26): the recorder stays in control.
//! The disk is made slow by a preloaded shim (`support/slowdisk.c`): every
//! write of a block or more takes as long as the set rate needs, as on a
//! full USB stick or a busy network share. capstan itself is unchanged.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::harness::*;

/// `/record/status` as (percent of the rings' room in use, seconds the
/// disk is behind). The rings' room is full (100) only while the callback
/// drops frames the disk had no room for: the status's lost frames would
/// also count cycles JACK skipped on a busy machine.
fn fill_and_behind(port: u16) -> (f64, f64) {
    let (_, st) = osc(port, "/record/status", vec![]).expect("status answers");
    let number = |i: usize, what: &str| match st.get(i) {
        Some(OscType::Double(n)) => *n,
        other => panic!("{what}: {other:?} in {st:?}"),
    };
    (number(15, "ring fill percent"), number(16, "seconds behind"))
}

/// The push of `/recording/state` with state `want`, within `timeout`.
fn state_push(sock: &UdpSocket, want: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while let Some(args) =
        push_on(sock, "/recording/state", deadline.saturating_duration_since(Instant::now()))
    {
        if args.get(1) == Some(&OscType::String(want.into())) {
            return true;
        }
    }
    false
}

/// 32 inputs of float32 need 6.1 MB/s; the disk takes 3 MB/s (a USB
/// stick; one 1 MiB write takes 0.35 s). The rings
/// (2 s) fill: `disk_behind` is raised before anything is lost, the loss
/// is reported (cause `disk_overrun`) and the status says how far behind
/// the disk is. `/record/stop` answers within 1 s with the take's length;
/// the take ends exactly there once the disk has caught up, every frame at
/// its position and every silent frame a reported gap. A second take is
/// ended by SIGTERM: the process is gone within 2 s and its files are
/// final (the manifest says what the disk never got).
#[test]
fn the_recorder_stays_in_control_when_the_disk_cannot_keep_up() {
    let server = JackServer::start(256);
    let src = server.source(32);
    let dir = tempdir();
    let tools = tempdir();
    let shim = slow_disk(tools.path());
    let mut d = Daemon::start_env(
        &server,
        dir.path(),
        &["--ports", "32", "--connect", "src:out_*", "--no-http", "--buffer-seconds", "2"],
        &[("LD_PRELOAD", shim.to_str().unwrap()), ("SLOWDISK_BYTES_PER_SEC", "3000000")],
    );
    let sock = subscriber(d.port);
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");

    // Warned before the loss…
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut warned = false;
    while !warned && Instant::now() < deadline {
        let args = push_on(&sock, "/recording/alarm", Duration::from_millis(200));
        warned = args.is_some_and(|a| a.first() == Some(&OscType::String("disk_behind".into())));
    }
    // (Whether it came before the first frame lost to the disk is judged
    // from the manifest below: the status's lost frames also count cycles
    // JACK skipped on a busy machine.)
    assert!(warned, "disk_behind raised within 10 s");
    // …then the rings overflow, and the status says so and by how much.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut fill, mut behind) = (0.0, 0.0);
    while (fill < 100.0 || behind < 1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (fill, behind) = fill_and_behind(d.port);
    }
    assert!(fill >= 100.0, "the rings never filled in 15 s ({fill}%): the test's disk is not slow");
    assert!(behind >= 1.0, "the status says the disk is {behind} s behind; its rings hold 2 s");
    std::thread::sleep(Duration::from_millis(300)); // a few more cycles find no room

    // The stop is answered within 1 s, with the length the take will have.
    let t = Instant::now();
    let (addr, args) = osc(d.port, "/record/stop", vec![]).expect("an answer to the stop");
    let answered = t.elapsed();
    assert_eq!(addr, "/reply", "{args:?}");
    assert!(answered < Duration::from_secs(1), "the stop was answered after {answered:?}");
    let Some(OscType::Double(frames)) = args.get(2).cloned() else { panic!("{args:?}") };
    // The files are final once the disk has caught up (IDLE).
    assert!(state_push(&sock, "idle", Duration::from_secs(30)), "the take never ended");
    let wav = wavs(dir.path()).pop().expect("a take file");
    let v = assert_take(&wav, None);
    assert_eq!(v.frames, frames as u64, "the take ends where the stop said");
    let m = manifest_of(&wav);
    let overruns: Vec<_> =
        m["gaps"].as_array().unwrap().iter().filter(|g| g["cause"] == "disk_overrun").collect();
    let overrun: u64 = overruns.iter().map(|g| g["frames"].as_u64().unwrap()).sum();
    assert!(overrun > 0, "the loss is reported as disk_overrun: gaps {}", m["gaps"]);
    let first_overrun = overruns.iter().map(|g| g["at"].as_u64().unwrap()).min().unwrap();
    let alarm = m["alarms"].as_array().unwrap().iter().find(|a| a["kind"] == "disk_behind");
    let alarm_at = alarm
        .and_then(|a| a["frame"].as_u64())
        .unwrap_or_else(|| panic!("no disk_behind in {}", m["alarms"]));
    assert!(
        alarm_at < first_overrun,
        "disk_behind (frame {alarm_at}) came after frames were lost ({first_overrun})"
    );
    eprintln!("stop answered in {answered:?}; {frames} frames, {overrun} lost to the slow disk");

    // SIGTERM while the disk is behind: gone within 2 s, files final.
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fill_and_behind(d.port).1 < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, took) = d.terminate();
    src.stop();
    eprintln!("SIGTERM with the disk behind: gone after {took:?}");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}: {}", d.log.lock().unwrap());
    assert!(status.success(), "{status}: {}", d.log.lock().unwrap());
    let second = wavs(dir.path()).into_iter().find(|w| *w != wav).expect("the second take's file");
    let v = assert_take(&second, None);
    let m = manifest_of(&second);
    assert_eq!(m["frames"].as_u64(), Some(v.frames), "{m}\n{}", d.log.lock().unwrap());
    let said = m["error"].as_str().unwrap_or_default().to_string() + d.log.lock().unwrap().as_str();
    assert!(said.contains("behind"), "nothing says the disk was behind at the end: {m}");
}

/// The disk thread is stopped (ptrace, as in a write to a dead mount) when
/// the stop comes: it is answered within 1 s with the take's length; with
/// no progress for 3 s the recorder is in ERROR and says why; once the
/// thread runs again the take ends exactly where the stop said (the
/// drained ending that ERROR orders never runs past a stop point), and
/// `/record/reset` leads back to recording.
#[test]
fn a_stop_while_the_disk_thread_is_stopped_is_answered_and_kept() {
    if !root_for("stopping another process's thread (ptrace)") {
        return;
    }
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--no-http", "--buffer-seconds", "20"],
    );
    let sock = subscriber(d.port);
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    std::thread::sleep(Duration::from_millis(500));
    let stopped = StoppedThread::named(d.child.as_ref().unwrap().id(), "capstan-disk");
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    let (addr, args) = osc(d.port, "/record/stop", vec![]).expect("an answer to the stop");
    let answered = t.elapsed();
    assert_eq!(addr, "/reply", "{args:?}");
    assert!(answered < Duration::from_secs(1), "answered after {answered:?}");
    let Some(OscType::Double(frames)) = args.get(2).cloned() else { panic!("{args:?}") };
    // Busy meanwhile, and it says why.
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/error", "{args:?}");
    assert!(format!("{args:?}").contains("the disk is writing it"), "{args:?}");
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut error = None;
    while error.is_none() && Instant::now() < deadline {
        let args = push_on(&sock, "/recording/error", Duration::from_millis(200));
        error = args.and_then(|a| match a.get(2) {
            Some(OscType::String(t)) => Some(t.clone()),
            _ => None,
        });
    }
    let error = error.expect("an error push once the disk made no progress for 3 s");
    assert!(error.contains("written nothing"), "{error}");
    std::thread::sleep(Duration::from_millis(1500)); // more audio arrives
    drop(stopped);
    let deadline = Instant::now() + Duration::from_secs(10);
    let wav = wavs(dir.path()).pop().expect("a take file");
    while manifest_of(&wav)["state"] == "recording" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = assert_take(&wav, None);
    assert_eq!(v.frames, frames as u64, "the take ends where the stop said: {}", d.log.lock().unwrap());
    let (addr, args) = osc(d.port, "/record/reset", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    src.stop();
}
