//! Collects the validation data of a PAdES B-LT file from esigd, and a document time-stamp for
//! B-LTA (feature `cli`). The collection logic ([`pdf_certificates`], [`plan`],
//! [`check_ocsp_response`], [`timestamp_request`], [`timestamp_token`]) is separate from the
//! HTTP client ([`Server`]) so it can be tested without a server.
//!
//! What goes into the DSS:
//!
//! - certificates: those in every signature's CMS and in its time-stamp tokens (signature
//!   time-stamps and document time-stamps), `/pki/chain.pem`, `/pki/tsa.pem`, and the
//!   certificates that OCSP responses carry (a delegated responder);
//! - the CA's CRL, `/pki/crl`;
//! - an OCSP response (`POST /ocsp`) for each certificate that has its issuer among the
//!   certificates and is neither self-issued (a trust anchor), nor marked `noRevAvail`
//!   (RFC 9608: esigd's one-time signing certificates have no revocation information by
//!   design), nor `id-pkix-ocsp-nocheck` (an OCSP responder).
//!
//! An OCSP answer that is not `good` stops the process: a revoked TSA or CA certificate makes
//! the signature unverifiable later, and extending it would hide that.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cms::cert::CertificateChoices;
use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use esigd_pki::extensions::{ID_CE_NO_REV_AVAIL, ID_PKIX_OCSP_NOCHECK};
use esigd_pki::ocsp::{CertIdHash, cert_id};
use esigd_pki::tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion};
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifier;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

use crate::pdf::PreparedPdf;
use crate::pdf_lt::{self, LtError, ValidationData};

/// id-aa-signatureTimeStampToken (1.2.840.113549.1.9.16.2.14).
const ID_AA_SIGNATURE_TIME_STAMP_TOKEN: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
/// id-sha256.
const ID_SHA256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-pkix-ocsp-basic.
const ID_PKIX_OCSP_BASIC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// The largest answer accepted from the server.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// How deep time-stamp tokens inside CMS unsigned attributes are followed.
const MAX_NESTING: usize = 4;

/// Why collecting the validation data failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Reading or updating the PDF failed.
    #[error(transparent)]
    Pdf(#[from] LtError),
    /// A signature's `/Contents` or a time-stamp token is not a CMS `SignedData`.
    #[error("{what} is not a readable CMS SignedData: {problem}")]
    Cms {
        /// Which signature or token.
        what: String,
        /// The decoding problem.
        problem: String,
    },
    /// A certificate (from the PDF or the server) cannot be decoded.
    #[error("a certificate from {source_name} cannot be decoded: {problem}")]
    Certificate {
        /// Where it came from.
        source_name: String,
        /// The decoding problem.
        problem: String,
    },
    /// The server's CA file (`--cacert`) or the base URL is unusable.
    #[error("the HTTP client cannot be set up: {0}")]
    Client(String),
    /// An HTTP request failed (connection, TLS, timeout, body too large).
    #[error("{url}: {problem}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The CRL the server sent is not a DER CRL.
    #[error("{url} did not return a DER CRL: {problem}")]
    Crl {
        /// The URL.
        url: String,
        /// The decoding problem.
        problem: String,
    },
    /// An OCSP response is unusable (not successful, not for the certificate asked about,
    /// undecodable).
    #[error("OCSP response for {subject}: {problem}")]
    Ocsp {
        /// The certificate's subject.
        subject: String,
        /// What is wrong with the response.
        problem: String,
    },
    /// The OCSP responder is not authoritative for the certificate (status `unauthorized`).
    #[error("the OCSP responder is not authoritative for {subject} (status unauthorized)")]
    OcspUnauthorized {
        /// The certificate's subject.
        subject: String,
    },
    /// The OCSP responder says a certificate is revoked or unknown.
    #[error(
        "the OCSP responder reports {subject} as {status}: the signature cannot be extended \
         to B-LT with it"
    )]
    NotGood {
        /// The certificate's subject.
        subject: String,
        /// `revoked` or `unknown`.
        status: &'static str,
    },
    /// The time-stamp answer is not a granted `TimeStampResp` with a token for the request.
    #[error("time-stamp: {0}")]
    Timestamp(String),
}

/// A certificate that needs an OCSP response, with the request for it.
#[derive(Debug, Clone)]
pub struct OcspTarget {
    /// The certificate's subject (for messages).
    pub subject: String,
    /// The DER `OCSPRequest` (one SHA-1 CertID, no nonce: cacheable by the responder).
    pub request: Vec<u8>,
    cert_id: CertId,
}

/// What to ask for: the certificates to store, and the OCSP requests to make.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every certificate, once, in the order first seen (DER).
    pub certs: Vec<Vec<u8>>,
    /// One OCSP request per certificate that needs one.
    pub ocsp: Vec<OcspTarget>,
    /// Subjects of the certificates left without revocation data because they carry
    /// `noRevAvail` (one-time signing certificates).
    pub no_rev_avail: Vec<String>,
    /// Subjects of the certificates whose issuer is not among the certificates (no request
    /// can be made for them).
    pub unknown_issuer: Vec<String>,
    /// Subjects of the certificates esigd's responder is not authoritative for (OCSP status
    /// `unauthorized`, e.g. a CA certificate issued by an offline root): their revocation data
    /// must come from elsewhere (the root's CRL). Filled by [`Server::validation_data`].
    pub unanswered: Vec<String>,
}

/// The certificates in `cms_der` (a CMS `ContentInfo` with `SignedData`) and in the
/// signature time-stamp tokens of its signers, recursively.
pub fn cms_certificates(what: &str, cms_der: &[u8]) -> Result<Vec<Vec<u8>>, FetchError> {
    let mut out = Vec::new();
    collect_cms_certificates(what, cms_der, 0, &mut out)?;
    Ok(out)
}

fn collect_cms_certificates(
    what: &str,
    cms_der: &[u8],
    depth: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), FetchError> {
    let cms_err = |problem: String| FetchError::Cms {
        what: what.to_owned(),
        problem,
    };
    let sd = esigd_pki::cms::decode_signed_data(cms_der).map_err(|e| cms_err(e.to_string()))?;
    for choice in sd.certificates.iter().flat_map(|s| s.0.iter()) {
        if let CertificateChoices::Certificate(cert) = choice {
            out.push(cert.to_der().map_err(|e| cms_err(e.to_string()))?);
        }
    }
    if depth >= MAX_NESTING {
        return Ok(());
    }
    for si in sd.signer_infos.0.iter() {
        let attrs = si.unsigned_attrs.iter().flat_map(|a| a.iter());
        for attr in attrs.filter(|a| a.oid == ID_AA_SIGNATURE_TIME_STAMP_TOKEN) {
            for value in attr.values.iter() {
                let token = value.to_der().map_err(|e| cms_err(e.to_string()))?;
                collect_cms_certificates(
                    &format!("the signature time-stamp of {what}"),
                    &token,
                    depth + 1,
                    out,
                )?;
            }
        }
    }
    Ok(())
}

/// The certificates of every signature and document time-stamp of `pdf` (see
/// [`cms_certificates`]). Placeholders never filled are skipped.
pub fn pdf_certificates(pdf: &[u8]) -> Result<Vec<Vec<u8>>, FetchError> {
    let mut out = Vec::new();
    for (i, sig) in pdf_lt::signatures(pdf)?.iter().enumerate() {
        if sig.contents.is_empty() {
            continue;
        }
        let what = format!("signature #{} ({} {})", i + 1, sig.kind, sig.sub_filter);
        collect_cms_certificates(&what, &sig.contents, 0, &mut out)?;
    }
    Ok(out)
}

/// The certificates of a PEM file (every `CERTIFICATE` block), as DER.
pub fn pem_certificates(source_name: &str, pem: &[u8]) -> Result<Vec<Vec<u8>>, FetchError> {
    let certs = esigd_pki::pem::parse_certificates(pem).map_err(|e| FetchError::Certificate {
        source_name: source_name.to_owned(),
        problem: e.to_string(),
    })?;
    certs
        .iter()
        .map(|c| {
            c.to_der().map_err(|e| FetchError::Certificate {
                source_name: source_name.to_owned(),
                problem: e.to_string(),
            })
        })
        .collect()
}

fn has_extension(cert: &Certificate, oid: der::oid::ObjectIdentifier) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .any(|e| e.extn_id == oid)
}

/// Deduplicates `certs` and decides which need an OCSP response (see the module
/// documentation).
pub fn plan(certs: Vec<Vec<u8>>) -> Result<Plan, FetchError> {
    let mut seen = BTreeSet::new();
    let certs: Vec<Vec<u8>> = certs
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect();
    let parsed = certs
        .iter()
        .map(|der| {
            Certificate::from_der(der).map_err(|e| FetchError::Certificate {
                source_name: "the collected certificates".into(),
                problem: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = Plan {
        certs,
        ..Plan::default()
    };
    for cert in &parsed {
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_string();
        if tbs.subject == tbs.issuer || has_extension(cert, ID_PKIX_OCSP_NOCHECK) {
            continue;
        }
        if has_extension(cert, ID_CE_NO_REV_AVAIL) {
            plan.no_rev_avail.push(subject);
            continue;
        }
        let Some(issuer) = parsed
            .iter()
            .find(|i| i.tbs_certificate.subject == tbs.issuer)
        else {
            plan.unknown_issuer.push(subject);
            continue;
        };
        let ocsp_err = |e: &dyn std::fmt::Display| FetchError::Ocsp {
            subject: subject.clone(),
            problem: e.to_string(),
        };
        let id = cert_id(issuer, &tbs.serial_number, CertIdHash::Sha1).map_err(|e| ocsp_err(&e))?;
        let request = OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: id.clone(),
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        }
        .to_der()
        .map_err(|e| ocsp_err(&e))?;
        plan.ocsp.push(OcspTarget {
            subject,
            request,
            cert_id: id,
        });
    }
    Ok(plan)
}

/// Checks that `response` (DER `OCSPResponse`) is a successful basic response that says
/// `good` for `target`'s certificate, and returns the certificates it carries (a delegated
/// responder's), which belong in the DSS too. The response's signature is not checked here:
/// the validator checks it when it uses the DSS.
pub fn check_ocsp_response(
    target: &OcspTarget,
    response: &[u8],
) -> Result<Vec<Vec<u8>>, FetchError> {
    let err = |problem: String| FetchError::Ocsp {
        subject: target.subject.clone(),
        problem,
    };
    let resp = OcspResponse::from_der(response).map_err(|e| err(e.to_string()))?;
    if resp.response_status == OcspResponseStatus::Unauthorized {
        return Err(FetchError::OcspUnauthorized {
            subject: target.subject.clone(),
        });
    }
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(err(format!("status {:?}", resp.response_status)));
    }
    let bytes = resp
        .response_bytes
        .ok_or_else(|| err("a successful response without responseBytes".into()))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(err(format!("response type {}", bytes.response_type)));
    }
    let basic =
        BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|e| err(e.to_string()))?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id == target.cert_id)
        .ok_or_else(|| err("no answer for the certificate asked about".into()))?;
    match single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => {
            return Err(FetchError::NotGood {
                subject: target.subject.clone(),
                status: "revoked",
            });
        }
        CertStatus::Unknown(_) => {
            return Err(FetchError::NotGood {
                subject: target.subject.clone(),
                status: "unknown",
            });
        }
    }
    basic
        .certs
        .iter()
        .flatten()
        .map(|c| c.to_der().map_err(|e| err(e.to_string())))
        .collect()
}

/// A DER `TimeStampReq` for the SHA-256 `digest`, asking for the TSA certificate, with
/// `nonce`.
pub fn timestamp_request(digest: &[u8; 32], nonce: u64) -> Result<Vec<u8>, FetchError> {
    let err = |e: der::Error| FetchError::Timestamp(e.to_string());
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: ID_SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.to_vec()).map_err(err)?,
        },
        req_policy: None,
        nonce: Some(int_u64(nonce).map_err(err)?),
        cert_req: true,
        extensions: None,
    }
    .to_der()
    .map_err(err)
}

/// `n` as a (non-negative, minimally encoded) INTEGER.
fn int_u64(n: u64) -> Result<Int, der::Error> {
    let bytes = n.to_be_bytes();
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut v = Vec::with_capacity(9);
    if bytes[start] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[start..]);
    Int::new(&v)
}

/// The `TimeStampToken` of a DER `TimeStampResp`, after checking that it was granted and that
/// its `TSTInfo` has the SHA-256 imprint `digest` and the `nonce` of the request.
pub fn timestamp_token(
    response: &[u8],
    digest: &[u8; 32],
    nonce: u64,
) -> Result<Vec<u8>, FetchError> {
    let err = |s: String| FetchError::Timestamp(s);
    let resp = TimeStampResp::from_der(response).map_err(|e| err(e.to_string()))?;
    let status = resp.status.status as u8;
    if status > 1 {
        return Err(err(format!(
            "the TSA did not grant the request: status {:?} {:?}",
            resp.status.status, resp.status.status_string
        )));
    }
    let token = resp
        .token_der()
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("a granted answer without a token".into()))?;
    let info = esigd_pki::tsp::token_tst_info(&token).map_err(|e| err(e.to_string()))?;
    if info.message_imprint.hash_algorithm.oid != ID_SHA256
        || info.message_imprint.hashed_message.as_bytes() != digest
    {
        return Err(err("the token is for another message imprint".into()));
    }
    let want = int_u64(nonce).map_err(|e| err(e.to_string()))?;
    if info.nonce.as_ref() != Some(&want) {
        return Err(err("the token does not carry the request's nonce".into()));
    }
    Ok(token)
}

/// esigd's public listener, as an HTTP client.
#[derive(Debug)]
pub struct Server {
    client: reqwest::blocking::Client,
    base: String,
}

impl Server {
    /// A client for `base` (e.g. `https://esigd.example:8443`). With `cacert_pem`, only that
    /// CA is trusted for the server's TLS certificate; without it, the built-in web roots.
    pub fn new(base: &str, cacert_pem: Option<&[u8]>) -> Result<Server, FetchError> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("esig/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = cacert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| FetchError::Client(format!("--cacert: {e}")))?;
            if certs.is_empty() {
                return Err(FetchError::Client("--cacert holds no certificate".into()));
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(FetchError::Client(format!(
                "the server URL {base:?} is not http:// or https://"
            )));
        }
        Ok(Server { client, base })
    }

    fn send(
        &self,
        url: String,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<Vec<u8>, FetchError> {
        let http = |e: &dyn std::fmt::Display| FetchError::Http {
            url: url.clone(),
            problem: e.to_string(),
        };
        let resp = request.send().map_err(|e| http(&e))?;
        let status = resp.status();
        if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
            return Err(http(&"the answer is too large"));
        }
        let body = resp.bytes().map_err(|e| http(&e))?;
        if body.len() > MAX_BODY {
            return Err(http(&"the answer is too large"));
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        Ok(body.to_vec())
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{path}", self.base);
        self.send(url.clone(), self.client.get(&url))
    }

    fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{path}", self.base);
        let request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(url.clone(), request)
    }

    /// Collects the validation data for the signatures of `pdf` (see the module
    /// documentation); returns it with the plan it followed.
    pub fn validation_data(&self, pdf: &[u8]) -> Result<(ValidationData, Plan), FetchError> {
        let mut certs = pdf_certificates(pdf)?;
        certs.extend(pem_certificates(
            "/pki/chain.pem",
            &self.get("/pki/chain.pem")?,
        )?);
        certs.extend(pem_certificates(
            "/pki/tsa.pem",
            &self.get("/pki/tsa.pem")?,
        )?);
        let plan = plan(certs)?;
        let crl = self.get("/pki/crl")?;
        x509_cert::crl::CertificateList::from_der(&crl).map_err(|e| FetchError::Crl {
            url: format!("{}/pki/crl", self.base),
            problem: e.to_string(),
        })?;
        let mut data = ValidationData {
            certs: plan.certs.clone(),
            crls: vec![crl],
            ocsps: Vec::new(),
        };
        let mut unanswered = Vec::new();
        for target in &plan.ocsp {
            let response =
                self.post("/ocsp", "application/ocsp-request", target.request.clone())?;
            match check_ocsp_response(target, &response) {
                Ok(certs) => {
                    data.certs.extend(certs);
                    data.ocsps.push(response);
                }
                // Not fatal: the CRL or another source may cover the certificate.
                Err(FetchError::OcspUnauthorized { subject }) => unanswered.push(subject),
                Err(e) => return Err(e),
            }
        }
        Ok((data, Plan { unanswered, ..plan }))
    }

    /// An RFC 3161 token over the SHA-256 `digest` from esigd's TSA.
    pub fn timestamp(&self, digest: &[u8; 32]) -> Result<Vec<u8>, FetchError> {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let request = timestamp_request(digest, nonce)?;
        let response = self.post("/tsa", "application/timestamp-query", request)?;
        timestamp_token(&response, digest, nonce)
    }
}

/// The result of [`extend`].
#[derive(Debug)]
pub struct Extended {
    /// The new file (the input is a byte prefix of it).
    pub bytes: Vec<u8>,
    /// What was collected, and why.
    pub plan: Plan,
    /// What went into the DSS (before deduplication against an existing DSS).
    pub data: ValidationData,
    /// The document time-stamp field's name, when one was added.
    pub timestamp_field: Option<String>,
}

/// B-LT (and with `lta`, B-LTA): collects the validation data from `server`, adds it to the
/// DSS of `pdf` and, with `lta`, adds a document time-stamp from the server's TSA over the
/// result, with `reserve` bytes for the token.
///
/// Run on a B-LTA file with `lta`, this adds the validation data of the last document
/// time-stamp and a new archive time-stamp over it (renewal of the archive time-stamp chain).
pub fn extend(
    pdf: &[u8],
    server: &Server,
    lta: bool,
    reserve: usize,
) -> Result<Extended, FetchError> {
    let (data, plan) = server.validation_data(pdf)?;
    let mut bytes = pdf_lt::add_dss(pdf, &data)?;
    let mut timestamp_field = None;
    if lta {
        let PreparedPdf {
            bytes: prepared,
            digest,
            field_name,
            ..
        } = pdf_lt::add_document_timestamp(&bytes, reserve)?;
        let token = server.timestamp(&digest)?;
        bytes = pdf_lt::embed_document_timestamp(&prepared, &token)?;
        timestamp_field = Some(field_name);
    }
    debug_assert!(bytes.starts_with(pdf));
    Ok(Extended {
        bytes,
        plan,
        data,
        timestamp_field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_minimal_non_negative_integers() {
        assert_eq!(int_u64(0).unwrap().as_bytes(), [0]);
        assert_eq!(int_u64(0x7f).unwrap().as_bytes(), [0x7f]);
        assert_eq!(int_u64(0x80).unwrap().as_bytes(), [0, 0x80]);
        assert_eq!(
            int_u64(u64::MAX).unwrap().as_bytes(),
            [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn timestamp_request_round_trips() {
        let der = timestamp_request(&[7; 32], 42).unwrap();
        let req = TimeStampReq::from_der(&der).unwrap();
        assert!(req.cert_req);
        assert_eq!(req.message_imprint.hash_algorithm.oid, ID_SHA256);
        assert_eq!(req.message_imprint.hashed_message.as_bytes(), [7; 32]);
        assert_eq!(req.nonce, Some(int_u64(42).unwrap()));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            timestamp_token(&[0x30, 0x03, 0x02, 0x01, 0x00], &[0; 32], 1),
            Err(FetchError::Timestamp(_))
        ));
        assert!(matches!(
            cms_certificates("x", &[0x30, 0x00]),
            Err(FetchError::Cms { .. })
        ));
        assert!(matches!(
            plan(vec![vec![0x30, 0x00]]),
            Err(FetchError::Certificate { .. })
        ));
        assert!(matches!(
            Server::new("ftp://x", None),
            Err(FetchError::Client(_))
        ));
        assert!(matches!(
            Server::new("https://x", Some(b"no pem")),
            Err(FetchError::Client(_))
        ));
    }
}
