//! A structural check of the signed objects esigd and esig make: PAdES PDFs, CAdES `.p7s`,
//! XAdES XML, JWS / JAdES JSON and ASiC-E containers.
//!
//! For each signature it checks the structure, the document digests against the data files,
//! the signature value with the key of the certificate the signature carries, and the
//! signature time-stamp's imprint (and the token's own CMS signature):
//!
//! | object | document digests | signed data | time-stamp imprint over |
//! |---|---|---|---|
//! | PDF | `/ByteRange` covers the file except `/Contents`; CMS message-digest = digest of the ranges | CMS signed attributes | the SignerInfo signature value |
//! | CAdES | CMS message-digest = digest of the data file | CMS signed attributes | the SignerInfo signature value |
//! | XAdES | each `ds:Reference` digest = digest of its file | `ds:SignedInfo` **as written** | exc-C14N of `ds:SignatureValue` |
//! | JWS | each `sigD.hashV` = digest of its file (`b64:false`: raw octets) | the JWS signing input | ASCII base64url of the signature |
//! | ASiC-E | the container's files against the references (XAdES) or the ASiCManifest (CAdES) | as above | as above |
//!
//! XAdES: no general XML canonicalizer runs. The signed subtrees are hashed as written; esigd
//! emits them in exclusive canonical form, and a necessary shape of that form is checked (own
//! namespace declaration, no self-closing tag, no whitespace between elements). A signature by
//! another producer may be reported as failing although a full validator accepts it.
//!
//! This is a structural check, not a qualified validation: no trust list, no certificate path,
//! no revocation checking ([`DISCLAIMER`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use der::{Decode, Encode};
use esigd_pki::cms::{self, DigestAlgorithm};
use esigd_pki::keys::{DigestSignatureScheme, verify_digest_signature};
use esigd_pki::tsp;
use x509_cert::Certificate;

use crate::asice::{self, DataFile};
use crate::digest::HashAlgorithm;
use crate::xmldsig;

/// Printed with every report.
pub const DISCLAIMER: &str = "This is a structural check, not a qualified validation (no trust list, no revocation checking).";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The check passed.
    Pass,
    /// The check failed: the report fails.
    Fail,
    /// Information only.
    Info,
}

/// One line of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Pass, fail or information.
    pub status: Status,
    /// What was checked (`document digest of a.pdf`, `signature value`, …).
    pub what: String,
    /// The finding.
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The kind of object (`PDF`, `CAdES`, `XAdES`, `JWS`, `ASiC-E`).
    pub kind: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(kind: &str) -> Report {
        Report {
            kind: kind.to_owned(),
            checks: Vec::new(),
        }
    }

    fn push(&mut self, status: Status, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            status,
            what: what.into(),
            detail: detail.into(),
        });
    }

    fn pass(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Pass, what, detail);
    }

    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Fail, what, detail);
    }

    fn info(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Info, what, detail);
    }

    fn result<E: fmt::Display>(&mut self, what: impl Into<String>, r: Result<String, E>) -> bool {
        match r {
            Ok(d) => {
                self.pass(what, d);
                true
            }
            Err(e) => {
                self.fail(what, e.to_string());
                false
            }
        }
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Pass)
            && self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.kind)?;
        for c in &self.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Info => "info",
            };
            writeln!(f, "  [{tag}] {}: {}", c.what, c.detail)?;
        }
        let fails = self.failures().count();
        if self.passed() {
            writeln!(f, "Result: all checks passed.")?;
        } else {
            writeln!(f, "Result: {fails} check(s) FAILED.")?;
        }
        write!(f, "{DISCLAIMER}")
    }
}

/// Verifies `input` (detected: PDF, ZIP, XML, JSON, else CMS as DER, base64 or PEM; `pdf` forces
/// PDF) against the data files `data` (matched by name to the references; a single reference
/// takes a single data file whatever its name).
pub fn verify(input: &[u8], data: &[DataFile], pdf: bool) -> Report {
    let head = &input[..input.len().min(1024)];
    let trimmed = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&input[..0], |i| &input[i..]);
    if pdf || contains(head, b"%PDF-") {
        verify_pdf(input)
    } else if input.starts_with(b"PK\x03\x04") {
        verify_asice(input)
    } else if trimmed.starts_with(b"<") || trimmed.starts_with(b"\xEF\xBB\xBF<") {
        let mut r = Report::new("XAdES");
        verify_xades(&mut r, input, data, "");
        r
    } else if trimmed.starts_with(b"{") || looks_compact_jws(trimmed) {
        verify_jws(trimmed, data)
    } else {
        let mut r = Report::new("CAdES");
        match decode_cms(input) {
            Ok(der) => {
                let doc = match data {
                    [one] => Some(one),
                    [] => None,
                    _ => {
                        r.info(
                            "data",
                            "a CMS covers one document; the first --data file is used",
                        );
                        data.first()
                    }
                };
                match doc {
                    Some(d) => verify_cms(&mut r, &der, Some((&d.name, &d.bytes)), ""),
                    None => {
                        r.fail(
                            "document digest",
                            "no data file given (--data FILE): the detached CMS cannot be \
                             checked against its document",
                        );
                        verify_cms(&mut r, &der, None, "");
                    }
                }
            }
            Err(e) => r.fail("format", e),
        }
        r
    }
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

fn looks_compact_jws(t: &[u8]) -> bool {
    let t = t.trim_ascii();
    t.iter().filter(|&&b| b == b'.').count() == 2
        && t.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A CMS as DER from DER, base64 or PEM.
fn decode_cms(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.first() == Some(&0x30) {
        return Ok(data.to_vec());
    }
    let text = std::str::from_utf8(data).map_err(|_| "not a PDF, ZIP, XML, JSON or CMS")?;
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64.as_bytes())
        .ok()
        .filter(|d| d.first() == Some(&0x30))
        .ok_or_else(|| "not a PDF, ZIP, XML, JSON or CMS (DER, base64 or PEM)".into())
}

fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

fn hash_of(alg: DigestAlgorithm) -> String {
    match alg {
        DigestAlgorithm::Sha256 => "SHA2-256".into(),
        DigestAlgorithm::Sha384 => "SHA2-384".into(),
        DigestAlgorithm::Sha512 => "SHA2-512".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Checks a time-stamp token: its own CMS signature, then its imprint over `input`.
fn check_timestamp(r: &mut Report, p: &str, token: &[u8], input: &[u8], over: &str) {
    match tsp::verify_token(token) {
        Ok((tst, tsa)) => {
            r.pass(
                format!("{p}time-stamp token"),
                format!(
                    "CMS signature verifies with the TSA certificate ({}), genTime {}",
                    subject(&tsa),
                    der::DateTime::from_system_time(tst.gen_time.to_system_time())
                        .map_or_else(|_| "?".into(), |d| d.to_string())
                ),
            );
            match tsp::imprint_algorithm(&tst.message_imprint) {
                Some(alg) if alg.digest(input) == tst.message_imprint.hashed_message.as_bytes() => {
                    r.pass(
                        format!("{p}time-stamp imprint"),
                        format!("{} of {over}", hash_of(alg)),
                    );
                }
                Some(alg) => r.fail(
                    format!("{p}time-stamp imprint"),
                    format!(
                        "the token's {} imprint is not the digest of {over}",
                        hash_of(alg)
                    ),
                ),
                None => r.fail(
                    format!("{p}time-stamp imprint"),
                    "unsupported imprint algorithm",
                ),
            }
        }
        Err(e) => r.fail(
            format!("{p}time-stamp token"),
            format!("does not verify: {e}"),
        ),
    }
}

/// CMS checks; `document` is the name and content whose digest must be the message digest.
fn verify_cms(r: &mut Report, der: &[u8], document: Option<(&str, &[u8])>, p: &str) {
    let v = match cms::verify_detached_digest(der, None) {
        Ok(v) => v,
        Err(e) => {
            r.fail(format!("{p}CMS signature"), format!("does not verify: {e}"));
            return;
        }
    };
    r.pass(
        format!("{p}CMS signature"),
        format!(
            "the signed attributes verify with the signer certificate's key ({}); \
             signing-certificate-v2 matches; digest {}",
            subject(&v.signer_cert),
            hash_of(v.digest_algorithm)
        ),
    );
    if let Some((name, bytes)) = document {
        let digest = v.digest_algorithm.digest(bytes);
        match cms::verify_detached_digest(der, Some(&digest)) {
            Ok(_) => r.pass(
                format!("{p}document digest of {name}"),
                format!(
                    "CMS message-digest = {} of {name}",
                    hash_of(v.digest_algorithm)
                ),
            ),
            Err(_) => r.fail(
                format!("{p}document digest of {name}"),
                format!(
                    "CMS message-digest is not the {} of {name}: the data was changed or \
                     is not the signed document",
                    hash_of(v.digest_algorithm)
                ),
            ),
        }
    }
    if v.timestamp_tokens.is_empty() {
        r.info(format!("{p}signature time-stamp"), "none (level B-B)");
    }
    for t in &v.timestamp_tokens {
        check_timestamp(r, p, t, &v.signature, "the SignerInfo signature value");
    }
}

/// Verifies a DER or raw `r‖s` signature over `digest` with the certificate's key.
fn check_signature_value(
    cert: &Certificate,
    ecdsa: bool,
    digest: &[u8],
    value: &[u8],
) -> Result<(), String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let (scheme, sig) = if ecdsa {
        let der = match value.len() {
            64 => p256::ecdsa::Signature::from_slice(value)
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(|e| e.to_string())?,
            96 => p384::ecdsa::Signature::from_slice(value)
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(|e| e.to_string())?,
            n => return Err(format!("an ECDSA r‖s value of {n} bytes")),
        };
        (DigestSignatureScheme::Ecdsa, der)
    } else {
        (DigestSignatureScheme::RsaPkcs1v15, value.to_vec())
    };
    verify_digest_signature("signature value", spki, scheme, digest, &sig)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The data file for reference `name` (by name; by being the only one for a single reference).
fn find_data<'a>(data: &'a [DataFile], name: &str, single: bool) -> Option<&'a DataFile> {
    data.iter()
        .find(|d| d.name == name)
        .or_else(|| {
            data.iter().find(|d| {
                std::path::Path::new(name).file_name() == std::path::Path::new(&d.name).file_name()
            })
        })
        .or(if single && data.len() == 1 {
            data.first()
        } else {
            None
        })
}

/// XAdES checks on `xml` with `data`; `p` prefixes check names (ASiC-E signature files).
fn verify_xades(r: &mut Report, xml: &[u8], data: &[DataFile], p: &str) -> Vec<String> {
    let mut covered = Vec::new();
    let text = match std::str::from_utf8(xml) {
        Ok(t) => t.trim_start_matches('\u{FEFF}'),
        Err(_) => {
            r.fail(format!("{p}XML"), "not UTF-8");
            return covered;
        }
    };
    let sigs = match xmldsig::parse(text) {
        Ok(s) => s,
        Err(e) => {
            r.fail(format!("{p}XML signature"), e);
            return covered;
        }
    };
    for (n, sig) in sigs.iter().enumerate() {
        let p = if sigs.len() > 1 {
            format!("{p}signature {}: ", n + 1)
        } else {
            p.to_owned()
        };
        let cert = sig
            .certificates
            .first()
            .ok_or_else(|| "no ds:X509Certificate in ds:KeyInfo".to_owned())
            .and_then(|c| Certificate::from_der(c).map_err(|e| format!("certificate: {e}")));
        let cert = match cert {
            Ok(c) => {
                r.info(format!("{p}signer"), subject(&c));
                Some(c)
            }
            Err(e) => {
                r.fail(format!("{p}certificate"), e);
                None
            }
        };
        if let Some(t) = &sig.signing_time {
            r.info(format!("{p}claimed signing time"), t.clone());
        }
        // The SigningCertificateV2 digest.
        if let (Some(c), Some((method, value))) = (&cert, &sig.signing_cert_digest) {
            let ok = xmldsig::digest_method(method)
                .zip(c.to_der().ok())
                .is_some_and(|(alg, der)| &alg.digest(&der) == value);
            if ok {
                r.pass(
                    format!("{p}signing certificate reference"),
                    "SigningCertificate CertDigest = digest of the KeyInfo certificate",
                );
            } else {
                r.fail(
                    format!("{p}signing certificate reference"),
                    "CertDigest is not the digest of the KeyInfo certificate",
                );
            }
        }
        // References.
        let data_refs = sig.references.iter().filter(|x| !x.is_internal()).count();
        if data_refs == 0 {
            r.fail(format!("{p}references"), "no data object reference");
        }
        for rf in &sig.references {
            let Some(alg) = xmldsig::digest_method(&rf.digest_method) else {
                r.fail(
                    format!("{p}reference {}", rf.uri),
                    format!("digest method {} is not supported", rf.digest_method),
                );
                continue;
            };
            if let Some(id) = rf.uri.strip_prefix('#') {
                let what = format!("{p}signed properties digest");
                if rf.kind.as_deref() != Some(xmldsig::SIGNED_PROPERTIES_TYPE) {
                    r.fail(
                        what.clone(),
                        format!(
                            "reference #{id} lacks Type=\"{}\"",
                            xmldsig::SIGNED_PROPERTIES_TYPE
                        ),
                    );
                }
                match &sig.signed_properties {
                    Some((sp_id, sp)) if sp_id == id => {
                        let shape = xmldsig::looks_canonical(sp, xmldsig::NS_XADES);
                        let t_ok = rf.transforms.iter().all(|t| t == xmldsig::EXC_C14N);
                        if let Err(e) = shape {
                            r.fail(what, format!("xades:SignedProperties is not in the canonical form esigd emits ({e}); general canonicalization is not implemented"));
                        } else if !t_ok {
                            r.fail(
                                what,
                                format!(
                                    "transforms {:?}: only exclusive C14N is supported",
                                    rf.transforms
                                ),
                            );
                        } else if alg.digest(sp.as_bytes()) == rf.digest_value {
                            r.pass(what, format!("{alg} of xades:SignedProperties as written (canonical by construction)"));
                        } else {
                            r.fail(what, format!("the {alg} of xades:SignedProperties differs from the reference (signed properties changed)"));
                        }
                    }
                    _ => r.fail(
                        what,
                        format!("reference #{id} does not point to the xades:SignedProperties"),
                    ),
                }
                continue;
            }
            let name = match rf.path() {
                Ok(n) => n,
                Err(e) => {
                    r.fail(format!("{p}reference {}", rf.uri), e);
                    continue;
                }
            };
            covered.push(name.clone());
            if !rf.transforms.is_empty() {
                r.fail(
                    format!("{p}document digest of {name}"),
                    format!(
                        "transforms {:?} on a detached reference are not supported",
                        rf.transforms
                    ),
                );
                continue;
            }
            match find_data(data, &name, data_refs == 1) {
                Some(d) if alg.digest(&d.bytes) == rf.digest_value => r.pass(
                    format!("{p}document digest of {name}"),
                    format!("{alg} of {} = ds:Reference DigestValue", d.name),
                ),
                Some(d) => r.fail(
                    format!("{p}document digest of {name}"),
                    format!(
                        "the {alg} of {} is not the ds:Reference DigestValue: the data was \
                         changed or is not the signed document",
                        d.name
                    ),
                ),
                None => r.fail(
                    format!("{p}document digest of {name}"),
                    "no data file given for this reference (--data FILE)",
                ),
            }
        }
        // SignedInfo and the signature value.
        let what = format!("{p}signature value");
        let Some((ecdsa, alg)) = xmldsig::signature_method(&sig.signature_method) else {
            r.fail(
                what,
                format!("signature method {} is not supported", sig.signature_method),
            );
            continue;
        };
        if sig.c14n_method != xmldsig::EXC_C14N {
            r.fail(
                what.clone(),
                format!(
                    "canonicalization {} is not supported (only exclusive C14N)",
                    sig.c14n_method
                ),
            );
        } else if let Err(e) = xmldsig::looks_canonical(&sig.signed_info, xmldsig::NS_DS) {
            r.fail(what.clone(), format!("ds:SignedInfo is not in the canonical form esigd emits ({e}); general canonicalization is not implemented"));
        } else if let Some(c) = &cert {
            let digest = alg.digest(sig.signed_info.as_bytes());
            let res = check_signature_value(c, ecdsa, &digest, &sig.signature_value).map(|()| {
                format!("{} over ds:SignedInfo as written (canonical by construction; no general C14N) verifies with the certificate's key", sig.signature_method.rsplit('#').next().unwrap_or_default())
            });
            r.result(what, res);
        }
        if sig.timestamps.is_empty() {
            r.info(format!("{p}signature time-stamp"), "none (level B-B)");
        }
        for (c14n, token) in &sig.timestamps {
            if c14n.as_deref().is_some_and(|c| c != xmldsig::EXC_C14N) {
                r.fail(
                    format!("{p}time-stamp imprint"),
                    "the time-stamp's canonicalization is not exclusive C14N",
                );
                continue;
            }
            check_timestamp(
                r,
                &p,
                token,
                sig.signature_value_c14n.as_bytes(),
                "exc-C14N of ds:SignatureValue",
            );
        }
    }
    covered
}

fn jws_hash(name: &str) -> Option<HashAlgorithm> {
    match name {
        "S256" => Some(HashAlgorithm::Sha256),
        "S384" => Some(HashAlgorithm::Sha384),
        "S512" => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

fn verify_jws(input: &[u8], data: &[DataFile]) -> Report {
    let mut r = Report::new("JWS / JAdES");
    let text = String::from_utf8_lossy(input).trim().to_owned();
    let (protected, signature, etsi_u) = if text.starts_with('{') {
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                r.fail("JSON", e.to_string());
                return r;
            }
        };
        if v.get("signatures").is_some() {
            r.fail(
                "serialization",
                "general JSON serialization (several signatures) is not supported",
            );
            return r;
        }
        if v.get("payload").is_some_and(|p| p.as_str() != Some("")) {
            r.fail(
                "payload",
                "an attached payload; esigd makes detached JWS (sigD)",
            );
            return r;
        }
        let s = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let etsi_u: Vec<serde_json::Value> = v
            .pointer("/header/etsiU")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        (s("protected"), s("signature"), etsi_u)
    } else {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 || !parts[1].is_empty() {
            r.fail("serialization", "compact JWS with an attached payload");
            return r;
        }
        (parts[0].to_owned(), parts[2].to_owned(), Vec::new())
    };
    let header: serde_json::Value = match B64URL
        .decode(protected.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|h| serde_json::from_slice(&h).map_err(|e| e.to_string()))
    {
        Ok(h) => h,
        Err(e) => {
            r.fail("protected header", format!("not base64url JSON: {e}"));
            return r;
        }
    };
    let alg = header["alg"].as_str().unwrap_or_default();
    let cert = header["x5c"][0]
        .as_str()
        .ok_or("no x5c certificate".to_owned())
        .and_then(|c| B64.decode(c).map_err(|e| e.to_string()))
        .and_then(|d| {
            Certificate::from_der(&d)
                .map(|c| (c, d))
                .map_err(|e| e.to_string())
        });
    let cert = match cert {
        Ok((c, der)) => {
            r.info("signer", subject(&c));
            match header["x5t#S256"].as_str() {
                Some(t) if B64URL.decode(t).ok() == Some(HashAlgorithm::Sha256.digest(&der)) => r
                    .pass(
                        "signing certificate reference",
                        "x5t#S256 = SHA-256 of x5c[0]",
                    ),
                Some(_) => r.fail(
                    "signing certificate reference",
                    "x5t#S256 is not the SHA-256 of x5c[0]",
                ),
                None => r.info("signing certificate reference", "no x5t#S256"),
            }
            Some(c)
        }
        Err(e) => {
            r.fail("certificate", e);
            None
        }
    };
    if let Some(iat) = header["iat"].as_u64() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(iat);
        r.info(
            "claimed signing time (iat)",
            der::DateTime::from_system_time(t).map_or_else(|_| iat.to_string(), |d| d.to_string()),
        );
    }
    let b64 = header["b64"].as_bool().unwrap_or(true);
    let crit: Vec<&str> = header["crit"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let sig_d = &header["sigD"];
    if sig_d.is_null() {
        r.fail(
            "sigD",
            "no sigD: not a detached JAdES signature over documents",
        );
    } else {
        if !crit.contains(&"sigD") || (!b64 && !crit.contains(&"b64")) {
            r.fail(
                "crit",
                format!("crit {crit:?} must list sigD (and b64 when b64 is false)"),
            );
        }
        let mid = sig_d["mId"].as_str().unwrap_or_default();
        if mid != "http://uri.etsi.org/19182/ObjectIdByURIHash" {
            r.fail(
                "sigD",
                format!("mechanism {mid:?} is not supported (ObjectIdByURIHash)"),
            );
        }
        let pars: Vec<&str> = sig_d["pars"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let hash_v: Vec<&str> = sig_d["hashV"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let hash_m = sig_d["hashM"].as_str().unwrap_or_default();
        match jws_hash(hash_m) {
            None => r.fail("sigD", format!("hashM {hash_m:?} is not supported")),
            Some(_) if pars.is_empty() || pars.len() != hash_v.len() => {
                r.fail("sigD", "pars and hashV are empty or of different lengths")
            }
            Some(h) => {
                for (name, hv) in pars.iter().zip(&hash_v) {
                    let what = format!("document digest of {name}");
                    match find_data(data, name, pars.len() == 1) {
                        Some(d) => {
                            let input = if b64 {
                                B64URL.encode(&d.bytes).into_bytes()
                            } else {
                                d.bytes.clone()
                            };
                            if B64URL.decode(hv).ok() == Some(h.digest(&input)) {
                                r.pass(
                                    what,
                                    format!(
                                        "{h} of {}{} = sigD hashV",
                                        if b64 { "base64url of " } else { "" },
                                        d.name
                                    ),
                                );
                            } else {
                                r.fail(what, format!("the {h} of {} is not the sigD hashV: the data was changed or is not the signed document", d.name));
                            }
                        }
                        None => {
                            r.fail(what, "no data file given for this sigD entry (--data FILE)")
                        }
                    }
                }
            }
        }
    }
    let signing_input = format!("{protected}.");
    if let Some(c) = &cert {
        let res = match alg {
            "ES256" | "ES384" | "ES512" | "RS256" | "RS384" | "RS512" => {
                let h = match &alg[2..] {
                    "256" => HashAlgorithm::Sha256,
                    "384" => HashAlgorithm::Sha384,
                    _ => HashAlgorithm::Sha512,
                };
                B64URL
                    .decode(signature.as_bytes())
                    .map_err(|e| format!("signature is not base64url: {e}"))
                    .and_then(|sig| {
                        check_signature_value(c, alg.starts_with("ES"), &h.digest(signing_input.as_bytes()), &sig)
                    })
                    .map(|()| format!("{alg} over the JWS signing input (protected header, '.', empty detached payload) verifies with the certificate's key"))
            }
            other => Err(format!(
                "alg {other:?} is not supported (ES256, ES384, RS256)"
            )),
        };
        r.result("signature value", res);
    }
    let mut tokens = Vec::new();
    for e in &etsi_u {
        let obj = match e {
            serde_json::Value::String(s) => B64URL
                .decode(s.as_bytes())
                .ok()
                .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j).ok()),
            v => Some(v.clone()),
        };
        match obj {
            Some(o) => {
                for t in o
                    .pointer("/sigTst/tstTokens")
                    .and_then(|t| t.as_array())
                    .into_iter()
                    .flatten()
                {
                    match t["val"].as_str().map(|v| B64.decode(v)) {
                        Some(Ok(der)) => tokens.push(der),
                        _ => r.fail("time-stamp token", "a sigTst token is not base64"),
                    }
                }
            }
            None => r.fail("etsiU", "an entry is neither base64url JSON nor JSON"),
        }
    }
    if tokens.is_empty() {
        r.info("signature time-stamp", "none (level B-B)");
    }
    for t in &tokens {
        check_timestamp(
            &mut r,
            "",
            t,
            signature.as_bytes(),
            "the ASCII base64url JWS signature",
        );
    }
    r
}

/// Parses `[ n n n n ]` after `/ByteRange`.
fn byte_range_at(pdf: &[u8], at: usize) -> Option<[usize; 4]> {
    let s = &pdf[at + b"/ByteRange".len()..];
    let s = &s[s.iter().position(|c| !c.is_ascii_whitespace())?..];
    let s = s.strip_prefix(b"[")?;
    let close = s.iter().position(|&c| c == b']')?;
    let v: Vec<usize> = std::str::from_utf8(&s[..close])
        .ok()?
        .split_ascii_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// The exact DER object at the start of `b` (trailing zero padding dropped).
fn der_prefix(b: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = b.get(1..)?.split_first()?;
    let (len, header) = if first & 0x80 == 0 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (
            rest[..n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            2 + n,
        )
    };
    b.get(..header.checked_add(len)?)
}

fn verify_pdf(pdf: &[u8]) -> Report {
    let mut r = Report::new("PDF (PAdES)");
    let positions: Vec<usize> = pdf
        .windows(b"/ByteRange".len())
        .enumerate()
        .filter(|(_, w)| *w == b"/ByteRange")
        .map(|(i, _)| i)
        .collect();
    if positions.is_empty() {
        r.fail("signatures", "the PDF has no signature (/ByteRange)");
        return r;
    }
    let n = positions.len();
    for (k, at) in positions.into_iter().enumerate() {
        let p = format!("signature {}: ", k + 1);
        let Some([z, a, b, c]) = byte_range_at(pdf, at) else {
            r.fail(format!("{p}/ByteRange"), "not an array of four integers");
            continue;
        };
        let end = b.checked_add(c);
        if z != 0
            || a >= b
            || end.is_none_or(|e| e > pdf.len())
            || b - a < 2
            || pdf[a] != b'<'
            || pdf[b - 1] != b'>'
        {
            r.fail(
                format!("{p}/ByteRange"),
                format!(
                    "[{z} {a} {b} {c}] does not describe a hex /Contents gap in a {}-byte file",
                    pdf.len()
                ),
            );
            continue;
        }
        let end = b + c;
        if end == pdf.len() {
            r.pass(
                format!("{p}/ByteRange"),
                format!("[0 {a} {b} {c}] covers the whole file except /Contents"),
            );
        } else if k + 1 < n {
            r.info(format!("{p}/ByteRange"), format!("[0 {a} {b} {c}] covers the revision up to byte {end}; {} bytes of later updates follow", pdf.len() - end));
        } else if contains(&pdf[end..], b"/DSS") {
            r.info(format!("{p}/ByteRange"), format!("[0 {a} {b} {c}] covers the file up to byte {end}; the {} bytes after it are an incremental update with a /DSS (validation data, B-LT), which is not signed", pdf.len() - end));
        } else {
            r.fail(format!("{p}/ByteRange"), format!("[0 {a} {b} {c}] ends at byte {end} but the file has {} bytes: bytes after the last signature are not signed", pdf.len()));
        }
        let hex_area: Vec<u8> = pdf[a + 1..b - 1]
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let Some(contents) = hex::decode(&hex_area).ok() else {
            r.fail(format!("{p}/Contents"), "not a hex string");
            continue;
        };
        let Some(der) = der_prefix(&contents) else {
            r.fail(
                format!("{p}/Contents"),
                "empty or not a DER CMS (an unfilled placeholder?)",
            );
            continue;
        };
        let mut ranges = pdf[..a].to_vec();
        ranges.extend_from_slice(&pdf[b..end]);
        if tsp::token_tst_info(der).is_ok() {
            // A document time-stamp (/SubFilter /ETSI.RFC3161, B-LTA): the token's imprint is
            // the digest of the ranges.
            r.info(
                format!("{p}kind"),
                "document time-stamp (RFC 3161 token over the /ByteRange)",
            );
            check_timestamp(
                &mut r,
                &p,
                der,
                &ranges,
                "the /ByteRange (document time-stamp)",
            );
            continue;
        }
        verify_cms(&mut r, der, Some(("the /ByteRange", &ranges)), &p);
    }
    r
}

fn verify_asice(container: &[u8]) -> Report {
    let mut r = Report::new("ASiC-E");
    r.result(
        "container layout",
        asice::check_layout(container).map(|()| {
            "mimetype first, STORED, no extra field, no data descriptor, application/vnd.etsi.asic-e+zip".to_owned()
        }),
    );
    let c = match asice::read(container) {
        Ok(c) => c,
        Err(e) => {
            r.fail("ZIP", e.to_string());
            return r;
        }
    };
    let files = c.data_files();
    if files.is_empty() {
        r.fail("data files", "the container has no data file");
    }
    match c.get(asice::MANIFEST_PATH).map(asice::parse_odf_manifest) {
        None => r.fail("manifest", format!("no {}", asice::MANIFEST_PATH)),
        Some(Err(e)) => r.fail("manifest", e.to_string()),
        Some(Ok(entries)) => {
            let missing: Vec<&str> = files
                .iter()
                .filter(|f| !entries.iter().any(|(p, _)| p == &f.name))
                .map(|f| f.name.as_str())
                .collect();
            if missing.is_empty() {
                r.pass(
                    "manifest",
                    format!("{} lists every data file", asice::MANIFEST_PATH),
                );
            } else {
                r.fail(
                    "manifest",
                    format!("{} does not list {missing:?}", asice::MANIFEST_PATH),
                );
            }
        }
    }
    let mut covered: Vec<String> = Vec::new();
    let mut signatures = 0;
    for (name, bytes) in &c.entries {
        let Some(file) = name.strip_prefix("META-INF/") else {
            continue;
        };
        if file.contains("signatures") && file.ends_with(".xml") {
            signatures += 1;
            let p = format!("{name}: ");
            let refs = verify_xades(&mut r, bytes, &files, &p);
            for rf in &refs {
                if c.get(rf).is_none() {
                    r.fail(
                        format!("{p}reference {rf}"),
                        "names no file in the container",
                    );
                }
            }
            covered.extend(refs);
        } else if file.starts_with("ASiCManifest") && file.ends_with(".xml") {
            signatures += 1;
            let p = format!("{name}: ");
            let m = match asice::parse_asic_manifest(bytes) {
                Ok(m) => m,
                Err(e) => {
                    r.fail(format!("{p}ASiCManifest"), e.to_string());
                    continue;
                }
            };
            for rf in &m.references {
                let what = format!("{p}document digest of {}", rf.name);
                match c.get(&rf.name) {
                    Some(b) if rf.algorithm.digest(b) == rf.digest => r.pass(what, format!("{} = DataObjectReference DigestValue", rf.algorithm)),
                    Some(_) => r.fail(what, format!("the {} of {} is not the ASiCManifest's DigestValue: the file was changed", rf.algorithm, rf.name)),
                    None => r.fail(what, "names no file in the container"),
                }
                covered.push(rf.name.clone());
            }
            match c.get(&m.signature).map(decode_cms) {
                Some(Ok(der)) => verify_cms(
                    &mut r,
                    &der,
                    Some((name.as_str(), bytes)),
                    &format!("{}: ", m.signature),
                ),
                Some(Err(e)) => r.fail(format!("{}: CMS", m.signature), e),
                None => r.fail(
                    format!("{p}signature"),
                    format!("{} is not in the container", m.signature),
                ),
            }
        }
    }
    if signatures == 0 {
        r.fail(
            "signatures",
            "no META-INF/signatures*.xml nor META-INF/ASiCManifest*.xml",
        );
    }
    for f in &files {
        if !covered.contains(&f.name) {
            r.fail(
                format!("data file {}", f.name),
                "not covered by any signature",
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_prefixes() {
        assert_eq!(
            der_prefix(&[0x30, 0x02, 1, 2, 0, 0]),
            Some(&[0x30, 0x02, 1, 2][..])
        );
        assert_eq!(
            der_prefix(&[0x30, 0x81, 0x01, 5, 0]),
            Some(&[0x30, 0x81, 0x01, 5][..])
        );
        assert_eq!(der_prefix(&[0x30]), None);
        assert_eq!(der_prefix(&[0x30, 0x05, 1]), None);
    }

    #[test]
    fn report_needs_a_pass_and_no_fail() {
        let mut r = Report::new("X");
        assert!(!r.passed());
        r.info("a", "b");
        assert!(!r.passed());
        r.pass("c", "d");
        assert!(r.passed());
        r.fail("e", "f");
        assert!(!r.passed());
        let text = r.to_string();
        assert!(
            text.contains("[FAIL] e: f") && text.ends_with(DISCLAIMER),
            "{text}"
        );
    }

    #[test]
    fn garbage_fails() {
        for input in [
            &b"hello"[..],
            b"%PDF-1.7\n",
            b"<a/>",
            b"{}",
            b"PK\x03\x04xxxx",
        ] {
            let r = verify(input, &[], false);
            assert!(!r.passed(), "{r}");
        }
    }
}
