//! A REAPER project (`.RPP`, REAPER's plain-text format): one track per
//! input, each take's file as an item at its time of day (an interleaved
//! file's channel picked with `CHANMODE`), markers as markers, takes and
//! gaps as regions.

use super::{seconds, Show};

/// The project text.
pub fn project(show: &Show) -> String {
    let rate = show.sample_rate;
    let mut s = String::from("<REAPER_PROJECT 0.1 \"6.0\" 0\n");
    s += &format!("  SAMPLERATE {rate} 0 0\n");
    let mut id = 1;
    for t in &show.takes {
        let (a, b) = (seconds(t.position, rate), seconds(t.position + t.frames, rate));
        // A region is two MARKER lines with the same id, flag 1.
        s += &format!("  MARKER {id} {a:.6} {} 1\n  MARKER {id} {b:.6} \"\" 1\n", quote(&t.name));
        id += 1;
        for m in &t.markers {
            s += &format!("  MARKER {id} {:.6} {} 0\n", seconds(t.position + m.frame, rate), quote(&m.label));
            id += 1;
        }
        for g in &t.gaps {
            let (a, b) =
                (seconds(t.position + g.frame, rate), seconds(t.position + g.frame + g.frames, rate));
            s += &format!("  MARKER {id} {a:.6} {} 1\n  MARKER {id} {b:.6} \"\" 1\n", quote(&g.label));
            id += 1;
        }
    }
    for track in &show.tracks {
        s += &format!("  <TRACK\n    NAME {}\n", quote(track));
        for t in &show.takes {
            for f in &t.files {
                for (chan, name) in &f.channels {
                    if name != track {
                        continue;
                    }
                    let kind = if f.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("flac")) {
                        "FLAC"
                    } else {
                        "WAVE"
                    };
                    // 0: all channels; 3 + c: channel c alone (mono file: 0).
                    let chanmode = if f.channels.len() > 1 { 3 + chan } else { 0 };
                    s += &format!(
                        "    <ITEM\n      POSITION {:.6}\n      LENGTH {:.6}\n      NAME {}\n      CHANMODE {chanmode}\n      <SOURCE {kind}\n        FILE {}\n      >\n    >\n",
                        seconds(t.position, rate),
                        seconds(t.frames, rate),
                        quote(&t.name),
                        quote(&f.path.to_string_lossy())
                    );
                }
            }
        }
        s += "  >\n";
    }
    s += ">\n";
    s
}

/// A string as REAPER quotes it: in `"` unless it holds one, then in `'`,
/// then in `` ` `` (backticks inside become `'`); line breaks become spaces.
pub fn quote(v: &str) -> String {
    let v: String = v.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    if !v.contains('"') {
        format!("\"{v}\"")
    } else if !v.contains('\'') {
        format!("'{v}'")
    } else {
        format!("`{}`", v.replace('`', "'"))
    }
}
