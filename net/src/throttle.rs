//! Rate limits for the log lines a peer can trigger at will (refused connections, failed handshakes, silent
//! connections, late request bodies): at most one line per reason per interval, carrying the number of lines
//! suppressed since the previous one. A flood of refused connections must not become a flood of log lines.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often each kind of line may be written.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One reason's limiter.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// At `now`: `Some(n)` when a line may be written (`n` lines were suppressed since the last one),
    /// `None` when this one is suppressed (and counted).
    pub(crate) fn permit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

/// The limiters of one listener, one per kind of line.
#[derive(Debug)]
pub(crate) struct RefusalLogs {
    /// Source IP not in the allow-list.
    pub(crate) ip_not_allowed: LogThrottle,
    /// `listen.max_connections` reached.
    pub(crate) max_connections: LogThrottle,
    /// `listen.max_connections_per_ip` reached.
    pub(crate) per_ip: LogThrottle,
    /// TLS handshake failed, timed out, or gave no usable client certificate.
    pub(crate) handshake: LogThrottle,
    /// Nothing received within `listen.header_read_timeout`.
    pub(crate) silent: LogThrottle,
    /// Request body incomplete within `listen.body_read_timeout`.
    pub(crate) body: LogThrottle,
}

impl Default for RefusalLogs {
    fn default() -> Self {
        let t = || LogThrottle::new(LOG_INTERVAL);
        Self {
            ip_not_allowed: t(),
            max_connections: t(),
            per_ip: t(),
            handshake: t(),
            silent: t(),
            body: t(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_suppressed_ones() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.permit(t0), Some(0));
        for ms in [1, 200, 500, 999] {
            assert_eq!(t.permit(t0 + Duration::from_millis(ms)), None, "{ms} ms");
        }
        assert_eq!(t.permit(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(t.permit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.permit(t0 + Duration::from_millis(5000)), Some(1));
        assert_eq!(t.permit(t0 + Duration::from_millis(6001)), Some(0));
    }

    #[test]
    fn reasons_are_limited_separately() {
        let logs = RefusalLogs::default();
        let now = Instant::now();
        assert_eq!(logs.per_ip.permit(now), Some(0));
        assert_eq!(logs.per_ip.permit(now), None);
        assert_eq!(logs.max_connections.permit(now), Some(0));
        assert_eq!(logs.silent.permit(now), Some(0));
    }
}
