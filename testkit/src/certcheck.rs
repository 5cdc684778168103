//! Checks of issued certificates by validators we did not write: `openssl verify -x509_strict`,
//! `openssl ocsp` against the running responder, pkilint (`lint_pkix_cert`, `lint_etsi_cert`);
//! and CSRs made by openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::text;
use crate::validators::{Severity, pkilint};

/// `openssl` with `args`; panics with its output unless it succeeded.
pub fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A CSR made by openssl with `newkey` (e.g. `["-newkey", "ec", "-pkeyopt",
/// "ec_paramgen_curve:P-256"]`) and subject `/CN=requester`: (PEM text, key file).
pub fn openssl_csr(dir: &Path, name: &str, newkey: &[&str]) -> (String, PathBuf) {
    let csr = dir.join(format!("{name}.csr"));
    let key = dir.join(format!("{name}.key"));
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=requester"];
    args.extend_from_slice(newkey);
    args.extend(["-keyout", s(&key), "-out", s(&csr)]);
    openssl(&args);
    (std::fs::read_to_string(csr).unwrap(), key)
}

/// An EC P-256 CSR by openssl: (PEM text, key file).
pub fn ec_csr(dir: &Path, name: &str) -> (String, PathBuf) {
    openssl_csr(
        dir,
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

/// `openssl ocsp` at `url` for `target` (`-cert FILE` or `-serial 0x…`) issued by `ca`; asserts
/// the response verifies and returns openssl's output (`…: good`, `…: revoked`).
pub fn ocsp(ca: &Path, url: &str, target: &[&str], sha256: bool) -> String {
    let mut args = vec!["ocsp", "-issuer", s(ca), "-CAfile", s(ca), "-url", url];
    if sha256 {
        args.push("-sha256");
    }
    args.extend_from_slice(target);
    let out = openssl(&args);
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

/// An SCD (natural person) certificate: `openssl verify -x509_strict` to `ca` and no pkilint
/// finding at WARNING or above (`lint_pkix_cert`, `lint_etsi_cert -t
/// NCP-NATURAL-PERSON-CERTIFICATE`).
pub fn check_scd_certificate(ca: &Path, cert: &Path) {
    let out = openssl(&["verify", "-x509_strict", "-CAfile", s(ca), s(cert)]);
    assert!(out.contains(": OK"), "{out}");
    let mut findings = pkilint("lint_pkix_cert", &[], cert);
    findings.extend(pkilint(
        "lint_etsi_cert",
        &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"],
        cert,
    ));
    findings.retain(|f| f.severity <= Severity::Warning);
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
