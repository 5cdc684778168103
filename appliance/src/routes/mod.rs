//! HTTP routes of the two listeners.

pub mod public;
