//! Takes rotated on the wall clock (`--rotate-every 1h`): the boundaries
//! are the multiples of the interval since midnight, local or UTC, as a
//! broadcast logger files them. Control thread only.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, Timelike, Utc};

/// A duration as `90`, `90s`, `15m`, `1h`, `1h30m`: 1 s to 24 h.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("rotate_every must be a duration like 30s, 15m or 1h (1 s to 24 h), got {s:?}");
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        num.clear();
        any = true;
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse::<u64>().map_err(|_| bad())?).ok_or_else(bad)?;
        any = true;
    }
    if !any || !(1..=86_400).contains(&total) {
        return Err(bad());
    }
    Ok(total)
}

/// The first boundary strictly after `now`: the next multiple of `every`
/// seconds since midnight (local time, or UTC), or the next midnight if
/// that comes first (an interval that does not divide the day ends short).
pub fn next_boundary(now: SystemTime, every: u64, utc: bool) -> SystemTime {
    let t =
        if utc { DateTime::<Utc>::from(now).naive_utc() } else { DateTime::<Local>::from(now).naive_local() };
    let day_ns = 86_400u128 * 1_000_000_000;
    let tod = t.time().num_seconds_from_midnight() as u128 * 1_000_000_000
        + t.time().nanosecond().min(999_999_999) as u128;
    let every = every as u128 * 1_000_000_000;
    let next = ((tod / every + 1) * every).min(day_ns);
    now + Duration::from_nanos((next - tod) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        for bad in ["", "0s", "25h", "1d", "h", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn boundaries_are_multiples_since_midnight() {
        let day = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 20_000);
        let at = |s: u64, ms: u64| day + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(next_boundary(at(3599, 500), 3600, true), at(3600, 0));
        assert_eq!(next_boundary(at(3600, 0), 3600, true), at(7200, 0), "strictly after");
        assert_eq!(next_boundary(at(125, 1), 60, true), at(180, 0));
        // 7 h does not divide the day: the last interval ends at midnight.
        assert_eq!(next_boundary(at(22 * 3600, 0), 7 * 3600, true), at(86_400, 0));
    }
}
