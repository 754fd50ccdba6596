//! A growable byte buffer whose storage starts on a 4 KiB boundary, as
//! O_DIRECT writes require of the memory they read. Disk thread only.
//!
//! Written here rather than taken from a crate: `Vec<u8>` cannot promise
//! the alignment, and what the writer needs is small (append encoded
//! frames in place, write out a prefix, keep the tail).

use std::alloc::{self, Layout};
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::SampleFormat;
use crate::vocab::ChannelLevel;

/// The alignment of the storage, and the block size O_DIRECT writes use.
pub const ALIGN: usize = 4096;

pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: the buffer owns its allocation exclusively (like a `Vec<u8>`).
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes.
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        let mut b = AlignedBuf { ptr: NonNull::dangling(), len: 0, cap: 0 };
        b.grow_to(cap.max(ALIGN));
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialized (every way of
        // raising `len` writes them first) and lie inside the allocation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let spare = self.spare(bytes.len());
        for (d, &b) in spare.iter_mut().zip(bytes) {
            d.write(b);
        }
        // SAFETY: the loop wrote all `bytes.len()` bytes after `len`.
        unsafe { self.set_len(self.len + bytes.len()) };
    }

    /// Appends `n` zero bytes.
    pub fn extend_zeros(&mut self, n: usize) {
        self.spare(n).iter_mut().for_each(|b| {
            b.write(0);
        });
        // SAFETY: the loop zeroed the `n` bytes after `len`.
        unsafe { self.set_len(self.len + n) };
    }

    /// Appends `n` frames of `chans` encoded in `format`, each byte written
    /// once, in place (see [`SampleFormat::encode_frames`]), each channel's
    /// level added to `levels`.
    pub fn append_frames(
        &mut self,
        format: SampleFormat,
        chans: &[Option<&[f32]>],
        n: usize,
        levels: &mut [ChannelLevel],
    ) {
        let len = n * chans.len() * format.bytes();
        format.encode_frames(self.spare(len), chans, n, levels);
        // SAFETY: `encode_frames` writes every byte of the `len` bytes it is
        // given (or panics before returning).
        unsafe { self.set_len(self.len + len) };
    }

    /// Keeps only the bytes from `at` on, moved to the front.
    pub fn keep_from(&mut self, at: usize) {
        assert!(at <= self.len);
        let rest = self.len - at;
        // SAFETY: both ranges lie in the initialized part of the buffer;
        // `copy` allows them to overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(at), self.ptr.as_ptr(), rest) };
        self.len = rest;
    }

    /// The `n` bytes after the contents, uninitialized, growing if needed.
    fn spare(&mut self, n: usize) -> &mut [MaybeUninit<u8>] {
        if self.len + n > self.cap {
            self.grow_to((self.len + n).max(self.cap * 2));
        }
        // SAFETY: `len + n <= cap`, inside the allocation; the bytes are
        // handed out as `MaybeUninit`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len).cast(), n) }
    }

    /// # Safety
    /// The bytes up to `len` must be initialized, and `len <= cap`.
    unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.cap);
        self.len = len;
    }

    fn grow_to(&mut self, cap: usize) {
        let cap = cap.next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(cap, ALIGN).expect("buffer size");
        // SAFETY: `layout` has a non-zero size (at least ALIGN).
        let new = unsafe { alloc::alloc(layout) };
        let Some(new) = NonNull::new(new) else { alloc::handle_alloc_error(layout) };
        if self.cap > 0 {
            // SAFETY: the old storage holds `len` initialized bytes and the
            // new one has room for them; the two allocations are distinct.
            // The old one was allocated with this layout for its `cap`.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len);
                alloc::dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, ALIGN));
            }
        }
        self.ptr = new;
        self.cap = cap;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `grow_to` with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, ALIGN)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_aligned_through_growth_and_keeps_its_tail() {
        let mut b = AlignedBuf::with_capacity(10);
        assert_eq!(b.ptr.as_ptr() as usize % ALIGN, 0);
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        b.extend_from_slice(&bytes[..3000]);
        b.extend_from_slice(&bytes[3000..]);
        assert_eq!(b.ptr.as_ptr() as usize % ALIGN, 0, "after growing");
        assert_eq!(b.as_slice(), &bytes[..]);
        b.extend_zeros(3);
        assert_eq!(b.as_slice()[9_999..], [bytes[9_999], 0, 0, 0]);
        b.keep_from(10_003);
        b.extend_from_slice(&bytes);
        b.keep_from(8192);
        assert_eq!(b.as_slice(), &bytes[8192..]);
        b.append_frames(SampleFormat::S16, &[Some(&[0.5]), None], 1, &mut [ChannelLevel::default(); 2]);
        assert_eq!(&b.as_slice()[1808..], &[0, 0x40, 0, 0]);
        assert_eq!(b.ptr.as_ptr() as usize % ALIGN, 0);
    }
}
