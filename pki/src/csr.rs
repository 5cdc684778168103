//! PKCS#10 certification requests: parsing with proof-of-possession check and key policy, and building
//! (for the subordinate-CA key ceremony).

use der::{Decode, Encode};
use signature::{Keypair, Signer};
use spki::{
    DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate,
    builder::{Builder, RequestBuilder},
    name::Name,
    request::CertReq,
};

use crate::{
    X509Error,
    keys::{KeyKind, verify_signature},
    pem::{CERTIFICATE_LABEL, CSR_LABEL, CSR_LABEL_LEGACY, check_len, decode_pem, looks_like_pem},
};

/// A certification request whose self-signature verified (proof of possession) and whose key is allowed.
#[derive(Clone, Debug)]
pub struct VerifiedCsr {
    /// The decoded request.
    pub request: CertReq,
    /// The classified public key.
    pub key: KeyKind,
}

impl VerifiedCsr {
    /// The requested subject public key.
    pub fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.request.info.public_key
    }

    /// The subject the requester asked for (the CA decides the real subject).
    pub fn requested_subject(&self) -> &Name {
        &self.request.info.subject
    }
}

/// Parses a CSR given as DER or PEM, checks its signature with its own key (proof of possession) and the key
/// policy (ECDSA P-256/P-384, RSA 2048–4096).
///
/// Rejected with a named reason: empty or oversized input, garbage or truncated DER, a certificate instead of a
/// CSR, a CSR signed with a different key, disallowed key types (DSA, RSA-1024, other curves...).
pub fn parse_csr(input: &[u8]) -> Result<VerifiedCsr, X509Error> {
    const WHAT: &str = "certification request";
    check_len(WHAT, input)?;
    let der = if looks_like_pem(input) {
        let (label, der) = decode_pem(WHAT, input)?;
        if label == CERTIFICATE_LABEL {
            return Err(X509Error::CertificateInsteadOfCsr);
        }
        if label != CSR_LABEL && label != CSR_LABEL_LEGACY {
            return Err(X509Error::Pem {
                what: WHAT,
                reason: format!("PEM label is `{label}`, expected `{CSR_LABEL}`"),
            });
        }
        der
    } else {
        input.to_vec()
    };
    let request = match CertReq::from_der(&der) {
        Ok(req) => req,
        Err(err) => {
            // Give a precise message when someone uploads a certificate instead of a CSR.
            if Certificate::from_der(&der).is_ok() {
                return Err(X509Error::CertificateInsteadOfCsr);
            }
            return Err(X509Error::Decode {
                what: WHAT,
                source: err,
            });
        }
    };
    let info_der = request
        .info
        .to_der()
        .map_err(X509Error::encode("CSR info"))?;
    let key = verify_signature(
        "CSR proof of possession",
        &request.info.public_key,
        &request.algorithm,
        &info_der,
        &request.signature,
    )
    .map_err(|e| match e {
        X509Error::BadSignature { what, .. } => X509Error::BadSignature {
            what,
            key: "the CSR's own public key (signed with a different key or altered)",
        },
        other => other,
    })?;
    Ok(VerifiedCsr { request, key })
}

/// Builds and signs a CSR for `subject` with the signer's key (e.g. a subordinate CA key in the HSM,
/// to be sent to an external parent CA).
pub fn build_csr<S, Sig>(signer: &S, subject: Name) -> Result<CertReq, X509Error>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let builder = RequestBuilder::new(subject, signer).map_err(builder_error)?;
    builder.build::<Sig>().map_err(builder_error)
}

pub(crate) fn builder_error(e: x509_cert::builder::Error) -> X509Error {
    match e {
        x509_cert::builder::Error::Signature(s) => X509Error::Signer(s),
        x509_cert::builder::Error::PublicKey(p) => X509Error::SignerKey(p),
        x509_cert::builder::Error::Asn1(a) => X509Error::Encode {
            what: "certification request",
            source: a,
        },
        other => X509Error::invalid("certification request", other.to_string()),
    }
}
