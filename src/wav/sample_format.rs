//! Sample formats a take can be written in, and the conversion from JACK's
//! 32-bit float. Runs on the disk thread only.

use std::fmt;
use std::mem::MaybeUninit;
use std::str::FromStr;

use crate::vocab::ChannelLevel;

/// How each sample is stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// IEEE float, 32 bit: JACK's native format, bit-exact (the default).
    #[serde(alias = "float32", alias = "float")]
    F32,
    /// Signed integer PCM, 16 bit.
    S16,
    /// Signed integer PCM, 24 bit packed in 3 bytes.
    S24,
    /// Signed integer PCM, 32 bit.
    S32,
}

impl SampleFormat {
    pub const ALL: [SampleFormat; 4] = [Self::F32, Self::S16, Self::S24, Self::S32];

    /// Bytes one sample takes in the file.
    pub fn bytes(self) -> usize {
        match self {
            Self::S16 => 2,
            Self::S24 => 3,
            Self::F32 | Self::S32 => 4,
        }
    }

    pub fn bits(self) -> u16 {
        (self.bytes() * 8) as u16
    }

    pub fn is_float(self) -> bool {
        self == Self::F32
    }

    /// Appends `n` frames of `chans` to `out`, interleaved (one channel:
    /// plain), as little-endian bytes; `None` channels are silence (zeros in
    /// every format). The one encoder of the disk path: the bytes are
    /// written once, straight into `out`'s spare capacity (no zero-fill
    /// first). Each channel's level is added to `levels[c]` (see
    /// [`Self::encode_frames`]).
    ///
    /// Integer formats scale by 2^(bits-1) and clip to the format's range, so
    /// any value that came from an integer of that width converts back to the
    /// same integer (no dither: a recorder must not add noise of its own).
    /// NaN is written as 0.
    pub fn append_frames(
        self,
        out: &mut Vec<u8>,
        chans: &[Option<&[f32]>],
        n: usize,
        levels: &mut [ChannelLevel],
    ) {
        let len = n * chans.len() * self.bytes();
        out.reserve(len);
        self.encode_frames(&mut out.spare_capacity_mut()[..len], chans, n, levels);
        // SAFETY: `encode_frames` wrote every byte of the `len` bytes just
        // past `out`'s length, inside the capacity reserved above (or
        // panicked before this line).
        unsafe { out.set_len(out.len() + len) };
    }

    /// Encodes `n` frames of `chans` into `out`, which must be exactly that
    /// long: every byte of `out` is written (for each frame, each channel's
    /// sample or zeros), or this panics (a channel shorter than `n`, or
    /// `levels` not one per channel). Each channel's level (peak and sum of
    /// squares) is added to `levels[c]`, measured while its samples are in
    /// cache: the meters' and the pictures' data costs no pass of its own.
    pub fn encode_frames(
        self,
        out: &mut [MaybeUninit<u8>],
        chans: &[Option<&[f32]>],
        n: usize,
        levels: &mut [ChannelLevel],
    ) {
        match self {
            Self::F32 => interleave(out, chans, n, levels, |x| x.to_le_bytes()),
            Self::S16 => interleave(out, chans, n, levels, |x| (quantize(x, 15) as i16).to_le_bytes()),
            Self::S24 => interleave(out, chans, n, levels, |x| {
                let b = (quantize(x, 23) as i32).to_le_bytes();
                [b[0], b[1], b[2]]
            }),
            Self::S32 => interleave(out, chans, n, levels, |x| (quantize(x, 31) as i32).to_le_bytes()),
        }
    }

    /// Appends one encoded sample (through [`Self::append_frames`]); the
    /// tests' way to make reference bytes.
    #[cfg(test)]
    pub fn encode(self, sample: f32, out: &mut Vec<u8>) {
        self.append_frames(out, &[Some(&[sample])], 1, &mut [ChannelLevel::default()]);
    }

    /// Decodes one little-endian sample back to float (used by the verifier
    /// and the tests, the inverse of [`SampleFormat::append_frames`]).
    pub fn decode(self, b: &[u8]) -> f32 {
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::S16 => i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
            Self::S24 => {
                let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
                v as f32 / 8_388_608.0
            }
            Self::S32 => (i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / 2_147_483_648.0) as f32,
        }
    }
}

/// Writes `n` interleaved frames into `out` (exactly `n` frames long), each
/// sample encoded with `enc`, `None` channels as zeros: every byte of `out`
/// is written (`append_frames` relies on it); each channel's level added to
/// `levels`.
fn interleave<const B: usize>(
    out: &mut [MaybeUninit<u8>],
    chans: &[Option<&[f32]>],
    n: usize,
    levels: &mut [ChannelLevel],
    enc: impl Fn(f32) -> [u8; B],
) {
    // In blocks of frames: a block's rows of output stay in cache while
    // every channel is stored into them (at 256 channels a whole channel's
    // pass would sweep 1 MiB of output per channel).
    const BLOCK: usize = 64;
    let frame = chans.len() * B;
    assert_eq!(out.len(), n * frame);
    assert_eq!(levels.len(), chans.len());
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        for (c, ch) in chans.iter().enumerate() {
            match ch {
                Some(samples) => {
                    let block = &samples[start..end];
                    prefetch(samples.get(end..(end + BLOCK).min(n)));
                    for (i, &x) in block.iter().enumerate() {
                        put(out, (start + i) * frame + c * B, enc(x));
                    }
                    // The block is in L1 now: the meter's read costs no
                    // memory traffic (a separate pass read it all again).
                    levels[c].add(ChannelLevel::of(block));
                }
                None => (start..end).for_each(|i| put(out, i * frame + c * B, [0; B])),
            }
        }
    }
}

/// Asks for `next` (a channel's next block) to be brought into the cache
/// while the other channels of this block are encoded: 256 interleaved
/// channels are 256 short streams, too many for the hardware prefetcher,
/// and the callback wrote them on another core.
#[inline(always)]
fn prefetch(next: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(next) = next {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in next.chunks(16) {
            // SAFETY: a prefetch is a hint that never faults; the address is
            // that of a live slice element.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = next;
}

#[inline(always)]
fn put<const B: usize>(out: &mut [MaybeUninit<u8>], at: usize, bytes: [u8; B]) {
    for (d, b) in out[at..at + B].iter_mut().zip(bytes) {
        d.write(b);
    }
}

/// Scales to a signed integer of `shift + 1` bits, rounding to nearest and
/// clipping.
///
/// No library call: scaling by a power of two is exact in f32 (overflow
/// goes to infinity, which clips the same), the scaled value is exact in
/// f64, adding ±0.5 there is exact for every value that does not clip, and
/// `as` truncates toward zero, which makes it round half away from zero.
/// `as` also saturates and turns NaN into 0. The same results as rounding
/// in f64 with `round()`, for every f32 (a test compares them).
#[inline]
pub fn quantize(sample: f32, shift: u32) -> i64 {
    let scaled = f64::from(sample * (1u32 << shift) as f32);
    let v = (scaled + 0.5f64.copysign(scaled)) as i64;
    v.clamp(-(1i64 << shift), (1i64 << shift) - 1)
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "float32",
            Self::S16 => "s16",
            Self::S24 => "s24",
            Self::S32 => "s32",
        })
    }
}

impl FromStr for SampleFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float" | "float32" => Ok(Self::F32),
            "s16" | "16" => Ok(Self::S16),
            "s24" | "24" => Ok(Self::S24),
            "s32" | "32" => Ok(Self::S32),
            _ => Err(format!("unknown sample format {s:?} (use float32, s16, s24 or s32)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_grid_values_round_trip_exactly() {
        for fmt in SampleFormat::ALL {
            for code in [-32768i32, -32767, -1, 0, 1, 12345, 32767] {
                let x = code as f32 / 32768.0;
                let mut buf = Vec::new();
                fmt.encode(x, &mut buf);
                assert_eq!(buf.len(), fmt.bytes());
                assert_eq!(fmt.decode(&buf), x, "{fmt} code {code}");
            }
        }
    }

    #[test]
    fn full_scale_clips_instead_of_wrapping() {
        let mut buf = Vec::new();
        SampleFormat::S16.encode(1.0, &mut buf);
        assert_eq!(i16::from_le_bytes([buf[0], buf[1]]), i16::MAX);
        buf.clear();
        SampleFormat::S16.encode(-4.0, &mut buf);
        assert_eq!(i16::from_le_bytes([buf[0], buf[1]]), i16::MIN);
        buf.clear();
        SampleFormat::S24.encode(2.0, &mut buf);
        assert_eq!(buf, [0xff, 0xff, 0x7f]);
        buf.clear();
        SampleFormat::S32.encode(f32::NAN, &mut buf);
        assert_eq!(buf, [0, 0, 0, 0]);
    }

    #[test]
    fn s24_negative_is_sign_extended_on_decode() {
        let mut buf = Vec::new();
        SampleFormat::S24.encode(-0.5, &mut buf);
        assert_eq!(buf, [0x00, 0x00, 0xc0]);
        assert_eq!(SampleFormat::S24.decode(&buf), -0.5);
    }

    #[test]
    fn parses_user_spellings() {
        assert_eq!("float32".parse::<SampleFormat>().unwrap(), SampleFormat::F32);
        assert_eq!("S24".parse::<SampleFormat>().unwrap(), SampleFormat::S24);
        assert!("u8".parse::<SampleFormat>().is_err());
    }

    /// The level the encoder measures for each channel: its peak is the
    /// largest |sample| as a float fold finds it (NaN ignored, infinity
    /// counted), over every block edge, in every format; its sum of squares
    /// that of f64 arithmetic (to f32's precision), added to what the
    /// levels held.
    #[test]
    fn the_encoders_levels_are_each_channels_peak_and_squares() {
        let specials = [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-40, -3.5, 0.25];
        let mut x = 0x1234_5678u32;
        for (channels, n) in [(1, 1), (3, 65), (7, 300), (2, 0)] {
            for case in 0..specials.len() + 1 {
                let data: Vec<Vec<f32>> = (0..channels)
                    .map(|_| {
                        (0..n)
                            .map(|_| {
                                x ^= x << 13;
                                x ^= x >> 17;
                                x ^= x << 5;
                                (x as f32 / u32::MAX as f32 - 0.5) * 1.8
                            })
                            .collect()
                    })
                    .collect();
                let mut data = data;
                if let (Some(&v), true) = (specials.get(case), n > 0) {
                    data[channels - 1][n - 1] = v; // the last frame: a block's edge
                }
                let chans: Vec<Option<&[f32]>> = data.iter().map(|d| Some(&d[..])).collect();
                for fmt in SampleFormat::ALL {
                    let mut out = vec![MaybeUninit::uninit(); n * channels * fmt.bytes()];
                    let before = ChannelLevel { peak: 0.5, squares: 2.0 };
                    let mut levels = vec![before; channels];
                    fmt.encode_frames(&mut out, &chans, n, &mut levels);
                    for (c, d) in data.iter().enumerate() {
                        let peak = d.iter().fold(0.5f32, |m, &v| m.max(v.abs()));
                        let what = format!("{fmt} {channels} ch {n} frames case {case} channel {c}");
                        assert_eq!(levels[c].peak.to_bits(), peak.to_bits(), "{what}");
                        if d.iter().all(|v| v.is_finite()) {
                            let squares = 2.0 + d.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
                            assert!((levels[c].squares - squares).abs() <= squares * 1e-5, "{what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn interleave_places_every_sample_and_leaves_gaps_silent() {
        for (channels, n) in [(1, 5), (3, 1000), (256, 4099), (7, 0)] {
            let data: Vec<Vec<f32>> =
                (0..channels).map(|c| (0..n).map(|i| (c * 100_000 + i) as f32).collect()).collect();
            let chans: Vec<Option<&[f32]>> =
                data.iter().enumerate().map(|(c, d)| (c % 5 != 2).then_some(&d[..])).collect();
            let mut out = vec![7u8; 3];
            SampleFormat::F32.append_frames(
                &mut out,
                &chans,
                n,
                &mut vec![ChannelLevel::default(); channels],
            );
            assert_eq!((out.len(), &out[..3]), (3 + n * channels * 4, &[7u8, 7, 7][..]), "appended");
            let out = &out[3..];
            for i in 0..n {
                for c in 0..channels {
                    let got = f32::from_le_bytes(out[(i * channels + c) * 4..][..4].try_into().unwrap());
                    let want = if c % 5 == 2 { 0.0 } else { data[c][i] };
                    assert_eq!(got, want, "{channels} ch, frame {i}, channel {c}");
                }
            }
        }
    }

    /// The fast quantizer gives what rounding in f64 gives, for every kind
    /// of f32: a sweep of bit patterns (all exponents, with and without
    /// fraction bits) and the half-way points around every integer step.
    #[test]
    fn quantize_matches_rounding_in_f64() {
        fn reference(sample: f32, shift: u32) -> i64 {
            let scale = (1u64 << shift) as f64;
            let v = (sample as f64 * scale).round();
            if v.is_nan() {
                0
            } else {
                v.clamp(-scale, scale - 1.0) as i64
            }
        }
        let mut bits: Vec<u32> = (0..=u32::MAX).step_by(4093).collect();
        for e in 0..=255u32 {
            for m in [0, 1, 0x40_0000, 0x7f_ffff, 0x7f_fffe, 0x20_0001] {
                bits.push((e << 23) | m);
                bits.push(0x8000_0000 | (e << 23) | m);
            }
        }
        let mut values: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        for shift in [15u32, 23, 31] {
            for k in [0i64, 1, 2, 1000, (1 << shift) - 2, (1 << shift) - 1] {
                let half = (k as f64 + 0.5) / (1u64 << shift) as f64;
                for v in [half as f32, -half as f32, f32::from_bits((half as f32).to_bits() + 1)] {
                    values.push(v);
                }
            }
        }
        for shift in [15u32, 23, 31] {
            for &x in &values {
                assert_eq!(quantize(x, shift), reference(x, shift), "{x:e} ({:#x}) at {shift}", x.to_bits());
            }
        }
    }
}
