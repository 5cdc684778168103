//! `esig verify` on signatures made in-test the way esigd makes them (`esigd_formats` with a
//! software signer key, `openssl ts` time-stamps): it passes on good PAdES, CAdES, XAdES, JWS
//! and ASiC-E samples, and fails, naming the document digest, when one byte of a signed
//! document changes. The library's report is checked too.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use common::{Pki, text};
use esig::asice::{self, DataFile};
use esig::pdf::PrepareOptions;
use esig::verify::{self, DISCLAIMER, Status};
use esigd_formats::{DigestAlgorithm, Document, Format};

const DOC: &[u8] = b"The parties agree on everything.\n";

fn esig_verify(file: &Path, data: &[PathBuf], pdf: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esig"));
    cmd.arg("verify").arg(file);
    if !data.is_empty() {
        cmd.arg("--data").args(data);
    }
    if pdf {
        cmd.arg("--pdf");
    }
    cmd.output().unwrap()
}

/// `esig verify` passes on `file` with `data`, and fails naming the digest of `victim` once a
/// byte of `victim` (a data file, or `file` itself) changes at `at`.
fn good_then_changed(file: &Path, data: &[PathBuf], victim: &Path, at: usize, digest_of: &str) {
    let o = esig_verify(file, data, false);
    let out = text(&o);
    eprintln!("{out}");
    assert!(o.status.success(), "{out}");
    assert!(out.contains(DISCLAIMER), "{out}");
    assert!(out.contains("[PASS] ") && !out.contains("[FAIL]"), "{out}");
    assert!(out.contains("time-stamp imprint"), "{out}");

    let original = std::fs::read(victim).unwrap();
    let mut changed = original.clone();
    changed[at] ^= 0x01;
    std::fs::write(victim, &changed).unwrap();
    let o = esig_verify(file, data, false);
    let out = text(&o);
    eprintln!("after changing byte {at} of {}:\n{out}", victim.display());
    assert!(!o.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("[FAIL]") && l.contains(&format!("document digest of {digest_of}"))),
        "{out}"
    );
    assert!(out.contains(DISCLAIMER), "{out}");
    std::fs::write(victim, &original).unwrap();
}

fn doc(pki: &Pki, name: &str, bytes: &[u8]) -> (PathBuf, Document) {
    let p = pki.path(name);
    std::fs::write(&p, bytes).unwrap();
    (
        p,
        Document {
            name: name.into(),
            media_type: asice::media_type_of(name).into(),
            digest: DigestAlgorithm::Sha256.digest(bytes),
        },
    )
}

#[test]
fn cades() {
    let pki = Pki::new();
    let (path, d) = doc(&pki, "contract.txt", DOC);
    let p7s = pki.sign(Format::Cades, &[d], true);
    let sig = pki.path("contract.p7s");
    std::fs::write(&sig, &p7s).unwrap();
    good_then_changed(&sig, std::slice::from_ref(&path), &path, 4, "contract.txt");
    // Without the data file it cannot pass.
    let o = esig_verify(&sig, &[], false);
    assert!(!o.status.success(), "{}", text(&o));
    // Library report.
    let r = verify::verify(
        &p7s,
        &[DataFile {
            name: "contract.txt".into(),
            media_type: "text/plain".into(),
            bytes: DOC.to_vec(),
        }],
        false,
    );
    assert!(r.passed(), "{r}");
    assert_eq!(r.kind, "CAdES");
}

#[test]
fn xades() {
    let pki = Pki::new();
    let (a, da) = doc(&pki, "a.txt", DOC);
    let (b, db) = doc(&pki, "b c.pdf", b"%PDF-1.7 not really");
    let xml = pki.sign(Format::Xades, &[da, db], true);
    let sig = pki.path("signature.xml");
    std::fs::write(&sig, &xml).unwrap();
    good_then_changed(&sig, &[a.clone(), b.clone()], &b, 3, "b c.pdf");
    // A changed signed property (the claimed time) breaks the SignedProperties digest.
    let text_xml = String::from_utf8(xml.clone()).unwrap();
    let at = text_xml.find("<xades:SigningTime>").unwrap() + "<xades:SigningTime>".len() + 3;
    let mut changed = xml.clone();
    changed[at] = if changed[at] == b'1' { b'2' } else { b'1' };
    let data = [
        DataFile::from_path(&a).unwrap(),
        DataFile::from_path(&b).unwrap(),
    ];
    let r = verify::verify(&changed, &data, false);
    assert!(!r.passed(), "{r}");
    assert!(
        r.failures()
            .any(|c| c.what.contains("signed properties digest")),
        "{r}"
    );
    // A changed SignatureValue fails the signature and the time-stamp imprint.
    let at = text_xml.find("<ds:SignatureValue").unwrap();
    let at = at + text_xml[at..].find('>').unwrap() + 5;
    let mut changed = xml.clone();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let r = verify::verify(&changed, &data, false);
    let failed: Vec<&str> = r.failures().map(|c| c.what.as_str()).collect();
    assert!(
        failed.contains(&"signature value") && failed.contains(&"time-stamp imprint"),
        "{r}"
    );
    // Re-indented XML is not canonical: reported, not silently accepted.
    let pretty = text_xml.replace("><ds:Reference", ">\n  <ds:Reference");
    let r = verify::verify(pretty.as_bytes(), &data, false);
    assert!(r.failures().any(|c| c.detail.contains("canonical")), "{r}");
}

#[test]
fn jws() {
    let pki = Pki::new();
    let (a, da) = doc(&pki, "a.txt", DOC);
    let (b, db) = doc(&pki, "data.json", b"{\"x\":1}");
    let json = pki.sign(Format::Jws, &[da, db], true);
    let sig = pki.path("signature.json");
    std::fs::write(&sig, &json).unwrap();
    good_then_changed(&sig, &[a.clone(), b.clone()], &a, 0, "a.txt");
    // A changed signature character fails the signature value and the imprint.
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let s = v["signature"].as_str().unwrap();
    let flipped = format!("{}{}", if s.starts_with('A') { "B" } else { "A" }, &s[1..]);
    let changed = String::from_utf8(json.clone())
        .unwrap()
        .replace(s, &flipped);
    let data = [
        DataFile::from_path(&a).unwrap(),
        DataFile::from_path(&b).unwrap(),
    ];
    let r = verify::verify(changed.as_bytes(), &data, false);
    let failed: Vec<&str> = r.failures().map(|c| c.what.as_str()).collect();
    assert!(
        failed.contains(&"signature value") && failed.contains(&"time-stamp imprint"),
        "{r}"
    );
    // B-B passes too, with the time-stamp reported as absent.
    let bb = pki.sign(
        Format::Jws,
        &[Document {
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            digest: DigestAlgorithm::Sha256.digest(DOC),
        }],
        false,
    );
    let r = verify::verify(&bb, &data[..1], false);
    assert!(r.passed(), "{r}");
    assert!(
        r.checks
            .iter()
            .any(|c| c.status == Status::Info && c.detail.contains("B-B")),
        "{r}"
    );
}

#[test]
fn pades() {
    let pki = Pki::new();
    let original = minimal_pdf();
    let (prepared, signed) = pki.sign_pdf(&original, &PrepareOptions::default());
    let path = pki.path("signed.pdf");
    std::fs::write(&path, &signed).unwrap();
    // Byte 12 is in the first ByteRange part.
    assert!(prepared.byte_range[1] > 12);
    good_then_changed(&path, &[], &path, 12, "the /ByteRange");
    // Bytes appended after the signature are reported.
    let mut longer = signed.clone();
    longer.extend_from_slice(b"\n% appended\n");
    let r = verify::verify(&longer, &[], false);
    assert!(
        r.failures().any(|c| c.detail.contains("are not signed")),
        "{r}"
    );
    // A second signature: both checked, the first as a revision.
    let (_, twice) = pki.sign_pdf(&signed, &PrepareOptions::default());
    let r = verify::verify(&twice, &[], true);
    assert!(r.passed(), "{r}");
    assert!(
        r.checks
            .iter()
            .any(|c| c.what == "signature 1: /ByteRange" && c.status == Status::Info),
        "{r}"
    );
    // An unsigned PDF fails.
    assert!(!verify::verify(&original, &[], false).passed());
}

/// A one-page PDF with a classic cross-reference table.
fn minimal_pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ];
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 4\n0000000000 65535 f \n");
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

#[test]
fn asice_both_forms() {
    let pki = Pki::new();
    let files = vec![
        DataFile {
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            bytes: DOC.to_vec(),
        },
        DataFile {
            name: "dir name.bin".into(),
            media_type: "application/octet-stream".into(),
            bytes: vec![0u8; 300],
        },
    ];
    let docs: Vec<Document> = files
        .iter()
        .map(|f| Document {
            name: f.name.clone(),
            media_type: f.media_type.clone(),
            digest: DigestAlgorithm::Sha256.digest(&f.bytes),
        })
        .collect();
    let sig = pki.sign(Format::Asice, &docs, true);
    let xades = asice::build_xades(&sig, &files, SystemTime::now()).unwrap();
    let manifest = asice::asic_manifest(&files, esig::digest::HashAlgorithm::Sha256).unwrap();
    let p7s = pki.sign(
        Format::Cades,
        &[Document {
            name: "m".into(),
            media_type: "application/xml".into(),
            digest: DigestAlgorithm::Sha256.digest(&manifest),
        }],
        true,
    );
    let cades = asice::build_cades(&p7s, &manifest, &files, SystemTime::now()).unwrap();
    for (name, container) in [("xades.asice", xades), ("cades.asice", cades)] {
        let path = pki.path(name);
        std::fs::write(&path, &container).unwrap();
        let o = esig_verify(&path, &[], false);
        let out = text(&o);
        eprintln!("{out}");
        assert!(o.status.success(), "{out}");
        assert!(out.contains("[PASS] container layout"), "{out}");
        // Change one byte of a stored copy of "a.txt" inside the container: rebuild it with
        // the changed content under the same signature.
        let c = asice::read(&container).unwrap();
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (n, b) in &c.entries {
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            z.start_file(n.as_str(), o).unwrap();
            let mut b = b.clone();
            if n == "a.txt" {
                b[0] ^= 1;
            }
            std::io::Write::write_all(&mut z, &b).unwrap();
        }
        let tampered = z.finish().unwrap().into_inner();
        let tpath = pki.path(&format!("tampered-{name}"));
        std::fs::write(&tpath, &tampered).unwrap();
        let o = esig_verify(&tpath, &[], false);
        let out = text(&o);
        eprintln!("{out}");
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("document digest of a.txt"), "{out}");
        assert!(out.contains("[FAIL]"), "{out}");
    }
}

/// A PAdES file extended with a DSS (B-LT) and a document time-stamp (B-LTA, `esig::pdf_lt`):
/// the DSS update after the signature is reported, not failed; the document time-stamp's
/// imprint is checked over its /ByteRange; a changed byte fails both.
#[test]
fn pades_lt_and_document_timestamp() {
    let pki = Pki::new();
    let (_, signed) = pki.sign_pdf(&minimal_pdf(), &PrepareOptions::default());
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let ca_der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        ca.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap();
    let lt = esig::pdf_lt::add_dss(
        &signed,
        &esig::pdf_lt::ValidationData {
            certs: vec![ca_der],
            ..Default::default()
        },
    )
    .unwrap();
    let r = verify::verify(&lt, &[], false);
    assert!(r.passed(), "{r}");
    assert!(
        r.checks
            .iter()
            .any(|c| c.status == Status::Info && c.detail.contains("/DSS")),
        "{r}"
    );
    let prepared = esig::pdf_lt::add_document_timestamp(&lt, 8192).unwrap();
    let token = common::TestCa::new().timestamp_token(&prepared.digest);
    let lta = esig::pdf_lt::embed_document_timestamp(&prepared.bytes, &token).unwrap();
    let r = verify::verify(&lta, &[], false);
    eprintln!("{r}");
    assert!(r.passed(), "{r}");
    assert!(
        r.checks
            .iter()
            .any(|c| c.what == "signature 2: time-stamp imprint" && c.status == Status::Pass),
        "{r}"
    );
    let mut changed = lta.clone();
    changed[12] ^= 1;
    let r = verify::verify(&changed, &[], false);
    let failed: Vec<&str> = r.failures().map(|c| c.what.as_str()).collect();
    assert!(
        failed.contains(&"signature 1: document digest of the /ByteRange")
            && failed.contains(&"signature 2: time-stamp imprint"),
        "{r}"
    );
}
