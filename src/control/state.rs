//! The recorder's five states, held in one atomic and changed only by
//! compare-and-swap along the legal edges. The real-time thread never reads
//! or waits on it; control and disk events drive it.
//!
//! | from \ to  | IDLE | STARTING | RECORDING | STOPPING | ERROR |
//! |------------|------|----------|-----------|----------|-------|
//! | IDLE       |      | start    |           |          | jack gone |
//! | STARTING   | pre-flight failed |  | first frame written |  | jack gone, no first frame |
//! | RECORDING  |      |          |           | stop     | write error, disk full, jack gone |
//! | STOPPING   | take final |    |           |          | error while finalizing |
//! | ERROR      | reset / JACK back | |        |          |       |

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    Idle = 0,
    Starting = 1,
    Recording = 2,
    Stopping = 3,
    Error = 4,
}

impl State {
    pub const ALL: [State; 5] =
        [State::Idle, State::Starting, State::Recording, State::Stopping, State::Error];

    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Idle,
            1 => State::Starting,
            2 => State::Recording,
            3 => State::Stopping,
            _ => State::Error,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Starting => "starting",
            State::Recording => "recording",
            State::Stopping => "stopping",
            State::Error => "error",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every legal edge; anything else is refused.
pub const EDGES: &[(State, State)] = &[
    (State::Idle, State::Starting),
    (State::Idle, State::Error),
    (State::Starting, State::Idle),
    (State::Starting, State::Recording),
    (State::Starting, State::Error),
    (State::Recording, State::Stopping),
    (State::Recording, State::Error),
    (State::Stopping, State::Idle),
    (State::Stopping, State::Error),
    (State::Error, State::Idle),
];

pub fn is_legal(from: State, to: State) -> bool {
    EDGES.contains(&(from, to))
}

/// Why a transition did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{from} -> {to} is not a legal transition")]
    Illegal { from: State, to: State },
    #[error("state is {actual}, not {expected}")]
    NotIn { expected: State, actual: State },
}

/// The shared state cell.
#[derive(Debug, Default)]
pub struct StateCell(AtomicU8);

impl StateCell {
    pub fn new() -> StateCell {
        StateCell(AtomicU8::new(State::Idle as u8))
    }

    /// Current state. Lock-free; safe from any thread.
    pub fn get(&self) -> State {
        State::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Moves `from` → `to` if that edge is legal and the state is `from`.
    pub fn transition(&self, from: State, to: State) -> Result<(), TransitionError> {
        if !is_legal(from, to) {
            return Err(TransitionError::Illegal { from, to });
        }
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|actual| TransitionError::NotIn { expected: from, actual: State::from_u8(actual) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_illegal_edge_is_refused_and_leaves_the_state_alone() {
        for from in State::ALL {
            for to in State::ALL {
                let cell = StateCell(AtomicU8::new(from as u8));
                let r = cell.transition(from, to);
                if is_legal(from, to) {
                    assert_eq!(r, Ok(()), "{from}->{to}");
                    assert_eq!(cell.get(), to);
                } else {
                    assert_eq!(r, Err(TransitionError::Illegal { from, to }), "{from}->{to}");
                    assert_eq!(cell.get(), from);
                }
            }
        }
    }

    #[test]
    fn a_transition_from_the_wrong_state_fails() {
        let cell = StateCell::new();
        assert_eq!(
            cell.transition(State::Recording, State::Stopping),
            Err(TransitionError::NotIn { expected: State::Recording, actual: State::Idle })
        );
        assert_eq!(cell.get(), State::Idle);
    }

    #[test]
    fn every_state_has_a_way_back_to_idle() {
        for s in State::ALL {
            let mut seen = vec![s];
            let mut i = 0;
            while i < seen.len() {
                for &(a, b) in EDGES {
                    if a == seen[i] && !seen.contains(&b) {
                        seen.push(b);
                    }
                }
                i += 1;
            }
            assert!(seen.contains(&State::Idle), "{s} cannot reach idle");
        }
    }

    #[test]
    fn concurrent_starts_produce_exactly_one_winner() {
        let cell = std::sync::Arc::new(StateCell::new());
        let winners: usize = (0..8)
            .map(|_| {
                let c = cell.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| c.transition(State::Idle, State::Starting).is_ok()).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }
}
