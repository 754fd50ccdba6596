//! A small client library for the NSM API 1.1 (New Session Manager, Non
//! Session Manager, RaySession), over rosc and UDP. No JACK dependency.
//!
//! Points real servers are strict about, and this crate keeps:
//! - `/nsm/server/announce` carries exactly `sssiii`; `executable_name` is
//!   argv[0] exactly as launched (nsmd compares it as a string).
//! - replies are `/reply ss` and errors `/error sis`, nothing else;
//! - everything goes out of the socket that announced (servers match
//!   clients by source address and port).
//!
//! [`message`] is the pure codec; [`Client`] adds the socket.

pub mod message;
/// A protocol-level NSM server for tests (behaves like nsmd, launches and
/// drives a client): only in test builds and with the `test-server` feature,
/// never in the recorder users run.
#[cfg(any(test, feature = "test-server"))]
pub mod server;

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

pub use message::{Announce, ClientMessage, ErrorCode, ServerMessage};

/// The API version this crate speaks.
pub const API_MAJOR: i32 = 1;
pub const API_MINOR: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NsmError {
    #[error("NSM_URL {0:?} is not of the form osc.udp://host:port/")]
    BadUrl(String),
    #[error("cannot resolve the NSM server {0:?}: {1}")]
    Resolve(String, std::io::Error),
    #[error("network error talking to the NSM server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the NSM server did not answer the announce within {0:?}")]
    NoAnswer(Duration),
    #[error("the NSM server refused the announce ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
}

/// Parses `osc.udp://host:port/` (the host is resolved; nsmd sends the
/// machine's host name, not `localhost`).
pub fn parse_url(url: &str) -> Result<SocketAddr, NsmError> {
    let rest = url.trim().strip_prefix("osc.udp://").ok_or_else(|| NsmError::BadUrl(url.into()))?;
    let hostport = rest.trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').ok_or_else(|| NsmError::BadUrl(url.into()))?;
    let port: u16 = port.parse().map_err(|_| NsmError::BadUrl(url.into()))?;
    if host.is_empty() {
        return Err(NsmError::BadUrl(url.into()));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| NsmError::Resolve(url.into(), e))?
        .find(|a| a.is_ipv4())
        .or_else(|| (host, port).to_socket_addrs().ok()?.next())
        .ok_or_else(|| NsmError::Resolve(url.into(), std::io::Error::other("no address")))
}

/// What the server said to the announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub message: String,
    pub server_name: String,
    /// e.g. `:server-control:broadcast:optional-gui:`
    pub server_capabilities: String,
}

/// A session-managed client: one UDP socket, used for everything.
///
/// Only the server may tell it what to do (`open` chooses a directory to
/// write into): a datagram counts only if it comes from the server's port
/// and the server's own address. A server on this machine is reached over
/// loopback, which no other machine can send to, and it answers from the
/// loopback address whatever address `NSM_URL` names; once it has answered,
/// its exact address and port are the only ones accepted.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    /// Addresses the server may answer from (one, once it has answered).
    server_ips: std::cell::RefCell<Vec<std::net::IpAddr>>,
}

impl Client {
    /// Binds a socket for talking to `server`: on loopback if the server runs
    /// on this machine.
    pub fn new(server: SocketAddr) -> Result<Client, NsmError> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let loopback =
            if server.is_ipv4() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(Ipv6Addr::LOCALHOST) };
        // An address of this machine is one a socket can be bound to.
        let local = server.ip().is_loopback() || UdpSocket::bind((server.ip(), 0)).is_ok();
        let (bind, server_ips) = if local {
            (SocketAddr::new(loopback, 0), vec![server.ip(), loopback])
        } else {
            let any = if server.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            (SocketAddr::new(any, 0), vec![server.ip()])
        };
        Ok(Client { socket: UdpSocket::bind(bind)?, server, server_ips: std::cell::RefCell::new(server_ips) })
    }

    /// Whether a datagram from `from` is the server's; the first one pins
    /// the server's address.
    fn is_server(&self, from: SocketAddr) -> bool {
        let mut ips = self.server_ips.borrow_mut();
        if from.port() != self.server.port() || !ips.contains(&from.ip()) {
            return false;
        }
        if ips.len() > 1 {
            *ips = vec![from.ip()];
        }
        true
    }

    /// The client for `NSM_URL`, if it is set.
    pub fn from_env() -> Option<Result<Client, NsmError>> {
        let url = std::env::var("NSM_URL").ok()?;
        Some(parse_url(&url).and_then(Client::new))
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn send(&self, m: &ClientMessage) -> Result<(), NsmError> {
        self.socket.send_to(&m.encode(), self.server)?;
        Ok(())
    }

    /// Announces and waits up to `timeout` for the server's answer; other
    /// messages arriving meanwhile (an early `open`) are returned too, to be
    /// handled in order.
    pub fn announce(
        &self,
        application_name: &str,
        capabilities: &str,
        executable_name: &str,
        timeout: Duration,
    ) -> Result<(Welcome, Vec<ServerMessage>), NsmError> {
        self.send(&ClientMessage::Announce(message::Announce {
            application_name: application_name.into(),
            capabilities: capabilities.into(),
            executable_name: executable_name.into(),
            api_major: API_MAJOR,
            api_minor: API_MINOR,
            pid: std::process::id() as i32,
        }))?;
        let deadline = Instant::now() + timeout;
        let mut early = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left.max(Duration::from_millis(1)))? {
                Some(ServerMessage::Reply { to, args }) if to == "/nsm/server/announce" => {
                    let mut a = args.into_iter();
                    return Ok((
                        Welcome {
                            message: a.next().unwrap_or_default(),
                            server_name: a.next().unwrap_or_default(),
                            server_capabilities: a.next().unwrap_or_default(),
                        },
                        early,
                    ));
                }
                Some(ServerMessage::Error { to, code, message }) if to == "/nsm/server/announce" => {
                    return Err(NsmError::Refused { code, message });
                }
                Some(other) => early.push(other),
                None => {}
            }
        }
        Err(NsmError::NoAnswer(timeout))
    }

    /// The next message from the server, waiting up to `timeout`. Datagrams
    /// from anyone else, and malformed ones, are dropped.
    pub fn recv(&self, timeout: Duration) -> Result<Option<ServerMessage>, NsmError> {
        self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 65536];
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) if self.is_server(from) => Ok(ServerMessage::decode(&buf[..n]).ok()),
            Ok(_) => Ok(None),
            // A signal (SIGTERM, SIGCHLD) interrupting the wait is not an error.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local process that sends an `open` from another address with the
    /// server's port number (127.0.0.2), or from the server's address with
    /// another port, is not heard; the server is, and the client talks from
    /// loopback only.
    #[test]
    fn only_the_server_is_heard() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = Client::new(server.local_addr().unwrap()).unwrap();
        client.send(&ClientMessage::IsDirty).unwrap();
        let mut buf = [0u8; 1024];
        let (_, at) = server.recv_from(&mut buf).unwrap();
        assert!(at.ip().is_loopback(), "{at}");
        let open = |dir: &str| {
            ServerMessage::Open { path: dir.into(), display_name: "s".into(), client_id: "nX".into() }
                .encode()
        };
        let spoofer = UdpSocket::bind(("127.0.0.2", port)).unwrap();
        spoofer.send_to(&open("/tmp/attacker"), at).unwrap();
        let other_port = UdpSocket::bind("127.0.0.1:0").unwrap();
        other_port.send_to(&open("/tmp/attacker"), at).unwrap();
        assert_eq!(client.recv(Duration::from_millis(300)).unwrap(), None);
        assert_eq!(client.recv(Duration::from_millis(300)).unwrap(), None);
        server.send_to(&open("/tmp/real"), at).unwrap();
        let got = client.recv(Duration::from_secs(2)).unwrap();
        assert!(matches!(got, Some(ServerMessage::Open { path, .. }) if path == "/tmp/real"));
    }

    #[test]
    fn parses_nsm_urls() {
        assert_eq!(parse_url("osc.udp://127.0.0.1:15000/").unwrap(), "127.0.0.1:15000".parse().unwrap());
        assert_eq!(parse_url("osc.udp://localhost:9/").unwrap().port(), 9);
        for bad in ["", "osc.tcp://127.0.0.1:1/", "osc.udp://127.0.0.1/", "osc.udp://:5/", "osc.udp://h:xx/"]
        {
            assert!(matches!(parse_url(bad), Err(NsmError::BadUrl(_))), "{bad:?}");
        }
    }

    /// A fake server answers from its own socket: the client announces with
    /// the exact tags and gets the welcome, or the refusal.
    #[test]
    fn announce_round_trip_and_refusal() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client = Client::new(addr).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let (_, p) = rosc::decoder::decode_udp(&buf[..n]).unwrap();
            let rosc::OscPacket::Message(m) = p else { panic!() };
            let tags: String = m.args.iter().map(message::tag).collect();
            assert_eq!((m.addr.as_str(), tags.as_str()), ("/nsm/server/announce", "sssiii"));
            let early = ServerMessage::Open {
                path: "/s/c.nX".into(),
                display_name: "s".into(),
                client_id: "c.nX".into(),
            };
            server.send_to(&early.encode(), from).unwrap();
            let welcome = message::encode(
                "/reply",
                vec![
                    rosc::OscType::String("/nsm/server/announce".into()),
                    rosc::OscType::String("hi".into()),
                    rosc::OscType::String("nsmd".into()),
                    rosc::OscType::String(":server-control:".into()),
                ],
            );
            server.send_to(&welcome, from).unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), ClientMessage::IsDirty);
            server
                .send_to(
                    &ServerMessage::Error {
                        to: "/nsm/server/announce".into(),
                        code: ErrorCode::IncompatibleApi,
                        message: "no".into(),
                    }
                    .encode(),
                    from,
                )
                .unwrap();
        });
        let (w, early) = client.announce("capstan", ":dirty:", "capstan", Duration::from_secs(5)).unwrap();
        assert_eq!(w.server_name, "nsmd");
        assert_eq!(early.len(), 1);
        client.send(&ClientMessage::IsDirty).unwrap();
        let err = client.announce("capstan", ":dirty:", "capstan", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, NsmError::Refused { code: ErrorCode::IncompatibleApi, .. }), "{err}");
        t.join().unwrap();
        // Nobody answers: a timeout, not a hang.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = Client::new(silent.local_addr().unwrap()).unwrap();
        assert!(matches!(c.announce("a", ":", "a", Duration::from_millis(200)), Err(NsmError::NoAnswer(_))));
    }
}
