//! Shared helpers for the CA integration tests: in-memory signers, an authority with a fresh root, and the
//! openssl CLI and pkilint as independent validators.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, SystemTime},
};

use esigd_ca::{Authority, CaConfig, MemoryStore, ceremony::create_root};
use esigd_pki::{
    csr::build_csr,
    identity::{DnBuilder, IdentityClaims},
    pem::{certificate_to_pem, csr_to_pem},
};
use p256::ecdsa::DerSignature;
use rand::rngs::OsRng;
use signature::{Keypair, Signer};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};
use x509_cert::Certificate;

/// An in-memory P-256 signer that counts signatures and can be told to fail like an unavailable HSM,
/// or to misbehave like a faulty one (sign with another key, return a truncated signature).
pub struct TestSigner {
    pub key: p256::ecdsa::SigningKey,
    pub fail: AtomicBool,
    pub calls: AtomicUsize,
    /// Sign with this other key instead (well-formed signatures that do not verify).
    pub wrong_key: AtomicBool,
    /// Return a well-formed DER `ECDSA-Sig-Value` with r = s = 0 (garbage from a broken module).
    pub garbage: AtomicBool,
    other: p256::ecdsa::SigningKey,
}

impl TestSigner {
    pub fn new() -> Self {
        TestSigner {
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
            fail: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            wrong_key: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            other: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Keypair for TestSigner {
    type VerifyingKey = p256::ecdsa::VerifyingKey;
    fn verifying_key(&self) -> Self::VerifyingKey {
        *self.key.verifying_key()
    }
}

impl DynSignatureAlgorithmIdentifier for TestSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        self.key.signature_algorithm_identifier()
    }
}

impl Signer<DerSignature> for TestSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, signature::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(signature::Error::from_source(
                "HSM unavailable: CKR_DEVICE_REMOVED",
            ));
        }
        let key = if self.wrong_key.load(Ordering::SeqCst) {
            &self.other
        } else {
            &self.key
        };
        if self.garbage.load(Ordering::SeqCst) {
            return DerSignature::from_bytes(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
        }
        key.try_sign(msg)
    }
}

pub type TestAuthority = Authority<TestSigner, DerSignature, MemoryStore>;

pub const BASE_URL: &str = "http://esig.example.com";

pub fn ca_name() -> x509_cert::name::Name {
    DnBuilder::new()
        .country("EE")
        .unwrap()
        .organization("esigd test")
        .unwrap()
        .common_name("esigd Test CA")
        .unwrap()
        .build()
}

/// A fresh authority with a self-signed root valid for 10 years.
pub fn authority_with(config: CaConfig) -> TestAuthority {
    let signer = TestSigner::new();
    let root = create_root(
        &signer,
        ca_name(),
        Duration::from_secs(3650 * 86_400),
        SystemTime::now() - Duration::from_secs(60),
        &mut OsRng,
    )
    .unwrap();
    Authority::new(root, signer, config, MemoryStore::new()).unwrap()
}

pub fn authority() -> TestAuthority {
    authority_with(CaConfig::with_base_url(BASE_URL))
}

pub fn claims() -> IdentityClaims {
    IdentityClaims {
        name: Some("Mari-Liis Männik".into()),
        given_name: Some("Mari-Liis".into()),
        family_name: Some("Männik".into()),
        personal_identifier: Some("47101010033".into()),
        country: Some("EE".into()),
    }
}

/// A P-256 CSR (DER) and its key.
pub fn p256_csr() -> (Vec<u8>, p256::ecdsa::SigningKey) {
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let subject = DnBuilder::new().common_name("requester").unwrap().build();
    let csr = build_csr::<_, DerSignature>(&key, subject).unwrap();
    (esigd_pki::pem::csr_to_der(&csr).unwrap(), key)
}

pub fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_owned()
}

pub fn write_cert(dir: &Path, name: &str, cert: &Certificate) -> String {
    write(dir, name, certificate_to_pem(cert).unwrap())
}

pub fn write_csr_pem(dir: &Path, name: &str, csr_der: &[u8]) -> String {
    let csr = <x509_cert::request::CertReq as der::Decode>::from_der(csr_der).unwrap();
    write(dir, name, csr_to_pem(&csr).unwrap())
}

/// Runs `openssl` with the arguments; returns (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs openssl and panics with its output unless it succeeded.
pub fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

#[allow(unused_imports)] // each test file uses a part
pub use esigd_testkit::validators::{
    Finding, Severity, parse_pkilint_json, pkilint, pkilint_tool, venv,
};
