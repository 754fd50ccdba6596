use super::*;

fn spec(channels: u16, bits: u16) -> FlacSpec {
    FlacSpec { channels, sample_rate: 48_000, bits }
}

fn writer(dir: &Path, name: &str, s: FlacSpec) -> FlacWriter {
    let path = dir.join(name);
    let file = crate::wav::writer::reserve(&path).unwrap();
    FlacWriter::start(file, &path, s, &["TITLE=t".into(), "CAPSTAN_TAKE=t".into()]).unwrap()
}

/// Samples of channel `c`: a ramp with a per-channel offset, exact at 16 bits.
fn channel(c: usize, from: usize, n: usize) -> Vec<f32> {
    (from..from + n).map(|i| (((i + 1009 * c) % 65536) as f32 - 32768.0) / 32768.0).collect()
}

fn feed(w: &mut FlacWriter, from: usize, n: usize) {
    let chans: Vec<Vec<f32>> = (0..w.spec.channels as usize).map(|c| channel(c, from, n)).collect();
    let refs: Vec<Option<&[f32]>> = chans.iter().map(|c| Some(&c[..])).collect();
    w.append(n, &refs).unwrap();
}

#[test]
fn only_16_and_24_bit_and_up_to_8_channels() {
    assert!(FlacSpec::new(8, 48_000, SampleFormat::S24).is_ok());
    assert!(FlacSpec::new(2, 48_000, SampleFormat::S16).is_ok());
    assert!(FlacSpec::new(9, 48_000, SampleFormat::S24).unwrap_err().contains("1 to 8"));
    assert!(FlacSpec::new(2, 48_000, SampleFormat::F32).unwrap_err().contains("--sample-format s24"));
}

/// A finished file: the scan finds every sample in whole frames, the
/// header's total and MD5 stand, and repair changes nothing.
#[test]
fn a_finished_file_is_whole_and_repair_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), "a.flac", spec(3, 24));
    feed(&mut w, 0, 10_000);
    w.checkpoint().unwrap();
    feed(&mut w, 10_000, 5_001);
    let path = w.path().to_owned();
    assert_eq!(w.finalize().unwrap(), 15_001);
    let before = std::fs::read(&path).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let r = scan::repair(&f).unwrap();
    assert_eq!((r.frames_before, r.frames_after, r.torn_bytes), (15_001, 15_001, 0));
    assert_eq!(std::fs::read(&path).unwrap(), before, "untouched, MD5 kept");
    assert_ne!(&before[26..42], &[0u8; 16], "MD5 set");
    assert_eq!(read_comments(&f).unwrap().unwrap(), vec!["TITLE=t".to_string(), "CAPSTAN_TAKE=t".into()]);
}

/// A crash: frames after the last checkpoint, the last one torn. Repair
/// cuts the torn bytes only and claims every whole frame; twice is once.
#[test]
fn a_torn_last_frame_is_cut_and_whole_frames_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), "b.flac", spec(2, 16));
    feed(&mut w, 0, 3 * BLOCK_SIZE);
    w.checkpoint().unwrap();
    feed(&mut w, 3 * BLOCK_SIZE, 2 * BLOCK_SIZE + 100);
    w.flush().unwrap();
    let path = w.path().to_owned();
    let whole_len = std::fs::metadata(&path).unwrap().len();
    drop(w); // killed: no finalize
             // Half of another frame reached the disk.
    let mut other = writer(dir.path(), "c.flac", spec(2, 16));
    feed(&mut other, 0, BLOCK_SIZE);
    other.flush().unwrap();
    let c = std::fs::read(dir.path().join("c.flac")).unwrap();
    let frame = &c[c.len() - (c.len() - (8 + 34 + other.comment_region))..];
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&frame[..frame.len() / 2]).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let r = scan::repair(&f).unwrap();
    assert_eq!(r.frames_before, 3 * BLOCK_SIZE as u64, "the checkpoint's claim");
    assert_eq!(r.frames_after, 5 * BLOCK_SIZE as u64, "every whole frame");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole_len);
    assert_eq!(r.torn_bytes, (frame.len() / 2) as u64);
    let again = scan::repair(&f).unwrap();
    assert_eq!((again.frames_after, again.torn_bytes), (5 * BLOCK_SIZE as u64, 0));
}

/// The reference decoder agrees: `flac -t` passes and `flac -d` gives
/// back every sample (the reference tools: apt-get install flac).
#[test]
fn the_reference_decoder_reads_every_sample() {
    assert!(
        std::process::Command::new("flac").arg("--version").output().is_ok(),
        "flac not installed (apt-get install flac, or scripts/setup.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    for (ch, bits) in [(1u16, 24u16), (8, 16)] {
        let mut w = writer(dir.path(), &format!("r{ch}.flac"), spec(ch, bits));
        feed(&mut w, 0, 20_000);
        let path = w.path().to_owned();
        w.finalize().unwrap();
        let t = std::process::Command::new("flac").args(["-t", "-s"]).arg(&path).output().unwrap();
        assert!(t.status.success(), "flac -t: {}", String::from_utf8_lossy(&t.stderr));
        let raw = dir.path().join(format!("r{ch}.raw"));
        let d = std::process::Command::new("flac")
            .args(["-d", "-s", "--force-raw-format", "--endian=little", "--sign=signed", "-o"])
            .arg(&raw)
            .arg(&path)
            .output()
            .unwrap();
        assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
        let bytes = std::fs::read(&raw).unwrap();
        let bps = bits as usize / 8;
        assert_eq!(bytes.len(), 20_000 * ch as usize * bps);
        for i in 0..20_000 {
            for c in 0..ch as usize {
                let at = (i * ch as usize + c) * bps;
                let mut le = [0u8; 4];
                le[..bps].copy_from_slice(&bytes[at..at + bps]);
                let got = (i32::from_le_bytes(le) << (32 - bits)) >> (32 - bits);
                let want = crate::wav::quantize(channel(c, i, 1)[0], bits as u32 - 1) as i32;
                assert_eq!(got, want, "{ch} ch {bits} bit: frame {i} channel {c}");
            }
        }
    }
}
