//! Markers: a `cue ` chunk with one cue point per marker and a
//! `LIST`/`adtl` chunk with a `labl` label for each, after the audio (the
//! layout Pro Tools, Reaper, Audition and sox's readers know). They go into
//! the file when it is finalized, or by `capstan recover` from the manifest
//! after a crash; until then the manifest holds them.

/// A marker in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// Frame offset in the file (sample frames from its first frame).
    pub frame: u64,
    /// JACK's frame time of that frame.
    pub frame_time: u64,
    pub label: String,
}

/// Longest label kept, in bytes.
pub const MAX_LABEL: usize = 256;

/// The chunks that follow the audio for `markers` (those past 2^32 frames,
/// which a cue point cannot address, are left to the manifest); empty if
/// there are none.
pub fn trailer(markers: &[Marker]) -> Vec<u8> {
    let points: Vec<&Marker> = markers.iter().filter(|m| m.frame <= u32::MAX as u64).collect();
    if points.is_empty() {
        return Vec::new();
    }
    let mut b = Vec::with_capacity(64 + points.len() * 64);
    b.extend_from_slice(b"cue ");
    b.extend_from_slice(&(4 + 24 * points.len() as u32).to_le_bytes());
    b.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for (i, m) in points.iter().enumerate() {
        let id = i as u32 + 1;
        b.extend_from_slice(&id.to_le_bytes()); // dwName
        b.extend_from_slice(&(m.frame as u32).to_le_bytes()); // dwPosition
        b.extend_from_slice(b"data"); // fccChunk
        b.extend_from_slice(&0u32.to_le_bytes()); // dwChunkStart
        b.extend_from_slice(&0u32.to_le_bytes()); // dwBlockStart
        b.extend_from_slice(&(m.frame as u32).to_le_bytes()); // dwSampleOffset
    }
    let mut adtl = Vec::new();
    adtl.extend_from_slice(b"adtl");
    for (i, m) in points.iter().enumerate() {
        let mut text = clip(&m.label).as_bytes().to_vec();
        text.push(0);
        adtl.extend_from_slice(b"labl");
        adtl.extend_from_slice(&(4 + text.len() as u32).to_le_bytes());
        adtl.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        adtl.extend_from_slice(&text);
        if text.len() % 2 == 1 {
            adtl.push(0);
        }
    }
    b.extend_from_slice(b"LIST");
    b.extend_from_slice(&(adtl.len() as u32).to_le_bytes());
    b.extend_from_slice(&adtl);
    b
}

/// `label` cut to [`MAX_LABEL`] bytes on a character boundary, without NULs.
pub fn clip(label: &str) -> String {
    let clean: String = label.chars().filter(|&c| c != '\0').collect();
    let mut end = clean.len().min(MAX_LABEL);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

/// Whether `head` (bytes right after a file's audio) starts a marker
/// trailer written by [`trailer`]: a `cue ` chunk whose size matches its
/// point count. Audio bytes never pass this by chance in practice (eight
/// bytes must agree).
pub fn is_trailer(head: &[u8]) -> bool {
    if head.len() < 12 || &head[..4] != b"cue " {
        return false;
    }
    let size = u32::from_le_bytes(head[4..8].try_into().unwrap());
    let n = u32::from_le_bytes(head[8..12].try_into().unwrap());
    n > 0 && n < (1 << 24) && size == 4 + 24 * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cue_points_and_labels_at_their_offsets() {
        let m = |frame, label: &str| Marker { frame, frame_time: frame + 10, label: label.into() };
        let t = trailer(&[m(0, "intro"), m(48_000, "verse 1"), m(1 << 33, "too far")]);
        assert!(is_trailer(&t));
        assert_eq!(&t[..4], b"cue ");
        assert_eq!(u32::from_le_bytes(t[8..12].try_into().unwrap()), 2, "the marker past 2^32 is left out");
        let second = 12 + 24;
        assert_eq!(u32::from_le_bytes(t[second + 20..second + 24].try_into().unwrap()), 48_000);
        let list = 8 + 4 + 48;
        assert_eq!(&t[list..list + 4], b"LIST");
        assert_eq!(&t[list + 8..list + 12], b"adtl");
        let size = u32::from_le_bytes(t[list + 4..list + 8].try_into().unwrap()) as usize;
        assert_eq!(list + 8 + size, t.len());
        assert!(t.windows(8).any(|w| w == b"verse 1\0"));
        assert!(trailer(&[]).is_empty());
        assert!(!is_trailer(b"cue \x10\0\0\0\x01\0\0\0"), "size must match the count");
    }

    #[test]
    fn labels_are_clipped_on_a_char_boundary() {
        let l = clip(&"é".repeat(200));
        assert!(l.len() <= MAX_LABEL && l.chars().all(|c| c == 'é'));
        assert_eq!(clip("a\0b"), "ab");
    }
}
