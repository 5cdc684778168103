//! The reference device app of esigd: the citizen's phone in the Remote SCD flows.
//!
//! * [`agent`]: what the device shows for a request and the signed answer it sends, with the keys
//!   in its own PKCS#11 token behind the citizen's PIN.
//!
//! It never links RocksDB or the CA.

pub mod agent;
mod csr;
