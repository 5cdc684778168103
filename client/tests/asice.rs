//! ASiC-E end to end, checked by validators that are not ours: data files → esigd's `ASIC`
//! format (`esigd_formats`, signer key in software, B-T with an `openssl ts` token) →
//! `esig::asice::build_xades`, then the byte rules at the ZIP level, `xmlsec1` on the extracted
//! files and libdigidocpp 4.3 (pydigidoc 0.0.4 in `$ESIGD_VENV`, offline: `tsl.autoupdate=false`).
//! The CAdES form (ASiCManifest + detached CMS) is checked with `openssl cms -verify`.
//!
//! A missing tool fails the test with the install hint; nothing is skipped.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{HINT, Pki, run, text, tool, venv_python};
use esig::asice::{self, DataFile};
use esig::digest::HashAlgorithm;
use esigd_formats::{DigestAlgorithm, Document, Format};

fn files() -> Vec<DataFile> {
    vec![
        DataFile {
            name: "contract.pdf".into(),
            media_type: "application/pdf".into(),
            bytes: b"%PDF-1.7\n% a stand-in contract\n".repeat(50),
        },
        DataFile {
            name: "my note.txt".into(),
            media_type: "text/plain".into(),
            bytes: b"Signed in Tallinn.\n".to_vec(),
        },
    ]
}

fn documents(files: &[DataFile]) -> Vec<Document> {
    files
        .iter()
        .map(|f| Document {
            name: f.name.clone(),
            media_type: f.media_type.clone(),
            digest: DigestAlgorithm::Sha256.digest(&f.bytes),
        })
        .collect()
}

/// The XAdES ASiC-E of [`files`], B-T.
fn xades_container(pki: &Pki, files: &[DataFile]) -> (Vec<u8>, Vec<u8>) {
    let sig = pki.sign(Format::Asice, &documents(files), true);
    let container = asice::build_xades(&sig, files, SystemTime::now()).unwrap();
    (sig, container)
}

/// Little-endian u16 at `o`.
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

/// `(name, method, flags, extra_len)` of every local file header, walking the file.
fn local_headers(b: &[u8]) -> Vec<(String, u16, u16, u16)> {
    let mut out = Vec::new();
    let mut at = 0;
    while b[at..].starts_with(b"PK\x03\x04") {
        let (flags, method) = (u16_at(b, at + 6), u16_at(b, at + 8));
        let csize = u32::from_le_bytes(b[at + 18..at + 22].try_into().unwrap()) as usize;
        let (n, e) = (
            usize::from(u16_at(b, at + 26)),
            usize::from(u16_at(b, at + 28)),
        );
        let name = String::from_utf8(b[at + 30..at + 30 + n].to_vec()).unwrap();
        out.push((name, method, flags, e as u16));
        assert_eq!(flags & 8, 0, "data descriptor on {}", out.last().unwrap().0);
        at += 30 + n + e + csize;
    }
    out
}

fn extract(container: &[u8], dir: &Path) {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(container)).unwrap();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let path = dir.join(f.name().unwrap().as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// `xmlsec1 --verify` of `META-INF/signatures0.xml` in the extracted `dir`, with the data files
/// mapped by their reference URIs: (success, output).
fn xmlsec1(pki: &Pki, dir: &Path, files: &[DataFile]) -> (bool, String) {
    let mut cmd = Command::new(tool("xmlsec1"));
    cmd.arg("--verify")
        .arg("--id-attr:Id")
        .arg("http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
        .arg("--trusted-pem")
        .arg(pki.path("ca.pem"));
    // The references are container paths: run in the container's root, and map the URI of each
    // file (as written, and unescaped: xmlsec1 looks the map up with one of them).
    for f in files {
        for uri in [asice::percent_encode(&f.name), f.name.clone()] {
            cmd.arg(format!("--url-map:{uri}")).arg(dir.join(&f.name));
        }
    }
    cmd.current_dir(dir).arg(asice::XADES_SIGNATURE_PATH);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("xmlsec1: {e} ({HINT})"));
    (o.status.success(), text(&o))
}

/// libdigidocpp's verdict on `container` (see tests/digidoc_validate.py).
fn digidoc(container: &Path, work: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/digidoc_validate.py");
    let o = run(Command::new(venv_python())
        .arg(script)
        .arg(container)
        .arg(work));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

/// The lines of a libdigidocpp error that are not about trust or revocation (the test CA is in
/// no trusted list, and B-T has no revocation data).
fn non_trust_findings(error: &str) -> Vec<String> {
    let trust = [
        // The heading of libdigidocpp's exception.
        "Signature validation",
        // The test CA is in no trusted list (TSL).
        "Unable to verify signing certificate",
        "unable to get local issuer certificate",
        "TSL",
        // No OCSP response / revocation values at B-T.
        "Certificate status: unknown",
        "RevocationValues object is missing",
        "OCSP",
        // OpenSSL's TS_RESP_verify_token on the TSA certificate, whose test CA is not trusted.
        "time stamp routines::certificate verify error",
    ];
    error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !trust.iter().any(|t| l.contains(t)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn container_byte_rules() {
    let pki = Pki::new();
    let files = files();
    let (sig, container) = xades_container(&pki, &files);
    // The first local header: mimetype, stored, no flags, no extra field, value at 38.
    assert_eq!(&container[..4], b"PK\x03\x04");
    assert_eq!(u16_at(&container, 6), 0, "general purpose flags");
    assert_eq!(u16_at(&container, 8), 0, "compression method");
    assert_eq!(u16_at(&container, 26), 8, "name length");
    assert_eq!(u16_at(&container, 28), 0, "extra field length");
    assert_eq!(&container[30..38], b"mimetype");
    assert_eq!(
        &container[38..38 + asice::MIMETYPE.len()],
        b"application/vnd.etsi.asic-e+zip"
    );
    // Every entry: the data files deflated at the root, then META-INF.
    let headers = local_headers(&container);
    let names: Vec<&str> = headers.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "mimetype",
            "contract.pdf",
            "my note.txt",
            "META-INF/manifest.xml",
            "META-INF/signatures0.xml"
        ]
    );
    for (name, method, flags, _) in &headers[1..] {
        assert_eq!((*method, *flags), (8, 0), "{name}");
    }
    // The file times are the ones given (no 1980 default).
    let z = zip::ZipArchive::new(std::io::Cursor::new(&container[..])).unwrap();
    let mut z = z;
    let year = z.by_index(1).unwrap().last_modified().unwrap().year();
    assert!(year >= 2025, "{year}");
    // The manifest lists every data file with its media type; the signature is stored as given.
    let c = asice::read(&container).unwrap();
    let manifest = String::from_utf8(c.get(asice::MANIFEST_PATH).unwrap().to_vec()).unwrap();
    assert!(
        manifest.contains(
            "manifest:full-path=\"/\" manifest:media-type=\"application/vnd.etsi.asic-e+zip\""
        ),
        "{manifest}"
    );
    assert!(
        manifest.contains(
            "manifest:full-path=\"contract.pdf\" manifest:media-type=\"application/pdf\""
        ),
        "{manifest}"
    );
    assert!(
        manifest.contains("manifest:full-path=\"my note.txt\" manifest:media-type=\"text/plain\""),
        "{manifest}"
    );
    assert_eq!(c.get(asice::XADES_SIGNATURE_PATH).unwrap(), &sig[..]);
    // The layout check itself catches a compressed mimetype.
    let mut broken = container.clone();
    broken[8] = 8;
    assert!(asice::check_layout(&broken).is_err());
}

#[test]
fn xades_asice_is_accepted_by_xmlsec1_and_libdigidocpp() {
    let pki = Pki::new();
    let files = files();
    let (_, container) = xades_container(&pki, &files);
    let path = pki.path("signed.asice");
    std::fs::write(&path, &container).unwrap();

    let dir = pki.path("extracted");
    extract(&container, &dir);
    let (ok, out) = xmlsec1(&pki, &dir, &files);
    eprintln!("xmlsec1:\n{out}");
    assert!(ok && out.contains("OK"), "xmlsec1:\n{out}");
    assert!(out.contains("References (ok/all): 3/3"), "xmlsec1:\n{out}");

    let work = pki.path("digidoc");
    std::fs::create_dir_all(&work).unwrap();
    let v = digidoc(&path, &work);
    eprintln!("libdigidocpp: {v:#}");
    assert!(v.get("open_error").is_none(), "{v:#}");
    let names: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["contract.pdf", "my note.txt"], "{v:#}");
    let sigs = v["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 1, "{v:#}");
    let s = &sigs[0];
    assert!(
        s["tst_time"].as_str().is_some_and(|t| !t.is_empty()),
        "libdigidocpp found no signature time-stamp: {v:#}"
    );
    if let Some(error) = s["error"].as_str() {
        let other = non_trust_findings(error);
        assert!(
            other.is_empty(),
            "libdigidocpp findings beyond trust/revocation: {other:#?}\nfull error:\n{error}"
        );
        assert!(!error.contains("Reference"), "{error}");
    }

    // A changed data file: libdigidocpp names the reference, xmlsec1 fails.
    let mut changed = files.clone();
    changed[1].bytes = b"Signed in Tartu.\n".to_vec();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let c = asice::read(&container).unwrap();
    for (name, bytes) in &c.entries {
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file(name.as_str(), stored).unwrap();
        let b = if name == "my note.txt" {
            &changed[1].bytes
        } else {
            bytes
        };
        std::io::Write::write_all(&mut z, b).unwrap();
    }
    let tampered = z.finish().unwrap().into_inner();
    let tpath = pki.path("tampered.asice");
    std::fs::write(&tpath, &tampered).unwrap();
    let v = digidoc(&tpath, &work);
    eprintln!("libdigidocpp on the changed container: {v:#}");
    let error = v["signatures"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("my note.txt") || error.contains("my%20note.txt"),
        "libdigidocpp did not name the changed file: {v:#}"
    );
    let tdir = pki.path("tampered");
    extract(&tampered, &tdir);
    let (ok, out) = xmlsec1(&pki, &tdir, &changed);
    assert!(!ok, "xmlsec1 accepted a changed file:\n{out}");
    // And esig refuses to build a container around a changed file.
    let e = asice::build_xades(
        c.get(asice::XADES_SIGNATURE_PATH).unwrap(),
        &changed,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(e, esig::Error::FilesMismatch(_)), "{e}");
    assert!(e.to_string().contains("my note.txt"), "{e}");
}

#[test]
fn files_must_match_the_references() {
    let pki = Pki::new();
    let files = files();
    let sig = pki.sign(Format::Asice, &documents(&files), false);
    // A missing file, an extra file, a renamed file: refused, naming them.
    let e = asice::build_xades(&sig, &files[..1], SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("missing: [\"my note.txt\"]"), "{e}");
    let mut extra = files.clone();
    extra.push(DataFile {
        name: "extra.txt".into(),
        media_type: "text/plain".into(),
        bytes: b"x".to_vec(),
    });
    let e = asice::build_xades(&sig, &extra, SystemTime::now()).unwrap_err();
    assert!(
        e.to_string().contains("not referenced: [\"extra.txt\"]"),
        "{e}"
    );
    let mut renamed = files.clone();
    renamed[1].name = "my%20note.txt".into();
    let e = asice::build_xades(&sig, &renamed, SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("percent-decoded"), "{e}");
    // Not a signature at all.
    assert!(matches!(
        asice::build_xades(b"<x/>", &files, SystemTime::now()),
        Err(esig::Error::SignatureFile(_))
    ));
}

#[test]
fn cades_form_over_an_asic_manifest() {
    let pki = Pki::new();
    let files = files();
    let manifest = asice::asic_manifest(&files, HashAlgorithm::Sha256).unwrap();
    let digest = DigestAlgorithm::Sha256.digest(&manifest);
    let p7s = pki.sign(
        Format::Cades,
        &[Document {
            name: "ASiCManifest001.xml".into(),
            media_type: "application/xml".into(),
            digest,
        }],
        true,
    );
    let container = asice::build_cades(&p7s, &manifest, &files, SystemTime::now()).unwrap();
    asice::check_layout(&container).unwrap();
    let c = asice::read(&container).unwrap();
    let names: Vec<&str> = c.entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "mimetype",
            "contract.pdf",
            "my note.txt",
            "META-INF/manifest.xml",
            "META-INF/ASiCManifest001.xml",
            "META-INF/signature001.p7s"
        ]
    );
    // openssl: the CMS signs the manifest bytes.
    let dir = pki.path("cades");
    extract(&container, &dir);
    let o = run(Command::new(tool("openssl"))
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
        ])
        .arg(dir.join(asice::CADES_SIGNATURE_PATH))
        .arg("-content")
        .arg(dir.join(asice::ASIC_MANIFEST_PATH))
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .args(["-out", "/dev/null"]));
    let out = text(&o);
    eprintln!("openssl cms -verify: {out}");
    assert!(out.contains("Verification successful"), "{out}");
    // The manifest's digests are the files' digests.
    let m = asice::parse_asic_manifest(&manifest).unwrap();
    for (r, f) in m.references.iter().zip(&files) {
        assert_eq!(r.name, f.name);
        assert_eq!(r.digest, HashAlgorithm::Sha256.digest(&f.bytes));
    }
    // A CMS over another manifest is refused.
    let other = asice::asic_manifest(&files[..1], HashAlgorithm::Sha256).unwrap();
    let e = asice::build_cades(&p7s, &other, &files[..1], SystemTime::now()).unwrap_err();
    assert!(matches!(e, esig::Error::FilesMismatch(_)), "{e}");
}

/// The command line: `esig asice manifest`, `esig asice build` (both forms).
#[test]
fn cli_builds_containers() {
    let pki = Pki::new();
    let esig = env!("CARGO_BIN_EXE_esig");
    let files = files();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let p = pki.path(&f.name);
            std::fs::write(&p, &f.bytes).unwrap();
            p
        })
        .collect();
    let sig = pki.sign(Format::Asice, &documents(&files), true);
    let sig_path = pki.path("signatures0.xml");
    std::fs::write(&sig_path, &sig).unwrap();
    let out = pki.path("cli.asice");
    run(Command::new(esig)
        .args(["asice", "build", "--signature"])
        .arg(&sig_path)
        .args(&paths)
        .arg("--out")
        .arg(&out));
    let c = asice::read(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(c.data_files(), files);

    // Only one file: refused with the names.
    let o = Command::new(esig)
        .args(["asice", "build", "--signature"])
        .arg(&sig_path)
        .arg(&paths[0])
        .arg("--out")
        .arg(pki.path("bad.asice"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("my note.txt"),
        "{}",
        text(&o)
    );

    // CAdES form: manifest → digest → CMS → container.
    let manifest_path = pki.path("ASiCManifest.xml");
    let o = run(Command::new(esig)
        .args(["asice", "manifest"])
        .args(&paths)
        .arg("--out")
        .arg(&manifest_path));
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(o.stdout).unwrap().trim())
        .unwrap();
    let manifest = std::fs::read(&manifest_path).unwrap();
    assert_eq!(digest, DigestAlgorithm::Sha256.digest(&manifest));
    let p7s = pki.sign(
        Format::Cades,
        &[Document {
            name: "m".into(),
            media_type: "application/xml".into(),
            digest,
        }],
        true,
    );
    let p7s_path = pki.path("sig.p7s");
    std::fs::write(&p7s_path, &p7s).unwrap();
    let out = pki.path("cli-cades.asice");
    run(Command::new(esig)
        .args(["asice", "build", "--cades"])
        .arg(&p7s_path)
        .arg("--manifest")
        .arg(&manifest_path)
        .args(&paths)
        .arg("--out")
        .arg(&out));
    let c = asice::read(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(c.get(asice::CADES_SIGNATURE_PATH).unwrap(), &p7s[..]);
}
