//! PKCS#10 CSR (DER or PEM, as uploaded) → `esigd_pki::csr::parse_csr`: decoding, proof-of-possession
//! signature check with the CSR's own key, key policy (P-256/P-384, RSA 2048–4096).
//!
//! Asserts, for an accepted CSR: the reported key kind is `classify_key` of its public key; the
//! request round-trips through DER and through PEM (parse → encode → parse gives the same request
//! and key kind); and the proof of possession is really checked: the same CSR with one signature
//! bit flipped is refused.
#![no_main]

use der::Encode;
use esigd_pki::csr::parse_csr;
use esigd_pki::keys::classify_key;
use esigd_pki::pem::csr_to_pem;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_csr(data) else {
        return;
    };
    assert_eq!(
        classify_key(v.public_key()).expect("accepted key classifies"),
        v.key
    );

    let der = v.request.to_der().expect("accepted CSR re-encodes");
    let again = parse_csr(&der).expect("re-encoded CSR (DER) is accepted");
    assert_eq!(again.request, v.request, "DER round trip");
    assert_eq!(again.key, v.key);

    let pem = csr_to_pem(&v.request).expect("PEM encoding");
    let again = parse_csr(pem.as_bytes()).expect("re-encoded CSR (PEM) is accepted");
    assert_eq!(again.request, v.request, "PEM round trip");
    assert_eq!(again.key, v.key);

    let mut sig = v.request.signature.raw_bytes().to_vec();
    let last = sig.last_mut().expect("accepted CSR has a signature");
    *last ^= 0x01;
    let mut tampered = v.request.clone();
    tampered.signature = der::asn1::BitString::new(0, sig).expect("signature bit string");
    let tampered = tampered.to_der().expect("tampered CSR encodes");
    assert!(
        parse_csr(&tampered).is_err(),
        "CSR with a flipped signature bit accepted (no proof of possession)"
    );
});
