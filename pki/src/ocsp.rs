//! OCSP (RFC 6960) building blocks: request parsing, CertID matching against an issuer (SHA-1 and SHA-2
//! CertIDs), and signed BasicOCSPResponse building; plus the unsigned error responses
//! (`malformedRequest`, `internalError`, `tryLater`, `unauthorized`).
//!
//! Policy (which status a serial has) lives in the `ca` crate.

use std::time::SystemTime;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode, asn1::OctetString};
use sha1::Digest as _;
use signature::Signer;
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding};
use x509_cert::{Certificate, ext::pkix::CrlReason, serial_number::SerialNumber};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, RevokedInfo, SingleResponse, Version, ext::Nonce,
};

use crate::{
    X509Error,
    certificate::{generalized_time, sign_bytes, signer_algorithm},
    pem::check_len,
};

/// id-sha1.
pub const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-sha256.
pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-sha384.
pub const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// id-sha512.
pub const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// id-pkix-ocsp-nonce.
pub const ID_PKIX_OCSP_NONCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");

/// Largest accepted OCSP request (RFC 6960 requests are small; this bounds memory for hostile input).
pub const MAX_OCSP_REQUEST_LEN: usize = 64 * 1024;
/// Largest accepted nonce (RFC 9654: 1..=128 octets).
pub const MAX_NONCE_LEN: usize = 128;
/// Most CertIDs answered in one request.
pub const MAX_REQUESTS: usize = 32;

/// A decoded, sanity-checked OCSP request.
#[derive(Clone, Debug)]
pub struct ParsedOcspRequest {
    /// The CertIDs asked for, in request order.
    pub cert_ids: Vec<CertId>,
    /// The nonce to echo, if the request carried one.
    pub nonce: Option<Nonce>,
}

/// Parses a DER OCSPRequest. Any error here should be answered with [`malformed_request`].
///
/// Rejects: empty/oversized input, bad DER, an empty request list, more than [`MAX_REQUESTS`] CertIDs, a nonce
/// that is empty or longer than [`MAX_NONCE_LEN`], and unknown critical request extensions.
pub fn parse_ocsp_request(der: &[u8]) -> Result<ParsedOcspRequest, X509Error> {
    const WHAT: &str = "OCSP request";
    check_len(WHAT, der)?;
    if der.len() > MAX_OCSP_REQUEST_LEN {
        return Err(X509Error::TooLarge {
            what: WHAT,
            len: der.len(),
            max: MAX_OCSP_REQUEST_LEN,
        });
    }
    let req = OcspRequest::from_der(der).map_err(X509Error::decode(WHAT))?;
    let tbs = req.tbs_request;
    if tbs.request_list.is_empty() {
        return Err(X509Error::invalid(WHAT, "requestList is empty"));
    }
    if tbs.request_list.len() > MAX_REQUESTS {
        return Err(X509Error::invalid(
            WHAT,
            format!(
                "{} CertIDs, at most {MAX_REQUESTS} answered",
                tbs.request_list.len()
            ),
        ));
    }
    let mut nonce = None;
    for ext in tbs.request_extensions.iter().flatten() {
        if ext.extn_id == ID_PKIX_OCSP_NONCE {
            // RFC 9654: the extension value is an OCTET STRING of 1..=128 octets.
            let inner = OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| {
                X509Error::invalid(WHAT, format!("nonce is not an OCTET STRING: {e}"))
            })?;
            let len = inner.as_bytes().len();
            if len == 0 || len > MAX_NONCE_LEN {
                return Err(X509Error::invalid(
                    WHAT,
                    format!("nonce of {len} octets (1..={MAX_NONCE_LEN} allowed)"),
                ));
            }
            nonce = Some(Nonce(inner));
        } else if ext.critical {
            return Err(X509Error::invalid(
                WHAT,
                format!("unsupported critical extension {}", ext.extn_id),
            ));
        }
    }
    Ok(ParsedOcspRequest {
        cert_ids: tbs.request_list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// Hash algorithms accepted in CertIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertIdHash {
    /// SHA-1 (RFC 6960 default; what `openssl ocsp` sends without `-sha256`).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl CertIdHash {
    /// Maps a CertID hashAlgorithm; `None` for anything else.
    pub fn from_algorithm(alg: &AlgorithmIdentifierOwned) -> Option<Self> {
        // Parameters must be absent or NULL (RFC 5754 / RFC 3370).
        if alg
            .parameters
            .as_ref()
            .is_some_and(|p| der::Tagged::tag(p) != der::Tag::Null)
        {
            return None;
        }
        match alg.oid {
            o if o == ID_SHA1 => Some(CertIdHash::Sha1),
            o if o == ID_SHA256 => Some(CertIdHash::Sha256),
            o if o == ID_SHA384 => Some(CertIdHash::Sha384),
            o if o == ID_SHA512 => Some(CertIdHash::Sha512),
            _ => None,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            CertIdHash::Sha1 => ID_SHA1,
            CertIdHash::Sha256 => ID_SHA256,
            CertIdHash::Sha384 => ID_SHA384,
            CertIdHash::Sha512 => ID_SHA512,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            CertIdHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            CertIdHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            CertIdHash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            CertIdHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// The issuerNameHash and issuerKeyHash of `issuer` for a hash algorithm.
pub fn issuer_hashes(
    issuer: &Certificate,
    hash: CertIdHash,
) -> Result<(Vec<u8>, Vec<u8>), X509Error> {
    let name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(X509Error::encode("issuer name"))?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok((hash.digest(&name), hash.digest(key)))
}

/// How a CertID relates to an issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertIdMatch {
    /// Name and key hashes match the issuer.
    Issuer(CertIdHash),
    /// The hashes belong to another issuer.
    OtherIssuer,
    /// The hash algorithm is not supported.
    UnsupportedHash,
}

/// Checks whether `cert_id` names a certificate issued by `issuer` (name hash and key hash both match).
pub fn match_cert_id(cert_id: &CertId, issuer: &Certificate) -> Result<CertIdMatch, X509Error> {
    let Some(hash) = CertIdHash::from_algorithm(&cert_id.hash_algorithm) else {
        return Ok(CertIdMatch::UnsupportedHash);
    };
    let (name, key) = issuer_hashes(issuer, hash)?;
    if cert_id.issuer_name_hash.as_bytes() == name.as_slice()
        && cert_id.issuer_key_hash.as_bytes() == key.as_slice()
    {
        Ok(CertIdMatch::Issuer(hash))
    } else {
        Ok(CertIdMatch::OtherIssuer)
    }
}

/// Builds a CertID for `serial` under `issuer` (tests, monitoring).
pub fn cert_id(
    issuer: &Certificate,
    serial: &SerialNumber,
    hash: CertIdHash,
) -> Result<CertId, X509Error> {
    let (name, key) = issuer_hashes(issuer, hash)?;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: hash.oid(),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(name).map_err(X509Error::encode("CertID"))?,
        issuer_key_hash: OctetString::new(key).map_err(X509Error::encode("CertID"))?,
        serial_number: serial.clone(),
    })
}

/// Status of one certificate in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspStatus {
    /// Not revoked.
    Good,
    /// Revoked (a suspension is reported as revoked with reason certificateHold).
    Revoked {
        /// revocationTime.
        time: SystemTime,
        /// revocationReason (omitted when `None`).
        reason: Option<CrlReason>,
    },
    /// The responder does not know the certificate (or gives no status for it).
    Unknown,
}

/// One answer in a response.
#[derive(Clone, Debug)]
pub struct OcspAnswer {
    /// The CertID exactly as requested.
    pub cert_id: CertId,
    /// The status.
    pub status: OcspStatus,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate (omitted when `None`).
    pub next_update: Option<SystemTime>,
}

/// Builds a signed `successful` OCSPResponse (DER). The responder is identified by key hash; the nonce is
/// echoed when given; `certs` are included in the response (the delegated responder certificate, if any).
pub fn build_ocsp_response<S, Sig>(
    signer: &S,
    responder: &Certificate,
    answers: &[OcspAnswer],
    nonce: Option<&Nonce>,
    produced_at: SystemTime,
    certs: Vec<Certificate>,
) -> Result<Vec<u8>, X509Error>
where
    S: DynSignatureAlgorithmIdentifier + Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    const WHAT: &str = "OCSP response";
    let key = responder
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let key_hash =
        OctetString::new(sha1::Sha1::digest(key).to_vec()).map_err(X509Error::encode(WHAT))?;
    let mut responses = Vec::with_capacity(answers.len());
    for a in answers {
        let status = match a.status {
            OcspStatus::Good => CertStatus::good(),
            OcspStatus::Unknown => CertStatus::unknown(),
            OcspStatus::Revoked { time, reason } => CertStatus::revoked(RevokedInfo {
                revocation_time: OcspGeneralizedTime(generalized_time("revocationTime", time)?),
                revocation_reason: reason,
            }),
        };
        responses.push(SingleResponse {
            cert_id: a.cert_id.clone(),
            cert_status: status,
            this_update: OcspGeneralizedTime(generalized_time("thisUpdate", a.this_update)?),
            next_update: match a.next_update {
                Some(t) => Some(OcspGeneralizedTime(generalized_time("nextUpdate", t)?)),
                None => None,
            },
            single_extensions: None,
        });
    }
    let response_extensions = match nonce {
        Some(n) => Some(vec![x509_cert::ext::Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(n.0.to_der().map_err(X509Error::encode(WHAT))?)
                .map_err(X509Error::encode(WHAT))?,
        }]),
        None => None,
    };
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(key_hash),
        produced_at: OcspGeneralizedTime(generalized_time("producedAt", produced_at)?),
        responses,
        response_extensions,
    };
    let tbs = data.to_der().map_err(X509Error::encode(WHAT))?;
    let signature = sign_bytes(signer, &tbs)?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: signer_algorithm(signer)?,
        signature,
        certs: if certs.is_empty() { None } else { Some(certs) },
    };
    let resp = OcspResponse::successful(basic).map_err(X509Error::encode(WHAT))?;
    resp.to_der().map_err(X509Error::encode(WHAT))
}

fn unsigned(resp: OcspResponse) -> Vec<u8> {
    // These are fixed 5-byte structures (SEQUENCE { ENUMERATED }); encoding cannot fail.
    resp.to_der()
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, 0x02])
}

/// Largest request accepted in the GET form (RFC 6960 A.1): smaller than
/// [`MAX_OCSP_REQUEST_LEN`] because it travels in a URL.
pub const MAX_GET_REQUEST_LEN: usize = 16 * 1024;

/// The DER request of the GET form (RFC 6960 A.1: `GET {url}/{url-encoding of base64 of the
/// DER}`), from the path after `/ocsp/` once the HTTP layer has percent-decoded it. `None` for
/// anything but padded standard base64 of at most [`MAX_GET_REQUEST_LEN`] bytes (answered with
/// `malformedRequest`); the DER itself is checked by [`parse_ocsp_request`].
pub fn decode_get_request(path: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(path.trim_start_matches('/'))
        .ok()
        .filter(|d| d.len() <= MAX_GET_REQUEST_LEN)
}

/// `malformedRequest` (1) response, DER.
pub fn malformed_request() -> Vec<u8> {
    unsigned(OcspResponse::malformed_request())
}

/// `internalError` (2) response, DER (e.g. the store is unavailable).
pub fn internal_error() -> Vec<u8> {
    unsigned(OcspResponse::internal_error())
}

/// `tryLater` (3) response, DER (e.g. the HSM is busy or unavailable).
pub fn try_later() -> Vec<u8> {
    unsigned(OcspResponse::try_later())
}

/// `unauthorized` (6) response, DER (no CertID for this responder's CA).
pub fn unauthorized() -> Vec<u8> {
    unsigned(OcspResponse::unauthorized())
}

/// Decodes a DER OCSPResponse (for tests and monitoring).
pub fn parse_ocsp_response(
    der: &[u8],
) -> Result<(OcspResponse, Option<BasicOcspResponse>), X509Error> {
    const WHAT: &str = "OCSP response";
    let resp = OcspResponse::from_der(der).map_err(X509Error::decode(WHAT))?;
    let basic = match &resp.response_bytes {
        Some(bytes) => Some(
            BasicOcspResponse::from_der(bytes.response.as_bytes())
                .map_err(X509Error::decode(WHAT))?,
        ),
        None => None,
    };
    Ok((resp, basic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_get_form_is_padded_standard_base64_within_the_limit() {
        use base64::Engine;
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        assert_eq!(
            decode_get_request(&b64(b"\x30\x03\x02\x01\x01")),
            Some(b"\x30\x03\x02\x01\x01".to_vec())
        );
        // The part after `/ocsp/` may keep the separating slash (RFC 6960 A.1 clients differ).
        assert_eq!(
            decode_get_request(&format!("/{}", b64(b"abc"))),
            Some(b"abc".to_vec())
        );
        assert_eq!(decode_get_request("YWJj"), Some(b"abc".to_vec()));
        // Unpadded, URL-safe and garbage are malformed requests.
        assert_eq!(decode_get_request("YWI"), None);
        assert_eq!(
            decode_get_request(&b64(&[0xfb, 0xff]).replace('+', "-").replace('/', "_")),
            None
        );
        assert_eq!(decode_get_request("not base64!"), None);
        assert!(decode_get_request(&b64(&vec![0u8; MAX_GET_REQUEST_LEN])).is_some());
        assert_eq!(
            decode_get_request(&b64(&vec![0u8; MAX_GET_REQUEST_LEN + 1])),
            None
        );
    }
}
