//! Marker lists: an Audacity label track and CSV, each line a take (range),
//! a marker (point) or a gap (range), by time of day.

use super::{seconds, Show};

/// One line of a list.
struct Entry {
    kind: &'static str,
    take: String,
    start: u64,
    end: u64,
    label: String,
}

fn entries(show: &Show) -> Vec<Entry> {
    let mut out = Vec::new();
    for t in &show.takes {
        let at = |f: u64| t.position + f;
        out.push(Entry {
            kind: "take",
            take: t.name.clone(),
            start: at(0),
            end: at(t.frames),
            label: t.name.clone(),
        });
        for m in &t.markers {
            out.push(Entry {
                kind: "marker",
                take: t.name.clone(),
                start: at(m.frame),
                end: at(m.frame),
                label: m.label.clone(),
            });
        }
        for g in &t.gaps {
            let (start, end) = (at(g.frame), at(g.frame + g.frames));
            out.push(Entry { kind: "gap", take: t.name.clone(), start, end, label: g.label.clone() });
        }
    }
    out.sort_by_key(|e| (e.start, e.kind != "take"));
    out
}

/// An Audacity label track (File > Import > Labels): `start\tend\tlabel`,
/// seconds since midnight. Tabs and line breaks in labels become spaces
/// (the format has no quoting).
pub fn audacity(show: &Show) -> String {
    let mut s = String::new();
    for e in entries(show) {
        let label: String =
            e.label.chars().map(|c| if c == '\t' || c == '\n' || c == '\r' { ' ' } else { c }).collect();
        s += &format!(
            "{:.6}\t{:.6}\t{label}\n",
            seconds(e.start, show.sample_rate),
            seconds(e.end, show.sample_rate)
        );
    }
    s
}

/// CSV (RFC 4180): kind, take, label, start and end in samples since
/// midnight and in seconds, and the start as a time of day.
pub fn csv(show: &Show) -> String {
    let mut s =
        String::from("kind,take,label,start_sample,end_sample,start_seconds,end_seconds,time_of_day\r\n");
    let rate = show.sample_rate.max(1) as u64;
    for e in entries(show) {
        let secs = e.start / rate;
        let tod = format!(
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            (e.start % rate) * 1_000_000 / rate
        );
        s += &format!(
            "{},{},{},{},{},{:.6},{:.6},{tod}\r\n",
            e.kind,
            field(&e.take),
            field(&e.label),
            e.start,
            e.end,
            seconds(e.start, show.sample_rate),
            seconds(e.end, show.sample_rate)
        );
    }
    s
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}
