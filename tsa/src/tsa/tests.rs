use super::*;
use crate::clock::FixedClock;
use crate::serial::{BlockSerials, InMemorySerials, MemorySerialStore};
use der::asn1::{Any, BitString};
use esigd_pki::tsp::{PkiStatus, TimeStampResp};
use p256::ecdsa::{DerSignature, SigningKey};
use std::str::FromStr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

const POLICY: &str = "1.3.6.1.4.1.99999.1.1";
const OTHER_POLICY: &str = "1.3.6.1.4.1.99999.1.2";
const SHA1: &str = "1.3.14.3.2.26";

fn key(b: u8) -> SigningKey {
    SigningKey::from_slice(&[b; 32]).unwrap()
}

fn cert_for(key: &SigningKey, eku: Vec<ObjectIdentifier>) -> Certificate {
    let ca = self::key(9);
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let mut b = CertificateBuilder::new(
        Profile::Leaf {
            issuer: Name::from_str("CN=Unit CA,O=esigd").unwrap(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        SerialNumber::from(7u32),
        Validity::from_now(Duration::from_secs(3600)).unwrap(),
        Name::from_str("CN=Unit TSA,O=esigd").unwrap(),
        spki,
        &ca,
    )
    .unwrap();
    b.add_extension(&ExtendedKeyUsage(eku)).unwrap();
    b.build::<DerSignature>().unwrap()
}

fn config() -> TsaConfig {
    let mut c = TsaConfig::new(ObjectIdentifier::new_unwrap(POLICY));
    c.accepted_policies = vec![ObjectIdentifier::new_unwrap(OTHER_POLICY)];
    c.accuracy = Duration::from_millis(500);
    c
}

type TestTsa<Ser, C> = Tsa<SigningKey, DerSignature, Ser, C>;

fn tsa_with<Ser: SerialSource, C: ClockState>(
    cfg: TsaConfig,
    ser: Ser,
    clock: C,
) -> TestTsa<Ser, C> {
    let k = key(1);
    let cert = cert_for(&k, vec![ID_KP_TIME_STAMPING]);
    Tsa::new(cfg, cert, k, ser, clock).unwrap()
}

fn tsa() -> TestTsa<InMemorySerials, FixedClock> {
    tsa_with(
        config(),
        InMemorySerials::starting_at(1000),
        FixedClock::synchronized(Duration::from_millis(20)),
    )
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
}

struct Req {
    alg: ObjectIdentifier,
    params: Option<Any>,
    digest: Vec<u8>,
    nonce: Option<Vec<u8>>,
    cert_req: bool,
    policy: Option<ObjectIdentifier>,
    extensions: bool,
}

impl Default for Req {
    fn default() -> Self {
        Self {
            alg: DigestAlgorithm::Sha256.oid(),
            params: Some(Any::null()),
            digest: vec![0xab; 32],
            nonce: Some(vec![0x01, 0x02, 0x03]),
            cert_req: true,
            policy: None,
            extensions: false,
        }
    }
}

impl Req {
    fn der(&self) -> Vec<u8> {
        TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: spki::AlgorithmIdentifier {
                    oid: self.alg,
                    parameters: self.params.clone(),
                },
                hashed_message: OctetString::new(self.digest.clone()).unwrap(),
            },
            req_policy: self.policy,
            nonce: self.nonce.as_ref().map(|n| Int::new(n).unwrap()),
            cert_req: self.cert_req,
            extensions: self.extensions.then(|| {
                vec![Extension {
                    extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
                    critical: false,
                    extn_value: OctetString::new(vec![5]).unwrap(),
                }]
            }),
        }
        .to_der()
        .unwrap()
    }
}

fn rejected_with(outcome: &StampOutcome, bit: FailureInfo) {
    let resp = TimeStampResp::from_der(&outcome.response_der).unwrap();
    assert_eq!(resp.status.status, PkiStatus::Rejection);
    assert_eq!(resp.failure_info().unwrap(), Some(bit));
    assert!(resp.time_stamp_token.is_none());
    assert!(outcome.record.is_none());
    let r = outcome.rejection.as_ref().unwrap();
    assert_eq!(r.failure_info(), bit);
}

fn granted(outcome: &StampOutcome) -> (TstInfo, Certificate, Vec<u8>) {
    assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
    let resp = TimeStampResp::from_der(&outcome.response_der).unwrap();
    assert_eq!(resp.status.status, PkiStatus::Granted);
    assert!(resp.status.fail_info.is_none());
    let token = resp.token_der().unwrap().unwrap();
    let (tst, cert) = tsp::verify_token(&token).unwrap();
    (tst, cert, token)
}

#[test]
fn grants_with_all_fields() {
    let t = tsa();
    let out = t.stamp(&Req::default().der(), now()).unwrap();
    let (tst, cert, token) = granted(&out);
    assert_eq!(cert, *t.certificate());
    assert_eq!(tst.policy.to_string(), POLICY);
    assert_eq!(tst.nonce.unwrap().as_bytes(), [1, 2, 3]);
    assert_eq!(tst.serial_number.as_bytes(), 1000u16.to_be_bytes());
    // millisecond precision, truncated.
    assert_eq!(
        tst.gen_time.to_unix_duration(),
        Duration::new(1_700_000_000, 123_000_000)
    );
    assert!(
        tst.gen_time
            .to_der()
            .unwrap()
            .ends_with(b"20231114221320.123Z")
    );
    let acc = tst.accuracy.unwrap();
    assert_eq!(
        (acc.seconds, acc.millis, acc.micros),
        (None, Some(500), None)
    );
    assert!(!tst.ordering);
    assert!(tst.tsa.is_none());
    // imprint echoed with its NULL parameters
    assert_eq!(
        tst.message_imprint.hash_algorithm.parameters,
        Some(Any::null())
    );
    let rec = out.record.unwrap();
    assert_eq!(rec.serial, 1000);
    assert_eq!(rec.hash_algorithm, DigestAlgorithm::Sha256);
    assert_eq!(rec.imprint, vec![0xab; 32]);
    assert_eq!(rec.nonce, Some(vec![1, 2, 3]));
    assert_eq!(rec.gen_time, tst.gen_time.to_system_time());
    // certReq true: certificate included
    let sd = esigd_pki::cms::decode_signed_data(&token).unwrap();
    assert_eq!(sd.certificates.unwrap().0.len(), 1);
}

#[test]
fn cert_omitted_without_cert_req_and_serials_increase() {
    let t = tsa();
    let out = t
        .stamp(
            &Req {
                cert_req: false,
                nonce: None,
                ..Default::default()
            }
            .der(),
            now(),
        )
        .unwrap();
    let resp = TimeStampResp::from_der(&out.response_der).unwrap();
    let token = resp.token_der().unwrap().unwrap();
    let sd = esigd_pki::cms::decode_signed_data(&token).unwrap();
    assert!(sd.certificates.is_none());
    let tst = tsp::token_tst_info(&token).unwrap();
    assert!(tst.nonce.is_none());
    let out2 = t.stamp(&Req::default().der(), now()).unwrap();
    assert_eq!(out2.record.unwrap().serial, out.record.unwrap().serial + 1);
}

#[test]
fn all_hash_algorithms_and_lengths() {
    let t = tsa();
    for alg in DigestAlgorithm::ALL {
        let ok = Req {
            alg: alg.oid(),
            params: None,
            digest: vec![7; alg.output_len()],
            ..Default::default()
        };
        let (tst, _, _) = granted(&t.stamp(&ok.der(), now()).unwrap());
        assert_eq!(tst.message_imprint.hash_algorithm.oid, alg.oid());
        for wrong in [alg.output_len() - 1, alg.output_len() + 1, 0] {
            let bad = Req {
                alg: alg.oid(),
                digest: vec![7; wrong],
                ..Default::default()
            };
            let out = t.stamp(&bad.der(), now()).unwrap();
            rejected_with(&out, FailureInfo::BAD_DATA_FORMAT);
            assert!(matches!(
                out.rejection,
                Some(Rejection::ImprintLength { .. })
            ));
        }
    }
}

#[test]
fn unknown_or_disabled_algorithm_is_bad_alg() {
    let t = tsa();
    let sha1 = Req {
        alg: ObjectIdentifier::new_unwrap(SHA1),
        digest: vec![0; 20],
        ..Default::default()
    };
    rejected_with(&t.stamp(&sha1.der(), now()).unwrap(), FailureInfo::BAD_ALG);
    // Known OID with unexpected parameters.
    let params = Req {
        params: Some(Any::from_der(&[0x02, 0x01, 0x01]).unwrap()),
        ..Default::default()
    };
    rejected_with(
        &t.stamp(&params.der(), now()).unwrap(),
        FailureInfo::BAD_ALG,
    );
    // Disabled by config.
    let mut cfg = config();
    cfg.accepted_hashes = vec![DigestAlgorithm::Sha384];
    let t = tsa_with(
        cfg,
        InMemorySerials::starting_at(1),
        FixedClock::synchronized(Duration::ZERO),
    );
    rejected_with(
        &t.stamp(&Req::default().der(), now()).unwrap(),
        FailureInfo::BAD_ALG,
    );
    assert!(matches!(
        t.stamp_imprint(DigestAlgorithm::Sha256, &[0; 32], now()),
        Err(Rejection::UnknownHashAlgorithm(_))
    ));
}

#[test]
fn policies() {
    let t = tsa();
    let other = Req {
        policy: Some(ObjectIdentifier::new_unwrap(OTHER_POLICY)),
        ..Default::default()
    };
    let (tst, _, _) = granted(&t.stamp(&other.der(), now()).unwrap());
    assert_eq!(tst.policy.to_string(), OTHER_POLICY);
    let same = Req {
        policy: Some(ObjectIdentifier::new_unwrap(POLICY)),
        ..Default::default()
    };
    granted(&t.stamp(&same.der(), now()).unwrap());
    let bad = Req {
        policy: Some(ObjectIdentifier::new_unwrap("1.2.3.4.5")),
        ..Default::default()
    };
    rejected_with(
        &t.stamp(&bad.der(), now()).unwrap(),
        FailureInfo::UNACCEPTED_POLICY,
    );
}

#[test]
fn extensions_are_refused() {
    let t = tsa();
    let r = Req {
        extensions: true,
        ..Default::default()
    };
    rejected_with(
        &t.stamp(&r.der(), now()).unwrap(),
        FailureInfo::UNACCEPTED_EXTENSION,
    );
}

#[test]
fn nonce_echo_and_limits() {
    let t = tsa();
    // Negative and large-but-allowed nonces are echoed exactly.
    for n in [vec![0xff], vec![0x00, 0x80], vec![0x7f; 32], vec![0x01]] {
        let r = Req {
            nonce: Some(n.clone()),
            ..Default::default()
        };
        let (tst, _, _) = granted(&t.stamp(&r.der(), now()).unwrap());
        assert_eq!(tst.nonce.unwrap().as_bytes(), n.as_slice());
    }
    let r = Req {
        nonce: Some(vec![0x7f; 33]),
        ..Default::default()
    };
    rejected_with(&t.stamp(&r.der(), now()).unwrap(), FailureInfo::BAD_REQUEST);
}

#[test]
fn malformed_non_der_oversized_and_version() {
    let t = tsa();
    rejected_with(&t.stamp(b"", now()).unwrap(), FailureInfo::BAD_DATA_FORMAT);
    rejected_with(
        &t.stamp(b"not asn.1 at all", now()).unwrap(),
        FailureInfo::BAD_DATA_FORMAT,
    );
    // BER: explicit certReq FALSE.
    let mut ber = Req {
        cert_req: false,
        ..Default::default()
    }
    .der();
    ber.extend_from_slice(&[0x01, 0x01, 0x00]);
    ber[1] += 3;
    let out = t.stamp(&ber, now()).unwrap();
    rejected_with(&out, FailureInfo::BAD_DATA_FORMAT);
    assert_eq!(out.rejection.unwrap().kind(), "malformed");
    // Truncated.
    let good = Req::default().der();
    rejected_with(
        &t.stamp(&good[..good.len() - 1], now()).unwrap(),
        FailureInfo::BAD_DATA_FORMAT,
    );
    // Version 2.
    let mut v2 = good.clone();
    assert_eq!(&v2[2..5], &[0x02, 0x01, 0x01]);
    v2[4] = 2;
    let out = t.stamp(&v2, now()).unwrap();
    rejected_with(&out, FailureInfo::BAD_DATA_FORMAT);
    assert!(matches!(out.rejection, Some(Rejection::UnsupportedVersion)));
    // Oversized (checked before parsing).
    let big = vec![0x30; 64 * 1024 + 1];
    let out = t.stamp(&big, now()).unwrap();
    rejected_with(&out, FailureInfo::BAD_REQUEST);
    assert!(matches!(out.rejection, Some(Rejection::TooLarge { .. })));
}

#[test]
fn clock_gate() {
    let store = Arc::new(InMemorySerials::starting_at(1));
    let t = tsa_with(config(), store.clone(), FixedClock::unsynchronized());
    let out = t.stamp(&Req::default().der(), now()).unwrap();
    rejected_with(&out, FailureInfo::TIME_NOT_AVAILABLE);
    assert_eq!(
        out.rejection.as_ref().unwrap().kind(),
        "clock_unsynchronized"
    );
    // Max error above the declared 500 ms accuracy.
    let t = tsa_with(
        config(),
        store.clone(),
        FixedClock::synchronized(Duration::from_millis(501)),
    );
    let out = t.stamp(&Req::default().der(), now()).unwrap();
    rejected_with(&out, FailureInfo::TIME_NOT_AVAILABLE);
    assert_eq!(out.rejection.as_ref().unwrap().kind(), "clock_max_error");
    assert!(matches!(
        t.stamp_imprint(DigestAlgorithm::Sha256, &[0; 32], now()),
        Err(Rejection::Clock(_))
    ));
    // Rejections did not consume serials.
    assert_eq!(store.next_serial().unwrap(), 1);
    // Development switch.
    let mut cfg = config();
    cfg.allow_unsynchronized_clock = true;
    let t = tsa_with(cfg, store, FixedClock::unsynchronized());
    granted(&t.stamp(&Req::default().der(), now()).unwrap());
}

#[test]
fn serial_failure_is_system_failure_and_block_serials_work() {
    let store = Arc::new(MemorySerialStore::default());
    let serials = BlockSerials::open(store.clone(), 2).unwrap();
    let t = tsa_with(config(), serials, FixedClock::synchronized(Duration::ZERO));
    let (a, _, _) = granted(&t.stamp(&Req::default().der(), now()).unwrap());
    store.set_failing(true);
    // block of 2: serial 2 still covered, serial 3 is not.
    granted(&t.stamp(&Req::default().der(), now()).unwrap());
    let out = t.stamp(&Req::default().der(), now()).unwrap();
    rejected_with(&out, FailureInfo::SYSTEM_FAILURE);
    assert!(out.rejection.unwrap().is_system_failure());
    assert_eq!(a.serial_number.as_bytes(), [1]);
}

/// A signer whose HSM is "unavailable".
struct DeadHsm(SigningKey);
impl Keypair for DeadHsm {
    type VerifyingKey = p256::ecdsa::VerifyingKey;
    fn verifying_key(&self) -> Self::VerifyingKey {
        *self.0.verifying_key()
    }
}
impl DynSignatureAlgorithmIdentifier for DeadHsm {
    fn signature_algorithm_identifier(&self) -> spki::Result<spki::AlgorithmIdentifierOwned> {
        self.0.signature_algorithm_identifier()
    }
}
#[derive(Debug, thiserror::Error)]
#[error("HSM unavailable")]
struct HsmUnavailable;
impl Signer<DerSignature> for DeadHsm {
    fn try_sign(&self, _msg: &[u8]) -> Result<DerSignature, signature::Error> {
        Err(signature::Error::from_source(HsmUnavailable))
    }
}

#[test]
fn signer_failure_keeps_signature_error_source() {
    let k = key(1);
    let cert = cert_for(&k, vec![ID_KP_TIME_STAMPING]);
    let t: Tsa<DeadHsm, DerSignature, _, _> = Tsa::new(
        config(),
        cert,
        DeadHsm(k),
        InMemorySerials::starting_at(1),
        FixedClock::synchronized(Duration::ZERO),
    )
    .unwrap();
    let out = t.stamp(&Req::default().der(), now()).unwrap();
    rejected_with(&out, FailureInfo::SYSTEM_FAILURE);
    let rej = out.rejection.unwrap();
    assert_eq!(rej.kind(), "signing");
    // Walk the source chain down to the signature::Error and the HSM's own error.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&rej);
    let mut found_sig = false;
    let mut found_hsm = false;
    while let Some(e) = src {
        found_sig |= e.is::<signature::Error>();
        found_hsm |= e.is::<HsmUnavailable>();
        src = e.source();
    }
    assert!(found_sig && found_hsm);
}

#[test]
fn stamp_imprint_in_process() {
    let mut cfg = config();
    cfg.tsa_name = Some(GeneralName::DirectoryName(
        Name::from_str("CN=Unit TSA,O=esigd").unwrap(),
    ));
    let t = tsa_with(
        cfg,
        InMemorySerials::starting_at(0xff),
        FixedClock::synchronized(Duration::ZERO),
    );
    let digest = DigestAlgorithm::Sha384.digest(b"signature value");
    let issued = t
        .stamp_imprint(DigestAlgorithm::Sha384, &digest, now())
        .unwrap();
    let (tst, _) = tsp::verify_token(&issued.token_der).unwrap();
    assert_eq!(tst.message_imprint.hashed_message.as_bytes(), digest);
    assert!(tst.nonce.is_none());
    assert!(matches!(tst.tsa, Some(GeneralName::DirectoryName(_))));
    // 0xff needs a leading zero to stay positive.
    assert_eq!(tst.serial_number.as_bytes(), [0x00, 0xff]);
    assert_eq!(issued.record.serial, 0xff);
    assert!(matches!(
        t.stamp_imprint(DigestAlgorithm::Sha384, &digest[..47], now()),
        Err(Rejection::ImprintLength { .. })
    ));
}

#[test]
fn config_and_certificate_checks() {
    let k = key(1);
    let good = cert_for(&k, vec![ID_KP_TIME_STAMPING]);
    let mk = |cfg: TsaConfig, cert: Certificate, signer: SigningKey| {
        Tsa::<_, DerSignature, _, _>::new(
            cfg,
            cert,
            signer,
            InMemorySerials::starting_at(1),
            FixedClock::synchronized(Duration::ZERO),
        )
    };
    // Key mismatch.
    assert!(matches!(
        mk(config(), good.clone(), key(2)),
        Err(ConfigError::Certificate(_))
    ));
    // EKU with an extra purpose.
    let extra = cert_for(
        &k,
        vec![
            ID_KP_TIME_STAMPING,
            ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4"),
        ],
    );
    assert!(matches!(
        mk(config(), extra, key(1)),
        Err(ConfigError::Certificate(_))
    ));
    // EKU not critical.
    let mut noncrit = good.clone();
    for e in noncrit.tbs_certificate.extensions.iter_mut().flatten() {
        if e.extn_id == ID_CE_EXT_KEY_USAGE {
            e.critical = false;
        }
    }
    assert!(matches!(
        mk(config(), noncrit, key(1)),
        Err(ConfigError::Certificate(_))
    ));
    // Settings.
    let mut c = config();
    c.accuracy = Duration::ZERO;
    assert!(matches!(
        mk(c, good.clone(), key(1)),
        Err(ConfigError::Setting {
            setting: "tsa.accuracy",
            ..
        })
    ));
    let mut c = config();
    c.gen_time_fraction_digits = 7;
    assert!(mk(c, good.clone(), key(1)).is_err());
    let mut c = config();
    c.accepted_hashes.clear();
    assert!(mk(c, good.clone(), key(1)).is_err());
    mk(config(), good, key(1)).unwrap();
}

#[test]
fn serial_int_encoding() {
    assert_eq!(serial_int(1).unwrap().as_bytes(), [1]);
    assert_eq!(serial_int(0x7f).unwrap().as_bytes(), [0x7f]);
    assert_eq!(serial_int(0x80).unwrap().as_bytes(), [0, 0x80]);
    assert_eq!(serial_int(0x0100).unwrap().as_bytes(), [1, 0]);
    assert_eq!(
        serial_int(u64::MAX).unwrap().as_bytes(),
        [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    let _ = BitString::new(0, vec![]).unwrap();
}
