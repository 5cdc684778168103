//! The esigd appliance library: configuration, listeners, workflows, RocksDB store and metrics behind the
//! `esigd` binary.
// One module (`clock`) calls adjtimex(2) through libc; everything else is safe code.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod ceremony;
pub mod clock;
pub mod config;
pub mod devsetup;
pub mod identity;
pub mod metrics;
pub mod observe;
pub mod oidc_flow;
pub mod payment;
pub mod registry;
pub mod routes;
pub mod signatures;
pub mod workflows;

pub mod net;
pub mod persist;
pub mod store;
