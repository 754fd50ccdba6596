//! FLAC files: lossless 16/24-bit, frames encoded by the `flacenc` crate
//! (pure Rust, no C library to build or install; it encodes one frame at a
//! time, which is what a recorder needs) and written as they are made.
//! Disk thread only: every method here does I/O.
//!
//! ```text
//! fLaC
//! STREAMINFO      34 bytes: total samples and MD5, rewritten in place
//! VORBIS_COMMENT  take, project, time stamp, channel names
//! PADDING         room for the comments to grow in place
//! frames          fixed block size (4096)
//! ```
//!
//! Crash safety follows the WAV writer: frames go to the kernel through a
//! buffer at most 50 ms old; every checkpoint fdatasyncs them, and only
//! then does STREAMINFO claim them (total samples; the MD5 stays zero,
//! "unknown", until the take ends). After a kill -9 the file holds whole
//! frames up to at least the last checkpoint and maybe a torn frame after
//! them, which [`scan::repair`] (`capstan recover`) cuts off.

pub mod scan;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flacenc::component::BitRepr;
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};

use crate::wav::{SampleFormat, WavError};

/// Samples per channel in every frame but the last.
pub const BLOCK_SIZE: usize = 4096;
/// The most channels one FLAC stream holds (the format's limit).
pub const MAX_CHANNELS: usize = 8;
/// Room the comments may grow by after the file is created.
const COMMENT_SLACK: usize = 4096;
/// Where the STREAMINFO block (its 4-byte header) starts.
const STREAMINFO_AT: u64 = 4;
/// Buffered bytes before a write(2), and their longest wait.
const WRITE_BUFFER: usize = 1 << 20;
const MAX_BUFFER_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// A FLAC file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlacSpec {
    pub channels: u16,
    pub sample_rate: u32,
    /// 16 or 24.
    pub bits: u16,
}

impl FlacSpec {
    /// The spec for `format`, which must be s16 or s24.
    pub fn new(channels: u16, sample_rate: u32, format: SampleFormat) -> Result<FlacSpec, String> {
        let bits = match format {
            SampleFormat::S16 => 16,
            SampleFormat::S24 => 24,
            other => {
                return Err(format!(
                    "FLAC holds 16- or 24-bit integers, not {other}: use --sample-format s24"
                ))
            }
        };
        if channels as usize > MAX_CHANNELS || channels == 0 {
            return Err(format!("a FLAC file holds 1 to {MAX_CHANNELS} channels, not {channels}"));
        }
        Ok(FlacSpec { channels, sample_rate, bits })
    }
}

/// An open, growing FLAC file.
pub struct FlacWriter {
    file: File,
    path: PathBuf,
    spec: FlacSpec,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream_info: flacenc::component::StreamInfo,
    framebuf: FrameBuf,
    context: Context,
    /// Interleaved samples waiting for a whole block.
    pending: Vec<i32>,
    /// Encoded frames waiting for a write(2).
    buf: Vec<u8>,
    /// Bytes of the comment block and the padding after it (fixed).
    comment_region: usize,
    /// Samples per channel in frames handed to the kernel, and claimed by
    /// STREAMINFO (synced).
    frames_written: u64,
    frames_committed: u64,
    /// Samples per channel in frames encoded (written or in `buf`).
    frames_encoded: u64,
    frame_number: usize,
    bytes: u64,
    sync_failed: bool,
    last_flush: std::time::Instant,
}

fn io_err(path: &Path, op: &'static str, frames_safe: u64, source: io::Error) -> WavError {
    WavError::Io { path: path.to_owned(), op, frames_safe, source }
}

impl FlacWriter {
    /// Writes the header into `file`, freshly reserved at `path` (see
    /// `wav::writer::reserve`), with `comments` (`KEY=value`).
    pub fn start(
        file: File,
        path: &Path,
        spec: FlacSpec,
        comments: &[String],
    ) -> Result<FlacWriter, WavError> {
        let bad = |e: String| io_err(path, "FLAC setup", 0, io::Error::new(io::ErrorKind::InvalidInput, e));
        let ch = spec.channels as usize;
        let config =
            flacenc::config::Encoder::default().into_verified().map_err(|e| bad(format!("{e:?}")))?;
        let stream_info =
            flacenc::component::StreamInfo::new(spec.sample_rate as usize, ch, spec.bits as usize)
                .map_err(|e| bad(format!("{e:?}")))?;
        let framebuf = FrameBuf::with_size(ch, BLOCK_SIZE).map_err(|e| bad(format!("{e:?}")))?;
        let comment = vorbis_comment(comments);
        let comment_region = 4 + comment.len() + 4 + COMMENT_SLACK;
        let mut w = FlacWriter {
            file,
            path: path.to_owned(),
            spec,
            config,
            stream_info,
            framebuf,
            context: Context::new(spec.bits as usize, ch),
            pending: Vec::with_capacity(BLOCK_SIZE * ch),
            buf: Vec::with_capacity(WRITE_BUFFER + 64 * 1024),
            comment_region,
            frames_written: 0,
            frames_committed: 0,
            frames_encoded: 0,
            frame_number: 0,
            bytes: 0,
            sync_failed: false,
            last_flush: std::time::Instant::now(),
        };
        let mut h = Vec::with_capacity(8 + 34 + comment_region);
        h.extend_from_slice(b"fLaC");
        h.extend_from_slice(&[0, 0, 0, 34]);
        h.extend_from_slice(&streaminfo(&spec, 0, &[0; 16]));
        h.extend_from_slice(&w.comment_blocks(comments)?);
        w.file.write_all(&h).map_err(|e| io_err(path, "write header", 0, e))?;
        w.bytes = h.len() as u64;
        Ok(w)
    }

    /// The comment block and the padding after it, `comment_region` bytes.
    fn comment_blocks(&self, comments: &[String]) -> Result<Vec<u8>, WavError> {
        let c = vorbis_comment(comments);
        let Some(pad) = self.comment_region.checked_sub(4 + c.len() + 4) else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "the comments outgrew their room");
            return Err(io_err(&self.path, "comment update", self.frames_committed, e));
        };
        let mut b = Vec::with_capacity(self.comment_region);
        b.push(4); // VORBIS_COMMENT, not last
        b.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
        b.extend_from_slice(&c);
        b.push(0x80 | 1); // PADDING, last
        b.extend_from_slice(&(pad as u32).to_be_bytes()[1..]);
        b.resize(self.comment_region, 0);
        Ok(b)
    }

    /// Rewrites the comments in place (they may grow by a few KiB).
    pub fn update_comments(&mut self, comments: &[String]) -> Result<(), WavError> {
        let b = self.comment_blocks(comments)?;
        self.file.write_all_at(&b, STREAMINFO_AT + 4 + 34).map_err(|e| self.err("comment update", e))
    }

    /// Changes the sample rate before any audio is written.
    pub fn set_sample_rate(&mut self, rate: u32, comments: &[String]) -> Result<(), WavError> {
        if self.frames_encoded + (self.pending.len() / self.spec.channels as usize) as u64 != 0 {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "audio already written at the old rate");
            return Err(self.err("rate change", e));
        }
        self.spec.sample_rate = rate;
        self.stream_info = flacenc::component::StreamInfo::new(
            rate as usize,
            self.spec.channels as usize,
            self.spec.bits as usize,
        )
        .map_err(|e| {
            self.err("rate change", io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))
        })?;
        self.write_streaminfo(0, &[0; 16])?;
        self.update_comments(comments)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples per channel written so far (including those not yet encoded).
    pub fn frames(&self) -> u64 {
        self.frames_encoded + (self.pending.len() / self.spec.channels as usize) as u64
    }

    /// Bytes of the file, including buffered frames.
    pub fn file_bytes(&self) -> u64 {
        self.bytes + self.buf.len() as u64
    }

    /// Samples per channel that a crash cannot take away.
    pub fn frames_committed(&self) -> u64 {
        self.frames_committed
    }

    /// Appends `n` samples per channel; `chans[c]` is channel `c`'s samples
    /// or `None` for silence.
    pub fn append(&mut self, n: usize, chans: &[Option<&[f32]>]) -> Result<(), WavError> {
        let ch = self.spec.channels as usize;
        let shift = self.spec.bits as u32 - 1;
        let mut done = 0;
        while done < n {
            let room = BLOCK_SIZE - self.pending.len() / ch;
            let take = room.min(n - done);
            for i in done..done + take {
                for c in chans.iter().take(ch) {
                    let s = c.map_or(0.0, |s| s[i]);
                    self.pending.push(crate::wav::quantize(s, shift) as i32);
                }
            }
            done += take;
            if self.pending.len() == BLOCK_SIZE * ch {
                self.encode_pending()?;
            }
        }
        if self.buf.len() >= WRITE_BUFFER || self.last_flush.elapsed() >= MAX_BUFFER_AGE {
            self.flush()?;
        }
        Ok(())
    }

    /// Encodes the pending samples as one frame.
    fn encode_pending(&mut self) -> Result<(), WavError> {
        let ch = self.spec.channels as usize;
        let n = self.pending.len() / ch;
        if n == 0 {
            return Ok(());
        }
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        self.framebuf
            .fill_interleaved(&self.pending)
            .map_err(|e| self.err("FLAC encode", bad(format!("{e:?}"))))?;
        self.context
            .fill_interleaved(&self.pending)
            .map_err(|e| self.err("FLAC encode", bad(format!("{e:?}"))))?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.framebuf,
            self.frame_number,
            &self.stream_info,
        )
        .map_err(|e| self.err("FLAC encode", bad(format!("{e:?}"))))?;
        let mut sink = flacenc::bitsink::ByteSink::new();
        frame.write(&mut sink).map_err(|e| self.err("FLAC encode", bad(format!("{e:?}"))))?;
        self.buf.extend_from_slice(sink.as_slice());
        self.frame_number += 1;
        self.frames_encoded += n as u64;
        self.pending.clear();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WavError> {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                // The frames that did reach the file end in a torn one:
                // recovery cuts it; the header claims the synced ones only.
                self.buf.clear();
                return Err(self.err("write", e));
            }
            self.bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        // Every encoded frame is with the kernel now.
        self.frames_written = self.frames_encoded;
        self.last_flush = std::time::Instant::now();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WavError> {
        if self.sync_failed {
            return Err(
                self.err("an earlier fdatasync failed; sync", io::Error::from_raw_os_error(nix::libc::EIO))
            );
        }
        self.file.sync_data().map_err(|e| {
            self.sync_failed = true;
            self.err("fdatasync", e)
        })
    }

    /// Makes the frames written so far survive a crash: write, fdatasync,
    /// then let STREAMINFO claim them. Samples still waiting for a whole
    /// block are not covered (at most 4096 per channel, 85 ms at 48 kHz).
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        self.flush()?;
        self.sync()?;
        let frames = self.frames_written;
        self.write_streaminfo(frames, &[0; 16])?;
        self.frames_committed = frames;
        Ok(())
    }

    /// Finishes the file: the last (short) frame, fdatasync, then the exact
    /// total and the MD5 of every sample, fsync.
    pub fn finalize(mut self) -> Result<u64, WavError> {
        if self.sync_failed {
            return Err(self
                .err("an earlier fdatasync failed; finalize", io::Error::from_raw_os_error(nix::libc::EIO)));
        }
        self.encode_pending()?;
        self.flush()?;
        self.sync()?;
        let total = self.frames_written;
        let md5 = self.context.md5_digest();
        self.write_streaminfo(total, &md5)?;
        self.frames_committed = total;
        self.file.sync_all().map_err(|e| self.err("fsync", e))?;
        Ok(total)
    }

    fn write_streaminfo(&self, total: u64, md5: &[u8; 16]) -> Result<(), WavError> {
        self.file
            .write_all_at(&streaminfo(&self.spec, total, md5), STREAMINFO_AT + 4)
            .map_err(|e| self.err("header update", e))
    }

    fn err(&self, op: &'static str, source: io::Error) -> WavError {
        io_err(&self.path, op, self.frames_committed, source)
    }
}

/// The 34-byte STREAMINFO body: block sizes 16..4096 (a short last frame
/// is allowed), frame sizes unknown (0), rate, channels, bits, total
/// samples per channel (0: unknown) and MD5 (zero: unknown).
pub fn streaminfo(spec: &FlacSpec, total: u64, md5: &[u8; 16]) -> [u8; 34] {
    let mut b = [0u8; 34];
    b[0..2].copy_from_slice(&(BLOCK_SIZE as u16).to_be_bytes());
    b[2..4].copy_from_slice(&(BLOCK_SIZE as u16).to_be_bytes());
    // min/max frame size: 24 bits each, 0 = unknown.
    let packed: u64 = (spec.sample_rate as u64) << 44
        | ((spec.channels as u64 - 1) & 7) << 41
        | ((spec.bits as u64 - 1) & 31) << 36
        | (total & ((1 << 36) - 1));
    b[10..18].copy_from_slice(&packed.to_be_bytes());
    b[18..34].copy_from_slice(md5);
    b
}

/// A VORBIS_COMMENT block body: vendor string, then each comment.
fn vorbis_comment(comments: &[String]) -> Vec<u8> {
    let vendor = format!("capstan {}", env!("CARGO_PKG_VERSION"));
    let mut b = Vec::new();
    b.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    b.extend_from_slice(vendor.as_bytes());
    b.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in comments {
        b.extend_from_slice(&(c.len() as u32).to_le_bytes());
        b.extend_from_slice(c.as_bytes());
    }
    b
}

/// The comments of a FLAC file capstan wrote (`KEY=value`), read from its
/// header; `None` if it is not a FLAC file.
pub fn read_comments(file: &File) -> io::Result<Option<Vec<String>>> {
    let mut magic = [0u8; 4];
    if file.read_exact_at(&mut magic, 0).is_err() || &magic != b"fLaC" {
        return Ok(None);
    }
    let mut at = 4u64;
    loop {
        let mut h = [0u8; 4];
        file.read_exact_at(&mut h, at)?;
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as u64;
        if h[0] & 0x7F == 4 {
            let mut body = vec![0u8; len.min(1 << 20) as usize];
            file.read_exact_at(&mut body, at + 4)?;
            return Ok(Some(parse_comments(&body)));
        }
        if h[0] & 0x80 != 0 {
            return Ok(Some(Vec::new()));
        }
        at += 4 + len;
    }
}

fn parse_comments(b: &[u8]) -> Vec<String> {
    let u32_at = |at: usize| b.get(at..at + 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()) as usize);
    let mut out = Vec::new();
    let Some(vendor) = u32_at(0) else { return out };
    let mut at = 4 + vendor;
    let Some(n) = u32_at(at) else { return out };
    at += 4;
    for _ in 0..n.min(10_000) {
        let Some(len) = u32_at(at) else { break };
        let Some(c) = b.get(at + 4..at + 4 + len) else { break };
        out.push(String::from_utf8_lossy(c).into_owned());
        at += 4 + len;
    }
    out
}

/// The value of `key` among `comments`.
pub fn comment<'a>(comments: &'a [String], key: &str) -> Option<&'a str> {
    comments
        .iter()
        .find_map(|c| c.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

#[cfg(test)]
mod tests;
