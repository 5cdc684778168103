//! esigd-service: the domain of the eSignature appliance, with no HTTP types.
//!
//! * [`signing`]: the workflows of the GovStack eSignature specification, one file each, each
//!   reading top to bottom like its sequence diagram (`signing::onetime` is 9.1). A workflow
//!   receives the parts it uses (keys, CA, TSA, store, clock, meter), never the whole
//!   [`Service`](service::Service).
//! * [`onboarding`]: 9.2.1, a citizen's own device gets a key and an SCD certificate;
//!   [`citizen_certs`]: the citizen lists, suspends, resumes and revokes their certificates.
//! * [`identity`]: ID-token verification and the browser's OpenID Connect flow at the Identity BB.
//! * [`payment`]: Payment BB tokens, single use.
//! * [`registry`]: who may call the e-Service API (client certificates, networks, rate limits).
//! * [`certs`]: the published certificates and the CRL cache.
//! * [`clock`] and [`meter`]: time and metrics as traits, so tests set the time and the
//!   Prometheus registry stays in the web crate.
//! * [`notify`]: notifications to e-Services (signed webhooks) and citizens (e-mail, SMS)
//!   from a durable outbox.
//! * [`scd`]: the connector to a Remote SCD service (the citizen's own signing device).
//! * [`config`]: the configuration sections the domain owns.
//!
//! Dependencies point down only: `hsm`, `pki`, `ca`, `tsa` (policy) and `store` (RocksDB).

pub mod audit;
pub mod authorities;
pub mod certs;
pub mod citizen_certs;
pub mod clock;
pub mod config;
pub mod identity;
pub mod meter;
pub mod notify;
pub mod onboarding;
pub mod payment;
mod peer;
pub mod registry;
pub mod reload;
pub mod scd;
pub mod service;
pub mod signing;

pub use authorities::{CaAuthority, TsaService};
pub use service::{Parts, Service, Settings};
