//! PAdES end to end, checked by validators that are not ours: `esig::pdf::prepare` → esigd's
//! PAdES CMS (`esigd_formats`, signer key in software) → an RFC 3161 token from `openssl ts` →
//! `esig::pdf::embed`, then pyHanko, poppler's `pdfsig` and `qpdf --check`.
//!
//! The test PKI (P-256 root, P-256 signer, TSA with critical EKU timeStamping) is made with the
//! openssl CLI in a temporary directory. Input PDFs: a generated one with a classic
//! cross-reference table, and the same file rewritten by `qpdf --object-streams=generate`
//! (object streams and a cross-reference stream).
//!
//! A missing tool fails the test with the install hint; nothing is skipped.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::pdfgen::{assemble_pdf, sample_pdf};
use common::{HINT, Pki, pyhanko, run, text, tool};
use esig::pdf::{self, PrepareOptions};
use esigd_formats::DigestAlgorithm;

fn options(reason: &str) -> PrepareOptions {
    PrepareOptions {
        reason: Some(reason.into()),
        location: Some("Tallinn".into()),
        ..PrepareOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Input PDFs

/// A two-page PDF with text, a classic cross-reference table and a trailer `/ID`.
fn classic_pdf() -> Vec<u8> {
    sample_pdf(&["Hello PAdES", "Page two"], 0)
}

/// [`classic_pdf`] with object streams and a cross-reference stream (qpdf).
fn xref_stream_pdf(dir: &Path) -> Vec<u8> {
    let (i, o) = (dir.join("classic-in.pdf"), dir.join("xrefstream-in.pdf"));
    std::fs::write(&i, classic_pdf()).unwrap();
    run(Command::new(tool("qpdf"))
        .arg("--object-streams=generate")
        .arg(&i)
        .arg(&o));
    let bytes = std::fs::read(&o).unwrap();
    let t = String::from_utf8_lossy(&bytes);
    assert!(
        t.contains("/Type /XRef") && t.contains("/Type /ObjStm") && !t.contains("\ntrailer"),
        "qpdf did not write a cross-reference stream file"
    );
    bytes
}

// ---------------------------------------------------------------------------------------------
// Validators

/// `pdfsig FILE`: the output (it exits 0 for valid signatures from an untrusted issuer too).
fn pdfsig(file: &Path) -> String {
    let o = Command::new(tool("pdfsig"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("pdfsig: {e} ({HINT})"));
    text(&o)
}

/// `pyhanko sign validate --pretty-print --trust ca.pem --trust-replace --no-revocation-check`
/// (every signature of the file): (exit success, output).
fn pyhanko_validate(pki: &Pki, file: &Path) -> (bool, String) {
    let o = Command::new(pyhanko())
        .args(["sign", "validate", "--pretty-print", "--trust"])
        .arg(pki.path("ca.pem"))
        .args(["--trust-replace", "--no-revocation-check"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("pyhanko: {e} ({HINT})"));
    (o.status.success(), text(&o))
}

/// `qpdf --check FILE` succeeds without warnings.
fn assert_qpdf_clean(file: &Path) {
    let o = Command::new(tool("qpdf"))
        .arg("--check")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("qpdf: {e} ({HINT})"));
    let out = text(&o);
    assert!(
        o.status.success() && out.contains("No syntax or stream encoding errors found"),
        "qpdf --check {}: {out}",
        file.display()
    );
    assert!(
        !out.contains("WARNING"),
        "qpdf --check {}: {out}",
        file.display()
    );
}

/// pyHanko says each of the signatures in `fields` is valid, intact, trusted and time-stamped,
/// and that there are no others.
fn assert_pyhanko_valid(pki: &Pki, file: &Path, fields: &[&str]) -> String {
    let (ok, out) = pyhanko_validate(pki, file);
    assert!(ok, "pyhanko validate {}: {out}", file.display());
    for field in fields {
        assert!(out.contains(field), "pyhanko does not show {field}:\n{out}");
    }
    for needle in [
        "The signature is cryptographically sound.",
        "The signer's certificate is trusted.",
        "The signature is judged VALID.",
        "The timestamp token is cryptographically sound.",
        "The TSA certificate is trusted.",
    ] {
        assert_eq!(
            out.matches(needle).count(),
            fields.len(),
            "pyhanko and {needle:?}:\n{out}"
        );
    }
    // The last signature covers the whole file; earlier ones a prefix of it.
    assert_eq!(
        out.matches("The signature covers the entire file.").count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("esig Test TSA"),
        "pyhanko does not name the TSA:\n{out}"
    );
    out
}

/// pyHanko's AdES validation (EN 319 102-1, `tests/pyhanko_ades.py`): each signature in
/// `fields` passes basic validation and validation with time (B-T: the signature time-stamp
/// gives the best signature time).
fn assert_pyhanko_ades(pki: &Pki, file: &Path, fields: &[&str]) -> String {
    let out = pyhanko_ades(pki, file);
    for field in fields {
        let want = format!("{field}: basic=PASSED/OK with_time=PASSED/OK ");
        assert!(out.contains(&want), "pyhanko AdES, {want:?}:\n{out}");
    }
    assert_eq!(out.lines().count(), fields.len(), "{out}");
    out
}

/// The output of `tests/pyhanko_ades.py` (one line per signature).
fn pyhanko_ades(pki: &Pki, file: &Path) -> String {
    let python = pyhanko().with_file_name("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyhanko_ades.py");
    let o = run(Command::new(&python)
        .arg(script)
        .arg(pki.path("ca.pem"))
        .arg(file));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// pdfsig says every one of `n` signatures is valid.
fn assert_pdfsig_valid(file: &Path, n: usize) -> String {
    let out = pdfsig(file);
    assert_eq!(
        out.matches("Signature Validation: Signature is Valid.")
            .count(),
        n,
        "pdfsig {}:\n{out}",
        file.display()
    );
    assert!(out.contains(&format!("Signature #{n}:")), "{out}");
    assert!(!out.contains(&format!("Signature #{}:", n + 1)), "{out}");
    out
}

fn check_signed(pki: &Pki, signed: &[u8], name: &str, field: &str) -> PathBuf {
    let path = pki.path(name);
    std::fs::write(&path, signed).unwrap();
    let pdfsig_out = assert_pdfsig_valid(&path, 1);
    assert!(
        pdfsig_out.contains("ETSI.CAdES.detached") || pdfsig_out.contains("PAdES"),
        "{pdfsig_out}"
    );
    assert_qpdf_clean(&path);
    let out = assert_pyhanko_valid(pki, &path, &[field]);
    // pyHanko reads the claimed time from /M (the CMS has no signing-time).
    let m = pdf_m(signed);
    let iso = format!(
        "Signing time as reported by signer: {}-{}-{}T{}:{}:{}+00:00",
        &m[2..6],
        &m[6..8],
        &m[8..10],
        &m[10..12],
        &m[12..14],
        &m[14..16]
    );
    assert!(out.contains(&iso), "{iso:?}:\n{out}");
    let ades = assert_pyhanko_ades(pki, &path, &[field]);
    eprintln!(
        "pdfsig {}:\n{pdfsig_out}\npyhanko AdES: {ades}",
        path.display()
    );
    path
}

/// The last `/M` value of the file (`D:YYYYMMDDHHmmSSZ`).
fn pdf_m(pdf: &[u8]) -> String {
    let t = String::from_utf8_lossy(pdf);
    let i = t.rfind("/M(D:").expect("an /M entry");
    t[i + 3..i + 3 + 17].to_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn classic_xref_pdf_signs_b_t() {
    let pki = Pki::new();
    let original = classic_pdf();
    let (prepared, signed) = pki.sign_pdf(&original, &options("classic"));
    let update = shown(&prepared.bytes[original.len()..]);
    assert!(
        update.contains("\nxref\n") && update.contains("trailer"),
        "{update}"
    );
    assert!(
        update.contains(&format!("/Prev {}", find_startxref(&original))),
        "{update}"
    );
    check_signed(&pki, &signed, "classic-signed.pdf", "Signature1");
}

/// `bytes` as text, with the `/Contents` placeholder shortened.
fn shown(bytes: &[u8]) -> String {
    let mut t = String::from_utf8_lossy(bytes).into_owned();
    while let Some(i) = t.find(&"0".repeat(64)) {
        let end = t[i..].find(|c| c != '0').map_or(t.len(), |e| i + e);
        t.replace_range(i..end, "0…0");
    }
    t
}

fn find_startxref(pdf: &[u8]) -> String {
    let t = String::from_utf8_lossy(pdf);
    let i = t.rfind("startxref").unwrap();
    t[i + 9..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn xref_stream_pdf_signs_b_t() {
    let pki = Pki::new();
    let original = xref_stream_pdf(pki.dir.path());
    let (prepared, signed) = pki.sign_pdf(&original, &options("xref stream"));
    let update = shown(&prepared.bytes[original.len()..]);
    assert!(
        update.contains("/Type/XRef")
            && !update.contains("\ntrailer")
            && !update.contains("/DecodeParms")
            && !update.contains("/XRefStm"),
        "the update is not a cross-reference stream section:\n{update}"
    );
    check_signed(&pki, &signed, "xrefstream-signed.pdf", "Signature1");
}

#[test]
fn second_signature_keeps_the_first_valid() {
    let pki = Pki::new();
    for (kind, original) in [
        ("classic", classic_pdf()),
        ("xrefstream", xref_stream_pdf(pki.dir.path())),
    ] {
        let (_, first) = pki.sign_pdf(&original, &options("first"));
        let (second_prepared, second) = pki.sign_pdf(&first, &options("second"));
        assert_eq!(second_prepared.field_name, "Signature2");
        let path = pki.path(&format!("{kind}-two.pdf"));
        std::fs::write(&path, &second).unwrap();
        let out = assert_pdfsig_valid(&path, 2);
        assert!(out.contains("Signature #2"), "{out}");
        assert_qpdf_clean(&path);
        let out = assert_pyhanko_valid(&pki, &path, &["Signature1", "Signature2"]);
        assert_eq!(
            out.matches("All modifications relate to signing and form filling operations")
                .count(),
            1,
            "{kind}: Signature1 must see only the second signature as a change:\n{out}"
        );
        eprintln!("{kind}: pyhanko on two signatures:\n{out}");
        let ades = assert_pyhanko_ades(&pki, &path, &["Signature1", "Signature2"]);
        eprintln!("{kind}: pyhanko AdES on two signatures:\n{ades}");
    }
}

/// Without the signature time-stamp (B-B) the validators still accept the signature, but
/// pyHanko's AdES validation with time does not pass: the B-T checks above depend on the token.
#[test]
fn b_b_without_timestamp_is_not_b_t() {
    let pki = Pki::new();
    let opts = options("b-b");
    let prepared = pdf::prepare(&classic_pdf(), &opts).unwrap();
    let cms = pki.sign_pades_level(&prepared.digest, opts.signing_time, false);
    let signed = pdf::embed(&prepared.bytes, &cms).unwrap();
    let path = pki.path("b-b.pdf");
    std::fs::write(&path, &signed).unwrap();
    assert_pdfsig_valid(&path, 1);
    let (ok, out) = pyhanko_validate(&pki, &path);
    assert!(
        ok && out.contains("The signature is judged VALID."),
        "{out}"
    );
    assert!(!out.contains("timestamp token"), "{out}");
    let ades = pyhanko_ades(&pki, &path);
    eprintln!("pyhanko AdES on B-B: {ades}");
    assert!(ades.contains("Signature1: basic=PASSED/OK "), "{ades}");
    assert!(!ades.contains("with_time=PASSED"), "{ades}");
}

#[test]
fn one_changed_byte_is_a_digest_mismatch() {
    let pki = Pki::new();
    let original = classic_pdf();
    let (prepared, signed) = pki.sign_pdf(&original, &options("tamper"));
    // "Hello PAdES" → "Jello PAdES": inside the first ByteRange part, parseable still.
    let at = signed.windows(5).position(|w| w == b"Hello").unwrap();
    assert!(at < prepared.byte_range[1]);
    let mut tampered = signed.clone();
    tampered[at] = b'J';
    let path = pki.path("tampered.pdf");
    std::fs::write(&path, &tampered).unwrap();
    let out = pdfsig(&path);
    eprintln!("pdfsig on the changed file:\n{out}");
    assert!(out.contains("Digest Mismatch"), "pdfsig:\n{out}");
    assert!(!out.contains("Signature is Valid"), "pdfsig:\n{out}");
    let (ok, out) = pyhanko_validate(&pki, &path);
    eprintln!("pyhanko on the changed file:\n{out}");
    assert!(!ok, "pyhanko accepted a changed file:\n{out}");
    assert!(
        out.contains("The signature is cryptographically unsound.")
            && out.contains("The signature is judged INVALID.")
            && !out.contains("judged VALID"),
        "pyhanko:\n{out}"
    );
    let ades = pyhanko_ades(&pki, &path);
    eprintln!("pyhanko AdES on the changed file: {ades}");
    assert!(
        ades.contains("Signature1: basic=FAILED/HASH_FAILURE"),
        "{ades}"
    );
    // And the untouched file still passes, so the failure is the changed byte.
    let good = pki.path("untampered.pdf");
    std::fs::write(&good, &signed).unwrap();
    assert_pdfsig_valid(&good, 1);
}

#[test]
fn cms_bigger_than_the_reserve_is_refused() {
    let pki = Pki::new();
    let opts = PrepareOptions {
        reserve: pdf::MIN_RESERVE,
        ..options("small")
    };
    let prepared = pdf::prepare(&classic_pdf(), &opts).unwrap();
    let cms = pki.sign_pades(&prepared.digest, opts.signing_time);
    assert!(
        cms.len() > pdf::MIN_RESERVE,
        "B-T CMS is {} bytes",
        cms.len()
    );
    let err = pdf::embed(&prepared.bytes, &cms).unwrap_err();
    assert!(
        matches!(err, esig::Error::CmsTooBig { cms: c, reserve } if c == cms.len() && reserve == pdf::MIN_RESERVE),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("--reserve") && msg.contains(&cms.len().to_string()),
        "{msg}"
    );
    // A CMS for another prepared file is refused too.
    let other = pdf::prepare(&classic_pdf(), &options("other")).unwrap();
    let err = pdf::embed(&other.bytes, &cms).unwrap_err();
    assert!(matches!(err, esig::Error::WrongDigest), "{err}");
}

#[test]
fn encrypted_pdf_is_refused() {
    let pki = Pki::new();
    let (i, o) = (pki.path("plain.pdf"), pki.path("encrypted.pdf"));
    std::fs::write(&i, classic_pdf()).unwrap();
    run(Command::new(tool("qpdf"))
        .args(["--encrypt", "", "owner", "256", "--"])
        .arg(&i)
        .arg(&o));
    let err = pdf::prepare(&std::fs::read(&o).unwrap(), &options("enc")).unwrap_err();
    assert!(matches!(err, esig::Error::Encrypted), "{err}");
    assert!(err.to_string().contains("encrypted"), "{err}");
}

/// A PDF with a form: the `/AcroForm` is a direct dictionary in the catalog with a filled text
/// field, and the page's `/Annots` is an indirect array. The update must extend both in place.
#[test]
fn existing_form_is_extended() {
    let pki = Pki::new();
    let stream = "BT /F1 18 Tf 20 100 Td (Form) Tj ET";
    let original = assemble_pdf(&[
        "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [6 0 R] /DA (/Helv 0 Tf 0 g) \
         /DR << /Font << /Helv 3 0 R >> >> >> >>"
            .to_owned(),
        "<< /Type /Pages /Kids [4 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R \
         /Resources << /Font << /F1 3 0 R >> >> /Annots 7 0 R >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ),
        "<< /Type /Annot /Subtype /Widget /FT /Tx /T (Name) /V (Jane Doe) /Rect [20 20 200 40] \
         /P 4 0 R /F 4 /DA (/Helv 12 Tf 0 g) >>"
            .to_owned(),
        "[6 0 R]".to_owned(),
    ]);
    let (prepared, signed) = pki.sign_pdf(&original, &options("form"));
    let update = shown(&prepared.bytes[original.len()..]);
    // The catalog (direct /AcroForm) and the /Annots array object are rewritten in the update,
    // the page is not.
    assert!(
        update.starts_with("1 0 obj") || update.contains("\n1 0 obj"),
        "{update}"
    );
    assert!(update.contains("\n7 0 obj"), "{update}");
    assert!(!update.contains("\n4 0 obj"), "{update}");
    assert!(update.contains("/Fields[6 0 R "), "{update}");
    let path = check_signed(&pki, &signed, "form-signed.pdf", "Signature1");
    // qpdf still sees both fields.
    let o = run(Command::new(tool("qpdf"))
        .arg("--json")
        .arg("--json-key=acroform")
        .arg(&path));
    let json = String::from_utf8_lossy(&o.stdout);
    assert!(
        json.contains("\"fullname\": \"Name\"") && json.contains("\"fullname\": \"Signature1\""),
        "{json}"
    );
}

/// A linearized PDF (qpdf --linearize): the update chains to the first-page cross-reference
/// section that `startxref` names.
#[test]
fn linearized_pdf_signs_b_t() {
    let pki = Pki::new();
    let (i, o) = (pki.path("lin-in.pdf"), pki.path("lin.pdf"));
    std::fs::write(&i, classic_pdf()).unwrap();
    run(Command::new(tool("qpdf"))
        .arg("--linearize")
        .arg(&i)
        .arg(&o));
    let original = std::fs::read(&o).unwrap();
    assert!(String::from_utf8_lossy(&original[..1024.min(original.len())]).contains("/Linearized"));
    let (_, signed) = pki.sign_pdf(&original, &options("linearized"));
    check_signed(&pki, &signed, "lin-signed.pdf", "Signature1");
}

/// The command line: digest, prepare (stdout and `.digest` file), embed of a base64 `.p7s`.
#[test]
fn cli_prepare_and_embed() {
    let pki = Pki::new();
    let esig = env!("CARGO_BIN_EXE_esig");
    let input = pki.path("cli.pdf");
    std::fs::write(&input, xref_stream_pdf(pki.dir.path())).unwrap();

    let out = run(Command::new(esig)
        .args(["digest", "--hash", "SHA2-256"])
        .arg(&input));
    let line = String::from_utf8(out.stdout).unwrap();
    let want = DigestAlgorithm::Sha256.digest(&std::fs::read(&input).unwrap());
    assert!(line.contains(&hex::encode(&want)), "{line}");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert!(line.contains(&b64.encode(&want)), "{line}");

    let prepared_path = pki.path("cli-prepared.pdf");
    let out = run(Command::new(esig)
        .args(["pdf", "prepare"])
        .arg(&input)
        .arg("--out")
        .arg(&prepared_path)
        .args(["--reason", "CLI test", "--field", "Approval"]));
    let printed = String::from_utf8(out.stdout).unwrap();
    let digest_file = std::fs::read_to_string(pki.path("cli-prepared.pdf.digest")).unwrap();
    assert_eq!(printed.trim(), digest_file.trim());
    let digest = b64.decode(printed.trim()).unwrap();
    assert_eq!(digest.len(), 32);
    let prepared = std::fs::read(&prepared_path).unwrap();
    assert!(prepared.starts_with(&std::fs::read(&input).unwrap()));

    // The input is never the output.
    let o = Command::new(esig)
        .args(["pdf", "prepare"])
        .arg(&input)
        .arg("--out")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("never overwritten"),
        "{}",
        text(&o)
    );

    let cms = pki.sign_pades(&digest, SystemTime::now());
    let p7s = pki.path("cli.p7s");
    std::fs::write(&p7s, b64.encode(&cms)).unwrap();
    let signed_path = pki.path("cli-signed.pdf");
    run(Command::new(esig)
        .args(["pdf", "embed"])
        .arg(&prepared_path)
        .arg(&p7s)
        .arg("--out")
        .arg(&signed_path));
    assert_pdfsig_valid(&signed_path, 1);
    assert_pyhanko_valid(&pki, &signed_path, &["Approval"]);

    // DER works too, and a second embed into a signed file is refused.
    std::fs::write(&p7s, &cms).unwrap();
    let o = Command::new(esig)
        .args(["pdf", "embed"])
        .arg(&signed_path)
        .arg(&p7s)
        .arg("--out")
        .arg(pki.path("cli-again.pdf"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("already signed"),
        "{}",
        text(&o)
    );
}

/// A 300-page, 30 MB PDF signs like a small one (its prepare and embed times are measured by
/// `cargo bench -p esig --bench pdf`, not here).
#[test]
fn a_30_mb_300_page_pdf_signs() {
    let pki = Pki::new();
    let texts: Vec<String> = (1..=300).map(|i| format!("Page {i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let original = sample_pdf(&texts, 100_000);
    assert!(original.len() > 30_000_000, "{} bytes", original.len());
    let prepared = pdf::prepare(&original, &options("big")).unwrap();
    assert!(prepared.bytes.starts_with(&original));
    let cms = pki.sign_pades(&prepared.digest, SystemTime::now());
    let signed = pdf::embed(&prepared.bytes, &cms).unwrap();
    let path = pki.path("big-signed.pdf");
    std::fs::write(&path, &signed).unwrap();
    assert_pdfsig_valid(&path, 1);
    assert_qpdf_clean(&path);
}
