//! A crash-safe Broadcast Wave writer that turns into RF64 past 4 GiB.
//!
//! Layout (EBU Tech 3306 / ITU-R BS.2088 compatible):
//!
//! ```text
//! RIFF <size> WAVE | JUNK(28) | fmt (EXTENSIBLE, 40) | bext | data <size> ...
//! ```
//!
//! The 28-byte `JUNK` chunk is reserved space for `ds64`. While the file is
//! under 4 GiB it is a plain WAV. When it grows past, the header is rewritten
//! in place: `RIFF`→`RF64`, `JUNK`→`ds64` (with the 64-bit sizes) and the
//! 32-bit sizes become 0xFFFFFFFF. Nothing moves, so the rewrite is a few
//! `pwrite`s.
//!
//! Crash safety: [`WavWriter::checkpoint`] first `fdatasync`s the audio and
//! only then writes the sizes into the header, so the header never claims
//! audio that is not on disk. A SIGKILL or power loss loses at most what came
//! after the last checkpoint.
//!
//! Disk thread only: every method here does I/O.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::bext::Bext;
use super::sample_format::SampleFormat;

/// Room the iXML chunk keeps beyond its first version, for the values that
/// are only known at the first frame (time stamps, a new rate).
const IXML_SLACK: usize = 128;

/// Format of the audio in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavSpec {
    pub channels: u16,
    pub sample_rate: u32,
    pub format: SampleFormat,
}

impl WavSpec {
    /// Bytes in one frame (one sample of every channel).
    pub fn frame_bytes(&self) -> usize {
        self.channels as usize * self.format.bytes()
    }
}

/// What went wrong, and what it means for the audio.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: file already exists; capstan never overwrites a file")]
    Exists { path: PathBuf },
    #[error("{path}: cannot create: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("{path}: {op} failed: {source} (the header covers {frames_safe} frames already on disk)")]
    Io { path: PathBuf, op: &'static str, frames_safe: u64, source: io::Error },
}

impl WavError {
    /// The OS error behind this failure, if any (ENOSPC, EIO, ...).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Exists { .. } => None,
            Self::Create { source, .. } | Self::Io { source, .. } => Some(source),
        }
    }
}

const JUNK_BODY: u64 = 28; // ds64: riff u64, data u64, sample count u64, table len u32
const FMT_BODY: u64 = 40; // WAVEFORMATEXTENSIBLE
const JUNK_AT: u64 = 12;
const FMT_AT: u64 = JUNK_AT + 8 + JUNK_BODY;
const BEXT_AT: u64 = FMT_AT + 8 + FMT_BODY;

/// Buffered bytes before a `write(2)`.
const WRITE_BUFFER: usize = 1 << 20;

/// Audio waits in the buffer at most this long before it goes to the kernel:
/// a crash of the process (kill -9) loses only what is still in our memory,
/// since what the kernel has survives it. At 2 channels 1 MiB would be 2.7 s.
const MAX_BUFFER_AGE: std::time::Duration = std::time::Duration::from_millis(50);

const SUBTYPE_PCM: [u8; 16] = [1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];
const SUBTYPE_FLOAT: [u8; 16] = [3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];

/// An open, growing WAV/RF64 file.
pub struct WavWriter {
    file: File,
    path: PathBuf,
    spec: WavSpec,
    /// Offset of the first audio byte.
    data_at: u64,
    /// Audio bytes handed to the kernel (excludes `buf`).
    data_written: u64,
    /// Audio bytes the on-disk header currently claims.
    data_committed: u64,
    /// Bytes written after the audio (pad byte, marker chunks).
    tail: u64,
    buf: Vec<u8>,
    rf64: bool,
    bext_len: usize,
    /// Size of the iXML chunk's body (its text padded with spaces).
    ixml_len: usize,
    /// A sync failed. Linux reports a writeback error once: a later sync
    /// can succeed although the data is lost, so from now on the header
    /// never claims more than it did before the failure.
    sync_failed: bool,
    /// When the buffer last went to the kernel.
    last_flush: std::time::Instant,
    /// Test builds: records every write, sync and header update, and
    /// injects failures (see [`probe`]).
    #[cfg(test)]
    pub(crate) probe: Option<std::sync::Arc<std::sync::Mutex<probe::Probe>>>,
}

impl WavWriter {
    /// Creates `path` (O_EXCL: fails if it exists) and writes the header.
    /// On failure nothing is left behind.
    pub fn create_new(path: &Path, spec: WavSpec, bext: &Bext, ixml: &str) -> Result<WavWriter, WavError> {
        let file = reserve(path)?;
        Self::start(file, path, spec, bext, ixml).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// Writes the header into `file`, freshly reserved at `path` (see
    /// [`reserve`]). `ixml` is the iXML chunk's text (see
    /// [`super::Ixml`]); it may later grow by a little
    /// ([`Self::update_ixml`]). The caller removes the file if this fails.
    pub fn start(
        file: File,
        path: &Path,
        spec: WavSpec,
        bext: &Bext,
        ixml: &str,
    ) -> Result<WavWriter, WavError> {
        let bext_body = bext.encode();
        let ixml_len = (ixml.len() + IXML_SLACK + 1) & !1;
        let data_at = BEXT_AT + 8 + bext_body.len() as u64 + 8 + ixml_len as u64 + 8;
        let mut w = WavWriter {
            file,
            path: path.to_owned(),
            spec,
            data_at,
            data_written: 0,
            data_committed: 0,
            tail: 0,
            buf: Vec::with_capacity(WRITE_BUFFER + 64 * 1024),
            rf64: false,
            bext_len: bext_body.len(),
            ixml_len,
            sync_failed: false,
            last_flush: std::time::Instant::now(),
            #[cfg(test)]
            probe: None,
        };
        let ixml_body = w.ixml_body(ixml)?;
        let header = w.header(&bext_body, &ixml_body);
        debug_assert_eq!(header.len() as u64, data_at);
        w.file.write_all(&header).map_err(|e| w.io_err("write header", e))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the `bext` chunk in place, e.g. once the first frame's time is
    /// known. The coding history must keep its length.
    pub fn update_bext(&mut self, bext: &Bext) -> Result<(), WavError> {
        let body = bext.encode();
        if body.len() != self.bext_len {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "bext length changed");
            return Err(self.io_err("bext update", e));
        }
        self.pwrite(&body, BEXT_AT + 8)
    }

    /// Rewrites the iXML chunk in place; `ixml` may be longer than the
    /// first version by the slack the chunk keeps.
    pub fn update_ixml(&mut self, ixml: &str) -> Result<(), WavError> {
        let body = self.ixml_body(ixml)?;
        self.pwrite(&body, self.ixml_at() + 8)
    }

    fn ixml_at(&self) -> u64 {
        BEXT_AT + 8 + self.bext_len as u64
    }

    /// `ixml` padded with spaces to the chunk's size.
    fn ixml_body(&self, ixml: &str) -> Result<Vec<u8>, WavError> {
        if ixml.len() > self.ixml_len {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "iXML outgrew its chunk");
            return Err(self.io_err("iXML update", e));
        }
        let mut body = Vec::with_capacity(self.ixml_len);
        body.extend_from_slice(ixml.as_bytes());
        body.resize(self.ixml_len, b' ');
        Ok(body)
    }

    /// Changes the sample rate before any audio is written (JACK's rate
    /// changed between preparing a take and its first frame): the header is
    /// written anew with `bext` (whose coding history names the rate).
    pub fn set_sample_rate(&mut self, rate: u32, bext: &Bext, ixml: &str) -> Result<(), WavError> {
        if self.data_written + self.buf.len() as u64 != 0 {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "audio already written at the old rate");
            return Err(self.io_err("rate change", e));
        }
        self.spec.sample_rate = rate;
        let body = bext.encode();
        self.bext_len = body.len();
        self.ixml_len = (ixml.len() + IXML_SLACK + 1) & !1;
        self.data_at = self.ixml_at() + 8 + self.ixml_len as u64 + 8;
        let ixml_body = self.ixml_body(ixml)?;
        let header = self.header(&body, &ixml_body);
        self.pwrite(&header, 0)?;
        self.file.set_len(self.data_at).map_err(|e| self.io_err("rate change", e))?;
        self.file.seek(SeekFrom::Start(self.data_at)).map_err(|e| self.io_err("seek", e))?;
        Ok(())
    }

    /// Whole frames written so far (including buffered ones).
    pub fn frames(&self) -> u64 {
        (self.data_written + self.buf.len() as u64) / self.spec.frame_bytes() as u64
    }

    /// Bytes the file will have once everything buffered is written.
    pub fn file_bytes(&self) -> u64 {
        self.data_at + self.data_written + self.buf.len() as u64
    }

    /// Frames the on-disk header covers (survive a crash now).
    pub fn frames_committed(&self) -> u64 {
        self.data_committed / self.spec.frame_bytes() as u64
    }

    pub fn is_rf64(&self) -> bool {
        self.rf64
    }

    /// The buffer to append encoded frames to; call [`WavWriter::commit_buffer`]
    /// afterwards. Appending through the buffer avoids a copy per sample.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes the buffer out once it is large, or [`MAX_BUFFER_AGE`] after
    /// the last write. Only whole frames must have been appended.
    pub fn commit_buffer(&mut self) -> Result<(), WavError> {
        debug_assert_eq!(self.buf.len() % self.spec.frame_bytes(), 0);
        if self.buf.len() >= WRITE_BUFFER || self.last_flush.elapsed() >= MAX_BUFFER_AGE {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends already-encoded interleaved frames.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), WavError> {
        self.buf.extend_from_slice(bytes);
        self.commit_buffer()
    }

    /// Appends `frames` frames of digital silence without writing them: the
    /// file is extended sparsely. Used for long gaps and by the 4 GiB test.
    pub fn append_silence_sparse(&mut self, frames: u64) -> Result<(), WavError> {
        self.flush()?;
        let bytes = frames * self.spec.frame_bytes() as u64;
        self.data_written += bytes;
        let end = self.data_at + self.data_written;
        self.file.set_len(end).map_err(|e| self.io_err("extend", e))?;
        self.file.seek(SeekFrom::Start(end)).map_err(|e| self.io_err("seek", e))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WavError> {
        let mut done = 0;
        while done < self.buf.len() {
            match self.write_some(done) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes");
                    return Err(self.short_write(done, e));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.short_write(done, e)),
            }
        }
        self.data_written += self.buf.len() as u64;
        self.buf.clear();
        self.last_flush = std::time::Instant::now();
        self.note_data();
        Ok(())
    }

    /// A write failed after `done` bytes of the buffer reached the file:
    /// the whole frames among them count as written (a later successful
    /// sync may claim them); the rest of the buffer is dropped and the file
    /// position goes back to the end of those frames.
    fn short_write(&mut self, done: usize, e: io::Error) -> WavError {
        let fb = self.spec.frame_bytes();
        let whole = done / fb * fb;
        self.data_written += whole as u64;
        self.buf.clear();
        let _ = self.file.seek(SeekFrom::Start(self.data_at + self.data_written));
        self.note_data();
        self.io_err("write", e)
    }

    /// One `write(2)` of the buffer from `from` on.
    fn write_some(&mut self, from: usize) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(p) = &self.probe {
            let mut p = p.lock().unwrap();
            if let Some(left) = p.space.as_mut() {
                if *left == 0 {
                    return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
                }
                let n = (self.buf.len() - from).min(*left as usize);
                *left -= n as u64;
                return self.file.write(&self.buf[from..from + n]);
            }
        }
        self.file.write(&self.buf[from..])
    }

    /// Test builds: the audio bytes in the file now.
    fn note_data(&self) {
        #[cfg(test)]
        if let Some(p) = &self.probe {
            p.lock().unwrap().ops.push(probe::Op::Data { end: self.data_written });
        }
    }

    /// fdatasync, made sticky: see `sync_failed`. Once one failed, every
    /// later one fails too.
    fn sync(&mut self, op: &'static str) -> Result<(), WavError> {
        if self.sync_failed {
            let e = io::Error::from_raw_os_error(nix::libc::EIO);
            return Err(self.io_err("an earlier fdatasync failed; sync", e));
        }
        #[cfg(test)]
        if let Some(p) = &self.probe {
            let mut p = p.lock().unwrap();
            p.syncs += 1;
            let fail = p.fail_sync == Some(p.syncs);
            p.ops.push(probe::Op::Sync { covered: self.data_written + self.tail, ok: !fail });
            if let Some(gate) = p.sync_gate.clone() {
                drop(p);
                gate.wait();
                p = self.probe.as_ref().expect("probed").lock().unwrap();
            }
            if fail {
                drop(p);
                self.sync_failed = true;
                return Err(self.io_err(op, io::Error::from_raw_os_error(nix::libc::EIO)));
            }
        }
        if let Err(e) = self.file.sync_data() {
            self.sync_failed = true;
            return Err(self.io_err(op, e));
        }
        Ok(())
    }

    /// Makes everything written so far survive a crash: write out, fdatasync,
    /// then update the header sizes (promoting to RF64 if needed).
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        self.flush()?;
        self.still_linked()?;
        self.sync("fdatasync")?;
        self.commit_synced()
    }

    /// The file is still in a directory: deleted (or its directory
    /// removed), it would take audio that nobody can ever read, so that is
    /// an error that saves nothing.
    fn still_linked(&self) -> Result<(), WavError> {
        use std::os::unix::fs::MetadataExt;
        match self.file.metadata() {
            Ok(m) if m.nlink() == 0 => Err(WavError::Io {
                path: self.path.clone(),
                op: "checkpoint",
                frames_safe: 0,
                source: io::Error::new(io::ErrorKind::NotFound, "the file was deleted while recording"),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_err("fstat", e)),
        }
    }

    /// A checkpoint of many files at once ([`crate::disk::Take`] in the mono
    /// layout): each is written out, each is synced (its own fdatasync,
    /// whose error is its own: `syncfs` would flush other processes' data
    /// too and, before Linux 5.8, miss errors), then each header is updated.
    pub fn checkpoint_many(files: &mut [WavWriter]) -> Result<(), WavError> {
        Self::checkpoint_refs(&mut files.iter_mut().collect::<Vec<_>>())
    }

    /// [`Self::checkpoint_many`] of files held by reference.
    pub fn checkpoint_refs(files: &mut [&mut WavWriter]) -> Result<(), WavError> {
        files.iter_mut().try_for_each(|f| f.flush())?;
        files.iter().try_for_each(|f| f.still_linked())?;
        files.iter_mut().try_for_each(|f| f.sync("fdatasync"))?;
        files.iter_mut().try_for_each(|f| f.commit_synced())
    }

    /// Records that everything written is durable: header sizes follow.
    /// Called only after a successful [`Self::sync`] (which, once one has
    /// failed, always fails), so nothing more is claimed after a failure.
    fn commit_synced(&mut self) -> Result<(), WavError> {
        self.write_sizes(self.data_written, 0)?;
        self.data_committed = self.data_written;
        Ok(())
    }

    /// Finishes the file: flush, pad byte if needed, final sizes, fsync.
    /// Returns the number of frames in the file and whether it is RF64.
    pub fn finalize(self) -> Result<(u64, bool), WavError> {
        self.finalize_with(&[])
    }

    /// [`Self::finalize`], then `trailer` (chunks such as the markers', see
    /// [`super::cue`]) after the audio. The audio's sizes are final and
    /// synced before the trailer is written, and the RIFF size covers the
    /// trailer only once it is synced too: a crash in between leaves a file
    /// whose header claims exactly its audio (recovery removes a partial
    /// trailer and writes it again from the manifest).
    pub fn finalize_with(mut self, trailer: &[u8]) -> Result<(u64, bool), WavError> {
        self.still_linked()?;
        if self.sync_failed {
            // The audio since the last good checkpoint may be lost: the
            // header keeps claiming only what that checkpoint covered.
            self.buf.clear();
            let e = io::Error::from_raw_os_error(nix::libc::EIO);
            return Err(self.io_err("an earlier fdatasync failed; finalize", e));
        }
        if let Err(e) = self.flush() {
            // Disk full or I/O error: the rest of the buffer is lost, but the
            // header gets every whole frame that did reach the file, once a
            // sync has covered it.
            if self.sync("fdatasync").is_ok() {
                let _ = self.commit_synced();
            }
            return Err(match e {
                WavError::Io { path, op, source, .. } => {
                    WavError::Io { path, op, source, frames_safe: self.frames_committed() }
                }
                other => other,
            });
        }
        let pad = self.data_written % 2 == 1;
        if pad {
            self.file.write_all(&[0]).map_err(|e| self.io_err("write pad byte", e))?;
            self.tail = 1;
        }
        self.sync("fdatasync")?;
        self.write_sizes(self.data_written, pad as u64)?;
        self.data_committed = self.data_written;
        if !trailer.is_empty() {
            // The final sizes must be durable before anything follows the
            // audio, or a crash could leave a stale header and a trailer
            // that recovery would take for audio.
            self.sync("fdatasync")?;
            self.file.write_all(trailer).map_err(|e| self.io_err("write markers", e))?;
            self.tail += trailer.len() as u64;
            #[cfg(test)]
            if let Some(p) = &self.probe {
                p.lock().unwrap().ops.push(probe::Op::Trailer { end: self.data_written + self.tail });
            }
            self.sync("fdatasync")?;
            self.write_sizes(self.data_written, pad as u64 + trailer.len() as u64)?;
        }
        self.file.sync_all().map_err(|e| self.io_err("fsync", e))?;
        Ok((self.frames_committed(), self.rf64))
    }

    /// Writes the RIFF/RF64 sizes for `data` bytes of audio followed by
    /// `after` bytes (pad byte, trailing chunks).
    fn write_sizes(&mut self, data: u64, after: u64) -> Result<(), WavError> {
        #[cfg(test)]
        if let Some(p) = &self.probe {
            p.lock().unwrap().ops.push(probe::Op::Sizes { data, after });
        }
        let fb = self.spec.frame_bytes() as u64;
        match write_sizes(&self.file, self.data_at, data, fb, after) {
            Ok(rf64) => {
                self.rf64 |= rf64;
                Ok(())
            }
            Err(e) => Err(self.io_err("header update", e)),
        }
    }

    fn pwrite(&self, bytes: &[u8], at: u64) -> Result<(), WavError> {
        self.file.write_all_at(bytes, at).map_err(|e| self.io_err("header update", e))
    }

    fn io_err(&self, op: &'static str, source: io::Error) -> WavError {
        WavError::Io { path: self.path.clone(), op, frames_safe: self.frames_committed(), source }
    }

    fn header(&self, bext_body: &[u8], ixml_body: &[u8]) -> Vec<u8> {
        let s = self.spec;
        let mut h = Vec::with_capacity(self.data_at as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&((self.data_at - 8) as u32).to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"JUNK");
        h.extend_from_slice(&(JUNK_BODY as u32).to_le_bytes());
        h.extend_from_slice(&[0u8; JUNK_BODY as usize]);
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&(FMT_BODY as u32).to_le_bytes());
        h.extend_from_slice(&0xFFFEu16.to_le_bytes()); // WAVE_FORMAT_EXTENSIBLE
        h.extend_from_slice(&s.channels.to_le_bytes());
        h.extend_from_slice(&s.sample_rate.to_le_bytes());
        h.extend_from_slice(&(s.sample_rate * s.frame_bytes() as u32).to_le_bytes());
        h.extend_from_slice(&(s.frame_bytes() as u16).to_le_bytes());
        h.extend_from_slice(&s.format.bits().to_le_bytes());
        h.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        h.extend_from_slice(&s.format.bits().to_le_bytes()); // valid bits
        h.extend_from_slice(&channel_mask(s.channels).to_le_bytes());
        h.extend_from_slice(if s.format.is_float() { &SUBTYPE_FLOAT } else { &SUBTYPE_PCM });
        h.extend_from_slice(b"bext");
        h.extend_from_slice(&(bext_body.len() as u32).to_le_bytes());
        h.extend_from_slice(bext_body);
        h.extend_from_slice(b"iXML");
        h.extend_from_slice(&(ixml_body.len() as u32).to_le_bytes());
        h.extend_from_slice(ixml_body);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }
}

/// Creates `path`, which must not exist (O_EXCL), empty: the name is ours
/// from now on.
pub fn reserve(path: &Path) -> Result<File, WavError> {
    crate::durable::create_new(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            WavError::Exists { path: path.to_owned() }
        } else {
            WavError::Create { path: path.to_owned(), source }
        }
    })
}

/// Writes the sizes into a capstan header whose audio starts at `data_at`
/// and holds `data` bytes, followed by `after` bytes (pad byte, trailing
/// chunks): plain RIFF sizes, or (past 4 GiB) RF64 with the reserved JUNK
/// chunk at offset 12 turned into ds64. Returns whether the file is RF64
/// now.
pub(crate) fn write_sizes(
    file: &File,
    data_at: u64,
    data: u64,
    frame_bytes: u64,
    after: u64,
) -> io::Result<bool> {
    let riff = data_at + data + after - 8;
    if riff >= u32::MAX as u64 || data >= u32::MAX as u64 {
        let mut ds64 = Vec::with_capacity(36);
        ds64.extend_from_slice(b"ds64");
        ds64.extend_from_slice(&(JUNK_BODY as u32).to_le_bytes());
        ds64.extend_from_slice(&riff.to_le_bytes());
        ds64.extend_from_slice(&data.to_le_bytes());
        ds64.extend_from_slice(&(data / frame_bytes).to_le_bytes());
        ds64.extend_from_slice(&0u32.to_le_bytes());
        // Order matters for a reader racing a crash: ds64 first, then the
        // markers that tell a reader to look at it.
        file.write_all_at(&ds64, JUNK_AT)?;
        file.write_all_at(&u32::MAX.to_le_bytes(), data_at - 4)?;
        let mut riff_hdr = Vec::with_capacity(8);
        riff_hdr.extend_from_slice(b"RF64");
        riff_hdr.extend_from_slice(&u32::MAX.to_le_bytes());
        file.write_all_at(&riff_hdr, 0)?;
        Ok(true)
    } else {
        file.write_all_at(&(data as u32).to_le_bytes(), data_at - 4)?;
        file.write_all_at(&(riff as u32).to_le_bytes(), 4)?;
        Ok(false)
    }
}

/// Mono and stereo get their usual speaker positions; a multitrack file's
/// channels are discrete sources, which WAVE_FORMAT_EXTENSIBLE spells as 0.
fn channel_mask(channels: u16) -> u32 {
    match channels {
        1 => 0x4,
        2 => 0x3,
        _ => 0,
    }
}

/// Test builds: what a writer did to its file, in order, and the failures
/// to inject. The durability tests check the order against what a crash at
/// any moment would leave.
#[cfg(test)]
pub(crate) mod probe {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        /// Audio bytes in the file now (after a write).
        Data { end: u64 },
        /// An fdatasync covering the audio written so far; `ok: false` if it
        /// failed.
        Sync { covered: u64, ok: bool },
        /// The header now claims `data` bytes of audio and `after` bytes
        /// after them (pad byte, marker chunks).
        Sizes { data: u64, after: u64 },
        /// Chunks after the audio (markers) written; the file ends at
        /// `end` bytes past the audio's start.
        Trailer { end: u64 },
    }

    #[derive(Debug, Default)]
    pub struct Probe {
        pub ops: Vec<Op>,
        pub syncs: u32,
        /// Fail the n-th sync (1-based) with EIO.
        pub fail_sync: Option<u32>,
        /// Bytes the disk still takes; then ENOSPC (a short write first).
        pub space: Option<u64>,
        /// Every sync waits until this gate opens (a slow disk).
        pub sync_gate: Option<std::sync::Arc<Gate>>,
    }

    /// A gate that syncs wait at (at most 5 s; `timed_out` says so).
    #[derive(Debug, Default)]
    pub struct Gate {
        open: std::sync::Mutex<bool>,
        cv: std::sync::Condvar,
        pub timed_out: std::sync::atomic::AtomicBool,
    }

    impl Gate {
        pub fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.cv.notify_all();
        }

        pub fn wait(&self) {
            let g = self.open.lock().unwrap();
            let (_g, t) = self.cv.wait_timeout_while(g, std::time::Duration::from_secs(5), |o| !*o).unwrap();
            if t.timed_out() {
                self.timed_out.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    impl Probe {
        /// The durability invariant, over every prefix of the log (a crash
        /// after any operation): a header claims only audio that a
        /// successful sync covered, and, once a sync has failed, never more
        /// than it claimed before (a later sync may succeed although the
        /// data was lost: Linux reports a writeback error once).
        pub fn check(&self) -> Result<(), String> {
            let (mut durable, mut failed_at) = (0u64, None::<u64>);
            let (mut claimed, mut audio, mut claim_synced) = (0u64, 0u64, false);
            for (i, op) in self.ops.iter().enumerate() {
                match *op {
                    Op::Data { end } => audio = end,
                    Op::Sync { covered, ok: true } if failed_at.is_none() => {
                        durable = covered;
                        claim_synced = true;
                    }
                    Op::Sync { ok: true, .. } => {}
                    Op::Sync { ok: false, .. } => {
                        failed_at.get_or_insert(claimed);
                    }
                    // Bytes after the audio are safe only once the header
                    // claims all the audio, durably: else a crash leaves a
                    // stale header, and recovery would take them for audio.
                    Op::Trailer { .. } if claimed != audio || !claim_synced => {
                        return Err(format!(
                            "op {i}: markers written while the header claims {claimed} of {audio} audio bytes \
                             (synced: {claim_synced}): {:?}",
                            self.ops
                        ));
                    }
                    Op::Trailer { .. } => {}
                    Op::Sizes { data, after } => {
                        claim_synced = false;
                        if data + after > durable {
                            return Err(format!(
                                "op {i}: header claims {data} + {after} bytes, {durable} are synced: {:?}",
                                self.ops
                            ));
                        }
                        if let Some(before) = failed_at {
                            if data > before {
                                return Err(format!(
                                    "op {i}: header claims {data} bytes after a failed sync (had {before})"
                                ));
                            }
                        }
                        claimed = data;
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IXML: &str = "<?xml version=\"1.0\"?>\n<BWFXML><TAKE>t</TAKE></BWFXML>\n";

    fn bext() -> Bext {
        Bext {
            description: "test".into(),
            originator: "capstan".into(),
            originator_reference: "t".into(),
            origination_date: "2026-11-25".into(),
            origination_time: "12:00:00".into(),
            time_reference: 4242,
            coding_history: String::new(),
            loudness: Default::default(),
        }
    }

    fn frames(spec: WavSpec, n: usize, offset: i32) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            for c in 0..spec.channels as i32 {
                let code = ((i as i32 + offset + c * 100) % 30000) - 15000;
                spec.format.encode(code as f32 / 32768.0, &mut out);
            }
        }
        out
    }

    #[test]
    fn hound_reads_every_format_back_sample_exact() {
        let dir = tempfile::tempdir().unwrap();
        for format in SampleFormat::ALL {
            for channels in [1u16, 2, 3, 64] {
                let spec = WavSpec { channels, sample_rate: 48000, format };
                let path = dir.path().join(format!("{format}-{channels}.wav"));
                let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
                let data = frames(spec, 1001, 7);
                w.append(&data[..spec.frame_bytes() * 500]).unwrap();
                w.checkpoint().unwrap();
                w.append(&data[spec.frame_bytes() * 500..]).unwrap();
                assert_eq!(w.finalize().unwrap(), (1001, false));

                let mut r = hound::WavReader::open(&path).unwrap();
                let hs = r.spec();
                assert_eq!(hs.channels, channels);
                assert_eq!(hs.sample_rate, 48000);
                assert_eq!(hs.bits_per_sample, format.bits());
                assert_eq!(r.duration(), 1001);
                let got: Vec<f32> = if format.is_float() {
                    r.samples::<f32>().map(|s| s.unwrap()).collect()
                } else {
                    let scale = (1u64 << (format.bits() - 1)) as f32;
                    r.samples::<i32>().map(|s| s.unwrap() as f32 / scale).collect()
                };
                let want: Vec<f32> = data.chunks(format.bytes()).map(|b| format.decode(b)).collect();
                assert_eq!(got, want, "{format} x{channels}");
            }
        }
    }

    fn probed(dir: &Path, name: &str) -> (WavWriter, std::sync::Arc<std::sync::Mutex<probe::Probe>>) {
        let spec = WavSpec { channels: 2, sample_rate: 48000, format: SampleFormat::S16 };
        let mut w = WavWriter::create_new(&dir.join(name), spec, &bext(), IXML).unwrap();
        let p = std::sync::Arc::new(std::sync::Mutex::new(probe::Probe::default()));
        w.probe = Some(p.clone());
        (w, p)
    }

    /// Checkpoints and the final header follow their syncs: the invariant
    /// holds over every prefix of a normal take's operations. It fails if a
    /// sync is removed or moved after the header update.
    #[test]
    fn headers_only_claim_synced_audio() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, p) = probed(dir.path(), "a.wav");
        for _ in 0..5 {
            w.append(&frames(w.spec, 30_000, 0)).unwrap();
            w.checkpoint().unwrap();
        }
        w.append(&frames(w.spec, 777, 0)).unwrap();
        let (n, _) = w.finalize().unwrap();
        assert_eq!(n, 5 * 30_000 + 777);
        let p = p.lock().unwrap();
        p.check().unwrap();
        assert!(p.ops.iter().filter(|o| matches!(o, probe::Op::Sizes { .. })).count() >= 6);
        // The check itself catches a header written before its sync.
        let bad = probe::Probe {
            ops: vec![
                probe::Op::Data { end: 8 },
                probe::Op::Sizes { data: 8, after: 0 },
                probe::Op::Sync { covered: 8, ok: true },
            ],
            ..Default::default()
        };
        assert!(bad.check().is_err());
    }

    /// Markers go after the audio only once the header claims all of it
    /// durably, and the header claims the markers only once they are
    /// synced. The check fails for either sync missing.
    #[test]
    fn markers_follow_a_durable_final_header() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, p) = probed(dir.path(), "m.wav");
        w.append(&frames(w.spec, 30_001, 0)).unwrap();
        w.checkpoint().unwrap();
        w.append(&frames(w.spec, 5, 0)).unwrap();
        let marks = [crate::wav::Marker { frame: 7, frame_time: 7, label: "x".into() }];
        w.finalize_with(&crate::wav::cue::trailer(&marks)).unwrap();
        let p = p.lock().unwrap();
        p.check().unwrap();
        let last = p.ops.iter().rev().find_map(|o| match o {
            probe::Op::Sizes { after, .. } => Some(*after),
            _ => None,
        });
        assert!(last > Some(1), "the final header covers the markers: {:?}", p.ops);
        // Without the sync after the final sizes, or before the sizes that
        // cover the markers, the check fails.
        for skip in [0, 1] {
            let mut syncs = 0;
            let ops: Vec<probe::Op> = p
                .ops
                .iter()
                .copied()
                .filter(|o| {
                    let is_late_sync = matches!(o, probe::Op::Sync { .. }) && {
                        syncs += 1;
                        syncs == p.syncs as usize - 1 + skip
                    };
                    !is_late_sync
                })
                .collect();
            let bad = probe::Probe { ops, ..Default::default() };
            assert!(bad.check().is_err(), "sync {skip} from the end removed: {:?}", bad.ops);
        }
    }

    /// A failed fdatasync is sticky: the next sync (which Linux lets succeed
    /// although the data is gone) does not make the header claim the audio
    /// since the last good checkpoint.
    #[test]
    fn after_a_failed_sync_the_header_never_claims_more() {
        for fail in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, p) = probed(dir.path(), "a.wav");
            p.lock().unwrap().fail_sync = Some(fail);
            let mut committed = 0;
            for k in 1..=3u64 {
                w.append(&frames(w.spec, 10_000, 0)).unwrap();
                if w.checkpoint().is_ok() {
                    committed = k * 10_000;
                }
            }
            assert!(w.finalize().is_err(), "fail at sync {fail}");
            let p = p.lock().unwrap();
            p.check().unwrap_or_else(|e| panic!("fail at sync {fail}: {e}"));
            let info = crate::wav::read_info(&dir.path().join("a.wav")).unwrap();
            assert_eq!(info.frames(), committed, "fail at sync {fail}");
        }
    }

    /// Disk full in the middle of a write: the whole frames that reached the
    /// file are claimed once synced; the header never claims a partial frame
    /// or the lost rest.
    #[test]
    fn a_partial_write_keeps_its_whole_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, p) = probed(dir.path(), "a.wav");
        w.append(&frames(w.spec, 1000, 0)).unwrap();
        w.checkpoint().unwrap();
        // Room for 3,316 frames and half of one more.
        p.lock().unwrap().space = Some(3316 * 4 + 2);
        let _ = w.append(&frames(w.spec, 20_000, 0));
        let e = w.finalize().unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        p.lock().unwrap().check().unwrap();
        let info = crate::wav::read_info(&dir.path().join("a.wav")).unwrap();
        assert_eq!(info.frames(), 1000 + 3316);
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"precious").unwrap();
        let spec = WavSpec { channels: 1, sample_rate: 48000, format: SampleFormat::F32 };
        let err = WavWriter::create_new(&path, spec, &bext(), IXML).err().unwrap();
        assert!(matches!(err, WavError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn header_covers_only_checkpointed_audio_until_finalize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wav");
        let spec = WavSpec { channels: 2, sample_rate: 48000, format: SampleFormat::S16 };
        let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
        w.append(&frames(spec, 300, 0)).unwrap();
        w.checkpoint().unwrap();
        w.append(&frames(spec, 200, 300)).unwrap();
        // Simulate a crash: data after the checkpoint reaches the file, the
        // header is never updated.
        w.flush().unwrap();
        drop(w);
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 300);
    }

    #[test]
    fn one_checkpoint_for_many_files_commits_each_header() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WavSpec { channels: 1, sample_rate: 48000, format: SampleFormat::S16 };
        let paths: Vec<_> = (0..3).map(|i| dir.path().join(format!("m{i}.wav"))).collect();
        let mut ws: Vec<_> =
            paths.iter().map(|p| WavWriter::create_new(p, spec, &bext(), IXML).unwrap()).collect();
        for (i, w) in ws.iter_mut().enumerate() {
            w.append(&frames(spec, 100 + i, 0)).unwrap();
        }
        WavWriter::checkpoint_many(&mut ws).unwrap();
        for w in &mut ws {
            w.append(&frames(spec, 50, 0)).unwrap();
            w.flush().unwrap(); // after the checkpoint: not claimed by the header
        }
        drop(ws);
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(hound::WavReader::open(p).unwrap().duration(), 100 + i as u32, "{}", p.display());
        }
    }

    #[test]
    fn odd_sized_data_gets_a_pad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.wav");
        let spec = WavSpec { channels: 1, sample_rate: 44100, format: SampleFormat::S24 };
        let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
        w.append(&frames(spec, 3, 0)).unwrap();
        w.finalize().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 2, 0);
        let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, bytes.len());
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 3);
    }

    #[test]
    fn bext_is_readable_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.wav");
        let spec = WavSpec { channels: 2, sample_rate: 48000, format: SampleFormat::F32 };
        WavWriter::create_new(&path, spec, &bext(), IXML).unwrap().finalize().unwrap();
        let info = crate::wav::read_info(&path).unwrap();
        assert_eq!(info.bext.unwrap().time_reference, 4242);
        assert_eq!(info.data_bytes, 0);
        assert!(!info.rf64);
    }

    /// The iXML chunk keeps its size: later versions (up to the slack) are
    /// written in place and the audio does not move.
    #[test]
    fn ixml_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let spec = WavSpec { channels: 1, sample_rate: 48000, format: SampleFormat::S16 };
        let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
        let data_at = w.data_at;
        let longer = IXML.replace("<TAKE>t</TAKE>", &format!("<TAKE>{}</TAKE>", "t".repeat(IXML_SLACK)));
        w.update_ixml(&longer).unwrap();
        assert!(w.update_ixml(&format!("{longer}  ")).is_err(), "beyond the slack");
        w.append(&frames(spec, 10, 0)).unwrap();
        w.finalize().unwrap();
        let info = crate::wav::read_info(&path).unwrap();
        assert_eq!(info.ixml.as_deref(), Some(longer.as_str()));
        assert_eq!(info.data_at, data_at);
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 10);
    }

    /// Markers follow the audio; the header's sizes cover the audio, the
    /// pad byte and the trailer; hound reads every frame. A crash after
    /// the trailer was written but before the RIFF size covered it, or with
    /// half a trailer, is repaired to exactly the audio (no trailer byte
    /// taken for audio), and the trailer can be written again.
    #[test]
    fn markers_follow_the_audio_and_survive_a_torn_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WavSpec { channels: 1, sample_rate: 48000, format: SampleFormat::S24 };
        let marks = [
            crate::wav::Marker { frame: 2, frame_time: 102, label: "a".into() },
            crate::wav::Marker { frame: 9, frame_time: 109, label: "verse 2".into() },
        ];
        let trailer = crate::wav::cue::trailer(&marks);
        let path = dir.path().join("m.wav");
        let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
        w.append(&frames(spec, 11, 0)).unwrap(); // 33 bytes: a pad byte follows
        assert_eq!(w.finalize_with(&trailer).unwrap().0, 11);
        let bytes = std::fs::read(&path).unwrap();
        let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, bytes.len());
        assert!(bytes.ends_with(&trailer));
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 11);
        let whole = bytes.clone();
        // Torn: the RIFF size still says "audio only", half a trailer on disk.
        let info = crate::wav::read_info(&path).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        write_sizes(&f, info.data_at, info.data_bytes, 3, 1).unwrap();
        f.set_len(bytes.len() as u64 - trailer.len() as u64 / 2).unwrap();
        drop(f);
        let r = crate::wav::repair(&path).unwrap();
        assert_eq!((r.frames_before, r.frames_after), (11, 11));
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, bytes.len() - trailer.len());
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let info = crate::wav::read_info(&path).unwrap();
        crate::wav::append_trailer(&f, &info, 11, &trailer).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole, "recovery writes the same file");
        assert_eq!(crate::wav::repair(&path).unwrap().frames_after, 11, "and repair keeps it");
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        // Written again (recover run twice): the same file.
        crate::wav::append_trailer(&f, &info, 11, &trailer).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn promotes_to_rf64_past_4_gib_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wav");
        let spec = WavSpec { channels: 2, sample_rate: 48000, format: SampleFormat::F32 };
        let mut w = WavWriter::create_new(&path, spec, &bext(), IXML).unwrap();
        let hole = (u32::MAX as u64 / spec.frame_bytes() as u64) + 10;
        w.append_silence_sparse(hole).unwrap();
        w.append(&frames(spec, 100, 0)).unwrap();
        w.checkpoint().unwrap();
        assert!(w.is_rf64());
        assert_eq!(w.finalize().unwrap(), (hole + 100, true));
        let info = crate::wav::read_info(&path).unwrap();
        assert!(info.rf64);
        assert_eq!(info.data_bytes, (hole + 100) * 8);
        assert_eq!(info.bext.unwrap().time_reference, 4242);
        let bytes = std::fs::File::open(&path).unwrap();
        let mut head = [0u8; 12];
        bytes.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head[..4], b"RF64");
        assert_eq!(&head[4..8], &[0xff; 4]);
    }
}
