//! CSR parsing: accepted key types, and every kind of bad input rejected with a named reason (no panic).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::process::Command;

use der::{Decode, Encode};
use esigd_pki::{
    X509Error,
    csr::{build_csr, build_csr_with_challenge, parse_csr},
    identity::DnBuilder,
    keys::KeyKind,
    pem::{csr_to_der, csr_to_pem},
};
use rand::rngs::OsRng;
use x509_cert::request::CertReq;

fn subject() -> x509_cert::name::Name {
    DnBuilder::new().common_name("requester").unwrap().build()
}

fn p256_csr() -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    csr_to_der(&build_csr::<_, p256::ecdsa::DerSignature>(&key, subject()).unwrap()).unwrap()
}

/// Makes a CSR with the openssl CLI (`-newkey` argument) and returns its DER.
fn openssl_csr(newkey: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("req.der");
    let key = dir.path().join("key.pem");
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=openssl requester",
        "-outform",
        "DER",
    ];
    args.extend_from_slice(newkey);
    args.extend([
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        out.to_str().unwrap(),
    ]);
    let st = Command::new("openssl").args(&args).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(out).unwrap()
}

#[test]
fn accepts_p256_p384_and_rsa2048_from_our_builder_and_openssl() {
    assert_eq!(parse_csr(&p256_csr()).unwrap().key, KeyKind::EcdsaP256);
    let key = p384::ecdsa::SigningKey::random(&mut OsRng);
    let csr = build_csr::<_, p384::ecdsa::DerSignature>(&key, subject()).unwrap();
    assert_eq!(
        parse_csr(&csr_to_der(&csr).unwrap()).unwrap().key,
        KeyKind::EcdsaP384
    );
    // PEM input too.
    assert_eq!(
        parse_csr(csr_to_pem(&csr).unwrap().as_bytes()).unwrap().key,
        KeyKind::EcdsaP384
    );

    let csr = openssl_csr(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    assert_eq!(parse_csr(&csr).unwrap().key, KeyKind::EcdsaP256);
    let csr = openssl_csr(&[
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-sha384",
    ]);
    assert_eq!(parse_csr(&csr).unwrap().key, KeyKind::EcdsaP384);
    let csr = openssl_csr(&["-newkey", "rsa:2048"]);
    assert_eq!(parse_csr(&csr).unwrap().key, KeyKind::Rsa { bits: 2048 });
    let csr = openssl_csr(&["-newkey", "rsa:3072", "-sha512"]);
    assert_eq!(parse_csr(&csr).unwrap().key, KeyKind::Rsa { bits: 3072 });
}

#[test]
fn rejects_weak_and_unsupported_keys_with_a_reason() {
    let err = parse_csr(&openssl_csr(&["-newkey", "rsa:1024"])).unwrap_err();
    assert!(matches!(err, X509Error::UnsupportedKey(_)), "{err}");
    assert!(
        err.to_string().contains("RSA-1024 is below 2048 bits"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("dsa.pem");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-out",
            params.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let err = parse_csr(&openssl_csr(&[
        "-newkey",
        &format!("dsa:{}", params.display()),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("DSA (1.2.840.10040.4.1)"), "{err}");

    let err = parse_csr(&openssl_csr(&["-newkey", "ed25519"])).unwrap_err();
    assert!(matches!(err, X509Error::UnsupportedKey(_)), "{err}");
    assert!(err.to_string().contains("1.3.101.112"), "{err}");

    let err = parse_csr(&openssl_csr(&[
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("EC curve") && err.to_string().contains("1.3.132.0.10"),
        "{err}"
    );
}

#[test]
fn rejects_csr_signed_with_a_different_key() {
    // Take a valid CSR and swap in another public key: the self-signature no longer verifies.
    let mut req = CertReq::from_der(&p256_csr()).unwrap();
    let other = p256::ecdsa::SigningKey::random(&mut OsRng);
    req.info.public_key =
        spki::SubjectPublicKeyInfoOwned::from_key(*other.verifying_key()).unwrap();
    let err = parse_csr(&req.to_der().unwrap()).unwrap_err();
    assert!(matches!(err, X509Error::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("proof of possession"), "{err}");

    // A flipped signature bit is caught too.
    let mut der = p256_csr();
    let n = der.len();
    der[n - 3] ^= 0x01;
    let err = parse_csr(&der).unwrap_err();
    assert!(
        matches!(
            err,
            X509Error::BadSignature { .. } | X509Error::Decode { .. }
        ),
        "{err}"
    );
}

#[test]
fn rejects_certificates_garbage_truncation_and_huge_inputs() {
    // A certificate instead of a CSR, as DER and as PEM.
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=c",
            "-days",
            "1",
        ])
        .args([
            "-keyout",
            dir.path().join("k").to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let pem = std::fs::read(&cert).unwrap();
    assert!(matches!(
        parse_csr(&pem).unwrap_err(),
        X509Error::CertificateInsteadOfCsr
    ));
    let der = esigd_pki::pem::certificate_to_der(&esigd_pki::pem::parse_certificate(&pem).unwrap())
        .unwrap();
    let err = parse_csr(&der).unwrap_err();
    assert!(matches!(err, X509Error::CertificateInsteadOfCsr), "{err}");
    assert!(err.to_string().contains("not a certification request"));

    let csr = p256_csr();
    for cut in [1, 10, csr.len() / 2, csr.len() - 1] {
        let err = parse_csr(&csr[..cut]).unwrap_err();
        assert!(matches!(err, X509Error::Decode { .. }), "cut {cut}: {err}");
        assert!(
            err.to_string()
                .contains("certification request is not valid DER"),
            "{err}"
        );
    }
    let mut trailing = csr.clone();
    trailing.push(0);
    assert!(matches!(
        parse_csr(&trailing).unwrap_err(),
        X509Error::Decode { .. }
    ));

    assert!(matches!(
        parse_csr(b"").unwrap_err(),
        X509Error::Empty { .. }
    ));
    assert!(matches!(
        parse_csr(b"hello, world").unwrap_err(),
        X509Error::Decode { .. }
    ));
    assert!(matches!(
        parse_csr(&[0u8; 4096]).unwrap_err(),
        X509Error::Decode { .. }
    ));
    let err = parse_csr(&vec![0u8; 1 << 20]).unwrap_err();
    assert!(
        matches!(err, X509Error::TooLarge { len: 1_048_576, .. }),
        "{err}"
    );
    let err = parse_csr(
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::Pem { .. }), "{err}");
    let err =
        parse_csr(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err();
    assert!(matches!(err, X509Error::Pem { .. }), "{err}");
}

#[test]
fn challenge_password_round_trips_and_openssl_reads_it() {
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let challenge = "q1+/w2E3r4T5y6U7i8O9p0A=";
    let csr = build_csr_with_challenge::<_, p256::ecdsa::DerSignature>(&key, subject(), challenge)
        .unwrap();
    let der = csr_to_der(&csr).unwrap();
    let parsed = parse_csr(&der).unwrap();
    assert_eq!(
        parsed.challenge_password().unwrap().as_deref(),
        Some(challenge)
    );
    // An independent reader sees the attribute under its PKCS#9 name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("req.der");
    std::fs::write(&path, &der).unwrap();
    let out = Command::new("openssl")
        .args(["req", "-inform", "DER", "-noout", "-text", "-verify", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("challengePassword") && text.contains(challenge),
        "{text}"
    );
    // Without the attribute: None; with a character PrintableString lacks: refused before signing.
    assert_eq!(
        parse_csr(&p256_csr())
            .unwrap()
            .challenge_password()
            .unwrap(),
        None
    );
    let err = build_csr_with_challenge::<_, p256::ecdsa::DerSignature>(&key, subject(), "a_b")
        .unwrap_err();
    assert!(err.to_string().contains("challengePassword"), "{err}");
}

#[test]
fn challenge_password_from_openssl_utf8_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cnf = dir.path().join("req.cnf");
    std::fs::write(
        &cnf,
        "[req]\nprompt = no\nstring_mask = utf8only\ndistinguished_name = dn\nattributes = attrs\n\
         [dn]\nCN = device\n[attrs]\nchallengePassword = s3cr3t-challenge\n",
    )
    .unwrap();
    let out = dir.path().join("req.der");
    let st = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-outform", "DER", "-config"])
        .arg(&cnf)
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let parsed = parse_csr(&std::fs::read(out).unwrap()).unwrap();
    assert_eq!(
        parsed.challenge_password().unwrap().as_deref(),
        Some("s3cr3t-challenge")
    );
}
