//! Per-listener limits and counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::allow::address_bucket;
use crate::error::NetError;

/// Default of `listen.max_connections_per_ip` (public listener).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// Default of `listen.eservice_max_connections_per_ip` (e-Service listener: a few back ends behind one
/// address keep connection pools).
pub const DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP: usize = 256;

/// Which listener a [`Limits`] is for: decides the setting names in errors and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// Plain HTTP, public routes.
    Public,
    /// TLS (esigd: mutual TLS, e-Service API).
    Eservice,
}

impl Listener {
    /// Label in log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Eservice => "eservice",
        }
    }

    /// The configuration key of this listener's per-address connection cap.
    pub(crate) fn per_ip_setting(self) -> &'static str {
        match self {
            Listener::Public => "listen.max_connections_per_ip",
            Listener::Eservice => "listen.eservice_max_connections_per_ip",
        }
    }
}

/// Connection limits and timeouts of one listener. `Default` gives production values (those of the public
/// listener). esigd's `[listen]` configuration gives them (`Listen::public_limits` and
/// `eservice_limits` in esigd-web). The names in parentheses are the
/// configuration keys (`[listen]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections served (`listen.max_connections`); a connection beyond it is closed at once.
    pub max_connections: usize,
    /// Concurrent connections from one IPv4 address or one IPv6 /64 (`listen.max_connections_per_ip`,
    /// `listen.eservice_max_connections_per_ip`); a connection beyond it is closed at once. Peers in
    /// [`crate::ServeOptions::per_ip_exempt`] (the trusted reverse proxies) are not counted.
    pub max_connections_per_ip: usize,
    /// Time allowed for the TLS handshake (`listen.handshake_timeout`; TLS listeners only).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a complete HTTP/1 request head (`listen.header_read_timeout`), also while an
    /// idle keep-alive connection waits for its next request, and for the first byte of any connection.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a whole request body, counted from the end of the request head
    /// (`listen.body_read_timeout`); a body still incomplete then fails the request with 408 (HTTP/1: and the
    /// connection is closed).
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed (`listen.idle_timeout`; HTTP/2: GOAWAY,
    /// HTTP/1 keep-alive: closed).
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 PING keep-alives (`listen.h2_keep_alive`); a peer that does not answer within the same
    /// time is disconnected.
    pub h2_keep_alive: Duration,
    /// Concurrent streams (requests) on one HTTP/2 connection (`listen.h2_max_concurrent_streams`).
    pub h2_max_concurrent_streams: u32,
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
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive: Duration::from_secs(30),
            h2_max_concurrent_streams: 64,
            max_connection_age: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Rejects zero values, which would make the listener useless; errors name the public listener's keys.
    pub fn validate(&self) -> Result<(), NetError> {
        self.validate_for(Listener::Public)
    }

    /// Same as [`Limits::validate`], naming the keys of esigd's e-Service listener (the TLS listeners'
    /// names).
    pub fn validate_eservice(&self) -> Result<(), NetError> {
        self.validate_for(Listener::Eservice)
    }

    pub(crate) fn validate_for(&self, listener: Listener) -> Result<(), NetError> {
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
        let at_least_one = |setting, n: usize| {
            if n == 0 {
                Err(NetError::Limit {
                    setting,
                    reason: "must be at least 1",
                })
            } else {
                Ok(())
            }
        };
        at_least_one("listen.max_connections", self.max_connections)?;
        at_least_one(listener.per_ip_setting(), self.max_connections_per_ip)?;
        at_least_one(
            "listen.h2_max_concurrent_streams",
            self.h2_max_concurrent_streams as usize,
        )?;
        zero("listen.handshake_timeout", self.handshake_timeout)?;
        zero("listen.header_read_timeout", self.header_read_timeout)?;
        zero("listen.body_read_timeout", self.body_read_timeout)?;
        zero("listen.idle_timeout", self.idle_timeout)?;
        zero("listen.h2_keep_alive", self.h2_keep_alive)?;
        zero("listen.max_connection_age", self.max_connection_age)
    }
}

/// Open connections per address bucket ([`address_bucket`]: IPv4 address, IPv6 /64) of one listener.
#[derive(Debug)]
pub(crate) struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when its bucket is full. The slot is returned when
    /// the guard is dropped.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpGuard> {
        let bucket = address_bucket(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(bucket).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            counts: self.clone(),
            bucket,
        })
    }

    /// Connections open from `ip`'s bucket (tests).
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&address_bucket(ip)).copied().unwrap_or(0)
    }
}

/// One connection counted in [`PerIp`]; uncounted on drop.
#[derive(Debug)]
pub(crate) struct PerIpGuard {
    counts: Arc<PerIp>,
    bucket: IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.bucket) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.bucket);
            }
        }
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
    /// Connections admitted (passed the IP check and the connection limits).
    pub accepted: u64,
    /// Connections closed before the TLS handshake because the source IP is not allowed.
    pub rejected_ip: u64,
    /// Connections closed because `max_connections` were already open, or `max_connections_per_ip` from the
    /// same address.
    pub rejected_limit: u64,
    /// TLS handshakes that failed or timed out (no / wrong / expired / revoked client certificate, TLS < 1.3, …).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_count_ipv4_addresses_and_ipv6_64s_and_come_back_on_drop() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| per_ip.try_acquire(a).unwrap()).collect();
        assert!(per_ip.try_acquire(a).is_none());
        // The same address written as IPv4-mapped IPv6 is the same bucket.
        assert!(
            per_ip
                .try_acquire("::ffff:192.0.2.1".parse().unwrap())
                .is_none()
        );
        assert!(per_ip.try_acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(held);
        assert_eq!(per_ip.open(a), 0);
        assert!(per_ip.try_acquire(a).is_some());
        // Two addresses of one /64 share the cap; another /64 does not.
        let _x = per_ip
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        let _y = per_ip
            .try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
            .unwrap();
        assert!(
            per_ip
                .try_acquire("2001:db8:1:2::abcd".parse().unwrap())
                .is_none()
        );
        assert!(
            per_ip
                .try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_some()
        );
    }

    #[test]
    fn zero_limits_name_the_listener_setting() {
        let l = Limits {
            max_connections_per_ip: 0,
            ..Limits::default()
        };
        assert!(
            l.validate()
                .unwrap_err()
                .to_string()
                .contains("listen.max_connections_per_ip")
        );
        assert!(
            l.validate_eservice()
                .unwrap_err()
                .to_string()
                .contains("listen.eservice_max_connections_per_ip")
        );
        let l = Limits {
            body_read_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(
            l.validate()
                .unwrap_err()
                .to_string()
                .contains("listen.body_read_timeout")
        );
    }
}
