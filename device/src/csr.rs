//! Signing on the device token through the RustCrypto signer traits (so `esigd-pki` can build
//! the onboarding CSR with the new key), and checking a signature before it leaves the device.

use esigd_hsm::{DeviceToken, KeyKind, PublicKey, SignatureScheme};
use p256::ecdsa::{DerSignature, VerifyingKey};
use secrecy::SecretString;
use signature::hazmat::PrehashVerifier;
use spki::{AlgorithmIdentifierOwned, DecodePublicKey, DynSignatureAlgorithmIdentifier};

use crate::error::AgentError;

/// A P-256 key on the device token, usable with the PIN given for this one operation.
pub(crate) struct TokenSigner<'a> {
    token: &'a DeviceToken,
    pin: &'a SecretString,
    label: &'a str,
    public: VerifyingKey,
}

impl<'a> TokenSigner<'a> {
    pub(crate) fn new(
        token: &'a DeviceToken,
        pin: &'a SecretString,
        label: &'a str,
        public: &PublicKey,
    ) -> Result<TokenSigner<'a>, AgentError> {
        if public.kind() != KeyKind::EcP256 {
            return Err(AgentError::Crypto(
                "only P-256 device keys are supported".into(),
            ));
        }
        let public = VerifyingKey::from_public_key_der(public.spki_der())
            .map_err(|e| AgentError::Crypto(e.to_string()))?;
        Ok(TokenSigner {
            token,
            pin,
            label,
            public,
        })
    }
}

impl signature::Keypair for TokenSigner<'_> {
    type VerifyingKey = VerifyingKey;
    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }
}

impl DynSignatureAlgorithmIdentifier for TokenSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        SignatureScheme::EcdsaSha256
            .algorithm_identifier()
            .map_err(|_| spki::Error::KeyMalformed)
    }
}

impl signature::Signer<DerSignature> for TokenSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, signature::Error> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(msg);
        let der = self
            .token
            .sign_digest(self.pin, self.label, SignatureScheme::EcdsaSha256, &digest)
            .map_err(signature::Error::from_source)?;
        DerSignature::from_bytes(&der)
    }
}

/// Verifies a DER ECDSA signature over `digest` with a P-256 public key from the token.
pub(crate) fn verify_digest(
    public: &PublicKey,
    digest: &[u8],
    der: &[u8],
) -> Result<(), AgentError> {
    let vk = VerifyingKey::from_public_key_der(public.spki_der())
        .map_err(|e| AgentError::Crypto(e.to_string()))?;
    let sig = p256::ecdsa::Signature::from_der(der)
        .map_err(|e| AgentError::Crypto(format!("signature: {e}")))?;
    vk.verify_prehash(digest, &sig)
        .map_err(|_| AgentError::Crypto("the token's signature does not verify".into()))
}
