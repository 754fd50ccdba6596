//! FLAC takes end to end, checked by the reference tools (`flac -t`,
//! `flac -d`, `metaflac`): sample-exact, tagged, refused where FLAC cannot
//! hold the take, recovered after kill -9.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn metaflac(path: &Path, arg: &str) -> String {
    let out = Command::new("metaflac").arg(arg).arg(path).output().expect("metaflac (apt-get install flac)");
    assert!(out.status.success(), "metaflac {arg}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// `--format flac`: 16 inputs, one s24 FLAC file per input, each checked
/// by `flac -t`, decoded by `flac -d` and found sample-exact at its true
/// position on JACK's timeline; metaflac reads the total, the take, the
/// JACK frame time and the channel's name. The interleaved layout above 8
/// inputs, and float32, are refused with what to do instead.
#[test]
fn flac_takes_are_sample_exact_and_read_by_the_reference_tools() {
    let server = JackServer::start(256);
    let src = server.source(16);
    let dir = tempdir();
    let record = |args: &[&str]| {
        let mut cmd = server.capstan();
        cmd.args([
            "record",
            "--json",
            "-q",
            "--connect",
            "src:out_*",
            "--duration",
            "1.5",
            "--format",
            "flac",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(args);
        run(cmd)
    };
    let out = record(&["--layout", "mono", "--sample-format", "s24"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&out);
    let f = files(&s);
    assert_eq!(f.len(), 16);
    let first = s["take"]["first_frame_time"].as_u64().unwrap();
    for (i, path) in f.iter().enumerate() {
        assert!(path.to_string_lossy().ends_with(&format!("_in_{}.flac", i + 1)), "{}", path.display());
        assert_eq!(assert_recording(path, i, &s), 72_000);
        assert_eq!(metaflac(path, "--show-total-samples"), "72000");
        assert_eq!(metaflac(path, "--show-bps"), "24");
        assert_eq!(metaflac(path, "--show-channels"), "1");
        assert_eq!(
            metaflac(path, "--show-tag=CAPSTAN_JACK_FRAME_TIME"),
            format!("CAPSTAN_JACK_FRAME_TIME={first}")
        );
        assert_eq!(metaflac(path, "--show-tag=CAPSTAN_CHANNEL_1"), format!("CAPSTAN_CHANNEL_1=in_{}", i + 1));
        assert!(metaflac(path, "--show-tag=TIME_REFERENCE").starts_with("TIME_REFERENCE="));
        assert_ne!(metaflac(path, "--show-md5sum"), "00000000000000000000000000000000", "MD5 set at the end");
    }
    let m = manifest_of(&f[0].with_file_name(format!(
        "{}.flac",
        f[0].file_stem().unwrap().to_string_lossy().trim_end_matches("_in_1")
    )));
    assert_eq!(m["files"].as_array().unwrap().len(), 16);
    // Refusals, before anything is created.
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    let out = record(&["--sample-format", "s24"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--layout mono"), "{}", text(&out.stderr));
    let out = record(&["--layout", "mono", "--sample-format", "float32"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--sample-format s24"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    src.stop();
}

/// A FLAC take killed mid-way (kill -9): `capstan recover` cuts the torn
/// last frame, STREAMINFO then claims every whole frame (MD5 zero,
/// "unknown"), `flac -t` passes and every sample is where it belongs; the
/// gap a stall made before the last checkpoint is still reported.
#[test]
fn a_killed_flac_take_is_recovered_for_the_reference_decoder() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let dir = tempdir();
    let mut d = Daemon::start(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--format", "flac", "--sample-format", "s16"],
    );
    let start = ctl(d.port, &["start", "crash"]);
    let file = std::path::PathBuf::from(start["files"].as_str().unwrap());
    assert!(file.to_string_lossy().ends_with(".flac"), "{start}");
    // A stall (100 ms: JACK runs on without capstan) makes a gap, which a
    // checkpoint saves before the crash.
    std::thread::sleep(Duration::from_millis(400));
    let pid = nix::unistd::Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let mut c = d.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let (_, truth) = src.stop_truth();
    let out = run({
        let mut c = Command::new(CAPSTAN);
        c.arg("recover").arg(dir.path());
        c
    });
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let m = manifest_of(&file);
    assert_eq!(m["state"], "recovered", "{m}");
    let frames = m["frames"].as_u64().unwrap();
    assert!(frames >= 48_000, "at least the checkpointed second: {m}");
    assert_eq!(metaflac(&file, "--show-total-samples"), frames.to_string());
    assert_eq!(metaflac(&file, "--show-md5sum"), "00000000000000000000000000000000");
    let mut gaps = gap_runs(m["gaps"].as_array().unwrap());
    let lost: u64 = gaps.iter().map(|g| g.1).sum();
    assert!(lost >= 3_000, "the stall's gap survives the crash: {m}");
    assert_eq!(m["clean"], false, "{m}");
    // Past the last saved list (a busy machine's skipped cycles after the
    // stall) silence may be an unlisted gap; it is still checked to be
    // silence, and every other frame to be in place.
    let until = m["gaps_until"].as_u64().expect("a recovered take says how far its gaps are listed");
    let decoded = flac_decoded(&file).unwrap();
    let late = capstan_testbed::verify_at(&decoded.0, 0, 0, Some(decoded.1)).unwrap();
    gaps.extend(late.silent.iter().filter(|r| r.at >= until).map(|r| (r.at, r.frames)));
    let v = assert_position_exact(&file, 0, &gaps, Some(&truth));
    assert_eq!(v.frames, frames);
    let again = run({
        let mut c = Command::new(CAPSTAN);
        c.arg("recover").arg(dir.path());
        c
    });
    assert!(text(&again.stdout).contains("nothing to recover"), "{}", text(&again.stdout));
}
