//! Time-stamp serial numbers, unique across restarts and crashes (RFC 3161 §2.4.2: "unique for each
//! TimeStampToken issued by a given TSA").
//!
//! # Block reservation and why it is crash-safe
//!
//! The appliance persists a single number, the *reservation mark* `R`: every serial `< R` may already
//! have been handed out. [`BlockSerials`] keeps `next` and `high` in memory and maintains the invariant
//!
//! > every serial handed out is `< high`, and `high` was durably stored **before** any serial in
//! > `[old high, high)` was handed out.
//!
//! * On start ([`BlockSerials::open`]) it reads `R`, stores `R + block` durably, and only then starts
//!   handing out `R, R+1, ...`. Nothing below `R` is ever handed out again.
//! * When the remaining serials in the block drop to `low_water`, it stores `high + block` durably first
//!   and then raises `high` in memory. If that write fails, serials remaining in the current block are
//!   still used (they are covered by the previous durable write) and the write is retried on the next
//!   call; only when the block is exhausted does `next_serial` fail (→ systemFailure, no token).
//! * After a crash, `R` on disk is ≥ every serial that was handed out (invariant), so the restart
//!   continues at `R`. The unused rest of the last block is skipped, never reused: serials have gaps but
//!   no duplicates. Gaps are harmless (RFC 3161 only requires uniqueness).
//!
//! Requirements on the [`SerialStore`]: `store_reserved` must be durable when it returns (fsync /
//! RocksDB WAL sync), and the stored value must never go backwards — restoring an older backup of the
//! store would break uniqueness (an operator procedure must add a safety margin after a restore).

use std::sync::Mutex;

/// Errors of serial allocation.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The persistent store failed.
    #[error("serial store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The serial space is exhausted.
    #[error("serial number space exhausted")]
    Exhausted,
    /// Bad configuration (block size).
    #[error("invalid serial configuration: {0}")]
    Config(&'static str),
    /// The internal lock was poisoned by a panic in another thread.
    #[error("serial allocator lock poisoned")]
    Poisoned,
}

/// Hands out unique, positive serial numbers.
pub trait SerialSource: Send + Sync {
    /// The next serial number (never returned before, also not before a restart).
    fn next_serial(&self) -> Result<u64, SerialError>;
}

impl<T: SerialSource + ?Sized> SerialSource for std::sync::Arc<T> {
    fn next_serial(&self) -> Result<u64, SerialError> {
        (**self).next_serial()
    }
}

/// Durable storage of the reservation mark, implemented by the appliance.
pub trait SerialStore: Send + Sync {
    /// The stored reservation mark (0 if never stored).
    fn load_reserved(&self) -> Result<u64, SerialError>;
    /// Durably stores a new, larger reservation mark. Must not return before the value is on stable storage.
    fn store_reserved(&self, mark: u64) -> Result<(), SerialError>;
}

#[derive(Debug)]
struct BlockState {
    next: u64,
    high: u64,
}

/// [`SerialSource`] reserving serials in durable blocks (see the module docs for the crash-safety argument).
#[derive(Debug)]
pub struct BlockSerials<St> {
    store: St,
    block: u64,
    low_water: u64,
    state: Mutex<BlockState>,
}

impl<St: SerialStore> BlockSerials<St> {
    /// Opens the allocator: reads the mark, durably reserves the first block after it.
    /// `block` ≥ 2; the next block is reserved when at most `block / 4` serials remain.
    pub fn open(store: St, block: u64) -> Result<Self, SerialError> {
        if block < 2 {
            return Err(SerialError::Config("serial block size must be at least 2"));
        }
        // Serial 0 is avoided: some clients treat it as "absent".
        let start = store.load_reserved()?.max(1);
        let high = start.checked_add(block).ok_or(SerialError::Exhausted)?;
        store.store_reserved(high)?;
        Ok(Self {
            store,
            block,
            low_water: block / 4,
            state: Mutex::new(BlockState { next: start, high }),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<St: SerialStore> SerialSource for BlockSerials<St> {
    fn next_serial(&self) -> Result<u64, SerialError> {
        let mut st = self.state.lock().map_err(|_| SerialError::Poisoned)?;
        if st.high - st.next <= self.low_water {
            let new_high = st
                .high
                .checked_add(self.block)
                .ok_or(SerialError::Exhausted);
            let stored = new_high.and_then(|h| self.store.store_reserved(h).map(|()| h));
            match stored {
                // Durable first, then raise the in-memory bound.
                Ok(h) => st.high = h,
                Err(e) if st.next >= st.high => return Err(e),
                Err(e) => tracing::warn!(error = %e, remaining = st.high - st.next,
                    "reserving the next serial block failed; continuing inside the current block"),
            }
        }
        let s = st.next;
        st.next += 1;
        Ok(s)
    }
}

/// In-memory [`SerialStore`] for tests; can be told to fail.
#[derive(Debug, Default)]
pub struct MemorySerialStore {
    mark: Mutex<u64>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemorySerialStore {
    /// A store with the given mark.
    pub fn with_mark(mark: u64) -> Self {
        Self {
            mark: Mutex::new(mark),
            fail: Default::default(),
        }
    }

    /// Makes subsequent `store_reserved` calls fail (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Current mark.
    pub fn mark(&self) -> u64 {
        self.mark.lock().map(|m| *m).unwrap_or(0)
    }
}

impl SerialStore for MemorySerialStore {
    fn load_reserved(&self) -> Result<u64, SerialError> {
        self.mark
            .lock()
            .map(|m| *m)
            .map_err(|_| SerialError::Poisoned)
    }

    fn store_reserved(&self, mark: u64) -> Result<(), SerialError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SerialError::Store("simulated store failure".into()));
        }
        let mut m = self.mark.lock().map_err(|_| SerialError::Poisoned)?;
        if mark < *m {
            return Err(SerialError::Store(
                "reservation mark must not go backwards".into(),
            ));
        }
        *m = mark;
        Ok(())
    }
}

impl<T: SerialStore + ?Sized> SerialStore for std::sync::Arc<T> {
    fn load_reserved(&self) -> Result<u64, SerialError> {
        (**self).load_reserved()
    }
    fn store_reserved(&self, mark: u64) -> Result<(), SerialError> {
        (**self).store_reserved(mark)
    }
}

/// Simple in-memory counter (tests only: not unique across restarts).
#[derive(Debug)]
pub struct InMemorySerials(std::sync::atomic::AtomicU64);

impl InMemorySerials {
    /// Starts at `first`.
    pub fn starting_at(first: u64) -> Self {
        Self(std::sync::atomic::AtomicU64::new(first))
    }
}

impl SerialSource for InMemorySerials {
    fn next_serial(&self) -> Result<u64, SerialError> {
        let v = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if v == u64::MAX {
            return Err(SerialError::Exhausted);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn block_reservation_is_durable_before_use() {
        let store = Arc::new(MemorySerialStore::default());
        let s = BlockSerials::open(store.clone(), 8).unwrap();
        assert_eq!(store.mark(), 9); // [1, 9) reserved before the first serial
        for expected in 1..=6 {
            let v = s.next_serial().unwrap();
            assert_eq!(v, expected);
            assert!(
                v < store.mark(),
                "serial {v} handed out beyond the durable mark"
            );
        }
        // low water (2) reached: next block reserved.
        s.next_serial().unwrap();
        assert_eq!(store.mark(), 17);
    }

    #[test]
    fn crash_skips_rest_of_block_never_reuses() {
        let store = Arc::new(MemorySerialStore::default());
        let mut seen = HashSet::new();
        for _restart in 0..5 {
            let s = BlockSerials::open(store.clone(), 100).unwrap();
            for _ in 0..37 {
                let v = s.next_serial().unwrap();
                assert!(seen.insert(v), "serial {v} reused after restart");
                assert!(v < store.mark());
            }
            // drop without any shutdown hook = crash
        }
        assert_eq!(seen.len(), 5 * 37);
    }

    #[test]
    fn store_failure_uses_remaining_block_then_fails() {
        let store = Arc::new(MemorySerialStore::default());
        let s = BlockSerials::open(store.clone(), 8).unwrap();
        store.set_failing(true);
        let got: Vec<_> = (0..8).map(|_| s.next_serial()).collect();
        // serials 1..=8 are covered by the durable mark 9.
        assert_eq!(
            got.iter()
                .filter_map(|r| r.as_ref().ok())
                .copied()
                .collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
        assert!(matches!(s.next_serial(), Err(SerialError::Store(_))));
        store.set_failing(false);
        assert_eq!(s.next_serial().unwrap(), 9);
        assert!(store.mark() > 9);
    }

    #[test]
    fn open_fails_when_store_fails_and_config_checked() {
        let store = MemorySerialStore::default();
        store.set_failing(true);
        assert!(BlockSerials::open(store, 8).is_err());
        assert!(matches!(
            BlockSerials::open(MemorySerialStore::default(), 1),
            Err(SerialError::Config(_))
        ));
        assert!(matches!(
            BlockSerials::open(MemorySerialStore::with_mark(u64::MAX - 1), 8),
            Err(SerialError::Exhausted)
        ));
    }

    #[test]
    fn concurrent_unique() {
        let s = Arc::new(BlockSerials::open(MemorySerialStore::default(), 16).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| s.next_serial().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for v in h.join().unwrap() {
                assert!(all.insert(v));
            }
        }
        assert_eq!(all.len(), 2000);
    }
}
