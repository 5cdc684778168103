//! PKCS#11 access for esigd — the only crate that calls `cryptoki`.
//!
//! - [`Hsm`]: one logged-in token with a bounded, self-healing session pool;
//! - [`HsmSigner`]: a persistent key (CA, TSA, OCSP) behind the RustCrypto signer traits;
//! - [`OneTimeKeys`] / [`OneTimeKey`]: ephemeral keys generated ahead of the request path, used
//!   for one signature and destroyed with a [`DestructionReceipt`];
//! - [`Hsm::seal`] / [`Hsm::unseal`] / [`Hsm::blind_index`]: AES-256-GCM and HMAC-SHA-256 with
//!   secret keys that stay in the HSM ([`SecretKind`]), for records kept encrypted at rest;
//! - [`Hsm::read_data`] / [`Hsm::write_data`] / [`Hsm::update_data`]: small `CKO_DATA` objects on
//!   the token (facts that must outlive the data directory, e.g. high-water marks);
//! - [`DeviceToken`]: a citizen's own token (the reference device app), PIN typed per operation;
//! - [`HsmObserver`]: metrics hooks; the registry lives in the appliance.
//!
//! All calls block (PKCS#11 is synchronous FFI): run them on blocking threads.
//!
//! A lost token (SoftHSM: its files gone, then back) is recovered in the process by re-initialising
//! the module (`C_Finalize` + `C_Initialize`, with the calls of this crate quiesced first). That
//! ends every PKCS#11 session of the process, so all PKCS#11 use in a process with an [`Hsm`] must
//! go through it (a [`DeviceToken`] belongs in a process of its own).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod core;
mod data;
mod device;
mod error;
mod keyref;
mod keys;
mod mech;
mod observer;
mod onetime;
mod pin;
mod secret;
mod signer;
mod token;

#[cfg(feature = "test-support")]
pub mod testing;

pub use config::{HsmConfig, OneTimeConfig};
pub use data::MAX_DATA_VALUE;
pub use device::DeviceToken;
pub use error::{HsmError, rv_name};
pub use keyref::KeyRef;
pub use mech::{HashAlg, KeyKind, SignatureScheme};
pub use observer::{HsmObserver, HsmOp, NoopObserver};
pub use onetime::{DestructionReceipt, OneTimeKey, OneTimeKeys};
pub use pin::PinSource;
pub use secret::SecretKind;
pub use signer::{HsmSignature, HsmSigner, PublicKey, hsm_error_of};
pub use token::{Hsm, HsmStats};

/// Where Debian installs SoftHSM2's PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
