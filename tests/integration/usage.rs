//! capstan used as a new user would, with wrong input: every mistake gets
//! one clear sentence naming what the user typed, before anything is
//! created, and nothing recorded is lost.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;

fn capstan_in(server: &JackServer, args: &[&str]) -> Output {
    let mut c = server.capstan();
    c.args(args);
    run(c)
}

fn plain(args: &[&str]) -> Output {
    let mut c = Command::new(CAPSTAN);
    c.args(args);
    run(c)
}

/// Refused with exit code 1 and a message containing `words` once.
fn refused(out: &Output, words: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    assert!(err.contains(words), "{words:?} not in: {err}");
    assert_eq!(err.matches(words).count(), 1, "said more than once: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a log that is not a terminal: {err:?}");
}

fn takes_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".take.json"))
        .count()
}

/// Takes `n` short takes into `dir` with `record`.
fn record_takes(server: &JackServer, dir: &Path, n: usize) {
    for _ in 0..n {
        let out = capstan_in(
            server,
            &["record", "-q", "--connect", "src:out_*", "--duration", "0.1", "--dir", dir.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

/// The 39 kinds of wrong input, as far as they were wrong: `prune --keep-free
/// 2` (a typo for 0.2) deleted every take; `recover /nonexistent` said
/// "nothing to recover"; a `--dir` that is a file said "File exists" twice;
/// the daemon connected only the first ports where `record` refused; flags
/// that need another were ignored; messages named `capstan.json` keys; a
/// busy OSC port was found after the directory was made; a take id became
/// part of the project; `--format flac` alone was refused; logs carried
/// colour codes into files.
#[test]
fn wrong_input_gets_one_clear_sentence_and_changes_nothing() {
    let server = JackServer::start(256);
    let src = server.source(4);
    let root = tempdir();
    let takes = root.path().join("takes");
    record_takes(&server, &takes, 3);
    assert_eq!(takes_in(&takes), 3);
    let t = takes.to_str().unwrap();

    // Retention values are checked like every other setting.
    refused(&plain(&["prune", t, "--keep-free", "2"]), "--keep-free must be between 0 and 1");
    assert_eq!(takes_in(&takes), 3, "nothing deleted");
    // A prune that would remove every take needs --yes on a terminal.
    let tty = run({
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{CAPSTAN} prune {t} --keep-last 0"), "/dev/null"]);
        c
    });
    assert!(!tty.status.success(), "{}", text(&tty.stdout));
    assert!(text(&tty.stdout).contains("--yes"), "{}", text(&tty.stdout));
    assert_eq!(takes_in(&takes), 3, "nothing deleted");

    // Paths that are not there, or not directories.
    let missing = root.path().join("nonexistent");
    refused(&plain(&["recover", missing.to_str().unwrap()]), "no such directory");
    refused(&plain(&["prune", missing.to_str().unwrap(), "--keep-last", "1"]), "no such directory");
    let file = root.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    refused(
        &capstan_in(&server, &["daemon", "--dir", file.to_str().unwrap(), "--osc-port", "0"]),
        "is not a directory",
    );
    refused(
        &capstan_in(&server, &["record", "--dir", file.to_str().unwrap(), "--duration", "0.1"]),
        "is not a directory",
    );

    // The daemon refuses more sources than inputs, as record does.
    let fresh = root.path().join("fresh");
    let f = fresh.to_str().unwrap();
    refused(
        &capstan_in(
            &server,
            &["daemon", "--dir", f, "--osc-port", "0", "--ports", "2", "--connect", "src:out_*"],
        ),
        "match 4 ports but capstan has only 2 inputs",
    );
    refused(
        &capstan_in(
            &server,
            &["record", "--dir", f, "--ports", "2", "--connect", "src:out_*", "--duration", "0.1"],
        ),
        "match 4 ports but capstan has only 2 inputs",
    );
    // Flags that do nothing alone, and the words of a refusal.
    let out = capstan_in(&server, &["daemon", "--dir", f, "--osc-port", "0", "--midi-note", "60"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(text(&out.stderr).contains("--midi"), "{}", text(&out.stderr));
    refused(
        &capstan_in(&server, &["daemon", "--dir", f, "--osc-port", "0", "--post-roll", "2"]),
        "--post-roll needs --trigger transport",
    );
    refused(
        &capstan_in(&server, &["daemon", "--dir", f, "--osc-port", "0", "--buffer-seconds", "0.1"]),
        "--buffer-seconds must be between",
    );
    refused(
        &capstan_in(&server, &["record", "--dir", f, "--buffer-seconds", "0.1"]),
        "--buffer-seconds must be between",
    );
    refused(
        &capstan_in(&server, &["daemon", "--dir", f, "--osc-port", "0", "--dir-layout", "%Y/."]),
        "--dir-layout",
    );
    // A busy OSC port is found before anything is made.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    refused(&capstan_in(&server, &["daemon", "--dir", f, "--osc-port", &port]), "cannot listen for OSC");
    assert!(!fresh.exists(), "nothing was created by the refusals");

    // `--format flac` alone records s24 and says so.
    let out = capstan_in(
        &server,
        &["record", "--json", "--format", "flac", "--connect", "src:out_*", "--duration", "0.2", "--dir", f],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["sample_format"], "s24");

    // A take id names the take, not the project.
    let d = Daemon::start(&server, &fresh, &["--ports", "4", "--connect", "src:out_*"]);
    ctl(d.port, &["start", "t1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stop = ctl(d.port, &["stop"]);
    assert_eq!(stop["take_id"], "t1");
    let wav = std::path::PathBuf::from(stop["files"].as_str().unwrap());
    assert!(wav.file_name().unwrap().to_string_lossy().starts_with("capstan_t1_"), "{}", wav.display());
    let m = manifest_of(&wav);
    assert_eq!((m["project"].as_str(), m["take_id"].as_str()), (Some("capstan"), Some("t1")));
    let info = capstan::wav::read_info(&wav).unwrap();
    assert!(info.ixml.as_deref().unwrap().contains("<PROJECT>capstan</PROJECT>"));
    // `ctl list` when idle prints nothing (no blank line); `ctl files`.
    let list = run({
        let mut c = Command::new(CAPSTAN);
        c.args(["ctl", "--osc", &format!("127.0.0.1:{}", d.port), "list"]);
        c
    });
    assert!(list.status.success() && list.stdout.is_empty(), "{:?}", text(&list.stdout));
    let files = ctl(d.port, &["files"]);
    assert_eq!(files["files"], stop["files"]);
    let mut d = d;
    assert_eq!(osc(d.port, "/record/stop", vec![]).unwrap().0, "/error"); // logged as refused
    d.terminate();
    let log = d.log.lock().unwrap().clone();
    assert!(log.contains("refused") && !log.contains('\u{1b}'), "{log:?}");
    src.stop();
}

/// JACK's port limit (jackd's `--port-max`, for all clients together):
/// JACK only refuses the port; capstan says why and how to raise it, and
/// creates no take.
#[test]
fn jacks_port_limit_is_named_with_the_way_to_raise_it() {
    let server = JackServer::start_with(256, &["--port-max", "16"]);
    let dir = tempdir();
    let out = capstan_in(
        &server,
        &["record", "-q", "--ports", "24", "--duration", "0.1", "--dir", dir.path().to_str().unwrap()],
    );
    refused(&out, "raise it with jackd's --port-max");
    assert!(text(&out.stderr).contains("cannot register input port"), "{}", text(&out.stderr));
    assert_eq!(takes_in(dir.path()), 0);
}
