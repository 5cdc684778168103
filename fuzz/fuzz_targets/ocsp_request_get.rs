//! OCSP GET form (RFC 6960 A.1: `GET /ocsp/{url-encoded base64 of the DER request}`): the input is
//! the raw path after `/ocsp/`.
//!
//! The GET decoding lives in the appliance (`ocsp_get` in appliance/src/routes/public.rs: axum's
//! percent-decoding of the path, `trim_start_matches('/')`, base64 STANDARD, 16 KiB limit), which
//! this crate cannot depend on yet. `decode_get` below MIRRORS that code; replace it by a call into
//! the appliance once the decoding is a plain function there.
//!
//! Asserts: the decoded DER passes `esigd_fuzz::check_ocsp_request`; and for an accepted request the
//! canonical GET form of its DER (base64, then percent-encoded) decodes back to the same DER.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// `MAX_OCSP_REQUEST` of appliance/src/routes/public.rs.
const MAX_OCSP_REQUEST: usize = 16 * 1024;

/// Mirror of the appliance's GET decoding. `None`: answered with malformedRequest (or, for a path
/// that is not UTF-8 after percent-decoding, rejected by axum before the handler).
fn decode_get(path: &str) -> Option<Vec<u8>> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    match STANDARD.decode(decoded.trim_start_matches('/')) {
        Ok(d) if d.len() <= MAX_OCSP_REQUEST => Some(d),
        _ => None,
    }
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
