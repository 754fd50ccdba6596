//! The web control surface: one page (compiled into the binary, no build
//! step, no CDN), a JSON API, and a stream of meters and state
//! (server-sent events), served on threads of its own.
//!
//! It reads only what the daemon publishes on the [`Board`] (state, take,
//! every input's level) and sends the page's commands to the daemon's own
//! OSC socket, so a press on the page is the same command, answered with
//! the same values and codes, as `oscsend` or `capstan ctl`. It never
//! touches the JACK callback, the disk thread or the control loop.
//!
//! Security: on loopback (the default) local scripts need no token, but a
//! request whose `Host` is not this machine's (DNS rebinding) or whose
//! `Origin` is another site's (a web page pressing record) is refused. On
//! any other address every command must carry the token printed at start.
//! Control thread for [`WebServer::start`]; everything else on the
//! server's own threads.

mod api;

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::disk::meter::LevelSnapshot;

pub use api::{AlarmView, Status};

/// The page, compiled in.
const PAGE: &str = include_str!("page.html");
/// Event streams open at once, at most (each holds a thread).
const MAX_STREAMS: usize = 8;
/// How often a stream sends the meters and state.
const STREAM_EVERY: Duration = Duration::from_millis(40);
/// Longest request body read.
const MAX_BODY: u64 = 4096;

/// What the daemon publishes for the page: its state and every input's
/// level, copied in by the control loop each turn.
#[derive(Debug, Default)]
pub struct Board {
    status: Mutex<Status>,
    levels: Mutex<(Vec<String>, LevelSnapshot)>,
}

impl Board {
    pub fn set_status(&self, s: Status) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }

    /// The inputs' names and their newest levels.
    pub fn set_levels(&self, names: &[String], levels: LevelSnapshot) {
        if let Ok(mut g) = self.levels.lock() {
            if g.0 != names {
                g.0 = names.to_vec();
            }
            g.1 = levels;
        }
    }

    fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn levels(&self) -> (Vec<String>, LevelSnapshot) {
        self.levels.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Where the page's commands go and what the server checks.
struct Shared {
    board: Arc<Board>,
    /// The daemon's OSC socket.
    osc: SocketAddr,
    /// The takes' directory (`/api/takes`).
    dir: PathBuf,
    /// Needed by every command when not on loopback.
    token: Option<String>,
    port: u16,
    loopback: bool,
    streams: AtomicUsize,
    stop: AtomicBool,
}

/// The running server; dropped, it stops.
pub struct WebServer {
    addr: SocketAddr,
    token: Option<String>,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    /// Listens on `bind`:`port` (another free port if that one is taken:
    /// the URL says which), serving `board` and sending commands to the
    /// daemon at `osc`.
    pub fn start(
        bind: &str,
        port: u16,
        board: Arc<Board>,
        osc: SocketAddr,
        dir: PathBuf,
    ) -> io::Result<WebServer> {
        let ip: IpAddr = bind
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("http_bind {bind:?}")))?;
        let server = match tiny_http::Server::http(SocketAddr::new(ip, port)) {
            Ok(s) => s,
            Err(e) if port != 0 => {
                tracing::warn!("web page: port {port} is taken ({e}); listening on another");
                tiny_http::Server::http(SocketAddr::new(ip, 0)).map_err(io::Error::other)?
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        let addr = server.server_addr().to_ip().ok_or_else(|| io::Error::other("not an IP socket"))?;
        let loopback = ip.is_loopback();
        let token = (!loopback).then(new_token).transpose()?;
        let osc =
            if osc.ip().is_unspecified() { SocketAddr::new([127, 0, 0, 1].into(), osc.port()) } else { osc };
        let shared = Arc::new(Shared {
            board,
            osc,
            dir,
            token: token.clone(),
            port: addr.port(),
            loopback,
            streams: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let server = Arc::new(server);
        let (s, sh) = (server.clone(), shared.clone());
        let thread = std::thread::Builder::new().name("capstan-web".into()).spawn(move || serve(&s, &sh))?;
        Ok(WebServer { addr, token, shared, server, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address (with the token, where one is needed).
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match self.addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/#token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// 128 random bits, hex.
fn new_token() -> io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn serve(server: &tiny_http::Server, shared: &Arc<Shared>) {
    while !shared.stop.load(Relaxed) {
        let Ok(req) = server.recv() else { break };
        if req.url() == "/api/events" && *req.method() == tiny_http::Method::Get {
            // A stream holds its thread until the browser goes away.
            if let Err(r) = shared.check(&req, false) {
                let _ = req.respond(r);
                continue;
            }
            if shared.streams.fetch_add(1, Relaxed) >= MAX_STREAMS {
                shared.streams.fetch_sub(1, Relaxed);
                let _ = req.respond(api::json_error(503, "too many pages are open"));
                continue;
            }
            let sh = shared.clone();
            let spawned = std::thread::Builder::new().name("capstan-web-events".into()).spawn(move || {
                api::stream_events(&sh, req);
                sh.streams.fetch_sub(1, Relaxed);
            });
            if spawned.is_err() {
                shared.streams.fetch_sub(1, Relaxed);
            }
            continue;
        }
        let resp = api::handle(shared, req);
        drop(resp);
    }
}

impl Shared {
    /// The request comes from where it may: this machine's page or a local
    /// script on loopback, anyone with the token elsewhere (`command`:
    /// it changes something).
    fn check(&self, req: &tiny_http::Request, command: bool) -> Result<(), api::Reply> {
        let header = |name: &'static str| {
            req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
        };
        if self.loopback {
            // DNS rebinding: a foreign name resolved to 127.0.0.1.
            let host = header("Host").unwrap_or_default();
            let local = [
                format!("127.0.0.1:{}", self.port),
                format!("localhost:{}", self.port),
                format!("[::1]:{}", self.port),
            ];
            if !local.contains(&host) {
                return Err(api::json_error(403, "this page answers only to 127.0.0.1 and localhost"));
            }
            if let Some(origin) = header("Origin") {
                if !local.iter().any(|l| origin == format!("http://{l}")) {
                    return Err(api::json_error(403, "commands from another site's page are refused"));
                }
            }
            return Ok(());
        }
        if command {
            let given = header("Authorization")
                .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
                .or_else(|| api::query(req.url(), "token"));
            if given.is_none() || given != self.token {
                return Err(api::json_error(401, "this command needs the token capstan printed at start"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
