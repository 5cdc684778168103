//! Citizens' SCD keys (workflow 9.2): one record per SCD certificate, with the indexes the
//! workflows look it up by.
//!
//! Keys in the `scd` column family (`serial` is the certificate serial, minimal big-endian):
//!
//! | key | value |
//! |---|---|
//! | `k/` serial | the record (version-1 frame: JSON metadata, sealed `SCDRemoteId` as the tail) |
//! | `p/` pseudonym | serial (the pseudonym in canonical form; unique) |
//! | `o/` owner index ‖ serial | empty (a citizen's certificates) |
//! | `r/` device index ‖ SCDKeyId (u32 BE) ‖ serial | empty (certificates of one key slot of one device) |
//! | `s/` SHA-256 of the SPKI | serial (one certificate per key) |
//!
//! The owner and device indexes are blind indexes (HMAC in the HSM, made by the caller): the store
//! holds neither the citizen's `sub` nor the device's `SCDRemoteId` in the clear. Records are never
//! deleted: a certificate's lifecycle lives in the CA's record, this one says whose it is.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::persist::PersistError;
use crate::persist::codec::{UnixTime, concat, frame, unframe};
use crate::{Batch, Cf, Store};

const RECORD: &[u8] = b"k/";
const PSEUDONYM: &[u8] = b"p/";
const OWNER: &[u8] = b"o/";
const DEVICE: &[u8] = b"r/";
const SPKI: &[u8] = b"s/";

/// Most certificates listed for one owner or one device slot.
pub const MAX_LISTED: usize = 1000;

/// One citizen's SCD certificate and where its key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScdKeyRecord {
    /// Certificate serial (minimal big-endian), the `certificateId` in hex.
    pub serial: Vec<u8>,
    /// The pseudonym the citizen types to sign, canonical form.
    pub pseudonym: String,
    /// Blind index of the owner (the Identity BB's `sub`).
    pub owner_index: [u8; 32],
    /// Blind index of the `SCDRemoteId`.
    pub device_index: [u8; 32],
    /// The `SCDRemoteId`, sealed in the HSM (AES-256-GCM) with the serial as associated data.
    pub remote_id_sealed: Vec<u8>,
    /// `SCDType`, e.g. `REMOTE_SCD`.
    pub scd_type: String,
    /// `SCDKeyId`: the key slot on the device.
    pub scd_key_id: u32,
    /// The Remote SCD service's handle of the key (absent when the CSR came without the service).
    pub key_handle: Option<String>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// The e-Service that onboarded it (absent for the browser onboarding page).
    pub eservice: Option<String>,
    /// When it was recorded.
    pub created: SystemTime,
}

impl ScdKeyRecord {
    /// Lowercase hex serial (the `certificateId`).
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

#[derive(Serialize, Deserialize)]
struct MetaV1 {
    pseudonym: String,
    owner: String,
    device: String,
    scd_type: String,
    scd_key_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_handle: Option<String>,
    spki_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eservice: Option<String>,
    created: UnixTime,
}

fn corrupt(serial: &[u8], what: &str) -> PersistError {
    PersistError::Corrupt {
        cf: Cf::Scd.name(),
        key: hex::encode(concat(RECORD, serial)),
        reason: what.to_string(),
    }
}

fn hash32(serial: &[u8], field: &str, hex_value: &str) -> Result<[u8; 32], PersistError> {
    let v = hex::decode(hex_value).map_err(|_| corrupt(serial, field))?;
    v.try_into().map_err(|_| corrupt(serial, field))
}

fn encode(r: &ScdKeyRecord) -> Result<Vec<u8>, PersistError> {
    frame(
        &MetaV1 {
            pseudonym: r.pseudonym.clone(),
            owner: hex::encode(r.owner_index),
            device: hex::encode(r.device_index),
            scd_type: r.scd_type.clone(),
            scd_key_id: r.scd_key_id,
            key_handle: r.key_handle.clone(),
            spki_sha256: hex::encode(r.spki_sha256),
            eservice: r.eservice.clone(),
            created: UnixTime::from_system(r.created),
        },
        &r.remote_id_sealed,
    )
}

fn decode(serial: &[u8], value: &[u8]) -> Result<ScdKeyRecord, PersistError> {
    let (m, tail): (MetaV1, &[u8]) = unframe(value).map_err(|e| corrupt(serial, e))?;
    Ok(ScdKeyRecord {
        serial: serial.to_vec(),
        owner_index: hash32(serial, "owner index", &m.owner)?,
        device_index: hash32(serial, "device index", &m.device)?,
        spki_sha256: hash32(serial, "SPKI hash", &m.spki_sha256)?,
        pseudonym: m.pseudonym,
        remote_id_sealed: tail.to_vec(),
        scd_type: m.scd_type,
        scd_key_id: m.scd_key_id,
        key_handle: m.key_handle,
        eservice: m.eservice,
        created: m.created.to_system().map_err(|e| corrupt(serial, e))?,
    })
}

/// The SCD key records on the appliance store.
#[derive(Clone)]
pub struct ScdKeyStore {
    store: Store,
}

impl std::fmt::Debug for ScdKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScdKeyStore").finish_non_exhaustive()
    }
}

impl ScdKeyStore {
    /// Over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        ScdKeyStore { store }
    }

    /// The writes that record `r` with its indexes. The caller has checked that the pseudonym
    /// and the key are new ([`ScdKeyStore::by_pseudonym`], [`ScdKeyStore::serial_of_key`]) and
    /// commits this together with the audit event.
    pub fn insert_batch(&self, r: &ScdKeyRecord) -> Result<Batch, PersistError> {
        let mut b = Batch::new();
        b.put(Cf::Scd, concat(RECORD, &r.serial), encode(r)?);
        b.put(
            Cf::Scd,
            concat(PSEUDONYM, r.pseudonym.as_bytes()),
            r.serial.clone(),
        );
        b.put(
            Cf::Scd,
            concat(&concat(OWNER, &r.owner_index), &r.serial),
            Vec::new(),
        );
        b.put(
            Cf::Scd,
            concat(&device_prefix(&r.device_index, r.scd_key_id), &r.serial),
            Vec::new(),
        );
        b.put(Cf::Scd, concat(SPKI, &r.spki_sha256), r.serial.clone());
        Ok(b)
    }

    /// The record of certificate `serial`.
    pub fn get(&self, serial: &[u8]) -> Result<Option<ScdKeyRecord>, PersistError> {
        match self.store.get(Cf::Scd, &concat(RECORD, serial))? {
            Some(v) => Ok(Some(decode(serial, &v)?)),
            None => Ok(None),
        }
    }

    /// The record whose pseudonym is `canonical`.
    pub fn by_pseudonym(&self, canonical: &str) -> Result<Option<ScdKeyRecord>, PersistError> {
        match self
            .store
            .get(Cf::Scd, &concat(PSEUDONYM, canonical.as_bytes()))?
        {
            Some(serial) => self.get(&serial),
            None => Ok(None),
        }
    }

    /// The serial of the certificate already issued for the key with this SPKI hash.
    pub fn serial_of_key(&self, spki_sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, PersistError> {
        Ok(self.store.get(Cf::Scd, &concat(SPKI, spki_sha256))?)
    }

    /// The owner's records, by serial (at most [`MAX_LISTED`]).
    pub fn by_owner(&self, owner_index: &[u8; 32]) -> Result<Vec<ScdKeyRecord>, PersistError> {
        self.listed(&concat(OWNER, owner_index))
    }

    /// The records of one key slot of one device (at most [`MAX_LISTED`]).
    pub fn by_device_slot(
        &self,
        device_index: &[u8; 32],
        scd_key_id: u32,
    ) -> Result<Vec<ScdKeyRecord>, PersistError> {
        self.listed(&device_prefix(device_index, scd_key_id))
    }

    fn listed(&self, prefix: &[u8]) -> Result<Vec<ScdKeyRecord>, PersistError> {
        let mut out = Vec::new();
        for (k, _) in self.store.scan_prefix(Cf::Scd, prefix, MAX_LISTED)? {
            let serial = &k[prefix.len()..];
            match self.get(serial)? {
                Some(r) => out.push(r),
                None => return Err(corrupt(serial, "index entry without a record")),
            }
        }
        Ok(out)
    }
}

fn device_prefix(device_index: &[u8; 32], scd_key_id: u32) -> Vec<u8> {
    concat(&concat(DEVICE, device_index), &scd_key_id.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use std::time::{Duration, UNIX_EPOCH};

    fn record(serial: u8, owner: u8, slot: u32) -> ScdKeyRecord {
        ScdKeyRecord {
            serial: vec![0x40, serial],
            pseudonym: format!("k7m2-9xqa-h3d{serial}"),
            owner_index: [owner; 32],
            device_index: [9; 32],
            remote_id_sealed: vec![1, 2, 3],
            scd_type: "REMOTE_SCD".into(),
            scd_key_id: slot,
            key_handle: Some(format!("handle-{serial}")),
            spki_sha256: [serial; 32],
            eservice: None,
            created: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    #[test]
    fn records_are_found_by_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let keys = ScdKeyStore::new(store.clone());
        for r in [record(1, 1, 0), record(2, 1, 1), record(3, 2, 0)] {
            store
                .commit_blocking(keys.insert_batch(&r).unwrap())
                .unwrap();
        }
        let a = keys.get(&[0x40, 1]).unwrap().unwrap();
        assert_eq!(a, record(1, 1, 0));
        assert_eq!(
            keys.by_pseudonym("k7m2-9xqa-h3d2").unwrap().unwrap().serial,
            vec![0x40, 2]
        );
        assert!(keys.by_pseudonym("k7m2-9xqa-h3d9").unwrap().is_none());
        let mine: Vec<_> = keys
            .by_owner(&[1; 32])
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(mine, vec![vec![0x40, 1], vec![0x40, 2]]);
        assert_eq!(keys.by_owner(&[7; 32]).unwrap(), vec![]);
        let slot0: Vec<_> = keys
            .by_device_slot(&[9; 32], 0)
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
        assert_eq!(slot0, vec![vec![0x40, 1], vec![0x40, 3]]);
        assert_eq!(keys.serial_of_key(&[2; 32]).unwrap(), Some(vec![0x40, 2]));
        assert_eq!(keys.serial_of_key(&[8; 32]).unwrap(), None);
    }
}
