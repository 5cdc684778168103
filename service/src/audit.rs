//! The audit ledger as the service publishes it: signed tree heads (audit key in the HSM), consistency
//! proofs, a transaction's proof bundle, leaves for monitors.
//!
//! Every audit event is already a ledger leaf (the store's writer appends it in the group commit of the
//! record it describes). This part only reads the ledger and signs tree heads. A tree head is recorded as
//! published (durably) before it is served, and a tree head smaller than, or not extending, the last published
//! one is refused: a truncated or rewritten ledger (or an old backup restored) is detected, not hidden.
//!
//! ## Which events, and what happens when an audit write fails
//!
//! Every user activity is an event (GovStack 6.6), each with the request ID, the e-Service, the time, an
//! `outcome` (`message` on failure) and the transaction's `signatureId`. The browser signing flow draws its
//! signatureId when the session starts, so `session.started`, `session.method`, `login.*`, `payment.*`,
//! `certificate.issued`, `timestamp.issued`, `signature.created`, `callback.sent` and `signature.fetched` of
//! one transaction all share it and `GET /v1/audit/proof/{signatureId}` returns the whole chain.
//!
//! Events are written in the same durable batch as the record they describe (a signature, an issued
//! time-stamp token: the token is never answered without its leaf). Events with no record of their own are
//! a batch of their own ([`record`]); what happens when that write fails depends on the event:
//!
//! - security-relevant steps refuse: a login result (`login.succeeded` / `login.failed`) that cannot be
//!   logged ends the step with 503 (auditability is a requirement, a login nobody can audit is not used);
//! - the other page steps (`session.*`, `callback.sent`, `payment.checked`), `config.reloaded` and `admin.*`
//!   log the failure (error) and continue;
//! - an audit write never makes a signature fail on its own: the signature's events are in its batch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use esigd_hsm::{Hsm, HsmError, HsmSigner, KeyRef, SecretKind};
use esigd_ledger::{
    BundleEntry, ConsistencyProof, ProofBundle, SignedTreeHead, tree_head_signature_input,
};
use esigd_store::ledger::{LeafEntry, LedgerStore};
use esigd_store::persist::PersistError;
use esigd_store::signatures::AuditEvent;

use crate::clock::SharedClock;

/// Domain separation of citizens' audit references (the HMAC input is this, then the identifier).
const USER_DOMAIN: &[u8] = b"esigd/audit/user\0";

/// Citizens' pseudonymous references in audit events (`userRef`): HMAC-SHA-256, under a secret key that
/// never leaves the HSM (`audit.user_key`), of the citizen's personal identifier as it stands in the
/// `serialNumber` of their certificates' subject (ETSI EN 319 412-1 semantics identifier, e.g.
/// `PNOEE-38001085718`). The same person gets the same reference whichever flow signed in their name
/// (one-time certificate from their login, or the certificate of their own device) and whichever
/// Identity BB client they logged in through; the ledger holds neither a name nor the identifier, and
/// without the key a reference cannot be tested against a guessed identifier. Every method blocks on
/// PKCS#11.
#[derive(Clone)]
pub struct UserRefs {
    hsm: Hsm,
    key: KeyRef,
}

impl std::fmt::Debug for UserRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRefs").finish_non_exhaustive()
    }
}

impl UserRefs {
    /// Uses the HMAC key labelled `label`, creating it when it does not exist yet (first start).
    pub fn open(hsm: Hsm, label: &str) -> Result<UserRefs, HsmError> {
        match hsm.generate_secret_key(label, SecretKind::HmacSha256) {
            Ok(()) => tracing::info!(label, "created the audit user-reference key in the HSM"),
            Err(HsmError::KeyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(UserRefs {
            hsm,
            key: KeyRef::label(label),
        })
    }

    /// The reference of a personal identifier (the subject `serialNumber`; compared without case and
    /// surrounding spaces): 64 hex digits.
    pub fn of_identifier(&self, identifier: &str) -> Result<String, HsmError> {
        let mut data = USER_DOMAIN.to_vec();
        data.extend_from_slice(identifier.trim().to_ascii_uppercase().as_bytes());
        let mac = self.hsm.blind_index(&self.key, "audit.user_key", &data)?;
        if mac.len() != 32 {
            return Err(HsmError::BadTokenData(
                "HMAC-SHA-256 did not give 32 bytes".into(),
            ));
        }
        Ok(hex::encode(mac))
    }

    /// The reference of the person a certificate (DER) names, if its subject has a `serialNumber`.
    pub fn of_certificate(&self, der: &[u8]) -> Result<Option<String>, HsmError> {
        use x509_cert::der::Decode;
        let Ok(cert) = x509_cert::Certificate::from_der(der) else {
            return Ok(None);
        };
        personal_identifier(&cert.tbs_certificate.subject)
            .map(|id| self.of_identifier(&id))
            .transpose()
    }

    /// The reference of the person logged in with `claims`: the `serialNumber` the CA would put in their
    /// certificate (`mapping`: the CA's subject mapping), if the claims make one.
    pub fn of_claims(
        &self,
        claims: &esigd_pki::identity::IdentityClaims,
        mapping: &esigd_pki::identity::SubjectMapping,
    ) -> Result<Option<String>, HsmError> {
        match esigd_pki::identity::subject_from_claims(claims, mapping) {
            Ok(name) => personal_identifier(&name)
                .map(|id| self.of_identifier(&id))
                .transpose(),
            Err(_) => Ok(None),
        }
    }
}

/// The `serialNumber` (personal identifier) of a subject name, when it has one.
pub fn personal_identifier(name: &x509_cert::name::Name) -> Option<String> {
    use x509_cert::der::{Tag, Tagged};
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == esigd_pki::identity::ID_AT_SERIAL_NUMBER)
        .find_map(|atv| match atv.value.tag() {
            Tag::PrintableString | Tag::Utf8String => std::str::from_utf8(atv.value.value())
                .ok()
                .map(str::to_owned),
            _ => None,
        })
        .filter(|id| !id.trim().is_empty())
}

/// Appends `event` to the audit ledger as a batch of its own, durable on return (an event with no record
/// to go with: a page step, a login, a reload). The group commit amortises the fsync with other writes.
pub async fn record(
    store: &esigd_store::signatures::SignatureStore,
    event: &AuditEvent,
) -> Result<(), PersistError> {
    let batch = store.audit_batch(event, std::time::SystemTime::now())?;
    store.commit(batch).await
}

/// `payment.used`: a Payment BB token spent (or refused) right before a signature, on `base` (request ID,
/// e-Service, transaction already set). Logged and continued on an audit failure.
pub async fn payment_used(
    store: &esigd_store::signatures::SignatureStore,
    mut base: AuditEvent,
    payment: &crate::payment::Payment,
    consumed: &Result<(), crate::payment::PaymentError>,
) {
    base.payment_sha256 = Some(payment.jti_sha256());
    match consumed {
        Ok(()) => base.outcome = Some("success".into()),
        Err(err) => {
            base.outcome = Some("failure".into());
            base.message = Some(err.to_string());
        }
    }
    record_or_log(store, &base).await;
}

/// [`record`] for a step that continues when the audit write fails: the failure is logged (error).
/// Returns whether the event was logged.
pub async fn record_or_log(
    store: &esigd_store::signatures::SignatureStore,
    event: &AuditEvent,
) -> bool {
    match record(store, event).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(event = %event.event, error = %e, "audit event not logged");
            false
        }
    }
}

/// Largest page of leaves for monitors.
pub const MAX_ENTRIES: u64 = 1000;

/// Why a ledger request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The ledger holds fewer leaves than a tree head already published.
    #[error(
        "the audit ledger holds {size} leaves but a tree head of {published} leaves was published: the ledger was truncated or an older backup was restored; refusing to publish a smaller tree head"
    )]
    Truncated {
        /// Size of the last published head.
        published: u64,
        /// Leaves in the ledger now.
        size: u64,
    },
    /// The stored tree no longer has the root of the last published head.
    #[error(
        "the audit ledger's first {size} leaves no longer hash to the root published for that size: the ledger was changed; refusing to publish a tree head"
    )]
    Rewritten {
        /// Size of the last published head.
        size: u64,
    },
    /// A tree size, leaf range or transaction the ledger cannot answer for; names the parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing logged under that signatureId.
    #[error("no audit event is logged for signatureId {0}")]
    UnknownTransaction(String),
    /// The store failed or is busy.
    #[error(transparent)]
    Store(#[from] PersistError),
    /// The audit public key cannot be encoded.
    #[error("audit.key: the public key cannot be encoded: {0}")]
    Key(String),
    /// The HSM refused or is unavailable.
    #[error("signing the tree head with the audit key (audit.key) failed: {0}")]
    Hsm(#[from] HsmError),
}

/// Signed tree heads and proofs over the store's ledger.
pub struct AuditLog {
    ledger: LedgerStore,
    signer: HsmSigner,
    clock: SharedClock,
    /// Serialises publication so tree heads and their timestamps only grow.
    publishing: tokio::sync::Mutex<()>,
    latest: Mutex<Option<SignedTreeHead>>,
    public_pem: String,
    users: UserRefs,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Over the ledger, signing with the audit key, with the citizens' references made by `users`. Reads
    /// the last published head; logs an error when the ledger is smaller than it (tree heads are then
    /// refused until an operator acts).
    pub fn new(
        ledger: LedgerStore,
        signer: HsmSigner,
        users: UserRefs,
        clock: SharedClock,
    ) -> Result<Self, AuditError> {
        let latest = ledger.published()?;
        if let Some(p) = &latest
            && p.tree_size > ledger.size()
        {
            tracing::error!(
                published = p.tree_size,
                size = ledger.size(),
                "audit ledger smaller than its last published tree head: tree heads are refused"
            );
        }
        let public_pem = esigd_pki::pem::to_pem("PUBLIC KEY", signer.public_key().spki_der())
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(AuditLog {
            public_pem,
            ledger,
            signer,
            users,
            clock,
            publishing: tokio::sync::Mutex::new(()),
            latest: Mutex::new(latest),
        })
    }

    /// The citizens' references (`userRef`) of audit events.
    pub fn users(&self) -> &UserRefs {
        &self.users
    }

    /// The audit public key (SubjectPublicKeyInfo, PEM) that verifies tree heads.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Leaves in the ledger now.
    pub fn size(&self) -> u64 {
        self.ledger.size()
    }

    fn cached(&self) -> Option<SignedTreeHead> {
        self.latest.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// Signs and publishes a tree head over every leaf written so far (durable before it is returned).
    pub async fn publish(&self) -> Result<SignedTreeHead, AuditError> {
        let _one = self.publishing.lock().await;
        let size = self.ledger.size();
        let previous = self.cached();
        let root = self.ledger.root(size)?;
        if let Some(p) = &previous {
            if p.tree_size > size {
                return Err(AuditError::Truncated {
                    published: p.tree_size,
                    size,
                });
            }
            if self.ledger.root(p.tree_size)? != p.root_hash {
                return Err(AuditError::Rewritten { size: p.tree_size });
            }
        }
        let now_ms = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let timestamp = now_ms.max(previous.as_ref().map_or(0, |p| p.timestamp));
        let input = tree_head_signature_input(size, timestamp, &root);
        let signer = self.signer.clone();
        let signature = tokio::task::spawn_blocking(move || signer.sign_message(&input))
            .await
            .map_err(|e| AuditError::BadRequest(format!("signing task failed: {e}")))??;
        let sth = SignedTreeHead {
            tree_size: size,
            timestamp,
            root_hash: root,
            signature: signature.as_bytes().to_vec(),
        };
        self.ledger.publish(&sth).await?;
        if let Ok(mut g) = self.latest.lock() {
            *g = Some(sth.clone());
        }
        tracing::info!(tree_size = size, "audit tree head published");
        Ok(sth)
    }

    /// The latest published tree head (publishing the first one if none was).
    pub async fn latest(&self) -> Result<SignedTreeHead, AuditError> {
        match self.cached() {
            Some(sth) if sth.tree_size <= self.ledger.size() => Ok(sth),
            Some(sth) => Err(AuditError::Truncated {
                published: sth.tree_size,
                size: self.ledger.size(),
            }),
            None => self.publish().await,
        }
    }

    /// The published head of `size` leaves, or the latest.
    pub async fn head(&self, size: Option<u64>) -> Result<SignedTreeHead, AuditError> {
        let latest = self.latest().await?;
        match size {
            None => Ok(latest),
            Some(s) if s == latest.tree_size => Ok(latest),
            Some(s) => self.ledger.head(s)?.ok_or_else(|| {
                AuditError::BadRequest(format!(
                    "treeSize {s}: no tree head of that size was published (the latest has {})",
                    latest.tree_size
                ))
            }),
        }
    }

    /// The consistency proof between two published tree sizes.
    pub fn consistency(&self, first: u64, second: u64) -> Result<ConsistencyProof, AuditError> {
        if first == 0 || first > second {
            return Err(AuditError::BadRequest(format!(
                "first ({first}) must be at least 1 and at most second ({second})"
            )));
        }
        if second > self.ledger.size() {
            return Err(AuditError::BadRequest(format!(
                "second ({second}) is above the ledger's {} leaves",
                self.ledger.size()
            )));
        }
        Ok(self.ledger.consistency(first, second)?)
    }

    /// Leaves `[start, end)`, at most [`MAX_ENTRIES`].
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<LeafEntry>, AuditError> {
        if end <= start {
            return Err(AuditError::BadRequest(format!(
                "end ({end}) must be above start ({start})"
            )));
        }
        let end = end.min(start.saturating_add(MAX_ENTRIES));
        Ok(self.ledger.leaves(start, end, MAX_ENTRIES as usize)?)
    }

    /// Every event logged for `signature_id`, decoded (for ownership checks), with its leaf.
    pub fn transaction_events(
        &self,
        signature_id: &str,
        size: u64,
    ) -> Result<Vec<(u64, Vec<u8>, AuditEvent)>, AuditError> {
        let mut out = Vec::new();
        for index in self.ledger.transaction(signature_id.as_bytes(), size)? {
            if let Some(leaf) = self.ledger.leaf(index)? {
                let event: AuditEvent = serde_json::from_slice(&leaf).map_err(|e| {
                    AuditError::BadRequest(format!("leaf {index} is not an audit event: {e}"))
                })?;
                out.push((index, leaf, event));
            }
        }
        Ok(out)
    }

    /// The inclusion proofs of every event of `signature_id` under the head of `size` leaves (or the
    /// latest head). `owner`, when given, must be the e-Service of every event.
    pub async fn bundle(
        &self,
        signature_id: &str,
        size: Option<u64>,
        owner: Option<&str>,
    ) -> Result<ProofBundle, AuditError> {
        let sth = self.head(size).await?;
        let events = self.transaction_events(signature_id, sth.tree_size)?;
        if events.is_empty()
            || owner.is_some_and(|o| {
                events
                    .iter()
                    .any(|(_, _, e)| e.eservice.as_deref() != Some(o))
            })
        {
            // Another e-Service's transaction looks like an unknown one.
            return Err(AuditError::UnknownTransaction(signature_id.into()));
        }
        let mut entries = Vec::with_capacity(events.len());
        for (index, leaf, _) in events {
            entries.push(BundleEntry {
                leaf_index: index,
                leaf,
                audit_path: self.ledger.inclusion(index, sth.tree_size)?,
            });
        }
        Ok(ProofBundle {
            signature_id: signature_id.into(),
            sth,
            entries,
        })
    }

    /// The events about the citizen `user_ref`, newest first: at most `limit`, all before leaf `before`
    /// (the next page). Reads the ledger's index of that reference, never scans (blocking).
    pub fn user_events(
        &self,
        user_ref: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        let mut out = Vec::new();
        for index in self.ledger.by_subject(user_ref.as_bytes(), limit, before)? {
            let Some(leaf) = self.ledger.leaf(index)? else {
                continue;
            };
            match serde_json::from_slice::<AuditEvent>(&leaf) {
                // The index and the leaf agree, or the leaf is not listed.
                Ok(mut e) if e.user_ref.as_deref() == Some(user_ref) => {
                    e.leaf_index = Some(index);
                    out.push(e);
                }
                Ok(_) => tracing::error!(index, "a user index row points at another user's leaf"),
                Err(e) => tracing::warn!(index, error = %e, "leaf not readable as an event"),
            }
        }
        Ok(out)
    }

    /// The proof bundle of `signature_id` for the citizen `user_ref`: only a transaction whose events name
    /// that citizen (at least one carries `user_ref`, none carries another) — any other looks unknown. When
    /// the latest published tree head does not cover every event of the transaction yet, a new one is
    /// published first, so the bundle is complete.
    pub async fn bundle_for_user(
        &self,
        signature_id: &str,
        user_ref: &str,
    ) -> Result<ProofBundle, AuditError> {
        let events = self.transaction_events(signature_id, self.ledger.size())?;
        let theirs = events
            .iter()
            .any(|(_, _, e)| e.user_ref.as_deref() == Some(user_ref))
            && events
                .iter()
                .all(|(_, _, e)| e.user_ref.as_deref().is_none_or(|r| r == user_ref));
        if !theirs {
            return Err(AuditError::UnknownTransaction(signature_id.into()));
        }
        let newest = events.iter().map(|(i, _, _)| *i).max().unwrap_or(0);
        if self.latest().await?.tree_size <= newest {
            self.publish().await?;
        }
        let bundle = self.bundle(signature_id, None, None).await?;
        // What is served is checked again, entry by entry.
        let ok = bundle.entries.iter().all(|entry| {
            serde_json::from_slice::<AuditEvent>(&entry.leaf)
                .is_ok_and(|e| e.user_ref.as_deref().is_none_or(|r| r == user_ref))
        });
        if !ok {
            return Err(AuditError::UnknownTransaction(signature_id.into()));
        }
        Ok(bundle)
    }

    /// Publishes a tree head every `interval` (when the ledger grew, or at least every ten intervals so that
    /// monitors see a fresh timestamp) until `shutdown` resolves.
    pub async fn run_publisher(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle = 0u32;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let grew = self
                .cached()
                .is_none_or(|p| p.tree_size < self.ledger.size());
            idle += 1;
            if !grew && idle < 10 {
                continue;
            }
            idle = 0;
            if let Err(e) = self.publish().await {
                tracing::error!(error = %e, "publishing the audit tree head failed");
            }
        }
    }
}

#[cfg(test)]
mod user_ref_tests {
    use super::*;
    use esigd_pki::identity::{IdentityClaims, SubjectMapping};
    use esigd_store::signatures::SignatureStore;

    fn claims(id: Option<&str>) -> IdentityClaims {
        IdentityClaims {
            name: Some("Mari Maasikas".into()),
            personal_identifier: id.map(str::to_owned),
            country: Some("EE".into()),
            ..Default::default()
        }
    }

    #[test]
    fn user_refs_are_stable_distinct_hex_and_keep_the_identifier_out_of_the_ledger() {
        let token = esigd_hsm::testing::TestToken::create();
        let hsm = Hsm::open(token.config()).unwrap();
        let refs = UserRefs::open(hsm.clone(), "audit-user-key").unwrap();
        // The key is made once and found again: the same person, the same reference.
        let again = UserRefs::open(hsm.clone(), "audit-user-key").unwrap();
        let mari = refs.of_identifier("PNOEE-49005170001").unwrap();
        assert_eq!(again.of_identifier("PNOEE-49005170001").unwrap(), mari);
        assert_eq!(refs.of_identifier(" pnoee-49005170001 ").unwrap(), mari);
        // 32 bytes, lowercase hex.
        assert_eq!(mari.len(), 64);
        assert!(
            mari.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(hex::decode(&mari).unwrap().len(), 32);
        // Another person, another reference; another key, other references.
        let juri = refs.of_identifier("PNOEE-38501020002").unwrap();
        assert_ne!(juri, mari);
        let other_key = UserRefs::open(hsm, "another-user-key").unwrap();
        assert_ne!(other_key.of_identifier("PNOEE-49005170001").unwrap(), mari);
        // From the login's claims: the serialNumber the CA would write (PNO + country + identifier).
        let mapping = SubjectMapping::default();
        assert_eq!(
            refs.of_claims(&claims(Some("49005170001")), &mapping)
                .unwrap(),
            Some(mari.clone())
        );
        assert_eq!(
            refs.of_claims(&claims(Some("PNOEE-49005170001")), &mapping)
                .unwrap(),
            Some(mari.clone())
        );
        // No identifier, no reference.
        let lenient = SubjectMapping {
            require_identifier: false,
            ..SubjectMapping::default()
        };
        assert_eq!(refs.of_claims(&claims(None), &lenient).unwrap(), None);
        assert_eq!(refs.of_claims(&claims(None), &mapping).unwrap(), None);

        // The leaf carries the reference, never the identifier or the name; the index finds it.
        let dir = tempfile::tempdir().unwrap();
        let store = esigd_store::Store::open(dir.path().join("db"), Default::default()).unwrap();
        let sigs = SignatureStore::new(store.clone());
        let mut e = AuditEvent::new("signature.created", std::time::SystemTime::now());
        e.signature_id = Some("ab".repeat(32));
        e.user_ref = Some(mari.clone());
        e.display = Some("Order 42".into());
        store
            .commit_blocking(sigs.audit_batch(&e, std::time::SystemTime::now()).unwrap())
            .unwrap();
        let ledger = LedgerStore::new(store.clone());
        let leaf = String::from_utf8(ledger.leaf(0).unwrap().unwrap()).unwrap();
        assert!(leaf.contains(&format!("\"userRef\":\"{mari}\"")), "{leaf}");
        for personal in ["49005170001", "PNOEE", "Mari", "Maasikas"] {
            assert!(!leaf.contains(personal), "{personal} in {leaf}");
        }
        assert_eq!(
            ledger.by_subject(mari.as_bytes(), 10, None).unwrap(),
            vec![0]
        );
        assert!(
            ledger
                .by_subject(juri.as_bytes(), 10, None)
                .unwrap()
                .is_empty()
        );
    }
}
