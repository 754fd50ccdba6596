//! A recording [`FileIo`] for the durability tests: every write, sync and
//! header update in order ([`Probe::check`] holds it against what a crash
//! after any of them would leave), and failures to inject.

use std::sync::{Arc, Mutex};

use crate::wav::fileio::FileIo;

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
    /// O_DIRECT writes fail with EINVAL (a filesystem without O_DIRECT).
    pub refuse_direct: bool,
    /// Every sync waits until this gate opens (a slow disk).
    pub sync_gate: Option<std::sync::Arc<Gate>>,
    /// The file's space, in order: blocks reserved ahead, given back, and
    /// the final fsync.
    pub space_ops: Vec<SpaceOp>,
}

/// What a writer did to its file's space (see `Probe::space_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceOp {
    /// Reserved up to `to` bytes past the audio's start.
    Reserve {
        to: u64,
    },
    Trim,
    SyncAll,
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
    /// Cuts a write of `n` bytes short, or fails it.
    fn limit(&mut self, n: &mut usize, direct: bool) -> std::io::Result<()> {
        if direct && self.refuse_direct {
            return Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        if let Some(left) = self.space.as_mut() {
            // An O_DIRECT write ends on a block, as the kernel's do.
            let room = if direct { *left as usize / super::ALIGN * super::ALIGN } else { *left as usize };
            if room == 0 {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
            }
            *n = (*n).min(room);
            *left -= *n as u64;
        }
        Ok(())
    }
}

/// A [`FileIo`] that records what passes through it into a [`Probe`] (and
/// injects what the probe says) before the real file does it.
pub struct Probed {
    inner: Box<dyn FileIo>,
    probe: Arc<Mutex<Probe>>,
    /// Where the audio starts (a new whole header may move it).
    data_at: u64,
    /// Audio bytes in the file, and the end of what follows them, both
    /// from the audio's start.
    audio_end: u64,
    tail_end: u64,
}

impl Probed {
    /// Wraps the file of a writer whose audio starts at `data_at` and has
    /// none yet (see `WavWriter::wrap_io`).
    pub fn wrap(probe: &Arc<Mutex<Probe>>, data_at: u64) -> impl FnOnce(Box<dyn FileIo>) -> Box<dyn FileIo> {
        let probe = probe.clone();
        move |inner| Box::new(Probed { inner, probe, data_at, audio_end: 0, tail_end: 0 })
    }

    fn log(&self, op: Op) {
        self.probe.lock().unwrap().ops.push(op);
    }
}

impl FileIo for Probed {
    fn write_audio(&mut self, bytes: &[u8], at: u64, direct: bool) -> std::io::Result<usize> {
        let mut n = bytes.len();
        self.probe.lock().unwrap().limit(&mut n, direct)?;
        let r = self.inner.write_audio(&bytes[..n], at, direct);
        if let Ok(k) = r {
            self.audio_end = self.audio_end.max(at + k as u64 - self.data_at);
            self.log(Op::Data { end: self.audio_end });
        }
        r
    }

    fn write_header(&mut self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        if at == 0 {
            self.data_at = bytes.len() as u64;
        }
        self.inner.write_header(bytes, at)
    }

    fn write_sizes(
        &mut self,
        data_at: u64,
        data: u64,
        frame_bytes: u64,
        after: u64,
    ) -> std::io::Result<bool> {
        self.log(Op::Sizes { data, after });
        self.inner.write_sizes(data_at, data, frame_bytes, after)
    }

    fn write_pad(&mut self, at: u64) -> std::io::Result<()> {
        self.tail_end = self.tail_end.max(at + 1 - self.data_at);
        self.inner.write_pad(at)
    }

    fn write_trailer(&mut self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        self.inner.write_trailer(bytes, at)?;
        self.tail_end = self.tail_end.max(at + bytes.len() as u64 - self.data_at);
        self.log(Op::Trailer { end: self.tail_end });
        Ok(())
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        let mut p = self.probe.lock().unwrap();
        p.syncs += 1;
        let fail = p.fail_sync == Some(p.syncs);
        p.ops.push(Op::Sync { covered: self.audio_end.max(self.tail_end), ok: !fail });
        let gate = p.sync_gate.clone();
        drop(p);
        if let Some(gate) = gate {
            gate.wait();
        }
        if fail {
            return Err(std::io::Error::from_raw_os_error(nix::libc::EIO));
        }
        self.inner.sync_data()
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        self.probe.lock().unwrap().space_ops.push(SpaceOp::SyncAll);
        self.inner.sync_all()
    }

    fn reserve(&mut self, at: u64, len: u64) -> std::io::Result<()> {
        self.inner.reserve(at, len)?;
        let to = at + len - self.data_at;
        self.probe.lock().unwrap().space_ops.push(SpaceOp::Reserve { to });
        Ok(())
    }

    fn trim_reserve(&mut self) -> std::io::Result<()> {
        self.probe.lock().unwrap().space_ops.push(SpaceOp::Trim);
        self.inner.trim_reserve()
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)?;
        if len > self.data_at {
            self.audio_end = len - self.data_at;
        }
        Ok(())
    }

    fn links(&self) -> std::io::Result<u64> {
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
