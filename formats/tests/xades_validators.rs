//! XAdES and ASiC-E signatures checked by validators we did not write.
//!
//! A test PKI made with the `openssl` CLI (root CA → intermediate CA → P-256 signer; a P-256 TSA
//! with a critical timeStamping EKU) signs detached documents through the two-phase API (the
//! signer's key, loaded in Rust, signs the prepared digest; `openssl ts -reply` makes the token
//! over the B-T imprint). Then:
//!
//! - `xmlsec1 --verify` (core XML-DSig: every reference, the signature value, the chain to the
//!   root) accepts B-B and B-T, detached and ASiC-E;
//! - signxml's `XAdESVerifier` (references, signature, chain, `SigningCertificateV2`) accepts them;
//! - lxml's exclusive C14N of `ds:SignedInfo` and `xades:SignedProperties` is byte for byte what
//!   we emitted (the template is a C14N fixed point), and of `ds:SignatureValue` what
//!   `timestamp_input()` returned;
//! - `openssl ts -verify` accepts the token over lxml's canonical `ds:SignatureValue`;
//! - one changed byte in a document, or in the signed properties, makes xmlsec1 and signxml fail.
//!
//! A missing tool fails the test with the install hint (`scripts/install-deps.sh
//! --with-test-tools`); nothing is skipped.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use common::{
    Issued, KeyAlg, TestPki, describe, openssl, python, require_python_module, run, run_any,
};
use der::{DecodePem, Encode};
use esigd_formats::{DigestAlgorithm, Document, Format, SignRequest, Signed, prepare};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;

const XMLSEC_ID_ATTR: &str = "--id-attr:Id";
const SIGNED_PROPERTIES_NODE: &str = "http://uri.etsi.org/01903/v1.3.2#:SignedProperties";

/// The intermediate CA's extensions (the shared config has no AKI in `v3_ca`, which strict
/// path builders want on a non-root CA).
const INTERMEDIATE_EXT: &str = "[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[signer]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// signxml's XAdESVerifier over one signature file. Prints one JSON line: `{"ok": true, ...}` or
/// `{"ok": false, "error": <signxml exception class>, "message": ...}`; anything else (a crash,
/// a traceback) is a test failure.
const SIGNXML_VERIFY: &str = r#"
import json, sys
from signxml import exceptions
from signxml.xades import XAdESVerifier, XAdESSignatureConfiguration, XAdESVerifyResult

xml_path, ca_pem, n_refs, location, mapping = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
resolved = []
def resolve(uri):
    resolved.append(uri)
    with open(mapping[uri], "rb") as f:
        return f.read()
with open(xml_path, "rb") as f:
    data = f.read()
try:
    results = XAdESVerifier().verify(
        data,
        ca_pem_file=ca_pem,
        uri_resolver=resolve,
        expect_config=XAdESSignatureConfiguration(expect_references=n_refs, location=location),
    )
except exceptions.SignXMLException as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
    sys.exit(0)
sp = [r for r in results if isinstance(r, XAdESVerifyResult)]
print(json.dumps({
    "ok": True,
    "references": len(results),
    "signed_properties": len(sp),
    "signing_time": sp[0].signed_properties.findtext("{http://uri.etsi.org/01903/v1.3.2#}SigningTime") if sp else None,
    "resolved": sorted(resolved),
    "payloads": sorted(len(r.signed_data) for r in results),
}))
"#;

/// lxml's exclusive C14N (without comments) of the signed subtrees and of `ds:SignatureValue`,
/// written to `<out>/<LocalName>.c14n`.
const LXML_C14N: &str = r#"
import sys
from lxml import etree
xml_path, out = sys.argv[1], sys.argv[2]
tree = etree.parse(xml_path)
ns = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": "http://uri.etsi.org/01903/v1.3.2#"}
for name, xp in [("SignedInfo", "//ds:SignedInfo"), ("SignedProperties", "//xades:SignedProperties"), ("SignatureValue", "//ds:SignatureValue")]:
    (el,) = tree.xpath(xp, namespaces=ns)
    with open(f"{out}/{name}.c14n", "wb") as f:
        f.write(etree.tostring(el, method="c14n", exclusive=True, with_comments=False))
print("ok")
"#;

/// The test PKI with an intermediate CA between the root and the signer.
struct Fixture {
    pki: TestPki,
    intermediate: Issued,
    key: SigningKey,
    signer: Certificate,
    chain: Vec<Certificate>,
}

fn load_cert(path: &Path) -> Certificate {
    let pem = std::fs::read_to_string(path).unwrap();
    Certificate::from_pem(pem.as_bytes()).unwrap()
}

/// Issues `name` (a fresh P-256 key) from `issuer` with section `ext` of [`INTERMEDIATE_EXT`].
fn issue_from(pki: &TestPki, issuer: &Issued, name: &str, cn: &str, ext: &str) -> Issued {
    let extfile = pki.path("xades-ext.cnf");
    std::fs::write(&extfile, INTERMEDIATE_EXT).unwrap();
    let key = pki.path(&format!("{name}.key"));
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    let cert_pem = pki.path(&format!("{name}.pem"));
    let csr = pki.path(&format!("{name}.csr"));
    run(openssl()
        .args(["req", "-new", "-sha256", "-config"])
        .arg(pki.path("openssl.cnf"))
        .arg("-key")
        .arg(&key)
        .arg("-subj")
        .arg(format!("/CN={cn}/O=esigd tests"))
        .arg("-out")
        .arg(&csr));
    run(openssl()
        .args([
            "x509",
            "-req",
            "-sha256",
            "-days",
            "365",
            "-CAcreateserial",
            "-in",
        ])
        .arg(&csr)
        .arg("-CA")
        .arg(&issuer.cert_pem)
        .arg("-CAkey")
        .arg(&issuer.key)
        .arg("-extfile")
        .arg(&extfile)
        .arg("-extensions")
        .arg(ext)
        .arg("-out")
        .arg(&cert_pem));
    let cert_der = pki.path(&format!("{name}.der"));
    std::fs::write(&cert_der, load_cert(&cert_pem).to_der().unwrap()).unwrap();
    Issued {
        key,
        cert_pem,
        cert_der,
    }
}

impl Fixture {
    fn new() -> Fixture {
        let pki = TestPki::new();
        let intermediate = issue_from(
            &pki,
            &pki.ca,
            "xades-inter",
            "Formats Test Intermediate CA",
            "inter",
        );
        let signer = issue_from(
            &pki,
            &intermediate,
            "xades-signer",
            "Formats Test XAdES Signer",
            "signer",
        );
        let key = SigningKey::from_pkcs8_pem(&signer.key_pem()).unwrap();
        Fixture {
            signer: load_cert(&signer.cert_pem),
            chain: vec![load_cert(&intermediate.cert_pem)],
            pki,
            intermediate,
            key,
        }
    }

    /// A directory for one case's files.
    fn case_dir(&self, name: &str) -> PathBuf {
        let d = self.pki.path(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// One document on disk: its container path / relative name, the URI the signature references
/// it by, and the file.
struct DocFile {
    name: &'static str,
    uri: &'static str,
    media_type: &'static str,
    content: &'static [u8],
}

const DOCS: [DocFile; 3] = [
    DocFile {
        name: "document.pdf",
        uri: "document.pdf",
        media_type: "application/pdf",
        content: b"%PDF-1.7\n% not really a PDF, but bytes to sign\n",
    },
    DocFile {
        name: "notes 2024 (draft).txt",
        uri: "notes%202024%20%28draft%29.txt",
        media_type: "text/plain",
        content: b"Meeting notes: sign everything twice.\n",
    },
    DocFile {
        name: "data/x&y.xml",
        uri: "data/x%26y.xml",
        media_type: "application/xml",
        content: b"<x>&amp; y</x>\n",
    },
];

/// A document written to disk for the validators.
#[derive(Clone)]
struct Mapped {
    /// The reference URI in the signature (percent-encoded).
    uri: String,
    /// The document's name (the decoded URI: what xmlsec1's `--url-map` matches).
    name: String,
    /// The file.
    path: PathBuf,
}

/// Writes the documents under `dir` (at their names).
fn write_docs(dir: &Path, docs: &[DocFile]) -> Vec<Mapped> {
    docs.iter()
        .map(|d| {
            let path = dir.join(d.name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, d.content).unwrap();
            Mapped {
                uri: d.uri.to_owned(),
                name: d.name.to_owned(),
                path,
            }
        })
        .collect()
}

/// What one signing produced.
struct Produced {
    to_be_signed: Vec<u8>,
    signed: Box<dyn Signed>,
    bt: Vec<u8>,
    token: Vec<u8>,
}

/// Prepares, signs with the fixture's key (over the prepared digest, as an HSM would) and
/// time-stamps with the test TSA.
fn sign(fx: &Fixture, format: Format, alg: DigestAlgorithm, docs: &[DocFile]) -> Produced {
    let sign_digest = |digest: &[u8]| {
        let sig: p256::ecdsa::Signature = fx.key.sign_prehash(digest).unwrap();
        sig.to_der().as_bytes().to_vec()
    };
    sign_with(fx, &fx.signer, &fx.chain, &sign_digest, format, alg, docs)
}

/// Prepares with `signer` and `chain`, signs the prepared digest with `sign_digest` (which
/// returns the signature as CMS carries it: DER ECDSA-Sig-Value, or the RSA block) and
/// time-stamps with the test TSA.
fn sign_with(
    fx: &Fixture,
    signer: &Certificate,
    chain: &[Certificate],
    sign_digest: &dyn Fn(&[u8]) -> Vec<u8>,
    format: Format,
    alg: DigestAlgorithm,
    docs: &[DocFile],
) -> Produced {
    let documents: Vec<Document> = docs
        .iter()
        .map(|d| Document {
            name: d.name.into(),
            media_type: d.media_type.into(),
            digest: alg.digest(d.content),
        })
        .collect();
    let request = SignRequest {
        digest_algorithm: alg,
        documents: &documents,
        signer,
        chain,
        time: SystemTime::now(),
    };
    let prepared = prepare(format, &request).unwrap();
    let signed = prepared.finish(&sign_digest(&prepared.digest())).unwrap();
    let token = fx.pki.timestamp(&signed.timestamp_input());
    let bt = signed.add_timestamp(&token).unwrap();
    Produced {
        to_be_signed: prepared.to_be_signed().to_vec(),
        signed,
        bt,
        token,
    }
}

/// `xmlsec1 --verify` of `file`, trusting `trusted` (PEM), with the detached documents mapped
/// (`--url-map:` takes the *decoded* URI: xmlsec1 unescapes a reference URI before it looks the
/// map up, so this also checks that our percent-encoding decodes to the document's name).
fn xmlsec1(trusted: &Path, file: &Path, map: &[Mapped]) -> (Command, Output) {
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--verify")
        .arg("--trusted-pem")
        .arg(trusted)
        .arg(XMLSEC_ID_ATTR)
        .arg(SIGNED_PROPERTIES_NODE);
    for m in map {
        cmd.arg(format!("--url-map:{}", m.name)).arg(&m.path);
    }
    cmd.arg(file);
    let out = run_any(&mut cmd);
    (cmd, out)
}

fn assert_xmlsec1_ok(fx: &Fixture, file: &Path, map: &[Mapped]) {
    let (cmd, out) = xmlsec1(&fx.pki.ca.cert_pem, file, map);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let n = map.len() + 1;
    assert!(
        out.status.success()
            && stderr.lines().next() == Some("OK")
            && stderr.contains(&format!("SignedInfo References (ok/all): {n}/{n}")),
        "xmlsec1 did not accept {}: {}",
        file.display(),
        describe(&cmd, &out)
    );
}

fn assert_xmlsec1_fails(fx: &Fixture, file: &Path, map: &[Mapped]) {
    let (cmd, out) = xmlsec1(&fx.pki.ca.cert_pem, file, map);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("FAIL"),
        "xmlsec1 accepted a tampered {}: {}",
        file.display(),
        describe(&cmd, &out)
    );
}

/// signxml's `XAdESVerifier` on `file`, trusting `trusted` (PEM): its JSON answer.
fn signxml(
    fx: &Fixture,
    trusted: &Path,
    format: Format,
    file: &Path,
    map: &[Mapped],
) -> serde_json::Value {
    require_python_module("signxml");
    let script = fx.pki.path("signxml_verify.py");
    std::fs::write(&script, SIGNXML_VERIFY).unwrap();
    let mapping: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|m| (m.uri.clone(), m.path.to_str().unwrap().into()))
        .collect();
    let location = match format {
        Format::Asice => "./",
        _ => ".//",
    };
    let mut cmd = python();
    cmd.arg(&script)
        .arg(file)
        .arg(trusted)
        .arg((map.len() + 1).to_string())
        .arg(location)
        .arg(serde_json::Value::Object(mapping).to_string());
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("signxml printed no JSON ({e}): {}", describe(&cmd, &out)))
}

fn assert_signxml_ok(fx: &Fixture, format: Format, file: &Path, map: &[Mapped]) {
    let v = signxml(fx, &fx.pki.ca.cert_pem, format, file, map);
    assert_eq!(v["ok"], true, "signxml refused {}: {v}", file.display());
    assert_eq!(v["references"], map.len() + 1, "{v}");
    assert_eq!(
        v["signed_properties"], 1,
        "SigningCertificateV2 checked: {v}"
    );
    let mut uris: Vec<&str> = map.iter().map(|m| m.uri.as_str()).collect();
    uris.sort_unstable();
    assert_eq!(v["resolved"], serde_json::json!(uris), "{v}");
    assert!(
        v["signing_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

fn assert_signxml_fails(fx: &Fixture, format: Format, file: &Path, map: &[Mapped]) {
    let v = signxml(fx, &fx.pki.ca.cert_pem, format, file, map);
    assert_eq!(
        v["ok"],
        false,
        "signxml accepted a tampered {}: {v}",
        file.display()
    );
    assert_eq!(v["error"], "InvalidDigest", "{v}");
}

/// lxml's exc-C14N of SignedInfo, SignedProperties and SignatureValue of `file`.
fn lxml_c14n(fx: &Fixture, file: &Path, out_dir: &Path) -> [Vec<u8>; 3] {
    require_python_module("lxml");
    let script = fx.pki.path("lxml_c14n.py");
    std::fs::write(&script, LXML_C14N).unwrap();
    run(python().arg(&script).arg(file).arg(out_dir));
    ["SignedInfo", "SignedProperties", "SignatureValue"]
        .map(|n| std::fs::read(out_dir.join(format!("{n}.c14n"))).unwrap())
}

/// Standard base64 with padding, as XML-DSig carries binary values.
fn general_purpose_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of `<tag …>…</tag>` in `xml` (the first one).
fn element<'a>(xml: &'a [u8], tag: &str) -> &'a [u8] {
    let s = std::str::from_utf8(xml).unwrap();
    let a = s.find(&format!("<{tag} ")).unwrap();
    let close = format!("</{tag}>");
    let b = a + s[a..].find(&close).unwrap() + close.len();
    &xml[a..b]
}

/// Every check on one format: B-B and B-T accepted by xmlsec1 and signxml, the C14N fixed point,
/// the time-stamp imprint, and the tampered variants refused.
fn check_format(fx: &Fixture, format: Format, alg: DigestAlgorithm, case: &str) {
    let dir = fx.case_dir(case);
    let map = write_docs(&dir.join("docs"), &DOCS);
    let produced = sign(fx, format, alg, &DOCS);
    let bb = dir.join("signature-bb.xml");
    let bt = dir.join("signature-bt.xml");
    std::fs::write(&bb, produced.signed.bytes()).unwrap();
    std::fs::write(&bt, &produced.bt).unwrap();

    for file in [&bb, &bt] {
        assert_xmlsec1_ok(fx, file, &map);
        assert_signxml_ok(fx, format, file, &map);
    }

    // The template is a C14N fixed point: lxml canonicalizes the signed subtrees of the B-T file
    // into exactly the bytes we signed / digested.
    let c14n_dir = dir.join("c14n");
    std::fs::create_dir_all(&c14n_dir).unwrap();
    let [si, sp, sv] = lxml_c14n(fx, &bt, &c14n_dir);
    assert_eq!(
        String::from_utf8_lossy(&si),
        String::from_utf8_lossy(&produced.to_be_signed),
        "SignedInfo"
    );
    assert_eq!(
        String::from_utf8_lossy(&sp),
        String::from_utf8_lossy(element(produced.signed.bytes(), "xades:SignedProperties")),
        "SignedProperties"
    );
    assert_eq!(
        String::from_utf8_lossy(&sv),
        String::from_utf8_lossy(&produced.signed.timestamp_input()),
        "SignatureValue"
    );

    // The token covers lxml's canonical SignatureValue (openssl ts -verify: imprint, TSA
    // signature, chain to the root, timeStamping EKU), and not the B-B file's raw element.
    let token_file = dir.join("token.der");
    std::fs::write(&token_file, &produced.token).unwrap();
    fx.pki
        .verify_timestamp(&token_file, &c14n_dir.join("SignatureValue.c14n"));
    let raw_sv = dir.join("raw-signature-value.xml");
    std::fs::write(
        &raw_sv,
        element(produced.signed.bytes(), "ds:SignatureValue"),
    )
    .unwrap();
    let mut cmd = fx.pki.verify_timestamp_command(&token_file, &raw_sv);
    let out = run_any(&mut cmd);
    assert!(
        !out.status.success(),
        "openssl ts -verify accepted a token over other bytes: {}",
        describe(&cmd, &out)
    );
    // The embedded token is the one made.
    let bt_text = String::from_utf8(produced.bt.clone()).unwrap();
    {
        let b64 = general_purpose_b64(&produced.token);
        assert!(bt_text.contains(&format!(
            "<xades:EncapsulatedTimeStamp>{b64}</xades:EncapsulatedTimeStamp>"
        )));
        // KeyInfo: the signer, then the intermediate (xmlsec1 and signxml built the path with it).
        let signer = general_purpose_b64(&fx.signer.to_der().unwrap());
        let inter = general_purpose_b64(&fx.intermediate.der());
        assert!(bt_text.contains(&format!(
            "<ds:X509Data><ds:X509Certificate>{signer}</ds:X509Certificate><ds:X509Certificate>{inter}</ds:X509Certificate></ds:X509Data>"
        )));
    }

    // One changed byte in a document: both validators refuse.
    let tampered_dir = dir.join("tampered");
    let mut tampered_map = write_docs(&tampered_dir, &DOCS);
    let victim = &tampered_map[1].path;
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(victim, bytes).unwrap();
    for file in [&bb, &bt] {
        assert_xmlsec1_fails(fx, file, &tampered_map);
        assert_signxml_fails(fx, format, file, &tampered_map);
    }
    // A changed signed property (SigningTime): both refuse.
    tampered_map = map.clone();
    let changed = bt_text.replacen("<xades:SigningTime>2", "<xades:SigningTime>1", 1);
    assert_ne!(changed, bt_text);
    let changed_file = dir.join("signature-changed-time.xml");
    std::fs::write(&changed_file, changed).unwrap();
    assert_xmlsec1_fails(fx, &changed_file, &tampered_map);
    assert_signxml_fails(fx, format, &changed_file, &tampered_map);
}

#[test]
fn xades_detached_is_accepted_by_xmlsec1_signxml_and_openssl_ts() {
    let fx = Fixture::new();
    check_format(&fx, Format::Xades, DigestAlgorithm::Sha256, "xades");
}

#[test]
fn asice_signatures_xml_is_accepted_by_xmlsec1_signxml_and_openssl_ts() {
    let fx = Fixture::new();
    check_format(&fx, Format::Asice, DigestAlgorithm::Sha384, "asice");
}

/// One signer of [`p256_with_sha512_p384_and_rsa_signers_are_accepted`].
struct KeyCase<'a> {
    case: &'static str,
    /// The private key (its certificate is the `.pem` beside it).
    key: &'a Path,
    chain: Vec<Certificate>,
    format: Format,
    alg: DigestAlgorithm,
    /// The RFC 6931 signature method's fragment.
    method: &'static str,
    /// The length of the decoded `ds:SignatureValue`.
    value_len: usize,
}

#[test]
fn p256_with_sha512_p384_and_rsa_signers_are_accepted() {
    let fx = Fixture::new();
    let docs = &DOCS[..2];
    let map = write_docs(&fx.case_dir("keys").join("docs"), docs);
    // `openssl pkeyutl -sign` over the prepared digest: DER ECDSA-Sig-Value for EC keys, the
    // PKCS#1 v1.5 block (DigestInfo with the named digest) for RSA.
    let pkeyutl = |key: &Path, alg: DigestAlgorithm| {
        let name = match alg {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
            a => panic!("{a:?}"),
        };
        let key = key.to_owned();
        let dir = fx.pki.dir().to_owned();
        move |digest: &[u8]| {
            let n = common::unique();
            let input = common::write_file(&dir, format!("digest-{n}.bin"), digest);
            let output = dir.join(format!("signature-{n}.bin"));
            run(openssl()
                .args(["pkeyutl", "-sign", "-inkey"])
                .arg(&key)
                .args(["-pkeyopt", &format!("digest:{name}"), "-in"])
                .arg(&input)
                .arg("-out")
                .arg(&output));
            std::fs::read(&output).unwrap()
        }
    };
    let p384 = fx.pki.issue(
        "xades-p384",
        "Formats Test P-384 Signer",
        KeyAlg::P384,
        "signer",
    );
    let rsa = fx.pki.issue(
        "xades-rsa",
        "Formats Test RSA Signer",
        KeyAlg::Rsa2048,
        "signer",
    );
    let p256 = fx.pki.path("xades-signer.key");
    let cases = [
        KeyCase {
            case: "p256-sha512",
            key: &p256,
            chain: fx.chain.clone(),
            format: Format::Xades,
            alg: DigestAlgorithm::Sha512,
            method: "ecdsa-sha512",
            value_len: 64,
        },
        KeyCase {
            case: "p384-sha384",
            key: &p384.key,
            chain: vec![],
            format: Format::Asice,
            alg: DigestAlgorithm::Sha384,
            method: "ecdsa-sha384",
            value_len: 96,
        },
        KeyCase {
            case: "rsa-sha256",
            key: &rsa.key,
            chain: vec![],
            format: Format::Xades,
            alg: DigestAlgorithm::Sha256,
            method: "rsa-sha256",
            value_len: 256,
        },
    ];
    let other_root = TestPki::new();
    for KeyCase {
        case,
        key,
        chain,
        format,
        alg,
        method,
        value_len,
    } in cases
    {
        let cert = load_cert(&key.with_extension("pem"));
        let produced = sign_with(&fx, &cert, &chain, &pkeyutl(key, alg), format, alg, docs);
        let xml = String::from_utf8(produced.bt.clone()).unwrap();
        assert!(
            xml.contains(&format!(
                "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#{method}\">"
            )),
            "{case}"
        );
        let value = {
            use base64::Engine as _;
            let sv = std::str::from_utf8(element(&produced.bt, "ds:SignatureValue")).unwrap();
            let text = &sv[sv.find('>').unwrap() + 1..sv.len() - "</ds:SignatureValue>".len()];
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap()
        };
        assert_eq!(value.len(), value_len, "{case}: raw r||s or the RSA block");
        let file = fx.case_dir("keys").join(format!("{case}.xml"));
        std::fs::write(&file, &produced.bt).unwrap();
        assert_xmlsec1_ok(&fx, &file, &map);
        assert_signxml_ok(&fx, format, &file, &map);
        // Trusting another root: both refuse (the chain is checked, not only the signature).
        let (cmd, out) = xmlsec1(&other_root.ca.cert_pem, &file, &map);
        assert!(
            !out.status.success(),
            "xmlsec1 accepted {case} under another root: {}",
            describe(&cmd, &out)
        );
        let v = signxml(&fx, &other_root.ca.cert_pem, format, &file, &map);
        assert_eq!(
            v["ok"], false,
            "signxml accepted {case} under another root: {v}"
        );
        assert_eq!(v["error"], "InvalidCertificate", "{v}");
    }
}
