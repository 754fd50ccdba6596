//! OSC clients our users run, decoding what capstan sends: SuperCollider's
//! sclang (running docs/examples/capstan.scd) and liblo (oscsend encodes the
//! commands, oscdump decodes the replies and pushes and prints their types).

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// The value of a transcript field `Class=value`.
fn value(field: &str) -> (&str, &str) {
    field.split_once('=').unwrap_or_else(|| panic!("bad field {field:?}"))
}

fn whole(field: &str) -> u64 {
    let (class, v) = value(field);
    assert_eq!(class, "Float", "{field}");
    let f: f64 = v.parse().unwrap();
    assert_eq!(f.fract(), 0.0, "{field}");
    f as u64
}

fn sym(field: &str) -> &str {
    let (class, v) = value(field);
    assert_eq!(class, "Symbol", "{field}");
    v.trim_matches('\'')
}

fn take_file(dir: &Path, id: &str) -> PathBuf {
    wavs(dir).into_iter().find(|p| p.to_string_lossy().contains(&format!("_{id}_"))).unwrap()
}

/// Runs `script` in headless sclang (as root, without a display) with
/// `env`, for at most 60 s.
fn sclang(script: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("sclang");
    c.arg("-u").arg(free_port().to_string()).arg(script);
    c.env("QT_QPA_PLATFORM", "offscreen").env("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox");
    c.envs(env.iter().copied()).stdin(Stdio::null());
    wait_output(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sclang (apt-get install --no-install-recommends supercollider-language)"),
        Duration::from_secs(60),
    )
}

/// docs/examples/capstan.scd, run headless by sclang against a daemon:
/// subscribe, start on a TempoClock beat with an integer take id, status,
/// rotate, stop. Every value decodes (no `Char`, sclang's sign of a type it
/// cannot read), and the numbers agree with the files.
#[test]
fn sclang_runs_the_example_and_decodes_every_value() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    let transcript = dir.path().join("sclang.txt");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/capstan.scd");
    let out = sclang(
        &example,
        &[("CAPSTAN_PORT", &d.port.to_string()), ("CAPSTAN_TRANSCRIPT", transcript.to_str().unwrap())],
    );
    assert!(out.status.success(), "sclang: {}\n{}", text(&out.stdout), text(&out.stderr));
    let (_, truth) = src.stop_truth();
    let lines = std::fs::read_to_string(&transcript).unwrap();
    eprintln!("sclang transcript:\n{lines}");
    assert!(!lines.contains("Char="), "sclang could not read a type capstan sent:\n{lines}");
    let reply = |cmd: &str| -> Vec<String> {
        let l = lines
            .lines()
            .find(|l| l.starts_with(&format!("Symbol='/reply' Symbol='{cmd}'")))
            .unwrap_or_else(|| panic!("no reply to {cmd}:\n{lines}"));
        l.split(' ').skip(2).map(str::to_owned).collect()
    };
    // start: the integer id 42 comes back as the take id; the first frame
    // is the take's first frame time.
    let start = reply("/record/start");
    assert_eq!(sym(&start[0]), "42");
    let first = whole(&start[1]);
    let one = take_file(dir.path(), "42");
    let v1 = assert_take(&one, Some(&truth));
    assert_eq!(v1.first_frame_time, first);
    // status: 16 values, xruns an Integer, counts whole, the momentary
    // loudness a Float (the test ramp is a 0.73 Hz sawtooth, which the
    // K-weighting mostly filters out: very low, but measured).
    let status = reply("/record/status");
    assert_eq!(status.len(), 16, "{status:?}");
    assert_eq!(status[12], "Integer=0", "not armed: no trigger");
    assert_eq!(value(&status[13]).0, "Integer", "the web page's port");
    let (class, fill) = value(&status[14]);
    assert_eq!(class, "Float", "how full the rings are");
    assert!(fill.parse::<f64>().is_ok_and(|f| (0.0..50.0).contains(&f)), "{status:?}");
    let (class, behind) = value(&status[15]);
    assert_eq!(class, "Float", "how far behind the disk is");
    assert!(behind.parse::<f64>().is_ok_and(|s| (0.0..1.0).contains(&s)), "{status:?}");
    let (class, lufs) = value(&status[11]);
    assert_eq!(class, "Float");
    assert!(lufs.parse::<f64>().is_ok_and(|l| l < 0.0), "{status:?}");
    assert_eq!(sym(&status[0]), "recording");
    assert!(whole(&status[3]) > 0);
    assert_eq!(value(&status[5]).0, "Integer");
    // rotate: take 42's frames, and 43 starts on the very next frame.
    let rotate = reply("/record/rotate");
    assert_eq!(whole(&rotate[1]), v1.frames);
    let two = take_file(dir.path(), "43");
    let v2 = assert_take(&two, Some(&truth));
    assert_eq!(whole(&rotate[3]), v2.first_frame_time);
    assert_eq!(v2.first_frame_time, first + v1.frames);
    // stop: frames = seconds × rate.
    let stop = reply("/record/stop");
    let frames = whole(&stop[1]);
    assert_eq!(frames, v2.frames);
    let (class, secs) = value(&stop[2]);
    assert_eq!(class, "Float");
    assert_eq!((secs.parse::<f64>().unwrap() * 48_000.0).round() as u64, frames, "{stop:?}");
    // Pushes decoded too.
    assert!(lines.contains("Symbol='/recording/state' Symbol='42' Symbol='recording' Float="), "{lines}");
    assert!(lines.contains("Symbol='/recording/progress'"), "{lines}");
}

/// The SuperCollider block of docs/osc-api.md, run as written by headless
/// sclang (only the port changed): the reply to the stop and the state push
/// arrive (the push needed a subscribe the block once lacked).
#[test]
fn the_documented_supercollider_block_runs_as_written() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/osc-api.md")).unwrap();
    let block =
        doc.split("```supercollider\n").nth(1).and_then(|b| b.split("```").next()).expect("the block");
    let code = block.replace("7770", &d.port.to_string());
    let file = dir.path().join("block.scd");
    std::fs::write(&file, format!("{code}\nfork {{ 3.wait; 0.exit }};\n")).unwrap();
    let out = sclang(&file, &[]);
    let said = text(&out.stdout);
    assert!(said.contains("[ /reply, /record/stop, 1, "), "{said}\n{}", text(&out.stderr));
    assert!(said.contains("[ /recording/state, 1, recording, "), "{said}");
}

/// liblo: oscsend encodes each command; capstan's reply datagrams are handed
/// to oscdump byte for byte, and oscdump, subscribed, also gets the pushes.
/// It prints each message's type tags: only `s`, `i` and `d`, as documented.
#[test]
fn oscdump_reads_every_reply_and_push_with_the_documented_types() {
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    // Subscribe oscdump's port, then let oscdump have it.
    let dump_port = {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        sock.send_to(&oscsend(&["/record/subscribe"]), ("127.0.0.1", d.port)).unwrap();
        assert!(reply_on(&sock, Duration::from_secs(3)).is_some());
        port
    };
    let mut dump = Command::new("oscdump")
        .args(["-L", &dump_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("oscdump (apt-get install liblo-tools)");
    std::thread::sleep(Duration::from_millis(300));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 65536];
    let mut ask = |cmd: &[&str]| {
        sock.send_to(&oscsend(cmd), ("127.0.0.1", d.port)).unwrap();
        // Forward the reply datagram, as it came, to oscdump.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            assert!(std::time::Instant::now() < deadline, "no reply to {cmd:?}");
            let Ok(n) = sock.recv(&mut buf) else { continue };
            if buf[..n].starts_with(b"/reply") || buf[..n].starts_with(b"/error") {
                sock.send_to(&buf[..n], ("127.0.0.1", dump_port)).unwrap();
                return;
            }
        }
    };
    ask(&["/record/start", "i", "7"]);
    std::thread::sleep(Duration::from_millis(1200));
    ask(&["/record/status"]);
    ask(&["/record/list"]);
    ask(&["/record/rotate", "s", "eight"]);
    std::thread::sleep(Duration::from_millis(300));
    ask(&["/record/stop"]);
    ask(&["/record/stop"]); // an error: nothing runs
    ask(&["/config/ports", "i", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = BufReader::new(dump.stdout.take().unwrap());
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    let _ = dump.wait();
    eprintln!("oscdump:\n{}", lines.join("\n"));
    // oscdump prints `TIMETAG ADDRESS TYPES ARGS…`.
    let fields = |l: &str| l.split_whitespace().skip(1).map(str::to_owned).collect::<Vec<_>>();
    let tags_of = |addr: &str, first_arg: Option<&str>| -> Vec<String> {
        lines
            .iter()
            .map(|l| fields(l))
            .filter(|f| f.first().map(String::as_str) == Some(addr))
            .filter(|f| first_arg.is_none_or(|a| f.get(2) == Some(&format!("\"{a}\""))))
            .map(|f| f.get(1).cloned().unwrap_or_default())
            .collect()
    };
    let want = [
        ("/reply", Some("/record/start"), "ssds"),
        ("/reply", Some("/record/status"), "sssdddidsddddiidd"),
        ("/reply", Some("/record/list"), "sss"),
        ("/reply", Some("/record/rotate"), "ssdsds"),
        ("/reply", Some("/record/stop"), "ssddss"),
        ("/error", Some("/record/stop"), "sis"),
        ("/reply", Some("/config/ports"), "si"),
        ("/recording/state", None, "ssdd"),
        ("/recording/progress", None, "sdd"),
    ];
    for (addr, arg, tags) in want {
        let seen = tags_of(addr, arg);
        assert!(!seen.is_empty(), "oscdump saw no {addr} {arg:?}:\n{}", lines.join("\n"));
        assert!(seen.iter().all(|t| t == tags), "{addr} {arg:?}: tags {seen:?}, documented {tags}");
    }
    assert!(lines.iter().all(|l| !fields(l).get(1).is_some_and(|t| t.contains('h'))), "int64 sent");
}

/// The bytes `oscsend - PATH [TYPES VALUES…]` encodes.
fn oscsend(args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("oscsend").arg("-").args(args).output().expect("oscsend (apt-get install liblo-tools)");
    assert!(out.status.success(), "oscsend {args:?}");
    out.stdout
}

/// docs/examples/meters.scd, run headless by sclang against a daemon whose
/// first two inputs carry a -20 dBFS tone and the other two nothing: it
/// subscribes to the meter feed, and every push it gets reads -20 dBFS on
/// the tone and -inf on the silence, with no clip.
#[test]
fn sclang_reads_the_meter_feed() {
    let server = JackServer::start(256);
    let _src = server.source_with(2, &["--tone", "-20"]);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "4", "--connect", "src:out_*"]);
    let transcript = dir.path().join("meters.txt");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/meters.scd");
    let out = sclang(
        &example,
        &[("CAPSTAN_PORT", &d.port.to_string()), ("CAPSTAN_TRANSCRIPT", transcript.to_str().unwrap())],
    );
    assert!(out.status.success(), "sclang: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("capstan: 4 inputs, 20 pushes a second"), "{}", text(&out.stdout));
    let lines = std::fs::read_to_string(&transcript).unwrap();
    let pushes: Vec<&str> = lines.lines().collect();
    assert_eq!(pushes.len(), 10, "{lines}");
    for p in pushes {
        assert_eq!(p, "in_1=-20.0 in_2=-20.0 in_3=-inf in_4=-inf", "{lines}");
    }
}

/// `capstan ctl watch`, piped: a line a second with the state and every
/// input's peak from the daemon's meter feed (a -20 dBFS tone on two
/// inputs, nothing on two), until SIGINT, which ends the feed.
#[test]
fn ctl_watch_prints_every_inputs_level_until_interrupted() {
    let server = JackServer::start(256);
    let _src = server.source_with(2, &["--tone", "-20"]);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "4", "--connect", "src:out_*"]);
    let mut child = Command::new(CAPSTAN)
        .args(["ctl", "--osc", &format!("127.0.0.1:{}", d.port), "watch", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let l = lines.next().expect("a line from ctl watch").unwrap();
        seen.push(l);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let status = wait_output(child, Duration::from_secs(10)).status;
    assert!(status.success(), "{status:?}");
    for l in &seen {
        assert!(l.starts_with("IDLE"), "{l}");
        assert!(l.ends_with("| in_1 -20.0  in_2 -20.0  in_3 -inf  in_4 -inf"), "{l}");
    }
}
