//! The values capstan sends over OSC, described once: the type of every
//! value of every reply and push. One rule decides the types, so that every
//! OSC client our users run can decode them (SuperCollider's sclang 3.13
//! does not know `h`, int64, and misreads every argument after one):
//!
//! - `d` (float64) for frame times, frame counts and byte counts: exact up to
//!   2^53, which is 5,900 years of frames at 48 kHz;
//! - `d` for real numbers (seconds, microseconds, percent, Unix time);
//! - `i` (int32) for codes, counts of things and port numbers;
//! - `s` for text.
//!
//! The daemon builds values with [`count`]; in debug builds every reply and
//! push is checked against this table before it is sent, `capstan ctl` uses
//! it to print values (and `--json` to name them, with exact integers), and
//! a test checks that docs/osc-api.md lists exactly these type tags.

use rosc::OscType;

/// What a value is, which decides its OSC type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `s`
    Text,
    /// `i`: a code, a count of things, a port number.
    Int,
    /// `d`: frames, a frame time or bytes; always a whole number.
    Count,
    /// `d`: seconds, microseconds, percent, Unix time.
    Real,
}

impl Kind {
    pub fn tag(self) -> char {
        match self {
            Kind::Text => 's',
            Kind::Int => 'i',
            Kind::Count | Kind::Real => 'd',
        }
    }

    fn matches(self, v: &OscType) -> bool {
        matches!(
            (self, v),
            (Kind::Text, OscType::String(_))
                | (Kind::Int, OscType::Int(_))
                | (Kind::Count | Kind::Real, OscType::Double(_))
        )
    }
}

use Kind::*;

/// The values of `/reply s:<path> …` for each command (after the path).
pub const REPLIES: &[(&str, &[(&str, Kind)])] = &[
    ("/record/start", &[("take_id", Text), ("first_frame_time", Count), ("files", Text)]),
    (
        "/record/stop",
        &[("take_id", Text), ("frames", Count), ("seconds", Real), ("files", Text), ("picture", Text)],
    ),
    (
        "/record/rotate",
        &[
            ("old_take", Text),
            ("old_frames", Count),
            ("new_take", Text),
            ("new_first_frame_time", Count),
            ("files", Text),
        ],
    ),
    (
        "/record/status",
        &[
            ("state", Text),
            ("take_id", Text),
            ("seconds", Real),
            ("bytes", Count),
            ("lost_frames", Count),
            ("xruns", Int),
            ("free_bytes", Count),
            ("error", Text),
            ("callback_p99_us", Real),
            ("callback_max_us", Real),
            ("ring_high_water_percent", Real),
            ("momentary_lufs", Real),
            ("armed", Int),
            ("http_port", Int),
            ("ring_fill_percent", Real),
            ("disk_behind_seconds", Real),
        ],
    ),
    ("/record/list", &[("take_id", Text), ("files", Text)]),
    ("/record/mark", &[("take_id", Text), ("frame_time", Count), ("frame", Count), ("label", Text)]),
    ("/record/files", &[("take_id", Text), ("total", Int), ("offset", Int), ("files", Text)]),
    ("/record/reset", &[("state", Text)]),
    ("/record/subscribe", &[("state", Text)]),
    ("/record/meters", &[("rate", Int), ("inputs", Int)]),
    ("/record/unsubscribe", &[]),
    ("/config/ports", &[("ports", Int)]),
    ("/config/preroll", &[("seconds", Real)]),
    ("/config/sample_format", &[("format", Text)]),
    ("/config/layout", &[("layout", Text)]),
    ("/config/format", &[("format", Text)]),
    ("/trigger/arm", &[("armed", Int)]),
    ("/config/trigger", &[("trigger", Text)]),
    ("/config/rotate_every", &[("rotate_every", Text)]),
    ("/config/post_roll", &[("seconds", Real)]),
    ("/config/threshold", &[("dbfs", Real)]),
    ("/config/alarm", &[("name", Text), ("value", Real)]),
    ("/config/hold", &[("seconds", Real)]),
    ("/config/storage", &[("storage", Text)]),
    ("/trigger/disarm", &[("armed", Int)]),
];

/// Pushed messages (feedback) and `/error`.
pub const PUSHES: &[(&str, &[(&str, Kind)])] = &[
    (
        "/recording/state",
        &[("take_id", Text), ("state", Text), ("first_frame_time", Count), ("unix_time", Real)],
    ),
    ("/recording/progress", &[("take_id", Text), ("seconds", Real), ("bytes", Count)]),
    ("/recording/error", &[("take_id", Text), ("code", Int), ("description", Text)]),
    ("/recording/alarm", &[("kind", Text), ("input", Text), ("raised", Int), ("text", Text)]),
    ("/error", &[("path", Text), ("code", Int), ("message", Text)]),
];

/// A frame time, frame count or byte count, as sent.
pub fn count(v: u64) -> OscType {
    OscType::Double(v as f64)
}

/// The command whose reply schema a path uses (jack_capture's aliases).
pub fn canonical(path: &str) -> &str {
    match path {
        "/jack_capture/tm/start" => "/record/start",
        "/jack_capture/tm/stop" | "/jack_capture/stop" => "/record/stop",
        p => p,
    }
}

/// The fields of the reply to `path`, if it has a fixed shape
/// (`/config/get` is name/value pairs, see docs/osc-api.md).
pub fn reply_fields(path: &str) -> Option<&'static [(&'static str, Kind)]> {
    let path = canonical(path);
    REPLIES.iter().find(|(p, _)| *p == path).map(|(_, f)| *f)
}

/// Whether `args` have exactly the shape `fields` say. `/record/list` when
/// idle and `/record/unsubscribe` reply with no values at all.
pub fn conforms(fields: &[(&str, Kind)], args: &[OscType]) -> bool {
    args.is_empty() || (args.len() == fields.len() && fields.iter().zip(args).all(|((_, k), v)| k.matches(v)))
}

/// The type tags of `fields`, e.g. `sds`.
pub fn tags(fields: &[(&str, Kind)]) -> String {
    fields.iter().map(|(_, k)| k.tag()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_doubles_far_beyond_any_take() {
        let five_thousand_years = 48_000u64 * 3600 * 24 * 365 * 5000;
        assert!(five_thousand_years < 1 << 53);
        let OscType::Double(d) = count(five_thousand_years + 1) else { panic!() };
        assert_eq!(d as u64, five_thousand_years + 1);
    }

    #[test]
    fn no_message_uses_a_type_that_common_clients_cannot_read() {
        for (_, fields) in REPLIES.iter().chain(PUSHES) {
            assert!(tags(fields).chars().all(|c| "sid".contains(c)));
        }
    }

    /// docs/osc-api.md lists every reply and push with exactly these tags.
    #[test]
    fn the_documentation_lists_these_type_tags() {
        let doc = include_str!("../../docs/osc-api.md");
        for (path, fields) in REPLIES.iter().chain(PUSHES) {
            let t = tags(fields);
            let t = if t.is_empty() { "—".to_string() } else { format!("`{t}`") };
            let want = format!("| `{path}` | {t} |");
            assert!(doc.contains(&want), "docs/osc-api.md lacks the row starting {want:?}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let f = reply_fields("/jack_capture/tm/start").unwrap();
        let ok = vec![OscType::String("a".into()), count(5), OscType::String("f.wav".into())];
        assert!(conforms(f, &ok));
        let int64 = vec![OscType::String("a".into()), OscType::Long(5), OscType::String("f.wav".into())];
        assert!(!conforms(f, &int64));
        assert!(conforms(f, &[]));
    }
}
