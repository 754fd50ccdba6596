//! Storage safety end to end: kill -9 and `capstan recover`, a disk that
//! really fills up (tmpfs), take manifests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::harness::*;

fn manifest_of(wav: &std::path::Path) -> capstan::manifest::Manifest {
    let dir = wav.parent().unwrap();
    let m = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".take.json"))
        .expect("a manifest beside the take");
    capstan::manifest::Manifest::load(&m).unwrap()
}

/// A pseudo-random moment between 0.6 and 2.1 s (no luck involved in what
/// is checked: any moment must work).
fn random_moment(k: u32) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    Duration::from_millis(600 + ((nanos / 1000 + k * 7919) % 1500) as u64)
}

#[test]
fn killed_takes_are_recovered_to_a_gap_free_prefix() {
    let server = JackServer::start(256);
    let src = server.source(4);
    let mut report = Vec::new();
    for k in 0..3 {
        let dir = tempdir();
        let mut child = server
            .capstan()
            .args(["record", "-q", "--connect", "src:out_*", "--sample-format", "s24", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(random_moment(k));
        child.kill().unwrap();
        child.wait().unwrap();
        let wav = wavs(dir.path()).pop().expect("a take file");
        let before = capstan::wav::read_info(&wav).unwrap().frames();
        assert_eq!(manifest_of(&wav).state, capstan::manifest::TakeState::Recording);
        let out = run({
            let mut c = Command::new(CAPSTAN);
            c.arg("recover").arg(dir.path());
            c
        });
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("recovered"), "{}", text(&out.stdout));
        let after = capstan::wav::read_info(&wav).unwrap().frames();
        assert!(after >= before, "recover lost frames: {before} -> {after}");
        let m = manifest_of(&wav);
        assert_eq!(m.state, capstan::manifest::TakeState::Recovered);
        assert_eq!(m.frames, after);
        let v = capstan_testbed::verify(&wav, 0, 0).unwrap();
        assert_eq!(v.torn, 0, "{v:?}");
        assert_eq!(v.frames, after);
        // sox reads the repaired file.
        let soxi = run({
            let mut c = Command::new("soxi");
            c.arg("-s").arg(&wav);
            c
        });
        assert_eq!(text(&soxi.stdout).trim(), after.to_string());
        // Idempotent.
        let again = run({
            let mut c = Command::new(CAPSTAN);
            c.arg("recover").arg(dir.path());
            c
        });
        assert!(text(&again.stdout).contains("nothing to recover"), "{}", text(&again.stdout));
        report.push((before, after, v));
    }
    src.stop();
    for (before, after, v) in &report {
        eprintln!("killed take: header {before} frames, recovered {after}, verdict {v:?}");
        // A killed take's gaps never reached its manifest: silence is
        // allowed, a frame away from its frame time never.
        assert_eq!((v.torn, v.mismatched), (0, 0), "{v:?}");
    }
}

pub(crate) fn mount_tmpfs(at: &std::path::Path, size: &str) -> bool {
    if !root_for("mounting a tmpfs") {
        return false;
    }
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "capstan-test"])
        .arg(at)
        .status()
        .unwrap()
        .success()
}

pub(crate) fn umount(at: &std::path::Path) {
    let _ = Command::new("umount").arg(at).status();
}

#[test]
fn a_full_disk_ends_the_take_cleanly_with_a_valid_file() {
    let server = JackServer::start(256);
    let src = server.source(16);
    let base = tempdir();
    let disk = base.path().join("disk");
    if !mount_tmpfs(&disk, "24m") {
        return;
    }
    // 16 ch float = 3 MiB/s; the guard (10 s for `record`) stops it at once,
    // before the disk is full.
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "-q", "--json", "--connect", "src:out_*", "--duration", "30", "--dir"]).arg(&disk);
        c
    });
    let wav = wavs(&disk).pop().expect("a take");
    let m = manifest_of(&wav);
    // Every frame in place; silence only where the take reports a gap (a
    // busy machine may make JACK skip the recorder).
    let gaps: Vec<(u64, u64)> = m.gaps.iter().map(|g| (g.at, g.frames)).collect();
    let v = assert_position_exact(&wav, 0, &gaps, None);
    let soxi = run({
        let mut c = Command::new("soxi");
        c.arg("-s").arg(&wav);
        c
    });
    umount(&disk);
    assert_eq!(text(&soxi.stdout).trim(), v.frames.to_string(), "sox disagrees: {}", text(&soxi.stderr));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("disk almost full"), "{}", text(&out.stderr));
    assert_eq!(m.state, capstan::manifest::TakeState::Failed);
    assert!(v.frames > 0, "{v:?}");
    let xruns = src.stop();
    eprintln!("guarded full disk: {} frames kept, {xruns} xruns", v.frames);
}

#[test]
fn enospc_in_the_daemon_keeps_the_audio_and_recovers_when_space_returns() {
    let server = JackServer::start(256);
    let src = server.source(16);
    let base = tempdir();
    let disk = base.path().join("disk");
    if !mount_tmpfs(&disk, "16m") {
        return;
    }
    // Make room to free later.
    std::fs::write(disk.join("ballast"), vec![1u8; 4 << 20]).unwrap();
    let d = Daemon::start(
        &server,
        &disk,
        &[
            "--ports",
            "16",
            "--connect",
            "src:out_*",
            "--min-minutes",
            "0.01",
            "--min-free-fraction",
            "0",
            "--disk-margin-seconds",
            "0",
        ],
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |path: &str| {
        sock.send_to(&capstan::control::osc::encode(path, vec![]), ("127.0.0.1", d.port)).unwrap();
    };
    send("/record/subscribe");
    assert_eq!(reply_on(&sock, Duration::from_secs(5)).unwrap().0, "/reply");
    send("/record/start");
    assert_eq!(reply_on(&sock, Duration::from_secs(5)).unwrap().0, "/reply");
    // Writes hit ENOSPC within a few seconds; the daemon reports code 11.
    let error = push_on(&sock, "/recording/error", Duration::from_secs(20)).expect("a /recording/error push");
    assert_eq!(error[1], OscType::Int(11), "{error:?}");
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    let df = run({
        let mut c = Command::new("df");
        c.arg("-k").arg(&disk);
        c
    });
    assert_eq!(st[1], OscType::String("error".into()), "{} {st:?} {error:?}", text(&df.stdout));
    let wav = wavs(&disk).pop().unwrap();
    let v = capstan_testbed::verify(&wav, 0, 0).unwrap();
    assert!(v.frames > 0 && v.torn == 0, "{v:?}");
    // The report tells the truth about what is on disk.
    let OscType::String(msg) = &error[2] else { panic!("{error:?}") };
    let saved: u64 = msg.rsplit("; ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(saved, v.frames, "{msg}");
    src.stop();
    assert_eq!(v.mismatched, 0, "{v:?}");
    // Space comes back: the daemon returns to idle by itself.
    std::fs::remove_file(disk.join("ballast")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
        if st[1] == OscType::String("idle".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(d);
    umount(&disk);
    eprintln!("ENOSPC: {} frames kept, sample-exact prefix", v.frames);
}

#[test]
fn every_take_has_a_complete_manifest() {
    let server = JackServer::start(256);
    let src = server.source(3);
    let dir = tempdir();
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "-q", "--json", "--connect", "src:out_*", "--duration", "0.5", "--dir"])
            .arg(dir.path());
        c
    });
    src.stop();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&out);
    let wav = &files(&s)[0];
    let m = manifest_of(wav);
    assert_eq!(m.state, capstan::manifest::TakeState::Complete);
    assert_eq!(m.frames, 24_000);
    assert_eq!(m.first_frame_time, s["take"]["first_frame_time"].as_u64());
    assert_eq!(m.files, vec![wav.file_name().unwrap().to_string_lossy().into_owned()]);
    assert_eq!(m.ports.len(), 3);
    assert_eq!(m.ports[1].name, "in_2");
    assert_eq!(m.ports[1].sources, vec!["src:out_2".to_string()]);
    assert_eq!(m.sample_rate, 48000);
    // The take's real-time numbers travel with it: at least the take's own
    // cycles (0.5 s = 93.75 periods of 256), and the same maximum as the
    // summary printed (the only take of this client).
    let rt = m.rt.expect("rt stats in the manifest");
    assert!(rt.callback.cycles >= 93, "{rt:?}");
    assert!(rt.callback.p50_us > 0.0 && rt.callback.p50_us <= rt.callback.p99_us, "{rt:?}");
    assert!(rt.callback.max_us <= s["callback"]["max_us"].as_f64().unwrap(), "{rt:?}");
    assert!(rt.disk.write_batches > 0, "{rt:?}");
    assert!(rt.ring_high_water_seconds > 0.0 && rt.ring_high_water_seconds < 4.0, "{rt:?}");
    assert_eq!(rt.overflow_frames, 0);
}

#[test]
fn prune_archives_and_leaves_foreign_files_alone() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let arch = tempdir();
    for _ in 0..3 {
        let out = run({
            let mut c = server.capstan();
            c.args(["record", "-q", "--connect", "src:out_*", "--duration", "0.2", "--dir"]).arg(dir.path());
            c
        });
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    src.stop();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let takes = wavs(dir.path());
    assert_eq!(takes.len(), 3);
    let prune = |extra: &[&str]| {
        let mut c = Command::new(CAPSTAN);
        c.arg("prune").arg(dir.path()).args(["--keep-last", "1", "--archive"]).arg(arch.path()).args(extra);
        run(c)
    };
    let out = prune(&["--dry-run"]);
    assert_eq!(text(&out.stdout).matches("would move").count(), 2, "{}", text(&out.stdout));
    assert_eq!(wavs(dir.path()).len(), 3);
    // (A crash between copy and delete is tested in retention's unit
    // tests, through the copy's own half: both copies, and the next run
    // finishes.)
    let out = prune(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(wavs(dir.path()), vec![takes[2].clone()]);
    assert_eq!(wavs(arch.path()).len(), 2);
    // Each take's picture went with it.
    let pngs = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
            .count()
    };
    assert_eq!((pngs(dir.path()), pngs(arch.path())), (1, 2));
    for a in wavs(arch.path()) {
        assert!(capstan_testbed::verify(&a, 0, 0).unwrap().torn == 0);
    }
    assert_eq!(std::fs::read(dir.path().join("notes.txt")).unwrap(), b"mine");
}

/// `capstan recover` and `capstan prune` never work under a running
/// recorder: they refuse, naming its pid, and change nothing, whether they
/// are pointed at its directory or at the dated subdirectory where it
/// writes (recover once rewrote the live take there and left a second lock
/// file behind).
#[test]
fn recover_and_prune_refuse_a_directory_a_recorder_holds() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*", "--dir-layout", "%Y", "--utc"]);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(600));
    let year = dir.path().join(chrono::Utc::now().format("%Y").to_string());
    let wav = wavs(&year).pop().unwrap();
    let pid = d.child.as_ref().unwrap().id();
    for target in [dir.path(), year.as_path()] {
        for args in [vec!["recover"], vec!["prune", "--keep-last", "0"]] {
            let out = run({
                let mut c = Command::new(CAPSTAN);
                c.args(&args).arg(target);
                c
            });
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stdout));
            assert!(text(&out.stderr).contains(&format!("pid {pid}")), "{args:?}: {}", text(&out.stderr));
            assert_eq!(manifest_of(&wav).state, capstan::manifest::TakeState::Recording);
        }
    }
    assert!(!year.join(".capstan.lock").exists(), "no lock file left in the subdirectory");
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
    assert_eq!(manifest_of(&wav).state, capstan::manifest::TakeState::Complete);
    assert!(wav.exists());
}

/// A start refused because the disk is full leaves nothing behind: no
/// 0-byte file, no manifest (`record` and the daemon).
#[test]
fn a_start_refused_on_a_full_disk_leaves_nothing() {
    let root = tempdir();
    let disk = root.path().join("full");
    if !mount_tmpfs(&disk, "256k") {
        return;
    }
    let server = JackServer::start(256);
    let _src = server.source(2);
    // The lock file first (it belongs to the directory, not to a take),
    // then ballast until the volume is full.
    drop(capstan::lock::acquire(&disk).unwrap());
    let mut ballast = std::fs::File::create(disk.join("ballast")).unwrap();
    while std::io::Write::write_all(&mut ballast, &[0u8; 4096]).is_ok() {}
    drop(ballast);
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(&disk)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    for _ in 0..3 {
        let out = run({
            let mut c = server.capstan();
            c.args(["record", "-q", "--connect", "src:out_*", "--duration", "1", "--dir"]).arg(&disk);
            c
        });
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(listing(), before, "record left something: {}", text(&out.stderr));
    }
    let d = Daemon::start(&server, &disk, &["--connect", "src:out_*", "--min-minutes", "0"]);
    for _ in 0..3 {
        let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
        assert_eq!(addr, "/error", "{args:?}");
        assert_eq!(listing(), before, "the daemon left something: {args:?}");
    }
    drop(d);
    umount(&disk);
}

/// A start that fails after the take's files exist (the disk fills before
/// the first frame: the manifest's update has no room) is answered with an
/// error at once, never with a success and frame 0 after a 3 s wait.
#[test]
fn a_start_that_fails_is_never_answered_with_success() {
    let root = tempdir();
    let disk = root.path().join("tight");
    if !mount_tmpfs(&disk, "1m") {
        return;
    }
    let server = JackServer::start(256);
    let _src = server.source(2);
    let d = Daemon::start(
        &server,
        &disk,
        &[
            "--connect",
            "src:out_*",
            "--min-minutes",
            "0",
            "--min-free-fraction",
            "0",
            "--disk-margin-seconds",
            "0",
        ],
    );
    // Leave two pages: one for the .wav header, one for the manifest; none
    // for the manifest's atomic update at the first frame.
    let st = nix::sys::statvfs::statvfs(&disk).unwrap();
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    std::fs::write(disk.join("ballast"), vec![0u8; (free - 2 * 4096) as usize]).unwrap();
    let t = Instant::now();
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    let took = t.elapsed();
    assert_eq!(addr, "/error", "a failed start answered {args:?}");
    assert!(matches!(args[1], OscType::Int(9) | OscType::Int(11)), "{args:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Not recording: in ERROR, or (a disk-full error) back to idle by itself
    // once a take fits again.
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    assert!(st[1] == OscType::String("error".into()) || st[1] == OscType::String("idle".into()), "{st:?}");
    drop(d);
    umount(&disk);
}

/// The take directory is deleted mid-take: within a checkpoint or two the
/// daemon is in ERROR with a reason that says so, and never reports frames
/// saved that are not on disk.
#[test]
fn a_deleted_take_directory_is_an_error_not_a_recording() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let root = tempdir();
    let dir = root.path().join("takes");
    std::fs::create_dir(&dir).unwrap();
    let d = Daemon::start(&server, &dir, &["--connect", "src:out_*"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&capstan::control::osc::encode("/record/subscribe", vec![]), ("127.0.0.1", d.port)).unwrap();
    assert_eq!(reply_on(&sock, Duration::from_secs(3)).unwrap().0, "/reply");
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(700));
    std::fs::remove_dir_all(&dir).unwrap();
    let error = push_on(&sock, "/recording/error", Duration::from_secs(3))
        .expect("an error within 3 s of the directory's deletion");
    let OscType::String(text) = &error[2] else { panic!("{error:?}") };
    assert!(text.contains("deleted"), "{text}");
    assert!(text.contains("; 0 frames saved"), "{text}");
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    assert_eq!(st[1], OscType::String("error".into()), "{st:?}");
}

/// A disk that never comes back (the daemon's disk thread stopped with
/// ptrace, as in a write to a dead mount) does not keep SIGTERM from ending
/// the daemon: it gives up on the thread within 2 s and says so, and
/// `capstan recover` finalizes what the last checkpoint made durable: a
/// gap-free prefix, every frame at its position.
#[test]
fn sigterm_ends_the_daemon_even_when_its_disk_is_stuck() {
    if !root_for("stopping another process's thread (ptrace)") {
        return;
    }
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &["--ports", "2", "--connect", "src:out_*", "--no-http"]);
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let pid = d.child.as_ref().unwrap().id();
    let stopped = StoppedThread::named(pid, "capstan-disk");
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    // The daemon says it gives up on the thread; then the thread may go
    // (the process is ending).
    let log = d.log.clone();
    let said = |w: &str| log.lock().unwrap().contains(w);
    while !said("did not finish within") && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let gave_up = t.elapsed();
    drop(stopped);
    let (status, _) = d.terminate();
    src.stop();
    assert!(said("capstan recover"), "{}", log.lock().unwrap());
    assert!(gave_up < Duration::from_secs(2), "SIGTERM took {gave_up:?}");
    eprintln!("SIGTERM with a stuck disk: gave up after {gave_up:?}, exit {status}");
    let out = run({
        let mut c = Command::new(CAPSTAN);
        c.arg("recover").arg(dir.path());
        c
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wav = wavs(dir.path()).pop().expect("a take file");
    let v = capstan_testbed::verify(&wav, 0, 0).unwrap();
    assert!(v.frames >= 24_000, "the checkpoints before the stall: {v:?}");
    assert_eq!((v.torn, v.mismatched), (0, 0), "{v:?}");
}
