//! `capstan record` end to end: real jackd, real test source, every file
//! checked sample by sample.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

fn record(
    server: &JackServer,
    dir: &std::path::Path,
    args: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut cmd = server.capstan();
    cmd.args(["record", "--json", "-q", "--connect", "src:out_*", "--dir"]).arg(dir).args(args);
    let out = run(cmd);
    assert!(out.status.success(), "capstan failed: {}\n{}", text(&out.stderr), text(&out.stdout));
    let s = summary(&out);
    (out, s)
}

#[test]
fn lossless_2_channels_interleaved() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let (_, s) = record(&server, dir.path(), &["--duration", "2"]);
    src.stop();
    let f = files(&s);
    assert_eq!(f.len(), 1);
    assert_eq!(assert_recording(&f[0], 0, &s), 96_000);
    assert_eq!(s["take"]["frames"], 96_000);
    // sox, an independent reader, agrees on the length and format.
    let soxi = text(
        &run({
            let mut c = std::process::Command::new("soxi");
            c.arg(&f[0]);
            c
        })
        .stdout,
    );
    assert!(soxi.contains("96000 samples"), "{soxi}");
    assert!(soxi.contains("Channels       : 2"), "{soxi}");
}

#[test]
fn lossless_64_channels_mono_files_s24() {
    let server = JackServer::start(256);
    let src = server.source(64);
    let dir = tempdir();
    let (_, s) =
        record(&server, dir.path(), &["--duration", "1.5", "--layout", "mono", "--sample-format", "s24"]);
    src.stop();
    let f = files(&s);
    assert_eq!(f.len(), 64);
    for (i, path) in f.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!("_in_{}.wav", i + 1)), "{name}");
        assert_eq!(assert_recording(path, i, &s), 72_000);
    }
    let info = capstan::wav::read_info(&f[10]).unwrap();
    assert_eq!(info.spec.channels, 1);
    assert_eq!(info.spec.format, capstan::wav::SampleFormat::S24);
}

#[test]
fn lossless_256_channels_interleaved() {
    let server = JackServer::start(1024);
    let src = server.source(256);
    let dir = tempdir();
    let (_, s) = record(&server, dir.path(), &["--duration", "3"]);
    src.stop();
    let f = files(&s);
    assert_eq!(assert_recording(&f[0], 0, &s), 144_000);
    assert_eq!(capstan::wav::read_info(&f[0]).unwrap().spec.channels, 256);
}

#[test]
fn every_sample_format_is_exact() {
    let server = JackServer::start(256);
    let src = server.source(4);
    let dir = tempdir();
    for fmt in ["float32", "s16", "s24", "s32"] {
        let (_, s) = record(&server, dir.path(), &["--duration", "0.5", "--sample-format", fmt]);
        let f = files(&s);
        assert_eq!(assert_recording(&f[0], 0, &s), 24_000, "{fmt}");
        let bits = capstan::wav::read_info(&f[0]).unwrap().spec.format.bits();
        let want = if fmt == "float32" { 32 } else { fmt[1..].parse().unwrap() };
        assert_eq!(bits, want);
        // hound (independent of our reader) opens every format.
        let r = hound::WavReader::open(&f[0]).unwrap();
        assert_eq!(r.duration(), 24_000);
    }
    src.stop();
    // Four takes, four distinct files: nothing overwritten.
    let wavs = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wav"));
    assert_eq!(wavs.count(), 4);
}

/// `capstan record --json` of the test source, running until stopped.
fn spawn_record(server: &JackServer, dir: &std::path::Path) -> std::process::Child {
    server
        .capstan()
        .args(["record", "--json", "-q", "--connect", "src:out_*", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the take's file has at least `frames` committed frames.
fn wait_for_frames(dir: &std::path::Path, frames: u64) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wav = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "wav"));
        if let Some(e) = wav {
            if let Ok(info) = capstan::wav::read_info(&e.path()) {
                if info.frames() >= frames {
                    return e.path();
                }
            }
        }
        assert!(Instant::now() < deadline, "take did not reach {frames} frames");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigint_mid_take_finalizes_and_exits_0() {
    let server = JackServer::start(256);
    let src = server.source(8);
    let dir = tempdir();
    let child = spawn_record(&server, dir.path());
    wait_for_frames(dir.path(), 48_000);
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = wait_output(child, Duration::from_secs(10));
    let took = t.elapsed();
    src.stop();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let s = summary(&out);
    let frames = assert_recording(&files(&s)[0], 0, &s);
    assert!(frames >= 48_000, "{frames}");
    assert_eq!(frames, s["take"]["frames"].as_u64().unwrap());
}

#[test]
fn sigkill_mid_take_leaves_a_readable_file() {
    let server = JackServer::start(256);
    let src = server.source(4);
    let dir = tempdir();
    let mut child = server
        .capstan()
        .args(["record", "-q", "--connect", "src:out_*", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let path = wait_for_frames(dir.path(), 2 * 48_000);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    let (_, truth) = src.stop_truth();
    // The header claims only audio that reached the disk, every frame at its
    // own frame time. The gaps of a killed take are not in its manifest
    // (written when a take ends), so silent runs are allowed here, moved
    // frames never.
    let v = capstan_testbed::verify(&path, 0, 0).unwrap();
    assert_eq!((v.torn, v.mismatched), (0, 0), "{v:?}");
    let holes: u64 = truth.holes(v.first_frame_time, v.first_frame_time + v.frames).iter().map(|h| h.1).sum();
    assert!(v.silent_frames() >= holes, "frames the source never wrote must be silence: {v:?}");
    assert!(v.frames >= 2 * 48_000, "{v:?}");
    let out = run({
        let mut c = std::process::Command::new("soxi");
        c.arg("-s").arg(&path);
        c
    });
    assert!(out.status.success(), "sox cannot read the killed take: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), v.frames.to_string());
    let out = run({
        let mut c = std::process::Command::new("sox");
        c.arg(&path).args(["-n", "stat"]);
        c
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn connect_pattern_matching_nothing_is_an_error_and_creates_nothing() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let target = dir.path().join("takes");
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "--connect", "nosuch:*", "--duration", "1", "--dir"]).arg(&target);
        c
    });
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("nosuch:*") && err.contains("matches no JACK output port"), "{err}");
    assert!(!target.exists());
}

#[test]
fn no_jack_server_is_a_clear_error_and_creates_nothing() {
    let dir = tempdir();
    let target = dir.path().join("takes");
    let out = run({
        let mut c = std::process::Command::new(CAPSTAN);
        c.env("JACK_DEFAULT_SERVER", format!("capstan-test-absent-{}", std::process::id()))
            .env("JACK_NO_START_SERVER", "1")
            .args(["record", "--duration", "1", "--dir"])
            .arg(&target);
        c
    });
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot connect to JACK server") && err.contains("is it running"), "{err}");
    assert!(!target.exists());
}

#[test]
fn server_dying_mid_take_finalizes_the_file_and_reports() {
    let mut server = JackServer::start_named("capstan-test-killed".into(), 256);
    let src = server.source(2);
    let dir = tempdir();
    let child = spawn_record(&server, dir.path());
    wait_for_frames(dir.path(), 48_000);
    server.kill(Signal::SIGKILL);
    let out = wait_output(child, Duration::from_secs(20));
    drop(src);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("JACK server shut down"), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["jack_shutdown"], true);
    let frames = assert_recording(&files(&s)[0], 0, &s);
    assert!(frames >= 48_000);
    // Finalized: the header holds every frame written.
    assert_eq!(frames, s["take"]["frames"].as_u64().unwrap());
    // The manifest says why the take ended.
    let m = manifest_of(&files(&s)[0]);
    assert_eq!(m["state"], "failed", "{m}");
    assert!(m["error"].as_str().is_some_and(|e| e.contains("JACK server shut down")), "{m}");
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let server = JackServer::start(256);
    let dir = tempdir();
    std::fs::write(dir.path().join("keep.wav"), b"precious").unwrap();
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "--duration", "0.2", "--file", "keep.wav", "--dir"]).arg(dir.path());
        c
    });
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(dir.path().join("keep.wav")).unwrap(), b"precious");
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "--duration", "0.2", "--file", "../escape.wav", "--dir"]).arg(dir.path());
        c
    });
    assert!(!out.status.success());
    assert!(!dir.path().parent().unwrap().join("escape.wav").exists());
}

/// Twenty `record`s launched at once on one directory: the lock comes before
/// JACK, so the losers exit at once, naming the winner, without opening a
/// JACK client; the winner records and stops within 2 s of SIGTERM.
#[test]
fn simultaneous_launches_lose_at_the_lock_before_touching_jack() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let t = Instant::now();
    let children: Vec<std::process::Child> = (0..20)
        .map(|_| {
            server
                .capstan()
                .args(["record", "-q", "--connect", "src:out_*", "--dir"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut winner = None;
    let mut losers = 0;
    for mut c in children {
        // A loser is done long before the winner.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(st) => {
                let mut err = String::new();
                std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert_eq!(st.code(), Some(1), "{err}");
                assert!(err.contains("another capstan (pid"), "{err}");
                losers += 1;
            }
            None => {
                assert!(winner.is_none(), "two recorders run on one directory");
                winner = Some(c);
            }
        }
    }
    assert_eq!(losers, 19);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let clients = text(&run(server.cmd("jack_lsp")).stdout);
    assert_eq!(clients.lines().filter(|l| l.ends_with(":in_1")).count(), 1, "{clients}");
    let mut w = winner.expect("one recorder runs");
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.id() as i32), Signal::SIGTERM).unwrap();
    assert!(w.wait().unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// libjack can block for many seconds against a server that does not
/// answer, ignoring signals: SIGTERM while connecting still ends `record`
/// within 2 s, with nothing created.
#[test]
fn sigterm_while_jack_does_not_answer_exits_within_2_s() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let target = dir.path().join("takes");
    server.signal(Signal::SIGSTOP);
    let mut c = server
        .capstan()
        .args(["record", "-q", "--dir"])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "record ignored SIGTERM while connecting to JACK");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.signal(Signal::SIGCONT);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(status.code(), Some(1));
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().count() == 0);
}
