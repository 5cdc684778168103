//! The validators of the five signature formats, as the end-to-end tests run them on what the
//! appliance returns: implementations we did not write, each answer turned into a [`Verdict`]
//! (accepted or not, with the whole output for the assertion that names the reason).
//!
//! | format | validators |
//! |---|---|
//! | CAdES | `openssl cms -verify` ([`crate::api::verify_with_openssl`]), pyHanko |
//! | PAdES | `pyhanko sign validate` ([`pyhanko_validate_pdf`]), poppler's [`pdfsig`], [`qpdf_check`] |
//! | XAdES, ASiC-E | [`xmlsec1_verify`], signxml's `XAdESVerifier` ([`signxml_verify`]) |
//! | JWS / JAdES | [`jwcrypto_verify`] (`sigD` registered, empty detached payload), [`jws_check_hashes`] |
//! | every time-stamp | [`openssl_ts_verify`] over what the format's token covers ([`xades_timestamp`], [`jws_timestamp`]) |
//!
//! A missing program or Python module FAILS the test with [`INSTALL_HINT`]: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub use crate::venv;

/// The fix for a missing validator.
pub const INSTALL_HINT: &str = "run `scripts/install-deps.sh --with-test-tools`";

/// A program on `PATH`; FAILS with the install hint when it is not there.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: {INSTALL_HINT}"))
}

/// A `Command` for the validators' Python ([`venv`]).
pub fn python() -> Command {
    Command::new(venv().join("bin/python"))
}

/// FAILS with the install hint unless the venv's Python imports `module`.
pub fn require_python_module(module: &str) {
    let out = python()
        .arg("-c")
        .arg(format!("import {module}"))
        .output()
        .expect("the venv's Python runs");
    assert!(
        out.status.success(),
        "Python module {module} is missing from {}: {INSTALL_HINT}\n{}",
        venv().display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What one validator run said.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The validator accepted (its exit status and its own words; see each runner).
    pub accepted: bool,
    /// stdout followed by stderr.
    pub output: String,
    /// The command line, for messages.
    pub command: String,
}

impl Verdict {
    fn of(cmd: &Command, out: &Output, accepted: impl FnOnce(&str) -> bool) -> Verdict {
        let output = crate::text(out);
        let mut command = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            command.push(' ');
            command.push_str(&a.to_string_lossy());
        }
        Verdict {
            accepted: out.status.success() && accepted(&output),
            output,
            command,
        }
    }

    /// Panics unless the validator accepted; returns its output. Printed either way (the
    /// test's report of what the validator said).
    pub fn accepted(self, what: &str) -> String {
        eprintln!("== {what}: `{}`\n{}", self.command, self.output.trim_end());
        assert!(
            self.accepted,
            "{what}: the validator refused: `{}`\n{}",
            self.command, self.output
        );
        self.output
    }

    /// Panics unless the validator refused, and for the reason: every one of `reasons` is in its
    /// output (a crash, a missing file or a bad flag fail differently). Returns its output.
    pub fn refused(self, what: &str, reasons: &[&str]) -> String {
        eprintln!("== {what}: `{}`\n{}", self.command, self.output.trim_end());
        assert!(
            !self.accepted,
            "{what}: the validator accepted: `{}`\n{}",
            self.command, self.output
        );
        for r in reasons {
            assert!(
                self.output.contains(r),
                "{what}: refused, but not with `{r}`: `{}`\n{}",
                self.command,
                self.output
            );
        }
        self.output
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?} ({e}): {INSTALL_HINT}", cmd.get_program()))
}

fn script(name: &str, text: &str) -> tempfile::TempPath {
    let f = tempfile::Builder::new()
        .prefix(name)
        .suffix(".py")
        .tempfile()
        .unwrap();
    std::fs::write(f.path(), text).unwrap();
    f.into_temp_path()
}

/// One detached document as the validators find it.
#[derive(Debug, Clone)]
pub struct DocFile {
    /// Its name in the request (`documents[].name`): a container path for ASiC-E, a `sigD.pars`
    /// entry for JWS, and what xmlsec1's `--url-map:` matches (it decodes reference URIs first).
    pub name: String,
    /// The reference URI in an XML signature (the name, percent-encoded).
    pub uri: String,
    /// Its media type.
    pub media_type: String,
    /// The file.
    pub path: PathBuf,
}

impl DocFile {
    /// Writes `content` at `dir/<name>` (subdirectories made).
    pub fn write(dir: &Path, name: &str, uri: &str, media_type: &str, content: &[u8]) -> DocFile {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        DocFile {
            name: name.to_owned(),
            uri: uri.to_owned(),
            media_type: media_type.to_owned(),
            path,
        }
    }

    /// The same document at `dir/<name>` with byte `at` changed (xor 1).
    pub fn changed(&self, dir: &Path, at: usize) -> DocFile {
        let mut bytes = std::fs::read(&self.path).unwrap();
        bytes[at] ^= 0x01;
        DocFile::write(dir, &self.name, &self.uri, &self.media_type, &bytes)
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// XAdES and ASiC-E

/// `Id` attributes of `xades:SignedProperties` are IDs (the second reference points at one).
const XMLSEC_ID_ATTR: [&str; 2] = [
    "--id-attr:Id",
    "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
];

/// `xmlsec1 --verify` of the signature `sig`, trusting `trusted` (PEM), the detached documents
/// mapped by name (`--url-map:`). Accepted when it exits 0 with `OK` as its first line; its output
/// has `SignedInfo References (ok/all): n/n`.
pub fn xmlsec1_verify(sig: &Path, docs: &[DocFile], trusted: &Path) -> Verdict {
    let mut cmd = Command::new(tool("xmlsec1"));
    cmd.arg("--verify")
        .arg("--trusted-pem")
        .arg(trusted)
        .args(XMLSEC_ID_ATTR);
    for d in docs {
        cmd.arg(format!("--url-map:{}", d.name)).arg(&d.path);
    }
    cmd.arg(sig);
    let out = run(&mut cmd);
    let first = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    Verdict::of(&cmd, &out, |_| first == "OK")
}

/// The signxml and lxml script: `signxml` verifies with `XAdESVerifier` and prints one JSON line
/// (`{"ok": true, ...}` or `{"ok": false, "error": <exception class>, "message": ...}`);
/// `sigvalue` writes lxml's exclusive C14N of `ds:SignatureValue` and the decoded
/// `xades:EncapsulatedTimeStamp` (exactly one).
const XML_CHECK_PY: &str = r#"
import base64, json, sys
from lxml import etree
NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": "http://uri.etsi.org/01903/v1.3.2#"}

def cmd_signxml(xml_path, ca_pem, n_refs, location, mapping):
    from signxml import exceptions
    from signxml.xades import XAdESVerifier, XAdESSignatureConfiguration, XAdESVerifyResult
    resolved = []
    def resolve(uri):
        resolved.append(uri)
        with open(mapping[uri], "rb") as f:
            return f.read()
    # signxml's default end-entity policy wants keyUsage digitalSignature; a certificate for
    # electronic signatures may have nonRepudiation (contentCommitment) only (ETSI EN 319 412-2
    # 4.3.2, key usage type A), as esigd's one-time certificates do. The same policy otherwise:
    # keyUsage present and allowing one of the two.
    from cryptography import x509
    def key_usage(policy, cert, ku):
        if not (ku.digital_signature or ku.content_commitment):
            raise ValueError("certificate KeyUsage allows neither digitalSignature nor nonRepudiation")
    ee_policy = x509.verification.ExtensionPolicy.permit_all().require_present(
        x509.KeyUsage, x509.verification.Criticality.AGNOSTIC, key_usage)
    data = open(xml_path, "rb").read()
    try:
        results = XAdESVerifier().verify(
            data, ca_pem_file=ca_pem, uri_resolver=resolve, ee_policy=ee_policy,
            expect_config=XAdESSignatureConfiguration(expect_references=n_refs, location=location))
    except exceptions.SignXMLException as e:
        print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
        return
    sp = [r for r in results if isinstance(r, XAdESVerifyResult)]
    print(json.dumps({
        "ok": True,
        "references": len(results),
        "signed_properties": len(sp),
        "signing_time": sp[0].signed_properties.findtext("{http://uri.etsi.org/01903/v1.3.2#}SigningTime") if sp else None,
        "resolved": sorted(resolved),
    }))

def cmd_sigvalue(xml_path, c14n_out, token_out):
    tree = etree.parse(xml_path)
    (sv,) = tree.xpath("//ds:SignatureValue", namespaces=NS)
    open(c14n_out, "wb").write(etree.tostring(sv, method="c14n", exclusive=True, with_comments=False))
    tokens = tree.xpath("//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", namespaces=NS)
    if len(tokens) != 1:
        raise SystemExit("want one SignatureTimeStamp token, found %d" % len(tokens))
    open(token_out, "wb").write(base64.b64decode(tokens[0].text, validate=True))
    print("sigvalue: OK")

mode = sys.argv[1]
if mode == "signxml":
    cmd_signxml(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6]))
elif mode == "sigvalue":
    cmd_sigvalue(sys.argv[2], sys.argv[3], sys.argv[4])
else:
    raise SystemExit("unknown mode " + mode)
"#;

/// signxml's `XAdESVerifier` on `sig`, trusting `trusted` (PEM): every reference (the documents,
/// resolved by their URIs, and the signed properties), the signature, the chain and
/// `SigningCertificateV2`. `location` is where the signature sits (`.//` for a detached XAdES
/// document, `./` for an ASiC-E `signatures0.xml`). The signer's keyUsage may be nonRepudiation
/// alone (EN 319 412-2 type A, esigd's one-time certificates), where signxml's default policy
/// wants digitalSignature; otherwise its default policy. Accepted when signxml answers `ok` with one
/// reference per document plus the signed properties and resolved exactly the documents' URIs;
/// the output is signxml's JSON answer (an exception class such as `InvalidDigest` on refusal).
pub fn signxml_verify(sig: &Path, docs: &[DocFile], trusted: &Path, location: &str) -> Verdict {
    require_python_module("signxml");
    let py = script("signxml_verify", XML_CHECK_PY);
    let mapping: serde_json::Map<String, Value> = docs
        .iter()
        .map(|d| (d.uri.clone(), d.path.to_str().unwrap().into()))
        .collect();
    let mut cmd = python();
    cmd.arg(&py)
        .arg("signxml")
        .arg(sig)
        .arg(trusted)
        .arg((docs.len() + 1).to_string())
        .arg(location)
        .arg(Value::Object(mapping).to_string());
    let out = run(&mut cmd);
    let mut uris: Vec<&str> = docs.iter().map(|d| d.uri.as_str()).collect();
    uris.sort_unstable();
    let answer: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    Verdict::of(&cmd, &out, |_| {
        answer.as_ref().is_some_and(|v| {
            v["ok"] == true
                && v["references"] == docs.len() + 1
                && v["signed_properties"] == 1
                && v["resolved"] == serde_json::json!(uris)
        })
    })
}

/// What an XAdES signature time-stamp covers and the token itself, taken out of `sig` by lxml:
/// (exclusive C14N of `ds:SignatureValue`, the `EncapsulatedTimeStamp` token), written under
/// `dir` as `SignatureValue.c14n` and `SignatureTimeStamp.der`.
pub fn xades_timestamp(sig: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    require_python_module("lxml");
    let py = script("xades_sigvalue", XML_CHECK_PY);
    let (c14n, token) = (
        dir.join("SignatureValue.c14n"),
        dir.join("SignatureTimeStamp.der"),
    );
    let mut cmd = python();
    cmd.arg(&py).arg("sigvalue").arg(sig).arg(&c14n).arg(&token);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| o.contains("sigvalue: OK")).accepted("lxml C14N of SignatureValue");
    (c14n, token)
}

// ---------------------------------------------------------------------------------------------
// JWS / JAdES

/// The jwcrypto script: `jwcrypto` verifies (key from `x5c[0]`, `sigD` registered, empty detached
/// payload), `hashes` checks `sigD` against the document files, `extract-tst` writes the `sigTst`
/// token and the ASCII signature value.
const JWS_CHECK_PY: &str = r#"
import base64, hashlib, json, sys

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def load(path):
    raw = open(path).read()
    obj = json.loads(raw)
    return raw, obj, json.loads(b64url_decode(obj["protected"]))

def cmd_jwcrypto(path):
    from cryptography import x509
    from jwcrypto import jwk, jws
    from jwcrypto.common import JWSEHeaderParameter
    raw, obj, header = load(path)
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    key = jwk.JWK.from_pyca(cert.public_key())
    registry = {"sigD": JWSEHeaderParameter("JAdES signed data reference", True, True, None)}
    token = jws.JWS(header_registry=registry)
    token.deserialize(raw)
    token.verify(key, detached_payload=b"")
    print("jwcrypto: OK", header["alg"], "payload=%r" % token.objects.get("payload", b""))
    print("signer:", cert.subject.rfc4514_string())

HASH_M = {"S256": "sha256", "S384": "sha384", "S512": "sha512"}

def cmd_hashes(path, docs):
    raw, obj, h = load(path)
    sig_d = h["sigD"]
    if sig_d["mId"] != "http://uri.etsi.org/19182/ObjectIdByURIHash":
        raise SystemExit("sigD.mId %r" % sig_d["mId"])
    names = [d[0] for d in docs]
    if sig_d["pars"] != names:
        raise SystemExit("sigD.pars %r, want %r" % (sig_d["pars"], names))
    if len(sig_d["hashV"]) != len(docs):
        raise SystemExit("sigD.hashV has %d entries for %d documents" % (len(sig_d["hashV"]), len(docs)))
    for (name, file), hv in zip(docs, sig_d["hashV"]):
        digest = hashlib.new(HASH_M[sig_d["hashM"]], open(file, "rb").read()).digest()
        if b64url_decode(hv) != digest:
            raise SystemExit("sigD.hashV for %r is not the %s of the document" % (name, sig_d["hashM"]))
    print("hashes: OK", sig_d["hashM"], len(docs))

def cmd_extract_tst(path, token_out, sig_out):
    raw, obj, h = load(path)
    (entry,) = obj["header"]["etsiU"]
    tokens = json.loads(b64url_decode(entry))["sigTst"]["tstTokens"]
    if len(tokens) != 1:
        raise SystemExit("sigTst has %d tokens" % len(tokens))
    open(token_out, "wb").write(base64.b64decode(tokens[0]["val"], validate=True))
    open(sig_out, "wb").write(obj["signature"].encode("ascii"))
    print("extracted")

mode = sys.argv[1]
if mode == "jwcrypto":
    cmd_jwcrypto(sys.argv[2])
elif mode == "hashes":
    cmd_hashes(sys.argv[2], [tuple(a.split("|", 1)) for a in sys.argv[3:]])
elif mode == "extract-tst":
    cmd_extract_tst(sys.argv[2], sys.argv[3], sys.argv[4])
else:
    raise SystemExit("unknown mode " + mode)
"#;

fn jws_script(mode: &str, jws: &Path) -> (tempfile::TempPath, Command) {
    require_python_module("jwcrypto");
    let py = script("jws_check", JWS_CHECK_PY);
    let mut cmd = python();
    cmd.arg(&py).arg(mode).arg(jws);
    (py, cmd)
}

/// jwcrypto verifies the detached JWS `jws` (JSON serialization) with the key of its `x5c[0]`
/// certificate, `sigD` registered as understood, over an empty detached payload. Accepted when it
/// prints `jwcrypto: OK <alg> payload=b''`; a refusal names `InvalidJWSSignature`.
pub fn jwcrypto_verify(jws: &Path) -> Verdict {
    let (_py, mut cmd) = jws_script("jwcrypto", jws);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| {
        o.contains("jwcrypto: OK") && o.contains("payload=b''")
    })
}

/// Python's hashlib checks `sigD` of `jws`: `pars` are the documents' names in order and each
/// `hashV` is the `hashM` digest of the document file. A refusal names the document:
/// `sigD.hashV for '<name>' is not the S256 of the document`.
pub fn jws_check_hashes(jws: &Path, docs: &[DocFile]) -> Verdict {
    let (_py, mut cmd) = jws_script("hashes", jws);
    for d in docs {
        cmd.arg(format!("{}|{}", d.name, d.path.display()));
    }
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| o.contains("hashes: OK"))
}

/// The JAdES signature time-stamp of `jws` and what it covers: (the `sigTst` token, the ASCII
/// base64url signature value), written under `dir`.
pub fn jws_timestamp(jws: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (token, sig) = (dir.join("sigTst.der"), dir.join("signature.txt"));
    let (_py, mut cmd) = jws_script("extract-tst", jws);
    cmd.arg(&token).arg(&sig);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| o.contains("extracted")).accepted("the JAdES sigTst token");
    (token, sig)
}

// ---------------------------------------------------------------------------------------------
// RFC 3161 time-stamps

/// `openssl ts -verify` of the token (DER `ContentInfo`) `token` over the bytes of `data`,
/// trusting `ca`, with `untrusted` (e.g. the TSA certificate) for the path. Accepted when it prints
/// `Verification: OK`; a token over other bytes is refused with `message imprint mismatch`.
pub fn openssl_ts_verify(
    token: &Path,
    data: &Path,
    ca: &Path,
    untrusted: Option<&Path>,
) -> Verdict {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["ts", "-verify", "-token_in", "-in"])
        .arg(token)
        .arg("-data")
        .arg(data)
        .arg("-CAfile")
        .arg(ca);
    if let Some(u) = untrusted {
        cmd.arg("-untrusted").arg(u);
    }
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| o.contains("Verification: OK"))
}

// ---------------------------------------------------------------------------------------------
// PDF

#[path = "../../client/tests/common/pdfgen.rs"]
pub mod pdfgen;

/// A small PDF, one page per text, with a classic cross-reference table and a trailer `/ID`
/// (`qpdf --check` finds it clean); the client's tests make theirs with the same code.
pub fn simple_pdf(texts: &[&str]) -> Vec<u8> {
    pdfgen::sample_pdf(texts, 0)
}

/// pyHanko's long-term validation of every signature in `pdf` with only the validation data the
/// file carries (`client/tests/pyhanko_lt.py`: `lt` = with-time validation with the DSS as local
/// knowledge, `lta` = past-signature validation with the document time-stamps as evidence).
/// `signer_rule` is `required` (the signer's certificate needs CRL or OCSP data in the file) or
/// `none` (a one-time certificate with `noRevAvail`). Returns the line of the first signature
/// (`<field>: lt=… lta=… … doc_ts=… sig_ts=…`) and the whole output.
pub fn pyhanko_ltv(pdf: &Path, ca: &Path, signer_rule: &str) -> (String, String) {
    let python = venv().join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: {INSTALL_HINT}",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/pyhanko_lt.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(ca).arg(pdf).arg(signer_rule);
    let out = run(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text
        .lines()
        .find(|l| l.contains(" lt="))
        .unwrap_or("")
        .to_owned();
    (first, text)
}

/// `pyhanko sign validate --pretty-print --trust <ca> --trust-replace --no-revocation-check` of
/// every signature in `pdf` (the venv's pyHanko). Accepted when it exits 0 and judges every
/// signature VALID; its output names the signature's and the time-stamp's status lines.
pub fn pyhanko_validate_pdf(pdf: &Path, ca: &Path) -> Verdict {
    let bin = venv().join("bin/pyhanko");
    assert!(
        bin.is_file(),
        "{} is missing: {INSTALL_HINT}",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.args(["sign", "validate", "--pretty-print", "--trust"])
        .arg(ca)
        .args(["--trust-replace", "--no-revocation-check"])
        .arg(pdf);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| {
        o.contains("The signature is judged VALID.") && !o.contains("judged INVALID")
    })
}

/// poppler's `pdfsig` on `pdf`. Accepted when it lists at least one signature and says
/// `Signature is Valid.` of each (it exits 0 for a digest mismatch too, so its words decide; a
/// changed file is `Digest Mismatch.`).
pub fn pdfsig(pdf: &Path) -> Verdict {
    let mut cmd = Command::new(tool("pdfsig"));
    cmd.arg(pdf);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| {
        let all = o.matches("Signature Validation:").count();
        all > 0
            && o.matches("Signature Validation: Signature is Valid.")
                .count()
                == all
    })
}

/// `qpdf --check` on `pdf`. Accepted when it exits 0, finds no syntax or stream encoding errors
/// and prints no warning.
pub fn qpdf_check(pdf: &Path) -> Verdict {
    let mut cmd = Command::new(tool("qpdf"));
    cmd.arg("--check").arg(pdf);
    let out = run(&mut cmd);
    Verdict::of(&cmd, &out, |o| {
        o.contains("No syntax or stream encoding errors found") && !o.contains("WARNING")
    })
}

// ---------------------------------------------------------------------------------------------
// A signature from the appliance, format by format

/// The appliance's trust anchors: its CA (signers' certificates) and its TSA certificate.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// `data/pki/ca.pem`.
    pub ca: PathBuf,
    /// `data/pki/tsa.pem` (the time-stamps' path to the CA).
    pub tsa: PathBuf,
}

impl Anchors {
    /// The anchors in the appliance's data directory.
    pub fn of_data_dir(data: &Path) -> Anchors {
        Anchors {
            ca: data.join("pki/ca.pem"),
            tsa: data.join("pki/tsa.pem"),
        }
    }
}

/// Base64 (standard, padded), as XML-DSig carries certificates.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A copy of `docs` under `dir` with one byte of `docs[victim]` changed (its middle byte).
pub fn with_changed_document(docs: &[DocFile], victim: usize, dir: &Path) -> Vec<DocFile> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            if i == victim {
                d.changed(dir, d.bytes().len() / 2)
            } else {
                DocFile::write(dir, &d.name, &d.uri, &d.media_type, &d.bytes())
            }
        })
        .collect()
}

/// An XAdES (`asic == false`) or ASiC-E `signatures0.xml` (`asic == true`) signature from the
/// appliance over `docs`, by the certificate `signer_der`, with the signature time-stamp
/// `timestamp` (the answer's `signatureTimestamp`): written to `dir`, then
///
/// - one reference per document by its percent-encoded URI, the signer's certificate in KeyInfo;
/// - `xmlsec1 --verify` accepts it (every reference, the signature, the chain to the CA);
/// - signxml's `XAdESVerifier` accepts it (also `SigningCertificateV2`);
/// - the embedded token is `timestamp`, and `openssl ts -verify` accepts it over lxml's exclusive
///   C14N of `ds:SignatureValue`;
/// - with one byte of the last document changed, xmlsec1 refuses at that reference (`data and
///   digest do not match`, the references before it passing) and signxml refuses
///   (`InvalidDigest`, naming the reference's URI).
///
/// Returns the signature file.
pub fn check_xml_signature(
    xml: &[u8],
    asic: bool,
    docs: &[DocFile],
    signer_der: &[u8],
    timestamp: &[u8],
    anchors: &Anchors,
    dir: &Path,
) -> PathBuf {
    let what = if asic { "ASiC-E" } else { "XAdES" };
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(if asic {
        "signatures0.xml"
    } else {
        "signature.xml"
    });
    std::fs::write(&file, xml).unwrap();
    let text = String::from_utf8(xml.to_vec()).expect("the signature is UTF-8 XML");
    if asic {
        assert!(
            text.contains("<asic:XAdESSignatures "),
            "{what}: not an ASiC-E signatures file:\n{text}"
        );
    }
    for d in docs {
        assert!(
            text.contains(&format!("URI=\"{}\"", d.uri)),
            "{what}: no reference to {:?} by URI {:?}:\n{text}",
            d.name,
            d.uri
        );
    }
    assert!(
        text.contains(&format!(
            "<ds:X509Certificate>{}</ds:X509Certificate>",
            b64(signer_der)
        )),
        "{what}: the signer's certificate is not in KeyInfo:\n{text}"
    );

    let n = docs.len() + 1;
    let out = xmlsec1_verify(&file, docs, &anchors.ca).accepted(&format!("{what}: xmlsec1"));
    assert!(
        out.contains(&format!("SignedInfo References (ok/all): {n}/{n}")),
        "{what}: xmlsec1 checked other references:\n{out}"
    );
    let location = if asic { "./" } else { ".//" };
    signxml_verify(&file, docs, &anchors.ca, location).accepted(&format!("{what}: signxml"));

    let (c14n, token) = xades_timestamp(&file, dir);
    assert_eq!(
        std::fs::read(&token).unwrap(),
        timestamp,
        "{what}: the embedded token is not signatureTimestamp"
    );
    openssl_ts_verify(&token, &c14n, &anchors.ca, Some(&anchors.tsa)).accepted(&format!(
        "{what}: openssl ts -verify over C14N(SignatureValue)"
    ));

    // The last document changed: xmlsec1 checks the references in order and stops at the first
    // that fails, so the ones before it pass and it fails (its digest).
    let last = docs.len() - 1;
    let changed = with_changed_document(docs, last, &dir.join("changed"));
    let out = xmlsec1_verify(&file, &changed, &anchors.ca).refused(
        &format!("{what}: xmlsec1 on a changed {:?}", docs[last].name),
        &["data and digest do not match", "FAIL"],
    );
    assert!(
        out.contains(&format!(
            "SignedInfo References (ok/all): {last}/{}",
            last + 1
        )),
        "{what}: xmlsec1 must fail at the changed document's reference:\n{out}"
    );
    signxml_verify(&file, &changed, &anchors.ca, location).refused(
        &format!("{what}: signxml on a changed {:?}", docs[last].name),
        &["\"ok\": false", "InvalidDigest", &docs[last].uri],
    );
    file
}

/// A detached JWS / JAdES (JSON serialization) from the appliance over `docs`, by `signer_der`,
/// with the token `timestamp`: written to `dir`, then
///
/// - `x5c[0]` is the signer's certificate;
/// - jwcrypto verifies it (sigD registered, empty detached payload) as `alg`;
/// - every `sigD.hashV` is the digest of its document file, `sigD.pars` are the names in order;
/// - the `sigTst` token is `timestamp`, and `openssl ts -verify` accepts it over the ASCII
///   base64url signature value;
/// - with one byte of the last document changed, the hash check refuses naming the document.
///
/// Returns the signature file.
pub fn check_jws_signature(
    json: &[u8],
    alg: &str,
    docs: &[DocFile],
    signer_der: &[u8],
    timestamp: &[u8],
    anchors: &Anchors,
    dir: &Path,
) -> PathBuf {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("signature.json");
    std::fs::write(&file, json).unwrap();
    let obj: Value = serde_json::from_slice(json).expect("the JWS is JSON");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(obj["protected"].as_str().expect("a protected header"))
            .expect("base64url protected header"),
    )
    .expect("a JSON protected header");
    assert_eq!(
        header["x5c"][0],
        b64(signer_der).as_str(),
        "x5c[0] is not the signer's certificate: {header}"
    );
    assert!(
        obj.get("payload").is_none(),
        "a detached JWS has no payload: {obj}"
    );

    let out = jwcrypto_verify(&file).accepted("JWS: jwcrypto");
    assert!(
        out.contains(&format!("jwcrypto: OK {alg} payload=b''")),
        "{out}"
    );
    jws_check_hashes(&file, docs).accepted("JWS: sigD hashes");
    let (token, sig) = jws_timestamp(&file, dir);
    assert_eq!(
        std::fs::read(&token).unwrap(),
        timestamp,
        "JWS: the sigTst token is not signatureTimestamp"
    );
    openssl_ts_verify(&token, &sig, &anchors.ca, Some(&anchors.tsa))
        .accepted("JWS: openssl ts -verify over the ASCII signature");

    let last = docs.len() - 1;
    let changed = with_changed_document(docs, last, &dir.join("changed"));
    let hash_m = header["sigD"]["hashM"].as_str().unwrap_or_default();
    jws_check_hashes(&file, &changed).refused(
        &format!("JWS: sigD hashes with a changed {:?}", docs[last].name),
        &[&format!(
            "sigD.hashV for '{}' is not the {hash_m} of the document",
            docs[last].name
        )],
    );
    file
}

/// A signed PDF (the answer's PAdES CMS embedded by the client) whose signer's common name is
/// `signer_cn`: written to `dir/signed.pdf`, then
///
/// - pyHanko judges the signature VALID with a trusted, sound time-stamp, covering the whole file;
/// - pdfsig says `Signature is Valid.` and names the signer;
/// - `qpdf --check` is clean;
/// - with byte `tamper_at` changed (inside the signed range), pdfsig says `Digest Mismatch.` and
///   pyHanko `The signature is cryptographically unsound.`
///
/// Returns the file.
pub fn check_pdf_signature(
    signed: &[u8],
    signer_cn: &str,
    tamper_at: usize,
    anchors: &Anchors,
    dir: &Path,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("signed.pdf");
    std::fs::write(&file, signed).unwrap();
    let out = pyhanko_validate_pdf(&file, &anchors.ca).accepted("PAdES: pyHanko");
    for needle in [
        "The signature is cryptographically sound.",
        "The signer's certificate is trusted.",
        "The signature covers the entire file.",
        "The timestamp token is cryptographically sound.",
        "The TSA certificate is trusted.",
        signer_cn,
    ] {
        assert!(
            out.contains(needle),
            "PAdES: pyHanko does not say {needle:?}:\n{out}"
        );
    }
    let out = pdfsig(&file).accepted("PAdES: pdfsig");
    assert!(
        out.contains(&format!("Signer Certificate Common Name: {signer_cn}")),
        "PAdES: pdfsig names another signer:\n{out}"
    );
    qpdf_check(&file).accepted("PAdES: qpdf --check");

    let mut tampered = signed.to_vec();
    tampered[tamper_at] ^= 0x02;
    let bad = dir.join("changed.pdf");
    std::fs::write(&bad, &tampered).unwrap();
    pdfsig(&bad).refused("PAdES: pdfsig on a changed byte", &["Digest Mismatch."]);
    pyhanko_validate_pdf(&bad, &anchors.ca).refused(
        "PAdES: pyHanko on a changed byte",
        &["The signature is cryptographically unsound."],
    );
    file
}
