//! pkilint (PyPI) on the certificate profiles, the CRL and an OCSP response.
//!
//! pkilint comes from the virtualenv `$ESIGD_VENV` (default `~/.cache/esigd-venv`, where
//! `scripts/install-deps.sh --with-test-tools` installs it). Without it the test FAILS with the fix:
//! a validator check is never skipped.
//!
//! Findings at WARNING or above fail the test, except the ones listed in `ACCEPTED` with their reason.
//! The runner (`common::pkilint`) reads pkilint's JSON report and checks its exit status, and a
//! known-bad control certificate must be reported, so a broken invocation cannot pass as "no findings".
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

mod common;

use std::{path::Path, time::SystemTime};

use common::*;
use esigd_ca::{RevocationReason, Transition};
use esigd_pki::{
    certificate::sign_tbs_certificate,
    extensions::{ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_KEY_USAGE, key_usage},
    pem::{certificate_to_pem, crl_to_pem},
};
use p256::ecdsa::DerSignature;
use x509_cert::{Certificate, ext::pkix::KeyUsages};

/// Findings we accept: (file name, finding code, why).
const ACCEPTED: &[(&str, &str, &str)] = &[
    (
        "one-time.pem",
        "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing",
        "one-time certificates are short-term certificates with id-etsi-ext-valassured-ST-certs and RFC 9608 \
         noRevAvail: the CA deliberately publishes no revocation information (ETSI EN 319 411-1 short-term \
         certificates); pkilint 0.13.3 does not implement that exemption",
    ),
    (
        "one-time.pem",
        "etsi.en_319_412_2.gen-4.4.1-8.ocsp_aia_access_method_absent",
        "same reason: no OCSP pointer in a noRevAvail short-term certificate",
    ),
    (
        "one-time-qc.pem",
        "etsi.en_319_412_2.gen-4.3.11-2.crldp_extension_missing",
        "as for one-time.pem",
    ),
    (
        "one-time-qc.pem",
        "etsi.en_319_412_2.gen-4.4.1-8.ocsp_aia_access_method_absent",
        "as for one-time.pem",
    ),
];

/// Lints `file` with `tool` and returns the findings at WARNING or above that `ACCEPTED` does not list.
fn lint(tool: &str, args: &[&str], file: &Path) -> Vec<Finding> {
    pkilint(tool, args, file)
        .into_iter()
        .filter(|f| f.severity <= Severity::Warning)
        .filter(|f| {
            !ACCEPTED
                .iter()
                .any(|(name, code, _)| f.file == *name && f.code == *code)
        })
        .collect()
}

#[test]
fn pkilint_finds_nothing_in_our_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let now = SystemTime::now();
    let (csr, _) = p256_csr();
    let ot = ca.issue_one_time(&csr, &claims(), now).unwrap();
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), now).unwrap();
    ca.set_status(
        &scd.record.serial,
        Transition::Revoke(RevocationReason::KeyCompromise),
        "op",
        "test",
        now,
    )
    .unwrap();
    let (csr, _) = p256_csr();
    let held = ca.issue_scd(&csr, &claims(), now).unwrap();
    ca.set_status(&held.record.serial, Transition::Suspend, "op", "test", now)
        .unwrap();

    let mut findings = Vec::new();
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, certificate_to_pem(ca.ca_certificate()).unwrap()).unwrap();
    findings.extend(lint("lint_pkix_cert", &[], &ca_file));
    for (name, cert) in [
        ("one-time.pem", &ot.certificate),
        ("scd.pem", &scd.certificate),
    ] {
        let f = d.join(name);
        std::fs::write(&f, certificate_to_pem(cert).unwrap()).unwrap();
        findings.extend(lint("lint_pkix_cert", &[], &f));
        findings.extend(lint(
            "lint_etsi_cert",
            &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"],
            &f,
        ));
    }
    // Variant with the optional ETSI QCStatements (semantics identifier natural person, QcType esign).
    let mut cfg = esigd_ca::CaConfig::with_base_url(BASE_URL);
    let qc = esigd_pki::extensions::QcStatementsOptions {
        semantics_id_natural: true,
        qc_type_esign: true,
        ..Default::default()
    };
    cfg.one_time.qc_statements = qc;
    cfg.scd.qc_statements = qc;
    let qca = authority_with(cfg);
    let (csr, _) = p256_csr();
    let ot_qc = qca.issue_one_time(&csr, &claims(), now).unwrap();
    let (csr, _) = p256_csr();
    let scd_qc = qca.issue_scd(&csr, &claims(), now).unwrap();
    for (name, cert) in [
        ("one-time-qc.pem", &ot_qc.certificate),
        ("scd-qc.pem", &scd_qc.certificate),
    ] {
        let f = d.join(name);
        std::fs::write(&f, certificate_to_pem(cert).unwrap()).unwrap();
        findings.extend(lint("lint_pkix_cert", &[], &f));
        findings.extend(lint(
            "lint_etsi_cert",
            &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"],
            &f,
        ));
    }

    let crl_file = d.join("crl.pem");
    std::fs::write(&crl_file, crl_to_pem(&ca.crl(now).unwrap()).unwrap()).unwrap();
    findings.extend(lint("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl_file));

    let ca_pem = ca_file.to_str().unwrap().to_owned();
    let leaf = write_cert(d, "held.pem", &held.certificate);
    let req = d.join("req.der");
    openssl_ok(&[
        "ocsp",
        "-issuer",
        &ca_pem,
        "-cert",
        &leaf,
        "-reqout",
        req.to_str().unwrap(),
    ]);
    let resp = d.join("resp.der");
    std::fs::write(&resp, ca.ocsp(&std::fs::read(&req).unwrap(), now)).unwrap();
    findings.extend(lint("lint_ocsp_response", &[], &resp));

    assert!(
        findings.is_empty(),
        "pkilint findings:\n{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The control certificate: the SCD certificate as issued, re-signed by the same CA after two defects
/// were put in: keyUsage keyCertSign instead of the profile's usage (an end-entity certificate must not
/// have it, RFC 5280 §4.2.1.3; it is none of the natural-person settings of ETSI EN 319 412-2 §4.3.2)
/// and no authorityKeyIdentifier (RFC 5280 §4.2.1.1: required).
fn known_bad(ca: &TestAuthority, good: &Certificate) -> Certificate {
    let mut tbs = good.tbs_certificate.clone();
    let extensions = tbs.extensions.as_mut().unwrap();
    let before = extensions.len();
    extensions.retain(|e| e.extn_id != ID_CE_AUTHORITY_KEY_IDENTIFIER);
    assert_eq!(
        extensions.len(),
        before - 1,
        "the profile has an AKI to drop"
    );
    let ku = extensions
        .iter_mut()
        .find(|e| e.extn_id == ID_CE_KEY_USAGE)
        .unwrap();
    *ku = key_usage(KeyUsages::KeyCertSign).unwrap();
    sign_tbs_certificate::<_, DerSignature>(ca.signer(), tbs).unwrap()
}

/// The runner finds problems: the known-bad control certificate gets exactly the findings its defects
/// call for, parsed into severity, code and node path, and the good certificate it was made from gets
/// none of them.
#[test]
fn pkilint_reports_a_known_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = authority();
    let (csr, _) = p256_csr();
    let scd = ca.issue_scd(&csr, &claims(), SystemTime::now()).unwrap();
    let good = d.join("scd.pem");
    std::fs::write(&good, certificate_to_pem(&scd.certificate).unwrap()).unwrap();
    let bad = d.join("scd-bad.pem");
    std::fs::write(
        &bad,
        certificate_to_pem(&known_bad(&ca, &scd.certificate)).unwrap(),
    )
    .unwrap();

    // (severity, code, where: a test of the node path)
    type Expected = (Severity, &'static str, fn(&str) -> bool);
    let in_key_usage = |path: &str| {
        path.starts_with("certificate.tbsCertificate.extensions.")
            && path.ends_with(".extnValue.keyUsage")
    };
    let pkix: [Expected; 2] = [
        (
            Severity::Error,
            "pkix.ee_certificate_keycertsign_keyusage_set",
            in_key_usage,
        ),
        (
            Severity::Error,
            "pkix.authority_key_identifier_extension_absent",
            |path| path == "certificate",
        ),
    ];
    // The ETSI linter runs the PKIX rules too, and its own.
    let etsi: [Expected; 2] = [
        (
            Severity::Error,
            "etsi.en_319_412_2.nat-4.3.2-1.unknown_key_usage_setting",
            in_key_usage,
        ),
        (
            Severity::Error,
            "etsi.en_319_412_2.authority_key_identifier_extension_absent",
            |path| path == "certificate.tbsCertificate.extensions",
        ),
    ];
    for (tool, args, expected) in [
        ("lint_pkix_cert", &[][..], pkix.to_vec()),
        (
            "lint_etsi_cert",
            &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"][..],
            [pkix, etsi].concat(),
        ),
    ] {
        let findings = lint(tool, args, &bad);
        for &(severity, code, at) in &expected {
            assert!(
                findings.iter().any(|f| f.severity == severity
                    && f.code == code
                    && at(&f.node_path)
                    && f.file == "scd-bad.pem"
                    && f.tool == tool),
                "{tool} did not report {code} ({severity:?}) at the expected node for the control \
                 certificate; it reported:\n{findings:#?}"
            );
        }
        let clean = lint(tool, args, &good);
        assert!(
            !clean
                .iter()
                .any(|f| expected.iter().any(|(_, code, _)| f.code == *code)),
            "{tool}: the good certificate has the control's findings: {clean:#?}"
        );
    }
}
