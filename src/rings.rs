//! The lock-free hand-over between the real-time callback and the disk thread.
//!
//! One SPSC ring of `f32` per port, plus one "cycle log" ring that carries a
//! [`CycleRecord`] per JACK cycle. The disk thread reads the cycle log to know
//! how many frames to take from every port ring and where JACK's timeline
//! jumped, which is what keeps all channels sample-aligned.

use ringbuf::traits::{Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// One JACK process cycle as the callback saw it. `Copy` and small: pushing it
/// is a memcpy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CycleRecord {
    /// JACK frame time of the first frame of the cycle (wraps at 2^32).
    pub frame_time: u32,
    /// Frames in the cycle.
    pub nframes: u32,
    /// The audio of this cycle is in the port rings. `false`: the rings were
    /// full (the disk could not keep up) and the cycle was dropped whole.
    pub queued: bool,
    /// Frames of cycles before this one whose records did not fit in the cycle
    /// log (dropped whole as well). Lets the disk thread name the cause of a
    /// frame-time jump.
    pub unlogged_before: u32,
    /// JACK's frame time had moved on by the time the callback finished
    /// copying: the next cycle began meanwhile (JACK2 asynchronous mode runs
    /// a late client while its upstream already writes the next cycle), so
    /// the buffers may mix two cycles. The audio is in the rings but must not
    /// be used.
    pub overtaken: bool,
    /// The sample rate JACK reported in this cycle (PipeWire can change it
    /// at any time; the disk thread then starts a new file segment).
    pub rate: u32,
    /// JACK's clock (µs) at the cycle's first frame, from JACK's own
    /// frame↔time mapping (0: unknown). Places takes on the wall clock.
    pub usecs: u64,
    /// JACK transport in this cycle (see [`Transport`]) and its frame at
    /// the cycle's first frame (for `--trigger transport`).
    pub transport: Transport,
    pub transport_frame: u32,
}

/// JACK transport's state in a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Stopped,
    Rolling,
    /// About to roll (JACK waits for slow-sync clients, e.g. after a
    /// relocation while rolling).
    Starting,
}

/// What the callback reads of JACK's clocks for a cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleClock {
    /// See [`CycleRecord::usecs`].
    pub usecs: u64,
    pub transport: Transport,
    pub transport_frame: u32,
}

/// The callback's ends.
pub struct CaptureRings {
    pub ports: Vec<HeapProd<f32>>,
    pub cycles: HeapProd<CycleRecord>,
}

/// The disk thread's ends.
pub struct DiskRings {
    pub ports: Vec<HeapCons<f32>>,
    pub cycles: HeapCons<CycleRecord>,
}

/// Allocates the rings: `frames` of audio per port and room for the records
/// of that many frames at the smallest JACK period (16 frames). Their pages
/// are not mapped yet: lock them (`mlockall`, which maps them) or
/// [`CaptureRings::prefault`] them before the callback runs.
///
/// Not real-time safe (allocates); call before activating the client.
pub fn allocate(ports: usize, frames: usize) -> (CaptureRings, DiskRings) {
    let frames = frames.max(8192);
    let (mut cap_ports, mut disk_ports) = (Vec::with_capacity(ports), Vec::with_capacity(ports));
    for _ in 0..ports {
        let (p, c) = HeapRb::<f32>::new(frames).split();
        cap_ports.push(p);
        disk_ports.push(c);
    }
    let (cp, cc) = HeapRb::<CycleRecord>::new(frames / 16 + 64).split();
    (CaptureRings { ports: cap_ports, cycles: cp }, DiskRings { ports: disk_ports, cycles: cc })
}

impl CaptureRings {
    /// Writes every free slot once (the indices do not move) so that the
    /// storage's pages are mapped now, not on the callback's first pass: a
    /// fresh heap allocation is mapped lazily, and a page fault per 4 KiB
    /// in the callback costs far more than the copy (measured: callback p99
    /// 805 µs at 64 ports × 1024 frames on a fresh ring, see
    /// docs/benchmarks.md). Not needed once `mlockall` succeeded (it maps
    /// every page). Not real-time safe.
    pub fn prefault(&mut self) {
        for p in &mut self.ports {
            let (a, b) = p.vacant_slices_mut();
            a.iter_mut().chain(b).for_each(|s| {
                s.write(0.0);
            });
        }
        let (a, b) = self.cycles.vacant_slices_mut();
        a.iter_mut().chain(b).for_each(|s| {
            s.write(CycleRecord::default());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::traits::Observer;

    #[test]
    fn rings_start_empty_after_prefaulting() {
        let (mut cap, disk) = allocate(3, 10_000);
        cap.prefault();
        assert!(disk.ports.iter().all(|c| c.is_empty()));
        assert!(disk.cycles.is_empty());
        assert_eq!(cap.ports[0].vacant_len(), 10_000);
        assert_eq!(cap.ports[0].push_slice(&[1.0; 4]), 4);
    }
}
