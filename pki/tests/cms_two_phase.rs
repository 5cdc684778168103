//! Two-phase CMS signing (`SignerContext::for_certificate` → `prepare` → a signature made
//! elsewhere → `finish`): the result is what `SignerContext::sign` writes, openssl accepts it, and
//! `finish` refuses a signature that does not verify with the certificate's key.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::{Decode, Encode};
use esigd_pki::certificate::{CertificateTemplate, build_certificate};
use esigd_pki::cms::{
    CmsError, ContentType, DigestAlgorithm, SignParams, SignerContext, verify_detached_digest,
};
use esigd_pki::extensions::{basic_constraints, key_usage, subject_key_identifier};
use signature::hazmat::PrehashSigner;
use signature::{Keypair, SignatureEncoding, Signer};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

/// The key of the test CA (P-256) and its self-signed certificate.
fn ca() -> (p256::ecdsa::SigningKey, Certificate) {
    let key = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let name = Name::from_str("CN=Two-phase Test CA,O=esigd").unwrap();
    let now = SystemTime::now();
    let cert = build_certificate::<_, p256::ecdsa::DerSignature>(
        &key,
        CertificateTemplate {
            serial: SerialNumber::from(1u32),
            issuer: name.clone(),
            subject: name,
            public_key: spki.clone(),
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
            extensions: vec![
                basic_constraints(true, None).unwrap(),
                key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign).unwrap(),
                subject_key_identifier(&spki).unwrap(),
            ],
        },
    )
    .unwrap();
    (key, cert)
}

/// A signing certificate for `spki`, issued by the test CA.
fn leaf(
    ca: &(p256::ecdsa::SigningKey, Certificate),
    spki: SubjectPublicKeyInfoOwned,
) -> Certificate {
    let now = SystemTime::now();
    build_certificate::<_, p256::ecdsa::DerSignature>(
        &ca.0,
        CertificateTemplate {
            serial: SerialNumber::from(0x4242u32),
            issuer: ca.1.tbs_certificate.subject.clone(),
            subject: Name::from_str("CN=Mari-Liis Männik,C=EE").unwrap(),
            public_key: spki,
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
            extensions: vec![
                basic_constraints(false, None).unwrap(),
                key_usage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation).unwrap(),
            ],
        },
    )
    .unwrap()
}

fn rsa_key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap()
}

fn rsa_spki(key: &rsa::RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap()
}

/// A key that signs a ready digest, as a remote signing device does (`RAW_DIGEST_SIGNATURE`); the
/// result is the signature value as it goes into `SignerInfo.signature`.
enum Device {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(rsa::RsaPrivateKey),
}

impl Device {
    fn spki(&self) -> SubjectPublicKeyInfoOwned {
        match self {
            Device::P256(k) => SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
            Device::P384(k) => SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
            Device::Rsa(k) => rsa_spki(k),
        }
    }

    fn sign_digest(&self, digest: &[u8]) -> Vec<u8> {
        match self {
            Device::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_prehash(digest).unwrap();
                sig.to_der().to_vec()
            }
            Device::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign_prehash(digest).unwrap();
                sig.to_der().to_vec()
            }
            Device::Rsa(k) => {
                let k = k.clone();
                match digest.len() {
                    32 => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k)
                        .sign_prehash(digest)
                        .unwrap()
                        .to_vec(),
                    48 => rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(k)
                        .sign_prehash(digest)
                        .unwrap()
                        .to_vec(),
                    _ => rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(k)
                        .sign_prehash(digest)
                        .unwrap()
                        .to_vec(),
                }
            }
        }
    }
}

fn write_pem(path: &Path, cert: &Certificate) {
    std::fs::write(path, esigd_pki::pem::certificate_to_pem(cert).unwrap()).unwrap();
}

/// `openssl cms -verify` of a detached signature over `doc`: Ok, or openssl's stderr.
fn openssl_verify(dir: &Path, ca: &Path, cms: &[u8], doc: &[u8]) -> Result<(), String> {
    let (sig, content) = (dir.join("sig.der"), dir.join("doc.bin"));
    std::fs::write(&sig, cms).unwrap();
    std::fs::write(&content, doc).unwrap();
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(&sig)
        .arg("-content")
        .arg(&content)
        .arg("-CAfile")
        .arg(ca)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl not found: apt-get install openssl");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn detached<'a>(alg: DigestAlgorithm, digest: &'a [u8]) -> SignParams<'a> {
    SignParams {
        content_type: ContentType::Data,
        digest_algorithm: alg,
        digest,
        signing_time: Some(SystemTime::now()),
        extra_certs: &[],
        include_signer_cert: true,
    }
}

#[test]
fn remote_digest_signatures_give_cms_that_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = ca();
    let ca_pem = dir.join("ca.pem");
    write_pem(&ca_pem, &ca.1);
    let rsa = rsa_key();
    let cases = [
        (
            "P-256",
            Device::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
            DigestAlgorithm::Sha256,
        ),
        (
            "P-256",
            Device::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
            DigestAlgorithm::Sha512,
        ),
        (
            "P-384",
            Device::P384(p384::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
            DigestAlgorithm::Sha384,
        ),
        (
            "RSA-2048",
            Device::Rsa(rsa.clone()),
            DigestAlgorithm::Sha256,
        ),
        ("RSA-2048", Device::Rsa(rsa), DigestAlgorithm::Sha384),
    ];
    let doc = b"%PDF-1.7 pretend document signed with a citizen's remote device\n";
    for (name, device, alg) in cases {
        let cert = leaf(&ca, device.spki());
        let ctx = SignerContext::for_certificate(&cert, alg).unwrap();
        assert_eq!(ctx.digest_algorithm(), alg);
        let digest = alg.digest(doc);
        // The chain travels with the signature too (an extra certificate).
        let extra = [ca.1.clone()];
        let mut params = detached(alg, &digest);
        params.extra_certs = &extra;
        let prepared = ctx.prepare(&params, None).unwrap();
        assert_eq!(prepared.digest_algorithm(), alg);
        assert_eq!(prepared.digest(), alg.digest(prepared.signed_attributes()));
        let signature = device.sign_digest(&prepared.digest());
        let cms = ctx.finish(&prepared, &signature).unwrap();
        openssl_verify(dir, &ca_pem, &cms, doc)
            .unwrap_or_else(|e| panic!("{name} {alg:?}: openssl refused: {e}"));
        let v = verify_detached_digest(&cms, Some(&digest)).unwrap();
        assert_eq!(v.signer_cert, cert);
        assert_eq!(v.digest_algorithm, alg);
        assert_eq!(v.signature, signature);
        // Another document: openssl refuses (the check above is not vacuous).
        assert!(
            openssl_verify(dir, &ca_pem, &cms, b"another document").is_err(),
            "{name} {alg:?}"
        );
    }
}

/// prepare + a signature over the signed attributes + finish is what `sign` writes, with a
/// context from the signer (`new`) and from the certificate alone (`for_certificate`).
#[test]
fn prepare_and_finish_write_what_sign_writes() {
    let ca = ca();
    let k = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
    let cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
    );
    let rsa = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key());
    let rsa_cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(rsa.verifying_key()).unwrap(),
    );
    let extra = [ca.1.clone()];
    let tst = b"\x30\x03\x02\x01\x01 pretend TSTInfo".to_vec();
    let mut checked = 0;
    for content_type in [ContentType::Data, ContentType::TstInfo] {
        for time in [
            None,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            Some(UNIX_EPOCH + Duration::from_secs(2_600_000_000)),
        ] {
            for include_signer_cert in [false, true] {
                for extra_certs in [&[][..], &extra[..]] {
                    for content in [None, Some(tst.as_slice())] {
                        let digest = DigestAlgorithm::Sha256.digest(content.unwrap_or(b"external"));
                        let params = SignParams {
                            content_type,
                            digest_algorithm: DigestAlgorithm::Sha256,
                            digest: &digest,
                            signing_time: time,
                            extra_certs,
                            include_signer_cert,
                        };
                        // ECDSA P-256: RFC 6979 signatures are deterministic.
                        let signed = SignerContext::new(&k, &cert)
                            .unwrap()
                            .sign::<_, p256::ecdsa::DerSignature>(&k, &params, content)
                            .unwrap();
                        for ctx in [
                            SignerContext::new(&k, &cert).unwrap(),
                            SignerContext::for_certificate(&cert, DigestAlgorithm::Sha256).unwrap(),
                        ] {
                            let prepared = ctx.prepare(&params, content).unwrap();
                            let sig: p256::ecdsa::DerSignature =
                                k.sign(prepared.signed_attributes());
                            assert_eq!(ctx.finish(&prepared, sig.as_bytes()).unwrap(), signed);
                            // A signature over the digest is the same signature.
                            let sig: p256::ecdsa::Signature =
                                k.sign_prehash(&prepared.digest()).unwrap();
                            assert_eq!(
                                ctx.finish(&prepared, sig.to_der().as_bytes()).unwrap(),
                                signed
                            );
                            checked += 1;
                        }
                        // RSA PKCS#1 v1.5 is deterministic too.
                        let signed = SignerContext::new(&rsa, &rsa_cert)
                            .unwrap()
                            .sign::<_, rsa::pkcs1v15::Signature>(&rsa, &params, content)
                            .unwrap();
                        let ctx =
                            SignerContext::for_certificate(&rsa_cert, DigestAlgorithm::Sha256)
                                .unwrap();
                        let prepared = ctx.prepare(&params, content).unwrap();
                        let sig = rsa.sign(prepared.signed_attributes());
                        assert_eq!(ctx.finish(&prepared, &sig.to_vec()).unwrap(), signed);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2 * 2 * 2 * 3);
}

#[test]
fn finish_refuses_signatures_that_do_not_verify() {
    let ca = ca();
    let k = p256::ecdsa::SigningKey::from_slice(&[0x33; 32]).unwrap();
    let other = p256::ecdsa::SigningKey::from_slice(&[0x34; 32]).unwrap();
    let cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
    );
    let ctx = SignerContext::for_certificate(&cert, DigestAlgorithm::Sha256).unwrap();
    let digest = DigestAlgorithm::Sha256.digest(b"document");
    let prepared = ctx
        .prepare(&detached(DigestAlgorithm::Sha256, &digest), None)
        .unwrap();
    let good: p256::ecdsa::Signature = k.sign_prehash(&prepared.digest()).unwrap();
    let good = good.to_der().as_bytes().to_vec();
    let by_other: p256::ecdsa::Signature = other.sign_prehash(&prepared.digest()).unwrap();
    let other_digest: p256::ecdsa::Signature = k
        .sign_prehash(&DigestAlgorithm::Sha256.digest(b"other signed attributes"))
        .unwrap();
    // The plain digest of the document instead of the signed attributes' digest.
    let doc_digest: p256::ecdsa::Signature = k.sign_prehash(&digest).unwrap();
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut trailing = good.clone();
    trailing.push(0);
    let fixed: p256::ecdsa::Signature = k.sign_prehash(&prepared.digest()).unwrap();
    let refused: [(&str, Vec<u8>); 9] = [
        ("another key", by_other.to_der().as_bytes().to_vec()),
        ("another digest", other_digest.to_der().as_bytes().to_vec()),
        (
            "the document digest",
            doc_digest.to_der().as_bytes().to_vec(),
        ),
        ("a flipped bit", flipped),
        ("a trailing byte", trailing),
        ("the fixed-size r||s form", fixed.to_bytes().to_vec()),
        ("garbage", b"certainly not an ECDSA-Sig-Value".to_vec()),
        ("nothing", Vec::new()),
        ("truncated", good[..good.len() - 3].to_vec()),
    ];
    for (what, sig) in refused {
        let err = ctx.finish(&prepared, &sig).unwrap_err();
        assert!(matches!(err, CmsError::Verify(_)), "{what}: {err:?}");
    }
    // The refusals left nothing behind: the prepared signature (and a copy) still finishes.
    let copy = prepared.clone();
    assert!(format!("{copy:?}").contains("Prepared"));
    assert_eq!(
        ctx.finish(&copy, &good).unwrap(),
        ctx.finish(&prepared, &good).unwrap()
    );

    // RSA: another key, another digest, garbage.
    let rsa = rsa_key();
    let rsa_other = rsa_key();
    let rsa_cert = leaf(&ca, rsa_spki(&rsa));
    let ctx = SignerContext::for_certificate(&rsa_cert, DigestAlgorithm::Sha256).unwrap();
    let prepared = ctx
        .prepare(&detached(DigestAlgorithm::Sha256, &digest), None)
        .unwrap();
    let good = Device::Rsa(rsa.clone()).sign_digest(&prepared.digest());
    let refused: [(&str, Vec<u8>); 4] = [
        (
            "another key",
            Device::Rsa(rsa_other).sign_digest(&prepared.digest()),
        ),
        (
            "another digest",
            Device::Rsa(rsa.clone()).sign_digest(&digest),
        ),
        ("garbage", vec![0x5a; 256]),
        ("nothing", Vec::new()),
    ];
    for (what, sig) in refused {
        let err = ctx.finish(&prepared, &sig).unwrap_err();
        assert!(matches!(err, CmsError::Verify(_)), "RSA {what}: {err:?}");
    }
    ctx.finish(&prepared, &good).unwrap();
}

#[test]
fn prepare_checks_its_inputs_and_finish_its_context() {
    let ca = ca();
    let k = p256::ecdsa::SigningKey::from_slice(&[0x44; 32]).unwrap();
    let cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
    );
    let ctx = SignerContext::for_certificate(&cert, DigestAlgorithm::Sha256).unwrap();
    let d256 = DigestAlgorithm::Sha256.digest(b"doc");
    let d384 = DigestAlgorithm::Sha384.digest(b"doc");
    // Digest algorithm other than the context's; digest of the wrong length.
    assert!(matches!(
        ctx.prepare(&detached(DigestAlgorithm::Sha384, &d384), None),
        Err(CmsError::SignerDigestMismatch { .. })
    ));
    assert!(matches!(
        ctx.prepare(&detached(DigestAlgorithm::Sha256, &d384), None),
        Err(CmsError::DigestLength { .. })
    ));
    // Encapsulated content whose digest is not the message digest.
    assert!(matches!(
        ctx.prepare(&detached(DigestAlgorithm::Sha256, &d256), Some(b"not doc")),
        Err(CmsError::Invalid(_))
    ));
    ctx.prepare(&detached(DigestAlgorithm::Sha256, &d256), Some(b"doc"))
        .unwrap();
    // The signer certificate twice: refused before anything is signed.
    let twice = [cert.clone()];
    let mut params = detached(DigestAlgorithm::Sha256, &d256);
    params.extra_certs = &twice;
    assert!(matches!(ctx.prepare(&params, None), Err(CmsError::Asn1(_))));

    // Prepared by a context for another digest algorithm or another certificate of the same key:
    // refused even with a good signature.
    let prepared = ctx
        .prepare(&detached(DigestAlgorithm::Sha256, &d256), None)
        .unwrap();
    let sig: p256::ecdsa::Signature = k.sign_prehash(&prepared.digest()).unwrap();
    let sig = sig.to_der().as_bytes().to_vec();
    let ctx384 = SignerContext::for_certificate(&cert, DigestAlgorithm::Sha384).unwrap();
    assert!(matches!(
        ctx384.finish(&prepared, &sig),
        Err(CmsError::Invalid(_))
    ));
    let mut renewed = cert.clone();
    renewed.tbs_certificate.serial_number = SerialNumber::from(0x4343u32);
    let renewed_ctx = SignerContext::for_certificate(&renewed, DigestAlgorithm::Sha256).unwrap();
    assert!(matches!(
        renewed_ctx.finish(&prepared, &sig),
        Err(CmsError::Invalid(_))
    ));
    ctx.finish(&prepared, &sig).unwrap();
    // A context for the certificate also signs with the in-process signer, and checks it.
    ctx.sign::<_, p256::ecdsa::DerSignature>(&k, &detached(DigestAlgorithm::Sha256, &d256), None)
        .unwrap();
    let other = p256::ecdsa::SigningKey::from_slice(&[0x45; 32]).unwrap();
    assert!(matches!(
        ctx.sign::<_, p256::ecdsa::DerSignature>(
            &other,
            &detached(DigestAlgorithm::Sha256, &d256),
            None
        ),
        Err(CmsError::Invalid(_))
    ));
}

#[test]
fn for_certificate_refuses_other_keys_and_digests() {
    let ca = ca();
    let k = p256::ecdsa::SigningKey::from_slice(&[0x55; 32]).unwrap();
    let cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap(),
    );
    for alg in [
        DigestAlgorithm::Sha3_256,
        DigestAlgorithm::Sha3_384,
        DigestAlgorithm::Sha3_512,
    ] {
        let err = SignerContext::for_certificate(&cert, alg).unwrap_err();
        assert!(matches!(err, CmsError::UnsupportedKey(_)), "{err:?}");
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }
    // Ed25519, and ECDSA on P-521: a certificate can carry them, esigd cannot sign with them.
    let ed25519 = SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::ObjectIdentifier::new_unwrap("1.3.101.112"),
            parameters: None,
        },
        subject_public_key: der::asn1::BitString::from_bytes(&[9; 32]).unwrap(),
    };
    let mut p521 = SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap();
    p521.algorithm.parameters = Some(
        der::Any::from_der(
            &const_oid::ObjectIdentifier::new_unwrap("1.3.132.0.35")
                .to_der()
                .unwrap(),
        )
        .unwrap(),
    );
    for (what, spki) in [("Ed25519", ed25519), ("P-521", p521)] {
        let err =
            SignerContext::for_certificate(&leaf(&ca, spki), DigestAlgorithm::Sha256).unwrap_err();
        assert!(
            matches!(err, CmsError::UnsupportedKey(_)),
            "{what}: {err:?}"
        );
    }
    // The algorithm identifiers are those of the RustCrypto signers (so `sign` and `finish` agree).
    let rsa = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key());
    let rsa_cert = leaf(
        &ca,
        SubjectPublicKeyInfoOwned::from_key(rsa.verifying_key()).unwrap(),
    );
    let d = DigestAlgorithm::Sha256.digest(b"x");
    let params = detached(DigestAlgorithm::Sha256, &d);
    let from_signer = SignerContext::new(&rsa, &rsa_cert).unwrap();
    let from_cert = SignerContext::for_certificate(&rsa_cert, DigestAlgorithm::Sha256).unwrap();
    let a = from_signer
        .sign::<_, rsa::pkcs1v15::Signature>(&rsa, &params, None)
        .unwrap();
    let b = from_cert
        .sign::<_, rsa::pkcs1v15::Signature>(&rsa, &params, None)
        .unwrap();
    assert_eq!(a, b);
}
