//! PEM/DER helpers, serials, time encoding and OCSP request parsing.

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
