//! RFC 3161 time-stamping authority policy for esigd: strict request rules, TSTInfo contents, serial
//! numbers, clock discipline. No HTTP, no database: persistence (serial reservation mark, imprint log)
//! goes through narrow traits the appliance implements, time is a parameter and the clock's
//! synchronisation state comes through [`ClockState`].

pub mod clock;
pub mod serial;
mod tsa;

pub use clock::{
    ClockError, ClockRejection, ClockState, ClockStatus, FixedClock, KernelClock, TimexReading,
    TimexSource, check_clock,
};
pub use esigd_pki::cms::DigestAlgorithm;
pub use serial::{
    BlockSerials, InMemorySerials, MemorySerialStore, SerialError, SerialSource, SerialStore,
};
pub use tsa::{
    ConfigError, ImprintLog, ImprintRecord, IssuedToken, Rejection, StampOutcome, Tsa, TsaConfig,
    TsaError,
};
