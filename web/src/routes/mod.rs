//! HTTP routes of the two listeners and the admin socket.

pub mod account;
pub mod admin;
pub mod caller;
pub mod cert;
pub mod eservice;
pub mod interactive;
pub mod metrics;
pub mod public;
pub mod scd_sign;
