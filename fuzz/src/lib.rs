//! Fixtures shared by the fuzz targets: a software P-256 key and a certificate for it (TSA signer,
//! OCSP responder / CertID issuer). Built once per process; no HSM involved.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use const_oid::ObjectIdentifier;
use p256::ecdsa::{DerSignature, SigningKey};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

pub use p256::ecdsa::DerSignature as Sig;
pub use p256::ecdsa::SigningKey as Key;

/// id-kp-timeStamping.
pub const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
/// Default TSA policy of the fixture.
pub const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");
/// Second accepted TSA policy of the fixture.
pub const OTHER_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.2");

/// Deterministic software key (scalar = `b` repeated).
pub fn key(b: u8) -> SigningKey {
    SigningKey::from_slice(&[b; 32]).expect("valid scalar")
}

/// Certificate for `key(1)` issued by `key(9)` with the sole EKU id-kp-timeStamping (what
/// `esigd_tsa::Tsa::new` requires); also used as OCSP responder and CertID issuer.
pub fn cert() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| {
        let subject_key = key(1);
        let ca = key(9);
        let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key()).expect("spki");
        let mut b = CertificateBuilder::new(
            Profile::Leaf {
                issuer: Name::from_str("CN=Fuzz CA,O=esigd").expect("name"),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SerialNumber::from(7u32),
            Validity::from_now(Duration::from_secs(10 * 365 * 86400)).expect("validity"),
            Name::from_str("CN=Fuzz TSA,O=esigd").expect("name"),
            spki,
            &ca,
        )
        .expect("builder");
        b.add_extension(&ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]))
            .expect("eku");
        b.build::<DerSignature>().expect("certificate")
    })
}

/// Checks shared by the OCSP request targets, on DER as `Authority::try_ocsp` receives it.
///
/// When `esigd_pki::ocsp::parse_ocsp_request` accepts `der`: its limits hold (1..=32 CertIDs, nonce of
/// 1..=128 octets); the request round-trips (decode → encode → decode, same CertIDs and nonce); every
/// CertID can be matched against an issuer without error; and a signed response echoing all CertIDs
/// and the nonce can be built and parses back with exactly those CertIDs and that nonce.
pub fn check_ocsp_request(der: &[u8]) {
    use der::{Decode, Encode};
    use esigd_pki::ocsp::{
        self, CertIdMatch, ID_PKIX_OCSP_NONCE, MAX_NONCE_LEN, MAX_OCSP_REQUEST_LEN, MAX_REQUESTS,
        OcspAnswer, OcspStatus,
    };
    use std::time::{Duration, UNIX_EPOCH};
    use x509_ocsp::{OcspRequest, OcspResponseStatus};

    let Ok(parsed) = ocsp::parse_ocsp_request(der) else {
        return;
    };
    assert!(!der.is_empty() && der.len() <= MAX_OCSP_REQUEST_LEN);
    assert!((1..=MAX_REQUESTS).contains(&parsed.cert_ids.len()));
    if let Some(n) = &parsed.nonce {
        assert!((1..=MAX_NONCE_LEN).contains(&n.0.as_bytes().len()));
    }

    let req = OcspRequest::from_der(der).expect("accepted request decodes");
    let re = req.to_der().expect("accepted request re-encodes");
    assert_eq!(
        OcspRequest::from_der(&re).expect("re-encoded request decodes"),
        req,
        "OCSPRequest round trip"
    );
    let again = ocsp::parse_ocsp_request(&re).expect("re-encoded request is accepted");
    assert_eq!(again.cert_ids, parsed.cert_ids);
    assert_eq!(again.nonce, parsed.nonce);

    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let answers: Vec<OcspAnswer> = parsed
        .cert_ids
        .iter()
        .map(|id| {
            let status = match ocsp::match_cert_id(id, cert()).expect("CertID matching") {
                CertIdMatch::Issuer(_) => OcspStatus::Good,
                CertIdMatch::OtherIssuer | CertIdMatch::UnsupportedHash => OcspStatus::Unknown,
            };
            OcspAnswer {
                cert_id: id.clone(),
                status,
                this_update: now,
                next_update: Some(now + Duration::from_secs(3600)),
            }
        })
        .collect();
    let resp_der = ocsp::build_ocsp_response::<_, Sig>(
        &key(1),
        cert(),
        &answers,
        parsed.nonce.as_ref(),
        now,
        Vec::new(),
    )
    .expect("a response echoing an accepted request can be built");
    let (resp, basic) = ocsp::parse_ocsp_response(&resp_der).expect("built response parses");
    assert_eq!(resp.response_status, OcspResponseStatus::Successful);
    let data = basic.expect("basic response").tbs_response_data;
    let echoed: Vec<_> = data.responses.iter().map(|r| r.cert_id.clone()).collect();
    assert_eq!(echoed, parsed.cert_ids, "CertIDs echoed unchanged");
    let echoed_nonce = data
        .response_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
        .map(|e| der::asn1::OctetString::from_der(e.extn_value.as_bytes()).expect("nonce value"));
    assert_eq!(
        echoed_nonce,
        parsed.nonce.map(|n| n.0),
        "nonce echoed unchanged"
    );
}
