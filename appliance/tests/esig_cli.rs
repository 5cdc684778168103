//! The `esig` CLI against a running esigd, as the README shows it: `esig sign` (an e-Service back
//! end's whole round trip over mutual TLS: hash or prepare, `POST /v1/sign/onetime`, merge) in
//! every format, `esig verify` on each result, independent validators on the signed PDF and the
//! container, and `esig pdf lt --server` (B-LT, then B-LTA) fetching the CA chain, CRL, OCSP
//! answers and a document time-stamp from esigd's public listener.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;

use esigd_testkit::esig;
use esigd_testkit::formats_check::{
    pdfsig, pyhanko_ltv, pyhanko_validate_pdf, qpdf_check, simple_pdf,
};
use esigd_testkit::onetime_env::OneTimeEnv;

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `esig sign` as the README shows it, with a fresh ID token of `mari`.
fn sign(env: &OneTimeEnv, format: &str, files: &[&Path], out: &Path) -> String {
    let mut cmd = esig();
    cmd.arg("sign")
        .arg("--server")
        .arg(format!("https://{}", env.daemon.eservice))
        .arg("--cert")
        .arg(&env.client.0)
        .arg("--key")
        .arg(&env.client.1)
        .arg("--cacert")
        .arg(&env.ca)
        .arg("--format")
        .arg(format)
        .arg("--out")
        .arg(out)
        .env("ESIG_ID_TOKEN", env.id_token("mari"))
        .args(files);
    ok(&mut cmd)
}

#[test]
fn esig_sign_verify_and_lt_against_esigd() {
    let env = OneTimeEnv::start();
    let pdf = env.path("contract.pdf");
    std::fs::write(&pdf, simple_pdf(&["Contract 7"])).unwrap();
    let note = env.path("annex note.txt");
    std::fs::write(&note, b"Annex: the parcel map.").unwrap();
    let ca = env.path("data/pki/ca.pem");

    // PAdES: the signed PDF, valid for esig verify, pyHanko, pdfsig and qpdf.
    let signed = env.path("contract-signed.pdf");
    sign(&env, "PAdES", &[&pdf], &signed);
    let report = ok(esig().arg("verify").arg(&signed).arg("--pdf"));
    assert!(report.contains("not a qualified validation"), "{report}");
    pyhanko_validate_pdf(&signed, &ca).accepted("esig sign PAdES (pyHanko)");
    pdfsig(&signed).accepted("esig sign PAdES (pdfsig)");
    qpdf_check(&signed).accepted("esig sign PAdES (qpdf)");

    // The other formats: each result passes esig verify against the files.
    for (format, out) in [
        ("CAdES", "contract.p7s"),
        ("XAdES", "signature.xml"),
        ("JWS", "signature.json"),
    ] {
        let out = env.path(out);
        let files: Vec<&Path> = if format == "CAdES" {
            vec![&pdf]
        } else {
            vec![&pdf, &note]
        };
        sign(&env, format, &files, &out);
        let mut v = esig();
        v.arg("verify").arg(&out).arg("--data").args(&files);
        let report = ok(&mut v);
        assert!(
            report.contains("[PASS]") && !report.contains("[FAIL]"),
            "{format}: {report}"
        );
    }
    let asice = env.path("signed.asice");
    sign(&env, "ASIC", &[&pdf, &note], &asice);
    let report = ok(esig().arg("verify").arg(&asice));
    assert!(!report.contains("[FAIL]"), "{report}");

    // B-LT and B-LTA from esigd's public listener (CA chain, CRL, OCSP, document time-stamp).
    let lt = env.path("contract-lt.pdf");
    let public = format!("http://{}", env.daemon.public);
    ok(esig()
        .args(["pdf", "lt"])
        .arg(&signed)
        .arg("--server")
        .arg(&public)
        .arg("--out")
        .arg(&lt));
    let lta = env.path("contract-lta.pdf");
    ok(esig()
        .args(["pdf", "lt"])
        .arg(&lt)
        .arg("--server")
        .arg(&public)
        .arg("--lta")
        .arg("--out")
        .arg(&lta));
    for f in [&lt, &lta] {
        pyhanko_validate_pdf(f, &ca).accepted("esig pdf lt (pyHanko)");
        qpdf_check(f).accepted("esig pdf lt (qpdf)");
        let report = ok(esig().arg("verify").arg(f).arg("--pdf"));
        assert!(!report.contains("[FAIL]"), "{report}");
    }
    // Long-term validation with only what the file carries (nothing fetched): the CA's CRL and
    // OCSP answers from esigd cover the CA path and the TSA; the one-time signer has noRevAvail.
    for f in [&signed, &lt, &lta] {
        let (first, text) = pyhanko_ltv(f, &ca, "none");
        if f == &signed {
            // B-T alone: no revocation data for the CA path and the TSA in the file.
            assert!(
                !first.contains("lt=PASSED"),
                "B-T passed LT validation:\n{text}"
            );
        } else {
            assert!(first.contains("lt=PASSED/OK"), "{}:\n{text}", f.display());
        }
        // Only B-LTA has a document time-stamp (pyHanko's oldest evidence record).
        assert_eq!(
            !first.contains("doc_ts=None"),
            f == &lta,
            "{}:\n{text}",
            f.display()
        );
    }
    let original = std::fs::read(&signed).unwrap();
    let grown = std::fs::read(&lta).unwrap();
    assert!(
        grown.starts_with(&original),
        "B-LTA is an incremental update"
    );
    assert!(grown.windows(4).any(|w| w == b"/DSS"), "no /DSS");
    assert!(
        grown.windows(13).any(|w| w == b"/ETSI.RFC3161"),
        "no document time-stamp"
    );
}
