//! The disk thread against the timeline faults measured on real servers, fed
//! through the real capture core (no JACK): every frame of every file must sit
//! at its own frame time, and every silent run must be a reported gap.

use std::sync::mpsc::Receiver;

use chrono::Local;

use super::*;
use crate::rt::Capture;
use crate::vocab::Layout;
use crate::wav::SampleFormat;

fn signal(t: u64, c: usize) -> f32 {
    capstan_testbed::sample(t, c)
}

struct Bed {
    w: DiskWriter,
    capture: Capture,
    events: Receiver<DiskEvent>,
    dir: tempfile::TempDir,
}

/// A writer with `history` frames of history (and half of it as write delay).
fn bed(history: usize) -> Bed {
    let (w, capture, events, dir) = super::tests::writer(history);
    Bed { w, capture, events, dir }
}

impl Bed {
    fn start(&mut self) {
        let spec = TakeSpec::for_test(self.dir.path(), 2, Layout::Interleaved, SampleFormat::F32);
        self.w.begin(Take::create(spec, Local::now()).unwrap(), StartAt::Next, 0);
    }

    /// One cycle of the signal at frame time `t`, as JACK delivered it.
    fn cycle(&mut self, t: u32, n: u32, rate: u32) {
        self.cycle_read_until(t, n, rate, t);
    }

    /// `count` cycles of `n` frames from frame time `t`, in order; the
    /// frame time after them.
    fn cycles(&mut self, mut t: u32, count: usize, n: u32, rate: u32) -> u32 {
        for _ in 0..count {
            self.cycle(t, n, rate);
            t += n;
        }
        t
    }

    /// A cycle during whose copy JACK's frame time became `now`.
    fn cycle_read_until(&mut self, t: u32, n: u32, rate: u32, now: u32) {
        self.cycle_holding(t, n, rate, now, t);
    }

    /// A cycle at frame time `t` whose buffers hold the audio of frame time
    /// `audio` (a stale read), and during whose copy the frame time became
    /// `now`.
    fn cycle_holding(&mut self, t: u32, n: u32, rate: u32, now: u32, audio: u32) {
        let b: Vec<Vec<f32>> =
            (0..2).map(|c| (0..n).map(|i| signal(audio as u64 + i as u64, c)).collect()).collect();
        self.capture.process_cycle(t, n, rate, Default::default(), |i| &b[i], || now);
        self.w.drain_cycles();
    }

    fn stop(&mut self) -> TakeReport {
        self.w.end_drained();
        super::tests::finished(&self.events)
    }
}

/// Frame `i` of `path` is the signal at `first + i`, or silence exactly
/// where `gaps` say.
fn assert_position_exact(path: &std::path::Path, first: u64, frames: u64, gaps: &[Gap]) {
    let info = crate::wav::read_info(path).unwrap();
    assert_eq!(info.frames(), frames, "{}", path.display());
    assert_eq!(info.ixml.as_deref().and_then(crate::wav::jack_frame_time), Some(first));
    // The bext holds the time of day: samples since midnight.
    assert!(info.bext.unwrap().time_reference < 86_400 * info.spec.sample_rate as u64 + 1);
    let s: Vec<f32> = hound::WavReader::open(path).unwrap().samples::<f32>().map(|x| x.unwrap()).collect();
    for i in 0..frames {
        let in_gap = gaps.iter().any(|g| (g.at..g.at + g.frames).contains(&i));
        for c in 0..2 {
            let want = if in_gap { 0.0 } else { signal(first + i, c) };
            assert_eq!(s[(i * 2) as usize + c], want, "{}: frame {i} ch {c}", path.display());
        }
    }
}

/// JACK2 asynchronous mode after a cycle overran: the next run reads the
/// following cycle's frame time (one cycle never delivered), the run after
/// it the same frame time again with the same audio. The first run is
/// uncertain, and a repeat of the same buffer cannot tell whether that
/// buffer was new (here) or old (PipeWire, see the test below): the cycle
/// stays a reported gap.
#[test]
fn an_overrun_is_a_reported_gap_and_the_repeat_written_once() {
    let mut b = bed(0);
    b.start();
    for t in [0u32, 1024, 3072, 3072, 4096, 5120] {
        b.cycle(t, 1024, 48000);
    }
    let r = b.stop();
    assert_eq!(r.first_frame_time, Some(0));
    assert_eq!(r.frames, 6144);
    assert_eq!(
        r.gaps,
        vec![
            Gap { at: 2048, frames: 1024, cause: GapCause::JackSkipped },
            Gap { at: 3072, frames: 1024, cause: GapCause::LateUncertain }
        ]
    );
    assert_eq!(r.repeated_frames, 1024);
    assert_position_exact(&r.files[0].path, 0, 6144, &r.gaps);
    let m = crate::manifest::Manifest::load(&crate::manifest::Manifest::path(b.dir.path(), &r.name)).unwrap();
    assert_eq!((m.repeated_frames, m.gaps.clone()), (1024, r.gaps.clone()));
}

/// JACK2 asynchronous mode let the next cycle begin while a late callback
/// was still copying (upstream may already be writing its buffers: measured,
/// 256 channels at period 1024, channels 175-255 held audio 2048 frames
/// later than channels 0-174). That cycle is a reported gap, never audio.
#[test]
fn a_cycle_overtaken_while_copied_is_a_torn_gap() {
    let mut b = bed(0);
    b.start();
    b.cycle(0, 1024, 48000);
    b.cycle_read_until(1024, 1024, 48000, 2048);
    b.cycle(3072, 1024, 48000);
    b.cycle(4096, 1024, 48000);
    let r = b.stop();
    assert_eq!(
        r.gaps,
        vec![
            Gap { at: 1024, frames: 1024, cause: GapCause::Torn },
            Gap { at: 2048, frames: 1024, cause: GapCause::JackSkipped },
            Gap { at: 3072, frames: 1024, cause: GapCause::LateUncertain }
        ]
    );
    assert_position_exact(&r.files[0].path, 0, 5120, &r.gaps);
}

/// Measured on jackd2 asynchronous at period 128 after a 1-period stall:
/// the first run after it read frame time t while the upstream's buffers
/// still held t - 128 (a wake-up left over from before the stall); the run
/// after it repeated t with t's audio. The later, clean copy wins; nothing
/// stale is written.
#[test]
fn a_stale_first_copy_is_replaced_by_its_repeat() {
    for history in [0, 48_000] {
        let mut b = bed(history);
        b.start();
        b.cycle(0, 128, 48000);
        b.cycle(128, 128, 48000);
        b.cycle_holding(384, 128, 48000, 384, 256); // stale: 256's audio at 384
        b.cycle(384, 128, 48000); // the repeat, with 384's audio
        b.cycle(512, 128, 48000);
        let r = b.stop();
        assert_eq!(r.gaps, vec![Gap { at: 256, frames: 128, cause: GapCause::JackSkipped }]);
        assert_eq!(r.repeated_frames, 128);
        assert_position_exact(&r.files[0].path, 0, 640, &r.gaps);
    }
}

/// An overtaken (torn) first copy followed by a clean repeat: the repeat
/// fills what would have been a gap.
#[test]
fn a_clean_repeat_fills_a_torn_gap() {
    let mut b = bed(0);
    b.start();
    b.cycle(0, 1024, 48000);
    b.cycle_read_until(1024, 1024, 48000, 2048);
    b.cycle(1024, 1024, 48000);
    b.cycle(2048, 1024, 48000);
    let r = b.stop();
    assert_eq!(r.gaps, vec![]);
    assert_position_exact(&r.files[0].path, 0, 3072, &r.gaps);
}

/// A stall of 1, 2, 3, 5 and 50 periods: each a gap of exactly its length,
/// and the cycles after it at their own frame times (no lingering offset).
#[test]
fn stalls_of_any_length_are_exact_gaps() {
    let mut b = bed(48_000);
    b.start();
    let mut t = 7u32;
    let mut want = Vec::new();
    let first = t as u64;
    for skip in [1u32, 2, 3, 5, 50] {
        t = b.cycles(t, 10, 128, 48000);
        want.push(Gap { at: (t as u64) - first, frames: skip as u64 * 128, cause: GapCause::JackSkipped });
        t += skip * 128;
        // The first cycle after the stall is uncertain (no repeat follows).
        want.push(Gap { at: (t as u64) - first, frames: 128, cause: GapCause::LateUncertain });
    }
    b.cycle(t, 128, 48000);
    let r = b.stop();
    assert_eq!(r.gaps, want);
    assert_eq!(r.frames, (t as u64 + 128) - first);
    assert_position_exact(&r.files[0].path, first, r.frames, &r.gaps);
}

/// A jump far longer than the history (1 s and 60 s, with a history of
/// about 0.5 s): silence of exactly that length, none of the audio before it
/// lost, and the long one written sparse.
#[test]
fn a_jump_longer_than_the_history_is_never_cut_short() {
    for jump in [48_000u32, 60 * 48_000] {
        let mut b = bed(8_000);
        b.start();
        let mut t = 1000u32;
        t = b.cycles(t, 100, 256, 48000);
        let before = t as u64 - 1000;
        t += jump;
        b.cycles(t, 100, 256, 48000);
        let r = b.stop();
        let gaps = vec![
            Gap { at: before, frames: jump as u64, cause: GapCause::JackSkipped },
            Gap { at: before + jump as u64, frames: 256, cause: GapCause::LateUncertain },
        ];
        assert_eq!(r.gaps, gaps);
        assert_eq!(r.frames, before + jump as u64 + 25_600);
        assert_position_exact(&r.files[0].path, 1000, r.frames, &r.gaps);
        if jump > 48_000 {
            let m = std::fs::metadata(&r.files[0].path).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert!(m.blocks() * 512 < m.len() / 4, "a 60 s gap is written sparse: {m:?}");
        }
    }
}

/// PipeWire changed the rate mid-take (skipping one cycle at the change):
/// the take goes on in a second file set at the new rate; no header claims
/// a rate its audio does not have, and both segments are position-exact.
#[test]
fn a_rate_change_continues_the_take_in_a_new_segment() {
    let mut b = bed(4_800);
    b.start();
    let mut t = 0u32;
    t = b.cycles(t, 40, 1024, 48000);
    let end1 = t as u64;
    t += 1024; // the cycle PipeWire skips at the change
    t = b.cycles(t, 30, 1024, 44100);
    let r = b.stop();
    assert_eq!(r.segments.len(), 2, "{r:?}");
    let (s1, s2) = (&r.segments[0], &r.segments[1]);
    assert_eq!((s1.sample_rate, s1.frames, s1.first_frame_time), (48000, end1, Some(0)));
    assert_eq!((s2.sample_rate, s2.first_frame_time), (44100, Some(end1)));
    let uncertain = Gap { at: 1024, frames: 1024, cause: GapCause::LateUncertain };
    assert_eq!(s2.gaps, vec![Gap { at: 0, frames: 1024, cause: GapCause::JackSkipped }, uncertain]);
    assert_eq!(s2.frames, t as u64 - end1);
    assert_eq!(r.frames, s1.frames + s2.frames);
    assert_eq!(
        r.gaps,
        vec![
            Gap { at: end1, frames: 1024, cause: GapCause::JackSkipped },
            Gap { at: end1 + 1024, ..uncertain }
        ]
    );
    let info1 = crate::wav::read_info(&s1.files[0].path).unwrap();
    let info2 = crate::wav::read_info(&s2.files[0].path).unwrap();
    assert_eq!((info1.spec.sample_rate, info2.spec.sample_rate), (48000, 44100));
    assert_position_exact(&s1.files[0].path, 0, s1.frames, &s1.gaps);
    assert_position_exact(&s2.files[0].path, end1, s2.frames, &s2.gaps);
    // The manifests link the segments under one take id.
    let m1 =
        crate::manifest::Manifest::load(&crate::manifest::Manifest::path(b.dir.path(), &s1.name)).unwrap();
    let m2 =
        crate::manifest::Manifest::load(&crate::manifest::Manifest::path(b.dir.path(), &s2.name)).unwrap();
    assert_eq!(m1.take_id, m2.take_id);
    assert_eq!(m1.continued_in.as_deref(), Some(s2.name.as_str()));
    assert_eq!(m2.continues.as_ref().unwrap().segment, s1.name);
    assert!(m2.continues.as_ref().unwrap().reason.contains("48000 to 44100"));
    assert_eq!((m1.sample_rate, m2.sample_rate), (48000, 44100));
}

/// The rate changed between preparing a take and its first frame: the
/// files are relabelled before any audio goes in.
#[test]
fn a_take_prepared_at_the_old_rate_is_written_at_the_new_one() {
    let mut b = bed(0);
    b.cycle(0, 256, 48000);
    b.cycle(256, 256, 96000);
    b.start();
    b.cycle(512, 256, 96000);
    let r = b.stop();
    assert_eq!(r.sample_rate, 96000);
    assert!(r.segments.is_empty());
    let info = crate::wav::read_info(&r.files[0].path).unwrap();
    assert_eq!(info.spec.sample_rate, 96000);
    assert!(info.bext.unwrap().coding_history.contains("F=96000,"));
    assert_position_exact(&r.files[0].path, 512, 256, &[]);
}

/// Issue 23, F1 (jackd2 asynchronous, under load, about 1 take in 130 of the
/// stress run): after a stall, the first run comes from a wake-up left over
/// from a cycle it missed. It reads the newest frame time, but the upstream
/// may not have written that cycle yet: its buffers hold the audio of an
/// earlier cycle (seen: 1, 3 and 27 periods earlier), and no repeat follows.
/// Which cycle those buffers hold cannot be known, so the cycle is a
/// reported gap of its own cause, never audio at a guessed position.
#[test]
fn a_stale_copy_after_a_skip_without_a_repeat_is_never_written() {
    for (history, shift) in [(0, 1u32), (48_000, 1), (0, 3), (48_000, 27)] {
        let mut b = bed(history);
        b.start();
        let mut t = 128 * 30;
        t = b.cycles(t, 4, 128, 48000);
        let skipped_at = t;
        t += 128; // one cycle never delivered
        b.cycle_holding(t, 128, 48000, t, t - shift * 128); // stale
        t += 128;
        b.cycles(t, 4, 128, 48000);
        let r = b.stop();
        let at = (skipped_at - 128 * 30) as u64;
        assert_eq!(
            r.gaps,
            vec![
                Gap { at, frames: 128, cause: GapCause::JackSkipped },
                Gap { at: at + 128, frames: 128, cause: GapCause::LateUncertain },
            ],
            "history {history}, shift {shift}"
        );
        assert_eq!(r.frames, 10 * 128);
        assert_position_exact(&r.files[0].path, 128 * 30, r.frames, &r.gaps);
    }
}

/// Issue 23, F2 (found by the stress bed on PipeWire): the rate changed
/// while capstan was stopped, so the new segment opens with a long skip and
/// an uncertain cycle; the clean cycles after it are written, and every
/// silent frame is a reported gap.
#[test]
fn a_rate_change_inside_a_long_skip_keeps_the_cycles_after_it() {
    for history in [0, 9_600, 19_200] {
        let mut b = bed(history);
        b.start();
        let mut t = 6_249_856u32;
        t = b.cycles(t, 40, 128, 44100);
        let end1 = t as u64;
        t += 12_160;
        b.cycles(t, 40, 128, 96000);
        let r = b.stop();
        assert_eq!(r.segments.len(), 2, "{r:?}");
        let s2 = &r.segments[1];
        assert_eq!(
            s2.gaps,
            vec![
                Gap { at: 0, frames: 12_160, cause: GapCause::JackSkipped },
                Gap { at: 12_160, frames: 128, cause: GapCause::LateUncertain }
            ],
            "history {history}"
        );
        assert_position_exact(&s2.files[0].path, end1, s2.frames, &s2.gaps);
    }
}

/// Issue 23, measured on PipeWire by the stress bed after the source was
/// stopped: the first run after the skip and its repeat both held the
/// source's old audio. The repeat is the same buffer again, so it replaces
/// nothing and the cycle stays a reported gap; the window closes at the
/// first cycle with new audio, after which a signal that repeats exactly
/// every cycle is recorded as it is.
#[test]
fn a_repeat_holding_the_same_old_buffer_replaces_nothing() {
    for history in [0, 48_000] {
        let mut b = bed(history);
        b.start();
        let mut t = 1280u32;
        t = b.cycles(t, 4, 128, 48000);
        let skipped_at = t;
        t += 6528;
        let old = skipped_at - 128; // the last cycle the source wrote
        b.cycle_holding(t, 128, 48000, t, old);
        b.cycle_holding(t, 128, 48000, t, old); // the repeat, the same buffer
        t += 128;
        // Then a cycle holding the same old buffer once more, before the
        // upstream catches up.
        b.cycle_holding(t, 128, 48000, t, old);
        t += 128;
        b.cycles(t, 4, 128, 48000);
        let r = b.stop();
        let at = (skipped_at - 1280) as u64;
        assert_eq!(
            r.gaps,
            vec![
                Gap { at, frames: 6528, cause: GapCause::JackSkipped },
                Gap { at: at + 6528, frames: 256, cause: GapCause::StaleBuffer },
            ],
            "history {history}"
        );
        assert_eq!(r.repeated_frames, 128);
        assert_position_exact(&r.files[0].path, 1280, r.frames, &r.gaps);
    }
}

/// A signal that repeats exactly every cycle (every buffer the same) is
/// recorded as it is; after a skip it cannot be told from a buffer the
/// upstream did not write again, so at most the window's 16 cycles become
/// a reported gap, and recording goes on after it.
#[test]
fn a_signal_repeating_every_cycle_loses_at_most_the_window_after_a_skip() {
    let mut b = bed(48_000);
    b.start();
    let mut t = 0u32;
    for _ in 0..4 {
        b.cycle_holding(t, 128, 48000, t, 777);
        t += 128;
    }
    t += 128;
    for _ in 0..20 {
        b.cycle_holding(t, 128, 48000, t, 777);
        t += 128;
    }
    let r = b.stop();
    assert_eq!(
        r.gaps,
        vec![
            Gap { at: 512, frames: 128, cause: GapCause::JackSkipped },
            Gap { at: 640, frames: 16 * 128, cause: GapCause::StaleBuffer },
        ]
    );
    assert_eq!(r.frames, 25 * 128);
}

/// Found by the stress bed on PipeWire (a CI run): a stop whose frame the
/// disk had not yet written when the rate changed. Writing up to the change
/// ended the take at its stop point, and opening the next segment then
/// found no take (the disk thread panicked; every later start went
/// unconfirmed). The take ends exactly at its stop, in one segment.
#[test]
fn a_rate_change_after_a_stop_point_ends_the_take_there() {
    let mut b = bed(4_800);
    b.start();
    let mut t = 0u32;
    t = b.cycles(t, 40, 1024, 48000);
    // Stopped at the end of the cycle before the newest (the write delay
    // keeps the take behind it).
    let stop = t - 1024;
    let a = b.w.active.as_mut().unwrap();
    assert!(a.cursor < stop as u64, "the take is behind its stop point");
    a.stop = Some(StopAt::Before(stop));
    t += 1024; // the cycle PipeWire skips at the change
    b.cycle(t, 1024, 44100);
    let r = super::tests::finished(&b.events);
    assert!(r.segments.is_empty(), "{r:?}");
    assert_eq!((r.sample_rate, r.frames, r.first_frame_time), (48000, stop as u64, Some(0)));
    assert_position_exact(&r.files[0].path, 0, r.frames, &r.gaps);
    assert!(b.w.active.is_none());
}

/// The take's disk filled (the space guard): it continues in the spill
/// directory at its very next frame, as a second segment. The two files
/// chain exactly on JACK's timeline, each frame in its place, and the
/// manifests link them.
#[test]
fn a_full_disk_spills_the_take_into_the_next_directory_at_its_next_frame() {
    let mut b = bed(4_800);
    let spill = tempfile::tempdir().unwrap();
    let mut spec = TakeSpec::for_test(b.dir.path(), 2, Layout::Interleaved, SampleFormat::F32);
    spec.spill = vec![spill.path().to_owned()];
    b.w.begin(Take::create(spec, Local::now()).unwrap(), StartAt::Next, 0);
    let mut t = 0u32;
    t = b.cycles(t, 40, 1024, 48000);
    b.w.spill("disk almost full".into()).unwrap();
    t = b.cycles(t, 30, 1024, 48000);
    let r = b.stop();
    assert_eq!(r.segments.len(), 2, "{r:?}");
    let (s1, s2) = (&r.segments[0], &r.segments[1]);
    assert_eq!(s1.files[0].path.parent(), Some(b.dir.path()));
    assert_eq!(s2.files[0].path.parent(), Some(spill.path()));
    assert_eq!(s2.first_frame_time, Some(s1.first_frame_time.unwrap() + s1.frames));
    assert_eq!(s1.frames + s2.frames, t as u64, "every frame, in one of the two");
    assert!(s1.gaps.is_empty() && s2.gaps.is_empty(), "{r:?}");
    assert_position_exact(&s1.files[0].path, 0, s1.frames, &[]);
    assert_position_exact(&s2.files[0].path, s1.frames, s2.frames, &[]);
    let m2 =
        crate::manifest::Manifest::load(&crate::manifest::Manifest::path(spill.path(), &s2.name)).unwrap();
    let why = &m2.continues.as_ref().unwrap().reason;
    assert!(why.contains("disk almost full") && why.contains("continues in"), "{why}");
}
