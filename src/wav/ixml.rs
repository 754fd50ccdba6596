//! The `iXML` chunk (iXML 2.x): what production tools (Pro Tools, Media
//! Composer, Reaper, field-recorder workflows) read to name the channels,
//! the project, the take and the time of day.
//!
//! The chunk sits before the audio, so it keeps one size for the life of
//! the file: the writer pads it with spaces (white space after the root
//! element is allowed by XML) and rewrites it in place when the first
//! frame's time is known.

/// One channel of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// 1-based index of the port in the take (the same in every file of a
    /// mono take).
    pub channel_index: usize,
    /// 1-based position of the channel in this file's frames.
    pub interleave_index: usize,
    pub name: String,
}

/// What capstan writes into a file's iXML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ixml {
    pub project: String,
    pub take: String,
    /// The NSM session's name (empty outside a session).
    pub tape: String,
    /// Unique id of this file (also in the take's manifest).
    pub file_uid: String,
    /// Unique id shared by the files of one mono take, with this file's
    /// 1-based place among them (`FILE_SET`); `None` for an interleaved take.
    pub file_set: Option<(String, usize, usize)>,
    pub sample_rate: u32,
    pub bit_depth: u16,
    /// Samples since midnight of the first frame (the bext time_reference).
    pub samples_since_midnight: u64,
    /// JACK's frame time of the first frame, kept here because the bext
    /// time_reference holds the time of day.
    pub jack_frame_time: Option<u64>,
    pub tracks: Vec<Track>,
}

impl Ixml {
    /// The chunk body: UTF-8 XML.
    pub fn encode(&self) -> String {
        let mut x = String::with_capacity(1024 + 128 * self.tracks.len());
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BWFXML>\n");
        field(&mut x, 1, "IXML_VERSION", "2.10");
        field(&mut x, 1, "PROJECT", &self.project);
        field(&mut x, 1, "TAPE", &self.tape);
        field(&mut x, 1, "TAKE", &self.take);
        field(&mut x, 1, "FILE_UID", &self.file_uid);
        x.push_str("  <SPEED>\n");
        field(&mut x, 2, "NOTE", "no timecode; TIMESTAMP_* from JACK's clock and the system clock");
        field(&mut x, 2, "FILE_SAMPLE_RATE", &self.sample_rate.to_string());
        field(&mut x, 2, "AUDIO_BIT_DEPTH", &self.bit_depth.to_string());
        field(&mut x, 2, "DIGITIZER_SAMPLE_RATE", &self.sample_rate.to_string());
        let ssm = self.samples_since_midnight;
        field(&mut x, 2, "TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_HI", &(ssm >> 32).to_string());
        field(&mut x, 2, "TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_LO", &(ssm & 0xFFFF_FFFF).to_string());
        field(&mut x, 2, "TIMESTAMP_SAMPLE_RATE", &self.sample_rate.to_string());
        x.push_str("  </SPEED>\n");
        if let Some((family, index, total)) = &self.file_set {
            x.push_str("  <FILE_SET>\n");
            field(&mut x, 2, "TOTAL_FILES", &total.to_string());
            field(&mut x, 2, "FAMILY_UID", family);
            field(&mut x, 2, "FILE_SET_INDEX", &index.to_string());
            x.push_str("  </FILE_SET>\n");
        }
        x.push_str("  <TRACK_LIST>\n");
        field(&mut x, 2, "TRACK_COUNT", &self.tracks.len().to_string());
        for t in &self.tracks {
            x.push_str("    <TRACK>\n");
            field(&mut x, 3, "CHANNEL_INDEX", &t.channel_index.to_string());
            field(&mut x, 3, "INTERLEAVE_INDEX", &t.interleave_index.to_string());
            field(&mut x, 3, "NAME", &t.name);
            x.push_str("    </TRACK>\n");
        }
        x.push_str("  </TRACK_LIST>\n");
        x.push_str("  <USER>\n");
        if let Some(t) = self.jack_frame_time {
            field(&mut x, 2, "CAPSTAN_JACK_FRAME_TIME", &t.to_string());
        }
        x.push_str("  </USER>\n</BWFXML>\n");
        x
    }
}

/// The text of the first `<tag>` element (no markup inside).
fn value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let at = xml.find(&open)? + open.len();
    let end = xml[at..].find('<')?;
    Some(xml[at..at + end].trim())
}

/// JACK's frame time of a file's first frame, from the iXML text capstan
/// wrote (`None` in files of other recorders).
pub fn jack_frame_time(xml: &str) -> Option<u64> {
    value(xml, "CAPSTAN_JACK_FRAME_TIME")?.parse().ok()
}

/// A file's FILE_UID, from its iXML text.
pub fn file_uid(xml: &str) -> Option<String> {
    value(xml, "FILE_UID").filter(|u| !u.is_empty()).map(str::to_owned)
}

/// `<TAG>text</TAG>` on its own line, the text escaped.
fn field(x: &mut String, depth: usize, tag: &str, text: &str) {
    for _ in 0..depth {
        x.push_str("  ");
    }
    x.push('<');
    x.push_str(tag);
    x.push('>');
    for c in text.chars() {
        match c {
            '<' => x.push_str("&lt;"),
            '>' => x.push_str("&gt;"),
            '&' => x.push_str("&amp;"),
            '"' => x.push_str("&quot;"),
            '\'' => x.push_str("&apos;"),
            // A parser would read a bare CR as a line feed.
            '\r' => x.push_str("&#13;"),
            // Not allowed in XML 1.0 at all (take ids, port names and JACK
            // pretty names can hold them): the replacement character.
            c if !xml_char(c) => x.push('\u{FFFD}'),
            c => x.push(c),
        }
    }
    x.push_str("</");
    x.push_str(tag);
    x.push_str(">\n");
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A unique id for a file: 128 random bits from the kernel, in hex.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a valid, writable buffer of the length passed.
    let got = unsafe { nix::libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if got != b.len() as isize {
        // getrandom cannot fail for 16 bytes once the pool is up; if it
        // does, time and pid are still unique enough for one machine.
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        b = (t ^ ((std::process::id() as u128) << 96)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ixml {
        Ixml {
            project: "Band & <Co>".into(),
            take: "t1".into(),
            tape: "session".into(),
            file_uid: new_uid(),
            file_set: None,
            sample_rate: 48000,
            bit_depth: 24,
            samples_since_midnight: (1u64 << 32) + 5,
            jack_frame_time: Some(77),
            tracks: vec![
                Track { channel_index: 1, interleave_index: 1, name: "Kick \"In\"".into() },
                Track { channel_index: 2, interleave_index: 2, name: "Snare".into() },
            ],
        }
    }

    #[test]
    fn escapes_text_and_splits_the_timestamp() {
        let x = sample().encode();
        assert!(x.contains("<PROJECT>Band &amp; &lt;Co&gt;</PROJECT>"), "{x}");
        assert!(x.contains("<NAME>Kick &quot;In&quot;</NAME>"), "{x}");
        assert!(x.contains("<TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_HI>1</TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_HI>"));
        assert!(x.contains("<TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_LO>5</TIMESTAMP_SAMPLES_SINCE_MIDNIGHT_LO>"));
        assert!(x.contains("<TRACK_COUNT>2</TRACK_COUNT>"));
        assert!(x.contains("<CAPSTAN_JACK_FRAME_TIME>77</CAPSTAN_JACK_FRAME_TIME>"));
        assert!(x.trim_end().ends_with("</BWFXML>"));
    }

    /// Property: any Unicode text in every name field (U+FFFE, U+FFFF,
    /// controls, markup, astral planes) gives iXML that a real XML parser
    /// accepts, with the text back where it is allowed.
    #[test]
    fn any_name_gives_well_formed_ixml() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
        let special = [
            '\u{FFFE}',
            '\u{FFFF}',
            '\0',
            '\u{1}',
            '\u{1F}',
            '<',
            '&',
            '"',
            '\'',
            ']',
            '\u{D7FF}',
            '\u{E000}',
            '\u{10FFFF}',
            '\r',
        ];
        let text = |next: &mut dyn FnMut() -> u64| -> String {
            (0..next() % 12)
                .map(|_| match next() % 3 {
                    0 => special[(next() % special.len() as u64) as usize],
                    1 => char::from_u32((next() % 0x11_0000) as u32).unwrap_or('x'),
                    _ => char::from_u32((next() % 0x80) as u32).unwrap(),
                })
                .collect()
        };
        for _ in 0..2_000 {
            let mut x = sample();
            x.project = text(&mut next);
            x.take = text(&mut next);
            x.tape = text(&mut next);
            for t in &mut x.tracks {
                t.name = text(&mut next);
            }
            let xml = x.encode();
            let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml:?}"));
            let project = doc.descendants().find(|n| n.has_tag_name("PROJECT")).unwrap();
            let want: String = x.project.chars().map(|c| if xml_char(c) { c } else { '\u{FFFD}' }).collect();
            assert_eq!(project.text().unwrap_or(""), want);
        }
    }

    #[test]
    fn uids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_uid(), new_uid());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
