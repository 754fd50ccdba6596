//! What capstan may send to a peer off this machine. UDP has no handshake:
//! a datagram's sender address can be forged, so anything we answer could be
//! aimed at a victim. Each remote IP address earns [`FACTOR`] bytes of
//! replies for every byte it sends, on top of a small allowance
//! ([`BURST`] bytes, regained at [`REFILL_PER_SECOND`]); a reply or push
//! beyond that is dropped. Loopback peers are local users, who can run
//! capstan themselves, and are not limited. Pure: the caller gives the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Bytes of replies earned by each byte received.
pub const FACTOR: u64 = 3;
/// The allowance a peer starts with and regains over time.
pub const BURST: u64 = 4096;
/// How fast the allowance comes back.
pub const REFILL_PER_SECOND: u64 = 1024;
/// Remote peers remembered at once; beyond that, peers whose allowance is
/// whole again are forgotten, and if none is, new peers get no replies
/// until one is (what a flood of forged addresses can achieve: silence, not
/// traffic).
pub const MAX_PEERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Credit {
    bytes: u64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct ReplyBudget {
    peers: HashMap<IpAddr, Credit>,
}

fn limited(ip: IpAddr) -> bool {
    !ip.is_loopback() && !ip.to_canonical().is_loopback()
}

impl ReplyBudget {
    /// The peer's credit at `now`, refilled for the time since it was last
    /// seen, or `None` when the table is full of other peers.
    fn credit(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Credit> {
        if !self.peers.contains_key(&ip) && self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, c| c.bytes + refill(c.at, now) < BURST);
            if self.peers.len() >= MAX_PEERS {
                return None;
            }
        }
        let c = self.peers.entry(ip).or_insert(Credit { bytes: BURST, at: now });
        c.bytes = (c.bytes + refill(c.at, now)).min(BURST).max(c.bytes);
        c.at = now;
        Some(c)
    }

    /// A datagram of `bytes` arrived from `ip`.
    pub fn received(&mut self, ip: IpAddr, bytes: usize, now: Instant) {
        if limited(ip) {
            if let Some(c) = self.credit(ip, now) {
                c.bytes = c.bytes.saturating_add(FACTOR.saturating_mul(bytes as u64));
            }
        }
    }

    /// Whether `bytes` may be sent to `ip` now (and if so, they are spent).
    pub fn spend(&mut self, ip: IpAddr, bytes: usize, now: Instant) -> bool {
        if !limited(ip) {
            return true;
        }
        match self.credit(ip, now) {
            Some(c) if c.bytes >= bytes as u64 => {
                c.bytes -= bytes as u64;
                true
            }
            _ => false,
        }
    }
}

/// Allowance regained between `then` and `now`.
fn refill(then: Instant, now: Instant) -> u64 {
    let ms = now.saturating_duration_since(then).as_millis();
    u64::try_from(ms.saturating_mul(u128::from(REFILL_PER_SECOND)) / 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    /// A forged stream of small requests for large replies draws at most
    /// FACTOR times its bytes, plus the allowance and its refill.
    #[test]
    fn a_flood_draws_at_most_factor_times_its_bytes() {
        let mut b = ReplyBudget::default();
        let t0 = Instant::now();
        let (mut got, mut sent) = (0u64, 0u64);
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i); // 10 s
            b.received(REMOTE, 336, now);
            got += 336;
            for _ in 0..16 {
                if b.spend(REMOTE, 384, now) {
                    sent += 384;
                }
            }
        }
        let bound = FACTOR * got + BURST + 10 * REFILL_PER_SECOND;
        assert!(sent <= bound, "{sent} > {bound}");
        assert!(sent >= FACTOR * got - 384 * 16, "the earned part is sent: {sent}");
    }

    #[test]
    fn loopback_is_not_limited_and_a_quiet_peer_gets_its_allowance_back() {
        let mut b = ReplyBudget::default();
        let t0 = Instant::now();
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!((0..1000).all(|_| b.spend(ip, 8192, t0)), "{ip}");
        }
        assert!(b.spend(REMOTE, BURST as usize, t0));
        assert!(!b.spend(REMOTE, 1, t0));
        assert!(b.spend(REMOTE, BURST as usize, t0 + Duration::from_secs(4)));
    }

    #[test]
    fn a_full_table_forgets_whole_allowances_and_else_stays_silent() {
        let mut b = ReplyBudget::default();
        let t0 = Instant::now();
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..MAX_PEERS as u32 {
            assert!(b.spend(ip(i), BURST as usize, t0));
        }
        assert!(!b.spend(ip(MAX_PEERS as u32), 1, t0), "full of spent peers");
        assert!(b.spend(ip(MAX_PEERS as u32), 1, t0 + Duration::from_secs(5)));
    }
}
