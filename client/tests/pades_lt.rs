//! PAdES B-LT and B-LTA, checked by validators that are not ours.
//!
//! A B-T file is made as in pades.rs (esigd's PAdES CMS with a software key, signature
//! time-stamp from `openssl ts`), but the PKI is an `openssl ca` with an index, so that
//! `openssl ca -gencrl` makes the CA's CRL and `openssl ocsp -index … -rsigner …` answers OCSP
//! requests with a delegated responder (as esigd does). Then:
//!
//! - B-LT: `esig::pdf_lt::add_dss` with the certificates, the CRL and OCSP responses;
//! - B-LTA: plus a document time-stamp (`add_document_timestamp` → `openssl ts -reply` →
//!   `embed_document_timestamp`).
//!
//! Validators: pyHanko's EN 319 102-1 long-term validation (`tests/pyhanko_lt.py`, revocation
//! data from the file only, nothing fetched), `pyhanko sign adesverify`, poppler's `pdfsig` on
//! every signature and `qpdf --check`. A B-LT file without the CRL and OCSP responses must fail
//! the long-term validation, so the DSS content is what makes the others pass.
//!
//! The fetcher's collection logic (`esig::lt_fetch`) is checked against the same openssl CA,
//! and the `esig pdf lt --server` command against a small HTTP stand-in of esigd's public
//! endpoints whose answers come from openssl.
//!
//! `ESIG_KEEP=DIR` keeps a copy of the PDFs the tests validate (and `ca.pem`) in DIR.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Pki, TestCa, pyhanko, run, simple_pdf, text, tool, venv_python};
use esig::lt_fetch::{self, FetchError};
use esig::pdf::PrepareOptions;
use esig::pdf_lt::{self, ValidationData};

/// The signer: an ordinary certificate (covered by CRL/OCSP) or a one-time certificate with
/// `noRevAvail`, as esigd issues them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Signer {
    Ordinary,
    OneTime,
}

impl Signer {
    /// The revocation rule for the signer in tests/pyhanko_lt.py.
    fn rule(self) -> &'static str {
        match self {
            Signer::Ordinary => "required",
            Signer::OneTime => "none",
        }
    }
}

/// An openssl CA with a signer of `kind`, and a B-T file signed by it.
struct Setup {
    pki: Pki,
    ca: TestCa,
    b_t: Vec<u8>,
}

impl Setup {
    fn new(kind: Signer) -> Setup {
        let ca = TestCa::new();
        let ext = match kind {
            Signer::Ordinary => "signer_ext",
            Signer::OneTime => "onetime_ext",
        };
        ca.issue("signer", "esig LT Test Signer", ext);
        // The Pki signs with the CA's signer and time-stamps with its TSA; it owns a copy of
        // the directory's files it needs.
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "signer.pem", "signer.key", "tsa.pem", "tsa.key"] {
            std::fs::copy(ca.path(f), dir.path().join(f)).unwrap();
        }
        std::fs::write(dir.path().join("tsaserial"), "1000\n").unwrap();
        let cnf = std::fs::read_to_string(ca.path("tsa.cnf"))
            .unwrap()
            .replace(
                &ca.dir.path().display().to_string(),
                &dir.path().display().to_string(),
            );
        std::fs::write(dir.path().join("tsa.cnf"), cnf).unwrap();
        let pki = Pki::with_signer(dir, "signer");
        let options = PrepareOptions {
            reason: Some("B-LT test".into()),
            ..PrepareOptions::default()
        };
        let (_, b_t) = pki.sign_pdf(&simple_pdf("Hello B-LT"), &options);
        Setup { pki, ca, b_t }
    }

    /// Everything a validator needs later: all certificates, the CRL, and OCSP responses for
    /// the TSA (and the signer when it is ordinary).
    fn validation_data(&self, kind: Signer) -> ValidationData {
        let mut ocsps = vec![self.ca.ocsp_for("tsa")];
        if kind == Signer::Ordinary {
            ocsps.push(self.ca.ocsp_for("signer"));
        }
        ValidationData {
            certs: ["ca", "signer", "tsa", "ocsp"]
                .iter()
                .map(|n| self.ca.cert_der(n))
                .collect(),
            crls: vec![self.ca.crl()],
            ocsps,
        }
    }

    /// B-LTA from B-LT: a document time-stamp from the openssl TSA.
    fn add_lta(&self, lt: &[u8]) -> Vec<u8> {
        let prepared =
            pdf_lt::add_document_timestamp(lt, pdf_lt::DEFAULT_TIMESTAMP_RESERVE).unwrap();
        assert!(prepared.bytes.starts_with(lt));
        let token = self.ca.timestamp_token(&prepared.digest);
        pdf_lt::embed_document_timestamp(&prepared.bytes, &token).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.ca.path(name);
        std::fs::write(&p, bytes).unwrap();
        if let Some(keep) = std::env::var_os("ESIG_KEEP") {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::write(Path::new(&keep).join(name), bytes).unwrap();
            std::fs::copy(self.ca.path("ca.pem"), Path::new(&keep).join("ca.pem")).unwrap();
        }
        p
    }
}

// ---------------------------------------------------------------------------------------------
// Validators

/// tests/pyhanko_lt.py: pyHanko's long-term validation of every signature (one line each).
fn pyhanko_lt(ca: &Path, file: &Path, kind: Signer) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyhanko_lt.py");
    let o = run(Command::new(venv_python())
        .arg(script)
        .arg(ca)
        .arg(file)
        .arg(kind.rule()));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What pyHanko's long-term-availability validation (EN 319 102-1 §5.6.3,
/// `ades_lta_validation`) is expected to say.
#[derive(Clone, Copy, Debug)]
enum Lta {
    /// B-LT: no document time-stamp, so no evidence record; pyHanko's past-signature
    /// validation then has no proof of existence: INDETERMINATE/NO_POE.
    NoEvidence,
    /// B-LTA of an ordinary signature: PASSED/OK with the document time-stamp as evidence.
    Passed,
    /// B-LTA of a one-time (noRevAvail) signature: the document time-stamp chain validates
    /// (it is the oldest evidence record), but pyHanko's past-signature validation
    /// (`time_slide`) wants revocation data for every certificate that is not
    /// `ocsp-nocheck`, whatever the policy says, and ends in INDETERMINATE/NO_POE.
    EvidenceOnly,
}

/// pyHanko's validation with long-term validation material (EN 319 102-1 §5.5, the DSS as
/// the only revocation source) passes for `field`, with the signature time-stamp valid, and
/// the long-term-availability validation says what `lta` expects.
fn assert_lt_passed(out: &str, field: &str, lta: Lta) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"));
    assert!(
        line.contains(" lt=PASSED/OK ") && line.contains("sig_ts=PASSED/OK"),
        "{out}"
    );
    let (verdict, evidence) = match lta {
        Lta::NoEvidence => (" lta=INDETERMINATE/NO_POE ", false),
        Lta::Passed => (" lta=PASSED/OK ", true),
        Lta::EvidenceOnly => (" lta=INDETERMINATE/NO_POE ", true),
    };
    assert!(line.contains(verdict), "{lta:?}:\n{out}");
    assert_eq!(!line.contains("doc_ts=None"), evidence, "{lta:?}:\n{out}");
}

/// pyHanko's long-term validations both fail for `field`.
fn assert_lt_failed(out: &str, field: &str) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"));
    assert!(
        !line.contains("lt=PASSED") && !line.contains("lta=PASSED"),
        "{out}"
    );
}

/// `pyhanko sign adesverify` (AdES long-term validation, revocation data required for every
/// certificate): (success, output).
fn pyhanko_adesverify(ca: &Path, file: &Path) -> (bool, String) {
    let o = Command::new(pyhanko())
        .args(["sign", "adesverify", "--pretty-print", "--trust"])
        .arg(ca)
        .arg("--trust-replace")
        .arg(file)
        .output()
        .unwrap();
    (o.status.success(), text(&o))
}

/// `pyhanko sign validate` without revocation checks: every signature intact and trusted.
fn assert_pyhanko_valid(ca: &Path, file: &Path) -> String {
    let o = Command::new(pyhanko())
        .args(["sign", "validate", "--pretty-print", "--trust"])
        .arg(ca)
        .args(["--trust-replace", "--no-revocation-check"])
        .arg(file)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("The signature is judged VALID."), "{out}");
    assert!(!out.contains("INVALID"), "{out}");
    out
}

/// pdfsig lists the signature and `signatures - 1` document time-stamps; the signature
/// verifies. (poppler 22.12 does not verify `ETSI.RFC3161` document time-stamps: "Signature
/// Type: unknown … Unable to validate this type of signature"; [`assert_doc_timestamps`]
/// checks them with `openssl ts -verify`.)
fn assert_pdfsig(file: &Path, signatures: usize) -> String {
    let o = Command::new(tool("pdfsig")).arg(file).output().unwrap();
    let out = text(&o);
    assert!(out.contains(&format!("Signature #{signatures}:")), "{out}");
    assert!(
        !out.contains(&format!("Signature #{}:", signatures + 1)),
        "{out}"
    );
    assert_eq!(
        out.matches("Signature Validation: Signature is Valid.")
            .count(),
        1,
        "{out}"
    );
    assert!(
        !out.contains("Digest Mismatch") && !out.contains("Invalid"),
        "{out}"
    );
    for i in 2..=signatures {
        assert!(out.contains(&format!("DocTimeStamp{}", i - 1)), "{out}");
    }
    out
}

/// Every document time-stamp of `pdf` verifies with `openssl ts -verify` (token signature, TSA
/// chain to `ca`, and the imprint = SHA-256 of its `/ByteRange`, computed here); the last one
/// covers the whole file. Returns the number checked.
fn assert_doc_timestamps(dir: &Path, ca: &Path, pdf: &[u8]) -> usize {
    use sha2::{Digest, Sha256};
    let text_pdf = String::from_utf8_lossy(pdf).into_owned();
    let ranges: Vec<[usize; 4]> = text_pdf
        .match_indices("/ByteRange")
        .map(|(i, _)| {
            let rest = &text_pdf[i + 10..];
            let inner = &rest[rest.find('[').unwrap() + 1..rest.find(']').unwrap()];
            let v: Vec<usize> = inner
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    let sigs = pdf_lt::signatures(pdf).unwrap();
    let mut checked = 0;
    for (sig, range) in sigs.iter().zip(&ranges) {
        if sig.kind != "DocTimeStamp" {
            continue;
        }
        assert_eq!(sig.sub_filter, "ETSI.RFC3161");
        let [_, a, b, c] = *range;
        let mut h = Sha256::new();
        h.update(&pdf[..a]);
        h.update(&pdf[b..b + c]);
        let token = dir.join(format!("doc-ts-{checked}.tst"));
        std::fs::write(&token, &sig.contents).unwrap();
        let o = run(Command::new(tool("openssl"))
            .args(["ts", "-verify", "-token_in", "-in"])
            .arg(&token)
            .args(["-digest", &hex::encode(h.finalize()), "-CAfile"])
            .arg(ca));
        assert!(text(&o).contains("Verification: OK"), "{}", text(&o));
        checked += 1;
        if checked == sigs.len() - 1 {
            assert_eq!(b + c, pdf.len(), "the last time-stamp covers the file");
        }
    }
    checked
}

fn assert_qpdf_clean(file: &Path) {
    let o = Command::new(tool("qpdf"))
        .arg("--check")
        .arg(file)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(
        o.status.success()
            && out.contains("No syntax or stream encoding errors found")
            && !out.contains("WARNING"),
        "qpdf --check {}: {out}",
        file.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

/// One-time signer (noRevAvail): B-T fails pyHanko's long-term validation (no revocation data
/// for the TSA), B-LT passes it, B-LTA too, with the document time-stamp validated as the
/// evidence record (see [`Lta::EvidenceOnly`] for pyHanko's past-signature step); the
/// signature stays valid for pyHanko and pdfsig at every step.
#[test]
fn b_lt_and_b_lta_of_a_one_time_signature() {
    let kind = Signer::OneTime;
    let s = Setup::new(kind);
    let ca = s.ca.path("ca.pem");

    let b_t = s.write("b-t.pdf", &s.b_t);
    let out = pyhanko_lt(&ca, &b_t, kind);
    eprintln!("pyhanko LT on B-T:\n{out}");
    assert_lt_failed(&out, "Signature1");

    let lt = pdf_lt::add_dss(&s.b_t, &s.validation_data(kind)).unwrap();
    assert!(lt.starts_with(&s.b_t));
    let lt_path = s.write("b-lt.pdf", &lt);
    let out = pyhanko_lt(&ca, &lt_path, kind);
    eprintln!("pyhanko LT on B-LT:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::NoEvidence);
    let valid = assert_pyhanko_valid(&ca, &lt_path);
    assert!(
        valid.contains("The signature is cryptographically sound.")
            && !valid.contains("unexpected")
            && valid.contains("Signature1"),
        "{valid}"
    );
    assert!(
        valid.contains("All modifications relate to signature maintenance"),
        "pyHanko's difference analysis must see the DSS as signature maintenance:\n{valid}"
    );
    eprintln!("pyhanko validate on B-LT:\n{valid}");
    eprintln!("pdfsig on B-LT:\n{}", assert_pdfsig(&lt_path, 1));
    assert_qpdf_clean(&lt_path);

    let lta = s.add_lta(&lt);
    assert!(lta.starts_with(&lt));
    let lta_path = s.write("b-lta.pdf", &lta);
    let out = pyhanko_lt(&ca, &lta_path, kind);
    eprintln!("pyhanko LT on B-LTA:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::EvidenceOnly);
    assert_eq!(
        out.lines().filter(|l| l.contains(": lt=")).count(),
        1,
        "{out}"
    );
    let valid = assert_pyhanko_valid(&ca, &lta_path);
    eprintln!("pyhanko validate on B-LTA:\n{valid}");
    let pdfsig = assert_pdfsig(&lta_path, 2);
    eprintln!("pdfsig on B-LTA:\n{pdfsig}");
    assert_eq!(assert_doc_timestamps(s.ca.dir.path(), &ca, &lta), 1);
    assert_qpdf_clean(&lta_path);

    // The DSS as written, read back: 4 certificates, the CRL, the TSA's OCSP response.
    let dss = pdf_lt::read_dss(&lta).unwrap();
    assert_eq!(
        (dss.certs.len(), dss.crls.len(), dss.ocsps.len()),
        (4, 1, 1)
    );
}

/// An ordinary signer: its own OCSP response must be in the DSS too. With it, pyHanko's
/// long-term validation with revocation required for every certificate passes, and so does
/// `pyhanko sign adesverify`.
#[test]
fn b_lt_of_an_ordinary_signature_needs_the_signers_revocation_data() {
    let kind = Signer::Ordinary;
    let s = Setup::new(kind);
    let ca = s.ca.path("ca.pem");
    let full = s.validation_data(kind);

    let lt = pdf_lt::add_dss(&s.b_t, &full).unwrap();
    let lt_path = s.write("b-lt.pdf", &lt);
    let out = pyhanko_lt(&ca, &lt_path, kind);
    eprintln!("pyhanko LT on B-LT (ordinary signer):\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::NoEvidence);
    let (ok, ades) = pyhanko_adesverify(&ca, &lt_path);
    eprintln!("pyhanko sign adesverify on B-LT:\n{ades}");
    assert!(ok, "{ades}");

    let lta_path = s.write("b-lta.pdf", &s.add_lta(&lt));
    let out = pyhanko_lt(&ca, &lta_path, kind);
    eprintln!("pyhanko LT on B-LTA (ordinary signer):\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::Passed);
    let (ok, ades) = pyhanko_adesverify(&ca, &lta_path);
    eprintln!("pyhanko sign adesverify on B-LTA:\n{ades}");
    assert!(ok, "{ades}");
}

/// The DSS content is what makes the file B-LT: certificates only (no CRL, no OCSP) fail the
/// long-term validation, and so does a DSS that lacks the signer's OCSP response when the
/// signer is an ordinary certificate.
#[test]
fn b_lt_without_revocation_data_fails() {
    let kind = Signer::Ordinary;
    let s = Setup::new(kind);
    let ca = s.ca.path("ca.pem");
    let full = s.validation_data(kind);

    let certs_only = ValidationData {
        certs: full.certs.clone(),
        ..ValidationData::default()
    };
    let path = s.write(
        "certs-only.pdf",
        &pdf_lt::add_dss(&s.b_t, &certs_only).unwrap(),
    );
    let out = pyhanko_lt(&ca, &path, kind);
    eprintln!("pyhanko LT, DSS with certificates only:\n{out}");
    assert_lt_failed(&out, "Signature1");
    let (ok, ades) = pyhanko_adesverify(&ca, &path);
    eprintln!("pyhanko sign adesverify, certificates only:\n{ades}");
    assert!(!ok, "{ades}");
    // Still a valid signature: only the long-term part fails.
    assert_pyhanko_valid(&ca, &path);
    assert_pdfsig(&path, 1);

    // Without the signer's OCSP response, and the CRL (which covers it too).
    let no_signer = ValidationData {
        certs: full.certs.clone(),
        crls: vec![],
        ocsps: vec![s.ca.ocsp_for("tsa")],
    };
    let path = s.write(
        "no-signer-revinfo.pdf",
        &pdf_lt::add_dss(&s.b_t, &no_signer).unwrap(),
    );
    let out = pyhanko_lt(&ca, &path, kind);
    eprintln!("pyhanko LT, no revocation data for the signer:\n{out}");
    assert_lt_failed(&out, "Signature1");
    // … which the one-time rule (no revocation check for the signer) accepts: the signer's
    // data is the only thing missing.
    let out = pyhanko_lt(&ca, &path, Signer::OneTime);
    assert_lt_passed(&out, "Signature1", Lta::NoEvidence);
}

/// A second `--lta` round on a B-LTA file: the DSS gets the new revocation data, and a second
/// document time-stamp covers it; the first stays valid.
#[test]
fn a_second_archive_timestamp_renews_b_lta() {
    let kind = Signer::Ordinary;
    let s = Setup::new(kind);
    let ca = s.ca.path("ca.pem");
    let lt = pdf_lt::add_dss(&s.b_t, &s.validation_data(kind)).unwrap();
    let lta = s.add_lta(&lt);
    // Fresh OCSP and CRL (new bytes), same certificates (left out as duplicates).
    let lt2 = pdf_lt::add_dss(&lta, &s.validation_data(kind)).unwrap();
    assert!(lt2.starts_with(&lta) && lt2.len() > lta.len());
    let lta2 = s.add_lta(&lt2);
    let sigs = pdf_lt::signatures(&lta2).unwrap();
    let kinds: Vec<&str> = sigs.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["Sig", "DocTimeStamp", "DocTimeStamp"]);
    let dss = pdf_lt::read_dss(&lta2).unwrap();
    assert_eq!(dss.certs.len(), 4);
    assert_eq!(dss.crls.len(), 2);
    let path = s.write("b-lta2.pdf", &lta2);
    let out = pyhanko_lt(&ca, &path, kind);
    eprintln!("pyhanko LT on B-LTA with two document time-stamps:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::Passed);
    assert_pdfsig(&path, 3);
    assert_eq!(assert_doc_timestamps(s.ca.dir.path(), &ca, &lta2), 2);
    assert_qpdf_clean(&path);
    assert_pyhanko_valid(&ca, &path);
}

/// A PDF with object streams and a cross-reference stream (qpdf): the DSS and document
/// time-stamp updates are cross-reference stream sections, and the validators accept them.
#[test]
fn xref_stream_pdf_to_b_lta() {
    let kind = Signer::Ordinary;
    let s = Setup::new(kind);
    let ca = s.ca.path("ca.pem");
    let (i, o) = (s.ca.path("plain.pdf"), s.ca.path("xrefstream.pdf"));
    std::fs::write(&i, simple_pdf("Hello xref stream")).unwrap();
    run(Command::new(tool("qpdf"))
        .arg("--object-streams=generate")
        .arg(&i)
        .arg(&o));
    let (_, b_t) = s
        .pki
        .sign_pdf(&std::fs::read(&o).unwrap(), &PrepareOptions::default());
    let lt = pdf_lt::add_dss(&b_t, &s.validation_data(kind)).unwrap();
    let update = String::from_utf8_lossy(&lt[b_t.len()..]).into_owned();
    assert!(
        update.contains("/Type/XRef") && !update.contains("\ntrailer"),
        "the DSS update is not a cross-reference stream section"
    );
    let lta = s.add_lta(&lt);
    let path = s.write("xrefstream-b-lta.pdf", &lta);
    let out = pyhanko_lt(&ca, &path, kind);
    eprintln!("pyhanko LT on an xref-stream B-LTA:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::Passed);
    assert_pdfsig(&path, 2);
    assert_eq!(assert_doc_timestamps(s.ca.dir.path(), &ca, &lta), 1);
    assert_qpdf_clean(&path);
    assert_pyhanko_valid(&ca, &path);
}

/// The fetcher's collection logic against the openssl CA: certificates from the PDF, which
/// certificates need OCSP, requests that `openssl ocsp` answers, a revoked certificate
/// refused, and the time-stamp request/response of the TSA.
#[test]
fn fetcher_collects_and_checks() {
    for kind in [Signer::OneTime, Signer::Ordinary] {
        let s = Setup::new(kind);
        let from_pdf = lt_fetch::pdf_certificates(&s.b_t).unwrap();
        // The signer (CMS), the TSA and the CA (the token's certificates).
        for name in ["signer", "tsa", "ca"] {
            assert!(
                from_pdf.contains(&s.ca.cert_der(name)),
                "{kind:?}: {name} is not among the PDF's certificates"
            );
        }
        let mut all = from_pdf.clone();
        all.extend(
            lt_fetch::pem_certificates("chain", &std::fs::read(s.ca.path("ca.pem")).unwrap())
                .unwrap(),
        );
        let plan = lt_fetch::plan(all).unwrap();
        assert_eq!(plan.certs.len(), 3, "deduplicated");
        let subjects: Vec<&str> = plan.ocsp.iter().map(|t| t.subject.as_str()).collect();
        match kind {
            Signer::OneTime => {
                assert_eq!(subjects, ["O=esigd tests,CN=esig LT Test TSA"]);
                assert_eq!(plan.no_rev_avail, ["O=esigd tests,CN=esig LT Test Signer"]);
            }
            Signer::Ordinary => {
                assert_eq!(subjects.len(), 2, "{subjects:?}");
                assert!(plan.no_rev_avail.is_empty());
            }
        }
        assert!(plan.unknown_issuer.is_empty());
        for target in &plan.ocsp {
            let answer = s.ca.ocsp_answer(&target.request);
            let extra = lt_fetch::check_ocsp_response(target, &answer).unwrap();
            assert_eq!(
                extra,
                vec![s.ca.cert_der("ocsp")],
                "the responder's certificate"
            );
        }
        // A revoked TSA: refused.
        s.ca.revoke("tsa");
        let tsa = plan
            .ocsp
            .iter()
            .find(|t| t.subject.contains("TSA"))
            .unwrap();
        let err = lt_fetch::check_ocsp_response(tsa, &s.ca.ocsp_answer(&tsa.request)).unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::NotGood {
                    status: "revoked",
                    ..
                }
            ),
            "{err}"
        );
        // An answer for another certificate: refused.
        if let [a, b] = plan.ocsp.as_slice() {
            let err = lt_fetch::check_ocsp_response(a, &s.ca.ocsp_answer(&b.request)).unwrap_err();
            assert!(matches!(err, FetchError::Ocsp { .. }), "{err}");
        }
    }

    // Time-stamp: the request is one openssl answers; the token is checked for the imprint and
    // the nonce.
    let ca = TestCa::new();
    // A certificate of another CA: openssl's responder says `unknown` (fatal), esigd's says
    // `unauthorized` (OCSPResponse { responseStatus 6 }), which the fetcher reports apart.
    let other = TestCa::new();
    let plan = lt_fetch::plan(vec![other.cert_der("ca"), other.cert_der("tsa")]).unwrap();
    assert_eq!(plan.ocsp.len(), 1);
    let err = lt_fetch::check_ocsp_response(&plan.ocsp[0], &ca.ocsp_answer(&plan.ocsp[0].request))
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::NotGood {
                status: "unknown",
                ..
            }
        ),
        "{err}"
    );
    let err =
        lt_fetch::check_ocsp_response(&plan.ocsp[0], &[0x30, 0x03, 0x0a, 0x01, 0x06]).unwrap_err();
    assert!(matches!(err, FetchError::OcspUnauthorized { .. }), "{err}");
    let digest = [0x5a; 32];
    let query = lt_fetch::timestamp_request(&digest, 0x8000_0000_0000_0001).unwrap();
    let answer = ca.tsa_answer(&query);
    let token = lt_fetch::timestamp_token(&answer, &digest, 0x8000_0000_0000_0001).unwrap();
    assert_eq!(
        esigd_pki::tsp::token_tst_info(&token)
            .unwrap()
            .message_imprint
            .hashed_message
            .as_bytes(),
        digest
    );
    assert!(matches!(
        lt_fetch::timestamp_token(&answer, &[0; 32], 0x8000_0000_0000_0001),
        Err(FetchError::Timestamp(_))
    ));
    assert!(matches!(
        lt_fetch::timestamp_token(&answer, &digest, 7),
        Err(FetchError::Timestamp(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// `esig pdf lt --server` against a stand-in of esigd's public endpoints

/// Serves `/pki/chain.pem`, `/pki/tsa.pem`, `/pki/crl`, `POST /ocsp` and `POST /tsa` over plain
/// HTTP/1.1 on 127.0.0.1 with answers from the openssl CA, until the process ends. Returns the
/// base URL.
fn serve(ca: Arc<TestCa>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let ca = Arc::clone(&ca);
            std::thread::spawn(move || {
                let _ = answer(&ca, stream);
            });
        }
    });
    url
}

fn answer(ca: &TestCa, stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, content) = match (method.as_str(), path.as_str()) {
            ("GET", "/pki/chain.pem") => ("200 OK", std::fs::read(ca.path("ca.pem"))?),
            ("GET", "/pki/tsa.pem") => ("200 OK", std::fs::read(ca.path("tsa.pem"))?),
            ("GET", "/pki/crl") => ("200 OK", ca.crl()),
            ("POST", "/ocsp") => ("200 OK", ca.ocsp_answer(&body)),
            ("POST", "/tsa") => ("200 OK", ca.tsa_answer(&body)),
            _ => ("404 Not Found", b"not found".to_vec()),
        };
        let mut w = &stream;
        write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            content.len()
        )?;
        w.write_all(&content)?;
        w.flush()?;
    }
}

/// `esig pdf lt --server URL --out LT.pdf [--lta]` on an ordinary signature (the fetcher asks
/// OCSP for the signer and the TSA): B-LT, then B-LTA, then a second archive time-stamp; each
/// passes pyHanko's long-term validations.
#[test]
fn cli_pdf_lt_against_a_stand_in_server() {
    let kind = Signer::Ordinary;
    let s = Setup::new(kind);
    let ca_pem = s.ca.path("ca.pem");
    let b_t = s.write("cli-b-t.pdf", &s.b_t);
    let (pki_dir, b_t_bytes) = (s.pki.dir.path().to_path_buf(), s.b_t.clone());
    let ca = Arc::new(s.ca);
    let url = serve(Arc::clone(&ca));
    let esig = env!("CARGO_BIN_EXE_esig");

    let lt = pki_dir.join("cli-b-lt.pdf");
    let o = run(Command::new(esig)
        .args(["pdf", "lt"])
        .arg(&b_t)
        .args(["--server", &url, "--out"])
        .arg(&lt));
    eprintln!("esig pdf lt:\n{}", text(&o));
    let lt_bytes = std::fs::read(&lt).unwrap();
    assert!(lt_bytes.starts_with(&b_t_bytes));
    let out = pyhanko_lt(&ca_pem, &lt, kind);
    eprintln!("pyhanko LT on the CLI's B-LT:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::NoEvidence);
    assert!(pdf_lt::signatures(&lt_bytes).unwrap().len() == 1);

    let lta = pki_dir.join("cli-b-lta.pdf");
    let o = run(Command::new(esig)
        .args(["pdf", "lt", "--lta"])
        .arg(&b_t)
        .args(["--server", &url, "--out"])
        .arg(&lta));
    eprintln!("esig pdf lt --lta:\n{}", text(&o));
    let out = pyhanko_lt(&ca_pem, &lta, kind);
    eprintln!("pyhanko LT on the CLI's B-LTA:\n{out}");
    assert_lt_passed(&out, "Signature1", Lta::Passed);
    assert_pdfsig(&lta, 2);
    assert_qpdf_clean(&lta);

    let lta2 = pki_dir.join("cli-b-lta2.pdf");
    run(Command::new(esig)
        .args(["pdf", "lt", "--lta"])
        .arg(&lta)
        .args(["--server", &url, "--out"])
        .arg(&lta2));
    let out = pyhanko_lt(&ca_pem, &lta2, kind);
    assert_lt_passed(&out, "Signature1", Lta::Passed);
    assert_pdfsig(&lta2, 3);
    assert_eq!(
        assert_doc_timestamps(&pki_dir, &ca_pem, &std::fs::read(&lta2).unwrap()),
        2
    );
    assert_pyhanko_valid(&ca_pem, &lta2);

    // The input is never the output; an unreachable server is a clear error.
    let o = Command::new(esig)
        .args(["pdf", "lt"])
        .arg(&b_t)
        .args(["--server", &url, "--out"])
        .arg(&b_t)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("never overwritten"),
        "{}",
        text(&o)
    );
    let o = Command::new(esig)
        .args(["pdf", "lt"])
        .arg(&b_t)
        .args(["--server", "http://127.0.0.1:9", "--out"])
        .arg(pki_dir.join("x.pdf"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("127.0.0.1:9"),
        "{}",
        text(&o)
    );
}
