//! The lock-free hand-over between the real-time callback and the disk thread.
//!
//! One SPSC ring of `f32` per port, plus one "cycle log" ring that carries a
//! [`CycleRecord`] per JACK cycle. The disk thread reads the cycle log to know
//! how many frames to take from every port ring and where JACK's timeline
//! jumped, which is what keeps all channels sample-aligned.

use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use ringbuf::storage::Storage;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{CachingCons, CachingProd, HeapCons, HeapProd, HeapRb, SharedRb};

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

/// The callback's end of the port rings. A cycle goes into every ring or
/// into none ([`PortWriter::push_cycle`]), and the reader gives frames back
/// to every ring at once, in port order ([`PortReader::release`]): so every
/// ring holds the same frames, and the last ring has the least room. Both
/// invariants are held here, by these two types alone (their rings are
/// private), and the callback's unchecked copy relies on nothing else.
pub struct PortWriter {
    rings: Vec<PortProd>,
    /// Room after the last push (see [`PortWriter::room_left`]).
    room_left: usize,
}

/// The disk thread's end of the port rings: frames are read in place and
/// released on every port at once.
pub struct PortReader {
    rings: Vec<PortCons>,
}

/// One port's ring, in its part of the [`Region`].
type PortRb = SharedRb<Slab>;
type PortProd = CachingProd<Arc<PortRb>>;
type PortCons = CachingCons<Arc<PortRb>>;

/// The memory of every port's ring, in one anonymous mapping: no ring
/// pays a page of the allocator's rounding (4 MiB at 1024 ports), and each
/// ring starts on a cache line (measured against a ring per allocation:
/// the same CPU within this machine's noise, docs/benchmarks.md). Transparent huge
/// pages are refused for it: advised for them, a 10 s take at 256 inputs
/// cost 0.25 s more system time (the kernel compacting memory for them)
/// and saved less in user time. Its pages are mapped by
/// [`CaptureRings::prefault`].
struct Region {
    /// The whole mapping (unmapped on drop).
    map: NonNull<std::ffi::c_void>,
    map_len: usize,
}

// SAFETY: the region is plain memory that nothing else maps; which thread
// may touch which part of it is decided by the rings over it (one
// producer and one consumer each).
unsafe impl Send for Region {}
// SAFETY: as for Send: `Region` itself is never written through `&self`.
unsafe impl Sync for Region {}

/// Each ring starts on a cache line.
const LINE_FLOATS: usize = 16;

impl Region {
    /// Maps room for `floats` f32s. Not real-time safe.
    fn map(floats: usize) -> std::io::Result<Region> {
        use nix::sys::mman::{madvise, mmap_anonymous, MapFlags, MmapAdvise, ProtFlags};
        let map_len = floats.max(1) * std::mem::size_of::<f32>();
        let len = std::num::NonZeroUsize::new(map_len).expect("not zero");
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses: it aliases nothing.
        let map = unsafe { mmap_anonymous(None, len, prot, MapFlags::MAP_PRIVATE) }?;
        // SAFETY: the whole mapping, just made; advice changes no content.
        // Failing only leaves the system's default.
        let _ = unsafe { madvise(map, map_len, MmapAdvise::MADV_NOHUGEPAGE) };
        Ok(Region { map, map_len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and every ring over it holds an
        // `Arc` of this region, so none is left when it drops.
        let _ = unsafe { nix::sys::mman::munmap(self.map, self.map_len) };
    }
}

/// A ring's part of the [`Region`]: `len` floats from `ptr`, which no other
/// slab overlaps. Holds the region alive.
struct Slab {
    _region: Arc<Region>,
    ptr: *mut MaybeUninit<f32>,
    len: usize,
}

// SAFETY: as for `Region`: the ring over the slab decides who touches it.
unsafe impl Send for Slab {}
// SAFETY: as for Send.
unsafe impl Sync for Slab {}

// SAFETY: the slab's items are contiguous (`ptr..ptr + len`, inside the
// region, disjoint from every other slab), do not alias the `Slab` value
// itself, and `len` never changes.
unsafe impl Storage for Slab {
    type Item = f32;
    fn len(&self) -> usize {
        self.len
    }
    fn as_mut_ptr(&self) -> *mut MaybeUninit<f32> {
        self.ptr
    }
}

/// What [`PortWriter::push_cycle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The cycle is in every ring.
    Whole,
    /// It is in every ring, but a port's buffer was shorter than the cycle
    /// (never seen from JACK): the rest of that port is silence, and the
    /// cycle must not pass for audio.
    Short,
    /// Some ring lacked room: the cycle is in none of them.
    NoRoom,
}

/// The callback's ends.
pub struct CaptureRings {
    pub ports: PortWriter,
    pub cycles: HeapProd<CycleRecord>,
}

/// The disk thread's ends.
pub struct DiskRings {
    pub ports: PortReader,
    pub cycles: HeapCons<CycleRecord>,
}

/// `ports` rings of `frames` each, as a writer and a reader; fails where
/// the system has not the memory. Not real-time safe (maps memory).
pub fn port_rings(ports: usize, frames: usize) -> std::io::Result<(PortWriter, PortReader)> {
    let stride = frames.next_multiple_of(LINE_FLOATS);
    let region = Arc::new(Region::map(ports * stride)?);
    let (w, r) = (0..ports)
        .map(|i| {
            // SAFETY: slab `i` is `stride * i .. stride * i + frames`, inside
            // the region's `ports * stride` floats, disjoint from the others.
            let ptr = unsafe { region.map.cast::<MaybeUninit<f32>>().as_ptr().add(i * stride) };
            let slab = Slab { _region: region.clone(), ptr, len: frames };
            // SAFETY: read == write == 0: the ring is empty, and no item of
            // the storage needs to be initialized.
            unsafe { PortRb::from_raw_parts(slab, 0, 0) }.split()
        })
        .unzip();
    Ok((PortWriter { rings: w, room_left: 0 }, PortReader { rings: r }))
}

/// Allocates the rings: `frames` of audio per port and room for the records
/// of that many frames at the smallest JACK period (16 frames). Their pages
/// are not mapped yet: [`CaptureRings::prefault`] them before the callback
/// runs (the engine then locks them).
///
/// Not real-time safe (allocates); call before activating the client.
pub fn allocate(ports: usize, frames: usize) -> std::io::Result<(CaptureRings, DiskRings)> {
    let frames = frames.max(8192);
    let (wp, rp) = port_rings(ports, frames)?;
    let (cp, cc) = HeapRb::<CycleRecord>::new(frames / 16 + 64).split();
    Ok((CaptureRings { ports: wp, cycles: cp }, DiskRings { ports: rp, cycles: cc }))
}

impl PortWriter {
    /// Frames every ring had room for after the last [`Self::push_cycle`]
    /// (no read of the other side's index). Real-time safe.
    pub fn room_left(&self) -> usize {
        self.room_left
    }

    /// Frames every ring has room for: the last ring's room, the smallest
    /// (see the type's invariants). One read of the reader's index per
    /// cycle. Real-time safe.
    pub fn room(&self) -> usize {
        self.rings.last().map_or(usize::MAX, |r| r.vacant_len())
    }

    /// Pushes one cycle of `n` frames, `buffer(i)` being port `i`'s buffer,
    /// into every ring, or nothing if there is no room. Real-time safe: no
    /// allocation, no lock, no syscall; each ring's write index is stored
    /// once, and the reader's index is read once for all of them.
    #[inline]
    pub fn push_cycle<'a>(&mut self, n: usize, buffer: impl Fn(usize) -> &'a [f32]) -> Pushed {
        let room = self.room();
        if room < n {
            self.room_left = room;
            return Pushed::NoRoom;
        }
        self.room_left = room - n;
        let mut pushed = Pushed::Whole;
        for (i, ring) in self.rings.iter_mut().enumerate() {
            let buf = buffer(i);
            let got = &buf[..n.min(buf.len())];
            // SAFETY: every ring has room for `n >= got.len()` frames: the
            // last ring has the least room (a cycle goes into all rings,
            // and `PortReader::release` frees all of them at once, in port
            // order), and it had `n` above.
            unsafe { push_unread(ring, got) };
            if got.len() < n {
                ring.push_iter(std::iter::repeat_n(0.0, n - got.len()));
                pushed = Pushed::Short;
            }
        }
        pushed
    }

    pub fn len(&self) -> usize {
        self.rings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Frames in the rings, as the writer sees them (the same in every
    /// ring).
    pub fn occupied(&self) -> usize {
        self.rings.first().map_or(0, |r| r.occupied_len())
    }

    /// Writes every free slot once (the indices do not move), so that the
    /// pages are mapped now. Not real-time safe.
    fn prefault(&mut self) {
        for p in &mut self.rings {
            let (a, b) = p.vacant_slices_mut();
            a.iter_mut().chain(b).for_each(|s| {
                s.write(0.0);
            });
        }
    }
}

/// Copies `src` into `ring` and publishes it, like `push_slice`, but
/// without reading the reader's index: `push_slice` reads it for every
/// port, a cache line the disk thread has just written (it releases frames
/// every cycle).
///
/// # Safety
/// `ring` must have at least `src.len()` vacant slots.
#[inline]
unsafe fn push_unread(ring: &mut PortProd, src: &[f32]) {
    use ringbuf::traits::Raw;
    let n = src.len();
    let modulus = 2 * ring.capacity().get();
    // The producer's own index: kept in the producer, no atomic read.
    let w = ring.write_index();
    // SAFETY: the caller guarantees the `n` slots from `w` on are vacant,
    // so they belong to the producer (held here through `&mut`); the range
    // is at most the capacity. They are written in full before the write
    // index publishes them.
    unsafe {
        let (a, b) = ring.unsafe_slices_mut(w, (w + n) % modulus);
        let k = a.len().min(n);
        debug_assert_eq!(k + b.len().min(n - k), n);
        std::ptr::copy_nonoverlapping(src.as_ptr(), a.as_mut_ptr().cast::<f32>(), k);
        std::ptr::copy_nonoverlapping(src[k..].as_ptr(), b.as_mut_ptr().cast::<f32>(), n - k);
        ring.advance_write_index(n);
    }
}

impl PortReader {
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Frames each ring holds at most.
    pub fn capacity(&self) -> usize {
        self.rings.first().map_or(0, |r| r.capacity().get())
    }

    /// Frames waiting in the rings (the same in every ring).
    pub fn occupied(&self) -> usize {
        self.rings.first().map_or(0, |r| r.occupied_len())
    }

    /// Port `i`'s waiting frames, in place: one slice, or two where the
    /// ring wraps (at the same place in every ring).
    pub fn slices(&self, i: usize) -> (&[f32], &[f32]) {
        self.rings[i].as_slices()
    }

    /// Gives the oldest `n` frames back to the writer, on every ring, in
    /// port order (the writer checks the room of the last ring only).
    pub fn release(&mut self, n: usize) {
        for r in &mut self.rings {
            let got = r.skip(n);
            debug_assert_eq!(got, n, "port ring out of step with the others");
        }
    }
}

impl CaptureRings {
    /// Writes every free slot once (the indices do not move) so that the
    /// storage's pages are mapped now, not on the callback's first pass: a
    /// fresh heap allocation is mapped lazily, and a page fault per 4 KiB
    /// in the callback costs far more than the copy (measured: callback p99
    /// 805 µs at 64 ports × 1024 frames on a fresh ring, see
    /// docs/benchmarks.md). The engine's `mlockall(MCL_ONFAULT)` locks
    /// pages as they are touched, so it does not map them. Not real-time
    /// safe.
    pub fn prefault(&mut self) {
        self.ports.prefault();
        let (a, b) = self.cycles.vacant_slices_mut();
        a.iter_mut().chain(b).for_each(|s| {
            s.write(CycleRecord::default());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_start_empty_after_prefaulting() {
        let (mut cap, disk) = allocate(3, 10_000).unwrap();
        cap.prefault();
        assert_eq!(disk.ports.occupied(), 0);
        assert!(disk.cycles.is_empty());
        assert_eq!(cap.ports.room(), 10_000);
        assert_eq!(cap.ports.push_cycle(4, |_| &[1.0; 4]), Pushed::Whole);
        assert_eq!(disk.ports.occupied(), 4);
        // One mapping, each ring on a cache line of its own, in port order.
        let starts: Vec<usize> = (0..3).map(|i| disk.ports.slices(i).0.as_ptr() as usize).collect();
        assert!(starts.iter().all(|p| p % 64 == 0), "{starts:x?}");
        assert!(
            starts.windows(2).all(|w| w[1] - w[0] == 10_000usize.next_multiple_of(16) * 4),
            "{starts:x?}"
        );
    }

    /// A cycle goes into every ring or none; short buffers are padded and
    /// said; releasing frees every ring, so the room stays the same on all.
    #[test]
    fn cycles_go_into_every_ring_or_none() {
        let (mut w, mut r) = port_rings(3, 10).unwrap();
        let bufs = [[1.0f32; 6], [2.0; 6], [3.0; 6]];
        assert_eq!(w.push_cycle(6, |i| &bufs[i]), Pushed::Whole);
        assert_eq!(w.push_cycle(6, |i| &bufs[i]), Pushed::NoRoom);
        assert_eq!(r.occupied(), 6);
        r.release(4);
        assert_eq!(w.push_cycle(6, |i| &bufs[i][..if i == 1 { 2 } else { 6 }]), Pushed::Short);
        assert_eq!(r.occupied(), 8);
        for i in 0..3 {
            let (a, b) = r.slices(i);
            let all: Vec<f32> = a.iter().chain(b).copied().collect();
            let v = (i + 1) as f32;
            let second = if i == 1 { vec![v, v, 0.0, 0.0, 0.0, 0.0] } else { vec![v; 6] };
            assert_eq!(all, [vec![v; 2], second].concat(), "port {i}");
        }
    }
}
