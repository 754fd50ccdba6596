//! `capstan daemon` end to end: OSC from oscsend (a client we did not write),
//! from `capstan ctl` and from raw sockets; state machine, lock, pre-roll.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::harness::*;

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

/// A frame or byte count: `d` (clients like sclang cannot read int64), and
/// a whole number.
fn long(a: &OscType) -> u64 {
    match a {
        OscType::Double(v) if v.fract() == 0.0 && *v >= 0.0 => *v as u64,
        other => panic!("expected a whole float64, got {other:?}"),
    }
}

fn ctl(port: u16, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(CAPSTAN);
    c.args(["ctl", "--osc", &format!("127.0.0.1:{port}")]).args(args);
    run(c)
}

#[test]
fn takes_by_oscsend_and_ctl_are_sample_exact() {
    let server = JackServer::start(256);
    let src = server.source(4);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "4", "--connect", "src:out_*"]);
    // oscsend: a real OSC client.
    let st = Command::new("oscsend")
        .args(["localhost", &d.port.to_string(), "/record/start", "ss", "take-a", "kick-mic.wav"])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(800));
    let out = ctl(d.port, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("recording take-a"), "{}", text(&out.stdout));
    let out = ctl(d.port, &["list"]);
    assert!(text(&out.stdout).contains("kick-mic.wav"), "{}", text(&out.stdout));
    let out = ctl(d.port, &["stop", "take-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The stop names the take's picture too.
    assert!(text(&out.stdout).contains("kick-mic.png"), "{}", text(&out.stdout));
    // ctl start/stop; for people, frame and byte counts print as integers;
    // --json names every value and gives counts as exact integers.
    let out = ctl(d.port, &["start"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let out = ctl(d.port, &["status"]);
    let line = text(&out.stdout);
    let bytes = line.split_whitespace().nth(3).unwrap();
    assert!(bytes.parse::<u64>().is_ok_and(|b| b > 0), "bytes as an integer: {line}");
    let out = ctl(d.port, &["--json", "stop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stop: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = stop["frames"].as_u64().unwrap_or_else(|| panic!("frames not an exact integer: {stop}"));
    let file = std::path::PathBuf::from(stop["files"].as_str().unwrap());
    assert_eq!(capstan::wav::read_info(&file).unwrap().frames(), frames, "{stop}");
    assert_eq!(stop["seconds"].as_f64(), Some(frames as f64 / 48_000.0));
    let picture = std::path::PathBuf::from(stop["picture"].as_str().unwrap());
    assert_eq!(picture, file.with_extension("png"), "{stop}");
    assert!(std::fs::read(&picture).unwrap().starts_with(b"\x89PNG"), "{}", picture.display());
    // Stop when idle: a clear error, exit 1.
    let out = ctl(d.port, &["stop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no take is running"), "{}", text(&out.stderr));
    let (_, truth) = src.stop_truth();
    let files = wavs(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("kick-mic.wav")));
    for f in &files {
        let v = assert_take(f, Some(&truth));
        assert!(v.frames > 10_000, "{v:?}");
    }
}

#[test]
fn a_hundred_concurrent_starts_make_exactly_one_take() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &[]);
    let port = d.port;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let msg = capstan::control::osc::encode("/record/start", vec![]);
                for _ in 0..25 {
                    sock.send_to(&msg, ("127.0.0.1", port)).unwrap();
                }
                (0..25).filter_map(|_| reply_on(&sock, Duration::from_secs(5))).collect::<Vec<_>>()
            })
        })
        .collect();
    let replies: Vec<(String, Vec<OscType>)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(replies.len(), 100);
    let ok = replies.iter().filter(|r| r.0 == "/reply").count();
    assert_eq!(ok, 1, "{replies:?}");
    let busy = replies.iter().filter(|r| r.0 == "/error" && r.1[1] == OscType::Int(3)).count();
    assert_eq!(busy, 99);
    // Refused as busy: at once while 16 commands wait for the start, and
    // the waiting ones once it is recording.
    for r in replies.iter().filter(|r| r.0 == "/error") {
        let OscType::String(msg) = &r.1[2] else { panic!() };
        assert!(msg.contains("already recording") || msg.contains("wait already"), "{msg}");
    }
    assert!(osc(port, "/record/stop", vec![]).unwrap().0 == "/reply");
    assert_eq!(wavs(dir.path()).len(), 1);
}

#[test]
fn garbage_and_bad_arguments_get_errors_and_change_nothing() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [&b"garbage\0\0"[..], &[0u8; 1][..], &[0xffu8; 9000][..], b"/record/start\0\0\0,x\0\0"] {
        sock.send_to(junk, ("127.0.0.1", d.port)).unwrap();
        let (addr, args) = reply_on(&sock, Duration::from_secs(3)).expect("an error reply");
        assert_eq!(addr, "/error");
        assert_eq!(args[1], OscType::Int(8), "{args:?}");
    }
    let (addr, args) = osc(d.port, "/record/start", vec![OscType::Float(1.0)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(1)));
    let (addr, args) = osc(d.port, "/record/bogus", vec![]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(2)));
    for bad in ["../escape.wav", "/etc/x.wav", "a/b.wav"] {
        let (addr, args) = osc(d.port, "/record/start", vec![s("t"), s(bad)]).unwrap();
        assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(6)), "{bad}");
    }
    assert!(wavs(dir.path()).is_empty());
    assert!(!dir.path().parent().unwrap().join("escape.wav").exists());
    // Still alive and idle.
    let (addr, args) = osc(d.port, "/record/status", vec![]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/reply", &s("idle")));
}

#[test]
fn preflight_refuses_a_disk_that_is_too_small_or_read_only() {
    if !root_for("mounting a tmpfs") {
        return;
    }
    let server = JackServer::start(256);
    let dir = tempdir();
    let small = dir.path().join("small");
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    let mount = |opts: &str, at: &std::path::Path| {
        assert!(Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "capstan-test"])
            .arg(at)
            .status()
            .unwrap()
            .success())
    };
    mount("size=2m", &small);
    let umount = |at: &std::path::Path| {
        let _ = Command::new("umount").arg(at).status();
    };
    let d = Daemon::start(&server, &small, &["--min-minutes", "1"]);
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    drop(d);
    let lock_only: Vec<_> = std::fs::read_dir(&small).unwrap().flatten().map(|e| e.file_name()).collect();
    umount(&small);
    assert_eq!(addr, "/error");
    assert_eq!(args[1], OscType::Int(5), "{args:?}");
    assert!(matches!(&args[2], OscType::String(m) if m.contains("not enough free space")), "{args:?}");
    assert_eq!(lock_only, vec![std::ffi::OsString::from(".capstan.lock")]);

    // Read-only: the daemon cannot even take its lock there, so it refuses
    // to start, with a message.
    mount("ro,size=1m", &ro);
    let out = run({
        let mut c = server.capstan();
        c.args(["daemon", "--osc-port", &free_port().to_string(), "--dir"]).arg(&ro);
        c
    });
    umount(&ro);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Read-only"), "{}", text(&out.stderr));
}

#[test]
fn second_daemon_on_a_directory_is_refused_and_a_killed_one_does_not_block() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let mut first = Daemon::start(&server, dir.path(), &[]);
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    let out = run({
        let mut c = server.capstan();
        c.args(["daemon", "--name", "second", "--osc-port", &free_port().to_string(), "--dir"])
            .arg(dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(1));
    let pid = first.child.as_ref().unwrap().id();
    assert!(text(&out.stderr).contains(&format!("pid {pid}")), "{}", text(&out.stderr));
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after);
    // record is refused the same way.
    let out = run({
        let mut c = server.capstan();
        c.args(["record", "--name", "third", "--duration", "1", "--dir"]).arg(dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already recording into"), "{}", text(&out.stderr));
    // kill -9 mid-take; the stale lock file does not block a new daemon.
    assert_eq!(osc(first.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(1500));
    let mut c = first.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let again = Daemon::start(&server, dir.path(), &["--name", "again"]);
    assert_eq!(osc(again.port, "/record/status", vec![]).unwrap().1[1], s("idle"));
    // The killed take is readable up to its last checkpoint.
    let f = &wavs(dir.path())[0];
    assert!(capstan::wav::read_info(f).unwrap().frames() > 0);
}

#[test]
fn preroll_and_rotation_are_gap_free_and_sample_exact() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*", "--preroll", "1.5"]);
    std::thread::sleep(Duration::from_millis(2500)); // let the pre-roll fill
    let (addr, a) = osc(d.port, "/record/start", vec![s("one")]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    let first = long(&a[2]);
    std::thread::sleep(Duration::from_millis(700));
    let (addr, r) = osc(d.port, "/record/rotate", vec![s("two")]).unwrap();
    assert_eq!(addr, "/reply", "{r:?}");
    let (one_frames, two_first) = (long(&r[2]), long(&r[4]));
    assert_eq!(two_first, first + one_frames, "take two must start on the frame after take one");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
    let (_, truth) = src.stop_truth();
    let files = wavs(dir.path());
    assert_eq!(files.len(), 2);
    let one = files.iter().find(|f| f.to_string_lossy().contains("_one_")).unwrap();
    let two = files.iter().find(|f| f.to_string_lossy().contains("_two_")).unwrap();
    let v1 = assert_take(one, Some(&truth));
    let v2 = assert_take(two, Some(&truth));
    // Pre-roll: 1.5 s before the start command, plus the 0.7 s recorded.
    assert!(v1.frames >= 72_000 + 30_000, "{v1:?}");
    assert_eq!(v1.first_frame_time, first);
    assert_eq!(v2.first_frame_time, first + v1.frames);
}

#[test]
fn sigterm_finalizes_a_take_within_2_s_and_sighup_does_not_stop_it() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
    assert_eq!(st[1], s("recording"));
    let (status, took) = d.terminate();
    let (_, truth) = src.stop_truth();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let f = &wavs(dir.path())[0];
    let v = assert_take(f, Some(&truth));
    assert!(v.frames >= 40_000, "{v:?}");
}

#[test]
fn jack_dying_enters_error_and_reset_is_refused_until_jack_is_back() {
    let mut server = JackServer::start_named("capstan-test-daemon-killed".into(), 256);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &[]);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(700));
    server.kill(nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
        if st[1] == s("error") {
            break;
        }
        assert!(Instant::now() < deadline, "no ERROR after JACK died: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (addr, args) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(7)));
    let (addr, args) = osc(d.port, "/record/reset", vec![]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(10)));
    // The take is finalized.
    let f = &wavs(dir.path())[0];
    assert!(capstan::wav::read_info(f).unwrap().frames() >= 20_000);
    // JACK comes back (same name): capstan returns to idle by itself.
    let _server2 = JackServer::start_named("capstan-test-daemon-killed".into(), 256);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, st) = osc(d.port, "/record/status", vec![]).unwrap();
        if st[1] == s("idle") {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
}

#[test]
fn settings_over_osc_apply_between_takes_and_keep_the_patching() {
    let server = JackServer::start(256);
    let src = server.source(3);
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "2", "--name", "cfg", "--connect", "src:out_1", "--connect", "src:out_2"],
    );
    let (addr, args) = osc(d.port, "/config/sample_format", vec![s("s24")]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/reply", &s("s24")));
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    // Settings that re-create the inputs wait for the take to end.
    let (addr, args) = osc(d.port, "/config/ports", vec![OscType::Int(3)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(3)), "{args:?}");
    let (addr, args) = osc(d.port, "/config/preroll", vec![OscType::Float(1.0)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(3)), "{args:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
    let first = wavs(dir.path());
    assert_eq!(capstan::wav::read_info(&first[0]).unwrap().spec.format, capstan::wav::SampleFormat::S24);

    let (addr, args) = osc(d.port, "/config/ports", vec![OscType::Int(3)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/reply", &OscType::Int(3)), "{args:?}");
    let mut c = server.cmd("jack_lsp");
    c.arg("-c");
    let lsp = format!("\n{}", text(&run(c).stdout));
    assert!(lsp.contains("cfg:in_3"), "{lsp}");
    // in_1 and in_2 are still patched to the source after the re-creation.
    let after = |port: &str| {
        let rest = lsp.split(&format!("\n{port}\n")).nth(1).unwrap_or("");
        // Connections are the indented lines under a port.
        rest.lines().next().filter(|l| l.starts_with(char::is_whitespace)).unwrap_or("").trim().to_string()
    };
    assert_eq!(after("cfg:in_1"), "src:out_1", "{lsp}");
    assert_eq!(after("cfg:in_2"), "src:out_2", "{lsp}");
    let (_, args) = osc(d.port, "/config/get", vec![]).unwrap();
    let at = args.iter().position(|a| *a == s("ports")).unwrap();
    assert_eq!(args[at + 1], OscType::Int(3));
    assert!(args.contains(&s("s24")));
    src.stop();
}

/// Subscriptions are explicit: 70 one-shot queries leave the table empty.
/// 64 clients that subscribe and go away cannot keep the table full: the
/// next subscriber drops the one that subscribed least recently, and gets
/// the pushes of a take (today's code refused it with code 13 forever).
#[test]
fn subscriptions_are_explicit_and_a_full_table_drops_the_oldest() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &[]);
    for _ in 0..70 {
        assert!(ctl(d.port, &["status"]).status.success());
    }
    let subscribe = |sock: &std::net::UdpSocket| {
        let m = capstan::control::osc::encode("/record/subscribe", vec![]);
        sock.send_to(&m, ("127.0.0.1", d.port)).unwrap();
        reply_on(sock, Duration::from_secs(3)).unwrap()
    };
    for i in 0..64 {
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(subscribe(&gone).0, "/reply", "subscriber {i}");
    }
    let socks: Vec<std::net::UdpSocket> =
        (0..65).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for (i, sock) in socks.iter().enumerate() {
        let (addr, args) = subscribe(sock);
        assert_eq!(addr, "/reply", "subscriber {i}: {args:?}");
    }
    // The newest subscriber gets the pushes of a take; the first of these
    // 65 was dropped for the 65th.
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    assert!(push_on(&socks[0], "/recording/state", Duration::from_millis(500)).is_none());
    let sock = &socks[64];
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut pushed = false;
    while Instant::now() < deadline && !pushed {
        if let Ok(n) = sock.recv(&mut buf) {
            pushed = buf[..n].starts_with(b"/recording/state");
        }
    }
    assert!(pushed, "no /recording/state push to a subscriber");
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
}

/// A bundle timetagged before 1970 (0.0 or 1.0) killed the daemon mid-take
/// (rosc's conversion panicked). Now such timetags mean "now": the take
/// goes on, and 2,000 random bundles with random timetags (status and
/// markers, nested) change nothing but markers. Timetags over 24 h ahead are
/// refused; 64 waiting commands fill the table, and /record/reset empties
/// it, answering each with code 14.
#[test]
fn hostile_timetags_neither_crash_nor_fill_the_timed_table() {
    use rosc::{OscBundle, OscMessage, OscPacket, OscTime};
    let server = JackServer::start(256);
    let dir = tempdir();
    let src = server.source(2);
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    let sock = free_socket();
    let bundle = |seconds: u32, fractional: u32, addr: &str| {
        let m = OscPacket::Message(OscMessage { addr: addr.into(), args: vec![] });
        rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
            timetag: OscTime { seconds, fractional },
            content: vec![m],
        }))
        .unwrap()
    };
    for (sec, frac) in [(0, 0), (1, 0), (0, 1), (2_208_988_799, u32::MAX)] {
        sock.send_to(&bundle(sec, frac, "/record/status"), ("127.0.0.1", d.port)).unwrap();
        let (addr, args) = reply_on(&sock, Duration::from_secs(3)).expect("the daemon answers");
        assert_eq!((addr.as_str(), &args[1]), ("/reply", &s("recording")), "{sec}.{frac}");
    }
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let addr = if i % 2 == 0 { "/record/status" } else { "/record/mark" };
        let inner = OscPacket::Bundle(OscBundle {
            timetag: OscTime { seconds: (x >> 40) as u32, fractional: x as u32 },
            content: vec![OscPacket::Message(OscMessage { addr: addr.into(), args: vec![] })],
        });
        let outer = OscPacket::Bundle(OscBundle {
            timetag: OscTime { seconds: (x >> 8) as u32, fractional: (x >> 20) as u32 },
            content: vec![inner],
        });
        let _ = sock.send_to(&rosc::encoder::encode(&outer).unwrap(), ("127.0.0.1", d.port));
        let _ = reply_on(&sock, Duration::from_millis(200));
    }
    assert_eq!(osc(d.port, "/record/status", vec![]).unwrap().1[1], s("recording"));
    // A day and a bit ahead: refused at once.
    let ntp_now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 2_208_988_800;
    let ahead = |secs: u64| (ntp_now + secs) as u32;
    sock.send_to(&bundle(ahead(25 * 3600), 0, "/record/stop"), ("127.0.0.1", d.port)).unwrap();
    let (addr, args) = reply_on(&sock, Duration::from_secs(3)).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(1)), "{args:?}");
    // 64 stops 23 h ahead fill the table; the 65th is refused.
    let waiting: Vec<std::net::UdpSocket> = (0..64).map(|_| free_socket()).collect();
    for w in &waiting {
        w.send_to(&bundle(ahead(23 * 3600), 0, "/record/stop"), ("127.0.0.1", d.port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    sock.send_to(&bundle(ahead(23 * 3600), 0, "/record/stop"), ("127.0.0.1", d.port)).unwrap();
    let (addr, args) = reply_on(&sock, Duration::from_secs(3)).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(3)), "{args:?}");
    // Reset cancels them all, each answered with code 14; the table is free.
    assert_eq!(osc(d.port, "/record/reset", vec![]).unwrap().0, "/reply");
    for w in &waiting {
        let (addr, args) = reply_on(w, Duration::from_secs(3)).expect("a cancelled command is answered");
        assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(14)), "{args:?}");
    }
    sock.send_to(&bundle(ahead(3600), 0, "/record/stop"), ("127.0.0.1", d.port)).unwrap();
    assert!(reply_on(&sock, Duration::from_millis(500)).is_none(), "scheduled, answered when run");
    assert_eq!(osc(d.port, "/record/reset", vec![]).unwrap().0, "/reply");
    assert_eq!(reply_on(&sock, Duration::from_secs(3)).unwrap().1[1], OscType::Int(14));
    // The take went on all along and ends cleanly, every frame in place.
    let stop = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(stop.0, "/reply", "{stop:?}");
    src.stop();
    let wav = wavs(dir.path()).pop().unwrap();
    assert_take(&wav, None);
    assert_eq!(manifest_of(&wav)["state"], "complete");
}

/// A peer off this machine (192.0.2.1, a test host in a network namespace
/// of this test's own) sending 16 × /config/get in one 336-byte bundle
/// once drew 6,144 bytes: 18 times what it sent. Now 300 such bundles draw
/// at most 3 times their bytes plus the 4 KiB allowance and its refill,
/// and the daemon still answers loopback in full.
#[test]
fn a_remote_peer_draws_at_most_three_times_what_it_sends() {
    let server = JackServer::start(256);
    let dir = tempdir();
    // Everything from here on runs in this thread's own network namespace
    // (the daemon, spawned from it, too); JACK's sockets are files.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (needs root)");
                for args in [&["link", "set", "lo", "up"][..], &["addr", "add", "192.0.2.1/32", "dev", "lo"]]
                {
                    assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
                }
                let d = Daemon::start(&server, dir.path(), &["--osc-bind", "0.0.0.0"]);
                let peer = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
                peer.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                let get =
                    rosc::OscPacket::Message(rosc::OscMessage { addr: "/config/get".into(), args: vec![] });
                let bundle = rosc::encoder::encode(&rosc::OscPacket::Bundle(rosc::OscBundle {
                    timetag: rosc::OscTime { seconds: 0, fractional: 1 },
                    content: vec![get; 16],
                }))
                .unwrap();
                let (mut sent, mut got) = (0usize, 0usize);
                let mut buf = [0u8; 65536];
                let t = Instant::now();
                for _ in 0..300 {
                    sent += peer.send_to(&bundle, ("192.0.2.1", d.port)).unwrap();
                    while let Ok(n) = peer.recv(&mut buf) {
                        got += n;
                    }
                }
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    if let Ok(n) = peer.recv(&mut buf) {
                        got += n;
                    }
                }
                let secs = t.elapsed().as_secs_f64();
                let bound = 3 * sent + 4096 + (1024.0 * secs) as usize;
                eprintln!("a remote peer sent {sent} bytes and drew {got} in {secs:.2} s (bound {bound})");
                assert!(got > 0, "the remote peer is answered");
                assert!(got <= bound, "{got} bytes drawn by {sent} sent");
                // Loopback is not limited: a /config/get is answered in full.
                assert_eq!(osc(d.port, "/config/get", vec![]).unwrap().0, "/reply");
            })
            .join()
            .unwrap()
    });
}

/// 20,000 garbage datagrams: the daemon keeps answering, every error reply
/// is short, and the log grows by a few short lines a second.
#[test]
fn a_garbage_flood_is_answered_briefly_and_logged_at_a_bounded_rate() {
    let server = JackServer::start(256);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut x = 12345u64;
    let mut longest_reply = 0;
    let mut buf = [0u8; 65536];
    let t = Instant::now();
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let junk: Vec<u8> = if i % 2 == 0 {
            // A long path that parses: the error echoes a bounded part.
            capstan::control::osc::encode(&format!("/{}", "z".repeat(4000 + (x % 3000) as usize)), vec![])
        } else {
            (0..(x % 6000) as usize).map(|k| (x >> (k % 56)) as u8).collect()
        };
        let _ = sock.send_to(&junk, ("127.0.0.1", d.port));
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
        while let Ok(n) = sock.recv(&mut buf) {
            longest_reply = longest_reply.max(n);
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    assert!(longest_reply > 0 && longest_reply <= 512, "replies to garbage up to {longest_reply} bytes");
    assert_eq!(osc(d.port, "/record/status", vec![]).unwrap().0, "/reply");
    d.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let log = d.log.lock().unwrap().clone();
    let lines = log.lines().count();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    eprintln!("{lines} log lines in {seconds:.1} s, longest {longest} bytes");
    assert!((lines as f64) < 6.0 * (seconds + 1.0) + 10.0, "{lines} log lines in {seconds:.1} s");
    assert!(longest < 400, "a log line of {longest} bytes");
}

/// A 1,024-input mono take: every reply fits in one datagram, and
/// /record/files pages through all 1,024 paths.
#[test]
fn a_1024_file_take_gets_its_replies_and_pages_its_files() {
    let server = JackServer::start(1024);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "1024", "--layout", "mono"]);
    let (addr, a) = osc(d.port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{a:?}");
    let OscType::String(files) = &a[3] else { panic!("{a:?}") };
    assert!(files.starts_with("1024 files in "), "{files}");
    let mut all = Vec::new();
    while all.len() < 1024 {
        let (addr, p) = osc(d.port, "/record/files", vec![OscType::Int(all.len() as i32)]).unwrap();
        assert_eq!(addr, "/reply", "{p:?}");
        assert_eq!(p[2], OscType::Int(1024));
        let OscType::String(page) = &p[4] else { panic!("{p:?}") };
        assert!(!page.is_empty());
        all.extend(page.split(',').map(str::to_owned));
    }
    assert_eq!(all.len(), 1024);
    assert!(all.iter().all(|f| std::path::Path::new(f).exists()));
    let (addr, r) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{r:?}");
}

/// Sends one OSC message from `sock` (its reply comes back to it).
fn send_on(sock: &std::net::UdpSocket, port: u16, path: &str, args: Vec<OscType>) {
    let msg = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage { addr: path.into(), args }))
        .unwrap();
    sock.send_to(&msg, ("127.0.0.1", port)).unwrap();
}

#[test]
fn the_control_loop_answers_while_a_stop_waits_for_a_stalled_jack() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    assert_eq!(osc(d.port, "/record/start", vec![s("one")]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(500));
    // JACK freezes: the stop's frame cannot arrive (the daemon takes what is
    // there after 1.5 s). Meanwhile the loop must answer queries at once,
    // and a start sent after the stop must run after it, not be refused.
    server.signal(nix::sys::signal::Signal::SIGSTOP);
    let (stopper, asker, starter) = (free_socket(), free_socket(), free_socket());
    send_on(&stopper, d.port, "/record/stop", vec![]);
    send_on(&asker, d.port, "/record/status", vec![]);
    send_on(&starter, d.port, "/record/start", vec![s("two")]);
    let status = reply_on(&asker, Duration::from_secs(5));
    let early_stop = reply_on(&stopper, Duration::from_millis(1));
    server.signal(nix::sys::signal::Signal::SIGCONT);
    let (addr, st) = status.expect("status answered");
    assert_eq!((addr.as_str(), &st[1], &st[2]), ("/reply", &s("stopping"), &s("one")), "{st:?}");
    assert!(early_stop.is_none(), "the stop was answered before the status: {early_stop:?}");
    let (addr, stop) = reply_on(&stopper, Duration::from_secs(5)).expect("stop answered");
    assert_eq!((addr.as_str(), &stop[1]), ("/reply", &s("one")), "{stop:?}");
    let (addr, start) = reply_on(&starter, Duration::from_secs(5)).expect("queued start answered");
    assert_eq!((addr.as_str(), &start[1]), ("/reply", &s("two")), "{start:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/reply");
    let (_, truth) = src.stop_truth();
    let files = wavs(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let v = assert_take(f, Some(&truth));
        assert!(v.frames > 0, "{f:?}: {v:?}");
    }
}

fn free_socket() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap()
}

#[test]
fn a_bad_setting_is_refused_alike_from_the_command_line_and_over_osc() {
    let server = JackServer::start(256);
    let dir = tempdir();
    // The daemon never checked --buffer-seconds (record did, with other bounds).
    let daemon = |args: &[&str]| {
        let mut c = server.capstan();
        c.arg("daemon").args(args).arg("--dir").arg(dir.path());
        run(c)
    };
    let out = daemon(&["--buffer-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The same sentence, naming what the user typed: the flag here, the
    // setting's name over OSC and in capstan.json.
    assert!(text(&out.stderr).contains("--buffer-seconds must be between 0.5 and 600, got 0.1"));
    let out = daemon(&["--preroll", "601"]);
    let flag = text(&out.stderr);
    assert!(flag.contains("--preroll must be between 0 and 600, got 601"), "{flag}");
    let d = Daemon::start(&server, dir.path(), &[]);
    let (addr, args) = osc(d.port, "/config/preroll", vec![OscType::Int(601)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(12)), "{args:?}");
    assert_eq!(args[2], s("preroll must be between 0 and 600, got 601"));
    let (addr, args) = osc(d.port, "/config/ports", vec![OscType::Int(1025)]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &OscType::Int(12)), "{args:?}");
    let (_, cfg) = osc(d.port, "/config/get", vec![]).unwrap();
    assert!(cfg.windows(2).any(|w| w[0] == s("preroll") && w[1] == OscType::Double(0.0)), "{cfg:?}");
}

/// A stderr that nobody reads (a session manager's pipe it stopped
/// draining) never stops the daemon: 600 markers log about 200 KB, three
/// times what the pipe holds, and the daemon still answers, saves every
/// marker and quits on SIGTERM (the log drops what it cannot write). It
/// stopped answering once the pipe was full.
#[test]
fn a_stderr_nobody_reads_never_stops_the_daemon() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let port = free_port();
    // Killed if the test fails (its stderr would never be read again).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        server
            .capstan()
            .args([
                "daemon",
                "--osc-port",
                &port.to_string(),
                "--no-http",
                "--ports",
                "2",
                "--connect",
                "src:out_*",
            ])
            .args(["--min-minutes", "0.1", "--min-free-fraction", "0", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while osc(port, "/record/status", vec![]).is_none() {
        assert!(Instant::now() < deadline, "the daemon did not answer");
    }
    assert_eq!(osc(port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(300));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let label = "x".repeat(190);
    for i in 0..600 {
        let m = capstan::control::osc::encode("/record/mark", vec![OscType::String(format!("{label}{i}"))]);
        sock.send_to(&m, ("127.0.0.1", port)).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(osc(port, "/record/status", vec![]).is_some(), "the daemon stopped answering");
    let (addr, args) = osc(port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while child.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "SIGTERM did not end the daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
    src.stop();
    let wav = wavs(dir.path()).pop().expect("a take");
    let markers = manifest_of(&wav)["markers"].as_array().map_or(0, |m| m.len());
    assert_eq!(markers, 600, "every marker saved");
}

/// A burst of OSC (a sequencer's marks, a script's loop) that arrives while
/// the daemon cannot run (a busy machine; here SIGSTOP for 0.5 s) waits in
/// the socket: all 1,000 marks of 200 bytes are saved. The system's
/// default receive buffer (208 KiB) held about 250 of them.
#[test]
fn a_burst_of_osc_while_the_daemon_is_frozen_is_not_lost() {
    use nix::sys::signal::{kill, Signal};
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &["--ports", "2", "--connect", "src:out_*", "--no-http"]);
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    let pid = nix::unistd::Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let label = "x".repeat(190);
    kill(pid, Signal::SIGSTOP).unwrap();
    for i in 0..1000 {
        let m = capstan::control::osc::encode("/record/mark", vec![OscType::String(format!("{label}{i}"))]);
        sock.send_to(&m, ("127.0.0.1", d.port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    kill(pid, Signal::SIGCONT).unwrap();
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    src.stop();
    d.terminate();
    let wav = wavs(dir.path()).pop().expect("a take");
    let markers = manifest_of(&wav)["markers"].as_array().map_or(0, |m| m.len());
    let log = d.log.lock().unwrap().clone();
    let notes: Vec<&str> = log.lines().filter(|l| !l.contains("marker \"")).collect();
    assert_eq!(markers, 1000, "every mark of the burst saved: {notes:#?}");
}
