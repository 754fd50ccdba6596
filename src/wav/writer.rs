//! A crash-safe Broadcast Wave writer that turns into RF64 past 4 GiB.
//!
//! Layout (EBU Tech 3306 / ITU-R BS.2088 compatible):
//!
//! ```text
//! RIFF <size> WAVE | JUNK(28) | fmt (EXTENSIBLE, 40) | bext | iXML | JUNK | data <size> ...
//! ```
//!
//! The second `JUNK` pads the header so that the audio starts on a 4 KiB
//! boundary: the audio is written with O_DIRECT (no copy into the page
//! cache, no writeback at sync time) in whole aligned blocks from an
//! aligned buffer. The last partial block stays in memory until the next
//! write or checkpoint (a checkpoint writes it through the page cache,
//! right before its sync). Where the filesystem refuses O_DIRECT
//! (`EINVAL`), the writer falls back to buffered writes that start the
//! writeback at once (`sync_file_range`) and drop the synced pages
//! (`POSIX_FADV_DONTNEED`), so the page cache does not fill with audio.
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
//! Every file operation goes through [`FileIo`] (the real file, or in tests
//! a recording of the order that checks it against a crash at any moment).
//!
//! Disk thread only: every method here does I/O.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::aligned::{AlignedBuf, ALIGN};
use super::bext::Bext;
use super::fileio::{FileIo, OsFile};
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

/// Threads that sync a checkpoint's files together (see
/// [`WavWriter::sync_together`]).
const SYNC_THREADS: usize = 8;

/// Buffered bytes before a `write(2)`.
const WRITE_BUFFER: usize = 1 << 20;

/// A file's blocks are allocated this far ahead of its O_DIRECT writes
/// (seconds of its audio; see [`WavWriter::reserve_for`]), in steps of at
/// least [`RESERVE_MIN`] and at most [`RESERVE_MAX`] bytes.
const RESERVE_SECONDS: u64 = 2;
const RESERVE_MIN: u64 = 1 << 20;
const RESERVE_MAX: u64 = 32 << 20;

/// Audio waits in the buffer at most this long before it goes to the kernel
/// (unless [`WavWriter::set_max_buffer_age`] says otherwise): a crash of the
/// process (kill -9) loses only what is still in our memory, since what the
/// kernel has survives it. At 2 channels 1 MiB would be 2.7 s.
pub const MAX_BUFFER_AGE: std::time::Duration = std::time::Duration::from_millis(50);

const SUBTYPE_PCM: [u8; 16] = [1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];
const SUBTYPE_FLOAT: [u8; 16] = [3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];

/// An open, growing WAV/RF64 file.
pub struct WavWriter {
    /// The file (audio with O_DIRECT where the filesystem takes it).
    io: Box<dyn FileIo>,
    path: PathBuf,
    spec: WavSpec,
    /// Offset of the first audio byte (a multiple of 4 KiB).
    data_at: u64,
    /// Audio bytes in the file that are never written again (excludes
    /// `buf`; with O_DIRECT a multiple of 4 KiB).
    data_written: u64,
    /// Audio bytes in the file: `data_written`, plus the part of `buf` a
    /// checkpoint wrote (O_DIRECT keeps that partial block in `buf`).
    on_disk: u64,
    /// Audio bytes the on-disk header currently claims.
    data_committed: u64,
    /// Bytes written after the audio (pad byte, marker chunks).
    tail: u64,
    /// The audio after `data_written`, encoded, in memory.
    buf: AlignedBuf,
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
    /// See [`MAX_BUFFER_AGE`].
    max_age: std::time::Duration,
    /// The file's blocks are allocated up to this offset, ahead of the
    /// audio written (see [`Self::reserve_for`]).
    reserved_to: u64,
    /// Bytes reserved at a time; 0: none (the filesystem cannot).
    reserve_step: u64,
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
        let data_at = aligned_data_at(BEXT_AT + 8 + bext_body.len() as u64 + 8 + ixml_len as u64);
        let mut w = WavWriter {
            io: Box::new(OsFile::new(file, direct_io_wanted())),
            path: path.to_owned(),
            spec,
            data_at,
            data_written: 0,
            on_disk: 0,
            data_committed: 0,
            tail: 0,
            buf: AlignedBuf::with_capacity(WRITE_BUFFER + 64 * 1024),
            rf64: false,
            bext_len: bext_body.len(),
            ixml_len,
            sync_failed: false,
            last_flush: std::time::Instant::now(),
            max_age: MAX_BUFFER_AGE,
            reserved_to: 0,
            reserve_step: reserve_step(spec),
        };
        let ixml_body = w.ixml_body(ixml)?;
        let header = w.header(&bext_body, &ixml_body);
        debug_assert_eq!(header.len() as u64, data_at);
        w.io.write_header(&header, 0).map_err(|e| w.io_err("write header", e))?;
        Ok(w)
    }

    /// Puts `wrap` around the file's operations (a recording of them, in
    /// the durability tests), before any audio is written.
    pub fn wrap_io(&mut self, wrap: impl FnOnce(Box<dyn FileIo>) -> Box<dyn FileIo>) {
        let io = std::mem::replace(&mut self.io, Box::new(super::fileio::Closed));
        self.io = wrap(io);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the audio starts in the file (a multiple of 4 KiB).
    pub fn data_at(&self) -> u64 {
        self.data_at
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
        self.data_at = aligned_data_at(self.ixml_at() + 8 + self.ixml_len as u64);
        let ixml_body = self.ixml_body(ixml)?;
        let header = self.header(&body, &ixml_body);
        self.pwrite(&header, 0)?;
        self.io.set_len(self.data_at).map_err(|e| self.io_err("rate change", e))?;
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

    /// Whether the audio goes to the file with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.io.has_direct()
    }

    /// Appends `n` frames of `chans` (None: silence) encoded in `format`,
    /// straight into the buffer (each byte written once), and writes the
    /// buffer out once it is large or [`MAX_BUFFER_AGE`] old. Each
    /// channel's level is added to `levels` (measured during the encode).
    pub fn append_frames(
        &mut self,
        format: SampleFormat,
        chans: &[Option<&[f32]>],
        n: usize,
        levels: &mut [crate::vocab::ChannelLevel],
    ) -> Result<(), WavError> {
        self.buf.append_frames(format, chans, n, levels);
        self.commit_buffer()
    }

    /// How long audio may wait in the buffer (see [`MAX_BUFFER_AGE`]): one
    /// file among many (the mono layout) waits longer, so that each write is
    /// large; a checkpoint writes everything out in any case.
    pub fn set_max_buffer_age(&mut self, age: std::time::Duration) {
        self.max_age = age;
    }

    /// Writes the buffer out once it is large, or [`MAX_BUFFER_AGE`] after
    /// the last write.
    fn commit_buffer(&mut self) -> Result<(), WavError> {
        debug_assert_eq!((self.data_written + self.buf.len() as u64) % self.spec.frame_bytes() as u64, 0);
        if self.buf.len() >= WRITE_BUFFER || self.last_flush.elapsed() >= self.max_age {
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
    /// file is extended sparsely (with O_DIRECT: its whole blocks; zeros
    /// are written up to and from them). Used for long gaps and by the
    /// 4 GiB test.
    pub fn append_silence_sparse(&mut self, frames: u64) -> Result<(), WavError> {
        let mut bytes = frames * self.spec.frame_bytes() as u64;
        if self.is_direct() {
            let to_block =
                (ALIGN as u64 - (self.data_written + self.buf.len() as u64) % ALIGN as u64) % ALIGN as u64;
            let z = to_block.min(bytes);
            self.buf.extend_zeros(z as usize);
            bytes -= z;
        }
        self.flush()?;
        // With O_DIRECT the buffer is empty now only if it ended on a block.
        let hole = if self.buf.is_empty() {
            if self.is_direct() {
                bytes / ALIGN as u64 * ALIGN as u64
            } else {
                bytes
            }
        } else {
            0
        };
        if hole > 0 {
            self.data_written += hole;
            self.on_disk = self.data_written;
            let end = self.data_at + self.data_written;
            self.io.set_len(end).map_err(|e| self.io_err("extend", e))?;
        }
        self.buf.extend_zeros((bytes - hole) as usize);
        self.commit_buffer()
    }

    /// Writes the buffer to the file: all of it, or with O_DIRECT its whole
    /// blocks (the partial last one stays, to be completed).
    fn flush(&mut self) -> Result<(), WavError> {
        let n = if self.is_direct() { self.buf.len() / ALIGN * ALIGN } else { self.buf.len() };
        if n > 0 {
            self.write_out(n)?;
        }
        self.last_flush = std::time::Instant::now();
        Ok(())
    }

    /// [`Self::flush`], then with O_DIRECT the partial last block too,
    /// through the page cache (a sync follows at once, so the page is clean
    /// before the next O_DIRECT write of that block replaces it).
    fn flush_all(&mut self) -> Result<(), WavError> {
        self.flush()?;
        if self.is_direct() && !self.buf.is_empty() {
            let at = self.data_at + self.data_written;
            let (done, res) = write_all_at(&mut *self.io, self.buf.as_slice(), at, false);
            if let Err(e) = res {
                return Err(self.short_write(done, e));
            }
            self.on_disk = self.data_written + self.buf.len() as u64;
        }
        Ok(())
    }

    /// Writes the first `n` bytes of the buffer at the end of the audio in
    /// the file, and drops them from the buffer.
    fn write_out(&mut self, n: usize) -> Result<(), WavError> {
        let at = self.data_at + self.data_written;
        let direct = self.is_direct();
        if direct {
            self.reserve_for(at + n as u64);
        }
        let (done, res) = write_all_at(&mut *self.io, &self.buf.as_slice()[..n], at, direct);
        match res {
            Ok(()) => {}
            Err(e) if direct && done == 0 && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "the filesystem refuses O_DIRECT writes: buffered writes from now on"
                );
                self.io.drop_direct();
                return self.write_out(self.buf.len());
            }
            Err(e) => return Err(self.short_write(done, e)),
        }
        self.data_written += n as u64;
        self.on_disk = self.on_disk.max(self.data_written);
        self.buf.keep_from(n);
        if !direct {
            self.io.write_behind(at, n as u64);
        }
        Ok(())
    }

    /// Allocates the file's blocks ahead of an O_DIRECT write that ends at
    /// `end`, [`RESERVE_SECONDS`] of audio at a time, without changing the
    /// file's size: else every write extends the file, and the filesystem
    /// allocates blocks and logs the new size for each of them (measured
    /// at 256 inputs: 8% less CPU interleaved, 2% mono, docs/benchmarks.md).
    /// The size grows only with the audio written, so a crash leaves a
    /// file whose length is its audio; what is reserved beyond it is given
    /// back at the end ([`Self::finalize`]) or by recovery. Where the
    /// filesystem cannot (or the disk has no room for the step), the
    /// writes allocate as they go.
    fn reserve_for(&mut self, end: u64) {
        if self.reserve_step == 0 || end <= self.reserved_to {
            return;
        }
        let from = self.reserved_to.max(self.data_at + self.data_written);
        let to = end.max(from + self.reserve_step).next_multiple_of(ALIGN as u64);
        match self.io.reserve(from, to - from) {
            Ok(()) => self.reserved_to = to,
            Err(e) => {
                tracing::debug!(
                    path = %self.path.display(),
                    "cannot allocate the file's blocks ahead ({e}): each write allocates its own"
                );
                self.reserve_step = 0;
            }
        }
    }

    /// Bytes allocated beyond the audio in the file (see
    /// [`Self::reserve_for`]): free space that the disk's free count no
    /// longer shows but that this file will fill.
    pub fn reserved_ahead(&self) -> u64 {
        self.reserved_to.saturating_sub(self.data_at + self.on_disk)
    }

    /// Gives back the blocks reserved beyond the file's end. Failing to
    /// costs space, not audio: it is only logged (recovery's repair gives
    /// them back from a file it repairs).
    fn give_back_reserve(&mut self) {
        if self.reserved_to == 0 {
            return;
        }
        self.reserved_to = 0;
        self.reserve_step = 0;
        if let Err(e) = self.io.trim_reserve() {
            tracing::warn!(path = %self.path.display(), "cannot free the space reserved beyond the file's end: {e}");
        }
    }

    /// A write failed after `done` bytes of the buffer reached the file:
    /// they count as written (a later successful sync may claim the whole
    /// frames among them); the rest of the buffer is dropped.
    fn short_write(&mut self, done: usize, e: io::Error) -> WavError {
        self.data_written += done as u64;
        self.on_disk = self.on_disk.max(self.data_written);
        self.buf.clear();
        self.io_err("write", e)
    }

    /// fdatasync, made sticky: see `sync_failed`. Once one failed, every
    /// later one fails too.
    fn sync(&mut self, op: &'static str) -> Result<(), WavError> {
        if self.sync_failed {
            let e = io::Error::from_raw_os_error(nix::libc::EIO);
            return Err(self.io_err("an earlier fdatasync failed; sync", e));
        }
        if let Err(e) = self.io.sync_data() {
            self.sync_failed = true;
            return Err(self.io_err(op, e));
        }
        Ok(())
    }

    /// Makes everything written so far survive a crash: write out, fdatasync,
    /// then update the header sizes (promoting to RF64 if needed).
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        self.flush_all()?;
        self.still_linked()?;
        self.sync("fdatasync")?;
        self.commit_synced()
    }

    /// The file is still in a directory: deleted (or its directory
    /// removed), it would take audio that nobody can ever read, so that is
    /// an error that saves nothing.
    fn still_linked(&self) -> Result<(), WavError> {
        match self.io.links() {
            Ok(0) => Err(WavError::Io {
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
        files.iter_mut().try_for_each(|f| f.flush_all())?;
        files.iter().try_for_each(|f| f.still_linked())?;
        Self::sync_together(files)?;
        files.iter_mut().try_for_each(|f| f.commit_synced())
    }

    /// Syncs every file, each with its own fdatasync (whose error is its
    /// own), from up to [`SYNC_THREADS`] threads at once: the block layer
    /// merges the cache flushes of syncs that wait together, so many files
    /// cost about as many device flushes as one, where one after another
    /// each waited for a flush of its own. A thread that cannot be started
    /// leaves its files to this one.
    fn sync_together(files: &mut [&mut WavWriter]) -> Result<(), WavError> {
        if files.len() < 4 {
            return files.iter_mut().try_for_each(|f| f.sync("fdatasync"));
        }
        let threads = SYNC_THREADS.min(files.len());
        let queue = std::sync::Mutex::new(files.iter_mut());
        let first_err = std::sync::Mutex::new(None::<WavError>);
        // Each worker takes the next file until none is left; this thread
        // works too, so every file is synced even if no thread starts.
        let work = || loop {
            let Some(f) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else { break };
            if let Err(e) = f.sync("fdatasync") {
                first_err.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
            }
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                if let Err(e) = std::thread::Builder::new().name("capstan-sync".into()).spawn_scoped(s, work)
                {
                    tracing::debug!("cannot start a sync thread ({e}): the others sync its files");
                    break;
                }
            }
            work();
        });
        match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records that everything written is durable: header sizes follow.
    /// Called only after a successful [`Self::sync`] (which, once one has
    /// failed, always fails), so nothing more is claimed after a failure.
    fn commit_synced(&mut self) -> Result<(), WavError> {
        let fb = self.spec.frame_bytes() as u64;
        let whole = self.on_disk / fb * fb;
        self.write_sizes(whole, 0)?;
        self.data_committed = whole;
        if !self.is_direct() {
            // Synced pages are clean: let them go (buffered fallback only).
            self.io.drop_cached(self.data_at, whole);
        }
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
        if let Err(e) = self.flush_all() {
            // Disk full or I/O error: the rest of the buffer is lost, but the
            // header gets every whole frame that did reach the file, once a
            // sync has covered it.
            if self.sync("fdatasync").is_ok() {
                let _ = self.commit_synced();
            }
            self.give_back_reserve();
            return Err(match e {
                WavError::Io { path, op, source, .. } => {
                    WavError::Io { path, op, source, frames_safe: self.frames_committed() }
                }
                other => other,
            });
        }
        let audio = self.on_disk;
        let pad = audio % 2 == 1;
        if pad {
            self.io.write_pad(self.data_at + audio).map_err(|e| self.io_err("write pad byte", e))?;
            self.tail = 1;
        }
        self.sync("fdatasync")?;
        self.write_sizes(audio, pad as u64)?;
        self.data_committed = audio;
        if !trailer.is_empty() {
            // The final sizes must be durable before anything follows the
            // audio, or a crash could leave a stale header and a trailer
            // that recovery would take for audio.
            self.sync("fdatasync")?;
            let at = self.data_at + audio + self.tail;
            self.io.write_trailer(trailer, at).map_err(|e| self.io_err("write markers", e))?;
            self.tail += trailer.len() as u64;
            self.sync("fdatasync")?;
            self.write_sizes(audio, pad as u64 + trailer.len() as u64)?;
        }
        self.give_back_reserve();
        self.io.sync_all().map_err(|e| self.io_err("fsync", e))?;
        Ok((self.frames_committed(), self.rf64))
    }

    /// Writes the RIFF/RF64 sizes for `data` bytes of audio followed by
    /// `after` bytes (pad byte, trailing chunks).
    fn write_sizes(&mut self, data: u64, after: u64) -> Result<(), WavError> {
        let fb = self.spec.frame_bytes() as u64;
        match self.io.write_sizes(self.data_at, data, fb, after) {
            Ok(rf64) => {
                self.rf64 |= rf64;
                Ok(())
            }
            Err(e) => Err(self.io_err("header update", e)),
        }
    }

    fn pwrite(&mut self, bytes: &[u8], at: u64) -> Result<(), WavError> {
        self.io.write_header(bytes, at).map_err(|e| self.io_err("header update", e))
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
        // Filler up to the aligned start of the audio.
        let fill = self.data_at as usize - 8 - h.len() - 8;
        h.extend_from_slice(b"JUNK");
        h.extend_from_slice(&(fill as u32).to_le_bytes());
        h.resize(h.len() + fill, 0);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }
}

/// Where the audio starts after a header whose chunks end at `chunks_end`:
/// the next 4 KiB boundary with room for a filler chunk's and the data
/// chunk's headers.
fn aligned_data_at(chunks_end: u64) -> u64 {
    (chunks_end + 16).next_multiple_of(ALIGN as u64)
}

/// Bytes a file of `spec` reserves at a time (see
/// [`WavWriter::reserve_for`]).
fn reserve_step(spec: WavSpec) -> u64 {
    let second = spec.sample_rate as u64 * spec.frame_bytes() as u64;
    (RESERVE_SECONDS * second).clamp(RESERVE_MIN, RESERVE_MAX).next_multiple_of(ALIGN as u64)
}

/// Whether new files try O_DIRECT (the default).
static DIRECT_IO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Switches O_DIRECT off for files made from now on: the hidden
/// `--buffered-io` flag, for measuring the difference (docs/benchmarks.md).
pub fn use_direct_io(on: bool) {
    DIRECT_IO.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn direct_io_wanted() -> bool {
    DIRECT_IO.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes all of `bytes` at `at`; returns how many reached the file and
/// the error that stopped it, if any.
fn write_all_at(io: &mut dyn FileIo, bytes: &[u8], at: u64, direct: bool) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < bytes.len() {
        match io.write_audio(&bytes[done..], at + done as u64, direct) {
            Ok(0) => {
                return (done, Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes")));
            }
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
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

/// A recording [`FileIo`] for the tests: what a writer did to its file, in
/// order, checked against what a crash at any moment would leave, and the
/// failures to inject.
#[cfg(test)]
pub(crate) mod probe;

#[cfg(test)]
mod tests;
