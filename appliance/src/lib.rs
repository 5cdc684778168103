//! The `esigd` binary's library: the command line's parts that are not the domain or HTTP.
//!
//! * [`config`]: the configuration file model, assembled from the sections each owner defines
//!   (`esigd_service::config`, `esigd_web::config`), with the checks across sections;
//! * [`wiring`]: the configuration turned into the running service and web state;
//! * [`ceremony`]: `esigd init` (keys in the HSM, CA, TSA and OCSP certificates);
//! * [`devsetup`]: the embedded development defaults (TLS files, demo e-Service);
//! * [`admin`]: the `esigd admin` client of the admin socket;
//! * [`backup`]: `esigd backup` / `esigd restore` and the high-water marks kept in the HSM;
//! * [`probes`]: scrape-time metrics read from files (certificate and CRL dates, store disk use);
//! * [`notify`]: systemd notifications (`Type=notify`: ready, reloading, stopping, status) and
//!   watchdog pings gated on HSM and store health probes;
//! * [`sys`]: the one call without a safe wrapper (adjtimex).
// `unsafe_code` is denied for this crate in appliance/Cargo.toml; `sys` alone allows it
// (adjtimex(2) through libc).

pub mod admin;
pub mod backup;
pub mod ceremony;
pub mod config;
pub mod devsetup;
pub mod notify;
pub mod probes;
pub mod sys;
pub mod wiring;
