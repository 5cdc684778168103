//! Clock discipline (ETSI EN 319 421 §7.7.2): a time-stamp is only issued while the system clock is
//! synchronised and its maximum error does not exceed the accuracy the TSA declares in its tokens.
//!
//! Reading the kernel's NTP state (`adjtimex(2)` / `ntp_gettime(3)`) needs `libc` and `unsafe`: neither
//! `nix` 0.30 nor `rustix` 1.1 wraps these calls. This crate keeps `#![forbid(unsafe_code)]`, so the
//! single syscall lives in the appliance behind [`TimexSource`]; everything that interprets the kernel's
//! answer ([`KernelClock`]) and the stamping decision ([`check_clock`]) is here and unit-tested.

use std::time::Duration;

/// The clock's state as far as time-stamping is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStatus {
    /// Whether the clock is disciplined by a time source (NTP/PTP) right now.
    pub synchronized: bool,
    /// Upper bound of the clock's error as the kernel/daemon estimates it.
    pub max_error: Duration,
}

/// Errors reading the clock state.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The state could not be read (e.g. the adjtimex call failed).
    #[error("reading the kernel clock state failed")]
    Read(#[source] std::io::Error),
    /// The kernel returned a value that makes no sense.
    #[error("kernel clock state is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Source of the clock's synchronisation state.
pub trait ClockState: Send + Sync {
    /// Current state.
    fn status(&self) -> Result<ClockStatus, ClockError>;
}

impl<T: ClockState + ?Sized> ClockState for std::sync::Arc<T> {
    fn status(&self) -> Result<ClockStatus, ClockError> {
        (**self).status()
    }
}

/// A fixed clock state, for tests and development.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub ClockStatus);

impl FixedClock {
    /// A synchronised clock with the given maximum error.
    pub fn synchronized(max_error: Duration) -> Self {
        Self(ClockStatus {
            synchronized: true,
            max_error,
        })
    }

    /// An unsynchronised clock (max error = the kernel's 16 s cap).
    pub fn unsynchronized() -> Self {
        Self(ClockStatus {
            synchronized: false,
            max_error: Duration::from_micros(NTP_PHASE_MAX_US as u64),
        })
    }
}

impl ClockState for FixedClock {
    fn status(&self) -> Result<ClockStatus, ClockError> {
        Ok(self.0)
    }
}

/// The raw fields of a read-only `adjtimex(2)` call (`struct timex` with `modes = 0`), as the appliance
/// passes them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimexReading {
    /// Return value of adjtimex: the clock state (`TIME_OK` = 0 ... `TIME_ERROR` = 5).
    pub state: i32,
    /// `timex.status` bit field (`STA_*`).
    pub status: i32,
    /// `timex.maxerror` in microseconds.
    pub maxerror_us: i64,
    /// `timex.esterror` in microseconds (informational).
    pub esterror_us: i64,
}

/// Reads the kernel's NTP state. Implemented by the appliance with one `libc::adjtimex` call.
pub trait TimexSource: Send + Sync {
    /// One read-only adjtimex (modes = 0).
    fn read(&self) -> std::io::Result<TimexReading>;
}

/// `TIME_ERROR` / `TIME_BAD` return value of adjtimex: clock not synchronised.
pub const TIME_ERROR: i32 = 5;
/// `STA_UNSYNC` status bit.
pub const STA_UNSYNC: i32 = 0x0040;
/// Kernel cap of `maxerror` (NTP_PHASE_MAX, 16 s); reaching it sets STA_UNSYNC.
pub const NTP_PHASE_MAX_US: i64 = 16_000_000;

/// [`ClockState`] from the Linux kernel NTP state.
///
/// Unsynchronised when adjtimex returns `TIME_ERROR`, when `STA_UNSYNC` is set, or when `maxerror` has
/// grown to the kernel's 16 s cap (the kernel adds 500 ppm per second while no daemon updates it; systemd
/// uses the same rule, so a chrony setup that does not clear STA_UNSYNC is still recognised by maxerror).
#[derive(Debug, Clone)]
pub struct KernelClock<T>(pub T);

impl<T: TimexSource> ClockState for KernelClock<T> {
    fn status(&self) -> Result<ClockStatus, ClockError> {
        let r = self.0.read().map_err(ClockError::Read)?;
        interpret_timex(&r)
    }
}

/// Interprets one adjtimex reading (see [`KernelClock`]).
pub fn interpret_timex(r: &TimexReading) -> Result<ClockStatus, ClockError> {
    if r.maxerror_us < 0 {
        return Err(ClockError::Inconsistent("negative maxerror"));
    }
    let synchronized =
        r.state != TIME_ERROR && r.status & STA_UNSYNC == 0 && r.maxerror_us < NTP_PHASE_MAX_US;
    Ok(ClockStatus {
        synchronized,
        max_error: Duration::from_micros(r.maxerror_us.unsigned_abs()),
    })
}

/// Why the clock does not allow a time-stamp now.
#[derive(Debug, thiserror::Error)]
pub enum ClockRejection {
    /// The clock is not synchronised.
    #[error("system clock is not synchronised (max error {max_error:?})")]
    Unsynchronized {
        /// Max error reported.
        max_error: Duration,
    },
    /// The clock's max error exceeds the accuracy declared in the tokens (`tsa.accuracy`).
    #[error(
        "clock max error {max_error:?} exceeds the declared accuracy {accuracy:?} (tsa.accuracy)"
    )]
    MaxErrorExceedsAccuracy {
        /// Max error reported.
        max_error: Duration,
        /// Declared accuracy.
        accuracy: Duration,
    },
    /// The clock state could not be read.
    #[error("clock state unavailable")]
    Unreadable(#[source] ClockError),
}

/// Decides whether a time-stamp may be issued now. With `allow_unsynchronized_clock` (development only)
/// the clock is not consulted at all.
pub fn check_clock<C: ClockState + ?Sized>(
    clock: &C,
    declared_accuracy: Duration,
    allow_unsynchronized_clock: bool,
) -> Result<(), ClockRejection> {
    if allow_unsynchronized_clock {
        return Ok(());
    }
    let st = clock.status().map_err(ClockRejection::Unreadable)?;
    if !st.synchronized {
        return Err(ClockRejection::Unsynchronized {
            max_error: st.max_error,
        });
    }
    if st.max_error > declared_accuracy {
        return Err(ClockRejection::MaxErrorExceedsAccuracy {
            max_error: st.max_error,
            accuracy: declared_accuracy,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Src(std::io::Result<TimexReading>);
    impl TimexSource for Src {
        fn read(&self) -> std::io::Result<TimexReading> {
            match &self.0 {
                Ok(r) => Ok(*r),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            }
        }
    }
    fn reading(state: i32, status: i32, maxerror_us: i64) -> TimexReading {
        TimexReading {
            state,
            status,
            maxerror_us,
            esterror_us: 0,
        }
    }

    #[test]
    fn kernel_state_interpretation() {
        let ok = KernelClock(Src(Ok(reading(0, 0x2001, 12_000))));
        assert_eq!(
            ok.status().unwrap(),
            ClockStatus {
                synchronized: true,
                max_error: Duration::from_micros(12_000)
            }
        );
        let unsync_bit = KernelClock(Src(Ok(reading(0, STA_UNSYNC, 1_000))));
        assert!(!unsync_bit.status().unwrap().synchronized);
        let time_error = KernelClock(Src(Ok(reading(TIME_ERROR, 0, 1_000))));
        assert!(!time_error.status().unwrap().synchronized);
        let capped = KernelClock(Src(Ok(reading(0, 0, NTP_PHASE_MAX_US))));
        assert!(!capped.status().unwrap().synchronized);
        let neg = KernelClock(Src(Ok(reading(0, 0, -1))));
        assert!(matches!(neg.status(), Err(ClockError::Inconsistent(_))));
        let failed = KernelClock(Src(Err(std::io::Error::other("EPERM"))));
        assert!(matches!(failed.status(), Err(ClockError::Read(_))));
    }

    #[test]
    fn decision() {
        let acc = Duration::from_secs(1);
        check_clock(
            &FixedClock::synchronized(Duration::from_millis(999)),
            acc,
            false,
        )
        .unwrap();
        check_clock(&FixedClock::synchronized(acc), acc, false).unwrap();
        assert!(matches!(
            check_clock(
                &FixedClock::synchronized(Duration::from_millis(1001)),
                acc,
                false
            ),
            Err(ClockRejection::MaxErrorExceedsAccuracy { .. })
        ));
        assert!(matches!(
            check_clock(&FixedClock::unsynchronized(), acc, false),
            Err(ClockRejection::Unsynchronized { .. })
        ));
        // Development switch lets everything through.
        check_clock(&FixedClock::unsynchronized(), acc, true).unwrap();
        let broken = KernelClock(Src(Err(std::io::Error::other("EPERM"))));
        assert!(matches!(
            check_clock(&broken, acc, false),
            Err(ClockRejection::Unreadable(_))
        ));
    }
}
