//! OCSP GET form (RFC 6960 A.1: `GET /ocsp/{url-encoded base64 of the DER request}`): the input is
//! the raw path after `/ocsp/`.
//!
//! The route (`ocsp_get` in web/src/routes/public.rs) gets the path percent-decoded by axum and
//! calls `esigd_pki::ocsp::decode_get_request`; `decode_get` below does the percent-decoding axum
//! does and then calls that same function.
//!
//! Asserts: the decoded DER passes `esigd_fuzz::check_ocsp_request`; and for an accepted request the
//! canonical GET form of its DER (base64, then percent-encoded) decodes back to the same DER.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The route's decoding. `None`: answered with malformedRequest (or, for a path that is not UTF-8
/// after percent-decoding, rejected by axum before the handler).
fn decode_get(path: &str) -> Option<Vec<u8>> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    esigd_pki::ocsp::decode_get_request(&decoded)
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(der) = decode_get(path) else {
        return;
    };
    esigd_fuzz::check_ocsp_request(&der);
    if esigd_pki::ocsp::parse_ocsp_request(&der).is_ok() {
        let url = utf8_percent_encode(&STANDARD.encode(&der), NON_ALPHANUMERIC).to_string();
        assert_eq!(
            decode_get(&url).as_deref(),
            Some(&der[..]),
            "GET form round trip"
        );
    }
});
