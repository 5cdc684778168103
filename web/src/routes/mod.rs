//! HTTP routes of the two listeners.

pub mod eservice;
pub mod interactive;
pub mod metrics;
pub mod public;
