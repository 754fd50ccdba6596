//! The Broadcast Wave `bext` chunk (EBU Tech 3285, version 2: with loudness).

/// What capstan puts in a take's `bext` chunk.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// The version 2 loudness fields (unset: 0x7FFF, "not used").
    pub loudness: Loudness,
}

/// A file's loudness (EBU R 128), as the manifest and the bext v2 fields
/// carry it. `None` where the audio was all below the gates (silence).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Loudness {
    pub integrated_lufs: Option<f64>,
    pub range_lu: Option<f64>,
    pub true_peak_dbtp: Option<f64>,
    pub max_momentary_lufs: Option<f64>,
    pub max_short_term_lufs: Option<f64>,
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
        b.extend_from_slice(&2u16.to_le_bytes()); // version 2: UMID (zero) and loudness
        b.extend_from_slice(&[0u8; 64]); // UMID
        let l = &self.loudness;
        for v in
            [l.integrated_lufs, l.range_lu, l.true_peak_dbtp, l.max_momentary_lufs, l.max_short_term_lufs]
        {
            b.extend_from_slice(&hundredths(v).to_le_bytes());
        }
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
        let version = u16::from_le_bytes([body[346], body[347]]);
        let field = |at: usize| match i16::from_le_bytes([body[at], body[at + 1]]) {
            v if version < 2 || v == i16::MAX => None,
            v => Some(v as f64 / 100.0),
        };
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
            loudness: Loudness {
                integrated_lufs: field(412),
                range_lu: field(414),
                true_peak_dbtp: field(416),
                max_momentary_lufs: field(418),
                max_short_term_lufs: field(420),
            },
        })
    }
}

/// A loudness field: hundredths, rounded and clamped; 0x7FFF when unknown.
fn hundredths(v: Option<f64>) -> i16 {
    match v {
        Some(v) if v.is_finite() => (v * 100.0).round().clamp(-32768.0, 32766.0) as i16,
        _ => i16::MAX,
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
            loudness: Loudness {
                integrated_lufs: Some(-23.01),
                true_peak_dbtp: Some(-1.5),
                ..Default::default()
            },
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
        assert_eq!(u16::from_le_bytes(body[346..348].try_into().unwrap()), 2);
        // Loudness in hundredths at 412.., unknown ones 0x7FFF.
        assert_eq!(i16::from_le_bytes(body[412..414].try_into().unwrap()), -2301);
        assert_eq!(i16::from_le_bytes(body[414..416].try_into().unwrap()), 0x7FFF);
        assert_eq!(i16::from_le_bytes(body[416..418].try_into().unwrap()), -150);
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
