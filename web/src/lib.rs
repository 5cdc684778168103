//! esigd-web: the HTTP surfaces of the appliance and nothing else.
//!
//! * [`net`]: the listeners (hand-written tokio accept loops; mutual TLS for e-Services, IP
//!   allow-lists, `X-Forwarded-For` behind trusted proxies).
//! * [`routes`]: the public surface (pages, TSA, CA publication, OCSP, health), the e-Service API
//!   and the admin socket; [`error::ApiError`] is the one mapping from domain errors to status
//!   codes.
//! * [`observe`] and [`metrics`]: request IDs, access logs and the Prometheus registry (which
//!   implements the domain's `Meter`).
//! * [`config`]: the configuration sections the web layer owns.
//!
//! The domain (`esigd_service`) never sees an HTTP type; this crate translates.

pub mod config;
pub mod error;
pub mod metrics;
pub mod net;
pub mod observe;
pub mod pages;
pub mod ratelimit;
pub mod routes;
pub mod sign_input;
pub mod state;

pub use state::WebState;
