//! CA policy: profiles, identity mapping, serials, lifecycle, pre-issuance lint and signer failures.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, SystemTime},
};

use common::*;
use der::{Decode, Tagged, asn1::Null};
use esigd_ca::{
    CaConfig, CaError, CertState, CertStore, ListQuery, ProfileKind, RevocationReason,
    StoredStatus, Transition,
    lint::{LintContext, LintKind, lint_tbs},
};
use esigd_pki::{
    X509Error,
    certificate::{
        decode_extension, find_extension, signer_algorithm, verify_certificate_signature,
    },
    extensions::{
        ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_CERTIFICATE_POLICIES, ID_CE_CRL_DISTRIBUTION_POINTS,
        ID_CE_KEY_USAGE, ID_CE_NO_REV_AVAIL, ID_CE_SUBJECT_KEY_IDENTIFIER,
        ID_ETSI_EXT_VALASSURED_ST_CERTS, ID_PE_AUTHORITY_INFO_ACCESS,
    },
    identity::{CommonNameSource, IdentityClaims},
    pem::serial_bytes,
};
use x509_cert::{
    der::Tag,
    ext::pkix::{CertificatePolicies, KeyUsage},
};

#[test]
fn one_time_profile_has_the_required_extensions_and_validity() {
    let ca = authority();
    let now = SystemTime::now();
    let (csr, _) = p256_csr();
    let issued = ca.issue_one_time(&csr, &claims(), now).unwrap();
    let tbs = &issued.certificate.tbs_certificate;
    let nb = tbs.validity.not_before.to_system_time();
    let na = tbs.validity.not_after.to_system_time();
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(na) - secs(nb), 65, "60 s validity + 5 s backdate");
    assert_eq!(secs(na), secs(now) + 60);

    let (critical, ku) = decode_extension::<KeyUsage>(tbs, ID_CE_KEY_USAGE)
        .unwrap()
        .unwrap();
    assert!(critical && ku.non_repudiation() && !ku.digital_signature());
    for oid in [ID_CE_NO_REV_AVAIL, ID_ETSI_EXT_VALASSURED_ST_CERTS] {
        let ext = find_extension(tbs, oid).unwrap().unwrap();
        assert!(!ext.critical);
        Null::from_der(ext.extn_value.as_bytes()).unwrap();
    }
    assert!(
        find_extension(tbs, ID_CE_CRL_DISTRIBUTION_POINTS)
            .unwrap()
            .is_none()
    );
    assert!(
        find_extension(tbs, ID_CE_SUBJECT_KEY_IDENTIFIER)
            .unwrap()
            .is_some()
    );
    assert!(
        find_extension(tbs, ID_CE_AUTHORITY_KEY_IDENTIFIER)
            .unwrap()
            .is_some()
    );
    let (_, pol) = decode_extension::<CertificatePolicies>(tbs, ID_CE_CERTIFICATE_POLICIES)
        .unwrap()
        .unwrap();
    assert_eq!(
        pol.0[0].policy_identifier,
        esigd_ca::config::DEFAULT_ONE_TIME_POLICY
    );
    // AIA only with caIssuers.
    let (_, aia) = decode_extension::<x509_cert::ext::pkix::AuthorityInfoAccessSyntax>(
        tbs,
        ID_PE_AUTHORITY_INFO_ACCESS,
    )
    .unwrap()
    .unwrap();
    assert!(!aia.0.is_empty());
    assert!(
        aia.0
            .iter()
            .all(|d| d.access_method == esigd_pki::extensions::ID_AD_CA_ISSUERS)
    );
    assert_eq!(issued.record.profile, ProfileKind::OneTime);
}

#[test]
fn subject_dn_uses_the_required_string_types() {
    let ca = authority();
    let (csr, _) = p256_csr();
    let issued = ca.issue_scd(&csr, &claims(), SystemTime::now()).unwrap();
    let subject = &issued.certificate.tbs_certificate.subject;
    let atvs: Vec<_> = subject.0.iter().flat_map(|r| r.0.iter()).collect();
    let tag_of = |oid: &str| {
        atvs.iter()
            .find(|a| a.oid.to_string() == oid)
            .map(|a| a.value.tag())
            .unwrap_or_else(|| panic!("{oid} missing in {subject}"))
    };
    assert_eq!(tag_of("2.5.4.6"), Tag::PrintableString, "countryName");
    assert_eq!(tag_of("2.5.4.5"), Tag::PrintableString, "serialNumber");
    assert_eq!(tag_of("2.5.4.3"), Tag::Utf8String, "commonName");
    assert_eq!(tag_of("2.5.4.42"), Tag::Utf8String, "givenName");
    assert_eq!(tag_of("2.5.4.4"), Tag::Utf8String, "surname");
    let text = subject.to_string();
    assert!(text.contains("PNOEE-47101010033"), "{text}");
    assert!(text.contains("Mari-Liis Männik"), "{text}");
    assert_eq!(issued.record.subject, text);
}

#[test]
fn identity_mapping_is_configurable_and_rejects_bad_claims() {
    use esigd_pki::identity::{SubjectMapping, subject_from_claims};
    let mut m = SubjectMapping::default();
    let mut c = claims();
    // Already formatted identifiers are not prefixed twice.
    c.personal_identifier = Some("pnoee-47101010033".into());
    let dn = subject_from_claims(&c, &m).unwrap().to_string();
    assert!(dn.contains("SERIALNUMBER=PNOEE-47101010033"), "{dn}");
    // Another identity type, CN from given + family, no given/surname attributes.
    m.semantics_type = "IDC".into();
    m.common_name = CommonNameSource::GivenAndFamily;
    m.include_given_name = false;
    m.include_surname = false;
    c.name = Some("Display Name".into());
    c.personal_identifier = Some("AB123".into());
    let dn = subject_from_claims(&c, &m).unwrap().to_string();
    assert!(
        dn.contains("IDCEE-AB123")
            && dn.contains("CN=Mari-Liis Männik")
            && !dn.contains("GIVENNAME=")
            && !dn.contains("SN="),
        "{dn}"
    );

    let m = SubjectMapping::default();
    let bad = |f: &dyn Fn(&mut IdentityClaims), claim: &str| {
        let mut c = claims();
        f(&mut c);
        let err = subject_from_claims(&c, &m).unwrap_err();
        assert!(
            matches!(&err, X509Error::Identity { claim: cl, .. } if *cl == claim),
            "{claim}: {err}"
        );
    };
    bad(&|c| c.country = Some("EST".into()), "country");
    bad(&|c| c.country = Some("E1".into()), "country");
    bad(&|c| c.country = None, "country");
    bad(&|c| c.personal_identifier = None, "personal_identifier");
    bad(
        &|c| c.personal_identifier = Some("ÄÖ-1".into()),
        "personal_identifier",
    );
    bad(
        &|c| c.personal_identifier = Some("x".repeat(70)),
        "personal_identifier",
    );
    bad(&|c| c.name = Some("a\u{0}b".into()), "name");
    bad(&|c| c.name = Some("n".repeat(65)), "name");
    bad(
        &|c| {
            c.name = None;
            c.given_name = Some("  ".into());
            c.family_name = None;
        },
        "name",
    );
    // Country from the configured default; lower case normalised.
    let m2 = SubjectMapping {
        default_country: Some("lv".into()),
        ..Default::default()
    };
    let mut c = claims();
    c.country = None;
    let dn = subject_from_claims(&c, &m2).unwrap().to_string();
    assert!(dn.contains("C=LV") && dn.contains("PNOLV-"), "{dn}");
}

#[test]
fn serials_are_long_positive_unique_and_recorded() {
    let ca = authority();
    let now = SystemTime::now();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let (csr, _) = p256_csr();
        let issued = ca.issue_one_time(&csr, &claims(), now).unwrap();
        let bytes = serial_bytes(&issued.certificate.tbs_certificate.serial_number);
        assert_eq!(bytes.len(), 20);
        assert!(bytes[0] & 0x80 == 0 && bytes[0] != 0);
        assert!(seen.insert(bytes.to_vec()));
        let rec = ca.certificate(bytes).unwrap().unwrap();
        assert_eq!(rec.status, StoredStatus::Active);
        assert_eq!(rec.der, issued.der);
    }
    let page = ca
        .list(&ListQuery {
            profile: Some(ProfileKind::OneTime),
            after_serial: None,
            limit: 20,
        })
        .unwrap();
    assert_eq!(page.len(), 20);
    let next = ca
        .list(&ListQuery {
            profile: None,
            after_serial: Some(page[19].serial.clone()),
            limit: 0,
        })
        .unwrap();
    assert_eq!(next.len(), 30);
    // The store refuses a duplicate serial.
    let dup = ca.store().list(&ListQuery::default()).unwrap()[0].clone();
    let err = esigd_ca::CertStore::insert_new(ca.store(), &dup).unwrap_err();
    assert!(
        matches!(err, esigd_ca::StoreError::SerialExists(_)),
        "{err}"
    );
}

#[test]
fn lifecycle_allows_only_the_documented_transitions() {
    let ca = authority();
    let now = SystemTime::now();
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), now).unwrap();
    let s = scd.record.serial.clone();

    let err = ca
        .set_status(&s, Transition::Resume, "op", "x", now)
        .unwrap_err();
    assert!(err.to_string().contains("nothing to resume"), "{err}");
    let rec = ca
        .set_status(&s, Transition::Suspend, "user:42", "lost phone", now)
        .unwrap();
    assert!(matches!(rec.status, StoredStatus::Suspended { .. }));
    assert_eq!(rec.state(now), CertState::Suspended);
    let err = ca
        .set_status(&s, Transition::Suspend, "op", "x", now)
        .unwrap_err();
    assert!(err.to_string().contains("already suspended"), "{err}");
    let rec = ca
        .set_status(&s, Transition::Resume, "user:42", "found it", now)
        .unwrap();
    assert_eq!(rec.status, StoredStatus::Active);
    ca.set_status(&s, Transition::Suspend, "user:42", "again", now)
        .unwrap();
    let rec = ca
        .set_status(
            &s,
            Transition::Revoke(RevocationReason::KeyCompromise),
            "operator:bob",
            "confirmed",
            now,
        )
        .unwrap();
    assert!(matches!(
        rec.status,
        StoredStatus::Revoked {
            reason: RevocationReason::KeyCompromise,
            ..
        }
    ));
    assert_eq!(rec.history.len(), 4);
    assert_eq!(rec.history[3].actor, "operator:bob");
    assert_eq!(rec.history[3].justification, "confirmed");
    assert!(matches!(
        rec.history[3].from,
        StoredStatus::Suspended { .. }
    ));
    for t in [
        Transition::Resume,
        Transition::Suspend,
        Transition::Revoke(RevocationReason::Superseded),
    ] {
        let err = ca.set_status(&s, t, "op", "x", now).unwrap_err();
        assert!(err.to_string().contains("revocation is final"), "{err}");
    }

    // ACTIVE → REVOKED directly.
    let (csr, _) = p256_csr();
    let other = ca.issue_scd(&csr, &claims(), now).unwrap();
    ca.set_status(
        &other.record.serial,
        Transition::Revoke(RevocationReason::Unspecified),
        "op",
        "",
        now,
    )
    .unwrap();

    // EXPIRED is derived, and frozen.
    let (csr, _) = p256_csr();
    let scd2 = ca.issue_scd(&csr, &claims(), now).unwrap();
    let later = now + Duration::from_secs(731 * 86_400);
    assert_eq!(
        ca.certificate(&scd2.record.serial)
            .unwrap()
            .unwrap()
            .state(later),
        CertState::Expired
    );
    let err = ca
        .set_status(&scd2.record.serial, Transition::Suspend, "op", "x", later)
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    // One-time certificates are never suspended or revoked.
    let (csr, _) = p256_csr();
    let ot = ca.issue_one_time(&csr, &claims(), now).unwrap();
    for t in [
        Transition::Suspend,
        Transition::Revoke(RevocationReason::KeyCompromise),
    ] {
        let err = ca
            .set_status(&ot.record.serial, t, "op", "x", now)
            .unwrap_err();
        assert!(
            matches!(err, CaError::Transition { .. }) && err.to_string().contains("one-time"),
            "{err}"
        );
    }
    // Empty actor, unknown serial, reason codes.
    let err = ca
        .set_status(&scd2.record.serial, Transition::Suspend, " ", "x", now)
        .unwrap_err();
    assert!(err.to_string().contains("actor"), "{err}");
    let err = ca
        .set_status(&[1, 2, 3], Transition::Suspend, "op", "x", now)
        .unwrap_err();
    assert!(matches!(err, CaError::NotFound(_)), "{err}");
    assert!(
        RevocationReason::from_code(6)
            .unwrap_err()
            .contains("suspend")
    );
    assert!(RevocationReason::from_code(2).is_err());
    assert!(RevocationReason::from_code(7).is_err());
    assert_eq!(
        RevocationReason::from_code(1).unwrap(),
        RevocationReason::KeyCompromise
    );
}

#[test]
fn lint_failure_means_the_signer_is_never_called() {
    // CA valid for 10 years, SCD validity 11 years: notAfter would exceed the CA's.
    let mut cfg = CaConfig::with_base_url(BASE_URL);
    cfg.scd.validity = Duration::from_secs(11 * 365 * 86_400);
    let ca = authority_with(cfg);
    let before = ca_signer_calls(&ca);
    // Sanity: a successful issue does call the signer (so the counter below is meaningful).
    let (csr, _) = p256_csr();
    ca.issue_one_time(&csr, &claims(), SystemTime::now())
        .unwrap();
    assert_eq!(ca_signer_calls(&ca), before + 1);
    let before = ca_signer_calls(&ca);
    let (csr, _) = p256_csr();
    let err = ca
        .issue_scd(&csr, &claims(), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(&err, CaError::Lint { problems, .. } if problems.iter().any(|p| p.contains("after the CA certificate's notAfter"))),
        "{err}"
    );
    assert_eq!(
        ca_signer_calls(&ca),
        before,
        "signer called despite lint failure"
    );
    assert!(
        ca.list(&ListQuery {
            profile: Some(ProfileKind::Scd),
            ..Default::default()
        })
        .unwrap()
        .is_empty(),
        "nothing recorded"
    );
}

fn ca_signer_calls(ca: &TestAuthority) -> usize {
    ca.signer().calls()
}

#[test]
fn lint_rules_catch_broken_certificates() {
    let ca = authority();
    let now = SystemTime::now();
    let (csr, _) = p256_csr();
    let good = ca
        .issue_scd(&csr, &claims(), now)
        .unwrap()
        .certificate
        .tbs_certificate;
    let alg = good.signature.clone();
    let ctx = |kind| LintContext {
        kind,
        issuer: Some(ca.ca_certificate()),
        signer_algorithm: &alg,
        now,
        max_validity: Duration::from_secs(730 * 86_400),
        max_backdate: Duration::from_secs(5),
        require_subject_serial: true,
        digital_signature: false,
    };
    lint_tbs(&good, &ctx(LintKind::Scd)).unwrap();
    let problems = |tbs: &x509_cert::TbsCertificate, kind| match lint_tbs(tbs, &ctx(kind)) {
        Err(CaError::Lint { problems, .. }) => problems.join(" | "),
        other => panic!("expected lint failure, got {other:?}"),
    };
    // An SCD certificate is not a valid one-time certificate.
    let p = problems(&good, LintKind::OneTime);
    assert!(
        p.contains("noRevAvail missing") && p.contains("must not have cRLDistributionPoints"),
        "{p}"
    );

    let mut t = good.clone();
    t.validity.not_after =
        esigd_pki::certificate::x509_time("t", now + Duration::from_secs(800 * 86_400)).unwrap();
    assert!(problems(&t, LintKind::Scd).contains("validity ends"));

    let mut t = good.clone();
    t.validity.not_before =
        esigd_pki::certificate::x509_time("t", now - Duration::from_secs(3600)).unwrap();
    assert!(problems(&t, LintKind::Scd).contains("backdated"));

    let mut t = good.clone();
    t.serial_number = x509_cert::serial_number::SerialNumber::from(42u32);
    assert!(problems(&t, LintKind::Scd).contains("at least 16 required"));

    let mut t = good.clone();
    t.subject = Default::default();
    let p = problems(&t, LintKind::Scd);
    assert!(
        p.contains("subject is empty") && p.contains("no commonName"),
        "{p}"
    );

    let mut t = good.clone();
    let exts = t.extensions.as_mut().unwrap();
    exts.retain(|e| e.extn_id != ID_CE_KEY_USAGE);
    exts.push(
        esigd_pki::extensions::key_usage(x509_cert::ext::pkix::KeyUsages::KeyCertSign).unwrap(),
    );
    let p = problems(&t, LintKind::Scd);
    assert!(
        p.contains("keyCertSign") && p.contains("nonRepudiation"),
        "{p}"
    );

    let mut t = good.clone();
    t.extensions
        .as_mut()
        .unwrap()
        .push(esigd_pki::extensions::basic_constraints(true, None).unwrap());
    assert!(problems(&t, LintKind::Scd).contains("cA=TRUE"));

    let mut t = good.clone();
    let dup = t.extensions.as_ref().unwrap()[0].clone();
    t.extensions.as_mut().unwrap().push(dup);
    assert!(problems(&t, LintKind::Scd).contains("more than once"));

    let mut t = good.clone();
    let rsa1024 = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    t.subject_public_key_info =
        spki::SubjectPublicKeyInfoOwned::from_key(rsa1024.to_public_key()).unwrap();
    let p = problems(&t, LintKind::Scd);
    assert!(
        p.contains("RSA-1024") && p.contains("subjectKeyIdentifier does not match"),
        "{p}"
    );

    let mut t = good.clone();
    t.signature =
        signer_algorithm(&rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa1024)).unwrap();
    assert!(problems(&t, LintKind::Scd).contains("signature algorithm differs"));

    // A TSA certificate needs the critical timeStamping EKU.
    assert!(problems(&good, LintKind::Tsa).contains("id-kp-timeStamping"));
}

#[test]
fn signer_failure_is_reported_as_such_and_nothing_is_recorded() {
    let ca = authority();
    // A fresh authority whose signer we switch off after the root was made (an HSM going away).
    let signer = TestSigner::new();
    let root = esigd_ca::ceremony::create_root(
        &signer,
        ca_name(),
        Duration::from_secs(86_400 * 3650),
        SystemTime::now() - Duration::from_secs(60),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    signer.fail.store(true, Ordering::SeqCst);
    let broken = esigd_ca::Authority::new(
        root,
        signer,
        CaConfig::with_base_url(BASE_URL),
        esigd_ca::MemoryStore::new(),
    )
    .unwrap();
    let (csr, _) = p256_csr();
    let err = broken
        .issue_scd(&csr, &claims(), SystemTime::now())
        .unwrap_err();
    assert!(err.is_signer_failure(), "{err}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut found = false;
    while let Some(e) = source {
        if e.to_string().contains("CKR_DEVICE_REMOVED")
            || e.downcast_ref::<signature::Error>().is_some()
        {
            found = true;
        }
        source = e.source();
    }
    assert!(
        found,
        "signature::Error must stay in the source chain: {err:?}"
    );
    assert!(broken.list(&ListQuery::default()).unwrap().is_empty());
    assert!(
        broken
            .crl(SystemTime::now())
            .unwrap_err()
            .is_signer_failure()
    );
    // OCSP: tryLater when the signer is down.
    let (csr, _) = p256_csr();
    let issued = ca.issue_scd(&csr, &claims(), SystemTime::now()).unwrap();
    let req = ocsp_request_for(&issued.certificate, broken.ca_certificate());
    let (resp, _) =
        esigd_pki::ocsp::parse_ocsp_response(&broken.ocsp(&req, SystemTime::now())).unwrap();
    assert_eq!(
        resp.response_status,
        x509_ocsp::OcspResponseStatus::TryLater
    );
}

fn ocsp_request_for(cert: &x509_cert::Certificate, issuer: &x509_cert::Certificate) -> Vec<u8> {
    use der::Encode;
    let id = esigd_pki::ocsp::cert_id(
        issuer,
        &cert.tbs_certificate.serial_number,
        esigd_pki::ocsp::CertIdHash::Sha256,
    )
    .unwrap();
    let req = x509_ocsp::OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    req.to_der().unwrap()
}

#[test]
fn config_validation_names_the_setting() {
    let mut cfg = CaConfig::default();
    let err = cfg.validate().unwrap_err();
    assert!(err.to_string().contains("scd.crl_urls"), "{err}");
    cfg = CaConfig::with_base_url(BASE_URL);
    cfg.validate().unwrap();
    cfg.one_time.validity = Duration::ZERO;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("one_time.validity")
    );
    cfg = CaConfig::with_base_url(BASE_URL);
    cfg.scd.backdate = Duration::from_secs(3600);
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("scd.backdate")
    );
    cfg = CaConfig::with_base_url("ftp://x");
    assert!(cfg.validate().unwrap_err().to_string().contains("urls"));
    // A non-CA certificate (or another key) is refused as CA certificate.
    let ca = authority();
    let err = esigd_ca::Authority::<_, p256::ecdsa::DerSignature, _>::new(
        ca.ca_certificate().clone(),
        TestSigner::new(),
        CaConfig::with_base_url(BASE_URL),
        esigd_ca::MemoryStore::new(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("not the key of the CA signer"),
        "{err}"
    );
}

#[test]
fn faulty_signatures_are_caught_by_the_sampled_and_the_full_check() {
    use esigd_ca::SignatureCheck;
    use std::num::NonZeroU32;
    let sampled = |n: u32| {
        let mut cfg = CaConfig::with_base_url(BASE_URL);
        cfg.signature_check = SignatureCheck::Sampled {
            ecdsa_one_in: NonZeroU32::new(n).unwrap(),
        };
        authority_with(cfg)
    };
    let ca_key = |ca: &TestAuthority| {
        ca.ca_certificate()
            .tbs_certificate
            .subject_public_key_info
            .clone()
    };
    let issue = |ca: &TestAuthority| {
        let (csr, _) = p256_csr();
        ca.issue_scd(&csr, &claims(), SystemTime::now())
    };

    // Garbage (r = s = 0) is refused by the form check on every certificate, sampled or not.
    let ca = sampled(1000);
    issue(&ca).unwrap(); // the first certificate: fully verified
    ca.signer().garbage.store(true, Ordering::SeqCst);
    let err = issue(&ca).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    ca.signer().garbage.store(false, Ordering::SeqCst);
    // After a failed check every signature is verified: a wrong-key signature is refused at once.
    ca.signer().wrong_key.store(true, Ordering::SeqCst);
    assert!(issue(&ca).is_err());
    ca.signer().wrong_key.store(false, Ordering::SeqCst);
    issue(&ca).unwrap();
    assert_eq!(ca.list(&ListQuery::default()).unwrap().len(), 2);

    // Sampled 1 in 4: a well-formed signature by the wrong key passes until the next sample, and
    // those certificates do not verify with the CA key (worthless to any relying party, not a
    // risk); the sample refuses its certificate and switches to verifying every signature.
    let ca = sampled(4);
    issue(&ca).unwrap(); // #0: verified
    ca.signer().wrong_key.store(true, Ordering::SeqCst);
    for _ in 1..4 {
        let bad = issue(&ca).unwrap(); // #1..#3: form check only
        assert!(
            verify_certificate_signature(&bad.certificate, &ca_key(&ca)).is_err(),
            "a wrong-key certificate never verifies"
        );
    }
    assert!(issue(&ca).is_err()); // #4: sampled, refused
    assert!(issue(&ca).is_err()); // #5: every signature is verified now
    ca.signer().wrong_key.store(false, Ordering::SeqCst);
    issue(&ca).unwrap();

    // Every: the wrong key is refused on the first certificate after a good one.
    let mut cfg = CaConfig::with_base_url(BASE_URL);
    cfg.signature_check = SignatureCheck::Every;
    let ca = authority_with(cfg);
    issue(&ca).unwrap();
    ca.signer().wrong_key.store(true, Ordering::SeqCst);
    assert!(issue(&ca).is_err());
    assert_eq!(ca.list(&ListQuery::default()).unwrap().len(), 1);
}
