//! Value framing and small encodings shared by the persistence adapters.
//!
//! Every value written by this module starts with a one-byte format version ([`FORMAT_V1`]). Version 1 is
//! `[0x01][u32 BE n][n bytes of JSON metadata][binary tail]`; the tail is the certificate DER for certificate
//! records and empty for imprint records. JSON keeps the metadata readable and lets later versions add fields;
//! the DER stays raw bytes (no hex/base64 inflation).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::PersistError;

/// Format version 1 of every persisted value.
pub(crate) const FORMAT_V1: u8 = 1;

/// A point in time as seconds and nanoseconds relative to the Unix epoch. `secs` is the floor, so times
/// before 1970 (possible in X.509 validity fields) round-trip exactly: -0.25 s is `{secs: -1, nanos: 750000000}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnixTime {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

impl UnixTime {
    pub(crate) fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Self {
                        secs: -whole,
                        nanos: 0,
                    }
                } else {
                    Self {
                        secs: -whole - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    pub(crate) fn to_system(self) -> Result<SystemTime, &'static str> {
        if self.nanos >= 1_000_000_000 {
            return Err("nanoseconds out of range");
        }
        if self.secs >= 0 {
            UNIX_EPOCH
                .checked_add(Duration::new(self.secs.unsigned_abs(), self.nanos))
                .ok_or("time out of range")
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(self.secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nanos))))
                .ok_or("time out of range")
        }
    }
}

/// Frames JSON metadata and a binary tail as a version-1 value.
pub(crate) fn frame<T: Serialize>(meta: &T, tail: &[u8]) -> Result<Vec<u8>, PersistError> {
    let json = serde_json::to_vec(meta).map_err(|e| PersistError::Encode(e.to_string()))?;
    let len = u32::try_from(json.len())
        .map_err(|_| PersistError::Encode("metadata longer than 4 GiB".into()))?;
    let mut out = Vec::with_capacity(5 + json.len() + tail.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(tail);
    Ok(out)
}

/// Splits a version-1 value into its decoded metadata and its binary tail.
pub(crate) fn unframe<'a, T: Deserialize<'a>>(
    value: &'a [u8],
) -> Result<(T, &'a [u8]), &'static str> {
    let (&version, rest) = value.split_first().ok_or("empty value")?;
    if version != FORMAT_V1 {
        return Err("unknown format version (written by a newer esigd?)");
    }
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated length")?;
    let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| "length out of range")?;
    let json = rest.get(4..4 + len).ok_or("truncated metadata")?;
    let tail = rest.get(4 + len..).ok_or("truncated value")?;
    let meta = serde_json::from_slice(json).map_err(|_| "metadata is not valid JSON")?;
    Ok((meta, tail))
}

/// A big-endian u64 value (counters, marks).
pub(crate) fn decode_u64(value: &[u8]) -> Result<u64, &'static str> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| "counter is not 8 bytes")
}

/// The smallest byte string greater than every string starting with `prefix` (exclusive scan bound).
/// `prefix` must not be empty or all 0xff (the constant prefixes of this module never are).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    end
}

/// `a || b`.
pub(crate) fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_round_trips_before_and_after_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::from_millis(250),
            UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 20),
        ] {
            let u = UnixTime::from_system(t);
            assert!(u.nanos < 1_000_000_000);
            assert_eq!(u.to_system().unwrap(), t);
        }
        assert_eq!(
            UnixTime::from_system(UNIX_EPOCH - Duration::from_millis(250)),
            UnixTime {
                secs: -1,
                nanos: 750_000_000
            }
        );
    }

    #[test]
    fn frame_round_trips_and_rejects_garbage() {
        let v = frame(&vec![1u8, 2], b"tail").unwrap();
        assert_eq!(v[0], FORMAT_V1);
        let (meta, tail): (Vec<u8>, &[u8]) = unframe(&v).unwrap();
        assert_eq!((meta, tail), (vec![1, 2], &b"tail"[..]));
        assert!(unframe::<Vec<u8>>(&[]).is_err());
        assert!(unframe::<Vec<u8>>(&[2, 0, 0, 0, 0]).is_err());
        assert!(unframe::<Vec<u8>>(&v[..7]).is_err());
        assert_eq!(prefix_end(b"c/"), b"c0".to_vec());
    }
}
