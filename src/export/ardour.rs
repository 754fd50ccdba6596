//! An Ardour session (the XML Ardour 7 writes, version 7002; Ardour 7 and
//! 8 load it): a mono track per input, each take's file (or its channel of
//! an interleaved file) as a region at its time of day, markers as
//! location markers, each take and each gap as a range, and the session
//! range around them all. The take files are referred to where they are
//! (embedded sources), never copied or touched.
//!
//! Checked by loading the session in the real Ardour (`ardour7-lua`) in
//! the integration tests.

use std::fmt::Write;

use super::Show;

/// Ardour 7's audio time unit: superclock ticks per second (the session's
/// tempo map says so). Every common rate divides it.
const SUPERCLOCK: u64 = 282_240_000;

/// The session file's text, for a session named `name`.
pub fn session(show: &Show, name: &str) -> String {
    let rate = show.sample_rate.max(1) as u64;
    // Audio time as Ardour writes it: `a` and superclock ticks.
    let t = |samples: u64| format!("a{}", samples as u128 * SUPERCLOCK as u128 / rate as u128);
    // A duration: ticks, `@`, and where it starts.
    let len = |at: u64, n: u64| format!("{}@{}", t(n), t(at));
    let mut next = 100u64;
    let mut id = || {
        next += 1;
        next
    };
    let (mut sources, mut whole, mut locations) = (String::new(), String::new(), String::new());
    // One source per file channel, and its whole-file region.
    let mut source_ids: Vec<Vec<Vec<u64>>> = Vec::new();
    for take in &show.takes {
        let mut per_file = Vec::new();
        for f in &take.files {
            let path = esc(&f.path.to_string_lossy());
            let mut ids = Vec::new();
            for (chan, _) in &f.channels {
                let (s, r) = (id(), id());
                let _ = writeln!(
                    sources,
                    r#"    <Source name="{path}" type="audio" flags="" id="{s}" channel="{chan}" origin="{path}" gain="1"/>"#
                );
                let _ = writeln!(
                    whole,
                    r#"    <Region name="{}" whole-file="1" external="1" start="a0" length="{}" position="a0" id="{r}" type="audio" source-0="{s}" master-source-0="{s}" channels="1"/>"#,
                    esc(&take.name),
                    len(0, take.frames)
                );
                ids.push(s);
            }
            per_file.push(ids);
        }
        source_ids.push(per_file);
    }
    let start = show.takes.iter().map(|t| t.position).min().unwrap_or(0);
    let end = show.takes.iter().map(|t| t.position + t.frames).max().unwrap_or(0);
    let mut location = |name: &str, a: u64, b: u64, flags: &str| {
        let _ = writeln!(
            locations,
            r#"    <Location id="{}" name="{}" start="{}" end="{}" flags="{flags}" locked="0" timestamp="0" cue="0"/>"#,
            id(),
            esc(name),
            t(a),
            t(b)
        );
    };
    location("session", start, end, "IsSessionRange");
    for take in &show.takes {
        location(&take.name, take.position, take.position + take.frames, "IsRangeMarker");
        for m in &take.markers {
            location(&m.label, take.position + m.frame, take.position + m.frame, "IsMark");
        }
        for g in &take.gaps {
            location("gap", take.position + g.frame, take.position + g.frame + g.frames, "IsRangeMarker");
        }
    }
    let (mut routes, mut playlists) = (String::new(), String::new());
    for (order, track) in show.tracks.iter().enumerate() {
        let (route, playlist) = (id(), id());
        let tn = esc(track);
        let _ = write!(
            routes,
            r#"    <Route version="7002" id="{route}" name="{tn}" default-type="audio" strict-io="1" active="1" denormal-protection="0" meter-point="MeterPostFader" disk-io-point="DiskIOPreFader" meter-type="MeterPeak" audio-playlist="{playlist}" saved-meter-point="MeterPostFader" alignment-choice="Automatic" mode="Normal">
      <PresentationInfo order="{order}" flags="AudioTrack,OrderSet" color="0"/>
      <IO name="{tn}" id="{}" direction="Input" default-type="audio">
        <Port type="audio" name="{tn}/audio_in 1"/>
      </IO>
      <IO name="{tn}" id="{}" direction="Output" default-type="audio">
        <Port type="audio" name="{tn}/audio_out 1"/>
        <Port type="audio" name="{tn}/audio_out 2"/>
      </IO>
      <Processor id="{}" name="recorder:{tn}" active="1" user-latency="0" use-user-latency="0" type="diskwriter" record-safe="0"/>
      <Processor id="{}" name="player:{tn}" active="1" user-latency="0" use-user-latency="0" type="diskreader"/>
      <Processor id="{}" name="Polarity" active="1" user-latency="0" use-user-latency="0" type="polarity"/>
      <Processor id="{}" name="Amp" active="1" user-latency="0" use-user-latency="0" type="trim">
        <Controllable name="trimcontrol" id="{}" flags="GainLike" value="1"/>
      </Processor>
      <Processor id="{}" name="Amp" active="1" user-latency="0" use-user-latency="0" type="amp">
        <Controllable name="gaincontrol" id="{}" flags="GainLike" value="1"/>
      </Processor>
      <Processor id="{}" name="meter-{tn}" active="1" user-latency="0" use-user-latency="0" type="meter"/>
      <Processor id="{}" name="{tn}" active="1" user-latency="0" use-user-latency="0" own-input="1" own-output="0" output="{tn}" type="main-outs" role="Main">
        <PannerShell bypassed="0" user-panner="" linked-to-route="1"/>
      </Processor>
    </Route>
"#,
            id(),
            id(),
            id(),
            id(),
            id(),
            id(),
            id(),
            id(),
            id(),
            id(),
            id()
        );
        let _ = writeln!(
            playlists,
            r#"    <Playlist id="{playlist}" name="{tn}" type="audio" orig-track-id="{route}" shared-with-ids="" frozen="0" combine-ops="0">"#
        );
        for (take, files) in show.takes.iter().zip(&source_ids) {
            for (f, ids) in take.files.iter().zip(files) {
                for ((_, chan_track), s) in f.channels.iter().zip(ids) {
                    if chan_track != track {
                        continue;
                    }
                    let _ = writeln!(
                        playlists,
                        r#"      <Region name="{}" muted="0" opaque="1" locked="0" start="a0" length="{}" position="{}" layering-index="0" id="{}" type="audio" source-0="{s}" master-source-0="{s}" channels="1"/>"#,
                        esc(&take.name),
                        len(take.position, take.frames),
                        t(take.position),
                        id()
                    );
                }
            }
        }
        playlists += "    </Playlist>\n";
    }
    let counter = id() + 1;
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Session version="7002" name="{}" sample-rate="{rate}" id-counter="{counter}" name-counter="1" event-counter="0" vca-counter="1">
  <ProgramVersion created-with="capstan {}" modified-with="capstan {}"/>
{}  <Metadata/>
  <Sources>
{sources}  </Sources>
  <Regions>
{whole}  </Regions>
  <Locations>
{locations}  </Locations>
  <Routes>
{routes}  </Routes>
  <Playlists>
{playlists}  </Playlists>
  <UnusedPlaylists/>
  <RouteGroups/>
  <TempoMap superclocks-per-second="{SUPERCLOCK}">
    <Tempos>
      <Tempo npm="120" enpm="120" note-type="4" type="Tempo::Constant" active="1" locked-to-meter="0" continuing="0" sclock="0" quarters="0:0" bbt="1|1|0" omega="0"/>
    </Tempos>
    <Meters>
      <Meter note-value="4" divisions-per-bar="4" sclock="0" quarters="0:0" bbt="1|1|0"/>
    </Meters>
    <MusicTimes/>
  </TempoMap>
</Session>
"#,
        esc(name),
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION"),
        include_str!("ardour_config.xml"),
    )
}

/// Text for an XML attribute.
pub fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&apos;",
            '\n' => out += "&#10;",
            c if (c as u32) < 0x20 && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Writes the session directory `dir` (created if need be; the folders
/// Ardour expects in it) with `<name>.ardour`. Refuses to overwrite a
/// session file that is already there.
pub fn write_session(
    dir: &std::path::Path,
    name: &str,
    show: &Show,
) -> Result<std::path::PathBuf, super::ExportError> {
    let err = |path: &std::path::Path, e| super::ExportError::Write { path: path.to_path_buf(), source: e };
    let file = dir.join(format!("{name}.ardour"));
    if file.symlink_metadata().is_ok() {
        let e =
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a session is already there; left alone");
        return Err(err(&file, e));
    }
    for sub in ["interchange", "peaks", "analysis", "dead", "export", "plugins", "externals"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| err(&d, e))?;
    }
    let audio = dir.join("interchange").join(name).join("audiofiles");
    std::fs::create_dir_all(&audio).map_err(|e| err(&audio, e))?;
    super::write(&file, &session(show, name))?;
    Ok(file)
}

/// [`write_session`], or its update: a session file already there is
/// replaced only if capstan wrote it last (Ardour marks the sessions it
/// saves with its own `modified-with`); otherwise it is left alone.
pub fn update_session(
    dir: &std::path::Path,
    name: &str,
    show: &Show,
) -> Result<std::path::PathBuf, super::ExportError> {
    let file = dir.join(format!("{name}.ardour"));
    if file.symlink_metadata().is_ok() {
        let ours = std::fs::read_to_string(&file).is_ok_and(|t| t.contains("modified-with=\"capstan "));
        if !ours || file.symlink_metadata().is_ok_and(|m| !m.is_file()) {
            let e = std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "saved by Ardour (or not capstan's) since capstan wrote it; left alone",
            );
            return Err(super::ExportError::Write { path: file, source: e });
        }
        super::write(&file, &session(show, name))?;
        return Ok(file);
    }
    write_session(dir, name, show)
}
