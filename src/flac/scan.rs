//! Finding the whole frames of a FLAC file that a crash left open, by
//! their CRCs, and making STREAMINFO claim exactly them (`capstan recover`).
//! Written here because no maintained crate exposes frame boundaries and
//! byte offsets of a possibly torn stream (claxon decodes, but stops with
//! an error at a torn frame without saying where the last good one ended).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{streaminfo, FlacSpec};

/// The largest frame capstan writes: 8 channels × 4096 samples × 32 bits
/// verbatim, plus headers.
const MAX_FRAME: usize = 8 * 4096 * 4 + 1024;
const WINDOW: usize = 4 << 20;

/// What [`repair`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Repair {
    /// Samples per channel STREAMINFO claimed before.
    pub frames_before: u64,
    /// Samples per channel in whole frames, which it claims now.
    pub frames_after: u64,
    /// Bytes of a torn last frame that were cut off.
    pub torn_bytes: u64,
}

/// CRC-8, polynomial 0x07 (frame headers).
fn crc8(bytes: &[u8]) -> u8 {
    let mut c = 0u8;
    for &b in bytes {
        c ^= b;
        for _ in 0..8 {
            c = if c & 0x80 != 0 { (c << 1) ^ 0x07 } else { c << 1 };
        }
    }
    c
}

/// CRC-16, polynomial 0x8005 (whole frames), one byte at a time.
fn crc16_step(c: u16, b: u8) -> u16 {
    let mut c = c ^ ((b as u16) << 8);
    for _ in 0..8 {
        c = if c & 0x8000 != 0 { (c << 1) ^ 0x8005 } else { c << 1 };
    }
    c
}

/// A frame header at the start of `b`: its length and block size, if it is
/// one (sync code, a valid layout and its CRC-8).
fn header(b: &[u8]) -> Option<(usize, u64)> {
    if b.len() < 6 || b[0] != 0xFF || b[1] & 0xFE != 0xF8 {
        return None;
    }
    let bs_code = b[2] >> 4;
    let sr_code = b[2] & 0x0F;
    if bs_code == 0 || sr_code == 15 || b[3] & 1 != 0 {
        return None;
    }
    // The frame number, UTF-8 style: the first byte says how many follow.
    let lead = b[4].leading_ones() as usize;
    let num_len = match lead {
        0 => 1,
        2..=7 => lead,
        _ => return None,
    };
    let mut at = 4 + num_len;
    let block = match bs_code {
        1 => 192,
        2..=5 => 576u64 << (bs_code - 2),
        6 => {
            at += 1;
            *b.get(at - 1)? as u64 + 1
        }
        7 => {
            at += 2;
            u16::from_be_bytes([*b.get(at - 2)?, *b.get(at - 1)?]) as u64 + 1
        }
        _ => 256u64 << (bs_code - 8),
    };
    at += match sr_code {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let crc = *b.get(at)?;
    (crc8(&b[..at]) == crc).then_some((at + 1, block))
}

/// The audio's start, and the format, of a FLAC file: after the last
/// metadata block.
fn layout(file: &File) -> io::Result<(u64, FlacSpec, u64, [u8; 16])> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut magic = [0u8; 4];
    file.read_exact_at(&mut magic, 0)?;
    if &magic != b"fLaC" {
        return Err(bad("not a FLAC file"));
    }
    let mut si = [0u8; 38];
    file.read_exact_at(&mut si, 4)?;
    if si[0] & 0x7F != 0 {
        return Err(bad("no STREAMINFO"));
    }
    let packed = u64::from_be_bytes(si[14..22].try_into().unwrap());
    let spec = FlacSpec {
        sample_rate: (packed >> 44) as u32,
        channels: ((packed >> 41) & 7) as u16 + 1,
        bits: ((packed >> 36) & 31) as u16 + 1,
    };
    let total = packed & ((1 << 36) - 1);
    let md5: [u8; 16] = si[22..38].try_into().unwrap();
    let mut at = 4u64;
    loop {
        let mut h = [0u8; 4];
        file.read_exact_at(&mut h, at)?;
        at += 4 + u32::from_be_bytes([0, h[1], h[2], h[3]]) as u64;
        if h[0] & 0x80 != 0 {
            return Ok((at, spec, total, md5));
        }
    }
}

/// Walks the frames from `from` to `end`: the end of the last whole frame
/// and the samples per channel in the whole frames.
fn whole_frames(file: &File, from: u64, end: u64) -> io::Result<(u64, u64)> {
    let (mut p, mut samples) = (from, 0u64);
    let mut win: Vec<u8> = Vec::new();
    let mut base = from;
    'frames: while p < end {
        if p + MAX_FRAME as u64 > base + win.len() as u64 && base + (win.len() as u64) < end {
            base = p;
            let len = (end - base).min(WINDOW as u64) as usize;
            win.resize(len, 0);
            file.read_exact_at(&mut win, base)?;
        }
        let w = &win[(p - base) as usize..];
        let Some((hlen, block)) = header(w) else { break };
        let mut crc = 0u16;
        for &b in &w[..hlen] {
            crc = crc16_step(crc, b);
        }
        // Candidate ends: the next frame's sync code, or the end of the
        // file; the CRC-16 of everything before the last two bytes must
        // match them.
        for q in hlen + 2..w.len().min(MAX_FRAME) + 1 {
            let at_end = base + ((p - base) as usize + q) as u64 == end;
            let next_sync = q + 1 < w.len() && w[q] == 0xFF && w[q + 1] & 0xFE == 0xF8;
            let crc_ok = u16::from_be_bytes([w[q - 2], w[q - 1]]) == crc;
            if crc_ok && (at_end || (next_sync && header(&w[q..]).is_some())) {
                p += q as u64;
                samples += block;
                continue 'frames;
            }
            crc = crc16_step(crc, w[q - 2]);
        }
        break; // torn: no end found
    }
    Ok((p, samples))
}

/// Makes an open FLAC file claim exactly its whole frames: a torn last
/// frame (a crash mid-write) is cut off, STREAMINFO gets the total and an
/// MD5 of zero ("unknown") unless the file was already complete (its total
/// and MD5 stand). Idempotent.
pub fn repair(file: &File) -> io::Result<Repair> {
    let (audio_at, spec, before, md5) = layout(file)?;
    let len = file.metadata()?.len();
    let (end, samples) = whole_frames(file, audio_at, len)?;
    let torn = len - end;
    if torn > 0 {
        file.set_len(end)?;
    }
    if samples != before || torn > 0 {
        file.write_all_at(&streaminfo(&spec, samples, &[0; 16]), 8)?;
    }
    let _ = md5; // a complete file keeps its MD5
    file.sync_all()?;
    Ok(Repair { frames_before: before, frames_after: samples, torn_bytes: torn })
}
