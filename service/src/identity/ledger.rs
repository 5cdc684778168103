//! Single use of ID tokens on the e-Service API: a durable record of each token spent on a
//! signature, so one token makes one signature, not any number until it expires.
//!
//! Like the payment tokens ([`crate::payment`]): a key in the store's `meta` column family under
//! the prefix `idt/`, checked and written under one lock and committed durably before the
//! signature is made. The key is `idt/` + the Unix second after which the token can no longer
//! pass verification (`exp` + `identity.clock_skew` + 1, big-endian, so records sort by expiry) +
//! SHA-256 of the token (the token itself is never stored or logged). [`IdTokenLedger::sweep_blocking`]
//! removes the records that expired.

use std::time::Duration;

use esigd_store::{Batch, Cf, Order, Store};
use sha2::{Digest, Sha256};

use super::{IdentityError, VerifiedToken};
use crate::clock::SharedClock;

const PREFIX: &[u8] = b"idt/";

/// The durable record of spent ID tokens.
pub struct IdTokenLedger {
    store: Store,
    lock: tokio::sync::Mutex<()>,
    pub(super) clock: SharedClock,
    skew: Duration,
}

impl std::fmt::Debug for IdTokenLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenLedger").finish_non_exhaustive()
    }
}

/// A verified ID token as the ledger knows it: the record key (expiry + hash), never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    key: Vec<u8>,
}

impl IdTokenLedger {
    /// A ledger in `store`; `clock` decides which records expired, `clock_skew`
    /// (`identity.clock_skew`) is the leeway the verifier grants after `exp`.
    pub fn new(store: Store, clock: SharedClock, clock_skew: Duration) -> Self {
        IdTokenLedger {
            store,
            lock: tokio::sync::Mutex::new(()),
            clock,
            skew: clock_skew,
        }
    }

    /// The record key of `token` (verified; its `exp` is in `verified.claims`).
    pub fn token_use(
        &self,
        token: &str,
        verified: &VerifiedToken,
    ) -> Result<TokenUse, IdentityError> {
        let exp = match verified.claims.get("exp") {
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64)),
            None => None,
        }
        .ok_or_else(|| IdentityError::Rejected("claim exp missing or not a number".into()))?;
        // The token fails verification once `now > exp + skew`; keep the record a second longer.
        let until = exp.saturating_add(self.skew.as_secs()).saturating_add(1);
        let key = expiring_key(
            PREFIX,
            until,
            Sha256::digest(token.trim().as_bytes()).as_slice(),
        );
        Ok(TokenUse { key })
    }

    async fn is_used(&self, u: &TokenUse) -> Result<bool, IdentityError> {
        let store = self.store.clone();
        let key = u.key.clone();
        Ok(
            tokio::task::spawn_blocking(move || store.get(Cf::Meta, &key))
                .await
                .map_err(|e| IdentityError::Store(e.to_string()))?
                .map_err(|e| IdentityError::Store(e.to_string()))?
                .is_some(),
        )
    }

    /// [`IdentityError::Reused`] if the token was spent already; does not spend it.
    pub async fn check(&self, u: &TokenUse) -> Result<(), IdentityError> {
        if self.is_used(u).await? {
            return Err(IdentityError::Reused);
        }
        Ok(())
    }

    /// Spends the token (durable when this returns `Ok`); [`IdentityError::Reused`] if it was
    /// spent before, also by a concurrent request.
    pub async fn consume(&self, u: &TokenUse) -> Result<(), IdentityError> {
        // Check and record under one lock, so two requests cannot both use one token.
        let _g = self.lock.lock().await;
        self.check(u).await?;
        let mut b = Batch::new();
        b.put(Cf::Meta, u.key.clone(), Vec::new());
        self.store
            .commit(b)
            .await
            .map_err(|e| IdentityError::Store(e.to_string()))
    }

    /// Gives a spent token back when it certainly made no signature.
    pub async fn release(&self, u: &TokenUse) {
        let _g = self.lock.lock().await;
        let mut b = Batch::new();
        b.delete(Cf::Meta, u.key.clone());
        if let Err(e) = self.store.commit(b).await {
            tracing::warn!(error = %e, "a spent ID token could not be given back after a failed signature");
        }
    }

    /// Removes up to `limit` records of tokens that can no longer pass verification (expired by
    /// the ledger's clock); returns how many. Blocking: call from `spawn_blocking`.
    pub fn sweep_blocking(&self, limit: usize) -> Result<usize, IdentityError> {
        sweep_expired_blocking(&self.store, PREFIX, self.clock.unix_now(), limit, |_| None)
            .map_err(|e| IdentityError::Store(e.to_string()))
    }
}

/// The key of an expiring single-use record (spent ID tokens here, spent payment tokens in
/// [`crate::payment`]): `prefix` + `until`, the Unix second from which the record may go
/// (big-endian, so the records sort by expiry) + `id`.
pub(crate) fn expiring_key(prefix: &[u8], until: u64, id: &[u8]) -> Vec<u8> {
    [prefix, &until.to_be_bytes(), id].concat()
}

/// Removes up to `limit` records under `prefix` (keys made by [`expiring_key`]) whose `until`
/// is before `now`, each with the key `also(id)` names if any (a lookup key kept beside it);
/// returns how many records. Blocking: call from `spawn_blocking`.
pub(crate) fn sweep_expired_blocking(
    store: &Store,
    prefix: &[u8],
    now: u64,
    limit: usize,
    also: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<usize, esigd_store::StoreError> {
    let end = expiring_key(prefix, now, &[]);
    let due = store.scan_range(Cf::Meta, prefix, Some(&end), Order::Ascending, limit)?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut b = Batch::new();
    for (k, _) in &due {
        if let Some(other) = k.get(prefix.len() + 8..).and_then(&also) {
            b.delete(Cf::Meta, other);
        }
        b.delete(Cf::Meta, k.clone());
    }
    store.commit_blocking(b)?;
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use esigd_store::StoreOptions;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug)]
    struct FixedClock(AtomicU64);
    impl Clock for FixedClock {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn verified(exp: u64) -> VerifiedToken {
        let serde_json::Value::Object(claims) = serde_json::json!({"sub": "s", "exp": exp}) else {
            unreachable!()
        };
        VerifiedToken {
            subject: "s".into(),
            claims,
        }
    }

    async fn sweep(l: &Arc<IdTokenLedger>) -> usize {
        let l = l.clone();
        tokio::task::spawn_blocking(move || l.sweep_blocking(100))
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_token_is_spent_once_given_back_on_release_and_swept_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
        let ledger = IdTokenLedger::new(store.clone(), clock.clone(), Duration::from_secs(30));
        let a = ledger.token_use("token-a", &verified(1_100)).unwrap();
        let b = ledger.token_use("token-b", &verified(5_000)).unwrap();

        ledger.check(&a).await.unwrap();
        ledger.consume(&a).await.unwrap();
        assert!(matches!(ledger.check(&a).await, Err(IdentityError::Reused)));
        assert!(matches!(
            ledger.consume(&a).await,
            Err(IdentityError::Reused)
        ));
        // Surrounding whitespace does not make another token.
        let a2 = ledger.token_use(" token-a\n", &verified(1_100)).unwrap();
        assert!(matches!(
            ledger.consume(&a2).await,
            Err(IdentityError::Reused)
        ));

        // Concurrent spends of one token: exactly one wins.
        let ledger = Arc::new(ledger);
        let spends: Vec<_> = (0..8)
            .map(|_| {
                let (l, b) = (ledger.clone(), b.clone());
                tokio::spawn(async move { l.consume(&b).await.is_ok() })
            })
            .collect();
        let mut won = 0;
        for s in spends {
            won += usize::from(s.await.unwrap());
        }
        assert_eq!(won, 1);

        // Given back: usable again, once.
        ledger.release(&b).await;
        ledger.consume(&b).await.unwrap();

        // The record outlives exp + skew, then the sweep removes it (and only it).
        clock.0.store(1_100 + 30, Ordering::SeqCst);
        assert_eq!(sweep(&ledger).await, 0);
        clock.0.store(1_100 + 32, Ordering::SeqCst);
        assert_eq!(sweep(&ledger).await, 1);
        ledger.check(&a).await.unwrap();
        assert!(matches!(ledger.check(&b).await, Err(IdentityError::Reused)));
        // Other meta keys (the payment records) are never touched.
        let mut other = Batch::new();
        other.put(Cf::Meta, b"pay/x".to_vec(), Vec::new());
        store.commit(other).await.unwrap();
        clock.0.store(u64::MAX / 2, Ordering::SeqCst);
        assert_eq!(sweep(&ledger).await, 1);
        assert!(store.get(Cf::Meta, b"pay/x").unwrap().is_some());
    }
}
