//! The openssl CLI (OpenSSL 3) as independent validator of everything the CA produces.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use esigd_ca::{RevocationReason, Transition, ceremony};
use esigd_pki::{
    identity::DnBuilder,
    ocsp::parse_ocsp_response,
    pem::{crl_to_pem, csr_to_pem, parse_certificate, serial_bytes},
};
use p256::ecdsa::DerSignature;
use rand::rngs::OsRng;
use x509_ocsp::{CertStatus, OcspResponseStatus};

#[test]
fn root_one_time_scd_and_tsa_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let now = SystemTime::now();
    let ca_pem = write_cert(d, "ca.pem", ca.ca_certificate());
    let out = openssl_ok(&["verify", "-x509_strict", "-CAfile", &ca_pem, &ca_pem]);
    assert!(out.contains(": OK"), "{out}");

    // The CSR our builder makes verifies with openssl.
    let (csr, _key) = p256_csr();
    let csr_pem = write_csr_pem(d, "req.pem", &csr);
    let out = openssl_ok(&["req", "-verify", "-noout", "-in", &csr_pem]);
    assert!(
        out.contains("verify OK") || out.contains("Certificate request self-signature verify OK"),
        "{out}"
    );

    let one_time = ca.issue_one_time(&csr, &claims(), now).unwrap();
    let ot_pem = write_cert(d, "one-time.pem", &one_time.certificate);
    let out = openssl_ok(&["verify", "-x509_strict", "-CAfile", &ca_pem, &ot_pem]);
    assert!(out.contains(": OK"), "{out}");
    let text = openssl_ok(&["x509", "-in", &ot_pem, "-noout", "-text"]);
    assert!(text.contains("Non Repudiation"), "{text}");
    assert!(
        text.contains("2.5.29.56") || text.contains("No Revocation Available"),
        "{text}"
    );
    assert!(text.contains("0.4.0.194121.2.1"), "{text}");
    assert!(!text.contains("CRL Distribution"), "{text}");
    assert!(!text.contains("OCSP - URI"), "{text}");
    assert!(
        text.contains("serialNumber = PNOEE-47101010033")
            || text.contains("serialNumber=PNOEE-47101010033"),
        "{text}"
    );

    let (csr2, _) = p256_csr();
    let scd = ca.issue_scd(&csr2, &claims(), now).unwrap();
    let scd_pem = write_cert(d, "scd.pem", &scd.certificate);
    let out = openssl_ok(&["verify", "-x509_strict", "-CAfile", &ca_pem, &scd_pem]);
    assert!(out.contains(": OK"), "{out}");
    let text = openssl_ok(&["x509", "-in", &scd_pem, "-noout", "-text"]);
    assert!(
        text.contains("URI:http://esig.example.com/pki/crl"),
        "{text}"
    );
    assert!(
        text.contains("OCSP - URI:http://esig.example.com/ocsp"),
        "{text}"
    );
    assert!(
        text.contains("CA Issuers - URI:http://esig.example.com/pki/ca.crt"),
        "{text}"
    );

    let tsa_key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let tsa_spki = spki::SubjectPublicKeyInfoOwned::from_key(*tsa_key.verifying_key()).unwrap();
    let tsa_subject = DnBuilder::new()
        .country("EE")
        .unwrap()
        .organization("esigd test")
        .unwrap()
        .common_name("esigd TSA")
        .unwrap()
        .build();
    let tsa = ca
        .issue_tsa(
            tsa_spki,
            tsa_subject,
            Duration::from_secs(365 * 86_400),
            now,
        )
        .unwrap();
    let tsa_pem = write_cert(d, "tsa.pem", &tsa.certificate);
    let out = openssl_ok(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "timestampsign",
        "-CAfile",
        &ca_pem,
        &tsa_pem,
    ]);
    assert!(out.contains(": OK"), "{out}");
    let text = openssl_ok(&["x509", "-in", &tsa_pem, "-noout", "-text"]);
    assert!(
        text.contains("X509v3 Extended Key Usage: critical"),
        "{text}"
    );
    // A signing certificate is not accepted as a TSA certificate.
    let (ok, out) = openssl(&[
        "verify",
        "-purpose",
        "timestampsign",
        "-CAfile",
        &ca_pem,
        &scd_pem,
    ]);
    assert!(!ok, "{out}");
}

#[test]
fn subordinate_ca_under_an_openssl_root_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_key = d.join("root.key");
    let root_pem = d.join("root.pem");
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        root_key.to_str().unwrap(),
        "-out",
        root_pem.to_str().unwrap(),
        "-subj",
        "/C=EE/O=External Root/CN=External Test Root",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);

    let sub_signer = TestSigner::new();
    let csr = ceremony::subordinate_csr::<_, DerSignature>(&sub_signer, ca_name()).unwrap();
    let csr_pem = write(d, "sub.csr", csr_to_pem(&csr).unwrap());
    openssl_ok(&["req", "-verify", "-noout", "-in", &csr_pem]);
    let ext = write(
        d,
        "ext.cnf",
        "[v3_sub]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    let sub_pem = d.join("sub.pem");
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        &csr_pem,
        "-CA",
        root_pem.to_str().unwrap(),
        "-CAkey",
        root_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "20",
        "-extfile",
        &ext,
        "-extensions",
        "v3_sub",
        "-out",
        sub_pem.to_str().unwrap(),
    ]);
    let mut bundle = std::fs::read(&sub_pem).unwrap();
    bundle.extend(std::fs::read(&root_pem).unwrap());
    let chain = ceremony::install_subordinate(&sub_signer, &bundle, SystemTime::now()).unwrap();
    assert_eq!(chain.len(), 2);

    // A certificate for another key is refused.
    let other = TestSigner::new();
    let err = ceremony::install_subordinate(&other, &bundle, SystemTime::now()).unwrap_err();
    assert!(
        err.to_string().contains("not the key of the CA signer"),
        "{err}"
    );
    // A non-CA certificate is refused.
    let leaf_cfg = write(
        d,
        "leaf.cnf",
        "[v3_leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    );
    let leaf_pem = d.join("not-ca.pem");
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        &csr_pem,
        "-CA",
        root_pem.to_str().unwrap(),
        "-CAkey",
        root_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "20",
        "-extfile",
        &leaf_cfg,
        "-extensions",
        "v3_leaf",
        "-out",
        leaf_pem.to_str().unwrap(),
    ]);
    let err = ceremony::install_subordinate(
        &sub_signer,
        &std::fs::read(&leaf_pem).unwrap(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");

    // The sub CA validity (20 days) is shorter than the SCD default (2 years): use a short SCD validity.
    let mut cfg = esigd_ca::CaConfig::with_base_url(BASE_URL);
    cfg.scd.validity = Duration::from_secs(86_400);
    let ca = esigd_ca::Authority::new(
        chain[0].clone(),
        sub_signer,
        cfg,
        esigd_ca::MemoryStore::new(),
    )
    .unwrap()
    .with_chain(chain.clone())
    .unwrap();
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), SystemTime::now()).unwrap();
    let leaf = write_cert(d, "leaf.pem", &scd.certificate);
    let sub = write_cert(d, "sub-installed.pem", &chain[0]);
    let out = openssl_ok(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        root_pem.to_str().unwrap(),
        "-untrusted",
        &sub,
        &leaf,
    ]);
    assert!(out.contains(": OK"), "{out}");
    let (csr, _) = p256_csr();
    let ot = ca
        .issue_one_time(&csr, &claims(), SystemTime::now())
        .unwrap();
    let leaf = write_cert(d, "ot.pem", &ot.certificate);
    let out = openssl_ok(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        root_pem.to_str().unwrap(),
        "-untrusted",
        &sub,
        &leaf,
    ]);
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn crl_verifies_and_lists_revoked_and_held_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let now = SystemTime::now();
    let mut serials = Vec::new();
    for _ in 0..3 {
        let (csr, _) = p256_csr();
        serials.push(ca.issue_scd(&csr, &claims(), now).unwrap());
    }
    ca.set_status(
        &serials[0].record.serial,
        Transition::Revoke(RevocationReason::KeyCompromise),
        "operator:alice",
        "key lost",
        now,
    )
    .unwrap();
    ca.set_status(
        &serials[1].record.serial,
        Transition::Suspend,
        "user",
        "suspected misuse",
        now,
    )
    .unwrap();

    let crl1 = ca.crl(now).unwrap();
    let crl = ca.crl(now).unwrap();
    let crl_pem = write(d, "crl.pem", crl_to_pem(&crl).unwrap());
    let ca_pem = write_cert(d, "ca.pem", ca.ca_certificate());
    let out = openssl_ok(&[
        "crl", "-in", &crl_pem, "-CAfile", &ca_pem, "-noout", "-text",
    ]);
    assert!(out.contains("verify OK"), "{out}");
    assert!(out.contains("Key Compromise"), "{out}");
    assert!(out.contains("Certificate Hold"), "{out}");
    assert!(out.contains("X509v3 CRL Number"), "{out}");
    assert!(out.contains("X509v3 Authority Key Identifier"), "{out}");
    assert!(
        out.contains(&esigd_ca::CertRecord::serial_hex(&serials[0].record).to_uppercase()),
        "{out}"
    );
    assert!(
        !out.contains(&serials[2].record.serial_hex().to_uppercase()),
        "{out}"
    );
    assert!(out.contains("Next Update"), "{out}");
    // CRL numbers increase.
    let num = |c: &x509_cert::crl::CertificateList| {
        c.tbs_cert_list.crl_extensions.as_ref().unwrap()[1]
            .extn_value
            .clone()
    };
    assert_ne!(num(&crl1), num(&crl));

    // Revoked and held certificates fail openssl verification with the CRL.
    let leaf0 = write_cert(d, "l0.pem", &serials[0].certificate);
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &ca_pem,
        "-CRLfile",
        &crl_pem,
        &leaf0,
    ]);
    assert!(!ok && out.contains("revoked"), "{out}");
    let leaf2 = write_cert(d, "l2.pem", &serials[2].certificate);
    let out = openssl_ok(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &ca_pem,
        "-CRLfile",
        &crl_pem,
        &leaf2,
    ]);
    assert!(out.contains(": OK"), "{out}");

    // Resume: the held certificate leaves the next CRL.
    ca.set_status(
        &serials[1].record.serial,
        Transition::Resume,
        "user",
        "all clear",
        now,
    )
    .unwrap();
    let crl = ca.crl(now).unwrap();
    let crl_pem = write(d, "crl2.pem", crl_to_pem(&crl).unwrap());
    let out = openssl_ok(&[
        "crl", "-in", &crl_pem, "-CAfile", &ca_pem, "-noout", "-text",
    ]);
    assert!(!out.contains("Certificate Hold"), "{out}");
}

struct OcspCase<'a> {
    cert_pem: &'a str,
    sha256: bool,
}

fn ocsp_round_trip(
    ca: &TestAuthority,
    d: &std::path::Path,
    ca_pem: &str,
    case: OcspCase<'_>,
    name: &str,
) -> String {
    let req = d.join(format!("{name}.req"));
    let mut args = vec!["ocsp", "-issuer", ca_pem];
    if case.sha256 {
        args.push("-sha256");
    }
    args.extend(["-cert", case.cert_pem, "-reqout", req.to_str().unwrap()]);
    openssl_ok(&args);
    let req_der = std::fs::read(&req).unwrap();
    let resp = ca.ocsp(&req_der, SystemTime::now());
    let resp_path = write(d, &format!("{name}.resp"), &resp);
    // 1. With the request as sent: signature, responder and nonce echo are checked by openssl.
    let out = openssl_ok(&[
        "ocsp",
        "-reqin",
        req.to_str().unwrap(),
        "-respin",
        &resp_path,
        "-CAfile",
        ca_pem,
        "-verify_other",
        ca_pem,
    ]);
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(
        !out.contains("WARNING") && !out.contains("Nonce Verify error"),
        "nonce must be echoed: {out}"
    );
    // 2. Status lookup for the certificate (openssl rebuilds the CertID; -no_nonce since it builds a new request).
    let mut args = vec!["ocsp", "-respin", &resp_path, "-issuer", ca_pem];
    if case.sha256 {
        args.push("-sha256");
    }
    args.extend([
        "-cert",
        case.cert_pem,
        "-CAfile",
        ca_pem,
        "-no_nonce",
        "-resp_text",
    ]);
    let out = openssl_ok(&args);
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

#[test]
fn ocsp_good_revoked_held_and_unknown_with_sha1_and_sha256_cert_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let now = SystemTime::now();
    let ca_pem = write_cert(d, "ca.pem", ca.ca_certificate());
    let mut issued = Vec::new();
    for _ in 0..3 {
        let (csr, _) = p256_csr();
        issued.push(ca.issue_scd(&csr, &claims(), now).unwrap());
    }
    ca.set_status(
        &issued[1].record.serial,
        Transition::Revoke(RevocationReason::Superseded),
        "op",
        "new key",
        now,
    )
    .unwrap();
    ca.set_status(
        &issued[2].record.serial,
        Transition::Suspend,
        "op",
        "hold",
        now,
    )
    .unwrap();
    let good = write_cert(d, "good.pem", &issued[0].certificate);
    let revoked = write_cert(d, "revoked.pem", &issued[1].certificate);
    let held = write_cert(d, "held.pem", &issued[2].certificate);

    for sha256 in [false, true] {
        let tag = if sha256 { "sha256" } else { "sha1" };
        let out = ocsp_round_trip(
            &ca,
            d,
            &ca_pem,
            OcspCase {
                cert_pem: &good,
                sha256,
            },
            &format!("good-{tag}"),
        );
        assert!(out.contains(": good"), "{out}");
        let out = ocsp_round_trip(
            &ca,
            d,
            &ca_pem,
            OcspCase {
                cert_pem: &revoked,
                sha256,
            },
            &format!("rev-{tag}"),
        );
        assert!(
            out.contains(": revoked") && out.contains("Reason: superseded"),
            "{out}"
        );
        let out = ocsp_round_trip(
            &ca,
            d,
            &ca_pem,
            OcspCase {
                cert_pem: &held,
                sha256,
            },
            &format!("held-{tag}"),
        );
        assert!(
            out.contains(": revoked") && out.contains("certificateHold"),
            "{out}"
        );
    }

    // One-time certificate: unknown (RFC 9608 noRevAvail, see Authority::try_ocsp).
    let (csr, _) = p256_csr();
    let ot = ca.issue_one_time(&csr, &claims(), now).unwrap();
    let ot_pem = write_cert(d, "ot.pem", &ot.certificate);
    let out = ocsp_round_trip(
        &ca,
        d,
        &ca_pem,
        OcspCase {
            cert_pem: &ot_pem,
            sha256: true,
        },
        "ot",
    );
    assert!(out.contains(": unknown"), "{out}");

    // Unrecorded serial under this CA: openssl request by serial number.
    let req = d.join("unknown.req");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        &ca_pem,
        "-serial",
        "0x0123456789abcdef0123456789abcdef",
        "-reqout",
        req.to_str().unwrap(),
    ]);
    let resp = ca.ocsp(&std::fs::read(&req).unwrap(), now);
    let resp_path = write(d, "unknown.resp", &resp);
    let out = openssl_ok(&[
        "ocsp",
        "-reqin",
        req.to_str().unwrap(),
        "-respin",
        &resp_path,
        "-CAfile",
        &ca_pem,
        "-verify_other",
        &ca_pem,
    ]);
    assert!(
        out.contains("Response verify OK") && !out.contains("Nonce Verify error"),
        "{out}"
    );
    let out = openssl_ok(&[
        "ocsp",
        "-respin",
        &resp_path,
        "-issuer",
        &ca_pem,
        "-serial",
        "0x0123456789abcdef0123456789abcdef",
        "-CAfile",
        &ca_pem,
        "-no_nonce",
    ]);
    assert!(
        out.contains("Response verify OK") && out.contains(": unknown"),
        "{out}"
    );

    // Another CA's certificate: no CertID for us → unauthorized.
    let other = authority();
    let (csr, _) = p256_csr();
    let foreign = other.issue_scd(&csr, &claims(), now).unwrap();
    let other_ca = write_cert(d, "other-ca.pem", other.ca_certificate());
    let foreign_pem = write_cert(d, "foreign.pem", &foreign.certificate);
    let req = d.join("foreign.req");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        &other_ca,
        "-cert",
        &foreign_pem,
        "-reqout",
        req.to_str().unwrap(),
    ]);
    let resp = ca.ocsp(&std::fs::read(&req).unwrap(), now);
    let (parsed, _) = parse_ocsp_response(&resp).unwrap();
    assert_eq!(parsed.response_status, OcspResponseStatus::Unauthorized);

    // Malformed requests → malformedRequest.
    for bad in [
        &b""[..],
        &b"garbage"[..],
        &[0u8; 1000][..],
        &vec![0u8; 1 << 20][..],
    ] {
        let resp = ca.ocsp(bad, now);
        let (parsed, basic) = parse_ocsp_response(&resp).unwrap();
        assert_eq!(parsed.response_status, OcspResponseStatus::MalformedRequest);
        assert!(basic.is_none());
    }
    let resp_path = write(d, "malformed.resp", ca.ocsp(b"\x30\x03\x02\x01", now));
    let (_, out) = openssl(&["ocsp", "-respin", &resp_path, "-resp_text", "-noverify"]);
    assert!(out.contains("malformedrequest"), "{out}");
}

#[test]
fn delegated_ocsp_responder_signs_and_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let now = SystemTime::now();
    let responder_signer = TestSigner::new();
    let spki =
        spki::SubjectPublicKeyInfoOwned::from_key(*responder_signer.key.verifying_key()).unwrap();
    let subject = DnBuilder::new()
        .country("EE")
        .unwrap()
        .organization("esigd test")
        .unwrap()
        .common_name("esigd OCSP")
        .unwrap()
        .build();
    let responder = ca
        .issue_ocsp_responder(spki, subject, Duration::from_secs(7 * 86_400), now)
        .unwrap();
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), now).unwrap();
    let ca = ca
        .with_ocsp_responder(responder.certificate.clone(), responder_signer)
        .unwrap();
    let ca_pem = write_cert(d, "ca.pem", ca.ca_certificate());
    let leaf = write_cert(d, "leaf.pem", &scd.certificate);
    let out = ocsp_round_trip(
        &ca,
        d,
        &ca_pem,
        OcspCase {
            cert_pem: &leaf,
            sha256: true,
        },
        "delegated",
    );
    assert!(out.contains(": good"), "{out}");
    let resp = ca.ocsp(&std::fs::read(d.join("delegated.req")).unwrap(), now);
    let (_, basic) = parse_ocsp_response(&resp).unwrap();
    let basic = basic.unwrap();
    assert_eq!(basic.certs.unwrap()[0], responder.certificate);
    assert!(matches!(
        basic.tbs_response_data.responses[0].cert_status,
        CertStatus::Good(_)
    ));
}

#[test]
fn published_artifacts_round_trip() {
    let ca = authority();
    let pem = esigd_pki::pem::certificate_to_pem(ca.ca_certificate()).unwrap();
    assert_eq!(
        &parse_certificate(pem.as_bytes()).unwrap(),
        ca.ca_certificate()
    );
    let der = esigd_pki::pem::certificate_to_der(ca.ca_certificate()).unwrap();
    assert_eq!(&parse_certificate(&der).unwrap(), ca.ca_certificate());
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), SystemTime::now()).unwrap();
    let hex = scd.serial_hex();
    assert_eq!(
        hex,
        esigd_pki::pem::serial_hex(&scd.certificate.tbs_certificate.serial_number)
    );
    let serial = esigd_pki::pem::parse_serial_hex(&hex).unwrap();
    assert_eq!(serial_bytes(&serial), scd.record.serial.as_slice());
    assert_eq!(
        ca.certificate(&scd.record.serial).unwrap().unwrap().der,
        scd.der
    );
}

fn ca_round_trip<S, Sig>(signer: S, d: &std::path::Path, tag: &str)
where
    S: signature::Keypair + spki::DynSignatureAlgorithmIdentifier + signature::Signer<Sig>,
    S::VerifyingKey: spki::EncodePublicKey,
    Sig: spki::SignatureBitStringEncoding,
{
    let now = SystemTime::now();
    let root = ceremony::create_root::<_, Sig>(
        &signer,
        ca_name(),
        Duration::from_secs(3650 * 86_400),
        now,
        &mut OsRng,
    )
    .unwrap();
    let ca = esigd_ca::Authority::<_, Sig, _>::new(
        root,
        signer,
        esigd_ca::CaConfig::with_base_url(BASE_URL),
        esigd_ca::MemoryStore::new(),
    )
    .unwrap();
    let ca_pem = write_cert(d, &format!("{tag}-ca.pem"), ca.ca_certificate());
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), now).unwrap();
    let leaf = write_cert(d, &format!("{tag}-leaf.pem"), &scd.certificate);
    let out = openssl_ok(&["verify", "-x509_strict", "-CAfile", &ca_pem, &leaf]);
    assert!(out.contains(": OK"), "{out}");
    ca.set_status(
        &scd.record.serial,
        Transition::Revoke(RevocationReason::CessationOfOperation),
        "op",
        "t",
        now,
    )
    .unwrap();
    let crl = write(
        d,
        &format!("{tag}-crl.pem"),
        crl_to_pem(&ca.crl(now).unwrap()).unwrap(),
    );
    let out = openssl_ok(&["crl", "-in", &crl, "-CAfile", &ca_pem, "-noout"]);
    assert!(out.contains("verify OK"), "{out}");
    let req = d.join(format!("{tag}.req"));
    openssl_ok(&[
        "ocsp",
        "-issuer",
        &ca_pem,
        "-cert",
        &leaf,
        "-reqout",
        req.to_str().unwrap(),
    ]);
    let resp = write(
        d,
        &format!("{tag}.resp"),
        ca.ocsp(&std::fs::read(&req).unwrap(), now),
    );
    let out = openssl_ok(&[
        "ocsp",
        "-reqin",
        req.to_str().unwrap(),
        "-respin",
        &resp,
        "-CAfile",
        &ca_pem,
        "-verify_other",
        &ca_pem,
    ]);
    assert!(out.contains("Response verify OK"), "{out}");
    let out = openssl_ok(&[
        "ocsp",
        "-respin",
        &resp,
        "-issuer",
        &ca_pem,
        "-cert",
        &leaf,
        "-CAfile",
        &ca_pem,
        "-no_nonce",
    ]);
    assert!(
        out.contains(": revoked") && out.contains("cessationOfOperation"),
        "{out}"
    );
}

#[test]
fn p384_and_rsa_ca_keys_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    ca_round_trip::<_, p384::ecdsa::DerSignature>(
        p384::ecdsa::SigningKey::random(&mut OsRng),
        dir.path(),
        "p384",
    );
    let rsa = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    ca_round_trip::<_, rsa::pkcs1v15::Signature>(
        rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa),
        dir.path(),
        "rsa",
    );
}
