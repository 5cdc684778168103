//! Per-client rate limit of the public `/tsa` and `/ocsp` routes (`limits.public_rate_per_ip`).
//!
//! Each client (an IPv4 address, or the /64 of an IPv6 address, as for the signing sessions) has
//! a GCRA budget (`governor`): `limits.public_rate_per_ip` requests per second sustained, bursts
//! of `limits.public_rate_burst`. Networks in `limits.public_rate_exempt` (by default loopback;
//! add the e-Services and relying parties that time-stamp or check in bulk) are not limited.
//! A request over the budget gets `429 Too Many Requests` with `Retry-After` (whole seconds).
//!
//! Memory stays bounded: the table keeps at most [`TABLE_MAX`] clients. When it is full, clients
//! whose budget has refilled are dropped (at most once a second); if it is still full, clients not
//! in the table share one overflow budget until room is made, so a flood from very many networks
//! cannot grow the table, and only the clients that arrive during such a flood share a budget.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::net::address_bucket;

/// Most clients whose budgets are kept at once (≈ 64 bytes each).
pub const TABLE_MAX: usize = 65_536;

/// How often a full table is searched for clients whose budget has refilled.
const RETAIN_EVERY: Duration = Duration::from_secs(1);

/// The key of the shared overflow budget (no client has the unspecified address).
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// A per-client limiter (see the module documentation).
pub struct PublicRateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    exempt: Vec<IpNet>,
    table_max: usize,
    last_retain: Mutex<Instant>,
}

impl std::fmt::Debug for PublicRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicRateLimit")
            .field("exempt", &self.exempt)
            .field("table_max", &self.table_max)
            .finish_non_exhaustive()
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until the client's next request can pass (at least 1).
    pub retry_after_secs: u64,
}

impl PublicRateLimit {
    /// A limiter with `per_second` sustained and `burst` requests per client, none for
    /// `exempt`; `None` when `per_second` is 0 (the limit is off). At most `table_max` clients
    /// are tracked (at least 1).
    pub fn new(
        per_second: u32,
        burst: u32,
        exempt: &[IpNet],
        table_max: usize,
    ) -> Option<PublicRateLimit> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(PublicRateLimit::with_quota(
            Quota::per_second(rate).allow_burst(burst),
            exempt,
            table_max,
        ))
    }

    /// A limiter with any `quota` per client (e.g. a few per minute for pages that reach a
    /// citizen's phone).
    pub fn with_quota(quota: Quota, exempt: &[IpNet], table_max: usize) -> PublicRateLimit {
        PublicRateLimit {
            limiter: RateLimiter::keyed(quota),
            exempt: exempt.iter().map(IpNet::trunc).collect(),
            table_max: table_max.max(1),
            last_retain: Mutex::new(Instant::now()),
        }
    }

    /// Admits or refuses one request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Limited> {
        let ip = ip.to_canonical();
        if self.exempt.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let key = self.key_for(address_bucket(ip));
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            Limited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
            .at_least_one()
        })
    }

    /// `bucket`, or the overflow key while the table is full.
    fn key_for(&self, bucket: IpAddr) -> IpAddr {
        if self.limiter.len() < self.table_max {
            return bucket;
        }
        let mut last = self.last_retain.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= RETAIN_EVERY {
            *last = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        if self.limiter.len() < self.table_max {
            bucket
        } else {
            OVERFLOW
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

impl Limited {
    fn at_least_one(self) -> Limited {
        Limited {
            retry_after_secs: self.retry_after_secs.max(1),
        }
    }
}

/// Middleware for the `/tsa` and `/ocsp` routes: 429 with `Retry-After` over the budget. The
/// client address is the one [`crate::net::forwarded::real_client`] settled on.
pub async fn limit(
    State(limit): State<Arc<PublicRateLimit>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| p.ip());
    if let Some(ip) = peer
        && let Err(limited) = limit.check(ip)
    {
        tracing::debug!(peer = %ip, "public request over limits.public_rate_per_ip");
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "too many requests from this address (limits.public_rate_per_ip); retry later\n",
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&limited.retry_after_secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_over_the_budget_is_refused_with_a_wait_and_others_pass() {
        let l = PublicRateLimit::new(1, 3, &["192.0.2.0/24".parse().unwrap()], 100).unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(ip("198.51.100.1")), Ok(()));
        }
        let refused = l.check(ip("198.51.100.1")).unwrap_err();
        assert!((1..=2).contains(&refused.retry_after_secs), "{refused:?}");
        // Another client has its own budget; an exempt network has none; IPv4-mapped is IPv4.
        assert_eq!(l.check(ip("198.51.100.2")), Ok(()));
        for _ in 0..50 {
            assert_eq!(l.check(ip("192.0.2.9")), Ok(()));
            assert_eq!(l.check(ip("::ffff:192.0.2.9")), Ok(()));
        }
        assert!(l.check(ip("::ffff:198.51.100.1")).is_err());
        // One IPv6 /64 is one client.
        for i in 0..3 {
            assert_eq!(l.check(ip(&format!("2001:db8:1:2::{i}"))), Ok(()));
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1")).is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1")), Ok(()));
        // Off.
        assert!(PublicRateLimit::new(0, 3, &[], 100).is_none());
    }

    #[test]
    fn the_table_is_capped_and_clients_beyond_it_share_one_budget() {
        let l = PublicRateLimit::new(1, 2, &[], 8).unwrap();
        for i in 0..1000u32 {
            let _ = l.check(ip(&format!("2001:db8:{:x}:{:x}::1", i >> 8, i & 0xff)));
        }
        // Bounded: the cap plus the overflow budget.
        assert!(l.tracked() <= 9, "{}", l.tracked());
        // Clients beyond the cap share the overflow budget, which the flood used up.
        assert!(l.check(ip("203.0.113.77")).is_err());
    }
}
