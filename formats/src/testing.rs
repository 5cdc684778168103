//! Test helpers (feature `test-support`, and the unit tests): a software P-256 signer with a
//! certificate, and time-stamp tokens from a software TSA key. Never for real signatures: the
//! keys are fixed and public.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{Int, OctetString};
use esigd_pki::cms::DigestAlgorithm;
use esigd_pki::tsp::{self, GenTime, MessageImprint, TspVersion, TstInfo};
use p256::ecdsa::{DerSignature, SigningKey};
use signature::Signer;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use crate::{Document, Prepared, SignRequest, Signed};

/// The fixed signing time of the unit tests (2023-11-14T22:13:20Z).
pub const TIME: u64 = 1_700_000_000;

fn cert_for(ca: &SigningKey, subject: &str, key: &SigningKey) -> Certificate {
    let spki =
        SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).expect("fixed test fixture");
    CertificateBuilder::new(
        Profile::Leaf {
            issuer: Name::from_str("CN=Unit CA").expect("fixed test fixture"),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        SerialNumber::from(42u32),
        Validity::from_now(Duration::from_secs(3600)).expect("fixed test fixture"),
        Name::from_str(subject).expect("fixed test fixture"),
        spki,
        ca,
    )
    .expect("fixed test fixture")
    .build::<DerSignature>()
    .expect("fixed test fixture")
}

/// A P-256 signer (fixed key) and its certificate.
pub fn p256_signer() -> (SigningKey, Certificate) {
    let k = SigningKey::from_slice(&[3; 32]).expect("fixed test fixture");
    let ca = SigningKey::from_slice(&[4; 32]).expect("fixed test fixture");
    let cert = cert_for(&ca, "CN=Unit Signer", &k);
    (k, cert)
}

/// A request over `docs` (SHA-256) at [`TIME`], no chain.
pub fn request_for<'a>(cert: &'a Certificate, docs: &'a [Document]) -> SignRequest<'a> {
    SignRequest {
        digest_algorithm: DigestAlgorithm::Sha256,
        documents: docs,
        signer: cert,
        chain: &[],
        time: UNIX_EPOCH + Duration::from_secs(TIME),
    }
}

/// The DER ECDSA signature of `message` (SHA-256).
pub fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let s: DerSignature = key.sign(message);
    s.as_bytes().to_vec()
}

/// Signs what `p` prepared (SHA-256 only) and finishes it.
pub fn sign_prepared(key: &SigningKey, p: &dyn Prepared) -> Box<dyn Signed> {
    assert_eq!(p.signature_digest_algorithm(), DigestAlgorithm::Sha256);
    p.finish(&sign_der(key, p.to_be_signed()))
        .expect("fixed test fixture")
}

/// A time-stamp token over SHA-256(`input`) from a software TSA key.
pub fn tsa_token(input: &[u8]) -> Vec<u8> {
    let tsa = SigningKey::from_slice(&[5; 32]).expect("fixed test fixture");
    let ca = SigningKey::from_slice(&[4; 32]).expect("fixed test fixture");
    let cert = cert_for(&ca, "CN=Unit TSA", &tsa);
    let tst = TstInfo {
        version: TspVersion::V1,
        policy: der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
        message_imprint: MessageImprint {
            hash_algorithm: DigestAlgorithm::Sha256.algorithm_identifier(),
            hashed_message: OctetString::new(DigestAlgorithm::Sha256.digest(input))
                .expect("fixed test fixture"),
        },
        serial_number: Int::new(&[7]).expect("fixed test fixture"),
        gen_time: GenTime::from_system_time(SystemTime::now(), 3).expect("fixed test fixture"),
        accuracy: None,
        ordering: false,
        nonce: None,
        tsa: None,
        extensions: None,
    };
    tsp::sign_token::<_, DerSignature>(&tsa, &cert, &tst, true).expect("fixed test fixture")
}
