//! The recorder's five states and the legal edges between them (the
//! machine that moves along them is `control::recorder`). The real-time
//! thread never reads or waits on them; control and disk events drive them.
//!
//! | from \ to  | IDLE | STARTING | RECORDING | STOPPING | ERROR |
//! |------------|------|----------|-----------|----------|-------|
//! | IDLE       |      | start    |           |          | jack gone |
//! | STARTING   | take ended before its first frame |  | first frame written |  | jack gone, no first frame |
//! | RECORDING  | take ended by itself | |  | stop     | write error, disk full, jack gone |
//! | STOPPING   | take final |    |           |          | error while finalizing |
//! | ERROR      | reset / JACK back | |        |          |       |

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    (State::Recording, State::Idle),
    (State::Recording, State::Stopping),
    (State::Recording, State::Error),
    (State::Stopping, State::Idle),
    (State::Stopping, State::Error),
    (State::Error, State::Idle),
];

pub fn is_legal(from: State, to: State) -> bool {
    EDGES.contains(&(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
