//! The appliance's side of the Remote SCD protocol (`esigd-scd`): `[scd]`, the HTTP connector to a
//! Remote SCD service, and the HSM keys that protect device IDs at rest. The onboarding (9.2.1) and SCD-signing (9.2.2) workflows drive a
//! [`esigd_scd::connector::RemoteScdConnector`] and never see HTTP.

pub mod config;
pub mod connector;
pub mod token;
pub mod vault;

pub use config::{DEFAULT_SCD_TYPES, REMOTE_SCD, ScdSection};
pub use connector::{RscdConnector, RscdSettings};
pub use token::{PseudonymTokens, TokenError};
pub use vault::ScdVault;
