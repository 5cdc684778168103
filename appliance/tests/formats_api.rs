//! The five signature formats through `POST /v1/sign/onetime` (workflow 9.1: a one-time key in
//! the HSM, a one-time certificate), end to end: the real `esigd` binary on a SoftHSM token with
//! RocksDB and its TSA, the development Identity BB (npm `oidc-provider`) issuing the ID tokens,
//! curl as the mTLS client; each answer checked by validators we did not write
//! (`esigd_testkit::formats_check`):
//!
//! - CAdES: `openssl cms -verify -cades` against the document, `openssl ts -verify`, pyHanko;
//! - PAdES: a PDF made here, `esig::pdf::prepare`, the ByteRange digest signed, `esig::pdf::embed`;
//!   pyHanko (VALID, with the time-stamp), pdfsig, `qpdf --check`;
//! - XAdES and ASiC-E over two documents: xmlsec1, signxml's `XAdESVerifier`, `openssl ts -verify`
//!   over the canonical `ds:SignatureValue`;
//! - JWS over two documents: jwcrypto (`sigD`, empty detached payload), `sigD.hashV` against the
//!   files, `openssl ts -verify` over the ASCII signature;
//!
//! and each refuses one changed document byte for the digest's reason. `GET /v1/sign/response/{id}`
//! returns the same signature and format, `/metrics` counts the signature under its format, and
//! the request errors name the field.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esig::pdf::{PrepareOptions, prepare};
use esigd_testkit::api::{check_one_time_certificate, verify_with_openssl};
use esigd_testkit::formats_check::{
    Anchors, DocFile, check_jws_signature, check_pdf_signature, check_xml_signature, simple_pdf,
};
use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::validators::pyhanko_validate_cms;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The one-time certificate's common name for the IdP's user `mari`.
const MARI: &str = "Mari Maasikas";

/// esigd with the one-time workflow, its Identity BB and the e-Service's client certificate.
struct Env(OneTimeEnv);

fn env() -> Env {
    Env(OneTimeEnv::start())
}

impl std::ops::Deref for Env {
    type Target = OneTimeEnv;
    fn deref(&self) -> &OneTimeEnv {
        &self.0
    }
}

impl Env {
    /// A signature in `format` that must be made: the answer, checked for what every format
    /// shares (status, format, the one-time certificate, a time-stamp, the same answer on
    /// `GET /v1/sign/response/{id}`).
    fn sign(&self, format: &str, body: Value) -> Signature {
        let r = self.post(&body);
        assert_eq!(
            r.status,
            200,
            "{format}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["status"]["code"], "OK", "{v}");
        assert_eq!(v["format"], format, "{v}");
        assert_eq!(v["hashType"], body["hashType"], "{v}");
        assert_eq!(v["signatureType"], "ONETIME", "{v}");
        let work = self.work(&format.to_ascii_lowercase());
        check_one_time_certificate(v["certificate"].as_str().unwrap(), &work);
        let signer_der = esigd_pki::pem::decode_pem(
            "certificate",
            v["certificate"].as_str().unwrap().as_bytes(),
        )
        .unwrap()
        .1;
        let id = v["signatureId"].as_str().unwrap();
        let f = self.call("GET", &format!("/v1/sign/response/{id}"), &[]);
        assert_eq!(f.status, 200, "{}", String::from_utf8_lossy(&f.body));
        let fetched = f.json();
        for field in ["signature", "format", "signatureTimestamp", "certificate"] {
            assert_eq!(
                fetched[field], v[field],
                "{field} fetched differs: {fetched}"
            );
        }
        Signature {
            object: B64.decode(v["signature"].as_str().unwrap()).unwrap(),
            timestamp: B64
                .decode(v["signatureTimestamp"].as_str().unwrap())
                .unwrap(),
            signer_der,
            work,
        }
    }

    fn work(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn anchors(&self) -> Anchors {
        Anchors::of_data_dir(&self.dir.path().join("data"))
    }

    /// `esigd_signatures_created_total` by format, from `/metrics`.
    fn created(&self) -> BTreeMap<String, u64> {
        let (status, body) = self.daemon.get("/metrics", &[]);
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("esigd_signatures_created_total{format=\""))
            .map(|l| {
                let (format, n) = l.split_once("\"} ").unwrap();
                (format.to_owned(), n.trim().parse().unwrap())
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// What a signing answer carries.
struct Signature {
    /// The decoded `signature`: the format's object.
    object: Vec<u8>,
    /// The decoded `signatureTimestamp`.
    timestamp: Vec<u8>,
    /// The signer's certificate (DER).
    signer_der: Vec<u8>,
    /// A directory for this signature's files.
    work: PathBuf,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The request's `documents` entry of a file, with its `hash_type` digest.
fn entry(d: &DocFile, hash_type: &str) -> Value {
    let bytes = d.bytes();
    let digest = match hash_type {
        "SHA2-256" => Sha256::digest(&bytes).to_vec(),
        "SHA2-384" => Sha384::digest(&bytes).to_vec(),
        "SHA2-512" => Sha512::digest(&bytes).to_vec(),
        other => panic!("{other}"),
    };
    json!({"name": d.name, "mediaType": d.media_type, "hash": B64.encode(digest)})
}

/// Two documents, the second with a space in its name (percent-encoded in XML references; the
/// negative checks change the last document).
fn two_documents(dir: &Path) -> Vec<DocFile> {
    vec![
        DocFile::write(
            dir,
            "annex.txt",
            "annex.txt",
            "text/plain",
            "Annex 1: boundary plan, signed by both parties (\u{e9}).\n".as_bytes(),
        ),
        DocFile::write(
            dir,
            "land deed.pdf",
            "land%20deed.pdf",
            "application/pdf",
            &simple_pdf(&["Land deed no. 77", "Seller and buyer"]),
        ),
    ]
}

#[test]
fn cades_verifies_with_openssl_against_the_document() {
    let env = env();
    let work = env.work("cades-doc");
    let doc = work.join("contract.txt");
    std::fs::write(&doc, b"Land sale contract no. 77\nSeller: ...\n").unwrap();
    // The contract's single-hash form; the format name in any case.
    let s = env.sign(
        "CAdES",
        json!({"format": "cades", "hashType": "SHA2-384",
               "hash": B64.encode(Sha384::digest(std::fs::read(&doc).unwrap())),
               "dataToBeDisplayed": "Land sale 77", "requestTimestamp": now()}),
    );
    let anchors = env.anchors();
    // openssl cms -verify -cades against the document (and refused for a changed one: the
    // content digest), openssl ts -verify of the signature time-stamp.
    let verified = verify_with_openssl(&anchors.ca, &anchors.tsa, &s.object, &doc, &s.work, None);
    assert_eq!(verified.timestamp_tokens, vec![s.timestamp.clone()]);
    assert_eq!(
        der::Encode::to_der(&verified.signer_cert).unwrap(),
        s.signer_der
    );
    // pyHanko's detached CMS validation: intact, valid, trusted, with a sound time-stamp.
    let report = pyhanko_validate_cms(&s.work.join("sig.p7s"), &doc, &anchors.ca, None);
    assert!(
        report.signature.ok() && report.bottom_line && report.timestamp_valid(),
        "pyHanko: {report:#?}"
    );
    assert_eq!(
        env.created(),
        BTreeMap::from([("cades".to_owned(), 1)]),
        "esigd_signatures_created_total"
    );
}

/// `openssl cms -verify -crl_check` of `p7s` over `doc` with only the CRLs inside the CMS.
fn openssl_crl_check(p7s: &Path, doc: &Path, ca: &Path) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-crl_check",
            "-in",
        ])
        .arg(p7s)
        .arg("-content")
        .arg(doc)
        .arg("-CAfile")
        .arg(ca)
        .args(["-purpose", "any", "-out", "/dev/null"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cades_b_lt_carries_the_chain_and_the_crl() {
    let env = env();
    let work = env.work("cades-lt");
    let doc = work.join("contract.txt");
    std::fs::write(&doc, b"Land sale contract no. 78\n").unwrap();
    let digest = B64.encode(Sha256::digest(std::fs::read(&doc).unwrap()));
    let anchors = env.anchors();
    let lt = env.sign(
        "CAdES",
        json!({"format": "CAdES", "hashType": "SHA2-256", "hash": digest, "signatureLevel": "B-LT"}),
    );
    verify_with_openssl(&anchors.ca, &anchors.tsa, &lt.object, &doc, &lt.work, None);
    let sd = esigd_pki::cms::decode_signed_data(&lt.object).unwrap();
    assert_eq!(sd.crls.as_ref().map(|c| c.0.len()), Some(1), "one CRL");
    // The CA's CRL inside the CMS is all openssl needs to check revocation of the chain.
    let lt_file = lt.work.join("lt.p7s");
    std::fs::write(&lt_file, &lt.object).unwrap();
    let (ok, why) = openssl_crl_check(&lt_file, &doc, &anchors.ca);
    assert!(ok, "B-LT refused by openssl -crl_check: {why}");
    // A B-T signature has no CRL: the same check fails for want of one.
    let bt = env.sign(
        "CAdES",
        json!({"format": "CAdES", "hashType": "SHA2-256", "hash": digest}),
    );
    let bt_file = bt.work.join("bt.p7s");
    std::fs::write(&bt_file, &bt.object).unwrap();
    let (ok, why) = openssl_crl_check(&bt_file, &doc, &anchors.ca);
    assert!(!ok && why.contains("CRL"), "B-T passed -crl_check: {why}");
    // B-LT is for CAdES; another format or level is refused before anything is signed.
    for (body, needle) in [
        (
            json!({"format": "XAdES", "hashType": "SHA2-256", "hash": digest, "signatureLevel": "B-LT"}),
            "esig pdf lt",
        ),
        (
            json!({"format": "CAdES", "hashType": "SHA2-256", "hash": digest, "signatureLevel": "B-LTA"}),
            "supported: B-T, B-LT",
        ),
    ] {
        let r = env.post(&body);
        assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains(needle));
    }
}

#[test]
fn pades_signs_a_prepared_pdf_valid_for_pyhanko_pdfsig_and_qpdf() {
    let env = env();
    let original = simple_pdf(&["Land sale contract no. 77", "Page two"]);
    let prepared = prepare(
        &original,
        &PrepareOptions {
            reason: Some("Land sale".into()),
            location: Some("Tallinn".into()),
            ..PrepareOptions::default()
        },
    )
    .unwrap();
    let s = env.sign(
        "PAdES",
        json!({"format": "PAdES", "hashType": "SHA2-256", "hash": B64.encode(prepared.digest),
               "dataToBeDisplayed": "Land sale 77"}),
    );
    let signed = esig::pdf::embed(&prepared.bytes, &s.object).unwrap();
    // The CMS carries the answer's time-stamp.
    let cms = esigd_pki::cms::verify_detached_digest(&s.object, Some(&prepared.digest)).unwrap();
    assert_eq!(cms.timestamp_tokens, vec![s.timestamp.clone()]);
    // "contract" on the first page, inside the first signed range.
    let at = signed.windows(8).position(|w| w == b"contract").unwrap();
    assert!(at < prepared.byte_range[1]);
    check_pdf_signature(&signed, MARI, at, &env.anchors(), &s.work);
    assert_eq!(env.created(), BTreeMap::from([("pades".to_owned(), 1)]));
}

#[test]
fn xades_over_two_documents_verifies_with_xmlsec1_signxml_and_openssl_ts() {
    let env = env();
    let docs = two_documents(&env.work("xades-docs"));
    let s = env.sign(
        "XAdES",
        json!({"format": "XAdES", "hashType": "SHA2-256",
               "documents": [entry(&docs[0], "SHA2-256"), entry(&docs[1], "SHA2-256")],
               "dataToBeDisplayed": "Land deed 77 and annex", "requestTimestamp": now()}),
    );
    check_xml_signature(
        &s.object,
        false,
        &docs,
        &s.signer_der,
        &s.timestamp,
        &env.anchors(),
        &s.work,
    );
    assert_eq!(env.created(), BTreeMap::from([("xades".to_owned(), 1)]));
}

#[test]
fn asic_signatures_xml_verifies_against_the_container_paths() {
    let env = env();
    // The documents at their container paths (what signatures0.xml references).
    let root = env.work("asic-container");
    let docs = vec![
        DocFile::write(
            &root,
            "contract.pdf",
            "contract.pdf",
            "application/pdf",
            &simple_pdf(&["Contract in a container"]),
        ),
        DocFile::write(
            &root,
            "annexes/plan.xml",
            "annexes/plan.xml",
            "application/xml",
            b"<plan><parcel id=\"77\"/></plan>\n",
        ),
    ];
    let s = env.sign(
        "ASIC",
        json!({"format": "ASiC", "hashType": "SHA2-384",
               "documents": [entry(&docs[0], "SHA2-384"), entry(&docs[1], "SHA2-384")]}),
    );
    check_xml_signature(
        &s.object,
        true,
        &docs,
        &s.signer_der,
        &s.timestamp,
        &env.anchors(),
        &s.work,
    );
    assert_eq!(env.created(), BTreeMap::from([("asice".to_owned(), 1)]));
}

#[test]
fn jws_over_two_documents_verifies_with_jwcrypto_and_openssl_ts() {
    let env = env();
    let docs = two_documents(&env.work("jws-docs"));
    let s = env.sign(
        "JWS",
        json!({"format": "jws", "hashType": "SHA2-512",
               "documents": [entry(&docs[0], "SHA2-512"), entry(&docs[1], "SHA2-512")]}),
    );
    // The one-time key is P-256: ES256, whatever the documents' hash.
    check_jws_signature(
        &s.object,
        "ES256",
        &docs,
        &s.signer_der,
        &s.timestamp,
        &env.anchors(),
        &s.work,
    );
    assert_eq!(env.created(), BTreeMap::from([("jws".to_owned(), 1)]));
}

#[test]
fn request_errors_name_the_field() {
    let env = env();
    let h = B64.encode([7u8; 32]);
    let two = json!([{"name": "a.txt", "hash": h}, {"name": "b.txt", "hash": h}]);
    let cases = [
        (
            json!({"format": "CAdES", "hashType": "SHA2-256", "documents": two}),
            422,
            vec!["documents", "one"],
        ),
        (
            json!({"format": "PAdES", "hashType": "SHA2-256", "documents": two}),
            422,
            vec!["documents"],
        ),
        (
            json!({"format": "PDF", "hashType": "SHA2-256", "hash": h}),
            422,
            vec!["format", "supported: XAdES, CAdES, ASIC, JWS, PAdES"],
        ),
        (
            json!({"format": "XAdES", "hashType": "SHA2-256", "hash": h, "documents": two}),
            400,
            vec!["hash", "documents", "not both"],
        ),
    ];
    for (body, status, needles) in cases {
        let r = env.post(&body);
        let message = r.message();
        assert_eq!(r.status, status, "{body}: {message}");
        for n in needles {
            assert!(
                message.contains(n),
                "{body}: {message:?} does not name {n:?}"
            );
        }
    }
    assert_eq!(env.created(), BTreeMap::new(), "no signature was made");
}
