//! HSM configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::mech::KeyKind;
use crate::pin::PinSource;

/// Where the PKCS#11 module and token are, and how the session pool behaves.
#[derive(Clone, Debug)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`hsm.module`), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token (`hsm.token`). The slot is found by this label, never by number.
    pub token_label: String,
    /// Where the user PIN is read from (`hsm.pin`).
    pub pin: PinSource,
    /// Number of pooled sessions (`hsm.sessions`); default 2 × CPU cores.
    pub pool_size: usize,
    /// How long a caller waits for a free session before getting [`crate::HsmError::Busy`].
    pub checkout_timeout: Duration,
    /// Longest wait between two reconnection attempts while the HSM is unavailable.
    pub max_backoff: Duration,
}

impl HsmConfig {
    /// A configuration with default pool settings.
    pub fn new(module: impl Into<PathBuf>, token_label: impl Into<String>, pin: PinSource) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        HsmConfig {
            module: module.into(),
            token_label: token_label.into(),
            pin,
            pool_size: 2 * cores,
            checkout_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Settings of the pre-generated one-time key set.
#[derive(Clone, Debug)]
pub struct OneTimeConfig {
    /// How many keys are kept ready (each on its own dedicated session).
    pub ready: usize,
    /// Key type of one-time keys.
    pub kind: KeyKind,
    /// How many signatures one key may make before it must be destroyed (CSR + signature + slack).
    pub max_signatures: u32,
    /// How long [`crate::OneTimeKeys::take`] waits for a key when none is ready.
    pub take_timeout: Duration,
    /// Threads generating keys in the background (key generation is the costly part; one thread
    /// per core keeps up with callers on every core).
    pub refill_threads: usize,
}

impl Default for OneTimeConfig {
    fn default() -> Self {
        OneTimeConfig {
            ready: 8,
            kind: KeyKind::EcP256,
            max_signatures: 3,
            take_timeout: Duration::from_secs(5),
            refill_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
