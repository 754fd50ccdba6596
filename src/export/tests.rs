use std::path::Path;

use super::*;
use crate::manifest::PortInfo;
use crate::vocab::{Gap, GapCause};
use crate::wav::Marker;

fn port(name: &str) -> PortInfo {
    PortInfo { name: format!("capstan:{name}"), sources: vec![], track_name: None }
}

/// A take's manifest and (empty) files in `dir`.
fn take(dir: &Path, name: &str, rate: u32, tr: u64, frames: u64, mono: bool, ext: &str) -> Manifest {
    let ports = vec![port("in_1"), port("in_2")];
    let files: Vec<String> = if mono {
        vec![format!("{name}_in_1.{ext}"), format!("{name}_in_2.{ext}")]
    } else {
        vec![format!("{name}.{ext}")]
    };
    for f in &files {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    let m = Manifest {
        files,
        ports,
        sample_rate: rate,
        layout: if mono { "mono" } else { "interleaved" }.into(),
        time_reference: Some(tr),
        frames,
        markers: vec![Marker { frame: 24_000, frame_time: 0, label: "verse \"one\", <&> 'x'".into() }],
        gaps: vec![Gap { at: 48_000, frames: 256, cause: GapCause::JackSkipped }],
        ..Default::default()
    };
    m.save(&Manifest::path(dir, name)).unwrap();
    m
}

fn show() -> (tempfile::TempDir, Show) {
    let dir = tempfile::tempdir().unwrap();
    take(dir.path(), "b_take", 48_000, 48_000 * 3600 + 480_000, 96_000, true, "wav");
    take(dir.path(), "a_take", 48_000, 48_000 * 3600, 96_000, false, "flac");
    let s = Show::load(&[dir.path().to_path_buf()]).unwrap();
    (dir, s)
}

#[test]
fn takes_are_placed_by_time_of_day_with_a_track_per_input() {
    let (dir, s) = show();
    assert_eq!(s.sample_rate, 48_000);
    assert_eq!(s.tracks, vec!["in_1", "in_2"]);
    assert_eq!(
        s.takes.iter().map(|t| (t.name.as_str(), t.position)).collect::<Vec<_>>(),
        vec![("a_take", 172_800_000), ("b_take", 172_800_000 + 480_000)]
    );
    // Interleaved: one file, both channels; mono: a file per input.
    assert_eq!(s.takes[0].files.len(), 1);
    assert_eq!(s.takes[0].files[0].channels, vec![(0, "in_1".into()), (1, "in_2".into())]);
    assert_eq!(s.takes[1].files[1].channels, vec![(0, "in_2".into())]);
    // A take named by one of its files.
    let one = Show::load(&[dir.path().join("b_take_in_2.wav")]).unwrap();
    assert_eq!(one.takes.len(), 1);
    assert_eq!(one.takes[0].name, "b_take");
}

#[test]
fn bad_input_is_refused_saying_which_take_or_file() {
    let dir = tempfile::tempdir().unwrap();
    take(dir.path(), "a", 48_000, 0, 10, false, "wav");
    take(dir.path(), "b", 44_100, 0, 10, false, "wav");
    let e = Show::load(&[dir.path().to_path_buf()]).unwrap_err().to_string();
    assert!(e.contains("a is 48000 Hz") && e.contains("b is 44100 Hz"), "{e}");
    std::fs::remove_file(Manifest::path(dir.path(), "b")).unwrap();
    std::fs::remove_file(dir.path().join("a.wav")).unwrap();
    let e = Show::load(&[dir.path().to_path_buf()]).unwrap_err().to_string();
    assert!(e.contains("take a: its file") && e.contains("a.wav"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = Show::load(&[empty.path().to_path_buf()]).unwrap_err().to_string();
    assert!(e.contains("no capstan take"), "{e}");
}

#[test]
fn the_label_track_and_csv_are_exact() {
    let (_dir, s) = show();
    let labels = labels::audacity(&s);
    let first: Vec<&str> = labels.lines().take(3).collect();
    assert_eq!(
        first,
        vec![
            "3600.000000\t3602.000000\ta_take",
            "3600.500000\t3600.500000\tverse \"one\", <&> 'x'",
            "3601.000000\t3601.005333\tgap: JACK skipped cycles (xrun)",
        ]
    );
    assert_eq!(labels.lines().count(), 6);
    let csv = labels::csv(&s);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "kind,take,label,start_sample,end_sample,start_seconds,end_seconds,time_of_day");
    assert_eq!(lines[1], "take,a_take,a_take,172800000,172896000,3600.000000,3602.000000,01:00:00.000000");
    assert_eq!(
        lines[2],
        "marker,a_take,\"verse \"\"one\"\", <&> 'x'\",172824000,172824000,3600.500000,3600.500000,01:00:00.500000"
    );
}

/// A reader of REAPER's plain-text format, as documented: lines of
/// whitespace-separated tokens, strings quoted with `"`, `'` or `` ` ``,
/// blocks opened by `<NAME ...` and closed by `>`.
#[derive(Debug, Default)]
struct Block {
    name: String,
    lines: Vec<Vec<String>>,
    children: Vec<Block>,
}

fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' || c == '`' {
            chars.next();
            out.push(chars.by_ref().take_while(|x| *x != c).collect());
        } else {
            out.push(chars.by_ref().take_while(|x| !x.is_whitespace()).collect());
        }
    }
    out
}

fn parse(text: &str) -> Block {
    let mut stack = vec![Block::default()];
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('<') {
            let toks = tokens(rest);
            stack.push(Block {
                name: toks[0].clone(),
                lines: vec![toks[1..].to_vec()],
                ..Default::default()
            });
        } else if t == ">" {
            let b = stack.pop().unwrap();
            stack.last_mut().unwrap().children.push(b);
        } else if !t.is_empty() {
            stack.last_mut().unwrap().lines.push(tokens(t));
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced blocks");
    stack.pop().unwrap().children.pop().unwrap()
}

fn value<'a>(b: &'a Block, key: &str) -> &'a [String] {
    &b.lines.iter().find(|l| l.first().is_some_and(|k| k == key)).unwrap()[1..]
}

#[test]
fn the_reaper_project_parses_with_tracks_items_and_markers_in_place() {
    let (_dir, s) = show();
    let p = parse(&reaper::project(&s));
    assert_eq!(p.name, "REAPER_PROJECT");
    assert_eq!(value(&p, "SAMPLERATE")[0], "48000");
    let markers: Vec<&Vec<String>> = p.lines.iter().filter(|l| l[0] == "MARKER").collect();
    assert_eq!(markers[0][1..], ["1", "3600.000000", "a_take", "1"]);
    assert_eq!(markers[1][1..], ["1", "3602.000000", "", "1"]);
    assert_eq!(markers[2][1..], ["2", "3600.500000", "verse \"one\", <&> 'x'", "0"]);
    let tracks: Vec<&Block> = p.children.iter().filter(|b| b.name == "TRACK").collect();
    assert_eq!(tracks.len(), 2);
    assert_eq!(value(tracks[1], "NAME")[0], "in_2");
    let items: Vec<&Block> = tracks[1].children.iter().collect();
    assert_eq!(items.len(), 2);
    // The interleaved FLAC take: channel 2 of the file; the mono take: its
    // own file.
    assert_eq!(value(items[0], "POSITION")[0], "3600.000000");
    assert_eq!(value(items[0], "LENGTH")[0], "2.000000");
    assert_eq!(value(items[0], "CHANMODE")[0], "4");
    assert_eq!(items[0].children[0].name, "SOURCE");
    assert_eq!(items[0].children[0].lines[0], ["FLAC"]);
    assert!(value(&items[0].children[0], "FILE")[0].ends_with("a_take.flac"));
    assert_eq!(value(items[1], "POSITION")[0], "3610.000000");
    assert_eq!(value(items[1], "CHANMODE")[0], "0");
    assert!(value(&items[1].children[0], "FILE")[0].ends_with("b_take_in_2.wav"));
}

#[test]
fn reaper_strings_pick_a_quote_they_do_not_contain() {
    assert_eq!(reaper::quote("a b"), "\"a b\"");
    assert_eq!(reaper::quote("say \"hi\""), "'say \"hi\"'");
    assert_eq!(reaper::quote("it's \"x\""), "`it's \"x\"`");
    assert_eq!(reaper::quote("`it's` \"x\"\nnext"), "`'it's' \"x\" next`");
}

#[test]
fn the_ardour_session_places_takes_in_superclock_ticks_and_escapes_names() {
    let (_dir, s) = show();
    let xml = ardour::session(&s, "the <show> & \"co\"");
    assert!(xml.contains(r#"name="the &lt;show&gt; &amp; &quot;co&quot;""#), "{}", &xml[..400]);
    // 1 h of 48 kHz: 3600 s of 282 240 000 ticks; a take of 2 s.
    assert!(xml.contains(r#"position="a1016064000000""#));
    assert!(xml.contains(r#"length="a564480000@a1016064000000""#));
    assert!(xml.contains(r#"name="verse &quot;one&quot;, &lt;&amp;&gt; &apos;x&apos;""#));
    assert_eq!(xml.matches("<Route ").count(), 2);
    // Two tracks, each with both takes: four regions, and a whole-file
    // region per file channel (2 + 2).
    assert_eq!(xml.matches("<Region ").count(), 8);
    assert_eq!(ardour::esc("a\nb\u{1}"), "a&#10;b ");
}

#[test]
fn takes_are_chosen_by_time_of_day_and_copied_on_request() {
    let (dir, mut s) = show();
    // a_take runs 01:00:00-01:00:02, b_take 01:00:10-01:00:12.
    let mut one = s.clone();
    one.keep_between(Some("01:00:05"), None).unwrap();
    assert_eq!(one.takes.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["b_take"]);
    let mut both = s.clone();
    both.keep_between(Some("01:00:01"), Some("01:00:11")).unwrap();
    assert_eq!(both.takes.len(), 2);
    assert!(s.clone().keep_between(Some("02:00"), None).unwrap_err().contains("no take"));
    assert!(s.clone().keep_between(Some("25:00"), None).unwrap_err().contains("HH:MM"));
    assert!(s.clone().keep_between(Some("01:10"), Some("01:00")).is_err());
    let to = dir.path().join("copies");
    s.copy_files(&to).unwrap();
    assert!(s.takes.iter().flat_map(|t| &t.files).all(|f| f.path.starts_with(&to) && f.path.is_file()));
    // Never over a file that is there.
    let e = s.copy_files(&to).unwrap_err().to_string();
    assert!(e.contains("already there"), "{e}");
}

/// A chain (rotation, segments) is contiguous on JACK's timeline: each
/// file is placed where the one before it ends, though its time of day
/// says otherwise (JACK's clock is not the system clock; under load the
/// dummy backend ran 45,200 frames to the second). A take that does not
/// follow on JACK's timeline, or whose time of day is over a second off,
/// keeps its own.
#[test]
fn a_chain_is_placed_end_to_end_on_jacks_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str, tr: u64, frames: u64, first: u64| {
        let mut m = take(dir.path(), name, 48_000, tr, frames, false, "wav");
        m.first_frame_time = Some(first);
        m.save(&Manifest::path(dir.path(), name)).unwrap();
    };
    at("c1", 480_000, 45_000, 1_000_000);
    at("c2", 528_000, 45_200, 1_045_000); // follows c1
    at("c3", 576_000, 45_100, 1_090_200); // follows c2
    at("far", 700_000, 1_000, 1_135_300); // follows c3 on JACK's clock, 2.5 s off by the day's
    at("other", 900_000, 1_000, 5_000_000);
    let s = Show::load(&[dir.path().to_path_buf()]).unwrap();
    let placed: Vec<(&str, u64)> = s.takes.iter().map(|t| (t.name.as_str(), t.position)).collect();
    assert_eq!(
        placed,
        [("c1", 480_000), ("c2", 525_000), ("c3", 570_200), ("far", 700_000), ("other", 900_000)]
    );
}
