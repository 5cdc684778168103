//! Signed tree heads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::tree::Hash;

/// Why a tree head is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SthError {
    /// `signature` is not a DER ECDSA signature.
    #[error("signature: not a DER-encoded ECDSA P-256 signature")]
    SignatureEncoding,
    /// The signature does not verify with the given key.
    #[error("signature: does not verify with the audit key")]
    BadSignature,
}

/// A tree head signed by the appliance's audit key: the JSON of `GET /v1/audit/sth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedTreeHead {
    /// Number of leaves.
    pub tree_size: u64,
    /// Milliseconds since the Unix epoch when the head was signed.
    pub timestamp: u64,
    /// The root hash (base64).
    #[serde(with = "b64_hash")]
    pub root_hash: Hash,
    /// ECDSA P-256 / SHA-256 signature, DER (base64), over [`tree_head_signature_input`].
    #[serde(with = "b64_bytes")]
    pub signature: Vec<u8>,
}

/// The signed bytes: RFC 6962 §3.5 `TreeHeadSignature` (version v1 = 0, signature type tree_hash = 1,
/// uint64 timestamp, uint64 tree_size, the 32-byte root), 50 bytes.
pub fn tree_head_signature_input(tree_size: u64, timestamp: u64, root: &Hash) -> Vec<u8> {
    let mut v = Vec::with_capacity(50);
    v.extend_from_slice(&[0, 1]);
    v.extend_from_slice(&timestamp.to_be_bytes());
    v.extend_from_slice(&tree_size.to_be_bytes());
    v.extend_from_slice(root);
    v
}

impl SignedTreeHead {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        tree_head_signature_input(self.tree_size, self.timestamp, &self.root_hash)
    }

    /// Checks the signature with the audit public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SthError> {
        let sig = Signature::from_der(&self.signature).map_err(|_| SthError::SignatureEncoding)?;
        key.verify(&self.signed_bytes(), &sig)
            .map_err(|_| SthError::BadSignature)
    }
}

/// Base64 for a 32-byte hash.
pub(crate) mod b64_hash {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(h))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a hash is 32 bytes"))
    }
}

/// Base64 for bytes.
pub(crate) mod b64_bytes {
    use super::*;

    pub(crate) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
