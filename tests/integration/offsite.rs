//! The off-site tier against real object-store servers (issue 27): Azure's
//! own emulator, Azurite, and an S3 server (s3s-fs, from crates), never a
//! mock. Every copy that comes back is checked frame by frame.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rosc::OscType;

use crate::harness::*;

/// Azurite's well-known development account.
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A server process of the test's own, stopped by its PID.
struct StoreServer {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited ({s})");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Azurite's blob service on a port of its own, with container `capstan`.
fn azurite() -> StoreServer {
    let (port, root) = (free_port(), tempdir());
    let mut child = Command::new("azurite-blob")
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--silent",
            "--skipApiVersionCheck",
        ])
        .arg("--location")
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite-blob (npm install -g azurite; .ci/run installs it)");
    wait_for_port(port, &mut child, "azurite-blob");
    // A container, made with Microsoft's own client library.
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{AZ_ACCOUNT};"
    );
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom azure.storage.blob import BlobServiceClient as C\n\
                      C.from_connection_string(sys.argv[1]).create_container('capstan')",
        ])
        .arg(cs)
        .output()
        .unwrap();
    assert!(out.status.success(), "creating the container: {}", text(&out.stderr));
    StoreServer { child, port, root }
}

fn azurite_env(port: u16) -> Vec<(String, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
        ("AZURITE_BLOB_STORAGE_URL".into(), format!("http://127.0.0.1:{port}")),
    ]
}

/// s3s-fs serving `root` on `port` (bucket `capstan`), keys `key`/`secret`.
fn s3_server(port: u16, root: tempfile::TempDir) -> StoreServer {
    let child = s3_child(port, root.path());
    StoreServer { child, port, root }
}

/// s3s-fs again on `data`, a directory another server served (kept by
/// the caller).
fn s3_server_at(port: u16, data: &Path) -> StoreServer {
    let child = s3_child(port, data);
    StoreServer { child, port, root: tempdir() }
}

fn s3_child(port: u16, root: &Path) -> Child {
    std::fs::create_dir_all(root.join("capstan")).unwrap();
    let mut child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "capstan-key"])
        .args(["--secret-key", "capstan-secret"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (cargo install s3s-fs --features binary; .ci/run installs it)");
    wait_for_port(port, &mut child, "s3s-fs");
    child
}

fn s3_env(port: u16, secret: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "capstan-key"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("AWS_ENDPOINT".to_string(), format!("http://127.0.0.1:{port}"))])
    .collect()
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// One take of about a second and a half from the test source.
fn record_one(d: &Daemon) -> PathBuf {
    assert_eq!(osc(d.port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(1500));
    let (addr, args) = osc(d.port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let OscType::String(files) = &args[4] else { panic!("{args:?}") };
    PathBuf::from(files.split(';').next().unwrap())
}

/// The take's manifest's verified copy at `url`, once there (30 s at most).
fn copy_at(wav: &Path, url: &str, within: Duration) -> Option<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let m = manifest_of(wav);
        if let Some(c) = m["offsite"].as_array().and_then(|v| v.iter().find(|c| c["url"] == url)) {
            return Some(c.clone());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn capstan_with(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new(CAPSTAN);
    c.args(args).envs(borrowed(env));
    run(c)
}

fn stem(wav: &Path) -> String {
    wav.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The daemon sends each finished take to Azure Blob Storage (Azurite) in
/// the background, verified, and records it in the manifest; `capstan
/// tiers fetch` brings it back byte for byte, every frame in its place.
#[test]
fn the_daemon_copies_each_finished_take_to_azure_and_it_comes_back_exact() {
    let store = azurite();
    let env = azurite_env(store.port);
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let url = "az://capstan/show";
    let d = Daemon::start_env(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--no-http", "--offsite", url],
        &borrowed(&env),
    );
    let wav = record_one(&d);
    let t = Instant::now();
    let copy =
        copy_at(&wav, url, Duration::from_secs(30)).unwrap_or_else(|| panic!("{}", d.log.lock().unwrap()));
    eprintln!("copied and verified {:.2} s after the stop", t.elapsed().as_secs_f64());
    let objects = copy["objects"].as_array().unwrap();
    let names: Vec<&str> = objects.iter().map(|o| o["file"].as_str().unwrap()).collect();
    assert!(names.contains(&wav.file_name().unwrap().to_str().unwrap()), "{copy}");
    assert!(objects.iter().all(|o| o["key"].as_str().unwrap().starts_with("show/")), "{copy}");
    // Back, into a directory of its own.
    let back = tempdir();
    let out =
        capstan_with(&env, &["tiers", "fetch", &stem(&wav), back.path().to_str().unwrap(), "--offsite", url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetched = back.path().join(wav.file_name().unwrap());
    assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(&wav).unwrap());
    let v = assert_take(&fetched, None);
    assert!(v.frames > 48_000, "{v:?}");
    // Fetching again never replaces what is there.
    let out =
        capstan_with(&env, &["tiers", "fetch", &stem(&wav), back.path().to_str().unwrap(), "--offsite", url]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already holds"), "{}", text(&out.stderr));
    let out =
        capstan_with(&env, &["tiers", "status", dir.path().to_str().unwrap(), "--offsite", url, "--verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("verified now"), "{}", text(&out.stdout));
}

/// S3 (s3s-fs): a store that is down when the take ends raises the
/// off-site alarm and changes nothing local; once the server is up the
/// copy is sent again, verified, and the alarm clears. A stored object
/// corrupted afterwards is found by `tiers status --verify`, and the local
/// files stay as they were; wrong credentials are a clear error that
/// changes nothing.
#[test]
fn s3_copies_wait_for_the_server_and_a_corrupted_object_is_found() {
    let port = free_port();
    let env = s3_env(port, "capstan-secret");
    let server = JackServer::start(256);
    let _src = server.source(2);
    let dir = tempdir();
    let url = "s3://capstan/logger";
    let mut d = Daemon::start_env(
        &server,
        dir.path(),
        &["--ports", "2", "--connect", "src:out_*", "--no-http", "--offsite", url],
        &borrowed(&env),
    );
    let alarms = subscriber(d.port);
    let wav = record_one(&d);
    let local = std::fs::read(&wav).unwrap();
    let raised = push_on_matching(&alarms, "offsite", Duration::from_secs(10)).expect("an off-site alarm");
    assert_eq!(raised[2], OscType::Int(1), "{raised:?}");
    let OscType::String(why) = &raised[3] else { panic!("{raised:?}") };
    assert!(why.contains("was not copied to s3://capstan/logger"), "{why}");
    assert!(copy_at(&wav, url, Duration::ZERO).is_none());
    // The server comes up: the next try (5 s, then 10 s) sends it.
    let store = s3_server(port, tempdir());
    let copy =
        copy_at(&wav, url, Duration::from_secs(40)).unwrap_or_else(|| panic!("{}", d.log.lock().unwrap()));
    let cleared = push_on_matching(&alarms, "offsite", Duration::from_secs(5)).expect("the alarm cleared");
    assert_eq!(cleared[2], OscType::Int(0), "{cleared:?}");
    d.terminate();
    // The object is the file, byte for byte, where the key says.
    let obj = copy["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["file"] == wav.file_name().unwrap().to_str().unwrap())
        .unwrap()
        .clone();
    let stored = store.root.path().join("capstan").join(obj["key"].as_str().unwrap());
    assert_eq!(std::fs::read(&stored).unwrap(), local);
    let status = |env: &[(String, String)]| {
        capstan_with(env, &["tiers", "status", dir.path().to_str().unwrap(), "--offsite", url, "--verify"])
    };
    assert!(status(&env).status.success());
    // Corrupted in the store: found, and the local copy is untouched.
    let mut bad = local.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&stored, &bad).unwrap();
    let out = status(&env);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("does not match"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(&wav).unwrap(), local);
    // Wrong credentials: a clear error, nothing changed.
    let manifest = wav.with_extension("take.json");
    let before = std::fs::read(&manifest).unwrap();
    let wrong = s3_env(port, "not-the-secret");
    let out = capstan_with(
        &wrong,
        &["tiers", "push", dir.path().to_str().unwrap(), "--offsite", "s3://capstan/other"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("was not copied (its files are untouched)") && err.contains("refused"), "{err}");
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    assert_eq!(std::fs::read(&wav).unwrap(), local);
}

/// The next `/recording/alarm` push about `kind` on `sock`.
fn push_on_matching(sock: &std::net::UdpSocket, kind: &str, within: Duration) -> Option<Vec<OscType>> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let args = push_on(sock, "/recording/alarm", deadline.saturating_duration_since(Instant::now()))?;
        if args.first() == Some(&OscType::String(kind.into())) {
            return Some(args);
        }
    }
    None
}

/// The S3 server is killed in the middle of an upload (paced to 4 MB/s)
/// and started again on the same data: the upload goes on (the store
/// client retries its requests, or the take is sent again) and is
/// verified; the stored object is the file byte for byte, and nothing
/// local changed.
#[test]
fn an_upload_cut_by_a_server_crash_is_sent_again_and_verified() {
    let port = free_port();
    let env = s3_env(port, "capstan-secret");
    let data = tempdir();
    let store = s3_server_at(port, data.path());
    let server = JackServer::start(256);
    let _src = server.source(16);
    let dir = tempdir();
    let url = "s3://capstan/crash";
    let d = Daemon::start_env(
        &server,
        dir.path(),
        &[
            "--ports",
            "16",
            "--connect",
            "src:out_*",
            "--no-http",
            "--offsite",
            url,
            "--offsite-max-mbps",
            "4",
        ],
        &borrowed(&env),
    );
    let wav = record_one(&d); // about 4.6 MB: more than a second of upload
    let local = std::fs::read(&wav).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(copy_at(&wav, url, Duration::ZERO).is_none(), "the upload should still be running");
    // The server dies mid-upload and comes back on the same port and data.
    drop(store);
    std::thread::sleep(Duration::from_millis(500));
    let _again = s3_server_at(port, data.path());
    let copy =
        copy_at(&wav, url, Duration::from_secs(40)).unwrap_or_else(|| panic!("{}", d.log.lock().unwrap()));
    // Either the store client's own retries carried the upload over the
    // restart (s3s-fs keeps the multipart upload on disk), or the take
    // was sent again after a failure: the copy is verified either way.
    let resent = d.log.lock().unwrap().contains("was not copied");
    eprintln!("sent again after a failure: {resent}");
    let obj = copy["objects"].as_array().unwrap()[0].clone();
    let stored = data.path().join("capstan").join(obj["key"].as_str().unwrap());
    assert_eq!(std::fs::read(&stored).unwrap(), local);
    assert_eq!(std::fs::read(&wav).unwrap(), local);
}

/// Every file in `dir` (no subdirectories), by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `capstan tiers run` started with `args` and killed with SIGKILL once
/// `busy` says the move is under way (10 s at most); whether it was.
fn kill_9_during(env: &[(String, String)], args: &[&str], busy: impl Fn() -> bool) -> bool {
    let mut c = Command::new(CAPSTAN);
    c.args(args).envs(borrowed(env)).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !busy() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let midway = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    midway
}

/// The lifecycle moves two takes hot → warm (a directory) → cold (S3),
/// and each move is killed with SIGKILL in the middle of a copy. Every
/// time, each take is whole in one place at least; the next run finishes
/// it, and leaves no half copy behind. At the end each take is in the
/// store exactly once, byte for byte, and comes back with every frame in
/// its place; after --delete-after, the store holds none of them.
#[test]
fn kill_9_during_moves_between_tiers_loses_nothing_and_duplicates_nothing() {
    let port = free_port();
    let env = s3_env(port, "capstan-secret");
    let data = tempdir();
    let _store = s3_server_at(port, data.path());
    let root = tempdir();
    let (hot, warm) = (root.path().join("hot"), root.path().join("warm"));
    let wavs: Vec<PathBuf> = {
        let server = JackServer::start(256);
        let _src = server.source(16);
        let d = Daemon::start(&server, &hot, &["--ports", "16", "--connect", "src:out_*", "--no-http"]);
        vec![record_one(&d), record_one(&d)]
    };
    let truth: Vec<(String, Vec<u8>)> = wavs
        .iter()
        .map(|w| (w.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(w).unwrap()))
        .collect();
    for w in &wavs {
        assert_take(w, None);
    }
    std::thread::sleep(Duration::from_millis(1100));
    let hot_s = hot.to_str().unwrap();
    let to_warm = format!("1s={}", warm.display());
    // 1. hot → warm, killed while a file is being copied (paced: 4 MB/s).
    let parts = |d: &Path| names_in(d).into_iter().filter(|n| n.ends_with(".part")).count();
    let midway =
        kill_9_during(&env, &["tiers", "run", hot_s, "--tier", &to_warm, "--tier-max-mbps", "4"], || {
            parts(&warm) > 0
        });
    assert!(midway, "the move ended before it could be killed");
    for (name, bytes) in &truth {
        assert_eq!(&std::fs::read(hot.join(name)).unwrap(), bytes, "the original is untouched");
    }
    let out = capstan_with(&env, &["tiers", "run", hot_s, "--tier", &to_warm]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(parts(&warm), 0, "the killed run's half copy was cleared: {:?}", names_in(&warm));
    for (name, bytes) in &truth {
        assert!(!hot.join(name).exists(), "{name} moved: {:?}", names_in(&hot));
        assert_eq!(&std::fs::read(warm.join(name)).unwrap(), bytes);
        assert_take(&warm.join(name), None);
    }
    // 2. warm → S3, killed mid-upload (the objects' multipart uploads
    // are under way; nothing local is removed before the copy verifies).
    std::thread::sleep(Duration::from_millis(1000));
    let url = "s3://capstan/cold";
    let to_cold = format!("2s={url}");
    let tiers = ["tiers", "run", hot_s, "--tier", &to_warm, "--tier", &to_cold];
    let started = Instant::now();
    let mut args = tiers.to_vec();
    args.extend(["--tier-max-mbps", "4"]);
    let midway = kill_9_during(&env, &args, || started.elapsed() > Duration::from_millis(800));
    assert!(midway, "the upload ended before it could be killed");
    for (name, bytes) in &truth {
        // Whole where it was, or (the first take, sent in full) both.
        assert_eq!(&std::fs::read(warm.join(name)).unwrap_or_else(|_| bytes.clone()), bytes);
    }
    let out = capstan_with(&env, &tiers);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        names_in(&warm).iter().all(|n| !n.ends_with(".wav") && !n.ends_with(".take.json")),
        "{:?}",
        names_in(&warm)
    );
    // Each take once in the store: its files and its manifest.
    let keys = walk(&data.path().join("capstan"));
    for (name, bytes) in &truth {
        let here: Vec<_> =
            keys.iter().filter(|k| k.file_name().unwrap().to_string_lossy() == *name).collect();
        assert_eq!(here.len(), 1, "{name} in the store: {keys:?}");
        assert_eq!(&std::fs::read(here[0]).unwrap(), bytes);
    }
    let status = capstan_with(&env, &["tiers", "status", hot_s, "--tier", &to_warm, "--tier", &to_cold]);
    let said = text(&status.stdout);
    assert_eq!(said.matches(&format!("tier 2: {url}")).count(), 2, "{said}");
    // With --offsite too, the tiers are still shown (then the copies).
    let both = ["tiers", "status", hot_s, "--tier", &to_warm, "--tier", &to_cold, "--offsite", url];
    let status = capstan_with(&env, &both);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let both = text(&status.stdout);
    assert_eq!(both.matches(&format!("tier 2: {url}")).count(), 2, "the tiers' view too: {both}");
    assert_eq!(both.lines().count(), 2, "and no copy of a take left in {hot_s}: {both}");
    // Back from the store, every frame in its place.
    let back = tempdir();
    let stem = truth[1].0.trim_end_matches(".wav");
    let out = capstan_with(&env, &["tiers", "fetch", stem, back.path().to_str().unwrap(), "--offsite", url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_take(&back.path().join(&truth[1].0), None);
    // Deleted from the store after --delete-after, and only capstan's.
    std::fs::write(data.path().join("capstan/cold/theirs.txt"), b"not capstan's").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let mut del = tiers.to_vec();
    del.extend(["--delete-after", "3s"]);
    let out = capstan_with(&env, &del);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let left: Vec<_> = walk(&data.path().join("capstan")).into_iter().filter(|p| p.is_file()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("cold/theirs.txt"));
}

/// Every path under `dir`, files and directories.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(r) = std::fs::read_dir(dir) {
        for e in r.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// `capstan tiers push` is killed with SIGKILL after the store confirmed
/// the first part of a take's file; the next push goes on from the next
/// part (it says how many bytes were there already) instead of sending
/// the file again, and the object is the file byte for byte. On S3
/// (s3s-fs) and on Azure Blob Storage (Azurite: blocks, then the list).
#[test]
fn a_push_killed_mid_file_resumes_its_multipart_upload_after_a_restart() {
    let port = free_port();
    let data = tempdir();
    let _s3 = s3_server_at(port, data.path());
    let az = azurite();
    let dir = tempdir();
    let wav = {
        let server = JackServer::start(256);
        let _src = server.source(64);
        let d = Daemon::start(&server, dir.path(), &["--ports", "64", "--connect", "src:out_*", "--no-http"]);
        record_one(&d) // about 18 MB: three parts of 8 MiB
    };
    let local = std::fs::read(&wav).unwrap();
    assert!(local.len() > 2 * (8 << 20), "{} bytes", local.len());
    for (env, url) in [
        (s3_env(port, "capstan-secret"), "s3://capstan/resume"),
        (azurite_env(az.port), "az://capstan/resume"),
    ] {
        let d = dir.path().to_str().unwrap();
        let confirmed = || {
            names_in(dir.path()).iter().filter(|n| n.ends_with(".upload.json")).any(|n| {
                std::fs::read(dir.path().join(n))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|j| j["parts"].as_array().is_some_and(|p| !p.is_empty()))
            })
        };
        let midway =
            kill_9_during(&env, &["tiers", "push", d, "--offsite", url, "--max-mbps", "4"], confirmed);
        assert!(midway, "{url}: the push ended before a part was confirmed");
        assert!(copy_at(&wav, url, Duration::ZERO).is_none(), "no copy is recorded by a killed push");
        let out = capstan_with(&env, &["tiers", "push", d, "--offsite", url]);
        let said = text(&out.stdout);
        assert!(out.status.success(), "{url}: {said}{}", text(&out.stderr));
        assert!(said.contains("bytes were there from an upload cut short"), "{url}: {said}");
        assert!(copy_at(&wav, url, Duration::ZERO).is_some(), "{url}: recorded");
        assert!(!names_in(dir.path()).iter().any(|n| n.ends_with(".upload.json")), "the journal is gone");
        let back = tempdir();
        let out = capstan_with(
            &env,
            &["tiers", "fetch", &stem(&wav), back.path().to_str().unwrap(), "--offsite", url],
        );
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        assert_eq!(std::fs::read(back.path().join(wav.file_name().unwrap())).unwrap(), local, "{url}");
        assert_eq!(std::fs::read(&wav).unwrap(), local);
    }
}
