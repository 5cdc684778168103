//! HTTP routes of the two listeners and the admin socket.

pub mod admin;
pub mod eservice;
pub mod interactive;
pub mod metrics;
pub mod public;
