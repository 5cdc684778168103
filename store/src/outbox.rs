//! The durable outbox of notifications (`outbox` column family).
//!
//! A notification is written as a row in the same atomic batch as the record it describes (a
//! signature, an audit event), so that it exists if and only if that record does; a delivery
//! worker then reads the rows that are due, delivers them at least once and deletes each row
//! once delivered. Attempts and the next try time are kept in the row.
//!
//! # Key layout
//!
//! | key                                          | value       |
//! |----------------------------------------------|-------------|
//! | next try (u64 BE Unix ms) + id (16 bytes)     | [`OutboxRow`] |
//!
//! Keys sort by due time, so [`Outbox::due`] is one range scan from the start up to now and
//! never reads a row that is not due. Rescheduling a row moves it (delete + put in one batch).
//!
//! Value: `[1][u32 BE attempts][u64 BE created Unix ms][payload]`; the payload is opaque here
//! (the service's JSON). It may hold personal contact data (an e-mail address, a phone number):
//! nothing in this module logs it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::persist::PersistError;
use crate::{Batch, Cf, Order, Store};

const FORMAT_V1: u8 = 1;
const KEY_LEN: usize = 8 + 16;

/// One notification waiting for delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Unique, stable for the life of the notification (the receivers' `Idempotency-Key`).
    pub id: [u8; 16],
    /// When the next delivery attempt is due.
    pub next_try: SystemTime,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the notification was made.
    pub created: SystemTime,
    /// What to deliver (opaque; may hold contact data: never log it).
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for OutboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload may carry an e-mail address or a phone number.
        f.debug_struct("OutboxRow")
            .field("id", &hex::encode(self.id))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl OutboxRow {
    /// Lowercase hex id.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    fn key(&self) -> Vec<u8> {
        key(self.next_try, &self.id)
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(13 + self.payload.len());
        v.push(FORMAT_V1);
        v.extend_from_slice(&self.attempts.to_be_bytes());
        v.extend_from_slice(&millis(self.created).to_be_bytes());
        v.extend_from_slice(&self.payload);
        v
    }

    fn decode(k: &[u8], v: &[u8]) -> Result<OutboxRow, PersistError> {
        let corrupt = |m: &str| PersistError::corrupt(Cf::Outbox, k, m);
        if k.len() != KEY_LEN {
            return Err(corrupt("key is not 24 bytes"));
        }
        let next: [u8; 8] = k[..8].try_into().map_err(|_| corrupt("key"))?;
        let id: [u8; 16] = k[8..].try_into().map_err(|_| corrupt("key"))?;
        if v.first() != Some(&FORMAT_V1) {
            return Err(corrupt(
                "unknown format version (written by a newer esigd?)",
            ));
        }
        let attempts: [u8; 4] = v
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated"))?;
        let created: [u8; 8] = v
            .get(5..13)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated"))?;
        Ok(OutboxRow {
            id,
            next_try: from_millis(u64::from_be_bytes(next)),
            attempts: u32::from_be_bytes(attempts),
            created: from_millis(u64::from_be_bytes(created)),
            payload: v[13..].to_vec(),
        })
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn key(next_try: SystemTime, id: &[u8; 16]) -> Vec<u8> {
    [&millis(next_try).to_be_bytes()[..], id.as_slice()].concat()
}

/// The outbox on the store.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// Over `store` (no I/O).
    pub fn new(store: Store) -> Self {
        Outbox { store }
    }

    /// The write that adds `row` (put it into the batch of the record it describes).
    pub fn put_batch(&self, row: &OutboxRow) -> Batch {
        let mut b = Batch::new();
        b.put(Cf::Outbox, row.key(), row.encode());
        b
    }

    /// The write that removes `row` (delivered, or given up).
    pub fn delete_batch(&self, row: &OutboxRow) -> Batch {
        let mut b = Batch::new();
        b.delete(Cf::Outbox, row.key());
        b
    }

    /// The write that moves `row` to `next_try` with `attempts` made; returns it and the row as
    /// stored afterwards.
    pub fn reschedule_batch(
        &self,
        row: &OutboxRow,
        next_try: SystemTime,
        attempts: u32,
    ) -> (Batch, OutboxRow) {
        let moved = OutboxRow {
            next_try,
            attempts,
            ..row.clone()
        };
        let mut b = self.delete_batch(row);
        b.extend(self.put_batch(&moved));
        (b, moved)
    }

    /// Up to `limit` rows due at `now` (next try at or before it), the longest due first.
    pub fn due(&self, now: SystemTime, limit: usize) -> Result<Vec<OutboxRow>, PersistError> {
        let end = (millis(now).saturating_add(1)).to_be_bytes();
        let rows = self
            .store
            .scan_range(Cf::Outbox, &[], Some(&end), Order::Ascending, limit)?;
        rows.iter().map(|(k, v)| OutboxRow::decode(k, v)).collect()
    }

    /// When the earliest row is due (`None`: the outbox is empty). One seek.
    pub fn next_due(&self) -> Result<Option<SystemTime>, PersistError> {
        let first = self
            .store
            .scan_range(Cf::Outbox, &[], None, Order::Ascending, 1)?;
        Ok(first.first().and_then(|(k, _)| {
            let next: [u8; 8] = k.get(..8)?.try_into().ok()?;
            Some(from_millis(u64::from_be_bytes(next)))
        }))
    }

    /// How many rows are waiting, counting at most `limit` (a bounded scan).
    pub fn count(&self, limit: usize) -> Result<usize, PersistError> {
        Ok(self
            .store
            .scan_range(Cf::Outbox, &[], None, Order::Ascending, limit)?
            .len())
    }

    /// Commits `batch` and resolves once it is durable.
    pub async fn commit(&self, batch: Batch) -> Result<(), PersistError> {
        Ok(self.store.commit(batch).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u8, next: SystemTime) -> OutboxRow {
        OutboxRow {
            id: [id; 16],
            next_try: next,
            attempts: 0,
            created: next,
            payload: format!("{{\"n\":{id}}}").into_bytes(),
        }
    }

    #[test]
    fn rows_come_due_in_time_order_and_move_when_rescheduled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db"), Default::default()).unwrap();
        let outbox = Outbox::new(store.clone());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (a, b) = (row(1, t0 + Duration::from_secs(5)), row(2, t0));
        let mut batch = outbox.put_batch(&a);
        batch.extend(outbox.put_batch(&b));
        store.commit_blocking(batch).unwrap();
        assert_eq!(outbox.count(100).unwrap(), 2);
        assert_eq!(outbox.next_due().unwrap(), Some(t0));
        // Only b is due at t0; a at t0 + 5 s.
        assert_eq!(outbox.due(t0, 10).unwrap(), vec![b.clone()]);
        assert_eq!(
            outbox.due(t0 + Duration::from_secs(5), 10).unwrap(),
            vec![b.clone(), a.clone()]
        );
        // b fails once: moved to t0 + 10 s with one attempt; the id stays.
        let (batch, moved) = outbox.reschedule_batch(&b, t0 + Duration::from_secs(10), 1);
        store.commit_blocking(batch).unwrap();
        assert_eq!(
            outbox.due(t0 + Duration::from_secs(9), 10).unwrap(),
            vec![a.clone()]
        );
        let later = outbox.due(t0 + Duration::from_secs(10), 10).unwrap();
        assert_eq!(later, vec![a.clone(), moved.clone()]);
        assert_eq!(later[1].attempts, 1);
        assert_eq!(later[1].id, b.id);
        assert_eq!(later[1].payload, b.payload);
        // Delivered: gone.
        store.commit_blocking(outbox.delete_batch(&a)).unwrap();
        store.commit_blocking(outbox.delete_batch(&moved)).unwrap();
        assert_eq!(outbox.count(100).unwrap(), 0);
        assert_eq!(outbox.next_due().unwrap(), None);
        // The payload never shows in Debug.
        assert!(!format!("{a:?}").contains("\"n\""));
    }

    #[test]
    fn corrupt_rows_are_reported() {
        assert!(OutboxRow::decode(&[0; 3], &[1]).is_err());
        assert!(OutboxRow::decode(&[0; KEY_LEN], &[9, 0, 0]).is_err());
        assert!(OutboxRow::decode(&[0; KEY_LEN], &[1, 0, 0]).is_err());
    }
}
