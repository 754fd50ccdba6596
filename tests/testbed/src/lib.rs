//! capstan's test bed (a dev-only workspace member: no build users run
//! contains it): the deterministic test signal and its sample-by-sample
//! verifier, and the `capstan-testsig` binary (the JACK test source, the
//! verifier, the latency probe and the callback benchmark).
//!
//! Channel `c` at JACK frame time `t` carries the 16-bit code
//! `(t + 1009·c) mod 65536 − 32768`, as a float `code / 32768`. Every value is
//! exact in float32 and in s16/s24/s32, so a recording in any format can be
//! checked bit for bit; the ramp advances one step per frame, so a lost,
//! repeated or shifted frame is visible, and the per-channel offset catches
//! swapped channels. The first frame must equal the signal at the file's JACK
//! frame time (iXML `CAPSTAN_JACK_FRAME_TIME`, else the bext time_reference).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use capstan::wav;

/// Channel offset step: a prime, so channels never coincide.
const CHANNEL_STEP: u64 = 1009;

/// The signal's 16-bit code for `channel` at frame time `t`.
pub fn code(t: u64, channel: usize) -> i32 {
    ((t + CHANNEL_STEP * channel as u64) % 65536) as i32 - 32768
}

/// The signal's sample for `channel` at frame time `t`.
pub fn sample(t: u64, channel: usize) -> f32 {
    code(t, channel) as f32 / 32768.0
}

/// Fills `out` with `channel`'s signal starting at frame time `t`.
/// Real-time safe (no allocation).
#[inline]
pub fn fill(out: &mut [f32], t: u32, channel: usize) {
    for (i, s) in out.iter_mut().enumerate() {
        *s = sample(t.wrapping_add(i as u32) as u64, channel);
    }
}

/// A run of all-zero frames where the signal was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SilentRun {
    pub at: u64,
    pub frames: u64,
}

/// A run of frames carrying the signal of an earlier (or later) instant:
/// audio away from its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MisplacedRun {
    pub at: u64,
    pub frames: u64,
    /// How many frames earlier (mod 65536) the instant the frames carry is.
    pub off: u64,
}

/// What the verifier found in one file. Strict: every frame equals the
/// signal at `first_frame_time + index` or is silence. Continuity (for runs
/// where JACK reported xruns, which can corrupt audio inside JACK itself):
/// no torn frames, and discontinuities are counted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub frames: u64,
    pub channels: u16,
    /// JACK frame time of the first frame.
    pub first_frame_time: u64,
    /// Frames equal to the signal on every channel.
    pub matching: u64,
    /// All-zero runs (silence written for gaps).
    pub silent: Vec<SilentRun>,
    /// Frames where the signal itself is silence on every channel (once in
    /// 65,536 frames in a one-channel file): counted as matching, though
    /// they may as well be part of a gap's silence.
    pub zero_signal: Vec<u64>,
    /// Frames that are neither the signal nor silence.
    pub mismatched: u64,
    /// First mismatching frame: (index, channel, got code, expected code).
    pub first_mismatch: Option<(u64, usize, f32, f32)>,
    /// The mismatching frames that carry one instant of the signal on
    /// every channel, in runs of one offset.
    pub misplaced: Vec<MisplacedRun>,
    /// Frames whose channels do not carry one and the same instant of the
    /// signal: channels misaligned against each other. Never acceptable.
    pub torn: u64,
    /// Places where the signal does not continue from the frame before (a
    /// lost or repeated stretch), not counting the first frame after silence.
    pub discontinuities: u64,
    /// At discontinuities: signal frames missing (the signal jumped ahead)
    /// and frames repeated (it jumped back), mod 65536.
    pub skipped: u64,
    pub repeated: u64,
}

impl Verdict {
    pub fn silent_frames(&self) -> u64 {
        self.silent.iter().map(|r| r.frames).sum()
    }

    /// Every frame is the signal: nothing lost, repeated or misaligned.
    pub fn is_perfect(&self) -> bool {
        self.mismatched == 0 && self.silent.is_empty() && self.matching == self.frames
    }
}

/// Checks a file against the signal. `first_channel` is the signal channel of
/// the file's first channel (for mono files, the port index). `skip` frames
/// at the start are not checked (the sparse lead-in of the RF64 test); the
/// signal is expected from frame `skip` on, starting at `first_frame_time`.
pub fn verify(path: &Path, first_channel: usize, skip: u64) -> io::Result<Verdict> {
    verify_at(path, first_channel, skip, None)
}

/// [`verify`] with the JACK frame time of the file's first frame given
/// (`first_frame_time`), e.g. for a WAV decoded from a FLAC take.
pub fn verify_at(
    path: &Path,
    first_channel: usize,
    skip: u64,
    first_frame_time: Option<u64>,
) -> io::Result<Verdict> {
    let info = wav::read_info(path)?;
    // JACK's frame time: iXML keeps it when the bext holds the time of day.
    let t0 = first_frame_time
        .or_else(|| info.ixml.as_deref().and_then(wav::jack_frame_time))
        .or_else(|| info.bext.as_ref().map(|b| b.time_reference))
        .unwrap_or(0);
    let fmt = info.spec.format;
    let fb = info.spec.frame_bytes();
    let frames = info.frames();
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(info.data_at + skip.min(frames) * fb as u64))?;
    let mut v = Verdict {
        frames: frames.saturating_sub(skip),
        channels: info.spec.channels,
        first_frame_time: t0,
        matching: 0,
        silent: Vec::new(),
        zero_signal: Vec::new(),
        mismatched: 0,
        first_mismatch: None,
        misplaced: Vec::new(),
        torn: 0,
        discontinuities: 0,
        skipped: 0,
        repeated: 0,
    };
    // Signal time (mod 65536) of the previous frame, if it was not silence.
    let mut prev: Option<u64> = None;
    let mut buf = vec![0u8; fb * 65536];
    let mut i = 0u64;
    while i < v.frames {
        let n = ((v.frames - i) as usize).min(65536);
        f.read_exact(&mut buf[..n * fb])?;
        for frame in buf[..n * fb].chunks_exact(fb) {
            let t = t0 + i;
            let mut all_match = true;
            let mut all_zero = true;
            let mut first_bad = None;
            for (c, s) in frame.chunks_exact(fmt.bytes()).enumerate() {
                let got = fmt.decode(s);
                let want = sample(t, first_channel + c);
                if got != want {
                    all_match = false;
                    first_bad.get_or_insert((c, got, want));
                }
                if got != 0.0 {
                    all_zero = false;
                }
            }
            let instant = instant_of(frame, fmt, first_channel);
            let continues = match (prev, instant) {
                (Some(p), Some(t)) => (p + 1) % 65536 == t,
                _ => true,
            };
            if all_match {
                if all_zero {
                    v.zero_signal.push(i);
                }
                v.matching += 1;
                prev = instant;
            } else if all_zero && !(continues && prev.is_some() && instant.is_some()) {
                prev = None;
                match v.silent.last_mut() {
                    Some(r) if r.at + r.frames == i => r.frames += 1,
                    _ => v.silent.push(SilentRun { at: i, frames: 1 }),
                }
            } else {
                match instant {
                    None => v.torn += 1,
                    Some(t) if !continues => {
                        v.discontinuities += 1;
                        let jump = (t + 65536 - (prev.unwrap_or(t) + 1) % 65536) % 65536;
                        if jump < 32768 {
                            v.skipped += jump;
                        } else {
                            v.repeated += 65536 - jump;
                        }
                    }
                    Some(_) => {}
                }
                if let Some(held) = instant {
                    let off = (t % 65536 + 65536 - held) % 65536;
                    match v.misplaced.last_mut() {
                        Some(r) if r.at + r.frames == i && r.off == off => r.frames += 1,
                        _ => v.misplaced.push(MisplacedRun { at: i, frames: 1, off }),
                    }
                }
                prev = instant;
                v.mismatched += 1;
                if v.first_mismatch.is_none() {
                    let (c, got, want) = first_bad.unwrap_or((0, 0.0, 0.0));
                    v.first_mismatch = Some((i, c, got * 32768.0, want * 32768.0));
                }
            }
            i += 1;
        }
    }
    Ok(v)
}

/// The signal time (mod 65536) a frame carries, if all its channels agree.
fn instant_of(frame: &[u8], fmt: wav::SampleFormat, first_channel: usize) -> Option<u64> {
    let mut t = None;
    for (c, s) in frame.chunks_exact(fmt.bytes()).enumerate() {
        let code = (fmt.decode(s) * 32768.0) as i64 + 32768;
        let tc = (code - (CHANNEL_STEP as i64 * (first_channel + c) as i64)).rem_euclid(65536) as u64;
        match t {
            None => t = Some(tc),
            Some(x) if x != tc => return None,
            _ => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_16_bit_and_step_by_one() {
        assert_eq!(code(0, 0), -32768);
        assert_eq!(code(1, 0), -32767);
        assert_eq!(code(65536, 0), -32768);
        assert_eq!(code(0, 1), 1009 - 32768);
        // JACK's u32 frame time wraps at a multiple of 65536: no jump.
        assert_eq!(code(1 << 32, 3), code(0, 3));
        assert_eq!(code(u32::MAX as u64, 3) + 1, code(1 << 32, 3));
    }

    #[test]
    fn fill_matches_sample_across_the_u32_wrap() {
        let mut b = [0f32; 8];
        fill(&mut b, u32::MAX - 3, 2);
        for (i, s) in b.iter().enumerate() {
            let t = (u32::MAX - 3).wrapping_add(i as u32) as u64;
            assert_eq!(*s, sample(t, 2));
        }
    }
}
