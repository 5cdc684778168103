//! pkilint (PyPI) on the certificate profiles, the CRL and an OCSP response.
//!
//! pkilint comes from the virtualenv `$ESIGD_VENV` (default `~/.cache/esigd-venv`, where
//! `scripts/install-deps.sh --with-test-tools` installs it). Without it the test FAILS with the fix:
//! a validator check is never skipped.
//!
//! Findings at WARNING or above fail the test, except the ones listed in `ACCEPTED` with their reason.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use common::*;
use esigd_ca::{RevocationReason, Transition};
use esigd_pki::pem::{certificate_to_pem, crl_to_pem};

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

fn linters() -> PathBuf {
    let venv = std::env::var_os("ESIGD_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/esigd-venv")))
        .expect("ESIGD_VENV or HOME is set");
    let bin = venv.join("bin");
    for tool in [
        "lint_pkix_cert",
        "lint_etsi_cert",
        "lint_crl",
        "lint_ocsp_response",
    ] {
        assert!(
            bin.join(tool).exists(),
            "{} is missing: run `scripts/install-deps.sh --with-test-tools` (pkilint into $ESIGD_VENV)",
            bin.join(tool).display()
        );
    }
    bin
}

fn lint(bin: &Path, tool: &str, args: &[&str], file: &Path) -> Vec<String> {
    let out = Command::new(bin.join(tool))
        .arg("lint")
        .args(args)
        .args(["-s", "NOTICE"])
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("== {tool} {args:?} {}:\n{text}", file.display());
    text.lines()
        .filter(|l| {
            l.contains("(WARNING)")
                || l.contains("(ERROR)")
                || l.contains("(FATAL)")
                || l.contains("Traceback")
        })
        .filter(|l| {
            !ACCEPTED.iter().any(|(name, code, _)| {
                file.file_name().is_some_and(|f| f == *name) && l.contains(code)
            })
        })
        .map(|l| format!("{tool} {}: {l}", file.display()))
        .collect()
}

#[test]
fn pkilint_finds_nothing_in_our_profiles() {
    let bin = linters();
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
    findings.extend(lint(&bin, "lint_pkix_cert", &[], &ca_file));
    for (name, cert) in [
        ("one-time.pem", &ot.certificate),
        ("scd.pem", &scd.certificate),
    ] {
        let f = d.join(name);
        std::fs::write(&f, certificate_to_pem(cert).unwrap()).unwrap();
        findings.extend(lint(&bin, "lint_pkix_cert", &[], &f));
        findings.extend(lint(
            &bin,
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
        findings.extend(lint(&bin, "lint_pkix_cert", &[], &f));
        findings.extend(lint(
            &bin,
            "lint_etsi_cert",
            &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"],
            &f,
        ));
    }

    let crl_file = d.join("crl.pem");
    std::fs::write(&crl_file, crl_to_pem(&ca.crl(now).unwrap()).unwrap()).unwrap();
    findings.extend(lint(
        &bin,
        "lint_crl",
        &["-t", "CRL", "-p", "PKIX"],
        &crl_file,
    ));

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
    findings.extend(lint(&bin, "lint_ocsp_response", &[], &resp));

    assert!(
        findings.is_empty(),
        "pkilint findings:\n{}",
        findings.join("\n")
    );
}
