//! The daemon's OSC endpoint: one UDP socket, the clients that subscribed to
//! pushes, and bounded logging of bad input. Control thread only.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rosc::OscType;

use crate::control::log_limit::LogLimit;
use crate::control::osc::{self, Code, Refusal};
use crate::control::reply_budget::ReplyBudget;

pub const MAX_SUBSCRIBERS: usize = 64;
/// Messages one datagram (a bundle) may carry: each is answered, so more
/// would let a small datagram draw many replies.
pub const MAX_MESSAGES: usize = 16;

/// Who asked for something, and on which path the answer goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub from: SocketAddr,
    pub path: String,
}

pub struct Endpoint {
    socket: UdpSocket,
    /// Clients that sent `/record/subscribe` (and not `/record/unsubscribe`),
    /// least recently (re)subscribed first.
    subscribers: Vec<SocketAddr>,
    /// Logging of refused and malformed input, at a bounded rate.
    bad_input: LogLimit,
    /// What remote peers may be sent (forged senders draw little).
    budget: ReplyBudget,
    buf: Vec<u8>,
    wait: Duration,
}

/// Binds the OSC socket. With `fallback`, a taken port moves on to the next
/// free port among the following 20 that is not in `avoid` (ports other
/// capstans of the session have saved), then to any free port.
pub fn bind_osc(bind: &str, port: u16, fallback: bool, avoid: &[u16]) -> Result<UdpSocket> {
    match UdpSocket::bind((bind, port)) {
        Ok(s) => Ok(s),
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse && port != 0 => (1..=20u16)
            .filter_map(|k| port.checked_add(k))
            .filter(|p| !avoid.contains(p))
            .find_map(|p| UdpSocket::bind((bind, p)).ok())
            .map_or_else(|| UdpSocket::bind((bind, 0)), Ok)
            .with_context(|| format!("cannot listen for OSC on {bind}")),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot listen for OSC on {bind}:{port}"))),
    }
}

/// Bytes of datagrams the OSC socket holds while the control thread cannot
/// run (a busy machine). The kernel counts about 1.3 KiB per small
/// datagram on loopback: its default, 208 KiB, held 166 marks of 200
/// bytes; this (which the kernel doubles) about 6,000.
pub const RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`RECEIVE_BUFFER`]: past the system's limit
/// (`net.core.rmem_max`) where capstan may (CAP_NET_ADMIN), else up to it.
/// Returns the size the kernel gave.
fn enlarge_receive_buffer(socket: &UdpSocket) -> Option<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
    getsockopt(socket, sockopt::RcvBuf).ok()
}

impl Endpoint {
    pub fn new(socket: UdpSocket) -> Endpoint {
        match enlarge_receive_buffer(&socket) {
            Some(n) if n < RECEIVE_BUFFER => tracing::info!(
                "OSC: the socket holds {} KiB of waiting messages (raise net.core.rmem_max to {} for {} KiB)",
                n / 1024,
                RECEIVE_BUFFER,
                2 * RECEIVE_BUFFER / 1024
            ),
            Some(_) => {}
            None => tracing::warn!("OSC: the socket's receive buffer cannot be read"),
        }
        Endpoint {
            socket,
            subscribers: Vec::new(),
            bad_input: LogLimit::default(),
            budget: ReplyBudget::default(),
            buf: vec![0u8; osc::MAX_DATAGRAM + 1],
            wait: Duration::ZERO,
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// The next datagram, waiting at most `wait`: its messages, or why it
    /// was refused (already answered and logged).
    pub fn receive(&mut self, wait: Duration) -> Option<(SocketAddr, Vec<osc::Timed>)> {
        if wait != self.wait {
            // A zero timeout would mean "block forever".
            if let Err(e) = self.socket.set_read_timeout(Some(wait.max(Duration::from_micros(100)))) {
                tracing::warn!("OSC socket: {e}");
            }
            self.wait = wait;
        }
        let (n, from) = match self.socket.recv_from(&mut self.buf) {
            Ok(got) => got,
            Err(e) if osc::no_datagram(&e) => return None,
            Err(e) => {
                tracing::warn!("OSC receive: {e}");
                return None;
            }
        };
        self.budget.received(from.ip(), n, Instant::now());
        let decoded = match osc::decode_timed(&self.buf[..n]) {
            Ok(m) if m.len() > MAX_MESSAGES => Err(Refusal::new(
                Code::Malformed,
                format!("{} messages in one datagram; at most {MAX_MESSAGES}", m.len()),
            )),
            other => other,
        };
        match decoded {
            Ok(m) => Some((from, m)),
            Err(r) => {
                self.bad_input.warn(from, &r.message);
                self.send(from, &osc::error("", &r));
                None
            }
        }
    }

    /// Answers a request: `/reply` with the values, or `/error` (logged at a
    /// bounded rate: anyone who can reach the port can draw refusals).
    pub fn answer(&mut self, to: &Requester, result: Result<Vec<OscType>, Refusal>) {
        match result {
            Ok(args) => self.send(to.from, &osc::reply(&to.path, args)),
            Err(r) => {
                let text = format!("{}: refused: {}", osc::clip(&to.path, 64), r.message);
                self.bad_input.warn(to.from, &text);
                self.send(to.from, &osc::error(&to.path, &r));
            }
        }
    }

    pub fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        if !self.budget.spend(to.ip(), datagram.len(), Instant::now()) {
            return tracing::debug!("OSC send to {to}: over its reply budget, dropped");
        }
        if let Err(e) = self.socket.send_to(datagram, to) {
            tracing::debug!("OSC send to {to}: {e}");
        }
    }

    /// Sends `datagram` to every subscriber (within each one's budget).
    pub fn broadcast(&mut self, datagram: &[u8]) {
        for to in self.subscribers.clone() {
            self.send(to, datagram);
        }
    }

    /// Adds (or renews) a subscriber. A full table drops the client that
    /// subscribed least recently, so closed clients can never keep the table
    /// full; a client that wants pushes for days subscribes again now and
    /// then (docs/osc-api.md, "Feedback").
    pub fn subscribe(&mut self, from: SocketAddr) {
        self.subscribers.retain(|s| *s != from);
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            let old = self.subscribers.remove(0);
            tracing::info!(
                "OSC subscriber table full: {old} (the least recently subscribed) dropped for {from}"
            );
        }
        self.subscribers.push(from);
    }

    pub fn unsubscribe(&mut self, from: SocketAddr) {
        self.subscribers.retain(|s| *s != from);
    }
}
