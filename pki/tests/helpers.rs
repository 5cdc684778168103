//! PEM/DER helpers, serials, time encoding and OCSP request parsing.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esigd_pki::{
    X509Error,
    certificate::{random_serial, x509_time},
    ocsp::{MAX_NONCE_LEN, parse_ocsp_request},
    pem::{parse_certificates, parse_serial_hex, serial_hex},
};
use rand::rngs::OsRng;
use x509_cert::time::Time;

#[test]
fn times_use_utc_until_2049_and_generalized_from_2050() {
    let t2049 = UNIX_EPOCH + Duration::from_secs(2_524_607_999); // 2049-12-31T23:59:59Z
    assert!(matches!(x509_time("t", t2049).unwrap(), Time::UtcTime(_)));
    let t2050 = t2049 + Duration::from_secs(1);
    assert!(matches!(
        x509_time("t", t2050).unwrap(),
        Time::GeneralTime(_)
    ));
    // Sub-second parts are truncated, not rejected.
    let now = SystemTime::now();
    let enc = x509_time("t", now + Duration::from_millis(1))
        .unwrap()
        .to_system_time();
    assert!(enc <= now + Duration::from_millis(1) && enc + Duration::from_secs(1) > now);
    let err = x509_time(
        "notAfter",
        UNIX_EPOCH + Duration::from_secs(300_000_000_000),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            X509Error::Time {
                what: "notAfter",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn serials_are_20_bytes_positive_and_hex_round_trips() {
    for _ in 0..200 {
        let s = random_serial(&mut OsRng).unwrap();
        assert_eq!(s.as_bytes().len(), 20);
        assert!(s.as_bytes()[0] & 0x80 == 0 && s.as_bytes()[0] != 0);
        let hex = serial_hex(&s);
        assert_eq!(hex.len(), 40);
        assert_eq!(parse_serial_hex(&hex).unwrap(), s);
        assert_eq!(parse_serial_hex(&hex.to_uppercase()).unwrap(), s);
    }
    assert!(parse_serial_hex("zz").is_err());
    assert!(parse_serial_hex("0000").is_err());
    assert!(parse_serial_hex(&"11".repeat(21)).is_err());
}

#[test]
fn bundles_and_bad_pem_are_handled() {
    assert!(matches!(
        parse_certificates(b"").unwrap_err(),
        X509Error::Empty { .. }
    ));
    let err = parse_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
    assert!(matches!(err, X509Error::Pem { .. }), "{err}");
    let err = parse_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err();
    assert!(
        matches!(err, X509Error::Decode { .. } | X509Error::Pem { .. }),
        "{err}"
    );
}

#[test]
fn ocsp_requests_are_checked() {
    assert!(matches!(
        parse_ocsp_request(b"").unwrap_err(),
        X509Error::Empty { .. }
    ));
    assert!(matches!(
        parse_ocsp_request(&[0u8; 70_000]).unwrap_err(),
        X509Error::TooLarge { .. }
    ));
    assert!(matches!(
        parse_ocsp_request(b"\x30\x00").unwrap_err(),
        X509Error::Decode { .. }
    ));
    // Empty request list: SEQUENCE { SEQUENCE { SEQUENCE {} } }.
    let err = parse_ocsp_request(&[0x30, 0x04, 0x30, 0x02, 0x30, 0x00]).unwrap_err();
    assert!(err.to_string().contains("requestList is empty"), "{err}");
    assert_eq!(MAX_NONCE_LEN, 128);
}

#[test]
fn x509_cert_eku_default_criticality_is_as_documented_and_ours_is_explicit() {
    use const_oid::db::rfc5280::{ANY_EXTENDED_KEY_USAGE, ID_KP_TIME_STAMPING};
    use x509_cert::ext::{AsExtension, pkix::ExtendedKeyUsage};
    let subject = x509_cert::name::Name::default();
    // x509-cert 0.2.5: EKU is critical unless anyExtendedKeyUsage is present.
    let eku = ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]);
    assert!(eku.to_extension(&subject, &[]).unwrap().critical);
    let eku = ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING, ANY_EXTENDED_KEY_USAGE]);
    assert!(!eku.to_extension(&subject, &[]).unwrap().critical);
    // Our constructor never relies on that default.
    assert!(
        esigd_pki::extensions::extended_key_usage(vec![ID_KP_TIME_STAMPING], true)
            .unwrap()
            .critical
    );
    assert!(
        !esigd_pki::extensions::extended_key_usage(vec![ID_KP_TIME_STAMPING], false)
            .unwrap()
            .critical
    );
}

#[test]
fn name_to_string_is_the_library_display() {
    use der::asn1::{Any, SetOfVec};
    use esigd_pki::identity::{
        DnBuilder, IdentityClaims, SubjectMapping, name_to_string, subject_from_claims,
    };
    use std::str::FromStr;
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{Name, RelativeDistinguishedName};

    let claims = IdentityClaims {
        name: None,
        given_name: Some("Mari-Liis".into()),
        family_name: Some("Männik".into()),
        personal_identifier: Some("47101010033".into()),
        country: Some("EE".into()),
    };
    let mut names = vec![
        subject_from_claims(&claims, &SubjectMapping::default()).unwrap(),
        DnBuilder::new()
            .country("EE")
            .unwrap()
            .organization("esigd, \"bench\" <CA>; a+b \\ c")
            .unwrap()
            .common_name("#lead and trail ")
            .unwrap()
            .build(),
        Name::from_str("CN=Unit TSA,O=esigd,OU=ops,L=Tallinn,ST=Harju,DC=example").unwrap(),
        Name::default(),
    ];
    // A multi-valued RDN, an unknown attribute type and a non-string value.
    let atv = |oid: &str, value: Any| AttributeTypeAndValue {
        oid: const_oid::ObjectIdentifier::new_unwrap(oid),
        value,
    };
    let utf8 = |s: &str| Any::new(der::Tag::Utf8String, s.as_bytes()).unwrap();
    let mut rdn = SetOfVec::new();
    rdn.insert(atv("2.5.4.3", utf8("multi"))).unwrap();
    rdn.insert(atv("2.5.4.4", utf8("valued\u{1}"))).unwrap();
    let mut odd = SetOfVec::new();
    odd.insert(atv("1.3.6.1.4.1.99999.7", utf8("unknown type")))
        .unwrap();
    let mut strings = SetOfVec::new();
    for (tag, value) in [
        (der::Tag::PrintableString, "not@printable"),
        (der::Tag::Ia5String, "ia5@example"),
        (der::Tag::TeletexString, "teletex"),
    ] {
        strings
            .insert(atv("2.5.4.10", Any::new(tag, value.as_bytes()).unwrap()))
            .unwrap();
    }
    let mut binary = SetOfVec::new();
    binary
        .insert(atv(
            "2.5.4.3",
            Any::new(der::Tag::OctetString, [1u8, 2, 3]).unwrap(),
        ))
        .unwrap();
    names.push(Name::from(vec![
        RelativeDistinguishedName::from(rdn),
        RelativeDistinguishedName::from(odd),
        RelativeDistinguishedName::from(binary),
        RelativeDistinguishedName::from(strings),
    ]));
    for n in names {
        assert_eq!(name_to_string(&n), n.to_string());
    }
}

#[test]
fn signed_certificate_der_is_the_encoded_certificate() {
    use der::Encode;
    use esigd_pki::certificate::{
        CertificateTemplate, sign_certificate_der, tbs_certificate, verify_certificate_signature,
    };
    use esigd_pki::identity::DnBuilder;
    use spki::SubjectPublicKeyInfoOwned;
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let name = DnBuilder::new().common_name("unit").unwrap().build();
    let now = SystemTime::now();
    let tbs = tbs_certificate(
        &key,
        CertificateTemplate {
            serial: random_serial(&mut OsRng).unwrap(),
            issuer: name.clone(),
            subject: name,
            public_key: spki.clone(),
            not_before: now,
            not_after: now + Duration::from_secs(60),
            extensions: vec![esigd_pki::extensions::subject_key_identifier(&spki).unwrap()],
        },
    )
    .unwrap();
    let signed = sign_certificate_der::<_, p256::ecdsa::DerSignature>(&key, tbs.clone()).unwrap();
    assert_eq!(signed.der, signed.certificate.to_der().unwrap());
    assert_eq!(signed.tbs_der(), tbs.to_der().unwrap());
    verify_certificate_signature(&signed.certificate, &spki).unwrap();
}
