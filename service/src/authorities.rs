//! The CA and the TSA as the appliance runs them: keys in the HSM, records in RocksDB.

use esigd_ca::Authority;
use esigd_hsm::{HsmSignature, HsmSigner};
use esigd_store::persist::{RocksCertStore, RocksSerialStore};
use esigd_tsa::{BlockSerials, Tsa};

use crate::clock::ClockDiscipline;

/// The CA as the appliance runs it: key in the HSM, records in RocksDB.
pub type CaAuthority = Authority<HsmSigner, HsmSignature, RocksCertStore>;

/// The TSA as the appliance runs it: key in the HSM, serial blocks in RocksDB, the kernel's clock
/// discipline (or a fixed one in tests).
pub type TsaService = Tsa<HsmSigner, HsmSignature, BlockSerials<RocksSerialStore>, ClockDiscipline>;
