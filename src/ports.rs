//! Choosing source ports: jack_capture-style `*` globs and natural ordering.
//! Control thread only.

use std::cmp::Ordering;

/// `in_1` … `in_n`: capstan's input port names unless configured.
pub fn default_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("in_{i}")).collect()
}

/// The input port names for `n` ports: `configured` names first, then
/// `in_k` for the rest. Names must be unique, non-empty, at most 64
/// characters, and free of `:` and control characters (JACK's rules plus a
/// length that keeps file metadata readable).
pub fn input_names(n: usize, configured: &[String]) -> Result<Vec<String>, String> {
    if configured.len() > n {
        return Err(format!("{} port names given for {n} ports", configured.len()));
    }
    let mut names: Vec<String> = configured.to_vec();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.len() > 64 || name.contains(':') || name.chars().any(char::is_control) {
            return Err(format!(
                "port name {} ({name:?}) must be 1-64 characters without ':' or control characters",
                i + 1
            ));
        }
    }
    names.extend(default_names(n).into_iter().skip(configured.len()));
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!("port name {dup:?} is used twice"));
    }
    Ok(names)
}

/// Matches `name` against `pattern`, where `*` is any run of characters
/// (jack_capture's `-p` syntax) and everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Orders names so that embedded numbers compare by value: `out_2` before
/// `out_10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, nb) = (a[..da].trim_start_matches('0'), b[..db].trim_start_matches('0'));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then_with(|| da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

/// Why the requested sources cannot be connected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("--connect {pattern:?} matches no JACK output port (available: {available})")]
    NoMatch { pattern: String, available: String },
    #[error("--connect patterns match {matched} ports but capstan has only {ports} inputs (raise --ports)")]
    TooMany { matched: usize, ports: usize },
}

/// The source ports for `patterns`, in pattern order, each pattern's matches
/// in natural order, without duplicates. Every pattern must match something.
pub fn select_sources(patterns: &[String], outputs: &[String]) -> Result<Vec<String>, SelectError> {
    let mut chosen: Vec<String> = Vec::new();
    for pattern in patterns {
        let mut matched: Vec<&String> = outputs.iter().filter(|o| glob_match(pattern, o)).collect();
        if matched.is_empty() {
            let mut available: Vec<&str> = outputs.iter().map(String::as_str).take(8).collect();
            if outputs.len() > 8 {
                available.push("…");
            }
            let available = if available.is_empty() { "none".into() } else { available.join(", ") };
            return Err(SelectError::NoMatch { pattern: pattern.clone(), available });
        }
        matched.sort_by(|a, b| natural_cmp(a, b));
        for m in matched {
            if !chosen.contains(m) {
                chosen.push(m.clone());
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_names_fill_in_and_reject_bad_ones() {
        assert_eq!(input_names(3, &["kick".into()]).unwrap(), ["kick", "in_2", "in_3"]);
        assert_eq!(input_names(2, &[]).unwrap(), ["in_1", "in_2"]);
        assert!(input_names(1, &["a".into(), "b".into()]).unwrap_err().contains("2 port names"));
        assert!(input_names(2, &["in_2".into()]).unwrap_err().contains("used twice"));
        for bad in ["", "a:b", "tab\there", &"x".repeat(65)] {
            assert!(input_names(1, &[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_like_jack_capture() {
        assert!(glob_match("system:capture_*", "system:capture_12"));
        assert!(glob_match("*", "a:b"));
        assert!(glob_match("src:*_L", "src:out_L"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("system:capture_*", "system:playback_1"));
        assert!(!glob_match("src:out_1", "src:out_10"));
        assert!(glob_match("src:out_1", "src:out_1"));
    }

    #[test]
    fn natural_order_puts_2_before_10() {
        let mut v = vec!["s:out_10", "s:out_2", "s:out_1", "s:out_02b"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["s:out_1", "s:out_2", "s:out_02b", "s:out_10"]);
    }

    #[test]
    fn selection_keeps_pattern_order_and_refuses_empty_matches() {
        let outs: Vec<String> = ["a:x_2", "a:x_10", "a:x_1", "b:y"].iter().map(|s| s.to_string()).collect();
        let got = select_sources(&["b:*".into(), "a:x_*".into(), "a:x_1".into()], &outs).unwrap();
        assert_eq!(got, ["b:y", "a:x_1", "a:x_2", "a:x_10"]);
        let err = select_sources(&["c:*".into()], &outs).unwrap_err();
        assert!(matches!(err, SelectError::NoMatch { .. }));
        assert!(err.to_string().contains("c:*"));
    }
}
