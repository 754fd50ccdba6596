//! capstan as an NSM client (New Session Manager, RaySession): launched
//! with `NSM_URL` and no arguments. Control thread only.
//!
//! Order of events, as the NSM API 1.1 asks:
//! 1. announce, before anything else (no JACK client, no files);
//! 2. on `/nsm/client/open`: create the client directory, lock it, load
//!    or create `capstan.json`, then open the JACK client named exactly
//!    `client_id` and listen for OSC; answer the open;
//! 3. run the recorder ([`Daemon`]) and answer `save` at any time, also
//!    while recording; report dirty/clean, a label (`REC 00:12:34`) and
//!    messages (errors, lost frames, the OSC port);
//! 4. SIGTERM: finish the take and exit 0.
//!
//! If the server does not answer the announce, capstan runs unmanaged and
//! says so.

pub mod config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use nsm::{ClientMessage, ErrorCode, NsmError, ServerMessage};

use crate::control::state::State;
use crate::daemon::{Daemon, Hosting, Notice};
use crate::lock::{self, LockError};
pub use config::SessionConfig;

/// What capstan implements of the optional NSM features.
pub const CAPABILITIES: &str = ":dirty:message:progress:optional-gui:";
/// How long to wait for the server's answer to the announce.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);
const OPEN: &str = "/nsm/client/open";
const SAVE: &str = "/nsm/client/save";

/// True when capstan was started by a session manager: `NSM_URL` set and
/// no arguments (NSM launches clients by bare name).
pub fn launched_by_nsm() -> bool {
    std::env::var_os("NSM_URL").is_some() && std::env::args_os().len() == 1
}

/// Runs capstan under the session manager named by `NSM_URL`.
pub fn run() -> Result<ExitCode> {
    let term = crate::signals::stop_flag()?;
    // nsmd matches the announce to the process it launched by this string.
    let argv0 = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let client = match nsm::Client::from_env() {
        Some(Ok(c)) => c,
        Some(Err(e)) => return unmanaged(&format!("{e}"), None, &term),
        None => return unmanaged("NSM_URL is not set", None, &term),
    };
    match client.announce("capstan", CAPABILITIES, &argv0, ANNOUNCE_TIMEOUT) {
        Ok((welcome, early)) => {
            tracing::info!(
                "NSM: announced to {} ({}): {}",
                welcome.server_name,
                client.server(),
                welcome.message
            );
            managed(client, early, &term)
        }
        Err(NsmError::Refused { code, message }) => {
            anyhow::bail!("the NSM server refused capstan ({code:?}): {message}")
        }
        Err(e) => unmanaged(&format!("{e}"), Some(client), &term),
    }
}

/// Why `open` failed, as NSM wants it: an error code and a sentence.
struct OpenFailure {
    code: ErrorCode,
    text: String,
}

impl OpenFailure {
    fn new(code: ErrorCode, text: impl Into<String>) -> OpenFailure {
        OpenFailure { code, text: text.into() }
    }
}

/// An open session: where its files live and what it last saved.
struct Session {
    path: PathBuf,
    /// The instance lock in the client directory, held until exit.
    _lock: lock::DirLock,
    config: SessionConfig,
    dirty: bool,
    label: String,
    last_label: Instant,
}

/// Sends to the server; a lost datagram is logged, never fatal.
fn send(client: &nsm::Client, m: ClientMessage) {
    if let Err(e) = client.send(&m) {
        tracing::warn!("NSM: sending {m:?}: {e}");
    }
}

/// The next message from the server, if any. A socket error is logged and
/// treated as silence: a session manager's trouble must never end a take.
fn receive(client: &nsm::Client, timeout: Duration) -> Option<ServerMessage> {
    match client.recv(timeout) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("NSM: receiving: {e}");
            std::thread::sleep(timeout);
            None
        }
    }
}

fn progress(client: &nsm::Client, p: f32) {
    send(client, ClientMessage::Progress(p));
}

fn message(client: &nsm::Client, priority: i32, text: impl Into<String>) {
    send(client, ClientMessage::Message { priority, text: text.into() });
}

fn managed(client: nsm::Client, early: Vec<ServerMessage>, term: &AtomicBool) -> Result<ExitCode> {
    let mut pending = early.into_iter();
    // Until `open`, capstan has no JACK client and no files.
    let (daemon, mut session) = loop {
        if term.load(Relaxed) {
            tracing::info!("NSM: terminated before the session was opened");
            return Ok(ExitCode::SUCCESS);
        }
        let m = match pending.next() {
            Some(m) => Some(m),
            None => receive(&client, Duration::from_millis(50)),
        };
        match m {
            Some(ServerMessage::Open { path, display_name, client_id }) => {
                match open(&client, Path::new(&path), &display_name, &client_id) {
                    Ok(opened) => break opened,
                    Err(f) => {
                        tracing::error!("NSM open {path}: {}", f.text);
                        message(&client, 3, f.text.clone());
                        send(
                            &client,
                            ClientMessage::Error { to: OPEN.into(), code: f.code, message: f.text },
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Some(ServerMessage::Save) => send(
                &client,
                ClientMessage::Error {
                    to: SAVE.into(),
                    code: ErrorCode::NoSessionOpen,
                    message: "capstan has no session open yet".into(),
                },
            ),
            Some(other) => tracing::debug!("NSM: before open: {other:?}"),
            None => {}
        }
    };

    daemon.serve(term, |daemon| {
        while let Some(m) = receive(&client, Duration::from_millis(1)) {
            handle(&client, daemon, &mut session, m);
        }
        for Notice { priority, text } in daemon.take_notices() {
            message(&client, priority, text);
        }
        if daemon.take_config_change() && !session.dirty {
            session.dirty = true;
            send(&client, ClientMessage::IsDirty);
        }
        update_label(&client, daemon, &mut session);
    });
    Ok(ExitCode::SUCCESS)
}

/// Opens the session at `path`: everything `/nsm/client/open` asks for,
/// then the reply.
fn open(
    client: &nsm::Client,
    path: &Path,
    display_name: &str,
    client_id: &str,
) -> Result<(Daemon, Session), OpenFailure> {
    progress(client, 0.0);
    std::fs::create_dir_all(path).map_err(|e| {
        OpenFailure::new(ErrorCode::CreateFailed, format!("cannot create {}: {e}", path.display()))
    })?;
    // The lock comes before anything is read or written: a second capstan
    // on the same path changes nothing.
    let held = lock::acquire(path).map_err(|e| match e {
        LockError::Held { pid, .. } => OpenFailure::new(
            ErrorCode::General,
            format!("this session's capstan is already running (pid {pid}) on {}", path.display()),
        ),
        e => OpenFailure::new(ErrorCode::CreateFailed, e.to_string()),
    })?;
    let (config, created) = match SessionConfig::load(path) {
        Ok(Some(c)) => (c, false),
        Ok(None) => (SessionConfig::default(), true),
        Err(e) => {
            let kept = match config::set_aside(path) {
                Ok(to) => format!("kept as {}", to.display()),
                Err(err) => format!("could not be moved aside ({err})"),
            };
            return Err(OpenFailure::new(
                ErrorCode::BadProject,
                format!("{e}; the file is {kept}; restart capstan to start from default settings"),
            ));
        }
    };
    progress(client, 0.3);
    let args = config.to_args(client_id, path, display_name);
    let avoid_ports = config::sibling_ports(path);
    // NSM keeps each client's files in `<session>/<client_id>`.
    let session = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    let hosting = Hosting {
        lock_held: true,
        wait_for_jack: true,
        exact_name: true,
        osc_fallback: true,
        avoid_ports,
        session,
    };
    let daemon =
        Daemon::open(args, hosting).map_err(|e| OpenFailure::new(ErrorCode::General, format!("{e:#}")))?;
    progress(client, 0.8);
    let port = daemon.osc_addr().map_or(0, |a| a.port());
    let mut session = Session {
        path: path.to_path_buf(),
        _lock: held,
        config,
        dirty: false,
        label: String::new(),
        last_label: Instant::now(),
    };
    if created {
        // A new session keeps the port it actually got, so that a second
        // capstan in the same session has its own for good.
        session.config.osc_port = port;
        if let Some(web) = daemon.web_port() {
            session.config.http_port = web;
        }
        session.config.save(path).map_err(|e| OpenFailure::new(ErrorCode::CreateFailed, e.to_string()))?;
    } else if port != session.config.osc_port {
        message(
            client,
            3,
            format!(
                "OSC port {saved} is taken by another program; capstan listens on {port} while it runs and \
                 tries {saved} again the next time the session opens (capstan.json keeps {saved})",
                saved = session.config.osc_port
            ),
        );
    }
    let a = daemon.args();
    let osc = daemon.osc_addr().map(|x| x.to_string()).unwrap_or_default();
    let web = daemon.web_url().unwrap_or_else(|| "off".into());
    let summary =
        format!("{} inputs, takes in {}, OSC on {osc}, web page {web}", a.settings.ports, a.dir.display());
    tracing::info!("NSM: opened {}: {summary}", path.display());
    progress(client, 1.0);
    message(client, 1, format!("OSC on {osc}"));
    message(client, 1, format!("web page {web}"));
    send(client, ClientMessage::Reply { to: OPEN.into(), message: format!("capstan: {summary}") });
    send(client, ClientMessage::IsClean);
    // The GUI is the web page, not open until asked for.
    send(client, ClientMessage::GuiIsHidden);
    Ok((daemon, session))
}

/// A message from the server while the session is open.
fn handle(client: &nsm::Client, daemon: &mut Daemon, session: &mut Session, m: ServerMessage) {
    match m {
        ServerMessage::Save => {
            session.config.update_from(daemon.args());
            match session.config.save(&session.path) {
                Ok(()) => {
                    tracing::info!("NSM: saved {}", session.path.join(config::FILE).display());
                    send(client, ClientMessage::Reply { to: SAVE.into(), message: "saved".into() });
                    session.dirty = false;
                    send(client, ClientMessage::IsClean);
                }
                Err(e) => {
                    tracing::error!("NSM save: {e}");
                    message(client, 3, e.to_string());
                    send(
                        client,
                        ClientMessage::Error {
                            to: SAVE.into(),
                            code: ErrorCode::General,
                            message: e.to_string(),
                        },
                    );
                }
            }
        }
        ServerMessage::Open { path, .. } => send(
            client,
            ClientMessage::Error {
                to: OPEN.into(),
                code: ErrorCode::NotNow,
                message: format!(
                    "capstan cannot switch sessions; it is recording into {} (restart it to open {path})",
                    session.path.display()
                ),
            },
        ),
        ServerMessage::SessionIsLoaded => tracing::debug!("NSM: session is loaded"),
        ServerMessage::ShowOptionalGui => {
            let shown = match daemon.web_url() {
                Some(url) => open_in_browser(&url).map_err(|e| format!("cannot open {url}: xdg-open: {e}")),
                None => Err("the web page is off (--no-http)".to_string()),
            };
            match shown {
                Ok(()) => send(client, ClientMessage::GuiIsShown),
                Err(e) => {
                    tracing::warn!("NSM: {e}");
                    message(client, 2, e);
                    send(client, ClientMessage::GuiIsHidden);
                }
            }
        }
        // A browser's tab is the user's to close: the manager's button
        // goes back to "hidden" (showing again opens the page again).
        ServerMessage::HideOptionalGui => send(client, ClientMessage::GuiIsHidden),
        other => tracing::debug!("NSM: ignored {other:?}"),
    }
}

/// Opens `url` in the user's browser (`xdg-open`, found on PATH), without
/// waiting for it.
fn open_in_browser(url: &str) -> std::io::Result<()> {
    let mut child = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// `REC 00:12:34` while recording, else the state (and the OSC port when
/// idle), sent when it changes and at most twice a second.
fn update_label(client: &nsm::Client, daemon: &Daemon, session: &mut Session) {
    if session.last_label.elapsed() < Duration::from_millis(500) {
        return;
    }
    session.last_label = Instant::now();
    let label = match (daemon.state(), daemon.take_seconds()) {
        (State::Recording | State::Stopping, Some(secs)) => {
            let t = secs as u64;
            format!("REC {:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
        }
        (State::Error, _) => "ERROR".to_string(),
        (State::Idle, _) => format!("idle, OSC {}", daemon.osc_addr().map_or(0, |a| a.port())),
        (st, _) => st.name().to_string(),
    };
    if label != session.label {
        send(client, ClientMessage::Label(label.clone()));
        session.label = label;
    }
}

/// No session manager answered: run as `capstan daemon` would with its
/// defaults, takes in `$HOME/capstan`, and say so. A late `open` is refused
/// with a reason (nsmd shows it), since the recorder is already running.
fn unmanaged(why: &str, client: Option<nsm::Client>, term: &AtomicBool) -> Result<ExitCode> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let dir = home.join("capstan");
    let args = crate::daemon::DaemonArgs { dir: dir.clone(), ..Default::default() };
    tracing::warn!(
        "no session manager ({why}); running unmanaged: takes in {}, OSC on {}:{}",
        dir.display(),
        args.settings.osc_bind,
        args.settings.osc_port
    );
    let daemon = Daemon::open(args, Hosting::default())?;
    daemon.serve(term, |_| {
        let Some(c) = &client else { return };
        while let Some(m) = receive(c, Duration::from_millis(1)) {
            if let ServerMessage::Open { .. } = m {
                tracing::warn!("NSM: open arrived after capstan went unmanaged; refused");
                send(
                    c,
                    ClientMessage::Error {
                        to: OPEN.into(),
                        code: ErrorCode::NotNow,
                        message: format!(
                            "capstan got no answer to its announce within {ANNOUNCE_TIMEOUT:?} and runs \
                             unmanaged (takes in {}); restart it from the session manager",
                            dir.display()
                        ),
                    },
                );
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}
