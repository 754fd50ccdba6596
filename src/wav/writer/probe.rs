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

/// What a write may be told by the probe.
pub trait Injects {
    /// Cuts a write of `n` bytes short, or fails it.
    fn limit(&mut self, n: &mut usize, direct: bool) -> std::io::Result<()>;
}

impl Injects for Probe {
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
