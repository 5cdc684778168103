//! The reference device app of esigd: the citizen's phone in the Remote SCD flows.
//!
//! * [`agent`]: what the device shows for a request and the signed answer it sends, with the keys
//!   in its own PKCS#11 token behind the citizen's PIN;
//! * [`client`]: the device API client (TLS pinned to the service's CA, signed calls);
//! * [`app`]: the poll loop and the citizen's decisions;
//! * [`ui`]: the phone-sized web UI on localhost (the binary also has a `--cli` mode).
//!
//! It never links RocksDB or the CA.

pub mod agent;
pub mod app;
pub mod client;
mod csr;
mod error;
pub mod ui;
