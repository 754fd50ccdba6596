//! A take's mirrored copies (`--mirror DIR`): every operation the WAV
//! writer does on the take's files (audio, header, sizes, syncs, length),
//! replayed in the same order on a copy in another directory by a thread
//! of that copy's own. So each copy is byte for byte the take, with the
//! same crash safety (its header claims only what it synced first), and the
//! audio is encoded once, whatever the number of copies.
//!
//! A copy never holds up the take: operations queue for its thread, and a
//! copy whose disk fails (EIO, ENOSPC, removed, read-only) or falls more
//! than [`MAX_QUEUED`] behind stops there. Its files then hold what its
//! last header claimed (as after a crash; `capstan recover` finishes them);
//! its manifest and the take's own say so, and the take goes on.
//! Disk thread and the copies' threads; never real-time.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::wav::aligned::AlignedBuf;
use crate::wav::fileio::{FileIo, OsFile};

/// How long the take's end waits for a copy to finish what it was sent:
/// long enough for a busy disk's syncs (a slow copy is not a failed one),
/// short of forever for a dead one (a network mount that stopped
/// answering).
pub const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes a copy may fall behind before it is given up (about 10 s of 32
/// channels of float at 48 kHz).
pub const MAX_QUEUED: u64 = 64 << 20;

enum Op {
    Write {
        file: usize,
        at: u64,
        bytes: Vec<u8>,
    },
    /// Audio as the take wrote it: with O_DIRECT (4 KiB blocks from
    /// 4 KiB-aligned memory) where the take's own write was.
    Audio {
        file: usize,
        at: u64,
        bytes: AlignedBuf,
        direct: bool,
    },
    Sizes {
        file: usize,
        data_at: u64,
        data: u64,
        frame_bytes: u64,
        after: u64,
    },
    /// See [`FileIo::reserve`]; the copy's own filesystem may refuse.
    Reserve {
        file: usize,
        at: u64,
        len: u64,
    },
    TrimReserve {
        file: usize,
    },
    Sync {
        file: usize,
        all: bool,
    },
    SetLen {
        file: usize,
        len: u64,
    },
    /// A new version of the manifest (written atomically beside the copy).
    Manifest(Vec<u8>),
    /// Stop after what came before.
    Finish,
}

/// Why a copy stopped: the first reason only (what follows is its
/// consequence). Set by either side of a copy, read by both.
#[derive(Debug, Default)]
pub(super) struct Stopped(Mutex<Option<String>>);

impl Stopped {
    pub(super) fn set(&self, why: String) {
        if let Ok(mut f) = self.0.lock() {
            f.get_or_insert(why);
        }
    }

    pub(super) fn why(&self) -> Option<String> {
        self.0.lock().ok().and_then(|f| f.clone())
    }
}

/// What a copy's thread found.
#[derive(Debug, Default)]
struct Health {
    queued: AtomicU64,
    /// Why the copy stopped, once it did.
    failed: Stopped,
    /// What each file's header claims (what a failed copy keeps).
    claimed: Mutex<Vec<Claim>>,
}

/// A header's claim: `data` bytes of audio from `data_at`.
#[derive(Debug, Clone, Copy, Default)]
struct Claim {
    data_at: u64,
    data: u64,
    frame_bytes: u64,
}

impl Claim {
    fn frames(&self) -> u64 {
        self.data / self.frame_bytes.max(1)
    }
}

impl Health {
    fn fail(&self, why: String) {
        self.failed.set(why)
    }

    fn failure(&self) -> Option<String> {
        self.failed.why()
    }
}

/// The sending side of one copy, shared by the take's files.
#[derive(Clone)]
struct Link {
    tx: Sender<Op>,
    health: Arc<Health>,
}

impl Link {
    fn send(&self, op: Op, bytes: u64) {
        if self.health.failure().is_some() {
            return;
        }
        let queued = self.health.queued.fetch_add(bytes, Relaxed) + bytes;
        if queued > MAX_QUEUED {
            self.health.fail(format!(
                "its disk fell {} MiB behind the take (too slow); the copy stops there",
                queued >> 20
            ));
            return;
        }
        if self.tx.send(op).is_err() {
            self.health.fail("its writer thread is gone".into());
        }
    }
}

/// One mirrored copy of a take: its directory, thread and health.
pub struct Mirror {
    pub dir: PathBuf,
    link: Link,
    thread: Option<JoinHandle<()>>,
}

/// How a copy ended (see [`Mirror::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorEnd {
    pub dir: PathBuf,
    /// Its files were made (a copy that could not even start has nothing
    /// of ours in its directory), and its disk still answers (a stuck one
    /// is not written to again).
    pub made: bool,
    /// Why it stopped early, if it did.
    pub failed: Option<String>,
    /// Frames its files hold for sure (the least any header claims).
    pub frames: u64,
}

impl Mirror {
    /// Reserves the copy's files and manifest in `dir` under the take's
    /// names (never over an existing file), writes their first bytes and
    /// starts the copy's thread. `headers[i]` is file `i`'s content so far.
    pub fn create(
        dir: &Path,
        names: &[String],
        manifest: &str,
        headers: &[Vec<u8>],
        first_manifest: &[u8],
    ) -> Result<Mirror, String> {
        let mut reserved = Vec::new();
        let made = (|| -> io::Result<(Vec<File>, PathBuf)> {
            let mpath = dir.join(manifest);
            let mut mf = crate::durable::create_new(&mpath)?;
            reserved.push(mpath.clone());
            let mut files = Vec::new();
            for (n, h) in names.iter().zip(headers) {
                let p = dir.join(n);
                let f = crate::durable::create_new(&p)?;
                reserved.push(p.clone());
                f.write_all_at(h, 0)?;
                files.push(f);
            }
            std::io::Write::write_all(&mut mf, first_manifest)?;
            crate::durable::sync_file(&mf, &mpath)?;
            for (f, p) in files.iter().zip(&reserved[1..]) {
                crate::durable::sync_file(f, p)?;
            }
            crate::durable::sync_dir(dir)?;
            Ok((files, mpath))
        })();
        let (files, mpath) = match made {
            Ok(x) => x,
            Err(e) => {
                for p in &reserved {
                    let _ = std::fs::remove_file(p);
                }
                return Err(format!("cannot make the copy in {}: {e}", dir.display()));
            }
        };
        let health = Arc::new(Health {
            claimed: Mutex::new(vec![Claim::default(); files.len()]),
            ..Default::default()
        });
        let (tx, rx) = channel();
        let (h, paths) = (health.clone(), names.iter().map(|n| dir.join(n)).collect());
        // The copy's audio goes out as the take's does: O_DIRECT where the
        // filesystem takes it (no second pass through the page cache).
        let files = files.into_iter().map(|f| OsFile::new(f, true)).collect();
        let thread = std::thread::Builder::new()
            .name("capstan-mirror".into())
            .spawn(move || replay(rx, files, paths, mpath, &h))
            .map_err(|e| {
                for p in &reserved {
                    let _ = std::fs::remove_file(p); // ours, and nothing in them yet
                }
                format!("cannot start the copy's thread: {e}")
            })?;
        Ok(Mirror { dir: dir.to_owned(), link: Link { tx, health }, thread: Some(thread) })
    }

    /// Hands a new version of the take's manifest to the copy.
    pub fn manifest(&self, json: &[u8]) {
        self.link.send(Op::Manifest(json.to_vec()), json.len() as u64);
    }

    /// Why the copy stopped, if it did (so far).
    pub fn failure(&self) -> Option<String> {
        self.link.health.failure()
    }

    /// Frames the copy's files hold for sure (their headers' least claim).
    pub fn frames_held(&self) -> u64 {
        self.link.health.claimed.lock().map(|c| c.iter().map(Claim::frames).min().unwrap_or(0)).unwrap_or(0)
    }

    /// Waits until the copy has done everything sent to it; how it ended.
    /// A copy whose disk does not answer (a dead network mount) is left
    /// after [`FINISH_WAIT`], as its last header made it: the take's own
    /// end never waits longer for a copy.
    pub fn finish(mut self) -> MirrorEnd {
        let _ = self.link.tx.send(Op::Finish);
        let mut answers = true;
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + FINISH_WAIT;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if !t.is_finished() {
                answers = false;
                self.link.health.fail(format!(
                    "its disk did not finish the copy within {} s (is it stuck?); the copy holds what its \
                     last header claims",
                    FINISH_WAIT.as_secs()
                ));
            } else if t.join().is_err() {
                self.link.health.fail("its writer thread panicked".into());
            }
        }
        let frames = self.frames_held();
        MirrorEnd { dir: self.dir.clone(), made: answers, failed: self.link.health.failure(), frames }
    }

    /// The file operations of the take's file `file`, on `inner` and then
    /// on each of `mirrors`.
    pub fn wrap(inner: Box<dyn FileIo>, file: usize, mirrors: &[Mirror]) -> Box<dyn FileIo> {
        Box::new(MirrorIo { inner, file, links: mirrors.iter().map(|m| m.link.clone()).collect() })
    }
}

/// The copy's thread: every operation in order, until one fails.
fn replay(rx: Receiver<Op>, mut files: Vec<OsFile>, paths: Vec<PathBuf>, manifest: PathBuf, health: &Health) {
    for op in rx {
        let bytes = match &op {
            Op::Write { bytes, .. } => bytes.len() as u64,
            Op::Audio { bytes, .. } => bytes.len() as u64,
            Op::Manifest(j) => j.len() as u64,
            _ => 0,
        };
        // Nothing more once the copy stopped: its headers must never claim
        // audio written after a failed write.
        if health.failure().is_none() {
            if let Err(e) = apply(&op, &mut files, &paths, &manifest, health) {
                health.fail(e);
                cut_to_claims(&mut files, health);
            }
        }
        health.queued.fetch_sub(bytes, Relaxed);
        if matches!(op, Op::Finish) {
            return;
        }
    }
}

/// A copy that stopped keeps what its headers claim, and nothing after it
/// (a full disk gets back the room the unclaimed audio took, so that the
/// copy's final manifest fits). Best effort.
fn cut_to_claims(files: &mut [OsFile], health: &Health) {
    let Ok(claims) = health.claimed.lock() else { return };
    for (f, c) in files.iter_mut().zip(claims.iter()) {
        if c.data_at > 0 {
            let _ = f.set_len(c.data_at + c.data);
            let _ = f.sync_all();
        }
    }
}

fn apply(
    op: &Op,
    files: &mut [OsFile],
    paths: &[PathBuf],
    manifest: &Path,
    health: &Health,
) -> Result<(), String> {
    let err = |what: &str, i: usize, e: io::Error| format!("{} {what}: {e}", paths[i].display());
    match op {
        Op::Write { file, at, bytes } => {
            files[*file].write_header(bytes, *at).map_err(|e| err("write", *file, e))
        }
        Op::Audio { file, at, bytes, direct } => {
            write_audio(&mut files[*file], bytes.as_slice(), *at, *direct).map_err(|e| err("write", *file, e))
        }
        Op::Sizes { file, data_at, data, frame_bytes, after } => {
            files[*file]
                .write_sizes(*data_at, *data, *frame_bytes, *after)
                .map_err(|e| err("header", *file, e))?;
            if let Ok(mut c) = health.claimed.lock() {
                c[*file] = Claim { data_at: *data_at, data: *data, frame_bytes: *frame_bytes };
            }
            Ok(())
        }
        Op::Sync { file, all } => {
            let f = &mut files[*file];
            if *all { f.sync_all() } else { f.sync_data() }.map_err(|e| err("sync", *file, e))?;
            // Written to a file nobody can find is not a copy.
            match f.links().map_err(|e| err("stat", *file, e))? {
                0 => Err(format!("{} was removed (its directory deleted?)", paths[*file].display())),
                _ => Ok(()),
            }
        }
        Op::SetLen { file, len } => files[*file].set_len(*len).map_err(|e| err("set length", *file, e)),
        // Reserving ahead only spares the copy's filesystem work, and what
        // is left reserved costs space, not audio: neither fails the copy.
        Op::Reserve { file, at, len } => {
            let _ = files[*file].reserve(*at, *len);
            Ok(())
        }
        Op::TrimReserve { file } => {
            let _ = files[*file].trim_reserve();
            Ok(())
        }
        Op::Manifest(json) => crate::manifest::write_atomic(manifest, json)
            .map_err(|e| format!("{} update: {e}", manifest.display())),
        Op::Finish => Ok(()),
    }
}

/// All of `bytes` at `at`, with O_DIRECT if `direct` and the copy's
/// filesystem takes it (else through the page cache from then on).
fn write_audio(f: &mut OsFile, bytes: &[u8], at: u64, direct: bool) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        let direct = direct && f.has_direct() && done % crate::wav::aligned::ALIGN == 0;
        match f.write_audio(&bytes[done..], at + done as u64, direct) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes")),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if direct && e.raw_os_error() == Some(nix::libc::EINVAL) => f.drop_direct(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The primary file's operations, passed on to the copies once they
/// succeed on the primary.
struct MirrorIo {
    inner: Box<dyn FileIo>,
    file: usize,
    links: Vec<Link>,
}

impl MirrorIo {
    fn each(&self, op: impl Fn() -> Op, bytes: u64) {
        for l in &self.links {
            l.send(op(), bytes);
        }
    }

    fn write(&self, bytes: &[u8], at: u64) {
        self.each(|| Op::Write { file: self.file, at, bytes: bytes.to_vec() }, bytes.len() as u64);
    }
}

impl FileIo for MirrorIo {
    fn write_audio(&mut self, bytes: &[u8], at: u64, direct: bool) -> io::Result<usize> {
        let n = self.inner.write_audio(bytes, at, direct)?;
        let file = self.file;
        // O_DIRECT takes whole blocks; the rest of a short one goes
        // through the page cache.
        let direct = direct && n % crate::wav::aligned::ALIGN == 0;
        self.each(
            || {
                let mut b = AlignedBuf::with_capacity(n);
                b.extend_from_slice(&bytes[..n]);
                Op::Audio { file, at, bytes: b, direct }
            },
            n as u64,
        );
        Ok(n)
    }
    fn write_header(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.inner.write_header(bytes, at)?;
        self.write(bytes, at);
        Ok(())
    }
    fn write_sizes(&mut self, data_at: u64, data: u64, frame_bytes: u64, after: u64) -> io::Result<bool> {
        let rf64 = self.inner.write_sizes(data_at, data, frame_bytes, after)?;
        self.each(|| Op::Sizes { file: self.file, data_at, data, frame_bytes, after }, 0);
        Ok(rf64)
    }
    fn write_pad(&mut self, at: u64) -> io::Result<()> {
        self.inner.write_pad(at)?;
        self.write(&[0], at);
        Ok(())
    }
    fn write_trailer(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.inner.write_trailer(bytes, at)?;
        self.write(bytes, at);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()?;
        self.each(|| Op::Sync { file: self.file, all: false }, 0);
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()?;
        self.each(|| Op::Sync { file: self.file, all: true }, 0);
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        self.each(|| Op::SetLen { file: self.file, len }, 0);
        Ok(())
    }
    fn reserve(&mut self, at: u64, len: u64) -> io::Result<()> {
        self.inner.reserve(at, len)?;
        self.each(|| Op::Reserve { file: self.file, at, len }, 0);
        Ok(())
    }
    fn trim_reserve(&mut self) -> io::Result<()> {
        self.inner.trim_reserve()?;
        self.each(|| Op::TrimReserve { file: self.file }, 0);
        Ok(())
    }
    fn links(&self) -> io::Result<u64> {
        self.inner.links()
    }
    fn has_direct(&self) -> bool {
        self.inner.has_direct()
    }
    fn drop_direct(&mut self) {
        self.inner.drop_direct()
    }
    fn write_behind(&self, at: u64, len: u64) {
        self.inner.write_behind(at, len)
    }
    fn drop_cached(&self, at: u64, len: u64) {
        self.inner.drop_cached(at, len)
    }
}

/// Records in the take's final manifest every copy and how it ended, the
/// take's own directory (`primary`) first.
pub fn note_copies(m: &mut crate::manifest::Manifest, primary: &str, ends: &[MirrorEnd]) {
    use crate::manifest::CopyState;
    if ends.is_empty() {
        return;
    }
    let own = CopyState {
        dir: primary.to_owned(),
        state: if m.error.is_some() { "failed" } else { "complete" }.into(),
        frames: m.frames,
        error: m.error.clone(),
        format: None,
    };
    let copies = ends.iter().map(|e| match &e.failed {
        None => CopyState {
            dir: e.dir.display().to_string(),
            state: own.state.clone(),
            frames: m.frames,
            error: m.error.clone(),
            format: None,
        },
        Some(why) => CopyState {
            dir: e.dir.display().to_string(),
            state: "failed".into(),
            frames: e.frames.min(m.frames),
            error: Some(why.clone()),
            format: None,
        },
    });
    m.copies = std::iter::once(own.clone()).chain(copies).collect();
}

/// The final manifest beside each copy that was made (the take's own,
/// naming every copy), with the picture; a copy that stopped says so in
/// its own: failed, with the frames it holds. Best effort: a copy whose
/// disk is gone keeps what it had.
pub fn finish_copies(
    m: &crate::manifest::Manifest,
    name: &std::ffi::OsStr,
    primary_dir: &Path,
    ends: &[MirrorEnd],
) {
    for e in ends.iter().filter(|e| e.made) {
        let mut own = m.clone();
        match &e.failed {
            Some(why) => {
                own.state = crate::manifest::TakeState::Failed;
                own.frames = e.frames.min(m.frames);
                own.clean = Some(false);
                own.error = Some(format!("this copy stopped early: {why}"));
                own.picture = None;
            }
            None => {
                if let Some(p) = &m.picture {
                    if let Err(err) = copy_new(&primary_dir.join(p), &e.dir.join(p)) {
                        tracing::warn!("{}: the picture was not copied: {err}", e.dir.display());
                        own.picture = None;
                    }
                }
            }
        }
        let path = e.dir.join(name);
        if let Err(err) = own.save(&path) {
            tracing::error!("{}: the copy's manifest was not written: {err}", path.display());
        }
    }
}

/// Copies `from` to the new file `to` (never over an existing one), synced.
fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let bytes = std::fs::read(from)?;
    let mut f = crate::durable::create_new(to)?;
    std::io::Write::write_all(&mut f, &bytes)?;
    crate::durable::sync_file(&f, to)?;
    crate::durable::sync_dir(to.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use chrono::Local;

    use crate::disk::{Take, TakeSpec};
    use crate::manifest::{Manifest, RtStats, TakeState};
    use crate::vocab::Layout;
    use crate::wav::SampleFormat;

    fn spec(dir: &std::path::Path, mirrors: &[&std::path::Path], layout: Layout) -> TakeSpec {
        let mut s = TakeSpec::for_test(dir, 3, layout, SampleFormat::S24);
        s.mirrors = mirrors.iter().map(|m| m.to_path_buf()).collect();
        s
    }

    fn write(take: &mut Take, from: usize, n: usize) {
        let data: Vec<Vec<f32>> = (0..3)
            .map(|c| (from..from + n).map(|i| ((i * 7 + c * 13) % 200) as f32 / 256.0 - 0.4).collect())
            .collect();
        take.write(n, |c| Some(&data[c][..])).unwrap();
    }

    #[test]
    fn every_copy_is_the_take_byte_for_byte_with_a_manifest_naming_all_copies() {
        for layout in [Layout::Interleaved, Layout::Mono] {
            let (dir, m1, m2) =
                (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let mut take =
                Take::create(spec(dir.path(), &[m1.path(), m2.path()], layout), Local::now()).unwrap();
            write(&mut take, 0, 30_000);
            take.checkpoint().unwrap();
            take.add_marker(1000, 1000, "verse".into()).unwrap();
            write(&mut take, 30_000, 50_000);
            let name = take.name.clone();
            let paths: Vec<_> = take.paths().iter().map(|p| p.to_path_buf()).collect();
            let (files, err) = take.finalize(&[], 0, None, RtStats::default());
            assert!(err.is_none(), "{err:?}");
            assert_eq!(files[0].frames, 80_000);
            let own = Manifest::load(&Manifest::path(dir.path(), &name)).unwrap();
            assert_eq!(own.copies.len(), 3, "{:?}", own.copies);
            assert!(
                own.copies.iter().all(|c| c.state == "complete" && c.frames == 80_000),
                "{:?}",
                own.copies
            );
            for m in [&m1, &m2] {
                for p in &paths {
                    let copy = m.path().join(p.file_name().unwrap());
                    assert_eq!(
                        std::fs::read(&copy).unwrap(),
                        std::fs::read(p).unwrap(),
                        "{layout:?} {}",
                        copy.display()
                    );
                }
                let theirs = Manifest::load(&Manifest::path(m.path(), &name)).unwrap();
                assert_eq!(theirs, own, "each copy's manifest is the take's");
            }
        }
    }

    #[test]
    fn a_copy_whose_directory_is_removed_stops_there_and_the_take_goes_on() {
        let (dir, m1, m2) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let gone = m1.path().join("copy");
        std::fs::create_dir(&gone).unwrap();
        let mut take =
            Take::create(spec(dir.path(), &[&gone, m2.path()], Layout::Interleaved), Local::now()).unwrap();
        write(&mut take, 0, 48_000);
        take.checkpoint().unwrap();
        // The copies' threads have made that checkpoint too.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while take.mirrors.iter().any(|m| m.frames_held() < 48_000) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::remove_dir_all(&gone).unwrap();
        write(&mut take, 48_000, 48_000);
        take.checkpoint().unwrap();
        // The copy's thread finds out at its next sync.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while take.mirror_failures().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let said = take.mirror_failures();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains(&gone.display().to_string()) && said[0].contains("removed"), "{said:?}");
        assert!(said[0].contains("stopped at frame 48000"), "{said:?}");
        write(&mut take, 96_000, 1000);
        let name = take.name.clone();
        let (files, err) = take.finalize(&[], 0, None, RtStats::default());
        assert!(err.is_none(), "the take itself is fine: {err:?}");
        assert_eq!(files[0].frames, 97_000);
        let own = Manifest::load(&Manifest::path(dir.path(), &name)).unwrap();
        assert_eq!(own.state, TakeState::Complete);
        let states: Vec<(&str, u64)> = own.copies.iter().map(|c| (c.state.as_str(), c.frames)).collect();
        assert_eq!(states, [("complete", 97_000), ("failed", 48_000), ("complete", 97_000)]);
        assert!(!gone.exists(), "nothing re-created where the copy was removed");
    }

    #[test]
    fn a_copy_is_never_made_over_a_file_that_is_there() {
        let (dir, m1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut s = spec(dir.path(), &[m1.path()], Layout::Interleaved);
        s.file = Some("show.wav".into());
        std::fs::write(m1.path().join("show.wav"), b"someone else's").unwrap();
        let mut take = Take::create(s, Local::now()).unwrap();
        write(&mut take, 0, 1000);
        assert!(take.mirror_failures()[0].contains("was not made"), "{:?}", take.mirror_failures());
        let (_, err) = take.finalize(&[], 0, None, RtStats::default());
        assert!(err.is_none());
        assert_eq!(std::fs::read(m1.path().join("show.wav")).unwrap(), b"someone else's");
        let left: Vec<_> = std::fs::read_dir(m1.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "nothing of ours left beside it: {left:?}");
    }
}
