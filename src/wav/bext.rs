//! The Broadcast Wave `bext` chunk (EBU Tech 3285, version 1).

/// What capstan puts in a take's `bext` chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bext {
    /// Free text (max 256 bytes), e.g. the take id and the ports recorded.
    pub description: String,
    /// Always "capstan" for our files (max 32 bytes).
    pub originator: String,
    /// Unique reference (max 32 bytes): the file's take name.
    pub originator_reference: String,
    /// Local date of the first sample, `yyyy-mm-dd`.
    pub origination_date: String,
    /// Local time of the first sample, `hh:mm:ss`.
    pub origination_time: String,
    /// Position of the first sample in frames. capstan stores the JACK frame
    /// time of the first recorded frame (see docs/file-format.md).
    pub time_reference: u64,
    /// Coding history lines (EBU R 98 style), e.g. `A=PCM,F=48000,W=24,T=capstan`.
    pub coding_history: String,
}

/// Fixed part of the chunk body: description..reserved, in bytes.
pub const BEXT_FIXED_LEN: usize = 602;

impl Bext {
    /// The chunk body (without the 8-byte chunk header), padded to even length.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BEXT_FIXED_LEN + self.coding_history.len() + 1);
        put_fixed(&mut b, &self.description, 256);
        put_fixed(&mut b, &self.originator, 32);
        put_fixed(&mut b, &self.originator_reference, 32);
        put_fixed(&mut b, &self.origination_date, 10);
        put_fixed(&mut b, &self.origination_time, 8);
        b.extend_from_slice(&(self.time_reference as u32).to_le_bytes());
        b.extend_from_slice(&((self.time_reference >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // version 1: UMID present (zero), no loudness
        b.extend_from_slice(&[0u8; 64]); // UMID
        b.extend_from_slice(&[0u8; 10]); // loudness fields (version 2), unused
        b.extend_from_slice(&[0u8; 180]); // reserved
        debug_assert_eq!(b.len(), BEXT_FIXED_LEN);
        b.extend_from_slice(self.coding_history.as_bytes());
        if b.len() % 2 == 1 {
            b.push(0);
        }
        b
    }

    /// Parses a chunk body (used by tests and by recovery tools).
    pub fn decode(body: &[u8]) -> Option<Bext> {
        if body.len() < BEXT_FIXED_LEN {
            return None;
        }
        let s = |from: usize, len: usize| {
            let raw = &body[from..from + len];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(len);
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as u64;
        let history = &body[BEXT_FIXED_LEN..];
        let end = history.iter().position(|&c| c == 0).unwrap_or(history.len());
        Some(Bext {
            description: s(0, 256),
            originator: s(256, 32),
            originator_reference: s(288, 32),
            origination_date: s(320, 10),
            origination_time: s(330, 8),
            time_reference: u32_at(338) | (u32_at(342) << 32),
            coding_history: String::from_utf8_lossy(&history[..end]).into_owned(),
        })
    }
}

/// ASCII field of fixed width: truncated on a char boundary, NUL padded.
fn put_fixed(b: &mut Vec<u8>, s: &str, width: usize) {
    let s = clip(s, width);
    b.extend_from_slice(s.as_bytes());
    b.resize(b.len() + width - s.len(), 0);
}

/// What a field of `width` bytes keeps of `s`: cut on a char boundary.
pub fn clip(s: &str, width: usize) -> &str {
    let mut end = s.len().min(width);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bext {
        Bext {
            description: "take 1".into(),
            originator: "capstan".into(),
            originator_reference: "capstan_20261125_101010_001_v1".into(),
            origination_date: "2026-11-25".into(),
            origination_time: "10:10:10".into(),
            time_reference: 0x1_2345_6789,
            coding_history: "A=PCM,F=48000,W=24,T=capstan\r\n".into(),
        }
    }

    #[test]
    fn round_trips_and_has_spec_offsets() {
        let b = sample();
        let body = b.encode();
        assert_eq!(body.len() % 2, 0);
        assert_eq!(&body[256..263], b"capstan");
        // TimeReferenceLow at offset 338, High at 342 (EBU Tech 3285).
        assert_eq!(u32::from_le_bytes(body[338..342].try_into().unwrap()), 0x2345_6789);
        assert_eq!(u32::from_le_bytes(body[342..346].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes(body[346..348].try_into().unwrap()), 1);
        assert_eq!(Bext::decode(&body).unwrap(), b);
    }

    #[test]
    fn long_fields_are_truncated_not_overflowing() {
        let mut b = sample();
        b.originator_reference = "é".repeat(40);
        let body = b.encode();
        assert_eq!(body.len(), BEXT_FIXED_LEN + b.coding_history.len());
        assert!(Bext::decode(&body).unwrap().originator_reference.chars().count() <= 16);
    }
}
