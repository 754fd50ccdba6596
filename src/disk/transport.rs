//! JACK transport, cycle by cycle: when it starts rolling, stops, or is
//! relocated while rolling (`--trigger transport`). The callback records
//! the transport with each cycle, so the frame of every change is exact.
//! Disk thread only.

use crate::rings::Transport;

/// What the transport did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChange {
    /// It rolls from this cycle on.
    Rolled,
    /// It stands from this cycle on.
    Stopped,
    /// It still rolls, but from another transport frame.
    Located,
}

/// A transport change, at the first frame of the cycle it happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportEvent {
    pub change: TransportChange,
    /// JACK frame time (unwrapped) of that cycle's first frame.
    pub frame_time: u64,
    /// The transport's frame there.
    pub transport_frame: u32,
}

/// How many cycles a callback's transport read may be off. A callback
/// that runs late (a busy machine: JACK2 went on to the next cycle) reads
/// the position JACK already holds for a later cycle, so one read runs
/// ahead and the next seems to stand still. Seen under load as a
/// "relocation" every xrun, splitting one roll into 16 to 60 takes. A
/// relocation while rolling goes through `Starting` in JACK2, and is
/// seconds away in practice; one within two cycles is not told apart.
const READ_SLACK_CYCLES: i64 = 2;

/// The previous cycle's transport.
#[derive(Debug, Default)]
pub struct TransportWatch {
    /// State, transport frame, cycle length and frame time.
    prev: Option<(Transport, u32, u32, u64)>,
    /// The first frame of a pause in `Starting` that followed rolling (a
    /// relocation while rolling: JACK waits for slow-sync clients).
    paused_at: Option<u64>,
}

impl TransportWatch {
    /// A cycle of `n` frames at `frame_time`: the change it brings, if any.
    /// The first cycle seen sets the state without a change (a transport
    /// already rolling when capstan starts did not just start). Rolling,
    /// a pause in `Starting`, and rolling again is a relocation, at the
    /// frame where it rolls again. Rolling on, the transport moves by the
    /// previous cycle's length (JACK skipped cycles: the frame time jumped,
    /// the transport did not) up to the frame time that passed (the
    /// callback missed cycles the server ran), give or take
    /// [`READ_SLACK_CYCLES`]; any other move is a relocation.
    pub fn cycle(
        &mut self,
        state: Transport,
        transport_frame: u32,
        n: u32,
        frame_time: u64,
    ) -> Option<TransportEvent> {
        use Transport::*;
        let prev = self.prev.replace((state, transport_frame, n, frame_time));
        let (change, at) = match (prev, state) {
            (None, _) => return None,
            (Some((Rolling, tf, pn, pt)), Rolling) => {
                let moved = i64::from(transport_frame.wrapping_sub(tf) as i32);
                let passed = frame_time.saturating_sub(pt) as i64;
                let (pn, slack) = (i64::from(pn), READ_SLACK_CYCLES * i64::from(pn));
                if (pn - slack..=passed.max(pn) + slack).contains(&moved) {
                    return None;
                }
                (TransportChange::Located, frame_time)
            }
            (Some((Rolling, ..)), Starting) => {
                self.paused_at = Some(frame_time);
                return None;
            }
            (Some((Rolling, ..)), Stopped) => (TransportChange::Stopped, frame_time),
            (Some((Starting, ..)), Rolling) => match self.paused_at.take() {
                Some(_) => (TransportChange::Located, frame_time),
                None => (TransportChange::Rolled, frame_time),
            },
            (Some((Starting, ..)), Stopped) => match self.paused_at.take() {
                Some(paused) => (TransportChange::Stopped, paused),
                None => return None,
            },
            (Some((Stopped, ..)), Rolling) => (TransportChange::Rolled, frame_time),
            _ => return None,
        };
        Some(TransportEvent { change, frame_time: at, transport_frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Transport::*;

    #[test]
    fn rolls_stops_and_locates() {
        let mut w = TransportWatch::default();
        let c = TransportChange::Rolled;
        assert_eq!(w.cycle(Rolling, 0, 256, 1000), None, "already rolling at the start");
        assert_eq!(w.cycle(Rolling, 256, 256, 1256), None);
        assert_eq!(w.cycle(Stopped, 512, 256, 1512).map(|e| e.change), Some(TransportChange::Stopped));
        assert_eq!(w.cycle(Stopped, 512, 256, 1768), None);
        let e = w.cycle(Rolling, 512, 256, 2024).unwrap();
        assert_eq!((e.change, e.frame_time, e.transport_frame), (c, 2024, 512));
        assert_eq!(w.cycle(Rolling, 768, 256, 2280), None, "rolling on");
        let e = w.cycle(Rolling, 48_000, 256, 2536).unwrap();
        assert_eq!((e.change, e.frame_time), (TransportChange::Located, 2536));
        assert_eq!(w.cycle(Rolling, 48_256, 128, 2792), None, "a new period size is no relocation");
        assert_eq!(w.cycle(Rolling, 48_384, 128, 2920), None);
    }

    /// A busy machine: the callback missed cycles (the server ran them
    /// without capstan, the transport rolled on) or JACK skipped them (the
    /// frame time jumped, the transport did not). Neither is a relocation;
    /// a jump beyond the frame time that passed, or back, is.
    #[test]
    fn missed_or_skipped_cycles_are_no_relocation() {
        let mut w = TransportWatch::default();
        w.cycle(Rolling, 0, 256, 1000);
        assert_eq!(w.cycle(Rolling, 768, 256, 1768), None, "two cycles missed by the callback");
        assert_eq!(w.cycle(Rolling, 1024, 256, 3048), None, "four cycles skipped by JACK");
        assert_eq!(w.cycle(Rolling, 1792, 256, 3304), None, "a late read: the position of a later cycle");
        assert_eq!(w.cycle(Rolling, 1792, 256, 3560), None, "then one on time");
        let e = w.cycle(Rolling, 48_000, 256, 3816).unwrap();
        assert_eq!((e.change, e.frame_time), (TransportChange::Located, 3816), "beyond the time that passed");
        let e = w.cycle(Rolling, 47_000, 256, 4072).unwrap();
        assert_eq!(e.change, TransportChange::Located, "back");
    }

    /// JACK2 relocates a rolling transport through `Starting`: that is one
    /// relocation where it rolls again, not a stop and a start. A pause in
    /// `Starting` that ends stopped is a stop where the pause began.
    #[test]
    fn a_pause_in_starting_is_a_relocation_or_a_stop() {
        let mut w = TransportWatch::default();
        w.cycle(Stopped, 0, 256, 0);
        assert_eq!(w.cycle(Starting, 0, 256, 256), None, "about to roll");
        assert_eq!(w.cycle(Rolling, 0, 256, 512).map(|e| e.change), Some(TransportChange::Rolled));
        assert_eq!(w.cycle(Starting, 9_000, 256, 768), None);
        assert_eq!(w.cycle(Starting, 9_000, 256, 1024), None);
        let e = w.cycle(Rolling, 9_000, 256, 1280).unwrap();
        assert_eq!((e.change, e.frame_time, e.transport_frame), (TransportChange::Located, 1280, 9_000));
        assert_eq!(w.cycle(Starting, 0, 256, 1536), None);
        let e = w.cycle(Stopped, 0, 256, 1792).unwrap();
        assert_eq!((e.change, e.frame_time), (TransportChange::Stopped, 1536));
    }
}
