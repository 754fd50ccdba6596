//! One file of a take, WAV or FLAC: what [`super::Take`] asks of either.
//! Disk thread only (every method does I/O).

use std::path::Path;

use crate::flac::FlacWriter;
use crate::vocab::ChannelLevel;
use crate::wav::{Bext, Ixml, SampleFormat, WavError, WavWriter};

/// Silence goes into FLAC files in blocks of this many frames.
const SILENCE_BLOCK: usize = 65_536;

pub enum AudioFile {
    Wav(WavWriter),
    Flac(Box<FlacWriter>),
}

impl AudioFile {
    pub fn path(&self) -> &Path {
        match self {
            AudioFile::Wav(w) => w.path(),
            AudioFile::Flac(f) => f.path(),
        }
    }

    pub fn file_bytes(&self) -> u64 {
        match self {
            AudioFile::Wav(w) => w.file_bytes(),
            AudioFile::Flac(f) => f.file_bytes(),
        }
    }

    pub fn frames_committed(&self) -> u64 {
        match self {
            AudioFile::Wav(w) => w.frames_committed(),
            AudioFile::Flac(f) => f.frames_committed(),
        }
    }

    /// Bytes allocated ahead of the audio (see `WavWriter::reserved_ahead`).
    pub fn reserved_ahead(&self) -> u64 {
        match self {
            AudioFile::Wav(w) => w.reserved_ahead(),
            AudioFile::Flac(_) => 0,
        }
    }

    pub fn is_rf64(&self) -> bool {
        matches!(self, AudioFile::Wav(w) if w.is_rf64())
    }

    /// Appends `n` frames; `chans[c]` is channel `c` or `None` for silence.
    /// Each channel's level is added to `levels`.
    pub fn append(
        &mut self,
        n: usize,
        chans: &[Option<&[f32]>],
        format: SampleFormat,
        levels: &mut [ChannelLevel],
    ) -> Result<(), WavError> {
        match self {
            // Each byte written once, straight into the buffer; the levels
            // measured on the way.
            AudioFile::Wav(w) => w.append_frames(format, chans, n, levels),
            AudioFile::Flac(f) => {
                f.append(n, chans)?;
                // FLAC's encoder is not ours: a pass of its own (small
                // beside the encode).
                for (l, c) in levels.iter_mut().zip(chans) {
                    if let Some(c) = c {
                        l.add(ChannelLevel::of(&c[..n]));
                    }
                }
                Ok(())
            }
        }
    }

    /// `n` frames of silence: a sparse extension for WAV, constant
    /// subframes (a few bytes each) for FLAC.
    pub fn append_silence(&mut self, n: u64, channels: usize) -> Result<(), WavError> {
        match self {
            AudioFile::Wav(w) => w.append_silence_sparse(n),
            AudioFile::Flac(f) => {
                let none = vec![None; channels];
                let mut left = n;
                while left > 0 {
                    let k = left.min(SILENCE_BLOCK as u64) as usize;
                    f.append(k, &none)?;
                    left -= k as u64;
                }
                Ok(())
            }
        }
    }

    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        match self {
            AudioFile::Wav(w) => w.checkpoint(),
            AudioFile::Flac(f) => f.checkpoint(),
        }
    }

    /// Checkpoints every file: WAV files with one sync for all of them
    /// (see [`WavWriter::checkpoint_many`]), FLAC files each on its own.
    pub fn checkpoint_all(files: &mut [AudioFile]) -> Result<(), WavError> {
        if let [one] = files {
            return one.checkpoint();
        }
        let mut wavs: Vec<&mut WavWriter> = Vec::new();
        for f in files.iter_mut() {
            match f {
                AudioFile::Wav(w) => wavs.push(w),
                AudioFile::Flac(f) => f.checkpoint()?,
            }
        }
        WavWriter::checkpoint_refs(&mut wavs)
    }

    /// Rewrites the metadata in place (time stamp, loudness).
    pub fn update_meta(&mut self, bext: &Bext, ixml: &Ixml) -> Result<(), WavError> {
        match self {
            AudioFile::Wav(w) => {
                w.update_bext(bext)?;
                w.update_ixml(&ixml.encode())
            }
            AudioFile::Flac(f) => f.update_comments(&flac_comments(bext, ixml)),
        }
    }

    /// JACK's rate changed before any audio went in.
    pub fn set_sample_rate(&mut self, rate: u32, bext: &Bext, ixml: &Ixml) -> Result<(), WavError> {
        match self {
            AudioFile::Wav(w) => w.set_sample_rate(rate, bext, &ixml.encode()),
            AudioFile::Flac(f) => f.set_sample_rate(rate, &flac_comments(bext, ixml)),
        }
    }

    /// Finishes the file; WAV files get `trailer` (markers) after the audio.
    /// Returns the frames in the file and whether it is RF64.
    pub fn finalize(self, trailer: &[u8]) -> Result<(u64, bool), WavError> {
        match self {
            AudioFile::Wav(w) => w.finalize_with(trailer),
            AudioFile::Flac(f) => (*f).finalize().map(|n| (n, false)),
        }
    }
}

/// A FLAC file's Vorbis comments: what the bext and iXML of a WAV say, in
/// the tags players and DAWs know (TITLE, ALBUM, DATE, DESCRIPTION,
/// TIME_REFERENCE) and capstan's own (take, file id, JACK frame time,
/// channel names, loudness).
pub fn flac_comments(bext: &Bext, ixml: &Ixml) -> Vec<String> {
    let mut c = vec![
        format!("TITLE={}", ixml.take),
        format!("ALBUM={}", ixml.project),
        format!("DESCRIPTION={}", bext.description),
        format!("DATE={}", bext.origination_date),
        format!("ORIGINATION_TIME={}", bext.origination_time),
        format!("TIME_REFERENCE={}", bext.time_reference),
        format!("CAPSTAN_TAKE={}", bext.originator_reference),
        format!("CAPSTAN_FILE_UID={}", ixml.file_uid),
        format!("CAPSTAN_SAMPLES_SINCE_MIDNIGHT={}", ixml.samples_since_midnight),
    ];
    if !ixml.tape.is_empty() {
        c.push(format!("CAPSTAN_SESSION={}", ixml.tape));
    }
    if let Some(t) = ixml.jack_frame_time {
        c.push(format!("CAPSTAN_JACK_FRAME_TIME={t}"));
    }
    for t in &ixml.tracks {
        c.push(format!("CAPSTAN_CHANNEL_{}={}", t.interleave_index, t.name));
        c.push(format!("CAPSTAN_CHANNEL_{}_INPUT={}", t.interleave_index, t.channel_index));
    }
    let l = &bext.loudness;
    for (key, v) in [
        ("CAPSTAN_LOUDNESS_LUFS", l.integrated_lufs),
        ("CAPSTAN_LOUDNESS_RANGE_LU", l.range_lu),
        ("CAPSTAN_TRUE_PEAK_DBTP", l.true_peak_dbtp),
    ] {
        if let Some(v) = v {
            c.push(format!("{key}={v:.2}"));
        }
    }
    c
}
