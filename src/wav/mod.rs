//! Broadcast Wave / RF64 files: the writer capstan records with, and a small
//! header reader for verification and recovery.

pub(crate) mod aligned;
pub mod bext;
pub mod cue;
pub mod fileio;
mod ixml;
mod sample_format;
pub(crate) mod writer;

pub use bext::{Bext, Loudness};
pub use cue::Marker;
pub use ixml::{file_uid, jack_frame_time, new_uid, Ixml, Track};
pub use sample_format::{quantize, SampleFormat};
pub use writer::{use_direct_io, WavError, WavSpec, WavWriter, MAX_BUFFER_AGE};

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// What a WAV/RF64 header says (as found on disk, possibly after a crash).
#[derive(Debug, Clone)]
pub struct WavInfo {
    pub spec: WavSpec,
    pub rf64: bool,
    /// Offset of the first audio byte.
    pub data_at: u64,
    /// Audio bytes the header claims.
    pub data_bytes: u64,
    pub bext: Option<Bext>,
    /// The iXML chunk's text, without its padding.
    pub ixml: Option<String>,
}

impl WavInfo {
    pub fn frames(&self) -> u64 {
        self.data_bytes / self.spec.frame_bytes() as u64
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// What [`repair`] did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Repair {
    /// Frames the header claimed before.
    pub frames_before: u64,
    /// Whole frames on disk, which the header now claims.
    pub frames_after: u64,
    pub rf64: bool,
}

/// Makes a capstan file's header claim exactly the whole frames that are on
/// disk (after a crash the header lags behind, after a power cut it may be
/// ahead). Only the header is written; no audio byte is touched or removed
/// (space reserved beyond the file's end is given back, see
/// [`trim_beyond_end`]). Idempotent.
pub fn repair(path: &Path) -> io::Result<Repair> {
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let info = read_info_from(&mut file)?;
    repair_open(&file, &info)
}

/// [`repair`] of a file already open for writing, whose header is `info`.
/// A marker trailer (see [`cue`]) found right after the audio the header
/// claims means the audio's sizes were final. A whole trailer is kept (and
/// covered by the RIFF size); a partial one is removed (recovery writes it
/// again from the manifest with [`append_trailer`]).
pub fn repair_open(file: &File, info: &WavInfo) -> io::Result<Repair> {
    use std::os::unix::fs::FileExt;
    let mut junk = [0u8; 4];
    file.read_exact_at(&mut junk, 12)?;
    let mut len = file.metadata()?.len();
    let fb = info.spec.frame_bytes() as u64;
    let audio_end = info.data_at + info.data_bytes + info.data_bytes % 2;
    let mut head = [0u8; 12];
    if len >= audio_end + 12 && file.read_exact_at(&mut head, audio_end).is_ok() && cue::is_trailer(&head) {
        if chunks_reach(file, audio_end, len)? {
            let after = len - info.data_at - info.data_bytes;
            writer::write_sizes(file, info.data_at, info.data_bytes, fb, after)?;
            trim_beyond_end(file)?;
            file.sync_all()?;
            let frames = info.frames();
            return Ok(Repair { frames_before: frames, frames_after: frames, rf64: info.rf64 });
        }
        file.set_len(audio_end)?;
        len = audio_end;
    }
    let frames_after = len.saturating_sub(info.data_at) / fb;
    let data = frames_after * fb;
    if (data >= u32::MAX as u64 || info.data_at + data - 8 >= u32::MAX as u64)
        && &junk != b"JUNK"
        && &junk != b"ds64"
    {
        return Err(bad("file outgrew 4 GiB but has no reserved ds64 space (not written by capstan)"));
    }
    let rf64 = if frames_after != info.frames() || info.rf64 {
        writer::write_sizes(file, info.data_at, data, fb, 0)?
    } else {
        false
    };
    trim_beyond_end(file)?;
    file.sync_all()?;
    Ok(Repair { frames_before: info.frames(), frames_after, rf64 })
}

/// Gives back the blocks allocated beyond the end of a file whose writer
/// reserved them ahead of its audio and was stopped before it could (see
/// `WavWriter::reserve_for`): a truncate to the file's own length, which
/// removes no byte. Only where there are such blocks (a little slack for
/// the filesystem's own extent blocks), so a whole file is left as it is.
pub fn trim_beyond_end(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata()?;
    if m.blocks() * 512 > m.len().next_multiple_of(4096) + (64 << 10) {
        file.set_len(m.len())?;
    }
    Ok(())
}

/// Whether whole chunks run from `at` exactly to `end`.
fn chunks_reach(file: &File, mut at: u64, end: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    while at + 8 <= end {
        let mut h = [0u8; 8];
        file.read_exact_at(&mut h, at)?;
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
        at += 8 + size + size % 2;
    }
    Ok(at == end)
}

/// Writes `trailer` (see [`cue::trailer`]) after the audio of a file that
/// [`repair_open`] has just made whole (`frames` frames), replacing any
/// trailer there, durably: the RIFF size covers it only once it is on
/// disk.
pub fn append_trailer(file: &File, info: &WavInfo, frames: u64, trailer: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if trailer.is_empty() {
        return Ok(());
    }
    let data = frames * info.spec.frame_bytes() as u64;
    let pad = data % 2;
    let at = info.data_at + data;
    if pad == 1 {
        file.write_all_at(&[0], at)?;
    }
    file.write_all_at(trailer, at + pad)?;
    file.set_len(at + pad + trailer.len() as u64)?;
    file.sync_data()?;
    writer::write_sizes(
        file,
        info.data_at,
        data,
        info.spec.frame_bytes() as u64,
        pad + trailer.len() as u64,
    )?;
    file.sync_all()
}

/// Reads the header of a RIFF/WAVE or RF64 file written by capstan (or any
/// PCM/float WAV with a `fmt ` chunk).
pub fn read_info(path: &Path) -> io::Result<WavInfo> {
    read_info_from(&mut File::open(path)?)
}

/// [`read_info`] of a file already open (read from its start).
pub fn read_info_from(f: &mut File) -> io::Result<WavInfo> {
    f.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    let rf64 = match &head[..4] {
        b"RIFF" => false,
        b"RF64" => true,
        _ => return Err(bad("not a RIFF/RF64 file")),
    };
    if &head[8..12] != b"WAVE" {
        return Err(bad("not a WAVE file"));
    }
    let mut ds64_data = None;
    let mut spec = None;
    let mut bext = None;
    let mut ixml = None;
    loop {
        let mut ch = [0u8; 8];
        f.read_exact(&mut ch)?;
        let size = u32::from_le_bytes(ch[4..8].try_into().unwrap()) as u64;
        let body_at = f.stream_position()?;
        match &ch[..4] {
            b"ds64" => {
                let mut b = [0u8; 24];
                f.read_exact(&mut b)?;
                ds64_data = Some(u64::from_le_bytes(b[8..16].try_into().unwrap()));
            }
            b"fmt " => {
                let mut b = vec![0u8; size.min(64) as usize];
                f.read_exact(&mut b)?;
                if b.len() < 16 {
                    return Err(bad("fmt chunk too short"));
                }
                let tag = u16::from_le_bytes([b[0], b[1]]);
                let channels = u16::from_le_bytes([b[2], b[3]]);
                let sample_rate = u32::from_le_bytes(b[4..8].try_into().unwrap());
                let bits = u16::from_le_bytes([b[14], b[15]]);
                let float = match tag {
                    1 => false,
                    3 => true,
                    0xFFFE if b.len() >= 40 => b[24] == 3,
                    _ => return Err(bad(format!("unsupported format tag {tag:#x}"))),
                };
                let format = match (float, bits) {
                    (true, 32) => SampleFormat::F32,
                    (false, 16) => SampleFormat::S16,
                    (false, 24) => SampleFormat::S24,
                    (false, 32) => SampleFormat::S32,
                    _ => return Err(bad(format!("unsupported sample format ({bits} bit)"))),
                };
                if channels == 0 {
                    return Err(bad("zero channels"));
                }
                spec = Some(WavSpec { channels, sample_rate, format });
            }
            b"bext" => {
                let mut b = vec![0u8; size.min(1 << 20) as usize];
                f.read_exact(&mut b)?;
                bext = Bext::decode(&b);
            }
            b"iXML" => {
                let mut b = vec![0u8; size.min(1 << 20) as usize];
                f.read_exact(&mut b)?;
                ixml = Some(String::from_utf8_lossy(&b).trim_end_matches([' ', '\0']).to_owned());
            }
            b"data" => {
                let spec = spec.ok_or_else(|| bad("data before fmt"))?;
                let data_bytes = if rf64 && size == u32::MAX as u64 {
                    ds64_data.ok_or_else(|| bad("RF64 without ds64"))?
                } else {
                    size
                };
                return Ok(WavInfo { spec, rf64, data_at: body_at, data_bytes, bext, ixml });
            }
            _ => {}
        }
        f.seek(SeekFrom::Start(body_at + size + size % 2))?;
    }
}
