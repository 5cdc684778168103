//! A value that can be swapped at run time (SIGHUP reload) while readers keep a consistent snapshot
//! (the e-Service registry); the listeners use the same type.

pub use esigd_reload::Reloadable;
