//! The session state machine of a Remote SCD service, with time as a parameter.
//!
//! ```text
//! CREATED ──deliver──▶ DELIVERED ──complete(endResult)──▶ COMPLETE ──(5 min)──▶ gone (404)
//!    │                     │
//!    └──────(user window: 120 s) or cancel──▶ COMPLETE(TIMEOUT | RP_CANCELLED)
//! ```
//!
//! Outside the service, CREATED and DELIVERED both read as `RUNNING`. A result is accepted once:
//! a second `complete` is refused (the device API answers 409), and so is one after the user
//! window (410; the session has already ended with `TIMEOUT`).

use std::time::{Duration, SystemTime};

use crate::ScdError;
use crate::api::{EndResult, RESULT_RETENTION, USER_WINDOW};

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created; the device has not fetched it yet.
    Created,
    /// The device fetched it (or acknowledged it).
    Delivered,
    /// Ended.
    Complete(EndResult),
}

/// What a reader outside the service sees at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// `state: RUNNING`.
    Running,
    /// `state: COMPLETE` with this end result.
    Complete(EndResult),
    /// Retention is over: the session is unknown (404).
    Gone,
}

/// Why a device's result was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The session has already completed (409).
    AlreadyComplete,
    /// The user window has passed (410); the session is now `TIMEOUT`.
    Expired,
}

/// One session's timing and phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    created: SystemTime,
    deadline: SystemTime,
    phase: Phase,
    completed: Option<SystemTime>,
}

impl Session {
    /// A new session at `now`, with the standard user window.
    pub fn new(now: SystemTime) -> Session {
        Session::with_window(now, USER_WINDOW)
    }

    /// A new session with a given user window (tests, configuration).
    pub fn with_window(now: SystemTime, window: Duration) -> Session {
        Session {
            created: now,
            deadline: now + window,
            phase: Phase::Created,
            completed: None,
        }
    }

    /// When it was created.
    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// When the user window ends.
    pub fn deadline(&self) -> SystemTime {
        self.deadline
    }

    /// The phase at `now` (applies the timeout first).
    pub fn phase(&mut self, now: SystemTime) -> Phase {
        self.tick(now);
        self.phase
    }

    /// Ends a running session with `TIMEOUT` once the deadline has passed.
    pub fn tick(&mut self, now: SystemTime) {
        if matches!(self.phase, Phase::Created | Phase::Delivered) && now >= self.deadline {
            self.phase = Phase::Complete(EndResult::Timeout);
            self.completed = Some(self.deadline);
        }
    }

    /// The device fetched the session. Returns false when it is no longer running.
    pub fn deliver(&mut self, now: SystemTime) -> bool {
        self.tick(now);
        match self.phase {
            Phase::Created => {
                self.phase = Phase::Delivered;
                true
            }
            Phase::Delivered => true,
            Phase::Complete(_) => false,
        }
    }

    /// The device's (or the service's) end result. Accepted once, and only within the window.
    pub fn complete(&mut self, now: SystemTime, result: EndResult) -> Result<(), Refusal> {
        let was_running = matches!(self.phase, Phase::Created | Phase::Delivered);
        self.tick(now);
        match self.phase {
            Phase::Created | Phase::Delivered => {
                self.phase = Phase::Complete(result);
                self.completed = Some(now);
                Ok(())
            }
            Phase::Complete(_) if was_running => Err(Refusal::Expired),
            Phase::Complete(_) => Err(Refusal::AlreadyComplete),
        }
    }

    /// The relying party cancels: `RP_CANCELLED` if still running.
    pub fn cancel(&mut self, now: SystemTime) -> Result<(), ScdError> {
        self.complete(now, EndResult::RpCancelled)
            .map_err(|_| ScdError::State("the session has already ended"))
    }

    /// True while the session counts as the key's one running session.
    pub fn is_running(&mut self, now: SystemTime) -> bool {
        matches!(self.phase(now), Phase::Created | Phase::Delivered)
    }

    /// What `GET /session/{id}` shows at `now`.
    pub fn visible(&mut self, now: SystemTime) -> Visible {
        match self.phase(now) {
            Phase::Created | Phase::Delivered => Visible::Running,
            Phase::Complete(r) => match self.completed {
                Some(at) if now < at + RESULT_RETENTION => Visible::Complete(r),
                _ => Visible::Gone,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn ok_path_and_retention() {
        let mut s = Session::new(t(0));
        assert_eq!(s.visible(t(1)), Visible::Running);
        assert!(s.deliver(t(2)));
        assert!(s.is_running(t(3)));
        s.complete(t(10), EndResult::Ok).unwrap();
        assert!(!s.is_running(t(11)));
        assert_eq!(s.visible(t(10 + 299)), Visible::Complete(EndResult::Ok));
        assert_eq!(s.visible(t(10 + 300)), Visible::Gone);
    }

    #[test]
    fn a_result_is_accepted_once() {
        let mut s = Session::new(t(0));
        s.complete(t(5), EndResult::UserRefused).unwrap();
        assert_eq!(
            s.complete(t(6), EndResult::Ok),
            Err(Refusal::AlreadyComplete)
        );
        assert_eq!(s.visible(t(7)), Visible::Complete(EndResult::UserRefused));
    }

    #[test]
    fn the_user_window_ends_in_timeout() {
        let mut s = Session::new(t(0));
        assert!(s.deliver(t(1)));
        assert_eq!(s.complete(t(120), EndResult::Ok), Err(Refusal::Expired));
        assert_eq!(s.visible(t(121)), Visible::Complete(EndResult::Timeout));
        // Retention counts from the deadline, not from when someone looked.
        assert_eq!(s.visible(t(120 + 300)), Visible::Gone);
        let mut late = Session::new(t(0));
        assert!(!late.deliver(t(500)));
    }

    #[test]
    fn cancel_only_while_running() {
        let mut s = Session::new(t(0));
        s.cancel(t(1)).unwrap();
        assert_eq!(s.visible(t(2)), Visible::Complete(EndResult::RpCancelled));
        assert!(s.cancel(t(3)).is_err());
    }
}
