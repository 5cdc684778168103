//! JSON body of `POST /v1/sign/onetime` → `esigd_web::sign_input::SignBody::parse` and
//! `SignBody::validate`, the two calls the route (`sign_onetime` in web/src/routes/eservice.rs)
//! makes before it looks at the ID token; and the `signatureId` path parameter of
//! `GET /v1/sign/response/{signatureId}` (`parse_signature_id`, after the route's lower-casing).
//!
//! Asserts: every refusal is a 400 or 422 whose message names a field (or the body) and echoes a
//! bounded amount of the input (the message is shown to the caller and, on the signing pages, to
//! the user); an accepted body names one of the five formats, has 1 to 64 documents each with a
//! digest of exactly the hash type's length, and display text within the documented bound; and an
//! accepted body round-trips (serialize → parse → validate gives the same input), also with the
//! digests re-encoded as canonical standard base64 in the `documents` form.
#![no_main]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use esigd_web::routes::eservice::parse_signature_id;
use esigd_formats::Format;
use esigd_service::signing::Level;
use esigd_web::sign_input::{
    DocumentBody, MAX_DISPLAY_CHARS, MAX_DOCUMENTS, SignBody, SignInput, check_display_chars,
};
use libfuzzer_sys::fuzz_target;

/// `limits.request_max_age` default.
const MAX_AGE: Duration = Duration::from_secs(600);
/// Longest error message: what the route writes around the input plus a bounded echo of it.
const MAX_MESSAGE: usize = 400;
/// Field names a refusal may name.
const FIELDS: [&str; 8] = [
    "request body",
    "signatureLevel",
    "format",
    "hashType",
    "hash",
    "documents",
    "dataToBeDisplayed",
    "requestTimestamp",
];

fn same(a: &SignInput, b: &SignInput) -> bool {
    a.spec == b.spec && a.display == b.display
}

fuzz_target!(|data: &[u8]| {
    // The path parameter: 64 hex digits in any case, nothing else.
    if let Ok(s) = std::str::from_utf8(data) {
        match parse_signature_id(&s.to_ascii_lowercase()) {
            Some(id) => {
                assert!(s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(hex::encode(id), s.to_ascii_lowercase());
            }
            None => assert!(s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit())),
        }
    }

    let checked = SignBody::parse(data).and_then(|b| b.validate(MAX_AGE).map(|i| (b, i)));
    let (body, input) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            let status = e.status().as_u16();
            assert!(status == 400 || status == 422, "status {status}");
            let m = e.message();
            assert!(
                m.len() <= MAX_MESSAGE,
                "{}-byte message echoes the input: {:?}…",
                m.len(),
                m.chars().take(120).collect::<String>()
            );
            assert!(
                FIELDS.iter().any(|f| m.contains(f)),
                "message names no field: {m}"
            );
            return;
        }
    };

    let format = body.format.as_deref().expect("accepted without format");
    assert_eq!(Format::parse(format).expect("accepted format parses"), input.spec.format);
    let docs = &input.spec.documents;
    assert!(!docs.is_empty() && docs.len() <= MAX_DOCUMENTS);
    assert!(docs.len() == 1 || input.spec.format.signs_several_documents());
    for d in docs {
        assert_eq!(d.digest.len(), input.spec.hash_type.len());
        assert!(!d.name.is_empty() && !d.name.chars().any(char::is_control));
    }
    assert_eq!(input.display, body.data_to_be_displayed);
    if let Some(d) = &input.display {
        assert!(d.chars().count() <= MAX_DISPLAY_CHARS);
        assert!(check_display_chars(d).is_ok());
    }

    // Round trip through the JSON the e-Service would send.
    let json = serde_json::to_vec(&body).expect("a parsed body serializes");
    let again = SignBody::parse(&json).expect("re-serialized body parses");
    assert_eq!(again, body, "JSON round trip");
    // Validation reads the clock (requestTimestamp): a body accepted a moment ago may be refused
    // now only for its age.
    match again.validate(MAX_AGE) {
        Ok(i) => assert!(same(&i, &input), "validation is deterministic"),
        Err(e) => assert!(e.message().contains("requestTimestamp"), "{}", e.message()),
    }
    // The canonical form (contract names, standard base64, the documents form) names the same
    // request.
    let canonical = SignBody {
        format: Some(input.spec.format.name().into()),
        hash: None,
        documents: Some(
            docs.iter()
                .map(|d| DocumentBody {
                    name: Some(d.name.clone()),
                    media_type: Some(d.media_type.clone()),
                    hash: Some(STANDARD.encode(&d.digest)),
                })
                .collect(),
        ),
        hash_type: Some(input.spec.hash_type.name().into()),
        data_to_be_displayed: input.display.clone(),
        request_timestamp: None,
        signature_level: (input.spec.level == Level::BLt).then(|| "B-LT".into()),
    };
    let i = canonical
        .validate(MAX_AGE)
        .expect("canonical form is accepted");
    assert!(same(&i, &input), "canonical form names the same request");
});
