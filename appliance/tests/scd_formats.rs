//! Workflow 9.2.2 in the formats other than CAdES, with every part real (`testkit::scd_world`):
//! a citizen onboarded through `esigd-remote-scd` and `esigd-device` (own SoftHSM token, PIN)
//! signs by pseudonym token (`POST /v1/sign/pseudonym`, `X-Pseodonym-Token`) in PAdES, XAdES,
//! ASiC-E and JWS; the device shows the code and signs the prepared digest with the PIN; the
//! e-Service fetches the result. Each signature is checked by the validators of
//! `esigd_testkit::formats_check` (pyHanko, pdfsig, qpdf; xmlsec1, signxml; jwcrypto; openssl ts)
//! with the citizen's SCD certificate as the signer, and refused for one changed document byte.
//! `/metrics` then counts one signature per format.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esig::pdf::{PrepareOptions, prepare};
use esigd_testkit::esig;
use esigd_testkit::formats_check::{
    Anchors, DocFile, check_jws_signature, check_pdf_signature, check_xml_signature, pyhanko_ltv,
    simple_pdf,
};
use esigd_testkit::rscd::PIN;
use esigd_testkit::scd_world::{AUD, REDIRECT, SECRET, World, world};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384};

/// The citizen's onboarded key, as the e-Service knows it.
struct Citizen {
    pseudonym: String,
    serial: String,
    certificate_pem: String,
    certificate_der: Vec<u8>,
}

/// A pseudonym token (`GET /v1/token/pseodonym/{pseudonym}`).
fn token_for(w: &World, pseudonym: &str) -> String {
    let r = w.call("GET", &format!("/v1/token/pseodonym/{pseudonym}"), &[]);
    assert_eq!(r.status, 200, "{}", r.message());
    r.json()["jwt"].as_str().unwrap().to_owned()
}

/// Asks for a signature by the citizen's pseudonym, confirms it on the device with the PIN
/// (the device shows `display` and the answer's code), and fetches it: the answer, checked for
/// what every format shares (format, SCD, the onboarded certificate).
fn sign_on_device(w: &mut World, c: &Citizen, format: &str, mut body: Value) -> (Vec<u8>, Vec<u8>) {
    let display = format!("{format} for the land registry");
    body["dataToBeDisplayed"] = display.clone().into();
    body["requestTimestamp"] = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .into();
    let token = format!("X-Pseodonym-Token: {}", token_for(w, &c.pseudonym));
    let r = w.call(
        "POST",
        "/v1/sign/pseudonym",
        &[
            "-H",
            &token,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ],
    );
    assert_eq!(r.status, 200, "{format}: {}", r.message());
    let v = r.json();
    let id = v["signatureId"].as_str().unwrap().to_owned();
    let screen = w.device.next();
    assert_eq!(screen["type"], "SIGN", "{screen}");
    assert_eq!(screen["text"], display.as_str(), "{screen}");
    assert_eq!(
        screen["vc"], v["verificationCode"],
        "one code on both sides"
    );
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    let sent = w.device.confirm(&tx, PIN, None);
    assert_eq!(sent["sent"], "OK", "{sent}");
    let r = w.call(
        "GET",
        &format!("/v1/sign/response/{id}?timeoutMs=20000"),
        &["--max-time", "40"],
    );
    assert_eq!(r.status, 200, "{format}: {}", r.message());
    let v = r.json();
    assert_eq!(v["status"]["code"], "OK", "{v}");
    assert_eq!(v["format"], format, "{v}");
    assert_eq!(v["hashType"], body["hashType"], "{v}");
    assert_eq!(v["signatureType"], "SCD", "{v}");
    assert_eq!(v["certificateId"], c.serial.as_str(), "{v}");
    assert_eq!(
        v["certificate"].as_str().unwrap().trim(),
        c.certificate_pem.trim(),
        "the signer is the onboarded certificate"
    );
    (
        B64.decode(v["signature"].as_str().unwrap()).unwrap(),
        B64.decode(v["signatureTimestamp"].as_str().unwrap())
            .unwrap(),
    )
}

fn work(w: &World, name: &str) -> PathBuf {
    let d = w.dir.path().join("work").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entry(d: &DocFile, digest: &[u8]) -> Value {
    json!({"name": d.name, "mediaType": d.media_type, "hash": B64.encode(digest)})
}

/// `esigd_signatures_created_total` by format, from `/metrics`.
fn created(w: &World) -> BTreeMap<String, u64> {
    let (status, body) = w.esigd.get("/metrics", &[]);
    assert_eq!(status, 200);
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("esigd_signatures_created_total{format=\""))
        .map(|l| {
            let (format, n) = l.split_once("\"} ").unwrap();
            (format.to_owned(), n.trim().parse().unwrap())
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_citizen_signs_pades_xades_asic_and_jws_on_their_device() {
    let mut w = world();
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let onboarded = w.onboard(&mari.access_token, 0);
    let certificate_pem = onboarded["certificate"].as_str().unwrap().to_owned();
    let c = Citizen {
        pseudonym: onboarded["pseudonym"].as_str().unwrap().to_owned(),
        serial: onboarded["certificateId"].as_str().unwrap().to_owned(),
        certificate_der: esigd_pki::pem::decode_pem("certificate", certificate_pem.as_bytes())
            .unwrap()
            .1,
        certificate_pem,
    };
    let anchors = Anchors::of_data_dir(&w.dir.path().join("data"));

    // PAdES: the client prepares the PDF, the device signs the ByteRange digest's CMS.
    let original = simple_pdf(&["Lease agreement no. 42", "Signed on the citizen's device"]);
    let prepared = prepare(
        &original,
        &PrepareOptions {
            reason: Some("Lease 42".into()),
            ..PrepareOptions::default()
        },
    )
    .unwrap();
    let (cms, timestamp) = sign_on_device(
        &mut w,
        &c,
        "PAdES",
        json!({"format": "PAdES", "hashType": "SHA2-256", "hash": B64.encode(prepared.digest)}),
    );
    let verified = esigd_pki::cms::verify_detached_digest(&cms, Some(&prepared.digest)).unwrap();
    assert_eq!(
        der::Encode::to_der(&verified.signer_cert).unwrap(),
        c.certificate_der,
        "the CMS signer is the SCD certificate"
    );
    assert_eq!(verified.timestamp_tokens, vec![timestamp]);
    let signed = esig::pdf::embed(&prepared.bytes, &cms).unwrap();
    let at = signed.windows(5).position(|x| x == b"Lease").unwrap();
    assert!(at < prepared.byte_range[1]);
    let pades = check_pdf_signature(&signed, "Mari Maasikas", at, &anchors, &work(&w, "pades"));

    // B-LTA with `esig pdf lt` from esigd's public listener: the citizen's certificate is an
    // ordinary one, so its OCSP answer must be in the file too; pyHanko then validates the
    // signature long-term with nothing fetched (lt and lta PASSED).
    let dir = work(&w, "pades-lta");
    let lta = dir.join("lease-lta.pdf");
    let out = esig()
        .args(["pdf", "lt"])
        .arg(&pades)
        .arg("--server")
        .arg(format!("http://{}", w.esigd.public))
        .arg("--lta")
        .arg("--out")
        .arg(&lta)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "esig pdf lt: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (first, text) = pyhanko_ltv(&lta, &anchors.ca, "required");
    assert!(
        first.contains("lt=PASSED/OK") && first.contains("lta=PASSED/OK"),
        "{text}"
    );
    let (first, text) = pyhanko_ltv(&pades, &anchors.ca, "required");
    assert!(!first.contains("lt=PASSED"), "B-T alone passed LTV: {text}");

    // XAdES over two documents, one name with a space.
    let dir = work(&w, "xades-docs");
    let docs = vec![
        DocFile::write(
            &dir,
            "lease.pdf",
            "lease.pdf",
            "application/pdf",
            &simple_pdf(&["Lease 42"]),
        ),
        DocFile::write(
            &dir,
            "house rules.txt",
            "house%20rules.txt",
            "text/plain",
            b"No pets on the balcony.\n",
        ),
    ];
    let digests: Vec<Vec<u8>> = docs
        .iter()
        .map(|d| Sha256::digest(d.bytes()).to_vec())
        .collect();
    let (xml, timestamp) = sign_on_device(
        &mut w,
        &c,
        "XAdES",
        json!({"format": "XAdES", "hashType": "SHA2-256",
               "documents": [entry(&docs[0], &digests[0]), entry(&docs[1], &digests[1])]}),
    );
    check_xml_signature(
        &xml,
        false,
        &docs,
        &c.certificate_der,
        &timestamp,
        &anchors,
        &work(&w, "xades"),
    );

    // ASiC-E: signatures0.xml over the container's paths, SHA-384 digests.
    let root = work(&w, "asic-container");
    let container = vec![
        DocFile::write(
            &root,
            "lease.pdf",
            "lease.pdf",
            "application/pdf",
            &simple_pdf(&["Lease 42 in a container"]),
        ),
        DocFile::write(
            &root,
            "appendix/inventory.csv",
            "appendix/inventory.csv",
            "text/csv",
            b"item,count\nchair,4\n",
        ),
    ];
    let digests: Vec<Vec<u8>> = container
        .iter()
        .map(|d| Sha384::digest(d.bytes()).to_vec())
        .collect();
    let (xml, timestamp) = sign_on_device(
        &mut w,
        &c,
        "ASIC",
        json!({"format": "ASIC", "hashType": "SHA2-384",
               "documents": [entry(&container[0], &digests[0]), entry(&container[1], &digests[1])]}),
    );
    check_xml_signature(
        &xml,
        true,
        &container,
        &c.certificate_der,
        &timestamp,
        &anchors,
        &work(&w, "asic"),
    );

    // JWS over the XAdES documents: the device key is P-256, so ES256.
    let digests: Vec<Vec<u8>> = docs
        .iter()
        .map(|d| Sha256::digest(d.bytes()).to_vec())
        .collect();
    let (jws, timestamp) = sign_on_device(
        &mut w,
        &c,
        "JWS",
        json!({"format": "JWS", "hashType": "SHA2-256",
               "documents": [entry(&docs[0], &digests[0]), entry(&docs[1], &digests[1])]}),
    );
    check_jws_signature(
        &jws,
        "ES256",
        &docs,
        &c.certificate_der,
        &timestamp,
        &anchors,
        &work(&w, "jws"),
    );

    assert_eq!(
        created(&w),
        BTreeMap::from([
            ("asice".to_owned(), 1),
            ("jws".to_owned(), 1),
            ("pades".to_owned(), 1),
            ("xades".to_owned(), 1),
        ]),
        "esigd_signatures_created_total by format"
    );
}
