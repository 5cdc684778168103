//! Signatures over a ready digest, made by openssl (an independent signer), verified against the
//! registered key: ECDSA P-256/P-384, RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;

use der::Decode;
use esigd_pki::keys::{DigestSignatureScheme, KeyKind, verify_digest_signature};
use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl not found: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key made with openssl: (private key path, SPKI).
fn key(dir: &Path, name: &str, genpkey: &[&str]) -> (String, SubjectPublicKeyInfoOwned) {
    let k = dir.join(format!("{name}.pem")).display().to_string();
    let p = dir.join(format!("{name}.pub.der")).display().to_string();
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend(["-out", &k]);
    openssl(&args);
    openssl(&["pkey", "-in", &k, "-pubout", "-outform", "DER", "-out", &p]);
    (
        k,
        SubjectPublicKeyInfoOwned::from_der(&std::fs::read(&p).unwrap()).unwrap(),
    )
}

fn sign(dir: &Path, key: &str, digest: &[u8], opts: &[&str]) -> Vec<u8> {
    let d = dir.join("digest.bin");
    let s = dir.join("sig.bin");
    std::fs::write(&d, digest).unwrap();
    let mut args = vec!["pkeyutl", "-sign", "-inkey", key];
    for o in opts {
        args.extend(["-pkeyopt", o]);
    }
    let (d, s) = (d.display().to_string(), s.display().to_string());
    args.extend(["-in", &d, "-out", &s]);
    openssl(&args);
    std::fs::read(s).unwrap()
}

#[test]
fn openssl_signatures_over_digests_verify_and_changes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ec256, ec256_pub) = key(
        dir,
        "ec256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (ec384, ec384_pub) = key(
        dir,
        "ec384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let (rsa, rsa_pub) = key(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let msg = b"the document";
    let digests: [(&str, Vec<u8>); 3] = [
        ("sha256", sha2::Sha256::digest(msg).to_vec()),
        ("sha384", sha2::Sha384::digest(msg).to_vec()),
        ("sha512", sha2::Sha512::digest(msg).to_vec()),
    ];
    for (name, digest) in &digests {
        let md = format!("digest:{name}");
        let cases: [(
            &str,
            &SubjectPublicKeyInfoOwned,
            DigestSignatureScheme,
            Vec<&str>,
            KeyKind,
        ); 4] = [
            (
                &ec256,
                &ec256_pub,
                DigestSignatureScheme::Ecdsa,
                vec![],
                KeyKind::EcdsaP256,
            ),
            (
                &ec384,
                &ec384_pub,
                DigestSignatureScheme::Ecdsa,
                vec![],
                KeyKind::EcdsaP384,
            ),
            (
                &rsa,
                &rsa_pub,
                DigestSignatureScheme::RsaPkcs1v15,
                vec![md.as_str()],
                KeyKind::Rsa { bits: 2048 },
            ),
            (
                &rsa,
                &rsa_pub,
                DigestSignatureScheme::RsaPss,
                vec![
                    md.as_str(),
                    "rsa_padding_mode:pss",
                    "rsa_pss_saltlen:digest",
                ],
                KeyKind::Rsa { bits: 2048 },
            ),
        ];
        for (k, spki, scheme, opts, kind) in cases {
            let sig = sign(dir, k, digest, &opts);
            assert_eq!(
                verify_digest_signature("t", spki, scheme, digest, &sig).unwrap(),
                kind,
                "{name} {scheme:?}"
            );
            let mut other = digest.clone();
            other[0] ^= 1;
            assert!(
                verify_digest_signature("t", spki, scheme, &other, &sig).is_err(),
                "{name} {scheme:?}"
            );
            let mut broken = sig.clone();
            let last = broken.len() - 1;
            broken[last] ^= 1;
            assert!(verify_digest_signature("t", spki, scheme, digest, &broken).is_err());
        }
    }
    // Another key, another scheme, a digest of no SHA-2 length.
    let d = &digests[0].1;
    let sig = sign(dir, &ec256, d, &[]);
    assert!(
        verify_digest_signature("t", &ec384_pub, DigestSignatureScheme::Ecdsa, d, &sig).is_err()
    );
    assert!(
        verify_digest_signature("t", &ec256_pub, DigestSignatureScheme::RsaPss, d, &sig).is_err()
    );
    let err = verify_digest_signature(
        "t",
        &ec256_pub,
        DigestSignatureScheme::Ecdsa,
        &d[..20],
        &sig,
    )
    .unwrap_err();
    assert!(err.to_string().contains("20-byte"), "{err}");
}
