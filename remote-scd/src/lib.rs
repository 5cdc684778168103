//! The reference Remote SCD service of esigd: it sits between a relying party (esigd) and
//! citizens' devices, as a Smart-ID or Mobile-ID service does in production.
//!
//! * [`engine`]: the rules (devices, keys, sessions, replay and rate limits), time as a parameter;
//! * [`journal`]: the store that survives a restart (an append-only, `fsync`ed event journal);
//! * [`http`]: the relying-party API (`/scd/v1`) and the device API (`/device/v1`) as axum routers.
//!
//! The `esigd-remote-scd` binary (`src/main.rs`) serves both routers on esigd's own accept loops
//! (`esigd-net`): the relying-party API over mutual TLS (the relying party is the SHA-256 of its
//! client certificate), the device API over TLS (devices sign every call).
//!
//! It never links RocksDB or the CA: it holds no keys of its own beyond its TLS key, and the
//! citizens' keys stay on their devices.

pub mod engine;
pub mod http;
pub mod journal;
