//! capstan under a session manager, end to end: our protocol-level NSM
//! server (`nsm::server::TestServer`) launches the built binary the way
//! nsmd does (bare name, PATH lookup, no arguments, NSM_URL) and drives
//! open/save/session_is_loaded/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nsm::server::{Answer, TestServer};
use nsm::{ClientMessage, ErrorCode};
use rosc::OscType;

use crate::harness::*;

/// A session's parent directory on a filesystem of its own (a 1 GiB
/// tmpfs) where root may mount one. capstan in a session records with its
/// defaults (room for 10 minutes, 15% of the volume left free), which a
/// shared machine's nearly full disk may not give (found at 15.2% free);
/// elsewhere it is an ordinary temporary directory.
struct SessionDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SessionDisk {
    fn new() -> SessionDisk {
        let dir = tempdir();
        let mounted = crate::storage::mount_tmpfs(dir.path(), "1g");
        SessionDisk { dir, mounted }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SessionDisk {
    fn drop(&mut self) {
        if self.mounted {
            crate::storage::umount(self.dir.path());
        }
    }
}

const OPEN: &str = "/nsm/client/open";
const SAVE: &str = "/nsm/client/save";

/// One capstan launched by a test NSM server.
struct Managed {
    nsm: TestServer,
    child: Option<Child>,
    home: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    Path::new(CAPSTAN).parent().unwrap().to_path_buf()
}

impl Managed {
    /// Launches capstan and checks its announce.
    fn launch(server: &JackServer) -> Managed {
        Self::launch_with(server, &[])
    }

    /// [`Self::launch`] with more environment.
    fn launch_with(server: &JackServer, extra: &[(&str, &str)]) -> Managed {
        let mut nsm = TestServer::new().unwrap();
        let home = tempdir();
        let home_s = home.path().to_str().unwrap().to_string();
        let mut env = vec![
            ("JACK_DEFAULT_SERVER", server.name.as_str()),
            ("JACK_NO_START_SERVER", "1"),
            ("HOME", home_s.as_str()),
        ];
        env.extend_from_slice(extra);
        let child = nsm.launch(&bin_dir(), "capstan", &env).unwrap();
        let a = nsm.expect_announce(Duration::from_secs(15)).unwrap();
        assert_eq!(a.application_name, "capstan");
        assert_eq!(a.executable_name, "capstan", "argv[0] exactly as launched");
        assert_eq!((a.api_major, a.api_minor), (1, 1));
        assert_eq!(a.pid, child.id() as i32);
        for cap in [":dirty:", ":message:", ":progress:", ":optional-gui:"] {
            assert!(a.capabilities.contains(cap), "{}", a.capabilities);
        }
        assert!(a.capabilities.starts_with(':') && a.capabilities.ends_with(':'));
        Managed { nsm, child: Some(child), home }
    }

    fn open(&mut self, path: &Path, display: &str, id: &str) -> Answer {
        self.nsm.welcome();
        self.nsm.open(path, display, id);
        self.nsm.answer(OPEN, Duration::from_secs(20)).expect("no answer to open")
    }

    fn save(&mut self) -> Answer {
        self.nsm.save();
        self.nsm.answer(SAVE, Duration::from_secs(10)).expect("no answer to save")
    }

    /// The OSC port capstan reported in its NSM message line.
    fn osc_port(&mut self) -> u16 {
        let is_port = |m: &ClientMessage| matches!(m, ClientMessage::Message { text, .. } if text.starts_with("OSC on"));
        if self.nsm.logged(is_port).is_empty() {
            self.nsm.wait_for(Duration::from_secs(5), is_port);
        }
        let lines = self.nsm.logged(|m| matches!(m, ClientMessage::Message { .. }));
        lines
            .iter()
            .find_map(|m| match m {
                ClientMessage::Message { text, .. } => text.strip_prefix("OSC on 127.0.0.1:")?.parse().ok(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no OSC port in the messages: {lines:?}"))
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let c = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "capstan did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, as NSM sends on close and quit; exit status and time taken.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        let t = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let st = self.wait_exit(Duration::from_secs(10));
        (st, t.elapsed())
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn jack_ports(server: &JackServer) -> Vec<String> {
    let out = run(server.cmd("jack_lsp"));
    text(&out.stdout).lines().map(str::to_string).collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn config(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("capstan.json")).unwrap()).unwrap()
}

fn connect(server: &JackServer, from: &str, to: &str) {
    let st = server.cmd("jack_connect").args([from, to]).status().unwrap();
    assert!(st.success(), "jack_connect {from} {to}");
}

#[test]
fn session_lifecycle_open_take_save_terminate_reopen() {
    let server = JackServer::start(256);
    let src = server.source(2);
    let session = SessionDisk::new();
    let path = session.path().join("capstan.nTEST");
    let mut m = Managed::launch(&server);
    // Announced, not yet opened: no JACK client, nothing on disk.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!jack_ports(&server).iter().any(|p| p.starts_with("nTEST:") || p.starts_with("capstan")));
    assert!(!path.exists());

    let reply = m.open(&path, "My Gig", "nTEST").unwrap();
    assert!(reply.contains("2 inputs"), "{reply}");
    m.nsm.session_is_loaded();
    assert!(path.join("takes").is_dir() && path.join(".capstan.lock").exists());
    let c = config(&path);
    assert_eq!((c["ports"].as_u64(), c["version"].as_u64()), (Some(2), Some(1)));
    let port = m.osc_port();
    assert_eq!(c["osc_port"].as_u64(), Some(port as u64), "the port it got is saved");
    // The JACK client is named exactly client_id.
    let ports = jack_ports(&server);
    assert!(ports.contains(&"nTEST:in_1".into()) && ports.contains(&"nTEST:in_2".into()), "{ports:?}");
    let progress = m.nsm.logged(|m| matches!(m, ClientMessage::Progress(_)));
    assert_eq!(progress.last(), Some(&ClientMessage::Progress(1.0)), "{progress:?}");
    assert!(m.nsm.wait_for(Duration::from_secs(5), |m| *m == ClientMessage::IsClean).is_some());

    connect(&server, "src:out_1", "nTEST:in_1");
    connect(&server, "src:out_2", "nTEST:in_2");
    let (addr, args) = osc(port, "/record/start", vec![OscType::String("verse".into())]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    // The label counts the take; a save in the middle does not disturb it.
    let rec = m
        .nsm
        .wait_for(Duration::from_secs(10), |m| matches!(m, ClientMessage::Label(l) if l == "REC 00:00:01"));
    assert!(rec.is_some(), "labels: {:?}", m.nsm.logged(|m| matches!(m, ClientMessage::Label(_))));
    assert_eq!(m.save(), Ok("saved".into()));
    std::thread::sleep(Duration::from_millis(500));
    let (addr, args) = osc(port, "/record/stop", vec![]).unwrap();
    assert_eq!(addr, "/reply", "{args:?}");
    let takes = wavs(&path.join("takes"));
    assert_eq!(takes.len(), 1, "{takes:?}");
    let name = takes[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("My_Gig_verse_"), "project is the display name: {name}");

    // A setting changed over OSC marks the session dirty until saved.
    let (addr, args) = osc(port, "/config/ports", vec![OscType::Int(3)]).unwrap();
    assert_eq!(
        (addr.as_str(), &args[..]),
        ("/reply", &[OscType::String("/config/ports".into()), OscType::Int(3)][..])
    );
    assert!(m.nsm.wait_for(Duration::from_secs(5), |m| *m == ClientMessage::IsDirty).is_some());
    assert!(jack_ports(&server).contains(&"nTEST:in_3".into()));
    assert!(jack_ports(&server).contains(&"nTEST:in_1".into()));
    assert_eq!(config(&path)["ports"].as_u64(), Some(2), "nothing written before save");
    assert_eq!(m.save(), Ok("saved".into()));
    assert!(m.nsm.wait_for(Duration::from_secs(5), |m| *m == ClientMessage::IsClean).is_some());
    assert_eq!(config(&path)["ports"].as_u64(), Some(3));

    let (st, took) = m.terminate();
    assert_eq!(st.code(), Some(0));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    assert!(m.nsm.rejected.is_empty(), "{:?}", m.nsm.rejected);
    let (_, truth) = src.stop_truth();
    assert_take(&takes[0], Some(&truth));

    // Relaunch with the same path and id: same settings, old take kept, a
    // new take gets a new name.
    let src = server.source(3);
    let mut m = Managed::launch(&server);
    assert!(m.open(&path, "My Gig", "nTEST").is_ok());
    assert_eq!(m.osc_port(), port);
    assert!(jack_ports(&server).contains(&"nTEST:in_3".into()));
    for i in 1..=3 {
        connect(&server, &format!("src:out_{i}"), &format!("nTEST:in_{i}"));
    }
    assert_eq!(osc(port, "/record/start", vec![]).unwrap().0, "/reply");
    std::thread::sleep(Duration::from_millis(800));
    // SIGTERM while recording: the take is finished, exit 0 within 2 s.
    let (st, took) = m.terminate();
    assert_eq!(st.code(), Some(0));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let (_, truth) = src.stop_truth();
    let now = wavs(&path.join("takes"));
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&takes[0]));
    let new = now.iter().find(|p| **p != takes[0]).unwrap();
    let v = assert_take(new, Some(&truth));
    assert!(v.frames > 0);
    let manifest = std::fs::read_to_string(new.with_extension("take.json")).unwrap();
    assert!(manifest.contains("\"complete\""), "{manifest}");
}

#[test]
fn second_instance_on_the_same_path_is_refused_and_changes_nothing() {
    let server = JackServer::start(256);
    let session = tempdir();
    let path = session.path().join("capstan.nONE");
    let mut first = Managed::launch(&server);
    assert!(first.open(&path, "s", "nONE").is_ok());
    let before = std::fs::read(path.join("capstan.json")).unwrap();
    let mtime = std::fs::metadata(path.join("capstan.json")).unwrap().modified().unwrap();

    let mut second = Managed::launch(&server);
    let (code, text) = second.open(&path, "s", "nTWO").unwrap_err();
    assert_eq!(code, ErrorCode::General);
    let pid = first.child.as_ref().unwrap().id();
    assert!(text.contains(&format!("already running (pid {pid})")), "{text}");
    let st = second.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(1));
    assert!(!jack_ports(&server).iter().any(|p| p.starts_with("nTWO:")));
    assert_eq!(std::fs::read(path.join("capstan.json")).unwrap(), before);
    assert_eq!(std::fs::metadata(path.join("capstan.json")).unwrap().modified().unwrap(), mtime);
    // The first one is untouched and still answers.
    assert_eq!(osc(first.osc_port(), "/record/status", vec![]).unwrap().0, "/reply");
    assert_eq!(first.terminate().0.code(), Some(0));
}

#[test]
fn corrupt_settings_are_refused_kept_aside_then_replaced_by_defaults() {
    let server = JackServer::start(256);
    let session = tempdir();
    let path = session.path().join("capstan.nBAD");
    std::fs::create_dir_all(&path).unwrap();
    let bad = "{\"ports\": 4, \"sample_format\": ";
    std::fs::write(path.join("capstan.json"), bad).unwrap();
    let mut m = Managed::launch(&server);
    let (code, text) = m.open(&path, "s", "nBAD").unwrap_err();
    assert_eq!(code, ErrorCode::BadProject);
    assert!(text.contains("capstan.json is not a valid capstan settings file"), "{text}");
    assert!(text.contains("kept as"), "{text}");
    let shown = m.nsm.logged(|m| matches!(m, ClientMessage::Message { priority: 3, .. }));
    assert!(!shown.is_empty(), "the error is shown in the session manager");
    assert_eq!(m.wait_exit(Duration::from_secs(5)).code(), Some(1));
    assert!(!jack_ports(&server).iter().any(|p| p.starts_with("nBAD:")));
    assert!(!path.join("capstan.json").exists());
    let aside: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("capstan.json.bad-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), bad);

    // The next launch starts from defaults and leaves the bad file alone.
    let mut m = Managed::launch(&server);
    assert!(m.open(&path, "s", "nBAD").is_ok());
    assert_eq!(config(&path)["ports"].as_u64(), Some(2));
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), bad);
    assert_eq!(m.terminate().0.code(), Some(0));
}

#[test]
fn silent_server_means_unmanaged_and_a_late_open_is_refused() {
    let server = JackServer::start(256);
    let mut m = Managed::launch(&server);
    // Never answer the announce. After its timeout capstan runs unmanaged
    // with the daemon's defaults, takes in $HOME/capstan.
    let home = m.home.path().to_path_buf();
    assert!(
        wait_until(Duration::from_secs(15), || jack_ports(&server).contains(&"capstan:in_1".into())),
        "no unmanaged JACK client"
    );
    assert!(home.join("capstan").is_dir());
    assert_eq!(osc(7770, "/record/status", vec![]).unwrap().0, "/reply");
    // The server wakes up late: the open is refused with the reason.
    m.nsm.open(&home.join("s/capstan.nLATE"), "s", "nLATE");
    let (code, text) = m.nsm.answer(OPEN, Duration::from_secs(5)).unwrap().unwrap_err();
    assert_eq!(code, ErrorCode::NotNow);
    assert!(text.contains("runs unmanaged"), "{text}");
    assert!(!home.join("s").exists());
    assert_eq!(m.terminate().0.code(), Some(0));

    // A refused announce is an error exit with the server's reason; SIGTERM
    // before any open is a clean exit.
    let mut m = Managed::launch(&server);
    m.nsm.refuse(ErrorCode::Blacklisted, "not in this studio");
    assert_eq!(m.wait_exit(Duration::from_secs(5)).code(), Some(1));
    let mut m = Managed::launch(&server);
    m.nsm.welcome();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(m.terminate().0.code(), Some(0));
}

#[test]
fn open_before_jack_runs_then_connects_when_it_starts() {
    // Sessions often start their clients before (or without) JACK. The open
    // succeeds, the window says JACK is missing, and capstan connects as
    // soon as the server appears.
    let name = format!("capstan-test-late-{}", std::process::id());
    let session = SessionDisk::new();
    let path = session.path().join("capstan.nLATE");
    let nsm = TestServer::new().unwrap();
    let home = tempdir();
    let env = [
        ("JACK_DEFAULT_SERVER", name.as_str()),
        ("JACK_NO_START_SERVER", "1"),
        ("HOME", home.path().to_str().unwrap()),
    ];
    let child = nsm.launch(&bin_dir(), "capstan", &env).unwrap();
    let mut m = Managed { nsm, child: Some(child), home };
    m.nsm.expect_announce(Duration::from_secs(15)).unwrap();
    assert!(m.open(&path, "s", "nLATE").is_ok());
    let said = m.nsm.wait_for(
        Duration::from_secs(5),
        |m| matches!(m, ClientMessage::Message { priority: 3, text } if text.contains("JACK")),
    );
    assert!(said.is_some(), "{:?}", m.nsm.log);
    let port = m.osc_port();
    let (addr, args) = osc(port, "/record/start", vec![]).unwrap();
    assert_eq!(addr, "/error", "no take without JACK: {args:?}");

    let server = JackServer::start_named(name, 256);
    assert!(
        wait_until(Duration::from_secs(15), || jack_ports(&server).contains(&"nLATE:in_1".into())),
        "capstan did not connect to the late JACK server"
    );
    let back = m.nsm.wait_for(
        Duration::from_secs(5),
        |m| matches!(m, ClientMessage::Message { text, .. } if text.contains("JACK is running")),
    );
    assert!(back.is_some());
    assert!(wait_until(Duration::from_secs(5), || osc(port, "/record/start", vec![]).unwrap().0 == "/reply"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(osc(port, "/record/stop", vec![]).unwrap().0, "/reply");
    assert_eq!(wavs(&path.join("takes")).len(), 1);
    assert_eq!(m.terminate().0.code(), Some(0));
}

#[test]
fn a_taken_port_falls_back_to_one_no_sibling_capstan_saved() {
    let server = JackServer::start(256);
    let session = tempdir();
    let (a, b) = (session.path().join("capstan.nAAAA"), session.path().join("capstan.nBBBB"));
    // Two capstans saved neighbouring ports; another program holds A's.
    let port = loop {
        let p = free_port();
        if p < 65000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    for (dir, p) in [(&a, port), (&b, port + 1)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("capstan.json"), format!("{{\"osc_port\": {p}}}")).unwrap();
    }
    let squatter = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let mut first = Managed::launch(&server);
    assert!(first.open(&a, "s", "nAAAA").is_ok());
    let got = first.osc_port();
    assert!(got != port && got != port + 1, "A took {got}: its own is taken, {} is B's", port + 1);
    let said =
        first.nsm.logged(|m| matches!(m, ClientMessage::Message { text, .. } if text.contains("is taken")));
    let ClientMessage::Message { text, .. } = &said[0] else { panic!("{said:?}") };
    assert!(text.contains(&format!("listens on {got}")) && text.contains("next time"), "{text}");
    // B gets the port it saved.
    let mut second = Managed::launch(&server);
    assert!(second.open(&b, "s", "nBBBB").is_ok());
    assert_eq!(second.osc_port(), port + 1);
    assert_eq!(osc(got, "/record/status", vec![]).unwrap().0, "/reply");
    // A's saved port is unchanged: it is A's again when the session reopens.
    assert_eq!(config(&a)["osc_port"].as_u64(), Some(port as u64));
    drop(squatter);
    assert_eq!(first.terminate().0.code(), Some(0));
    assert_eq!(second.terminate().0.code(), Some(0));
}

/// In a session, saved --connect patterns that now match more ports than
/// the session's inputs (more hardware plugged in) still open the session:
/// the first inputs' worth are connected and the manager shows why. (On
/// the command line the same is refused, as `record` refuses it.)
#[test]
fn a_session_whose_patterns_match_more_ports_opens_and_says_so() {
    let server = JackServer::start(256);
    let _src = server.source(3);
    let session = tempdir();
    let path = session.path().join("capstan.nCON");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("capstan.json"), r#"{"ports": 2, "connect": ["src:out_*"]}"#).unwrap();
    let mut m = Managed::launch(&server);
    let reply = m.open(&path, "s", "nCON").unwrap();
    assert!(reply.contains("2 inputs"), "{reply}");
    let said = m.nsm.wait_for(
        Duration::from_secs(5),
        |m| matches!(m, ClientMessage::Message { text, .. } if text.contains("match 3 ports")),
    );
    assert!(said.is_some(), "the manager is told: {:?}", m.nsm.logged(|_| true));
    let mut c = server.cmd("jack_lsp");
    c.arg("-c");
    let lsp = text(&run(c).stdout);
    assert!(lsp.contains("nCON:in_2\n   src:out_2"), "{lsp}");
    assert_eq!(m.terminate().0.code(), Some(0));
}

/// The session manager's GUI button (NSM's optional GUI) opens the web
/// page in the user's browser (`xdg-open`, here a stand-in on PATH that
/// notes what it was given), and the page answers there; hiding puts the
/// button back.
#[test]
fn the_gui_button_opens_the_web_page() {
    let server = JackServer::start(256);
    let bin = tempdir();
    let opened = bin.path().join("opened");
    let fake = bin.path().join("xdg-open");
    std::fs::write(&fake, format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display())).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path_env =
        format!("{}:{}:{}", bin_dir().display(), bin.path().display(), std::env::var("PATH").unwrap());
    let mut m = Managed::launch_with(&server, &[("PATH", path_env.as_str())]);
    let session = tempdir();
    let path = session.path().join("capstan.nGUI");
    let reply = m.open(&path, "Gig", "nGUI").unwrap();
    assert!(reply.contains("web page http://127.0.0.1:"), "{reply}");
    m.nsm.wait_for(Duration::from_secs(5), |c| *c == ClientMessage::GuiIsHidden).expect("starts hidden");
    m.nsm.show_optional_gui();
    m.nsm.wait_for(Duration::from_secs(5), |c| *c == ClientMessage::GuiIsShown).expect("shown");
    assert!(wait_until(Duration::from_secs(5), || opened.exists()));
    let url = std::fs::read_to_string(&opened).unwrap().trim().to_string();
    let saved = config(&path)["http_port"].as_u64().unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{saved}/"), "the port it got is saved");
    // The page is there.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", saved as u16)).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{saved}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut s, &mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<title>capstan</title>"), "{page}");
    m.nsm.hide_optional_gui();
    m.nsm.wait_for(Duration::from_secs(5), |c| *c == ClientMessage::GuiIsHidden).expect("hidden again");
}
