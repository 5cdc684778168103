//! Documents given by an e-Service (names, media types, digests) → every format of
//! `esigd_formats`, signed with a software key and time-stamped (feature `test-support`).
//!
//! Input: a format byte, then documents separated by 0x00, each `name 0x01 mediaType`; the
//! digest of each document is derived from its index.
//!
//! Asserts: a refusal is a request error naming `documents`; an accepted request gives
//! well-formed XML (XAdES, ASiC-E; parsed by roxmltree) whose `ds:Reference` URIs percent-decode
//! back to the names in order and whose `DataObjectFormat` media types are the given ones, or a
//! JWS whose protected header parses as JSON with `sigD.pars` = the names and
//! `sigD.ctys` one per document; the time-stamp embeds and the B-T object is well-formed too.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use esigd_formats::testing::{p256_signer, request_for, sign_prepared, tsa_token};
use esigd_formats::{Document, DigestAlgorithm, Format, FormatError, prepare};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 5] = [
    Format::Xades,
    Format::Asice,
    Format::Jws,
    Format::Cades,
    Format::Pades,
];

fn xml_checks(xml: &[u8], docs: &[Document]) {
    let text = std::str::from_utf8(xml).expect("XML is UTF-8");
    let tree = roxmltree::Document::parse(text).expect("well-formed XML");
    let refs: Vec<String> = tree
        .descendants()
        .filter(|n| n.tag_name().name() == "Reference")
        .filter(|n| n.attribute("Type").is_none())
        .map(|n| {
            let uri = n.attribute("URI").expect("data reference has a URI");
            percent_encoding::percent_decode_str(uri)
                .decode_utf8()
                .expect("URI decodes to UTF-8")
                .into_owned()
        })
        .collect();
    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(refs, names, "references name the documents in order");
    let types: Vec<&str> = tree
        .descendants()
        .filter(|n| n.tag_name().name() == "MimeType")
        .map(|n| n.text().unwrap_or(""))
        .collect();
    let want: Vec<&str> = docs.iter().map(|d| d.media_type.as_str()).collect();
    assert_eq!(types, want, "one DataObjectFormat per document");
}

fn jws_checks(json: &[u8], docs: &[Document]) {
    let v: serde_json::Value = serde_json::from_slice(json).expect("JWS is JSON");
    let protected = v["protected"].as_str().expect("protected member");
    let header = URL_SAFE_NO_PAD
        .decode(protected)
        .expect("protected is base64url");
    let h: serde_json::Value = serde_json::from_slice(&header).expect("header is JSON");
    let pars: Vec<&str> = h["sigD"]["pars"]
        .as_array()
        .expect("pars")
        .iter()
        .map(|p| p.as_str().expect("pars entry is a string"))
        .collect();
    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(pars, names);
    assert_eq!(h["sigD"]["ctys"].as_array().expect("ctys").len(), docs.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&f, rest)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(f) % FORMATS.len()];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let docs: Vec<Document> = text
        .split('\0')
        .take(8)
        .enumerate()
        .map(|(i, d)| {
            let (name, media) = d.split_once('\u{1}').unwrap_or((d, "application/pdf"));
            Document {
                name: name.to_owned(),
                media_type: media.to_owned(),
                digest: DigestAlgorithm::Sha256.digest(&[i as u8]),
            }
        })
        .collect();
    let (key, cert) = p256_signer();
    let prepared = match prepare(format, &request_for(&cert, &docs)) {
        Ok(p) => p,
        Err(FormatError::Request { field, .. }) => {
            assert!(field.starts_with("documents"), "refusal names {field}");
            return;
        }
        Err(e) => panic!("not a request error: {e}"),
    };
    let signed = sign_prepared(&key, prepared.as_ref());
    let bt = signed
        .add_timestamp(&tsa_token(&signed.timestamp_input()))
        .expect("a token over the time-stamp input embeds");
    match format {
        Format::Xades | Format::Asice => {
            xml_checks(signed.bytes(), &docs);
            xml_checks(&bt, &docs);
        }
        Format::Jws => {
            jws_checks(signed.bytes(), &docs);
            jws_checks(&bt, &docs);
        }
        Format::Cades | Format::Pades => assert_eq!(docs.len(), 1),
    }
});
