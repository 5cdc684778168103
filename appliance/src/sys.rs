//! The kernel's clock discipline state, for the TSA's clock gate (ETSI EN 319 421).
//!
//! The one `unsafe` block of the appliance lives here: neither `nix` nor `rustix` wraps
//! `adjtimex(2)`, so it is called through `libc` in read-only mode (`modes = 0`).
#![allow(unsafe_code)]

use esigd_tsa::{TimexReading, TimexSource};

/// Reads `adjtimex(2)` with `modes = 0` (no change to the clock).
#[derive(Debug, Default, Clone, Copy)]
pub struct Adjtimex;

impl TimexSource for Adjtimex {
    fn read(&self) -> std::io::Result<TimexReading> {
        // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value
        // (modes = 0 means "read only"); adjtimex writes into the struct we own and pass by
        // valid mutable pointer, and keeps no reference to it after returning.
        let (state, tx) = unsafe {
            let mut tx: libc::timex = std::mem::zeroed();
            let state = libc::adjtimex(&mut tx);
            (state, tx)
        };
        if state < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(TimexReading {
            state,
            status: tx.status,
            maxerror_us: tx.maxerror,
            esterror_us: tx.esterror,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_clock_state() {
        let r = Adjtimex.read().unwrap();
        // The kernel caps maxerror at 16 s (NTP_PHASE_MAX) and it is never negative.
        assert!((0..=16_000_000).contains(&r.maxerror_us), "{r:?}");
        assert!((0..=5).contains(&r.state), "{r:?}");
    }
}
