//! Time-ordered keys for listings (audit trail and similar).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A 16-byte key: big-endian nanoseconds since the Unix epoch, then a big-endian sequence number.
///
/// Byte order equals (time, sequence) order, so a RocksDB range scan lists events chronologically. The sequence
/// comes from [`crate::Store::audit_key`]: a process-wide counter that resumes after the newest stored key
/// on restart, so two events only collide if the clock steps back to the same nanosecond with the same counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditKey {
    /// Nanoseconds since the Unix epoch (times before 1970 are clamped to 0).
    pub unix_nanos: u64,
    /// Tie-breaker, unique within the store.
    pub seq: u64,
}

impl AuditKey {
    /// Encoded length.
    pub const LEN: usize = 16;

    /// Builds a key from a wall-clock time and a sequence number.
    pub fn new(at: SystemTime, seq: u64) -> Self {
        let nanos = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        Self {
            unix_nanos: u64::try_from(nanos).unwrap_or(u64::MAX),
            seq,
        }
    }

    /// The smallest key at or after `at` (sequence 0): the start bound of a time-range scan.
    pub fn lower_bound(at: SystemTime) -> Self {
        Self::new(at, 0)
    }

    /// Big-endian encoding.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.unix_nanos.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Decodes a key written by [`AuditKey::to_bytes`]; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let time: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let seq: [u8; 8] = bytes.get(8..)?.try_into().ok()?;
        Some(Self {
            unix_nanos: u64::from_be_bytes(time),
            seq: u64::from_be_bytes(seq),
        })
    }

    /// The wall-clock time of the key.
    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.unix_nanos)
    }
}

/// The first byte string greater than every key that starts with `prefix` (`None` if there is none, i.e. the
/// prefix is empty or all 0xff): the exclusive upper bound of a prefix scan.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_keys_sort_by_time_then_sequence() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = AuditKey::new(t, 7).to_bytes();
        let b = AuditKey::new(t, 8).to_bytes();
        let c = AuditKey::new(t + Duration::from_nanos(1), 0).to_bytes();
        assert!(a < b && b < c);
        assert_eq!(AuditKey::from_bytes(&b), Some(AuditKey::new(t, 8)));
        assert_eq!(AuditKey::from_bytes(&b[..15]), None);
        assert_eq!(AuditKey::new(t, 1).time(), t);
    }

    #[test]
    fn prefix_successor_handles_carry() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
