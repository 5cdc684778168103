//! The `esig` CLI against a running esigd, as the README shows it: `esig sign` (an e-Service back
//! end's whole round trip over mutual TLS: hash or prepare, `POST /v1/sign/onetime`, merge) in
//! every format, `esig verify` on each result, independent validators on the signed PDF and the
//! container, and `esig pdf lt --server` (B-LT, then B-LTA) fetching the CA chain, CRL, OCSP
//! answers and a document time-stamp from esigd's public listener.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;

use esigd_hsm::testing::TestToken;
use esigd_testkit::api::sha256_of_cert;
use esigd_testkit::formats_check::{pdfsig, pyhanko_validate_pdf, qpdf_check, simple_pdf};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, esigd};
use serde_json::json;

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    daemon: Daemon,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&json!({
        "clients": [{"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT],
                     "token_endpoint_auth_method": "client_secret_basic"}]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("a", "/CN=service-a/O=Land Registry", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_UNUSED_SECRET" }}
[identity.claims]
default_country = "EE"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        a_fp = sha256_of_cert(&client.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(esigd_testkit::SERVE)
        .env("ESIGD_TEST_UNUSED_SECRET", "x");
    let daemon = Daemon::start_logged(cmd, dir.path().join("esigd.log"));
    Env {
        ca: pki.pem(),
        dir,
        _token: token,
        idp,
        client,
        daemon,
    }
}

/// The `esig` binary next to `esigd` (built with the workspace).
fn esig() -> Command {
    let p = esigd_testkit::esigd_binary().with_file_name("esig");
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace --all-targets --all-features",
        p.display()
    );
    Command::new(p)
}

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

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `esig sign` as the README shows it, with a fresh ID token of `mari`.
    fn sign(&self, format: &str, files: &[&Path], out: &Path) -> String {
        let token = self.idp.id_token(AUD, SECRET, REDIRECT, "mari");
        let mut cmd = esig();
        cmd.arg("sign")
            .arg("--server")
            .arg(format!("https://{}", self.daemon.eservice))
            .arg("--cert")
            .arg(&self.client.0)
            .arg("--key")
            .arg(&self.client.1)
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--format")
            .arg(format)
            .arg("--out")
            .arg(out)
            .env("ESIG_ID_TOKEN", token)
            .args(files);
        ok(&mut cmd)
    }
}

#[test]
fn esig_sign_verify_and_lt_against_esigd() {
    let env = env();
    let pdf = env.path("contract.pdf");
    std::fs::write(&pdf, simple_pdf(&["Contract 7"])).unwrap();
    let note = env.path("annex note.txt");
    std::fs::write(&note, b"Annex: the parcel map.").unwrap();
    let ca = env.path("data/pki/ca.pem");

    // PAdES: the signed PDF, valid for esig verify, pyHanko, pdfsig and qpdf.
    let signed = env.path("contract-signed.pdf");
    env.sign("PAdES", &[&pdf], &signed);
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
        env.sign(format, &files, &out);
        let mut v = esig();
        v.arg("verify").arg(&out).arg("--data").args(&files);
        let report = ok(&mut v);
        assert!(
            report.contains("[PASS]") && !report.contains("[FAIL]"),
            "{format}: {report}"
        );
    }
    let asice = env.path("signed.asice");
    env.sign("ASIC", &[&pdf, &note], &asice);
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/pyhanko_lt.py");
    let python = esigd_testkit::venv().join("bin/python");
    for f in [&signed, &lt, &lta] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(&ca)
            .arg(f)
            .arg("none")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let first = text.lines().find(|l| l.contains(" lt=")).unwrap_or("");
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
