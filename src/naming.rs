//! Take file names: collision-resistant, never reused, never outside the
//! output directory.
//!
//! Default: `{project}_{YYYYMMDD}_{HHMMSS}_{seq:03}_v{rev}.wav`. `seq` starts
//! at 1 and advances while any file of that stem exists; `rev` is the
//! revision of a take name (1 for a new take). In the mono layout each port's
//! file is `{stem}_{port short name}.wav`.

use std::path::{Component, Path};

use chrono::{DateTime, Local};

/// Why a name cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("file name {0:?} is empty")]
    Empty(String),
    #[error("file name {0:?} must stay inside the output directory (no '..', no absolute path, no '/')")]
    Escapes(String),
    #[error("file name {0:?} contains a control character")]
    Control(String),
    #[error("file name {0:?}: a FLAC take's file name ends in .flac")]
    Extension(String),
    #[error("file name {0:?} ends in .take.json, which capstan keeps for take manifests")]
    Manifest(String),
}

/// Makes a string safe as part of a file name: path separators, control
/// characters and spaces become `_`.
pub fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| if c.is_control() || matches!(c, '/' | '\\' | ':' | ' ') { '_' } else { c })
        .collect()
}

/// Checks a user-given file name (`--file`, `/record/start … filename`) and
/// returns it with `.{ext}` appended if it had no extension. A FLAC take's
/// name must end in `.flac` if it has an extension.
pub fn validate_user_name(name: &str, ext: &str) -> Result<String, NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Empty(name.into()));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(NameError::Control(name.into()));
    }
    let p = Path::new(name);
    let mut comps = p.components();
    if !matches!((comps.next(), comps.next()), (Some(Component::Normal(_)), None)) {
        return Err(NameError::Escapes(name.into()));
    }
    if name.ends_with(crate::vocab::MANIFEST_SUFFIX) {
        return Err(NameError::Manifest(name.into()));
    }
    match p.extension() {
        None => Ok(format!("{name}.{ext}")),
        Some(e) if ext == "flac" && e != "flac" => Err(NameError::Extension(name.into())),
        Some(_) => Ok(name.to_owned()),
    }
}

/// The longest name of one directory (NAME_MAX on Linux filesystems).
const MAX_DIR_NAME: usize = 255;
/// The longest path a layout may give below `--dir`: PATH_MAX (4096) less
/// room for the directory itself and the take's file names.
const MAX_LAYOUT_PATH: usize = 1024;

/// The subdirectory a `--dir-layout` pattern (strftime, e.g. `%Y/%m/%d`)
/// gives for `when`: relative, every component a plain name (no `..`, no
/// absolute path), or why not.
pub fn dated_dir<Tz: chrono::TimeZone>(
    pattern: &str,
    when: &DateTime<Tz>,
) -> Result<std::path::PathBuf, String>
where
    Tz::Offset: std::fmt::Display,
{
    use std::fmt::Write;
    let bad = |why: &str| format!("dir_layout {pattern:?}: {why}");
    let items: Vec<chrono::format::Item> = chrono::format::StrftimeItems::new(pattern).collect();
    if items.iter().any(|i| matches!(i, chrono::format::Item::Error)) {
        return Err(bad("not a valid strftime pattern"));
    }
    let mut out = String::new();
    write!(out, "{}", when.format_with_items(items.into_iter())).map_err(|_| bad("cannot be formatted"))?;
    let p = std::path::PathBuf::from(&out);
    if out.is_empty()
        || !p.components().all(|c| matches!(c, Component::Normal(_)))
        || out.chars().any(char::is_control)
    {
        return Err(bad("must give a relative path of plain names (no '..', no leading '/')"));
    }
    // Each piece as written: `Path` drops a `.` or an empty piece (`%Y/.`,
    // `%Y//%m`), which would then fail every take.
    let parts: Vec<&str> = out.split('/').collect();
    if parts.iter().any(|c| c.is_empty() || c.starts_with('.')) {
        return Err(bad("each directory must be a plain name, not empty and not starting with '.'"));
    }
    if let Some(c) = parts.iter().find(|c| c.len() > MAX_DIR_NAME) {
        return Err(bad(&format!("the directory name {c:?} is longer than {MAX_DIR_NAME} bytes")));
    }
    if parts.iter().any(|c| c.ends_with(crate::vocab::MANIFEST_SUFFIX)) {
        return Err(bad("a directory must not be named like a manifest"));
    }
    if parts.len() > crate::vocab::TAKE_DIR_DEPTH {
        return Err(bad(&format!(
            "{} levels deep; recovery and retention look at most {} levels below --dir",
            parts.len(),
            crate::vocab::TAKE_DIR_DEPTH
        )));
    }
    if out.len() > MAX_LAYOUT_PATH {
        return Err(bad(&format!("gives a path of {} bytes; at most {MAX_LAYOUT_PATH}", out.len())));
    }
    Ok(p)
}

/// The default stem for a take starting at `when`.
pub fn default_stem(project: &str, when: DateTime<Local>, seq: u32, rev: u32) -> String {
    format!("{}_{}_{:03}_v{}", sanitize(project), when.format("%Y%m%d_%H%M%S"), seq, rev)
}

/// The file names of one take, before creation: one for interleaved, one per
/// port for mono.
pub fn file_names(stem: &str, mono_ports: Option<&[String]>, ext: &str) -> Vec<String> {
    match mono_ports {
        None => vec![format!("{stem}.{ext}")],
        Some(ports) => ports.iter().map(|p| format!("{stem}_{}.{ext}", sanitize(p))).collect(),
    }
}

/// Does anything in `dir` already use `stem` (as `stem.*` or `stem_*`)?
pub fn stem_taken(dir: &Path, stem: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.strip_prefix(stem).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_names_follow_the_pattern() {
        let t = Local.with_ymd_and_hms(2026, 11, 25, 9, 5, 7).unwrap();
        assert_eq!(default_stem("my show", t, 3, 1), "my_show_20261125_090507_003_v1");
        assert_eq!(file_names("s", None, "wav"), vec!["s.wav"]);
        assert_eq!(
            file_names("s", Some(&["in_1".into(), "kick mic".into()]), "wav"),
            vec!["s_in_1.wav", "s_kick_mic.wav"]
        );
    }

    #[test]
    fn user_names_cannot_escape_the_directory() {
        assert_eq!(validate_user_name("kick", "wav").unwrap(), "kick.wav");
        assert_eq!(validate_user_name("kick-mic.wav", "wav").unwrap(), "kick-mic.wav");
        for bad in ["../x.wav", "/etc/passwd", "a/b.wav", "..", ".", ""] {
            assert!(validate_user_name(bad, "wav").is_err(), "{bad:?} accepted");
        }
        assert!(matches!(validate_user_name("a\nb", "wav"), Err(NameError::Control(_))));
        assert_eq!(validate_user_name("kick", "flac").unwrap(), "kick.flac");
        let when = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 9, 5, 0).unwrap();
        assert_eq!(dated_dir("%Y/%m/%d", &when).unwrap(), std::path::Path::new("2026/11/26"));
        assert_eq!(dated_dir("log-%Y%m%d/%Hh", &when).unwrap(), std::path::Path::new("log-20261126/09h"));
        for bad in ["/%Y", "../%Y", "%Y/../x", "%Q", ""] {
            assert!(dated_dir(bad, &when).is_err(), "{bad:?}");
        }
        // Layouts that passed and then failed every take, or made takes
        // that recovery and retention never found.
        let long = "x".repeat(256);
        let deep = "%Y/%m/%d/%H/%M/%S/x";
        let huge = format!("{}/", "y".repeat(200)).repeat(6);
        for bad in ["%Y/.", "%Y//%m", ".capstan.lock", "%Y/.hidden", "x.take.json", &long, deep, &huge] {
            assert!(dated_dir(bad, &when).is_err(), "{bad:?}");
        }
        assert!(dated_dir("%Y/%m/%d/%H/%M/%S", &when).is_ok(), "six levels are found");
        assert!(matches!(validate_user_name("x.take.json", "wav"), Err(NameError::Manifest(_))));
        assert!(matches!(validate_user_name("kick.wav", "flac"), Err(NameError::Extension(_))));
    }

    #[test]
    fn stem_taken_sees_both_layouts_but_not_prefixes_of_other_takes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p_001_v1_in_1.wav"), b"").unwrap();
        assert!(stem_taken(dir.path(), "p_001_v1"));
        std::fs::write(dir.path().join("q_001_v1.wav"), b"").unwrap();
        assert!(stem_taken(dir.path(), "q_001_v1"));
        assert!(!stem_taken(dir.path(), "q_001_v10"));
    }
}
