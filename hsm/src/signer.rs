//! Public keys, signatures and the HSM signer, on the RustCrypto `signature`/`spki` traits so that
//! the `x509-cert`, `cms` and `x509-ocsp` builders take them directly.

use der::asn1::BitString;
use sha2::Digest;
use signature::{Keypair, SignatureEncoding};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding,
};

use crate::Hsm;
use crate::error::HsmError;
use crate::keyref::KeyRef;
use crate::mech::{KeyKind, SignatureScheme};

/// A public key as SubjectPublicKeyInfo DER, with its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    spki: Vec<u8>,
}

impl PublicKey {
    pub(crate) fn new(kind: KeyKind, spki: Vec<u8>) -> Self {
        PublicKey { kind, spki }
    }

    /// Builds the SPKI of an uncompressed SEC1 EC point.
    pub(crate) fn from_ec_point(kind: KeyKind, point: &[u8]) -> Result<Self, HsmError> {
        let bad = |e: String| HsmError::BadTokenData(format!("EC point: {e}"));
        let der = match kind {
            KeyKind::EcP256 => p256::PublicKey::from_sec1_bytes(point)
                .map_err(|e| bad(e.to_string()))?
                .to_public_key_der(),
            KeyKind::EcP384 => p384::PublicKey::from_sec1_bytes(point)
                .map_err(|e| bad(e.to_string()))?
                .to_public_key_der(),
            KeyKind::Rsa(_) => return Err(bad("not an EC key".into())),
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(PublicKey {
            kind,
            spki: der.as_bytes().to_vec(),
        })
    }

    /// The key kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Lowercase hex SHA-256 of the SPKI DER: the key's thumbprint for logs and audit.
    pub fn thumbprint(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.spki))
    }

    /// Verifies `signature` (as produced by this crate: DER for ECDSA) over `msg` in software.
    pub fn verify(
        &self,
        scheme: SignatureScheme,
        msg: &[u8],
        signature: &[u8],
    ) -> Result<(), HsmError> {
        use signature::Verifier;
        use spki::DecodePublicKey;
        let bad = |e: String| HsmError::Unsupported(format!("verification: {e}"));
        let fail =
            |e: signature::Error| HsmError::BadTokenData(format!("signature does not verify: {e}"));
        match (self.kind, scheme) {
            (KeyKind::EcP256, SignatureScheme::EcdsaSha256) => {
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&self.spki)
                    .map_err(|e| bad(e.to_string()))?;
                let sig = p256::ecdsa::DerSignature::from_bytes(signature).map_err(fail)?;
                vk.verify(msg, &sig).map_err(fail)
            }
            (KeyKind::EcP384, SignatureScheme::EcdsaSha384) => {
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&self.spki)
                    .map_err(|e| bad(e.to_string()))?;
                let sig = p384::ecdsa::DerSignature::from_bytes(signature).map_err(fail)?;
                vk.verify(msg, &sig).map_err(fail)
            }
            (KeyKind::Rsa(_), SignatureScheme::RsaPkcs1Sha256) => {
                let pk = rsa::RsaPublicKey::from_public_key_der(&self.spki)
                    .map_err(|e| bad(e.to_string()))?;
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(fail)?;
                vk.verify(msg, &sig).map_err(fail)
            }
            (KeyKind::Rsa(_), SignatureScheme::RsaPssSha256) => {
                let pk = rsa::RsaPublicKey::from_public_key_der(&self.spki)
                    .map_err(|e| bad(e.to_string()))?;
                let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(pk);
                let sig = rsa::pss::Signature::try_from(signature).map_err(fail)?;
                vk.verify(msg, &sig).map_err(fail)
            }
            (k, s) => Err(bad(format!(
                "software verification of {s:?} with {k:?} is not implemented"
            ))),
        }
    }
}

impl EncodePublicKey for PublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.spki.as_slice())?)
    }
}

/// A signature in the encoding X.509 and CMS carry (DER `ECDSA-Sig-Value` for ECDSA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmSignature(Vec<u8>);

impl HsmSignature {
    /// The encoded signature bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<HsmSignature> for Vec<u8> {
    fn from(s: HsmSignature) -> Vec<u8> {
        s.0
    }
}

impl TryFrom<&[u8]> for HsmSignature {
    type Error = signature::Error;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        Ok(HsmSignature(b.to_vec()))
    }
}

impl From<HsmSignature> for Box<[u8]> {
    fn from(s: HsmSignature) -> Box<[u8]> {
        s.0.into_boxed_slice()
    }
}

impl SignatureEncoding for HsmSignature {
    type Repr = Box<[u8]>;
}

impl SignatureBitStringEncoding for HsmSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// Wraps an [`HsmError`] so that it travels through `signature::Error` and can be recovered with
/// [`hsm_error_of`].
pub(crate) fn to_sig_error(e: HsmError) -> signature::Error {
    signature::Error::from_source(e)
}

/// Recovers the [`HsmError`] behind a `signature::Error` produced by an HSM signer, so callers
/// above `pki` can tell "HSM unavailable" (retry, 503) from other failures.
pub fn hsm_error_of(e: &signature::Error) -> Option<&HsmError> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<HsmError>())
}

/// Signs with a persistent private key in the HSM (CA, TSA, OCSP keys). Cheap to clone; each
/// signature checks a session out of the pool.
#[derive(Clone)]
pub struct HsmSigner {
    hsm: Hsm,
    key: KeyRef,
    setting: String,
    public: PublicKey,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for HsmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSigner")
            .field("key", &self.key.to_string())
            .field("scheme", &self.scheme)
            .field("public", &self.public.thumbprint())
            .finish()
    }
}

impl HsmSigner {
    pub(crate) fn new(
        hsm: Hsm,
        key: KeyRef,
        setting: String,
        public: PublicKey,
        scheme: SignatureScheme,
    ) -> Self {
        HsmSigner {
            hsm,
            key,
            setting,
            public,
            scheme,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The signature scheme in use.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// Signs a message (hashed in software with the scheme's hash).
    pub fn sign_message(&self, msg: &[u8]) -> Result<HsmSignature, HsmError> {
        self.sign_digest(&self.scheme.hash().digest(msg))
    }

    /// Signs a precomputed digest of the scheme's hash.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<HsmSignature, HsmError> {
        self.hsm
            .sign_digest_with(&self.key, &self.setting, self.scheme, digest)
            .map(HsmSignature)
    }
}

impl Keypair for HsmSigner {
    type VerifyingKey = PublicKey;
    fn verifying_key(&self) -> PublicKey {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for HsmSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        self.scheme
            .algorithm_identifier()
            .map_err(|_| spki::Error::KeyMalformed)
    }
}

impl signature::Signer<HsmSignature> for HsmSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<HsmSignature, signature::Error> {
        self.sign_message(msg).map_err(to_sig_error)
    }
}
