//! Per-listener limits and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::NetError;

/// Connection limits and timeouts of one listener. `Default` gives production values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections served (`listen.max_connections`); a connection beyond it is closed at once.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake (`listen.handshake_timeout`; e-Service listener only).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a complete HTTP/1 request head (`listen.header_read_timeout`), also while an
    /// idle keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// Interval of HTTP/2 PING keep-alives (`listen.h2_keep_alive`); a peer that does not answer within the same
    /// time is disconnected.
    pub h2_keep_alive: Duration,
    /// Lifetime of one connection (`listen.max_connection_age`); then it is closed gracefully (in-flight requests
    /// finish, a client reconnects), and forcibly `shutdown_grace` later.
    pub max_connection_age: Duration,
    /// How long in-flight connections may finish after shutdown starts (`listen.shutdown_grace`); the rest are
    /// aborted.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(15),
            h2_keep_alive: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Rejects zero values, which would make the listener useless.
    pub fn validate(&self) -> Result<(), NetError> {
        let zero = |setting, d: Duration| {
            if d.is_zero() {
                Err(NetError::Limit {
                    setting,
                    reason: "must be greater than zero",
                })
            } else {
                Ok(())
            }
        };
        if self.max_connections == 0 {
            return Err(NetError::Limit {
                setting: "listen.max_connections",
                reason: "must be at least 1",
            });
        }
        zero("listen.handshake_timeout", self.handshake_timeout)?;
        zero("listen.header_read_timeout", self.header_read_timeout)?;
        zero("listen.h2_keep_alive", self.h2_keep_alive)?;
        zero("listen.max_connection_age", self.max_connection_age)
    }
}

/// Counters of one listener (cheap `Clone` handle), for metrics and tests.
#[derive(Debug, Clone, Default)]
pub struct ListenerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected_ip: AtomicU64,
    rejected_limit: AtomicU64,
    handshake_failed: AtomicU64,
    active: AtomicU64,
}

/// A snapshot of [`ListenerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerCounts {
    /// Connections admitted (passed the IP check and the connection limit).
    pub accepted: u64,
    /// Connections closed before the TLS handshake because the source IP is not allowed.
    pub rejected_ip: u64,
    /// Connections closed because `max_connections` were already open.
    pub rejected_limit: u64,
    /// TLS handshakes that failed or timed out (no / wrong / expired client certificate, TLS < 1.3, …).
    pub handshake_failed: u64,
    /// Connections open right now.
    pub active: u64,
}

impl ListenerStats {
    /// Current values.
    pub fn snapshot(&self) -> ListenerCounts {
        let c = &self.0;
        ListenerCounts {
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected_ip: c.rejected_ip.load(Ordering::Relaxed),
            rejected_limit: c.rejected_limit.load(Ordering::Relaxed),
            handshake_failed: c.handshake_failed.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn accepted(&self) {
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rejected_ip(&self) {
        self.0.rejected_ip.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rejected_limit(&self) {
        self.0.rejected_limit.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn handshake_failed(&self) {
        self.0.handshake_failed.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts a connection as active until the guard is dropped.
    pub(crate) fn open_guard(&self) -> ActiveGuard {
        self.0.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.0.clone())
    }
}

/// Decrements the active-connection gauge on drop.
pub(crate) struct ActiveGuard(Arc<Counters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
