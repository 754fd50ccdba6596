//! MIDI control on the real-time thread (`--midi`): MIDI Machine Control
//! RECORD STROBE, RECORD EXIT and STOP, and optionally a note that toggles
//! recording, read from the `control` port and handed to the control
//! thread with the exact frame they arrived at (the cycle's frame time plus
//! the event's offset in it). Real-time safe: parsing a few bytes and one
//! push into a preallocated SPSC ring; no allocation, no lock.

use ringbuf::traits::Producer;
use ringbuf::HeapProd;

/// What a MIDI event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MidiKind {
    /// MMC RECORD STROBE: start recording.
    RecordStrobe,
    /// MMC RECORD EXIT: stop recording.
    RecordExit,
    /// MMC STOP.
    Stop,
    /// A note-on (velocity above 0) of this note number, any channel.
    NoteOn(u8),
}

/// A MIDI command and the JACK frame time it arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MidiEvent {
    pub kind: MidiKind,
    pub frame_time: u32,
}

/// Events the ring can hold between two reads of the control thread.
pub const MIDI_RING: usize = 256;

/// What the bytes of one MIDI event ask for, if anything. MMC is
/// `F0 7F <device> 06 <command> F7` (any device id, 7F included); LOCATE
/// and every other command are ignored.
pub fn parse(bytes: &[u8]) -> Option<MidiKind> {
    match bytes {
        [0xF0, 0x7F, _, 0x06, cmd, 0xF7] => match cmd {
            0x06 => Some(MidiKind::RecordStrobe),
            0x07 => Some(MidiKind::RecordExit),
            0x01 => Some(MidiKind::Stop),
            _ => None,
        },
        [status, note, velocity] if status & 0xF0 == 0x90 && *velocity > 0 && *note < 0x80 => {
            Some(MidiKind::NoteOn(*note))
        }
        _ => None,
    }
}

/// The MIDI input and the ring its commands go into. Real-time thread.
pub struct MidiControl {
    pub port: jack::Port<jack::MidiIn>,
    pub ring: HeapProd<MidiEvent>,
    /// Commands the ring had no room for (the control thread reads it
    /// every 20 ms, so 256 never fill in practice).
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl MidiControl {
    /// Reads this cycle's events. Real-time safe.
    pub fn process(&mut self, ps: &jack::ProcessScope, frame_time: u32) {
        for raw in self.port.iter(ps) {
            if let Some(kind) = parse(raw.bytes) {
                let e = MidiEvent { kind, frame_time: frame_time.wrapping_add(raw.time) };
                if self.ring.try_push(e).is_err() {
                    self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmc_and_note_on() {
        assert_eq!(parse(&[0xF0, 0x7F, 0x7F, 0x06, 0x06, 0xF7]), Some(MidiKind::RecordStrobe));
        assert_eq!(parse(&[0xF0, 0x7F, 0x01, 0x06, 0x07, 0xF7]), Some(MidiKind::RecordExit));
        assert_eq!(parse(&[0xF0, 0x7F, 0x7F, 0x06, 0x01, 0xF7]), Some(MidiKind::Stop));
        assert_eq!(parse(&[0xF0, 0x7F, 0x7F, 0x06, 0x02, 0xF7]), None, "PLAY");
        assert_eq!(parse(&[0xF0, 0x7F, 0x7F, 0x06, 0x44, 0x06, 0x01, 0, 0, 0, 0, 0, 0xF7]), None, "LOCATE");
        assert_eq!(parse(&[0x93, 60, 100]), Some(MidiKind::NoteOn(60)));
        assert_eq!(parse(&[0x93, 60, 0]), None, "velocity 0 is a note-off");
        assert_eq!(parse(&[0x83, 60, 64]), None);
        assert_eq!(parse(&[]), None);
    }
}
