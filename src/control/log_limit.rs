//! Logging of bad input at a bounded rate: anyone who can reach the OSC port
//! can send garbage, and 300,000 garbage datagrams once grew the log to
//! 299 MB. At most [`PER_SECOND`] lines a second, each cut short, then one
//! line a second that counts what was not logged.

use std::time::{Duration, Instant};

/// Lines logged in full per second.
pub const PER_SECOND: u32 = 5;
/// Longest text a line carries from the input.
pub const MAX_LINE: usize = 120;

#[derive(Debug)]
pub struct LogLimit {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit { window: Instant::now(), logged: 0, suppressed: 0 }
    }
}

impl LogLimit {
    /// Whether to log a line now (at `now`); when a new second begins, the
    /// count of lines not logged in the last one is returned first.
    pub fn admit(&mut self, now: Instant) -> (bool, Option<u64>) {
        let mut summary = None;
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                summary = Some(self.suppressed);
            }
            self.window = now;
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < PER_SECOND {
            self.logged += 1;
            (true, summary)
        } else {
            self.suppressed += 1;
            (false, summary)
        }
    }

    /// Logs `text` (cut to [`MAX_LINE`]) as a warning about input from
    /// `from`, within the rate.
    pub fn warn(&mut self, from: std::net::SocketAddr, text: &str) {
        let (log, summary) = self.admit(Instant::now());
        if let Some(n) = summary {
            tracing::warn!("{n} more refused or malformed OSC messages in the last second (not logged)");
        }
        if log {
            tracing::warn!(%from, "{}", super::osc::clip(text, MAX_LINE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_five_lines_a_second_and_a_count() {
        let mut l = LogLimit::default();
        let t0 = l.window;
        let logged = (0..100_000).filter(|_| l.admit(t0).0).count();
        assert_eq!(logged, 5);
        let (log, summary) = l.admit(t0 + Duration::from_millis(1000));
        assert!(log);
        assert_eq!(summary, Some(99_995));
        let (_, summary) = l.admit(t0 + Duration::from_millis(2500));
        assert_eq!(summary, None);
    }
}
