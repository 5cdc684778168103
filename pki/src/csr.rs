//! PKCS#10 certification requests: parsing with proof-of-possession check and key policy, and building
//! (for the subordinate-CA key ceremony).

use const_oid::AssociatedOid;
use der::asn1::PrintableString;
use der::{Decode, Encode};
use signature::{Keypair, Signer};
use spki::{
    DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate,
    builder::{Builder, RequestBuilder},
    ext::pkix::name::DirectoryString,
    name::Name,
    request::{CertReq, attributes::ChallengePassword},
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

    /// The PKCS#9 `challengePassword` attribute (RFC 2985 §5.4.1), if the request has one. It is
    /// single-valued: two attributes or two values are refused, as is a value that is not a
    /// PrintableString or UTF8String. (The Remote SCD onboarding puts its session challenge here, so
    /// the CSR is bound to the session that asked for it.)
    pub fn challenge_password(&self) -> Result<Option<String>, X509Error> {
        const WHAT: &str = "CSR challengePassword";
        let mut found = self
            .request
            .info
            .attributes
            .iter()
            .filter(|a| a.oid == ChallengePassword::OID);
        let Some(attr) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() || attr.values.len() != 1 {
            return Err(X509Error::invalid(WHAT, "must appear once with one value"));
        }
        let value = attr
            .values
            .iter()
            .next()
            .ok_or_else(|| X509Error::invalid(WHAT, "has no value"))?;
        // DirectoryString is a CHOICE: decode it from the value's full TLV.
        let tlv = value.to_der().map_err(X509Error::encode(WHAT))?;
        match DirectoryString::from_der(&tlv) {
            Ok(DirectoryString::PrintableString(s)) => Ok(Some(s.to_string())),
            Ok(DirectoryString::Utf8String(s)) => Ok(Some(s)),
            Ok(DirectoryString::TeletexString(_)) => Err(X509Error::invalid(
                WHAT,
                "TeletexString is not accepted; use PrintableString or UTF8String",
            )),
            Err(e) => Err(X509Error::invalid(
                WHAT,
                format!("not a DirectoryString: {e}"),
            )),
        }
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

/// Builds and signs a CSR carrying `challenge` as its PKCS#9 `challengePassword` (a PrintableString:
/// standard base64 fits its character set), e.g. a device answering a Remote SCD onboarding session.
pub fn build_csr_with_challenge<S, Sig>(
    signer: &S,
    subject: Name,
    challenge: &str,
) -> Result<CertReq, X509Error>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let value = PrintableString::new(challenge).map_err(|_| {
        X509Error::invalid(
            "CSR challengePassword",
            "must use the PrintableString characters (letters, digits, space and '()+,-./:=?)",
        )
    })?;
    let mut builder = RequestBuilder::new(subject, signer).map_err(builder_error)?;
    builder
        .add_attribute(&ChallengePassword(DirectoryString::PrintableString(value)))
        .map_err(builder_error)?;
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
