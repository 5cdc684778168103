//! DER OCSPRequest (the body of `POST /ocsp`) → `esigd_pki::ocsp::parse_ocsp_request`, then CertID
//! matching and response building as `esigd_ca::Authority::try_ocsp` does (software P-256 responder).
//! Assertions: see `esigd_fuzz::check_ocsp_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| esigd_fuzz::check_ocsp_request(data));
