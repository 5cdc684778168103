//! The audit ledger as the service publishes it: signed tree heads (audit key in the HSM), consistency
//! proofs, a transaction's proof bundle, leaves for monitors.
//!
//! Every audit event is already a ledger leaf (the store's writer appends it in the group commit of the
//! record it describes). This part only reads the ledger and signs tree heads. A tree head is recorded as
//! published (durably) before it is served, and a tree head smaller than, or not extending, the last published
//! one is refused: a truncated or rewritten ledger (or an old backup restored) is detected, not hidden.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use esigd_hsm::{HsmError, HsmSigner};
use esigd_ledger::{
    BundleEntry, ConsistencyProof, ProofBundle, SignedTreeHead, tree_head_signature_input,
};
use esigd_store::ledger::{LeafEntry, LedgerStore};
use esigd_store::persist::PersistError;
use esigd_store::signatures::AuditEvent;

use crate::clock::SharedClock;

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
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Over the ledger, signing with the audit key. Reads the last published head; logs an error when the
    /// ledger is smaller than it (tree heads are then refused until an operator acts).
    pub fn new(
        ledger: LedgerStore,
        signer: HsmSigner,
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
            clock,
            publishing: tokio::sync::Mutex::new(()),
            latest: Mutex::new(latest),
        })
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
