//! Stored signatures (`signatures` column family) and the audit trail (`audit` column family).
//!
//! # Key layout
//!
//! `signatures`:
//!
//! | key                                   | value                         |
//! |---------------------------------------|-------------------------------|
//! | `s/` signatureId (32 bytes)           | signature record              |
//! | `e/` expiry (u64 BE Unix ns) id       | empty: retention index        |
//!
//! A record is created with an expiry of `store.retention_unfetched`; its first fetch moves the
//! expiry to `fetched + store.retention_after_fetch`. The sweeper scans `e/` up to now, so neither
//! start-up nor sweeping reads records that are not due.
//!
//! `audit`: [`crate::AuditKey`] (time, sequence) → JSON [`AuditEvent`].
//!
//! Value format of a signature record: `[1][u32 BE n][n bytes JSON metadata][blobs]` where the
//! blobs are the CMS signature, the signer certificate and the time-stamp token, each
//! `[u32 BE len][bytes]` (no base64 inflation on disk).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::persist::PersistError;
use crate::{AuditKey, Batch, Cf, Order, Store};

const BY_ID: &[u8] = b"s/";
const BY_EXPIRY: &[u8] = b"e/";
const FORMAT_V1: u8 = 1;

/// One-time or SCD signature (the audit API's `signatureType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureType {
    /// One-time key and certificate.
    #[serde(rename = "ONETIME")]
    OneTime,
    /// The user's own signature creation device.
    #[serde(rename = "SCD")]
    Scd,
}

/// A stored signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    /// signatureId: 32 random bytes.
    pub id: [u8; 32],
    /// The e-Service that requested it (only it may fetch it).
    pub owner: String,
    /// One-time or SCD.
    pub signature_type: SignatureType,
    /// Format (`CAdES`).
    pub format: String,
    /// Hash type as the request named it (`SHA2-256`).
    pub hash_type: String,
    /// The signed digest.
    pub digest: Vec<u8>,
    /// The signature (CMS DER for CAdES).
    pub signature: Vec<u8>,
    /// The signer certificate (DER).
    pub certificate: Vec<u8>,
    /// The signature time-stamp token (DER).
    pub timestamp: Vec<u8>,
    /// Certificate serial (hex).
    pub certificate_serial: String,
    /// When the signature was made.
    pub created: SystemTime,
    /// First fetch by the owner.
    pub fetched: Option<SystemTime>,
}

impl SignatureRecord {
    /// Lowercase hex signatureId.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

#[derive(Serialize, Deserialize)]
struct MetaV1 {
    owner: String,
    signature_type: SignatureType,
    format: String,
    hash_type: String,
    digest: String,
    certificate_serial: String,
    created_ns: u64,
    fetched_ns: Option<u64>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

fn id_key(id: &[u8; 32]) -> Vec<u8> {
    [BY_ID, id.as_slice()].concat()
}

fn expiry_key(at: SystemTime, id: &[u8; 32]) -> Vec<u8> {
    [BY_EXPIRY, &nanos(at).to_be_bytes(), id.as_slice()].concat()
}

fn encode(r: &SignatureRecord) -> Result<Vec<u8>, PersistError> {
    let meta = MetaV1 {
        owner: r.owner.clone(),
        signature_type: r.signature_type,
        format: r.format.clone(),
        hash_type: r.hash_type.clone(),
        digest: hex::encode(&r.digest),
        certificate_serial: r.certificate_serial.clone(),
        created_ns: nanos(r.created),
        fetched_ns: r.fetched.map(nanos),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| PersistError::Encode(e.to_string()))?;
    let mut out = vec![FORMAT_V1];
    for part in [json.as_slice(), &r.signature, &r.certificate, &r.timestamp] {
        let len = u32::try_from(part.len())
            .map_err(|_| PersistError::Encode("field longer than 4 GiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

fn decode(id: [u8; 32], value: &[u8]) -> Result<SignatureRecord, PersistError> {
    let corrupt = |m: &str| PersistError::corrupt(Cf::Signatures, &id_key(&id), m);
    let (&version, mut rest) = value.split_first().ok_or_else(|| corrupt("empty value"))?;
    if version != FORMAT_V1 {
        return Err(corrupt(
            "unknown format version (written by a newer esigd?)",
        ));
    }
    let mut parts = Vec::with_capacity(4);
    for _ in 0..4 {
        let len: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated"))?;
        let len = u32::from_be_bytes(len) as usize;
        let part = rest.get(4..4 + len).ok_or_else(|| corrupt("truncated"))?;
        parts.push(part);
        rest = &rest[4 + len..];
    }
    let meta: MetaV1 = serde_json::from_slice(parts[0]).map_err(|e| corrupt(&e.to_string()))?;
    Ok(SignatureRecord {
        id,
        owner: meta.owner,
        signature_type: meta.signature_type,
        format: meta.format,
        hash_type: meta.hash_type,
        digest: hex::decode(&meta.digest).map_err(|_| corrupt("digest is not hex"))?,
        signature: parts[1].to_vec(),
        certificate: parts[2].to_vec(),
        timestamp: parts[3].to_vec(),
        certificate_serial: meta.certificate_serial,
        created: from_nanos(meta.created_ns),
        fetched: meta.fetched_ns.map(from_nanos),
    })
}

/// One audit event. Personal data stays in certificates; the event carries thumbprints and IDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// What happened: `signature.created`, `signature.fetched`, `signature.refused`, ...
    pub event: String,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Correlation ID of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The e-Service concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eservice: Option<String>,
    /// The signature concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_id: Option<String>,
    /// `ONETIME` or `SCD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_type: Option<SignatureType>,
    /// Certificate serial (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
    /// SHA-256 thumbprint of the signer certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    /// SHA-256 thumbprint of the destroyed one-time key's SPKI and when it was destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_destroyed: Option<KeyDestroyed>,
    /// TSA serial of the signature time-stamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsa_serial: Option<u64>,
    /// Hash type and digest (hex) that were signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_type: Option<String>,
    /// Digest (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Outcome message (for refusals: why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Outcome of the step: `success` or `failure` (then `message` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The code sent back to the e-Service (`callback.sent`: `signed` or the error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// SHA-256 (hex) of the payment token (`payment.*`): never the token itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_sha256: Option<String>,
    /// Unix uid of the caller (`admin.*`, from the admin socket's peer credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_uid: Option<u32>,
    /// TSTInfo genTime of a time-stamp token (`timestamp.issued`, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gen_time: Option<String>,
    /// SHA-256 (hex) of a time-stamp token (`timestamp.issued` of a signing transaction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// SHA-256 (hex) of the signed object handed to the e-Service (`signature.created`): the ledger then
    /// commits to each signature esigd made, as it does to each certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_sha256: Option<String>,
    /// Pseudonymous reference of the citizen the event is about (hex HMAC-SHA-256 of their personal
    /// identifier under an HSM key, see `esigd_service::audit::UserRefs`): never a name or the
    /// identifier itself. The ledger indexes events by it, for the citizen's "My signatures" page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    /// The text shown to the citizen when signing (`dataToBeDisplayed`), on `signature.created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Signature format (`CAdES`, `PAdES`, ...), on `signature.created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Position in the audit ledger, set when read back (never part of the logged leaf).
    #[serde(skip)]
    pub leaf_index: Option<u64>,
}

/// Proof of one-time key destruction, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDestroyed {
    /// SHA-256 of the key's SPKI (hex).
    pub key_sha256: String,
    /// When `C_DestroyObject` returned (RFC 3339).
    pub at: String,
    /// Signatures the key made.
    pub signatures: u32,
}

impl AuditEvent {
    /// An event of `kind` at `at` with every optional field empty.
    pub fn new(kind: &str, at: SystemTime) -> Self {
        AuditEvent {
            event: kind.into(),
            time: rfc3339(at),
            request_id: None,
            eservice: None,
            signature_id: None,
            signature_type: None,
            certificate_serial: None,
            certificate_sha256: None,
            key_destroyed: None,
            tsa_serial: None,
            hash_type: None,
            digest: None,
            message: None,
            outcome: None,
            code: None,
            payment_sha256: None,
            caller_uid: None,
            gen_time: None,
            token_sha256: None,
            signature_sha256: None,
            user_ref: None,
            display: None,
            format: None,
            leaf_index: None,
        }
    }
}

/// RFC 3339 UTC with seconds (`2026-11-28T11:09:53Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Signature records and audit events on the store.
#[derive(Clone)]
pub struct SignatureStore {
    store: Store,
}

impl std::fmt::Debug for SignatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureStore").finish()
    }
}

impl SignatureStore {
    /// Over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        SignatureStore { store }
    }

    /// The writes that store a new record (expiring `unfetched` after creation).
    pub fn create_batch(
        &self,
        r: &SignatureRecord,
        unfetched: Duration,
    ) -> Result<Batch, PersistError> {
        let mut b = Batch::new();
        b.put(Cf::Signatures, id_key(&r.id), encode(r)?);
        b.put(
            Cf::Signatures,
            expiry_key(r.created + unfetched, &r.id),
            Vec::new(),
        );
        Ok(b)
    }

    /// The write of one audit event: a leaf of the audit ledger (indexed by its signatureId and by its
    /// `userRef` when it has them) and its time-ordered key, in whatever batch it is committed with.
    pub fn audit_batch(&self, e: &AuditEvent, at: SystemTime) -> Result<Batch, PersistError> {
        let json = serde_json::to_vec(e).map_err(|e| PersistError::Encode(e.to_string()))?;
        let mut b = Batch::new();
        b.append_leaf(
            self.store.audit_key(at).to_bytes().to_vec(),
            json,
            e.signature_id.as_deref().map(str::as_bytes),
            e.user_ref.as_deref().map(str::as_bytes),
        );
        Ok(b)
    }

    /// Commits `batch` and resolves once it is durable.
    pub async fn commit(&self, batch: Batch) -> Result<(), PersistError> {
        Ok(self.store.commit(batch).await?)
    }

    /// Reads a record.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<SignatureRecord>, PersistError> {
        match self.store.get(Cf::Signatures, &id_key(id))? {
            Some(v) => decode(*id, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Marks the first fetch: the record now expires `after_fetch` from `now` (durable on return).
    pub async fn mark_fetched(
        &self,
        r: &SignatureRecord,
        unfetched: Duration,
        after_fetch: Duration,
        now: SystemTime,
        audit: &AuditEvent,
    ) -> Result<SignatureRecord, PersistError> {
        let mut updated = r.clone();
        updated.fetched = Some(now);
        let mut b = Batch::new();
        b.put(Cf::Signatures, id_key(&r.id), encode(&updated)?);
        b.delete(Cf::Signatures, expiry_key(r.created + unfetched, &r.id));
        b.put(
            Cf::Signatures,
            expiry_key(now + after_fetch, &r.id),
            Vec::new(),
        );
        b.extend(self.audit_batch(audit, now)?);
        self.store.commit(b).await?;
        Ok(updated)
    }

    /// Removes up to `limit` records whose retention ended before `now`; returns how many.
    pub fn sweep_blocking(&self, now: SystemTime, limit: usize) -> Result<usize, PersistError> {
        let end = [BY_EXPIRY, &nanos(now).to_be_bytes()].concat();
        let due = self.store.scan_range(
            Cf::Signatures,
            BY_EXPIRY,
            Some(&end),
            Order::Ascending,
            limit,
        )?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut b = Batch::new();
        for (k, _) in &due {
            if let Some(id) = k.get(BY_EXPIRY.len() + 8..) {
                b.delete(Cf::Signatures, [BY_ID, id].concat());
            }
            b.delete(Cf::Signatures, k.clone());
        }
        self.store.commit_blocking(b)?;
        Ok(due.len())
    }

    /// Audit events with `from <= time < to`, oldest first, at most `limit`, starting after the
    /// cursor `after` (a key returned earlier). Returns the events and the cursor of the last.
    pub fn audit_range(
        &self,
        from: SystemTime,
        to: SystemTime,
        after: Option<AuditKey>,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, Option<AuditKey>), PersistError> {
        let start = match after {
            Some(k) => AuditKey {
                unix_nanos: k.unix_nanos,
                seq: k.seq.saturating_add(1),
            },
            None => AuditKey::lower_bound(from),
        }
        .to_bytes();
        let end = AuditKey::lower_bound(to).to_bytes();
        if start >= end {
            return Ok((Vec::new(), None));
        }
        let rows = self
            .store
            .scan_range(Cf::Audit, &start, Some(&end), Order::Ascending, limit)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for (k, v) in rows {
            let key = AuditKey::from_bytes(&k);
            // Ledger-era rows hold the leaf index; older rows the event itself.
            let (leaf_index, bytes) = match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(i) => {
                    let index = u64::from_be_bytes(i);
                    match self
                        .store
                        .get(Cf::Ledger, &crate::ledger::leaf_key(index))?
                    {
                        Some(leaf) => (Some(index), leaf),
                        None => {
                            tracing::error!(index, "audit key points at a missing ledger leaf");
                            last = key;
                            continue;
                        }
                    }
                }
                Err(_) => (None, v),
            };
            match serde_json::from_slice::<AuditEvent>(&bytes) {
                Ok(mut e) => {
                    e.leaf_index = leaf_index;
                    out.push(e)
                }
                // Rows written by other components (TSA, CA) with another shape are skipped
                // here rather than failing the whole page.
                Err(e) => tracing::warn!(error = %e, "audit row not readable as an event"),
            }
            last = key;
        }
        Ok((out, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u8, created: SystemTime) -> SignatureRecord {
        SignatureRecord {
            id: [id; 32],
            owner: "demo".into(),
            signature_type: SignatureType::OneTime,
            format: "CAdES".into(),
            hash_type: "SHA2-256".into(),
            digest: vec![1; 32],
            signature: vec![2; 10],
            certificate: vec![3; 10],
            timestamp: vec![4; 10],
            certificate_serial: "0a".into(),
            created,
            fetched: None,
        }
    }

    #[test]
    fn retention_removes_due_records_and_a_fetch_moves_the_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), Default::default()).unwrap();
        let sigs = SignatureStore::new(store.clone());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let unfetched = Duration::from_secs(100);
        let after_fetch = Duration::from_secs(1000);
        for id in [1u8, 2, 3] {
            store
                .commit_blocking(sigs.create_batch(&record(id, t0), unfetched).unwrap())
                .unwrap();
        }
        // Record 2 is fetched at t0 + 50: it now lives until t0 + 1050.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r2 = sigs.get(&[2; 32]).unwrap().unwrap();
        let fetched = rt
            .block_on(sigs.mark_fetched(
                &r2,
                unfetched,
                after_fetch,
                t0 + Duration::from_secs(50),
                &AuditEvent::new("signature.fetched", t0),
            ))
            .unwrap();
        assert_eq!(fetched.fetched, Some(t0 + Duration::from_secs(50)));
        assert_eq!(
            sigs.get(&[2; 32]).unwrap().unwrap().fetched,
            fetched.fetched
        );
        // Nothing is due before t0 + 100.
        assert_eq!(
            sigs.sweep_blocking(t0 + Duration::from_secs(99), 10)
                .unwrap(),
            0
        );
        // At t0 + 101 the two unfetched records go, the fetched one stays.
        assert_eq!(
            sigs.sweep_blocking(t0 + Duration::from_secs(101), 10)
                .unwrap(),
            2
        );
        assert!(sigs.get(&[1; 32]).unwrap().is_none());
        assert!(sigs.get(&[3; 32]).unwrap().is_none());
        assert!(sigs.get(&[2; 32]).unwrap().is_some());
        // The sweep is bounded by its limit.
        assert_eq!(
            sigs.sweep_blocking(t0 + Duration::from_secs(2000), 10)
                .unwrap(),
            1
        );
        assert!(sigs.get(&[2; 32]).unwrap().is_none());
        assert_eq!(
            sigs.sweep_blocking(t0 + Duration::from_secs(3000), 10)
                .unwrap(),
            0
        );
    }

    #[test]
    fn audit_pages_follow_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), Default::default()).unwrap();
        let sigs = SignatureStore::new(store.clone());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..5u64 {
            let at = t0 + Duration::from_secs(i);
            let mut e = AuditEvent::new("signature.created", at);
            e.tsa_serial = Some(i);
            store
                .commit_blocking(sigs.audit_batch(&e, at).unwrap())
                .unwrap();
        }
        let end = t0 + Duration::from_secs(10);
        let (p1, c1) = sigs.audit_range(t0, end, None, 2).unwrap();
        let (p2, c2) = sigs.audit_range(t0, end, c1, 2).unwrap();
        let (p3, _) = sigs.audit_range(t0, end, c2, 2).unwrap();
        let serials: Vec<_> = p1
            .iter()
            .chain(&p2)
            .chain(&p3)
            .map(|e| e.tsa_serial)
            .collect();
        assert_eq!(serials, (0..5).map(Some).collect::<Vec<_>>());
        // The time window is honoured.
        let (w, _) = sigs
            .audit_range(
                t0 + Duration::from_secs(1),
                t0 + Duration::from_secs(3),
                None,
                10,
            )
            .unwrap();
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn records_round_trip() {
        let r = SignatureRecord {
            id: [7; 32],
            owner: "demo".into(),
            signature_type: SignatureType::OneTime,
            format: "CAdES".into(),
            hash_type: "SHA2-256".into(),
            digest: vec![1; 32],
            signature: vec![2; 700],
            certificate: vec![3; 500],
            timestamp: vec![4; 900],
            certificate_serial: "0a".into(),
            created: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            fetched: None,
        };
        let v = encode(&r).unwrap();
        assert_eq!(decode(r.id, &v).unwrap(), r);
        assert!(decode(r.id, &v[..v.len() - 1]).is_err());
        assert!(decode(r.id, &[]).is_err());
    }
}
