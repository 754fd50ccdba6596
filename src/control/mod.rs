//! Take control: the state machine, the OSC protocol and pre-flight checks.
//! Control thread only.

pub mod alarms;
pub mod clock;
pub mod log_limit;
pub mod osc;
pub mod preflight;
pub mod recorder;
pub mod replies;
pub mod reply_budget;
pub mod state;
