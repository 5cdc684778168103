//! JWS / JAdES (ETSI TS 119 182-1) B-B and B-T: a detached JWS over the documents' digests, in the
//! flattened JSON serialization.
//!
//! The protected header follows the rules of the EU DSS generator and its baseline checker
//! (`JAdESLevelBaselineB`, `JAdESBaselineRequirementsChecker`), in this fixed member order:
//!
//! ```json
//! {"alg":"ES256","typ":"jose+json","x5t#S256":"…","x5c":["…"],"iat":1700000000,"b64":false,
//!  "sigD":{"mId":"http://uri.etsi.org/19182/ObjectIdByURIHash","pars":["document.pdf"],
//!          "hashM":"S256","hashV":["…"],"ctys":["pdf"]},
//!  "crit":["sigD","b64"]}
//! ```
//!
//! - `alg` follows the signer's key (ES256 for P-256, ES384 for P-384, RS256 for RSA), whatever
//!   the documents' digest algorithm, which is `sigD.hashM`.
//! - `typ` is `jose+json` (RFC 7515 §4.1.9: the object is in the JSON serialization).
//! - The signing certificate is referenced by exactly one `x5t#S256` (base64url SHA-256 of its
//!   DER); `x5c` carries it and the chain (standard base64 DER).
//! - The claimed signing time is `iat` (NumericDate); `sigT` is never written (TS 119 182-1 makes
//!   `iat` mandatory from 2025-07-15 and forbids both together).
//! - `b64:false` (RFC 7797) is what makes `hashV` the digest of the raw document octets, which is
//!   all a digest-only service has: with `b64` absent, `hashV` would be the digest of the
//!   base64url-encoded document (TS 119 182-1 clause 5.2.8.3.3). `b64` and `sigD` are therefore
//!   in `crit`; nothing from RFC 7515/7518 is.
//! - `ctys` holds the media types in RFC 7515's short form (`application/` dropped when no other
//!   `/` remains, as DSS writes them); there is no `cty` (detached).
//! - With ObjectIdByURIHash the payload contributes an empty stream: the signing input is
//!   `ASCII(base64url(protected)) || "."`, and the payload member is omitted.
//!
//! B-T adds the unprotected header `{"etsiU":["<base64url(JSON {"sigTst":{"tstTokens":[{"val":
//! "<base64 DER token>"}]}})>"]}`; the token's imprint is over the ASCII base64url signature value.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::Encode;
use esigd_pki::keys::KeyKind;
use esigd_pki::tsp;
use x509_cert::Certificate;

use crate::{
    DigestAlgorithm, Format, FormatError, Prepared, SignRequest, SignatureFormat, Signed,
    check_documents, sigvalue,
};

/// The `sigD` mechanism: documents referenced by URI and digest (TS 119 182-1 clause 5.2.8.3.3;
/// DSS `SigDMechanism.OBJECT_ID_BY_URI_HASH`).
pub const SIGD_OBJECT_ID_BY_URI_HASH: &str = "http://uri.etsi.org/19182/ObjectIdByURIHash";

/// The `typ` of a JWS in the JSON serialization (RFC 7515 §4.1.9 `JOSE+JSON`, written as DSS
/// writes it).
pub const TYP: &str = "jose+json";

/// JWS / JAdES: detached, `sigD` by URI hash, flattened JSON serialization.
#[derive(Debug)]
pub struct JwsFormat;

/// The JWS / JAdES format.
pub static JWS: JwsFormat = JwsFormat;

/// The JWS `alg` for the signer's key and the hash it signs with.
fn jws_alg(kind: KeyKind) -> (&'static str, DigestAlgorithm) {
    match kind {
        KeyKind::EcdsaP256 => ("ES256", DigestAlgorithm::Sha256),
        KeyKind::EcdsaP384 => ("ES384", DigestAlgorithm::Sha384),
        KeyKind::Rsa { .. } => ("RS256", DigestAlgorithm::Sha256),
    }
}

/// The `sigD.hashM` of a digest algorithm (TS 119 182-1, as DSS `DigestAlgorithm.getJAdESId`).
fn hash_m(alg: DigestAlgorithm) -> &'static str {
    match alg {
        DigestAlgorithm::Sha256 => "S256",
        DigestAlgorithm::Sha384 => "S384",
        DigestAlgorithm::Sha512 => "S512",
        DigestAlgorithm::Sha3_256 => "S3-256",
        DigestAlgorithm::Sha3_384 => "S3-384",
        DigestAlgorithm::Sha3_512 => "S3-512",
    }
}

/// A media type in RFC 7515's recommended short form: `application/` is dropped when no other `/`
/// remains (`application/pdf` → `pdf`, `text/plain` unchanged).
fn short_media_type(media_type: &str) -> &str {
    match media_type.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest,
        _ => media_type,
    }
}

/// A JSON string literal (serde_json's escaping).
fn json_str(s: &str) -> Result<String, FormatError> {
    serde_json::to_string(s).map_err(|e| FormatError::Internal {
        format: Format::Jws,
        problem: format!("JSON string: {e}"),
    })
}

/// A JSON array of string literals.
fn json_str_array<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<String, FormatError> {
    let items = items
        .into_iter()
        .map(json_str)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("[{}]", items.join(",")))
}

/// The DER of a certificate, for `x5t#S256` and `x5c`.
fn cert_der(cert: &Certificate, field: &str) -> Result<Vec<u8>, FormatError> {
    cert.to_der()
        .map_err(|e| FormatError::request(field, format!("cannot be DER-encoded: {e}")))
}

impl SignatureFormat for JwsFormat {
    fn format(&self) -> Format {
        Format::Jws
    }

    fn prepare(&self, request: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError> {
        check_documents(request, true)?;
        let kind = sigvalue::key_kind(Format::Jws, request.signer)?;
        let (alg, signature_digest_algorithm) = jws_alg(kind);

        let signer_der = cert_der(request.signer, "signer")?;
        let mut x5c = vec![STANDARD.encode(&signer_der)];
        for (i, c) in request.chain.iter().enumerate() {
            x5c.push(STANDARD.encode(cert_der(c, &format!("chain[{i}]"))?));
        }
        let x5t = URL_SAFE_NO_PAD.encode(DigestAlgorithm::Sha256.digest(&signer_der));
        let iat = request
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| FormatError::request("time", "before 1970-01-01T00:00:00Z"))?
            .as_secs();

        let docs = request.documents;
        let pars = json_str_array(docs.iter().map(|d| d.name.as_str()))?;
        let hash_v: Vec<String> = docs
            .iter()
            .map(|d| URL_SAFE_NO_PAD.encode(&d.digest))
            .collect();
        let hash_v = json_str_array(hash_v.iter().map(String::as_str))?;
        let ctys = json_str_array(docs.iter().map(|d| short_media_type(&d.media_type)))?;

        let header = format!(
            concat!(
                r#"{{"alg":{alg},"typ":{typ},"x5t#S256":{x5t},"x5c":{x5c},"iat":{iat},"b64":false,"#,
                r#""sigD":{{"mId":{mid},"pars":{pars},"hashM":{hash_m},"hashV":{hash_v},"ctys":{ctys}}},"#,
                r#""crit":["sigD","b64"]}}"#
            ),
            alg = json_str(alg)?,
            typ = json_str(TYP)?,
            x5t = json_str(&x5t)?,
            x5c = json_str_array(x5c.iter().map(String::as_str))?,
            iat = iat,
            mid = json_str(SIGD_OBJECT_ID_BY_URI_HASH)?,
            pars = pars,
            hash_m = json_str(hash_m(request.digest_algorithm))?,
            hash_v = hash_v,
            ctys = ctys,
        );
        let protected = URL_SAFE_NO_PAD.encode(header.as_bytes());
        let signing_input = format!("{protected}.").into_bytes();
        Ok(Box::new(JwsPrepared {
            signer: request.signer.clone(),
            kind,
            signature_digest_algorithm,
            protected,
            signing_input,
        }))
    }
}

/// A protected header waiting for its signature.
#[derive(Debug)]
struct JwsPrepared {
    /// The certificate whose key must have signed.
    signer: Certificate,
    kind: KeyKind,
    signature_digest_algorithm: DigestAlgorithm,
    /// base64url of the header JSON, exactly as signed.
    protected: String,
    /// `protected || "."`.
    signing_input: Vec<u8>,
}

impl Prepared for JwsPrepared {
    fn format(&self) -> Format {
        Format::Jws
    }

    fn to_be_signed(&self) -> &[u8] {
        &self.signing_input
    }

    fn signature_digest_algorithm(&self) -> DigestAlgorithm {
        self.signature_digest_algorithm
    }

    fn finish(&self, signature: &[u8]) -> Result<Box<dyn Signed>, FormatError> {
        sigvalue::verify(
            &self.signer,
            self.to_be_signed(),
            self.signature_digest_algorithm(),
            signature,
        )?;
        let raw = sigvalue::to_raw(self.kind, signature)?;
        let signature = URL_SAFE_NO_PAD.encode(raw);
        let json = format!(
            r#"{{"protected":{},"signature":{}}}"#,
            json_str(&self.protected)?,
            json_str(&signature)?
        );
        Ok(Box::new(JwsSigned {
            protected: self.protected.clone(),
            signature,
            json: json.into_bytes(),
        }))
    }
}

/// A detached JWS at B-B, flattened JSON serialization.
#[derive(Debug)]
struct JwsSigned {
    protected: String,
    /// base64url of the raw signature value.
    signature: String,
    /// `{"protected":…,"signature":…}`.
    json: Vec<u8>,
}

impl Signed for JwsSigned {
    fn format(&self) -> Format {
        Format::Jws
    }

    fn bytes(&self) -> &[u8] {
        &self.json
    }

    fn timestamp_input(&self) -> Vec<u8> {
        self.signature.as_bytes().to_vec()
    }

    fn add_timestamp(&self, token_der: &[u8]) -> Result<Vec<u8>, FormatError> {
        let tst = tsp::token_tst_info(token_der).map_err(|e| {
            FormatError::Timestamp(format!("not a time-stamp token with a TSTInfo: {e}"))
        })?;
        let alg = tsp::imprint_algorithm(&tst.message_imprint).ok_or_else(|| {
            FormatError::Timestamp(format!(
                "message imprint algorithm {} is not supported",
                tst.message_imprint.hash_algorithm.oid
            ))
        })?;
        if alg.digest(self.signature.as_bytes()) != tst.message_imprint.hashed_message.as_bytes() {
            return Err(FormatError::Timestamp(
                "the message imprint is not the digest of the base64url JWS signature value".into(),
            ));
        }
        let sig_tst = format!(
            r#"{{"sigTst":{{"tstTokens":[{{"val":{}}}]}}}}"#,
            json_str(&STANDARD.encode(token_der))?
        );
        let etsi_u = URL_SAFE_NO_PAD.encode(sig_tst.as_bytes());
        Ok(format!(
            r#"{{"protected":{},"header":{{"etsiU":[{}]}},"signature":{}}}"#,
            json_str(&self.protected)?,
            json_str(&etsi_u)?,
            json_str(&self.signature)?
        )
        .into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TIME, p256_signer, request_for, sign_der, sign_prepared, tsa_token};
    use crate::{Document, prepare};
    use p256::ecdsa::signature::Verifier;
    use serde_json::Value;

    fn docs(alg: DigestAlgorithm) -> Vec<Document> {
        vec![
            Document {
                name: "document.pdf".into(),
                media_type: "application/pdf".into(),
                digest: alg.digest(b"%PDF-1.7 the document"),
            },
            Document {
                name: "notes/note 1.txt".into(),
                media_type: "text/plain".into(),
                digest: alg.digest(b"a note"),
            },
        ]
    }

    fn b64url(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// The protected header's JSON text of a prepared signature.
    fn header_text(p: &dyn Prepared) -> String {
        let tbs = std::str::from_utf8(p.to_be_signed()).unwrap();
        let protected = tbs.strip_suffix('.').expect("signing input ends with '.'");
        String::from_utf8(b64url(protected)).unwrap()
    }

    #[test]
    fn header_has_the_jades_baseline_fields_in_a_fixed_order() {
        let (_, cert) = p256_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let p = prepare(Format::Jws, &request_for(&cert, &d)).unwrap();
        let text = header_text(p.as_ref());
        let h: Value = serde_json::from_str(&text).unwrap();
        let cert_der = cert.to_der().unwrap();

        let keys: Vec<&str> = {
            // The member order as written (serde_json's Value sorts, so scan the text).
            let mut keys = Vec::new();
            for k in [
                "\"alg\"",
                "\"typ\"",
                "\"x5t#S256\"",
                "\"x5c\"",
                "\"iat\"",
                "\"b64\"",
                "\"sigD\"",
                "\"crit\"",
            ] {
                keys.push((text.find(k).unwrap(), k));
            }
            keys.sort();
            keys.into_iter().map(|(_, k)| k).collect()
        };
        assert_eq!(
            keys,
            [
                "\"alg\"",
                "\"typ\"",
                "\"x5t#S256\"",
                "\"x5c\"",
                "\"iat\"",
                "\"b64\"",
                "\"sigD\"",
                "\"crit\""
            ]
        );
        assert!(
            text.starts_with(r#"{"alg":"ES256","typ":"jose+json","x5t#S256":""#),
            "{text}"
        );

        let obj = h.as_object().unwrap();
        assert_eq!(obj.len(), 8, "{text}");
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["typ"], "jose+json");
        assert_eq!(
            b64url(h["x5t#S256"].as_str().unwrap()),
            DigestAlgorithm::Sha256.digest(&cert_der)
        );
        assert_eq!(h["x5c"].as_array().unwrap().len(), 1);
        assert_eq!(
            STANDARD.decode(h["x5c"][0].as_str().unwrap()).unwrap(),
            cert_der
        );
        assert_eq!(h["iat"].as_u64(), Some(TIME));
        assert!(obj.get("sigT").is_none() && obj.get("cty").is_none() && obj.get("kid").is_none());
        assert_eq!(h["b64"], Value::Bool(false));
        assert_eq!(h["crit"], serde_json::json!(["sigD", "b64"]));

        let sig_d = &h["sigD"];
        assert_eq!(sig_d["mId"], "http://uri.etsi.org/19182/ObjectIdByURIHash");
        assert_eq!(
            sig_d["pars"],
            serde_json::json!(["document.pdf", "notes/note 1.txt"])
        );
        assert_eq!(sig_d["hashM"], "S256");
        assert_eq!(sig_d["ctys"], serde_json::json!(["pdf", "text/plain"]));
        let hash_v: Vec<Vec<u8>> = sig_d["hashV"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| b64url(v.as_str().unwrap()))
            .collect();
        assert_eq!(hash_v, [d[0].digest.clone(), d[1].digest.clone()]);
    }

    #[test]
    fn the_chain_follows_the_signer_in_x5c() {
        let (_, cert) = p256_signer();
        let (_, other) = p256_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let chain = [other.clone()];
        let mut req = request_for(&cert, &d);
        req.chain = &chain;
        let h: Value =
            serde_json::from_str(&header_text(prepare(Format::Jws, &req).unwrap().as_ref()))
                .unwrap();
        let x5c = h["x5c"].as_array().unwrap();
        assert_eq!(x5c.len(), 2);
        assert_eq!(
            STANDARD.decode(x5c[0].as_str().unwrap()).unwrap(),
            cert.to_der().unwrap()
        );
        assert_eq!(
            STANDARD.decode(x5c[1].as_str().unwrap()).unwrap(),
            other.to_der().unwrap()
        );
    }

    #[test]
    fn signing_input_has_an_empty_payload_and_the_object_no_payload_member() {
        let (key, cert) = p256_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let p = prepare(Format::Jws, &request_for(&cert, &d)).unwrap();
        let tbs = p.to_be_signed().to_vec();
        assert_eq!(tbs.last(), Some(&b'.'));
        assert_eq!(tbs.iter().filter(|&&b| b == b'.').count(), 1);
        assert!(
            tbs[..tbs.len() - 1]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        );
        assert_eq!(p.digest(), DigestAlgorithm::Sha256.digest(&tbs));

        let signed = sign_prepared(&key, p.as_ref());
        let obj: Value = serde_json::from_slice(signed.bytes()).unwrap();
        let members: Vec<&String> = obj.as_object().unwrap().keys().collect();
        assert_eq!(members, ["protected", "signature"]);
        assert_eq!(
            format!("{}.", obj["protected"].as_str().unwrap()).as_bytes(),
            &tbs[..]
        );
        // ES256: raw r||s over the signing input.
        let raw = b64url(obj["signature"].as_str().unwrap());
        assert_eq!(raw.len(), 64);
        let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
        key.verifying_key().verify(&tbs, &sig).unwrap();
        assert_eq!(
            signed.timestamp_input(),
            obj["signature"].as_str().unwrap().as_bytes()
        );
    }

    #[test]
    fn a_signature_over_anything_else_is_refused() {
        let (key, cert) = p256_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let p = prepare(Format::Jws, &request_for(&cert, &d)).unwrap();
        let mut other = request_for(&cert, &d);
        other.time += std::time::Duration::from_secs(1);
        let q = prepare(Format::Jws, &other).unwrap();
        assert_ne!(p.to_be_signed(), q.to_be_signed());
        let e = p.finish(&sign_der(&key, q.to_be_signed())).unwrap_err();
        assert!(matches!(e, FormatError::Verify(_)), "{e}");
        // Not a DER ECDSA-Sig-Value at all (e.g. raw r||s).
        let raw = p256::ecdsa::Signature::from_der(&sign_der(&key, p.to_be_signed()))
            .unwrap()
            .to_bytes();
        assert!(matches!(p.finish(&raw), Err(FormatError::Verify(_))));
        // Another key over the right input.
        let other_key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        assert!(matches!(
            p.finish(&sign_der(&other_key, p.to_be_signed())),
            Err(FormatError::Verify(_))
        ));
        assert!(p.finish(&sign_der(&key, p.to_be_signed())).is_ok());
    }

    #[test]
    fn the_timestamp_goes_into_etsi_u_and_a_wrong_token_is_refused() {
        let (key, cert) = p256_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let p = prepare(Format::Jws, &request_for(&cert, &d)).unwrap();
        let signed = sign_prepared(&key, p.as_ref());

        // A token over the signature's bytes decoded (not its base64url text) is wrong.
        let sig_text = String::from_utf8(signed.timestamp_input()).unwrap();
        let wrong = tsa_token(&b64url(&sig_text));
        assert!(matches!(
            signed.add_timestamp(&wrong),
            Err(FormatError::Timestamp(_))
        ));
        assert!(matches!(
            signed.add_timestamp(b"not a token"),
            Err(FormatError::Timestamp(_))
        ));
        // A CMS signature that is not a time-stamp token.
        let cades = prepare(Format::Cades, &request_for(&cert, &d[..1])).unwrap();
        let cms = sign_prepared(&key, cades.as_ref());
        assert!(matches!(
            signed.add_timestamp(cms.bytes()),
            Err(FormatError::Timestamp(_))
        ));

        let token = tsa_token(&signed.timestamp_input());
        let bt = signed.add_timestamp(&token).unwrap();
        let obj: Value = serde_json::from_slice(&bt).unwrap();
        let members: Vec<&String> = obj.as_object().unwrap().keys().collect();
        assert_eq!(members.len(), 3);
        let bb: Value = serde_json::from_slice(signed.bytes()).unwrap();
        assert_eq!(obj["protected"], bb["protected"]);
        assert_eq!(obj["signature"], bb["signature"]);
        let etsi_u = obj["header"]["etsiU"].as_array().unwrap();
        assert_eq!(etsi_u.len(), 1);
        assert_eq!(obj["header"].as_object().unwrap().len(), 1);
        let entry: Value = serde_json::from_slice(&b64url(etsi_u[0].as_str().unwrap())).unwrap();
        let tokens = entry["sigTst"]["tstTokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            STANDARD.decode(tokens[0]["val"].as_str().unwrap()).unwrap(),
            token
        );
        // The B-T text keeps the B-B members byte for byte.
        let bt_text = String::from_utf8(bt).unwrap();
        assert!(bt_text.starts_with(&format!(
            r#"{{"protected":"{}","header":"#,
            bb["protected"].as_str().unwrap()
        )));
        assert!(bt_text.ends_with(&format!(
            r#","signature":"{}"}}"#,
            bb["signature"].as_str().unwrap()
        )));
    }

    #[test]
    fn p256_is_es256_whatever_the_documents_digest() {
        let (key, cert) = p256_signer();
        for (alg, m) in [
            (DigestAlgorithm::Sha256, "S256"),
            (DigestAlgorithm::Sha384, "S384"),
            (DigestAlgorithm::Sha512, "S512"),
        ] {
            let d = docs(alg);
            let mut req = request_for(&cert, &d);
            req.digest_algorithm = alg;
            let p = prepare(Format::Jws, &req).unwrap();
            assert_eq!(
                p.signature_digest_algorithm(),
                DigestAlgorithm::Sha256,
                "{m}"
            );
            assert_eq!(p.digest().len(), 32);
            let h: Value = serde_json::from_str(&header_text(p.as_ref())).unwrap();
            assert_eq!(h["alg"], "ES256");
            assert_eq!(h["sigD"]["hashM"], m);
            sign_prepared(&key, p.as_ref());
        }
    }

    /// A P-384 key and a certificate for it (issued by a P-256 unit CA).
    fn p384_signer() -> (p384::ecdsa::SigningKey, Certificate) {
        use std::str::FromStr;
        use x509_cert::builder::{Builder, CertificateBuilder, Profile};
        use x509_cert::name::Name;
        let key = p384::ecdsa::SigningKey::from_slice(&[6; 48]).unwrap();
        let ca = p256::ecdsa::SigningKey::from_slice(&[4; 32]).unwrap();
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let cert = CertificateBuilder::new(
            Profile::Leaf {
                issuer: Name::from_str("CN=Unit CA").unwrap(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            x509_cert::serial_number::SerialNumber::from(43u32),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=Unit P-384 Signer").unwrap(),
            spki,
            &ca,
        )
        .unwrap()
        .build::<p256::ecdsa::DerSignature>()
        .unwrap();
        (key, cert)
    }

    #[test]
    fn p384_is_es384_with_a_96_byte_signature() {
        use p384::ecdsa::signature::hazmat::PrehashSigner;
        let (key, cert) = p384_signer();
        let d = docs(DigestAlgorithm::Sha256);
        let p = prepare(Format::Jws, &request_for(&cert, &d)).unwrap();
        assert_eq!(p.signature_digest_algorithm(), DigestAlgorithm::Sha384);
        let h: Value = serde_json::from_str(&header_text(p.as_ref())).unwrap();
        assert_eq!(h["alg"], "ES384");
        assert_eq!(h["sigD"]["hashM"], "S256");
        // A device that signs the ready digest.
        let sig: p384::ecdsa::Signature = key.sign_prehash(&p.digest()).unwrap();
        let signed = p.finish(sig.to_der().as_bytes()).unwrap();
        let obj: Value = serde_json::from_slice(signed.bytes()).unwrap();
        let raw = b64url(obj["signature"].as_str().unwrap());
        assert_eq!(raw, sig.to_bytes().to_vec());
        assert_eq!(raw.len(), 96);
        let wrong: p384::ecdsa::Signature = key
            .sign_prehash(&DigestAlgorithm::Sha384.digest(b"x"))
            .unwrap();
        assert!(matches!(
            p.finish(wrong.to_der().as_bytes()),
            Err(FormatError::Verify(_))
        ));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let (_, cert) = p256_signer();
        let mut d = docs(DigestAlgorithm::Sha256);
        d[1].name = String::new();
        let e = prepare(Format::Jws, &request_for(&cert, &d)).unwrap_err();
        assert!(e.to_string().starts_with("documents[1].name"), "{e}");
        let mut d = docs(DigestAlgorithm::Sha256);
        d[1].name = d[0].name.clone();
        let e = prepare(Format::Jws, &request_for(&cert, &d)).unwrap_err();
        assert!(e.to_string().starts_with("documents[1].name"), "{e}");
        let mut d = docs(DigestAlgorithm::Sha256);
        d[0].digest.pop();
        let e = prepare(Format::Jws, &request_for(&cert, &d)).unwrap_err();
        assert!(e.to_string().starts_with("documents[0].hash"), "{e}");
        let e = prepare(Format::Jws, &request_for(&cert, &[])).unwrap_err();
        assert!(e.to_string().starts_with("documents"), "{e}");
    }

    #[test]
    fn names_and_media_types_are_json_escaped() {
        let (_, cert) = p256_signer();
        let mut d = docs(DigestAlgorithm::Sha256);
        d[0].name = "a \"quoted\"\\name\u{1}é.pdf".into();
        d[1].media_type = "application/vnd.example+json; charset=\"utf-8\"".into();
        let h: Value = serde_json::from_str(&header_text(
            prepare(Format::Jws, &request_for(&cert, &d))
                .unwrap()
                .as_ref(),
        ))
        .unwrap();
        assert_eq!(h["sigD"]["pars"][0], "a \"quoted\"\\name\u{1}é.pdf");
        assert_eq!(h["sigD"]["ctys"][1], "vnd.example+json; charset=\"utf-8\"");
    }

    #[test]
    fn short_media_types_follow_rfc_7515() {
        assert_eq!(short_media_type("application/pdf"), "pdf");
        assert_eq!(
            short_media_type("application/vnd.etsi.asic-e+zip"),
            "vnd.etsi.asic-e+zip"
        );
        assert_eq!(short_media_type("text/plain"), "text/plain");
        assert_eq!(short_media_type("application/a/b"), "application/a/b");
    }
}
