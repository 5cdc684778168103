//! The appliance's side of the Remote SCD protocol (`esigd-scd`): the HTTP connector to a Remote
//! SCD service. The onboarding (9.2.1) and SCD-signing (9.2.2) workflows drive a
//! [`esigd_scd::connector::RemoteScdConnector`] and never see HTTP.

pub mod connector;

pub use connector::{RscdConnector, RscdSettings};
