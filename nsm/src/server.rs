//! A protocol-level NSM server for tests: it treats one client the way
//! nsmd does (see the crate docs and the NSM API 1.1 document).
//!
//! - launches the client by bare executable name through a PATH lookup,
//!   with no arguments and `NSM_URL=osc.udp://<host name>:<port>/`;
//! - accepts only an announce with the exact tags `sssiii` and remembers
//!   the address it came from; later datagrams from any other address,
//!   and replies with other tags than `ss` / `sis`, are recorded as
//!   rejected (nsmd would ignore them and leave the client pending);
//! - sends open, save and session_is_loaded, and logs everything the
//!   client says (dirty, clean, label, message, progress).
//!
//! It is not a session manager: no session files, one client at a time.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::message::{Announce, ClientMessage, ErrorCode, ServerMessage};

/// The answer to an open or a save.
pub type Answer = Result<String, (ErrorCode, String)>;

pub struct TestServer {
    socket: UdpSocket,
    /// What the client gets in `NSM_URL`.
    pub url: String,
    client: Option<SocketAddr>,
    /// Everything the announced client sent, in order, with arrival time.
    pub log: Vec<(Instant, ClientMessage)>,
    /// Datagrams nsmd would not accept, with the reason.
    pub rejected: Vec<String>,
}

/// The machine's host name, as nsmd puts it in `NSM_URL`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl TestServer {
    /// Listens on every address (like liblo) at a free port.
    pub fn new() -> std::io::Result<TestServer> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        let url = format!("osc.udp://{}:{}/", host_name(), socket.local_addr()?.port());
        Ok(TestServer { socket, url, client: None, log: Vec::new(), rejected: Vec::new() })
    }

    /// Launches `name` (no `/` allowed, as in nsmd) found in `dir` or on
    /// PATH, with no arguments, NSM_URL and the extra environment.
    pub fn launch(&self, dir: &Path, name: &str, env: &[(&str, &str)]) -> std::io::Result<Child> {
        if name.contains('/') {
            return Err(std::io::Error::other("nsmd refuses executable names containing '/'"));
        }
        let path = match std::env::var("PATH") {
            Ok(p) => format!("{}:{p}", dir.display()),
            Err(_) => dir.display().to_string(),
        };
        let mut cmd = Command::new(name);
        cmd.env("PATH", path).env("NSM_URL", &self.url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn()
    }

    /// The next datagram, decoded; `None` on timeout.
    fn next(&mut self, timeout: Duration) -> Option<(SocketAddr, Result<ClientMessage, String>)> {
        self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).ok()?;
        let mut buf = [0u8; 65536];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        Some((from, ClientMessage::decode(&buf[..n]).map_err(|e| e.to_string())))
    }

    /// Waits for the announce; any other datagram before it is rejected.
    pub fn expect_announce(&mut self, timeout: Duration) -> Result<Announce, String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some((from, Ok(ClientMessage::Announce(a)))) => {
                    self.client = Some(from);
                    return Ok(a);
                }
                Some((from, Ok(other))) => {
                    self.rejected.push(format!("{other:?} from {from} before announce"))
                }
                Some((from, Err(e))) => self.rejected.push(format!("from {from}: {e}")),
                None => {}
            }
        }
        Err(format!("no announce within {timeout:?} (rejected: {:?})", self.rejected))
    }

    fn to_client(&self, m: &ServerMessage) {
        if let Some(c) = self.client {
            let _ = self.socket.send_to(&m.encode(), c);
        }
    }

    /// `/reply "/nsm/server/announce" welcome name capabilities`, as nsmd.
    pub fn welcome(&self) {
        self.to_client(&ServerMessage::Reply {
            to: "/nsm/server/announce".into(),
            args: vec![
                "Howdy, what took you so long?".into(),
                "New Session Manager".into(),
                ":server-control:broadcast:optional-gui:".into(),
            ],
        });
    }

    pub fn refuse(&self, code: ErrorCode, message: &str) {
        self.to_client(&ServerMessage::Error {
            to: "/nsm/server/announce".into(),
            code,
            message: message.into(),
        });
    }

    pub fn open(&self, path: &Path, display_name: &str, client_id: &str) {
        self.to_client(&ServerMessage::Open {
            path: path.display().to_string(),
            display_name: display_name.into(),
            client_id: client_id.into(),
        });
    }

    pub fn save(&self) {
        self.to_client(&ServerMessage::Save);
    }

    pub fn session_is_loaded(&self) {
        self.to_client(&ServerMessage::SessionIsLoaded);
    }

    pub fn show_optional_gui(&self) {
        self.to_client(&ServerMessage::ShowOptionalGui);
    }

    pub fn hide_optional_gui(&self) {
        self.to_client(&ServerMessage::HideOptionalGui);
    }

    /// Receives for up to `timeout`, logging what the client says, until
    /// `stop` matches a message (which is returned).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        stop: impl Fn(&ClientMessage) -> bool,
    ) -> Option<ClientMessage> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some((from, _)) if Some(from) != self.client => {
                    self.rejected.push(format!("datagram from {from}, not the announcing socket"))
                }
                Some((_, Ok(m))) => {
                    self.log.push((Instant::now(), m.clone()));
                    if stop(&m) {
                        return Some(m);
                    }
                }
                Some((from, Err(e))) => self.rejected.push(format!("from {from}: {e}")),
                None => {}
            }
        }
        None
    }

    /// Waits for the answer (`/reply ss` or `/error sis`) to `to`.
    pub fn answer(&mut self, to: &str, timeout: Duration) -> Option<Answer> {
        let m = self.wait_for(timeout, |m| match m {
            ClientMessage::Reply { to: t, .. } | ClientMessage::Error { to: t, .. } => t == to,
            _ => false,
        })?;
        Some(match m {
            ClientMessage::Reply { message, .. } => Ok(message),
            ClientMessage::Error { code, message, .. } => Err((code, message)),
            _ => unreachable!("matched above"),
        })
    }

    /// Every message of one kind received so far.
    pub fn logged(&self, pick: impl Fn(&ClientMessage) -> bool) -> Vec<ClientMessage> {
        self.log.iter().map(|(_, m)| m).filter(|m| pick(m)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    /// The test server and the client crate agree, over the host-name URL.
    #[test]
    fn client_and_test_server_talk() {
        let mut server = TestServer::new().unwrap();
        let client = Client::new(crate::parse_url(&server.url).unwrap()).unwrap();
        let t = std::thread::spawn(move || {
            let (w, early) = client.announce("app", ":dirty:", "app", Duration::from_secs(5)).unwrap();
            assert_eq!(w.server_name, "New Session Manager");
            assert!(early.is_empty());
            let Some(ServerMessage::Open { client_id, .. }) = client.recv(Duration::from_secs(5)).unwrap()
            else {
                panic!("no open")
            };
            client.send(&ClientMessage::Reply { to: "/nsm/client/open".into(), message: client_id }).unwrap();
            client.send(&ClientMessage::IsDirty).unwrap();
        });
        let a = server.expect_announce(Duration::from_secs(5)).unwrap();
        assert_eq!((a.executable_name.as_str(), a.api_major, a.api_minor), ("app", 1, 1));
        server.welcome();
        server.open(Path::new("/tmp/s/app.nABCD"), "s", "nABCD");
        assert_eq!(server.answer("/nsm/client/open", Duration::from_secs(5)), Some(Ok("nABCD".into())));
        assert_eq!(
            server.wait_for(Duration::from_secs(5), |m| *m == ClientMessage::IsDirty),
            Some(ClientMessage::IsDirty)
        );
        t.join().unwrap();
        // A stranger's datagram is rejected, not taken for the client's.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.socket.local_addr().unwrap().port();
        stranger.send_to(&ClientMessage::IsClean.encode(), ("127.0.0.1", port)).unwrap();
        assert_eq!(server.wait_for(Duration::from_millis(300), |_| true), None);
        assert_eq!(server.rejected.len(), 1, "{:?}", server.rejected);
    }
}
