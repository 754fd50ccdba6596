//! The disk writer driven through the real capture core (no JACK).

use super::*;
use crate::rings;
use crate::rt::{Capture, CaptureCounters};
use crate::vocab::Layout;
use crate::wav::SampleFormat;
use std::sync::mpsc::channel;

fn spec(dir: &std::path::Path, channels: usize, max: Option<u64>) -> TakeSpec {
    TakeSpec { max_frames: max, ..TakeSpec::for_test(dir, channels, Layout::Interleaved, SampleFormat::F32) }
}

/// Feeds cycles through the real capture core and disk writer (no JACK):
/// a skipped cycle and an overflowed cycle both become silence of exactly
/// the right length, and the audio around them stays aligned.
#[test]
fn gaps_become_aligned_silence_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (cap, disk) = rings::allocate(2, ring_frames(8192, 0, 0, 4096)).unwrap();
    let counters = Arc::new(CaptureCounters::default());
    let mut capture = Capture::new(cap, counters.clone());
    let (ctx, crx) = channel();
    let (etx, erx) = channel();
    let w = DiskWriter::new(disk, crx, etx, Arc::new(DiskStats::default()), 0, 0, Arc::default(), None);
    let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    ctx.send(DiskCommand::Start { take: Box::new(take), start_at: StartAt::Next, preroll: 0 }).unwrap();
    drop(ctx);
    let signal = |t: u32, c: usize| (t % 100_000) as f32 + c as f32 * 0.5;
    let cycle = |t: u32, n: u32| -> Vec<Vec<f32>> {
        (0..2).map(|c| (0..n).map(|i| signal(t + i, c)).collect()).collect()
    };
    // 1000, 1064, [5 cycles skipped by JACK], 1448 (the first after a
    // skip: uncertain), 1512, then BIG frames that do not fit in the rings,
    // then one more cycle skipped, an uncertain one and a last one.
    const BIG: u32 = 24_400;
    let end = 1576 + BIG;
    for (t, n) in
        [(1000u32, 64u32), (1064, 64), (1448, 64), (1512, 64), (1576, BIG), (end + 64, 64), (end + 128, 64)]
    {
        let b = cycle(t, n);
        capture.process_cycle(t, n, 48000, Default::default(), |i| &b[i], || t);
    }
    assert_eq!(counters.overflow_frames.load(Relaxed), BIG as u64);
    w.run();
    let DiskEvent::Started { first_frame_time, .. } = erx.recv().unwrap() else { panic!() };
    assert_eq!(first_frame_time, 1000);
    let DiskEvent::Finished(rep) = erx.recv().unwrap() else { panic!() };
    let rep = *rep;
    let big = BIG as u64;
    assert_eq!(rep.frames, 768 + big);
    assert_eq!(
        rep.gaps,
        vec![
            Gap { at: 128, frames: 320, cause: GapCause::JackSkipped },
            Gap { at: 448, frames: 64, cause: GapCause::LateUncertain },
            Gap { at: 576, frames: big, cause: GapCause::DiskOverrun },
            Gap { at: 576 + big, frames: 64, cause: GapCause::JackSkipped },
            Gap { at: 640 + big, frames: 64, cause: GapCause::LateUncertain },
        ]
    );
    assert_eq!(rep.repeated_frames, 0);
    let mut r = hound::WavReader::open(&rep.files[0].path).unwrap();
    let s: Vec<f32> = r.samples::<f32>().map(|x| x.unwrap()).collect();
    for i in 0..rep.frames as usize {
        let in_gap = (128..512).contains(&i) || (576..704 + BIG as usize).contains(&i);
        for c in 0..2 {
            // Every frame at its own frame time.
            let t = 1000 + i as u32;
            let want = if in_gap { 0.0 } else { signal(t, c) };
            assert_eq!(s[i * 2 + c], want, "frame {i} ch {c}");
        }
    }
}

fn signal(t: u64, c: usize) -> f32 {
    (t % 100_000) as f32 + c as f32 * 0.5
}

/// Feeds `cycles` 64-frame cycles starting at frame time `t0`.
fn feed(capture: &mut Capture, t0: u32, cycles: u32) {
    for k in 0..cycles {
        let t = t0 + k * 64;
        let b: Vec<Vec<f32>> = (0..2).map(|c| (0..64).map(|i| signal((t + i) as u64, c)).collect()).collect();
        capture.process_cycle(t, 64, 48000, Default::default(), |i| &b[i], || t);
    }
}

fn samples(path: &std::path::Path) -> Vec<f32> {
    hound::WavReader::open(path).unwrap().samples::<f32>().map(|x| x.unwrap()).collect()
}

fn assert_signal(s: &[f32], first: u64) {
    for (i, f) in s.chunks(2).enumerate() {
        for (c, x) in f.iter().enumerate() {
            assert_eq!(*x, signal(first + i as u64, c), "frame {i} ch {c}");
        }
    }
}

/// A disk writer fed by a capture core (2 channels, no JACK) with
/// `history` frames of history and half of that as write delay.
pub(super) fn writer(history: usize) -> (DiskWriter, Capture, Receiver<DiskEvent>, tempfile::TempDir) {
    let (cap, disk) = rings::allocate(2, ring_frames(65536, history, history / 2, 4096)).unwrap();
    let (_ctx, crx) = channel();
    let (etx, erx) = channel();
    let w = DiskWriter::new(
        disk,
        crx,
        etx,
        Arc::new(DiskStats::default()),
        history,
        history / 2,
        Arc::default(),
        None,
    );
    (w, Capture::new(cap, Arc::new(CaptureCounters::default())), erx, tempfile::tempdir().unwrap())
}

fn stop_drained(w: &mut DiskWriter) {
    w.end_drained();
}

/// Every WAV file of `take` reports to (and obeys) `probe`.
fn probe_take(take: &mut Take, probe: crate::wav::writer::probe::Probe) {
    let p = Arc::new(std::sync::Mutex::new(probe));
    for w in take.wav_writers() {
        let data_at = w.data_at();
        w.wrap_io(crate::wav::writer::probe::Probed::wrap(&p, data_at));
    }
}

/// The next finished take (finalized on the finalizer thread).
pub(super) fn finished(erx: &Receiver<DiskEvent>) -> TakeReport {
    loop {
        let ev = erx.recv_timeout(Duration::from_secs(10)).expect("a finished take");
        if let DiskEvent::Finished(r) = ev {
            return *r;
        }
    }
}

/// A take started late reaches back into the history: pre-roll from
/// exactly `preroll` frames before the start boundary, gap-free.
#[test]
fn preroll_reaches_back_exactly_and_gap_free() {
    let (mut w, mut capture, erx, dir) = writer(48_000);
    feed(&mut capture, 1000, 20);
    w.drain_cycles();
    let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    // Start "now" = 1000 + 20*64 (next cycle), 5 cycles of pre-roll.
    w.begin(take, StartAt::Frame(1000 + 20 * 64 + 10), 5 * 64);
    feed(&mut capture, 1000 + 20 * 64, 10);
    w.drain_cycles();
    stop_drained(&mut w);
    let r = finished(&erx);
    // Start rounds up to the boundary 1000+21*64, minus 5 cycles.
    let first = 1000 + 16 * 64;
    assert_eq!(r.first_frame_time, Some(first));
    assert_eq!(r.frames, 14 * 64);
    assert!(r.gaps.is_empty());
    assert_signal(&samples(&r.files[0].path), first);
}

/// A rotation at an exact frame (a clock boundary) cuts inside the cycle
/// that holds it: take 1 ends just before it, take 2 begins on it.
#[test]
fn an_exact_rotation_cuts_mid_cycle() {
    let (mut w, mut capture, erx, dir) = writer(48_000);
    w.begin(Take::create(spec(dir.path(), 2, None), Local::now()).unwrap(), StartAt::Next, 0);
    feed(&mut capture, 1000, 20);
    w.drain_cycles();
    let mut s2 = spec(dir.path(), 2, None);
    s2.file = Some("exact.wav".into());
    let a = w.active.as_mut().unwrap();
    a.stop = Some(StopAt::Before(1000 + 10 * 64 + 5));
    a.next = Some(Box::new(Take::create(s2, Local::now()).unwrap()));
    feed(&mut capture, 1000 + 20 * 64, 5);
    w.drain_cycles();
    let r1 = finished(&erx);
    stop_drained(&mut w);
    let r2 = finished(&erx);
    assert_eq!(r1.frames, 10 * 64 + 5);
    assert_eq!(r2.first_frame_time, Some(1000 + 10 * 64 + 5));
    assert_eq!(r1.frames + r2.frames, 25 * 64);
    assert_signal(&samples(&r1.files[0].path), 1000);
    assert_signal(&samples(&r2.files[0].path), 1000 + 10 * 64 + 5);
}

/// A drained ending (the recorder's ERROR path, JACK gone, quitting) never
/// runs past a stop point already set, however far the cycles after it
/// reached; and it waits for the cycles still in the log (a disk thread
/// that was stopped catches up first), so the take is whole up to there.
#[test]
fn a_drained_ending_stops_at_the_stop_point_and_takes_in_the_cycles_before() {
    let (mut w, mut capture, erx, dir) = writer(4096);
    w.begin(Take::create(spec(dir.path(), 2, None), Local::now()).unwrap(), StartAt::Next, 0);
    feed(&mut capture, 1000, 2);
    w.drain_cycles();
    w.active.as_mut().unwrap().stop = Some(StopAt::Before(1000 + 300 * 64 + 7));
    // The thread falls behind: 400 cycles wait in the log, then a drain.
    feed(&mut capture, 1000 + 2 * 64, 398);
    w.active.as_mut().unwrap().drain = true;
    while w.active.is_some() {
        w.drain_cycles();
        w.advance();
    }
    let r = finished(&erx);
    assert_eq!(r.frames, 300 * 64 + 7);
    assert!(r.gaps.is_empty(), "{:?}", r.gaps);
    assert_signal(&samples(&r.files[0].path), 1000);
}

/// Rotation: take 2 begins on the frame after take 1's last, nothing
/// lost or repeated, even when the disk thread is behind.
#[test]
fn rotate_continues_on_the_next_frame() {
    for history in [0, 48_000] {
        let (mut w, mut capture, erx, dir) = writer(history);
        let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
        w.begin(take, StartAt::Next, 0);
        feed(&mut capture, 1000, 20);
        w.drain_cycles();
        // Rotate at a frame inside cycle 10, which was already written.
        let mut s2 = spec(dir.path(), 2, None);
        s2.file = Some(format!("second-{history}.wav"));
        let next = Take::create(s2, Local::now()).unwrap();
        let a = w.active.as_mut().unwrap();
        a.stop = Some(StopAt::Frame(1000 + 10 * 64 + 5));
        a.next = Some(Box::new(next));
        feed(&mut capture, 1000 + 20 * 64, 5);
        w.drain_cycles();
        let r1 = finished(&erx);
        stop_drained(&mut w);
        let r2 = finished(&erx);
        if history > 0 {
            // The takes trail by a delay, so the late stop is still exact:
            // take 1 ends with the cycle that contains the stop frame.
            assert_eq!(r1.frames, 11 * 64);
        }
        let end1 = r1.first_frame_time.unwrap() + r1.frames;
        assert_eq!(r1.first_frame_time, Some(1000));
        assert_eq!(r2.first_frame_time, Some(end1), "history {history}");
        assert_eq!(r1.frames + r2.frames, 25 * 64, "history {history}");
        assert_signal(&samples(&r1.files[0].path), 1000);
        assert_signal(&samples(&r2.files[0].path), end1);
    }
}

/// A rotated-out take's finalize (its syncs) waits on a slow disk: the
/// disk thread goes on draining into the next take meanwhile, and the
/// old take is reported once its files are final.
#[test]
fn finalizing_never_holds_up_draining() {
    use crate::wav::writer::probe::{Gate, Probe};
    let (mut w, mut capture, erx, dir) = writer(48_000);
    let mut take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    let gate = Arc::new(Gate::default());
    let probe = Probe { sync_gate: Some(gate.clone()), ..Default::default() };
    probe_take(&mut take, probe);
    w.begin(take, StartAt::Next, 0);
    feed(&mut capture, 1000, 10);
    w.drain_cycles();
    let mut s2 = spec(dir.path(), 2, None);
    s2.file = Some("second.wav".into());
    let a = w.active.as_mut().unwrap();
    a.stop = Some(StopAt::Frame(1000 + 5 * 64));
    a.next = Some(Box::new(Take::create(s2, Local::now()).unwrap()));
    // The rotation happens here; the old take's syncs wait at the gate.
    for k in 0..40 {
        feed(&mut capture, 1000 + (10 + k * 100) * 64, 100);
        w.drain_cycles();
    }
    let second = w.active.as_ref().expect("the next take runs").take.frames();
    assert!(second >= 200_000, "the next take got {second} frames while the old one finalized");
    assert!(
        !erx.try_iter().any(|e| matches!(e, DiskEvent::Finished(_))),
        "the old take cannot be final before its syncs"
    );
    gate.open();
    let r1 = finished(&erx);
    assert!(!gate.timed_out.load(Relaxed), "draining waited for the old take's syncs");
    assert_eq!((r1.frames, r1.error), (6 * 64, None));
    stop_drained(&mut w);
    assert_eq!(finished(&erx).frames, 4010 * 64 - 6 * 64);
}

/// The disk fills in the middle of a batch: the part of the batch that
/// reached the file before ENOSPC is audio like any other, and the report
/// counts exactly the frames the file's header claims (it said fewer:
/// only the batches appended whole).
#[test]
fn a_take_ended_by_a_full_disk_reports_the_frames_its_file_holds() {
    use crate::wav::writer::probe::Probe;
    let (mut w, mut capture, erx, dir) = writer(0);
    let mut take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    // Cycles of 3,000 frames (24,000 bytes): the 44th takes the buffer past
    // 1 MiB and out; the disk takes 256 blocks of it, part of that cycle.
    let probe = Probe { space: Some((1 << 20) + 100), ..Default::default() };
    probe_take(&mut take, probe);
    w.begin(take, StartAt::Next, 0);
    let mut t = 1000u32;
    while w.active.is_some() {
        let b: Vec<Vec<f32>> =
            (0..2).map(|c| (0..3000).map(|i| signal((t + i) as u64, c)).collect()).collect();
        capture.process_cycle(t, 3000, 48000, Default::default(), |i| &b[i], || t);
        t += 3000;
        w.drain_cycles();
        assert!(t < 1000 + 3000 * 100, "the disk never filled");
    }
    let r = finished(&erx);
    assert!(r.error.as_deref().is_some_and(|e| e.contains("No space left")), "{:?}", r.error);
    let info = crate::wav::read_info(&r.files[0].path).unwrap();
    assert_eq!(info.frames(), (1 << 20) / 8);
    assert_eq!(r.files[0].frames, info.frames());
    assert_eq!(r.frames, info.frames(), "the report and the file's header");
    assert_signal(&samples(&r.files[0].path), 1000);
}

/// A take grows past 4 GiB: its file turns RF64 in place, every frame past
/// the mark is exact, and sox reads the header and the audio beyond 4 GiB.
/// (Sparse silence, the disk thread's way of writing a long gap, brings
/// the file to just under 4 GiB without writing it.)
#[test]
fn a_take_grows_past_4_gib_as_rf64_and_sox_reads_it() {
    use capstan_testbed::{sample, verify_at};
    let dir = tempfile::tempdir().unwrap();
    let mut take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    // 2 ch float32 = 8 bytes a frame: a lead-in just under 4 GiB, then one
    // second of the test signal pushes the file over.
    let lead = (u32::MAX as u64 - 200_000) / 8;
    take.write_silence(lead, 0).unwrap();
    let t0 = 7_000_000u64;
    for k in 0..48u64 {
        let block: Vec<Vec<f32>> =
            (0..2).map(|c| (0..1000).map(|i| sample(t0 + k * 1000 + i, c)).collect()).collect();
        take.write(1000, |c| Some(&block[c][..])).unwrap();
    }
    let (files, err) = take.finalize(&[], 0, None, Default::default());
    assert!(err.is_none(), "{err:?}");
    assert_eq!((files[0].frames, files[0].rf64), (lead + 48_000, true));
    let path = &files[0].path;
    let info = crate::wav::read_info(path).unwrap();
    assert!(info.rf64);
    assert_eq!(info.frames(), lead + 48_000);
    let v = verify_at(path, 0, lead, Some(t0)).unwrap();
    assert_eq!((v.frames, v.matching, v.mismatched, v.torn), (48_000, 48_000, 0, 0), "{v:?}");
    // sox reads through the whole data chunk on open (~1 min for 4 GiB).
    let out = std::process::Command::new("sox")
        .arg(path)
        .args(["-t", "f32", "-"])
        .args(["trim", &format!("{lead}s")])
        .output()
        .expect("sox is installed (scripts/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tail: Vec<f32> =
        out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(tail.len(), 96_000);
    assert_eq!(tail[0], sample(t0, 0));
    assert_eq!(tail[95_999], sample(t0 + 47_999, 1));
}

/// The meters read every frame once, whoever reads it: the history as
/// cycles arrive while idle, the encoder while a take is written (never
/// the pre-roll again, which the meters saw as it arrived), the history
/// again for what the take left behind its stop point. 1,100 cycles of 64
/// frames: a frame measured twice or never changes the count. The take's
/// picture columns come from the encoder and cover it all, though its last
/// 0.4 s are written in one run at the stop (they once left black columns).
#[test]
fn the_meters_measure_every_frame_once_idle_preroll_recording_and_after() {
    let (mut w, mut capture, erx, dir) = writer(48_000);
    let level = [0.25f32, -0.5];
    let mut t = 0u32;
    let mut cycles = |w: &mut DiskWriter, n: u32| {
        for _ in 0..n {
            let b: Vec<Vec<f32>> = (0..2).map(|c| vec![level[c]; 64]).collect();
            capture.process_cycle(t, 64, 48000, Default::default(), |i| &b[i], || t);
            w.drain_cycles();
            t += 64;
        }
    };
    cycles(&mut w, 100);
    assert_eq!((w.meter.measured(), w.stats.levels.snapshot().windows), (6400, 3), "idle");
    let take = Take::create(spec(dir.path(), 2, None), Local::now()).unwrap();
    w.begin(take, StartAt::Next, 3200);
    cycles(&mut w, 800);
    w.active.as_mut().unwrap().stop = Some(StopAt::Frame(52_800));
    while w.active.is_some() {
        w.advance(); // a slice at a time, as the thread's loop does
    }
    let r = finished(&erx);
    assert_eq!((r.first_frame_time, r.frames), (Some(3200), 52_864 - 3200));
    let columns = w.meter.columns.take_levels(3200, r.frames);
    assert!(columns.columns >= 10 && columns.peaks.chunks(2).all(|p| p == [0.25, 0.5]), "{columns:?}");
    cycles(&mut w, 200);
    let s = w.stats.levels.snapshot();
    assert_eq!(w.meter.measured(), 1100 * 64);
    assert!(s.windows >= 18, "{}", s.windows);
    for (l, want) in s.inputs.iter().zip([0.25, 0.5]) {
        assert_eq!((l.peak, l.rms, l.clipped), (want, want, false));
    }
}
