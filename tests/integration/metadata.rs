//! What a DAW reads besides the audio: iXML track names, the bext
//! description and coding history, the time stamp and markers. The chunks
//! are parsed here from the raw bytes, independently of capstan's writer
//! and reader code.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// The RIFF chunks of a WAV file: (id, body).
pub fn chunks(path: &Path) -> Vec<(String, Vec<u8>)> {
    let b = std::fs::read(path).unwrap();
    assert!(&b[..4] == b"RIFF" || &b[..4] == b"RF64", "{}", path.display());
    assert_eq!(&b[8..12], b"WAVE");
    let mut out = Vec::new();
    let mut at = 12;
    while at + 8 <= b.len() {
        let id = String::from_utf8_lossy(&b[at..at + 4]).into_owned();
        let size = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = (at + 8 + size).min(b.len());
        out.push((id, b[at + 8..end].to_vec()));
        at = at + 8 + size + size % 2;
    }
    out
}

pub fn chunk(path: &Path, id: &str) -> Vec<u8> {
    chunks(path)
        .into_iter()
        .find(|(i, _)| i == id)
        .unwrap_or_else(|| panic!("{}: no {id} chunk", path.display()))
        .1
}

/// Every `<tag>…</tag>` text in `xml`, unescaped, in document order.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let j = after.find(&close).unwrap_or_else(|| panic!("unclosed <{tag}>"));
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}

/// The bext fields at their EBU Tech 3285 offsets.
pub struct RawBext {
    pub description: String,
    pub date: String,
    pub time: String,
    pub time_reference: u64,
    pub coding_history: String,
}

pub fn raw_bext(path: &Path) -> RawBext {
    let b = chunk(path, "bext");
    let s = |from: usize, len: usize| {
        let raw = &b[from..from + len];
        String::from_utf8_lossy(&raw[..raw.iter().position(|&c| c == 0).unwrap_or(len)]).into_owned()
    };
    let lo = u32::from_le_bytes(b[338..342].try_into().unwrap()) as u64;
    let hi = u32::from_le_bytes(b[342..346].try_into().unwrap()) as u64;
    RawBext {
        description: s(0, 256),
        date: s(320, 10),
        time: s(330, 8),
        time_reference: lo | hi << 32,
        coding_history: String::from_utf8_lossy(&b[602..]).trim_end_matches('\0').to_owned(),
    }
}

fn set_pretty_name(server: &JackServer, port: &str, name: &str) {
    let out = run({
        let mut c = server.cmd("jack_property");
        c.args(["-s", "--port", port, "http://jackaudio.org/metadata/pretty-name", name]);
        c
    });
    assert!(out.status.success(), "jack_property: {}", text(&out.stderr));
}

/// Three named inputs keep their names; of two inputs left at their
/// default names, one is fed by a port with a pretty name and is called
/// that, the other keeps its own name. Interleaved and mono alike; our own
/// named inputs carry the pretty name for patchbays.
#[test]
fn ixml_names_every_track() {
    let server = JackServer::start(256);
    let src = server.source(5);
    // JACK2 keeps metadata in one database per user (/dev/shm/jack_db-UID),
    // shared by every server, keyed by UUIDs that each server numbers from
    // the start: clear what earlier servers left, or it lands on our ports.
    // (So a test server running beside this one, removing its ports, can
    // remove our properties too: `make test` runs one test at a time.)
    let out = run({
        let mut c = server.cmd("jack_property");
        c.arg("-D");
        c
    });
    assert!(out.status.success(), "jack_property -D: {}", text(&out.stderr));
    set_pretty_name(&server, "src:out_4", "Bass DI & <Amp>");
    let dir = tempdir();
    let d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "5", "--port-names", "kick,snare,hat", "--connect", "src:out_*", "--project", "gig"],
    );
    let want = ["kick", "snare", "hat", "Bass DI & <Amp>", "in_5"];
    let mut files = Vec::new();
    for layout in ["interleaved", "mono"] {
        assert!(osc(d.port, "/config/layout", vec![rosc::OscType::String(layout.into())]).is_some());
        ctl(d.port, &["start", &format!("take-{layout}")]);
        std::thread::sleep(Duration::from_millis(400));
        let stop = ctl(d.port, &["stop"]);
        let listed: Vec<std::path::PathBuf> =
            stop["files"].as_str().unwrap().split(',').map(std::path::PathBuf::from).collect();
        files.push((layout, listed));
    }
    let (_, truth) = src.stop_truth();
    for (layout, listed) in &files {
        let manifest = if *layout == "mono" {
            let m = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.to_string_lossy().contains("take-mono") && p.to_string_lossy().ends_with(".take.json")
                })
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(m).unwrap()).unwrap()
        } else {
            manifest_of(&listed[0])
        };
        let mut names = Vec::new();
        for (i, f) in listed.iter().enumerate() {
            let first_channel = if *layout == "mono" { i } else { 0 };
            let gaps = gap_runs(manifest["gaps"].as_array().unwrap());
            let v = assert_position_exact(f, first_channel, &gaps, Some(&truth));
            assert!(v.frames > 4800, "{v:?}");
            let xml = String::from_utf8(chunk(f, "iXML")).unwrap();
            assert!(xml.trim_end().ends_with("</BWFXML>"), "{xml}");
            // The take id names the take; the project stays the project.
            assert_eq!(xml_values(&xml, "PROJECT"), ["gig"], "{xml}");
            assert_eq!(xml_values(&xml, "TAKE"), [format!("take-{layout}")]);
            assert_eq!(xml_values(&xml, "FILE_SAMPLE_RATE"), ["48000"]);
            assert_eq!(xml_values(&xml, "TIMESTAMP_SAMPLE_RATE"), ["48000"]);
            let uid = xml_values(&xml, "FILE_UID");
            assert_eq!(uid.len(), 1);
            assert_eq!(manifest["file_uids"][i].as_str(), Some(uid[0].as_str()), "{manifest}");
            let channels = xml_values(&xml, "CHANNEL_INDEX");
            let interleave = xml_values(&xml, "INTERLEAVE_INDEX");
            if *layout == "mono" {
                assert_eq!(channels, [(i + 1).to_string()]);
                assert_eq!(interleave, ["1"]);
                assert_eq!(xml_values(&xml, "FILE_SET_INDEX"), [(i + 1).to_string()]);
                assert_eq!(xml_values(&xml, "TOTAL_FILES"), ["5"]);
            } else {
                let k: Vec<String> = (1..=5).map(|c| c.to_string()).collect();
                assert_eq!(channels, k);
                assert_eq!(interleave, k);
            }
            names.extend(xml_values(&xml, "NAME"));
            let b = raw_bext(f);
            assert!(b.description.contains(&format!("take-{layout}")), "{}", b.description);
            assert!(b.description.contains("project gig;"), "{}", b.description);
            let mode = if *layout == "mono" { "mono" } else { "multitrack" };
            let history = format!("A=PCM,F=48000,W=32,M={mode},T=capstan ");
            assert!(b.coding_history.starts_with(&history), "{:?}", b.coding_history);
            assert!(b.coding_history.ends_with("\r\n"), "{:?}", b.coding_history);
            assert_eq!((b.date.len(), b.time.len()), (10, 8), "{} {}", b.date, b.time);
            assert!(b.time_reference > 0);
        }
        assert_eq!(names, want, "{layout}");
        // sox reads the files with the extra chunk.
        let soxi = run({
            let mut c = Command::new("soxi");
            c.arg("-s").arg(&listed[0]);
            c
        });
        assert!(soxi.status.success(), "{}", text(&soxi.stderr));
    }
    let out = run({
        let mut c = server.cmd("jack_property");
        c.args(["-l", "--port", "capstan:snare"]);
        c
    });
    let listed = text(&out.stdout);
    assert!(
        listed.lines().any(|l| l.contains("http://jackaudio.org/metadata/pretty-name"))
            && listed.contains("snare"),
        "{listed}{}",
        text(&out.stderr)
    );
}

/// Samples since midnight (local, or UTC) of `micros` since 1970, at `rate`.
fn since_midnight(micros: u64, rate: u64, utc: bool) -> (u64, String, String) {
    use chrono::{DateTime, Local, Timelike, Utc};
    let t = std::time::UNIX_EPOCH + Duration::from_micros(micros);
    let naive =
        if utc { DateTime::<Utc>::from(t).naive_utc() } else { DateTime::<Local>::from(t).naive_local() };
    let us =
        naive.time().num_seconds_from_midnight() as u64 * 1_000_000 + naive.time().nanosecond() as u64 / 1000;
    (us * rate / 1_000_000, naive.format("%Y-%m-%d").to_string(), naive.format("%H:%M:%S").to_string())
}

/// The bext time_reference is the first frame's samples since midnight:
/// within 10 ms of the system clock the source read when it wrote that
/// frame (its ground truth). Date and time say the same second; iXML
/// agrees; local time by default, UTC with `--utc`, JACK's frame time with
/// `--time-reference jack`.
#[test]
fn time_reference_is_samples_since_midnight_by_the_system_clock() {
    time_reference_on(ServerKind::Jack2Async);
    time_reference_on(ServerKind::PipeWire);
}

fn time_reference_on(kind: ServerKind) {
    let server = JackServer::start_kind(kind, 256);
    let src = server.source(2);
    let dir = tempdir();
    let mut takes = Vec::new();
    for (name, extra) in
        [("local", &[][..]), ("utc", &["--utc"][..]), ("jack", &["--time-reference", "jack"][..])]
    {
        let mut cmd = server.capstan();
        cmd.args(["record", "--json", "-q", "--connect", "src:out_*", "--duration", "0.5", "--file"])
            .arg(format!("{name}.wav"))
            .arg("--dir")
            .arg(dir.path())
            .args(extra);
        let out = run(cmd);
        assert!(out.status.success(), "{}", text(&out.stderr));
        takes.push((name, summary(&out)));
    }
    let (_, truth) = src.stop_truth();
    let day = 86_400 * 48_000u64;
    for (name, s) in &takes {
        let f = &files(s)[0];
        let gaps = gap_runs(s["take"]["gaps"].as_array().unwrap());
        assert_position_exact(f, 0, &gaps, Some(&truth));
        let first = s["take"]["first_frame_time"].as_u64().unwrap();
        let wall = truth.wall_near(first).expect("the source wrote after the first frame");
        let b = raw_bext(f);
        let xml = String::from_utf8(chunk(f, "iXML")).unwrap();
        let hi: u64 = xml_values(&xml, "TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_HI")[0].parse().unwrap();
        let lo: u64 = xml_values(&xml, "TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_LO")[0].parse().unwrap();
        let ssm = hi << 32 | lo;
        let (want, date, _) = since_midnight(wall, 48_000, *name == "utc");
        // Within 10 ms (480 frames), modulo a day (a run across midnight),
        // and as much more as the source's own clock readings wandered
        // there (a busy machine runs its callback late).
        let off = (ssm + day - want) % day;
        let off = off.min(day - off);
        let within = 480 + truth.jitter_at(first) * 48 / 1000;
        assert!(
            off <= within,
            "{kind:?} {name}: stamp {ssm} vs system clock {want}: {off} frames apart (allowed {within})"
        );
        eprintln!("{kind:?} {name}: stamp {off} frames from the source's system clock");
        // The date and time are those of the stamp itself.
        let secs = ssm / 48_000;
        let hms = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        assert_eq!(b.time, hms, "{name}");
        if want > 480 && want < day - 480 {
            assert_eq!(b.date, date, "{name}");
        }
        let manifest = manifest_of(f);
        assert_eq!(manifest["first_frame_time"].as_u64(), Some(first));
        if *name == "jack" {
            assert_eq!(b.time_reference, first, "{name}");
        } else {
            assert_eq!(b.time_reference, ssm, "{name}");
        }
        assert_eq!(manifest["time_reference"].as_u64(), Some(b.time_reference), "{name}");
    }
}

/// The cue points of a file: (id, sample offset), and the labels by id.
fn cue_points(path: &Path) -> (Vec<(u32, u64)>, std::collections::HashMap<u32, String>) {
    let all = chunks(path);
    let cue =
        &all.iter().find(|(id, _)| id == "cue ").unwrap_or_else(|| panic!("{}: no cue", path.display())).1;
    let n = u32::from_le_bytes(cue[..4].try_into().unwrap()) as usize;
    let points = (0..n)
        .map(|i| {
            let p = &cue[4 + 24 * i..4 + 24 * (i + 1)];
            assert_eq!(&p[8..12], b"data");
            let at = |k: usize| u32::from_le_bytes(p[k..k + 4].try_into().unwrap());
            assert_eq!(at(4), at(20), "position and sample offset agree");
            (at(0), at(20) as u64)
        })
        .collect();
    let list = &all.iter().find(|(id, b)| id == "LIST" && &b[..4] == b"adtl").expect("LIST adtl").1;
    let mut labels = std::collections::HashMap::new();
    let mut at = 4;
    while at + 8 <= list.len() {
        let size = u32::from_le_bytes(list[at + 4..at + 8].try_into().unwrap()) as usize;
        if &list[at..at + 4] == b"labl" {
            let body = &list[at + 8..at + 8 + size];
            let id = u32::from_le_bytes(body[..4].try_into().unwrap());
            let text = &body[4..];
            labels.insert(
                id,
                String::from_utf8_lossy(&text[..text.iter().position(|&c| c == 0).unwrap()]).into(),
            );
        }
        at += 8 + size + size % 2;
    }
    (points, labels)
}

fn whole(a: &rosc::OscType) -> u64 {
    match a {
        rosc::OscType::Double(v) if v.fract() == 0.0 => *v as u64,
        other => panic!("expected a whole float64, got {other:?}"),
    }
}

fn micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// `/record/mark` puts a cue point with its label at the frame the command
/// was taken (the reply says which); in a timetagged bundle, at the frame
/// of the timetag, future or past, checked against the system clock the
/// source read when it wrote that frame. Markers saved before a kill -9
/// are in the file after `capstan recover`.
#[test]
fn markers_are_cue_points_at_their_frames_and_survive_a_crash() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(&server, dir.path(), &["--connect", "src:out_*"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", d.port)).unwrap();
    let send = |p: rosc::OscPacket| {
        sock.send(&rosc::encoder::encode(&p).unwrap()).unwrap();
        let (addr, args) = reply_on(&sock, Duration::from_secs(5)).expect("a reply");
        assert_eq!(addr, "/reply", "{args:?}");
        args
    };
    let mark = |label: &str| {
        rosc::OscPacket::Message(rosc::OscMessage {
            addr: "/record/mark".into(),
            args: vec![rosc::OscType::String(label.into())],
        })
    };
    let timed = |label: &str, t: std::time::SystemTime| {
        rosc::OscPacket::Bundle(rosc::OscBundle {
            timetag: t.try_into().unwrap(),
            content: vec![mark(label)],
        })
    };
    // Before a take: refused with code 4.
    let (addr, args) = osc(d.port, "/record/mark", vec![]).unwrap();
    assert_eq!((addr.as_str(), &args[1]), ("/error", &rosc::OscType::Int(4)), "{args:?}");
    let start = send(rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/record/start".into(),
        args: vec![rosc::OscType::String("marked".into())],
    }));
    let first = whole(&start[2]);
    std::thread::sleep(Duration::from_millis(300));
    let before = micros(std::time::SystemTime::now());
    let plain = send(mark("verse 1"));
    let after = micros(std::time::SystemTime::now());
    let ahead = std::time::SystemTime::now() + Duration::from_millis(400);
    let future = send(timed("drop", ahead));
    let back = std::time::SystemTime::now() - Duration::from_millis(150);
    let past = send(timed("fluff", back));
    let unnamed =
        send(rosc::OscPacket::Message(rosc::OscMessage { addr: "/record/mark".into(), args: vec![] }));
    std::thread::sleep(Duration::from_millis(700));
    let stop = send(rosc::OscPacket::Message(rosc::OscMessage { addr: "/record/stop".into(), args: vec![] }));
    let file = std::path::PathBuf::from(match &stop[4] {
        rosc::OscType::String(f) => f.clone(),
        other => panic!("{other:?}"),
    });
    let replies = [(&plain, "verse 1"), (&future, "drop"), (&past, "fluff"), (&unnamed, "M4")];
    for (r, label) in &replies {
        assert_eq!(r[1], rosc::OscType::String("marked".into()), "{r:?}");
        assert_eq!(whole(&r[3]), whole(&r[2]) - first, "frame = frame time - first frame: {r:?}");
        assert_eq!(r[4], rosc::OscType::String(label.to_string()));
    }
    let (_, truth) = src.stop_truth();
    assert_take(&file, Some(&truth));
    // Where the source's clock says each marker is.
    let wall = |r: &Vec<rosc::OscType>| truth.wall_at(whole(&r[2])).expect("the source wrote that frame");
    let period_us = 256 * 1_000_000 / 48_000;
    assert!(
        wall(&plain) + period_us >= before && wall(&plain) <= after + period_us,
        "plain marker at {} outside [{before}, {after}]",
        wall(&plain)
    );
    for (r, t) in [(&future, ahead), (&past, back)] {
        let off = wall(r) as i64 - micros(t) as i64;
        // The figure is the clocks' agreement under whatever load the
        // machine has (make bench measures it); the frame-exact checks are
        // below. This bound only catches a marker in the wrong place.
        eprintln!("timetagged marker: {off} us from its timetag by the source's clock");
        assert!(off.abs() <= 20_000, "timetagged marker {off} us away from its timetag");
    }
    // The file's cue points, read from the raw chunks.
    let (points, labels) = cue_points(&file);
    let mut want: Vec<(u64, &str)> = replies.iter().map(|(r, l)| (whole(&r[3]), *l)).collect();
    want.sort();
    let got: Vec<(u64, &str)> = points.iter().map(|(id, at)| (*at, labels[id].as_str())).collect();
    assert_eq!(got, want);
    let m = manifest_of(&file);
    assert_eq!(m["markers"].as_array().unwrap().len(), 4, "{m}");
    let soxi = run({
        let mut c = Command::new("soxi");
        c.arg("-s").arg(&file);
        c
    });
    assert_eq!(
        text(&soxi.stdout).trim().parse::<u64>().ok(),
        Some(capstan::wav::read_info(&file).unwrap().frames())
    );

    // A take killed after a checkpoint: its marker is in the file after
    // `capstan recover`.
    let src = server.source(2);
    let start = send(rosc::OscPacket::Message(rosc::OscMessage {
        addr: "/record/start".into(),
        args: vec![rosc::OscType::String("crashed".into())],
    }));
    let files = match &start[3] {
        rosc::OscType::String(f) => std::path::PathBuf::from(f),
        other => panic!("{other:?}"),
    };
    std::thread::sleep(Duration::from_millis(200));
    let saved = send(mark("before the crash"));
    std::thread::sleep(Duration::from_millis(1500)); // past a checkpoint
                                                     // Acknowledged markers are saved: one 3 s ahead (past the audio that
                                                     // will reach the disk) and one killed right after its reply.
    let ahead = send(timed("ahead", std::time::SystemTime::now() + Duration::from_secs(3)));
    let last = send(mark("acknowledged"));
    let mut c = d.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    src.stop();
    let out = run({
        let mut c = Command::new(CAPSTAN);
        c.arg("recover").arg(dir.path());
        c
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let frames = hound::WavReader::open(&files).unwrap().duration() as u64;
    assert!(frames > whole(&saved[3]));
    assert!(whole(&ahead[3]) >= frames, "the marker ahead lies past the recovered audio");
    let (points, labels) = cue_points(&files);
    let got: Vec<(u64, &str)> = points.iter().map(|(id, at)| (*at, labels[id].as_str())).collect();
    let mut want: Vec<(u64, &str)> =
        [(&saved, "before the crash"), (&ahead, "ahead"), (&last, "acknowledged")]
            .iter()
            .map(|(r, l)| (whole(&r[3]).min(frames - 1), *l))
            .collect();
    want.sort();
    assert_eq!(got, want, "every acknowledged marker, clamped to the audio");
    let m = manifest_of(&files);
    let true_frames: Vec<u64> =
        m["markers"].as_array().unwrap().iter().map(|k| k["frame"].as_u64().unwrap()).collect();
    assert!(true_frames.contains(&whole(&ahead[3])), "the manifest keeps the true frame: {m}");
    assert!(m["recovery"].as_str().unwrap().contains("marker(s) past the recovered audio"), "{m}");
    let again = run({
        let mut c = Command::new(CAPSTAN);
        c.arg("recover").arg(dir.path());
        c
    });
    assert!(text(&again.stdout).contains("nothing to recover"), "{}", text(&again.stdout));
    assert_eq!(cue_points(&files).0, points);
}

/// A 1 kHz sine at -20 dBFS on both inputs of a 2-input take: EBU R 128
/// puts one such channel at -23.0 LUFS and two (weight 1.0 each) at
/// -20.0 LUFS, true peak -20 dBTP. The manifest, the bext v2 fields (read
/// raw) and `/record/status` during the take say so; a 12-input take
/// (above `auto`'s limit of 8) is not measured.
#[test]
fn loudness_of_a_known_tone_in_manifest_bext_and_status() {
    let server = JackServer::start(1024);
    let src = server.source_with(2, &["--tone", "-20"]);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "2", "--connect", "src:out_*"]);
    ctl(d.port, &["start", "tone"]);
    std::thread::sleep(Duration::from_millis(3500));
    let status = ctl(d.port, &["status"]);
    let momentary = status["momentary_lufs"].as_f64().unwrap_or_else(|| panic!("{status}"));
    assert!((momentary - -20.0).abs() < 0.2, "momentary {momentary}: {status}");
    let stop = ctl(d.port, &["stop"]);
    let file = std::path::PathBuf::from(stop["files"].as_str().unwrap());
    let m = manifest_of(&file);
    let l = &m["loudness"][0];
    let integrated = l["integrated_lufs"].as_f64().unwrap_or_else(|| panic!("{m}"));
    // The take's first 400 ms block starts at silence-free audio: within 0.1.
    assert!((integrated - -20.0).abs() < 0.1, "{l}");
    assert!(l["range_lu"].as_f64().unwrap() < 0.5, "{l}");
    assert!((l["true_peak_dbtp"].as_f64().unwrap() - -20.0).abs() < 0.2, "{l}");
    let b = chunk(&file, "bext");
    let field = |at: usize| i16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    assert_eq!(u16::from_le_bytes(b[346..348].try_into().unwrap()), 2, "bext version 2");
    assert_eq!(field(412), (integrated * 100.0).round() as i16, "LoudnessValue");
    assert!((field(416) as f64 / 100.0 - -20.0).abs() < 0.2, "MaxTruePeakLevel {}", field(416));
    drop(d);
    src.stop();
    // Twelve inputs: `auto` does not measure (the fields say "not used").
    let src = server.source_with(12, &["--tone", "-20"]);
    let dir = tempdir();
    let d = Daemon::start(&server, dir.path(), &["--ports", "12", "--connect", "src:out_*"]);
    ctl(d.port, &["start"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ctl(d.port, &["status"])["momentary_lufs"].is_null(), "-inf: not measured");
    let stop = ctl(d.port, &["stop"]);
    let file = std::path::PathBuf::from(stop["files"].as_str().unwrap());
    assert!(manifest_of(&file).get("loudness").is_none());
    let b = chunk(&file, "bext");
    assert_eq!(i16::from_le_bytes(b[412..414].try_into().unwrap()), 0x7FFF);
    drop(d);
    src.stop();
}
