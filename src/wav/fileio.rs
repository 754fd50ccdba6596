//! The file operations of a growing audio file, behind one trait.
//!
//! The WAV writer states its durability protocol in these terms (audio
//! written, synced, then the header's sizes; markers only after a durable
//! final header). [`OsFile`] does them with the real file (O_DIRECT for
//! the audio where the filesystem takes it). Tests put a recording
//! implementation in between (`wav::writer::probe`), which checks their
//! order against what a crash at any moment would leave and injects
//! failures (a full disk, a failed sync, a filesystem without O_DIRECT, a
//! slow disk). Disk thread only: every method does I/O.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// What a WAV writer does to its file.
pub trait FileIo: Send {
    /// One write of audio bytes at `at`, through O_DIRECT if `direct`
    /// (then `at` and the length are 4 KiB multiples); may be short.
    fn write_audio(&mut self, bytes: &[u8], at: u64, direct: bool) -> io::Result<usize>;
    /// Header bytes (chunks being filled in) at `at`, all of them. A write
    /// at 0 is the whole header, up to the audio.
    fn write_header(&mut self, bytes: &[u8], at: u64) -> io::Result<()>;
    /// The header's sizes: `data` bytes of audio that starts at `data_at`,
    /// then `after` bytes (pad byte, marker chunks); RF64 past 4 GiB.
    /// Returns whether the file is RF64 now.
    fn write_sizes(&mut self, data_at: u64, data: u64, frame_bytes: u64, after: u64) -> io::Result<bool>;
    /// The pad byte after an odd-sized audio chunk, at `at`.
    fn write_pad(&mut self, at: u64) -> io::Result<()>;
    /// Chunks after the audio (markers), at `at`.
    fn write_trailer(&mut self, bytes: &[u8], at: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&mut self) -> io::Result<()>;
    /// fsync.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Sets the file's length (extends sparsely).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Allocates the file's blocks for `len` bytes from `at` without
    /// changing its size (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so that
    /// the writes into them do not each allocate and log a new size. Not
    /// every filesystem can.
    fn reserve(&mut self, at: u64, len: u64) -> io::Result<()>;
    /// Gives back the blocks reserved beyond the end of the file (a
    /// truncate to its own length); removes no byte.
    fn trim_reserve(&mut self) -> io::Result<()>;
    /// Hard links to the file: 0 once it was deleted while open.
    fn links(&self) -> io::Result<u64>;
    /// Whether audio can go out with O_DIRECT.
    fn has_direct(&self) -> bool;
    /// O_DIRECT was refused (`EINVAL`): buffered writes from now on.
    fn drop_direct(&mut self);
    /// Buffered writes only: start the writeback of what was just written.
    fn write_behind(&self, at: u64, len: u64);
    /// Buffered writes only: synced pages may leave the page cache.
    fn drop_cached(&self, at: u64, len: u64);
}

/// The file itself: what users' recordings go through.
pub struct OsFile {
    file: File,
    /// The same file opened with O_DIRECT, for the audio; `None`: buffered
    /// writes (refused by the filesystem, or switched off).
    direct: Option<File>,
}

impl OsFile {
    /// `file`, with an O_DIRECT descriptor for its audio if `direct`.
    pub fn new(file: File, direct: bool) -> OsFile {
        let direct = if direct { open_direct(&file) } else { None };
        OsFile { file, direct }
    }
}

/// The file behind `file` opened again, write-only with O_DIRECT (through
/// /proc/self/fd: the same inode, whatever its name is now). None where
/// that fails.
fn open_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT | nix::libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

impl FileIo for OsFile {
    fn write_audio(&mut self, bytes: &[u8], at: u64, direct: bool) -> io::Result<usize> {
        match (&self.direct, direct) {
            (Some(d), true) => d.write_at(bytes, at),
            _ => self.file.write_at(bytes, at),
        }
    }

    fn write_header(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, at)
    }

    fn write_sizes(&mut self, data_at: u64, data: u64, frame_bytes: u64, after: u64) -> io::Result<bool> {
        super::writer::write_sizes(&self.file, data_at, data, frame_bytes, after)
    }

    fn write_pad(&mut self, at: u64) -> io::Result<()> {
        self.file.write_all_at(&[0], at)
    }

    fn write_trailer(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, at)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn reserve(&mut self, at: u64, len: u64) -> io::Result<()> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let (at, len) = (i64::try_from(at), i64::try_from(len));
        let (Ok(at), Ok(len)) = (at, len) else { return Err(io::ErrorKind::InvalidInput.into()) };
        fallocate(&self.file, FallocateFlags::FALLOC_FL_KEEP_SIZE, at, len).map_err(io::Error::from)
    }

    fn trim_reserve(&mut self) -> io::Result<()> {
        super::trim_beyond_end(&self.file)
    }

    fn links(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map(|m| m.nlink())
    }

    fn has_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn drop_direct(&mut self) {
        self.direct = None;
    }

    fn write_behind(&self, at: u64, len: u64) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a valid, open descriptor; it reads no
        // memory of ours. Failure only loses the hint.
        unsafe {
            nix::libc::sync_file_range(
                self.file.as_raw_fd(),
                at as i64,
                len as i64,
                nix::libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    fn drop_cached(&self, at: u64, len: u64) {
        let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        let _ = nix::fcntl::posix_fadvise(&self.file, at as i64, len as i64, advice);
    }
}

/// Stands in for a file being swapped (see `WavWriter::wrap_io`): every
/// operation fails.
pub(super) struct Closed;

impl FileIo for Closed {
    fn write_audio(&mut self, _: &[u8], _: u64, _: bool) -> io::Result<usize> {
        Err(closed())
    }
    fn write_header(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn write_sizes(&mut self, _: u64, _: u64, _: u64, _: u64) -> io::Result<bool> {
        Err(closed())
    }
    fn write_pad(&mut self, _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn write_trailer(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Err(closed())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        Err(closed())
    }
    fn set_len(&mut self, _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn reserve(&mut self, _: u64, _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn trim_reserve(&mut self) -> io::Result<()> {
        Err(closed())
    }
    fn links(&self) -> io::Result<u64> {
        Err(closed())
    }
    fn has_direct(&self) -> bool {
        false
    }
    fn drop_direct(&mut self) {}
    fn write_behind(&self, _: u64, _: u64) {}
    fn drop_cached(&self, _: u64, _: u64) {}
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the file is closed")
}
