//! Time as the domain sees it: a [`Clock`] trait instead of `SystemTime::now()`, so that tests can
//! set the time and the policy crates keep taking time as a parameter.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, in whole seconds since the Unix epoch (0 before the epoch).
    fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The kernel's clock discipline (synchronised, maximum error) as the TSA's clock gate reads it;
/// the binary supplies the adjtimex reader, tests a fixed state.
pub type ClockDiscipline = Arc<dyn esigd_tsa::ClockState>;
