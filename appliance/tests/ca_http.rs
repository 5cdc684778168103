//! The in-process CA end to end (issue 3): the real `esigd` binary on its embedded defaults, the
//! operator admin API on its Unix socket (`curl --unix-socket` and the `esigd admin` CLI), and
//! validators we did not write: `openssl verify`, `openssl crl`, `openssl ocsp` against the running
//! responder (POST and RFC 6960 GET), and pkilint.
//!
//! pkilint comes from the test virtualenv (`esigd_testkit::venv()`); without it the test fails with the fix.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use esigd_hsm::testing::TestToken;
use esigd_testkit::certcheck::{openssl, openssl_csr};
use esigd_testkit::{SERVE, config, curl, esigd, text};
use serde_json::{Value, json};

// ---- helpers (the daemon itself is `esigd_testkit::Daemon`) ----

/// An EC P-256 CSR by openssl; its PEM text.
fn ec_csr(dir: &Path, name: &str) -> String {
    esigd_testkit::certcheck::ec_csr(dir, name).0
}

/// `openssl ocsp` against the running responder for `target` (`-cert FILE` or `-serial 0x…`).
fn ocsp(d: &Daemon, target: &[&str], sha256: bool) -> String {
    esigd_testkit::certcheck::ocsp(&d.ca_pem(), &d.url("/ocsp"), target, sha256)
}

/// Runs a command; panics with its output unless it succeeded.
fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run command");
    assert!(o.status.success(), "{cmd:?} failed:\n{}", text(&o));
    text(&o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A running `esigd serve` with its data directory; killed on drop.
struct Daemon {
    d: esigd_testkit::Daemon,
    data: PathBuf,
}

impl std::ops::Deref for Daemon {
    type Target = esigd_testkit::Daemon;
    fn deref(&self) -> &esigd_testkit::Daemon {
        &self.d
    }
}

impl Daemon {
    fn start_dev(data: &Path) -> Daemon {
        let mut cmd = esigd();
        cmd.arg("--data-dir").arg(data);
        Daemon::start(cmd, data)
    }

    /// Starts `cmd` (global options set) with `serve` on free ports; `data` is its data_dir.
    fn start(mut cmd: Command, data: &Path) -> Daemon {
        cmd.args(SERVE);
        let d = esigd_testkit::Daemon::start(cmd);
        assert!(
            d.stdout.contains("admin.sock"),
            "banner names the admin socket:\n{}",
            d.stdout
        );
        Daemon {
            d,
            data: data.to_path_buf(),
        }
    }

    /// SIGTERM; the exit status must be success and the admin socket gone.
    fn stop(self) {
        let socket = self.socket();
        self.d.stop();
        assert!(!socket.exists(), "admin socket left behind");
    }

    fn ca_pem(&self) -> PathBuf {
        self.data.join("pki/ca.pem")
    }

    fn socket(&self) -> PathBuf {
        self.data.join("admin.sock")
    }

    /// A request to the admin API over the Unix socket: (status, JSON answer).
    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--unix-socket".to_string(),
            s(&self.socket()).to_string(),
            "-X".into(),
            method.into(),
        ];
        if let Some(b) = body {
            let f = dir.path().join("body.json");
            std::fs::write(&f, serde_json::to_vec(b).unwrap()).unwrap();
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "-H".into(),
                "Expect:".into(),
                "--data-binary".into(),
                format!("@{}", s(&f)),
            ]);
        }
        args.push(format!("http://localhost{path}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = curl(&args);
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "admin answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (code, v)
    }

    /// `esigd admin …` (the CLI): (success, stdout JSON or Null, all output).
    fn cli(&self, args: &[&str]) -> (bool, Value, String) {
        let o = esigd()
            .arg("--data-dir")
            .arg(&self.data)
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        (o.status.success(), v, text(&o))
    }

    /// Issues an SCD certificate through the admin API for `csr_pem`; returns (serial, PEM path).
    fn issue(&self, dir: &Path, name: &str, csr_pem: &str) -> (String, PathBuf) {
        let (code, v) = self.admin(
            "POST",
            "/admin/cert/issue",
            Some(&json!({"profile": "scd", "csr": csr_pem, "claims": claims()})),
        );
        assert_eq!(code, 201, "{v}");
        let serial = v["certificateId"].as_str().unwrap().to_owned();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, v["certificate"].as_str().unwrap()).unwrap();
        (serial, file)
    }
}

fn claims() -> Value {
    json!({
        "given_name": "Mari-Liis",
        "family_name": "Männik",
        "personal_identifier": "47101010033",
        "country": "EE",
    })
}

/// The CRL from `/pki/crl`, verified by openssl against the CA; returns `openssl crl -text`.
fn crl_text(d: &Daemon, dir: &Path) -> String {
    let (code, der) = d.get("/pki/crl", &[]);
    assert_eq!(code, 200);
    let f = dir.join("crl.der");
    std::fs::write(&f, der).unwrap();
    let verify = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        s(&f),
        "-CAfile",
        s(&d.ca_pem()),
        "-noout",
    ]);
    assert!(verify.contains("verify OK"), "{verify}");
    openssl(&["crl", "-inform", "DER", "-in", s(&f), "-noout", "-text"])
}

/// openssl prints serials as uppercase hex pairs.
fn crl_serial(serial: &str) -> String {
    format!("Serial Number: {}", serial.to_uppercase())
}

// ---- tests ----

/// An SCD certificate issued through the admin API (CLI and socket) chains to the CA, passes
/// pkilint, and is published under /pki/certs/{serial}.
#[test]
fn admin_issued_scd_certificate_verifies_lints_and_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let d = Daemon::start_dev(&t.join("data"));

    // The socket is private to the service user.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Issue with the CLI from an openssl-made CSR.
    ec_csr(t, "scd");
    let (good, v, out) = d.cli(&[
        "cert",
        "issue",
        "--csr",
        s(&t.join("scd.csr")),
        "--claims",
        &claims().to_string(),
    ]);
    assert!(good, "{out}");
    let serial = v["certificateId"].as_str().unwrap().to_owned();
    let scd = t.join("scd.pem");
    std::fs::write(&scd, v["certificate"].as_str().unwrap()).unwrap();
    let ca = d.ca_pem();
    let out = openssl(&["verify", "-CAfile", s(&ca), s(&scd)]);
    assert!(out.contains(": OK"), "{out}");
    let subject = openssl(&[
        "x509",
        "-in",
        s(&scd),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(
        subject.contains("serialNumber=PNOEE-47101010033") && subject.contains("C=EE"),
        "{subject}"
    );
    let out = openssl(&[
        "verify",
        "-purpose",
        "timestampsign",
        "-CAfile",
        s(&ca),
        s(&d.data.join("pki/tsa.pem")),
    ]);
    assert!(out.contains(": OK"), "{out}");

    // An RSA-2048 CSR through the socket, DER in base64.
    let _ = openssl_csr(t, "rsa", &["-newkey", "rsa:2048"]);
    let rsa_der = t.join("rsa.der");
    openssl(&[
        "req",
        "-in",
        s(&t.join("rsa.csr")),
        "-outform",
        "DER",
        "-out",
        s(&rsa_der),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&rsa_der).unwrap());
    let (code, v) = d.admin(
        "POST",
        "/admin/cert/issue",
        Some(&json!({"profile": "scd", "csr": b64, "claims": claims()})),
    );
    assert_eq!(code, 201, "{v}");
    let rsa_pem = t.join("rsa.pem");
    std::fs::write(&rsa_pem, v["certificate"].as_str().unwrap()).unwrap();
    let out = openssl(&["verify", "-CAfile", s(&ca), s(&rsa_pem)]);
    assert!(out.contains(": OK"), "{out}");

    // Published: PEM by default, DER on request; 404 unknown, 400 not hex.
    let (code, pem) = d.get(&format!("/pki/certs/{serial}"), &[]);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8(pem).unwrap(),
        std::fs::read_to_string(&scd).unwrap()
    );
    let (code, der) = d.get(
        &format!("/pki/certs/{serial}"),
        &["-H", "Accept: application/pkix-cert"],
    );
    assert_eq!(code, 200);
    let der_file = t.join("scd.der");
    std::fs::write(&der_file, &der).unwrap();
    let from_der = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        s(&der_file),
        "-noout",
        "-serial",
    ]);
    assert!(
        from_der.contains(&format!("serial={}", serial.to_uppercase())),
        "{from_der}"
    );
    assert_eq!(d.get("/pki/certs/0123456789abcdef01", &[]).0, 404);
    assert_eq!(d.get("/pki/certs/not-hex", &[]).0, 400);

    // show / list, through the CLI and the socket.
    let (good, v, out) = d.cli(&["cert", "show", &serial]);
    assert!(good, "{out}");
    assert_eq!(v["state"], "ACTIVE", "{v}");
    assert_eq!(v["profile"], "scd", "{v}");
    let (good, v, out) = d.cli(&["cert", "list", "--profile", "scd"]);
    assert!(good, "{out}");
    let listed: Vec<&str> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["certificateId"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{v}");
    assert!(listed.contains(&serial.as_str()), "{v}");
    let (code, v) = d.admin("GET", "/admin/cert?profile=tsa&limit=10", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 1, "{v}");
    let (code, v) = d.admin("GET", "/admin/cert?profile=nonsense", None);
    assert_eq!(code, 400);
    assert!(
        v["status"]["message"].as_str().unwrap().contains("profile"),
        "{v}"
    );
    let (code, v) = d.admin("GET", "/admin/cert/0123456789abcdef01", None);
    assert_eq!(code, 404, "{v}");
    let (good, _, out) = d.cli(&["cert", "show", "zz"]);
    assert!(!good && out.contains("serial"), "{out}");

    // A stale socket file does not stop the next start; SIGTERM removes the socket.
    d.stop();

    // pkilint on a certificate the running daemon issued. The embedded defaults point the CRL
    // and OCSP URLs at 127.0.0.1 (which ETSI EN 319 412 forbids: internal domain name), so this
    // part runs the same CA, token and data directory with a configuration that sets a public
    // `ca.base_url`, as an operator would.
    let data = t.join("data");
    std::fs::write(data.join("admin.sock"), b"stale").unwrap();
    let cfg = t.join("esigd.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {data:?}\n[hsm]\ntoken = \"esig\"\npin = {{ file = {:?} }}\n\
             [ca]\nbase_url = \"http://esig.example.com\"\n[tsa]\nallow_unsynchronized_clock = true\n",
            data.join("hsm/user-pin")
        ),
    )
    .unwrap();
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .env("SOFTHSM2_CONF", data.join("hsm/softhsm2.conf"));
    let d = Daemon::start(cmd, &data);
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (_, scd) = d.issue(t, "scd-public", &ec_csr(t, "scd-public"));
    let out = openssl(&["verify", "-CAfile", s(&ca), s(&scd)]);
    assert!(out.contains(": OK"), "{out}");
    let ext = openssl(&[
        "x509",
        "-in",
        s(&scd),
        "-noout",
        "-ext",
        "authorityInfoAccess,crlDistributionPoints",
    ]);
    assert!(ext.contains("http://esig.example.com/ocsp"), "{ext}");
    d.stop();

    use esigd_testkit::validators::{Severity, pkilint};
    let mut findings = pkilint("lint_pkix_cert", &[], &scd);
    findings.extend(pkilint(
        "lint_etsi_cert",
        &["-t", "NCP-NATURAL-PERSON-CERTIFICATE"],
        &scd,
    ));
    findings.extend(pkilint("lint_pkix_cert", &[], &rsa_pem));
    // Nothing at WARNING or above is accepted for SCD certificates (as in ca/tests/pkilint.rs).
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

/// Revocation, suspension and resumption through the admin API show in the CRL and in the OCSP
/// answers of the running responder (POST, with SHA-1 and SHA-256 CertIDs, and GET).
#[test]
fn status_changes_reach_crl_and_ocsp() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let d = Daemon::start_dev(&t.join("data"));
    let (a_serial, a) = d.issue(t, "a", &ec_csr(t, "a"));
    let (b_serial, b) = d.issue(t, "b", &ec_csr(t, "b"));
    let (a_cert, b_cert) = (["-cert", s(&a)], ["-cert", s(&b)]);

    // Fresh: both good; the CRL verifies and lists neither.
    for sha256 in [false, true] {
        let out = ocsp(&d, &a_cert, sha256);
        assert!(out.contains(&format!("{}: good", s(&a))), "{out}");
    }
    let crl = crl_text(&d, t);
    assert!(!crl.contains(&crl_serial(&a_serial)), "{crl}");

    // Revoke A with the CLI: OCSP revoked (keyCompromise), CRL lists it with the reason at once.
    let (good, v, out) = d.cli(&[
        "cert",
        "revoke",
        &a_serial,
        "--reason",
        "keyCompromise",
        "--actor",
        "care-7",
        "--justification",
        "token lost",
    ]);
    assert!(good, "{out}");
    assert_eq!(v["state"], "REVOKED", "{v}");
    assert_eq!(v["status"]["reason"], "keyCompromise", "{v}");
    assert_eq!(v["history"][0]["actor"], "care-7", "{v}");
    for sha256 in [false, true] {
        let out = ocsp(&d, &a_cert, sha256);
        assert!(out.contains(&format!("{}: revoked", s(&a))), "{out}");
        assert!(out.contains("Reason: keyCompromise"), "{out}");
    }
    let crl = crl_text(&d, t);
    let entry = crl
        .split(&crl_serial(&a_serial))
        .nth(1)
        .unwrap_or_else(|| panic!("{a_serial} not in the CRL:\n{crl}"));
    assert!(
        entry.lines().take(6).any(|l| l.contains("Key Compromise")),
        "{crl}"
    );
    // Revocation is final.
    let (good, _, out) = d.cli(&["cert", "revoke", &a_serial, "--reason", "superseded"]);
    assert!(
        !good && out.contains("409") && out.contains("final"),
        "{out}"
    );
    let (good, _, out) = d.cli(&["cert", "resume", &a_serial]);
    assert!(!good && out.contains("409"), "{out}");

    // Suspend B: revoked (certificateHold) in OCSP and the CRL; resume: good, and gone from the CRL.
    let (good, v, out) = d.cli(&["cert", "suspend", &b_serial, "--actor", "care-7"]);
    assert!(good, "{out}");
    assert_eq!(v["state"], "SUSPENDED", "{v}");
    let out = ocsp(&d, &b_cert, true);
    assert!(
        out.contains(&format!("{}: revoked", s(&b))) && out.contains("Reason: certificateHold"),
        "{out}"
    );
    let crl = crl_text(&d, t);
    let entry = crl
        .split(&crl_serial(&b_serial))
        .nth(1)
        .unwrap_or_else(|| panic!("{b_serial} not in the CRL:\n{crl}"));
    assert!(
        entry
            .lines()
            .take(6)
            .any(|l| l.contains("Certificate Hold")),
        "{crl}"
    );
    let (good, v, out) = d.cli(&["cert", "resume", &b_serial, "--actor", "care-7"]);
    assert!(good, "{out}");
    assert_eq!(v["state"], "ACTIVE", "{v}");
    assert_eq!(v["history"].as_array().unwrap().len(), 2, "{v}");
    for sha256 in [false, true] {
        let out = ocsp(&d, &b_cert, sha256);
        assert!(out.contains(&format!("{}: good", s(&b))), "{out}");
    }
    let crl = crl_text(&d, t);
    assert!(!crl.contains(&crl_serial(&b_serial)), "{crl}");
    assert!(crl.contains(&crl_serial(&a_serial)), "{crl}");
    let (good, _, out) = d.cli(&["cert", "resume", &b_serial]);
    assert!(
        !good && out.contains("409") && out.contains("nothing to resume"),
        "{out}"
    );

    // A serial this CA never issued: unknown.
    let out = ocsp(&d, &["-serial", "0x1234"], false);
    assert!(out.contains("0x1234: unknown"), "{out}");

    // RFC 6960 A.1 GET: base64 of the DER request, URL-encoded, after /ocsp/.
    let req = t.join("req.der");
    openssl(&[
        "ocsp",
        "-issuer",
        s(&d.ca_pem()),
        "-cert",
        s(&a),
        "-no_nonce",
        "-reqout",
        s(&req),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let (code, resp) = d.get(&format!("/ocsp/{encoded}"), &[]);
    assert_eq!(code, 200);
    let resp_file = t.join("resp.der");
    std::fs::write(&resp_file, resp).unwrap();
    let out = openssl(&[
        "ocsp",
        "-respin",
        s(&resp_file),
        "-issuer",
        s(&d.ca_pem()),
        "-cert",
        s(&a),
        "-CAfile",
        s(&d.ca_pem()),
    ]);
    assert!(
        out.contains("Response verify OK") && out.contains(&format!("{}: revoked", s(&a))),
        "{out}"
    );

    // Admin API refusals, each with the field named.
    let b_status = format!("/admin/cert/{b_serial}/status");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/admin/cert/issue",
            json!({"profile": "one_time", "csr": ec_csr(t, "ot"), "claims": claims()}),
            422,
            "profile",
        ),
        (
            "/admin/cert/issue",
            json!({"profile": "gold", "csr": ec_csr(t, "g"), "claims": claims()}),
            400,
            "profile",
        ),
        (
            "/admin/cert/issue",
            json!({"profile": "scd", "claims": claims()}),
            400,
            "csr",
        ),
        (
            "/admin/cert/issue",
            json!({"profile": "scd", "csr": ec_csr(t, "c"), "claims": {"country": "EE", "nickname": "x"}}),
            400,
            "nickname",
        ),
        (
            "/admin/cert/issue",
            json!({"profile": "scd", "csr": ec_csr(t, "e"), "claims": {"given_name": "A", "country": "Estonia"}}),
            422,
            "country",
        ),
        (
            &b_status,
            json!({"action": "revoke", "actor": "care-7"}),
            400,
            "reason",
        ),
        (
            &b_status,
            json!({"action": "revoke", "reason": "cACompromise", "actor": "care-7"}),
            400,
            "reason",
        ),
        (
            &b_status,
            json!({"action": "destroy", "actor": "care-7"}),
            400,
            "action",
        ),
        (&b_status, json!({"action": "suspend"}), 400, "actor"),
        (
            "/admin/cert/0123456789abcdef01/status",
            json!({"action": "suspend", "actor": "care-7"}),
            404,
            "not found",
        ),
    ];
    for (path, body, want, field) in cases {
        let (code, v) = d.admin("POST", path, Some(&body));
        let message = v["status"]["message"].as_str().unwrap_or_default();
        assert_eq!(code, want, "{path} {body}: {v}");
        assert_eq!(v["status"]["code"], "ERROR", "{v}");
        assert!(
            message.contains(field),
            "{path} {body}: message must name {field}: {v}"
        );
    }
    // Nothing above changed B.
    let (_, v) = d.admin("GET", &format!("/admin/cert/{b_serial}"), None);
    assert_eq!(v["state"], "ACTIVE", "{v}");
}

/// `C_Sign` calls so far, from `/metrics` (`esigd_operation_duration_seconds_count{op="hsm_sign"}`).
fn hsm_signs(d: &Daemon) -> u64 {
    let (code, body) = d.get("/metrics", &[]);
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("esigd_operation_duration_seconds_count{op=\"hsm_sign\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// POSTs the DER OCSP request `req` `n` times on one keep-alive connection; the answers.
fn post_ocsp(d: &Daemon, dir: &Path, req: &Path, n: usize) -> Vec<Vec<u8>> {
    let url = d.url("/ocsp");
    let data = format!("@{}", s(req));
    let outs: Vec<String> = (0..n)
        .map(|i| s(&dir.join(format!("ocsp-{i}.der"))).to_owned())
        .collect();
    let o = Command::new("curl")
        .args(["-s", "-f", "-H", "Content-Type: application/ocsp-request"])
        .args(["--data-binary", &data])
        .args(outs.iter().flat_map(|o| ["-o", o.as_str()]))
        .args(vec![url.as_str(); n])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    outs.iter().map(|o| std::fs::read(o).unwrap()).collect()
}

/// `openssl ocsp` reading the response file `resp` for certificate `cert`: its report.
fn ocsp_report(d: &Daemon, resp: &Path, cert: &Path) -> String {
    let out = openssl(&[
        "ocsp",
        "-respin",
        s(resp),
        "-issuer",
        s(&d.ca_pem()),
        "-cert",
        s(cert),
        "-CAfile",
        s(&d.ca_pem()),
    ]);
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

/// Issue #11: identical OCSP requests without a nonce are answered from a cache: 20 of them
/// cost one HSM signature; a request with a nonce is signed each time (its nonce echoed); a
/// revocation in between makes the next answer say revoked at once.
#[test]
fn identical_ocsp_requests_are_signed_once_until_the_status_changes() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let d = Daemon::start_dev(&t.join("data"));
    let (serial, a) = d.issue(t, "a", &ec_csr(t, "a"));
    let req = t.join("req.der");
    openssl(&[
        "ocsp",
        "-issuer",
        s(&d.ca_pem()),
        "-cert",
        s(&a),
        "-no_nonce",
        "-reqout",
        s(&req),
    ]);

    let before = hsm_signs(&d);
    let answers = post_ocsp(&d, t, &req, 20);
    assert_eq!(
        hsm_signs(&d) - before,
        1,
        "20 identical requests, one signature"
    );
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one cached answer"
    );
    let first = t.join("ocsp-0.der");
    assert!(ocsp_report(&d, &first, &a).contains(&format!("{}: good", s(&a))));

    // With a nonce (openssl's default): signed every time, each answer with its own nonce
    // (openssl checks the nonce it sent).
    let before = hsm_signs(&d);
    for _ in 0..3 {
        let out = ocsp(&d, &["-cert", s(&a)], false);
        assert!(out.contains(&format!("{}: good", s(&a))), "{out}");
        assert!(!out.contains("WARNING: no nonce"), "{out}");
    }
    assert_eq!(hsm_signs(&d) - before, 3);

    // Revoked: the cached "good" is gone at once.
    let (good, _, out) = d.cli(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    assert!(good, "{out}");
    let before = hsm_signs(&d);
    let answers = post_ocsp(&d, t, &req, 5);
    assert_eq!(hsm_signs(&d) - before, 1);
    assert!(answers.iter().all(|x| *x == answers[0]));
    let report = ocsp_report(&d, &first, &a);
    assert!(report.contains(&format!("{}: revoked", s(&a))), "{report}");
}

/// A CSR whose self-signature was made with another key (the requested key swapped in).
fn csr_signed_by_another_key() -> Vec<u8> {
    use der::{Decode, Encode};
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let subject = esigd_pki::identity::DnBuilder::new()
        .common_name("requester")
        .unwrap()
        .build();
    let mut csr = esigd_pki::csr::build_csr::<_, p256::ecdsa::DerSignature>(&key, subject).unwrap();
    let other_spki = spki::EncodePublicKey::to_public_key_der(other.verifying_key()).unwrap();
    csr.info.public_key = spki::SubjectPublicKeyInfoOwned::from_der(other_spki.as_bytes()).unwrap();
    csr.to_der().unwrap()
}

/// Every kind of bad CSR is refused with 400 and the parser's message; the daemon stays healthy
/// and still issues for a good CSR afterwards.
#[test]
fn bad_csrs_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let d = Daemon::start_dev(&t.join("data"));
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    let params = t.join("dsa-params.pem");
    openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:1024",
        "-out",
        s(&params),
    ]);
    let dsa_newkey = format!("dsa:{}", s(&params));
    let good = ec_csr(t, "good");
    let good_der = {
        let f = t.join("good.der");
        openssl(&[
            "req",
            "-in",
            s(&t.join("good.csr")),
            "-outform",
            "DER",
            "-out",
            s(&f),
        ]);
        std::fs::read(f).unwrap()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "signed with a different key",
            b64(&csr_signed_by_another_key()),
            vec!["signature does not verify"],
        ),
        (
            "RSA-1024",
            openssl_csr(t, "rsa1024", &["-newkey", "rsa:1024"]).0,
            vec!["1024"],
        ),
        (
            "DSA",
            openssl_csr(t, "dsa", &["-newkey", dsa_newkey.as_str()]).0,
            vec!["DSA", "dsa"],
        ),
        (
            "a certificate instead of a CSR (PEM)",
            std::fs::read_to_string(d.ca_pem()).unwrap(),
            vec!["not a certification request"],
        ),
        (
            "a certificate instead of a CSR (DER)",
            b64(&{
                let f = t.join("ca.der");
                openssl(&[
                    "x509",
                    "-in",
                    s(&d.ca_pem()),
                    "-outform",
                    "DER",
                    "-out",
                    s(&f),
                ]);
                std::fs::read(f).unwrap()
            }),
            vec!["not a certification request"],
        ),
        (
            "truncated DER",
            b64(&good_der[..good_der.len() * 2 / 3]),
            vec!["not valid DER"],
        ),
        (
            "garbage",
            b64(b"this is not a certification request at all"),
            vec!["not valid DER"],
        ),
        ("1 MB of zeros", b64(&vec![0u8; 1 << 20]), vec!["too large"]),
        ("empty", String::new(), vec!["empty"]),
        ("not base64", "%%%".into(), vec!["base64"]),
    ];
    for (what, csr, expected) in cases {
        let (code, v) = d.admin(
            "POST",
            "/admin/cert/issue",
            Some(&json!({"profile": "scd", "csr": csr, "claims": claims()})),
        );
        let message = v["status"]["message"].as_str().unwrap_or_default();
        eprintln!("{what}: {code} {message}");
        assert_eq!(code, 400, "{what}: {v}");
        assert!(
            message.starts_with("csr: "),
            "{what}: message names the field: {v}"
        );
        assert!(
            expected.iter().any(|e| message.contains(e)),
            "{what}: message should say one of {expected:?}: {v}"
        );
        assert_eq!(d.get("/healthz", &[]).0, 200, "{what}: daemon unhealthy");
    }
    // The CLI reports the same refusal and exits non-zero.
    std::fs::write(t.join("zeros.der"), vec![0u8; 1 << 20]).unwrap();
    let (good_exit, _, out) = d.cli(&[
        "cert",
        "issue",
        "--csr",
        s(&t.join("zeros.der")),
        "--claims",
        &claims().to_string(),
    ]);
    assert!(!good_exit && out.contains("too large"), "{out}");

    assert_eq!(d.get("/readyz", &[]).0, 200);
    let (serial, pem) = d.issue(t, "after", &good);
    let out = openssl(&["verify", "-CAfile", s(&d.ca_pem()), s(&pem)]);
    assert!(out.contains(": OK"), "{serial}: {out}");
}

/// Subordinate CA: CSR from `esigd init ca --csr`, signed by an openssl-made root, imported, then
/// the TSA certificate issued by it chains to the external root.
#[test]
fn subordinate_ca_chains_to_an_external_root() {
    let token = TestToken::create();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let cfg = config(t, &token, "");
    let esigd_cfg = || {
        let mut c = esigd();
        c.arg("--config").arg(&cfg);
        c
    };
    let sub_csr = t.join("sub.csr");
    ok(esigd_cfg().args(["init", "ca", "--csr"]).arg(&sub_csr));

    let (root, root_key) = (t.join("root.pem"), t.join("root.key"));
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-keyout",
        s(&root_key),
        "-subj",
        "/C=EE/O=External Root/CN=External Test Root",
        "-days",
        "7300",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        s(&root),
    ]);
    let ext = t.join("sub.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    let sub = t.join("sub.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&sub_csr),
        "-CA",
        s(&root),
        "-CAkey",
        s(&root_key),
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        s(&ext),
        "-out",
        s(&sub),
    ]);
    let chain = t.join("issued-chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(&sub).unwrap() + &std::fs::read_to_string(&root).unwrap(),
    )
    .unwrap();
    ok(esigd_cfg()
        .args(["init", "ca", "--import-cert"])
        .arg(&chain));
    ok(esigd_cfg().args(["init", "tsa"]));
    let ca = t.join("data/pki/ca.pem");
    let tsa = t.join("data/pki/tsa.pem");
    let out = openssl(&[
        "verify",
        "-purpose",
        "timestampsign",
        "-CAfile",
        s(&root),
        "-untrusted",
        s(&ca),
        s(&tsa),
    ]);
    assert!(out.contains(": OK"), "{out}");
    // Without the sub-CA certificate there is no path to the root: the chain is really used.
    let o = Command::new("openssl")
        .args(["verify", "-CAfile", s(&root), s(&tsa)])
        .output()
        .unwrap();
    esigd_testkit::validators::assert_openssl_refused(
        &o,
        esigd_testkit::validators::VERIFY_NO_ISSUER,
        Some(2),
        "the TSA certificate without the sub-CA",
    );
    let o = ok(esigd_cfg().arg("check"));
    assert!(o.contains("all checks passed"), "{o}");
}

#[test]
fn a_delegated_ocsp_responder_signs_the_answers_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let token = esigd_hsm::testing::TestToken::create();
    let tls = esigd_testkit::pki::Ca::new(t, "eservice-ca");
    let (server, server_key) = tls.issue("server", "/CN=esigd.test", "server_ext", None);
    let cfg = esigd_testkit::config(
        t,
        &token,
        &format!(
            "[tls]\ncert = {server:?}\nkey = {server_key:?}\nclient_ca = {:?}\n[ca]\nocsp_key = \"pkcs11:object=ocsp-key\"\nocsp_certificate_validity = \"30days\"\n[tsa]\nallow_unsynchronized_clock = true\n",
            tls.pem()
        ),
    );
    // `esigd init` makes the CA, the TSA and the delegated responder.
    let out = esigd_testkit::init(&cfg);
    assert!(out.contains("OCSP responder certificate created"), "{out}");
    let data = t.join("data");
    let responder = data.join("pki/ocsp.pem");
    let info = openssl(&[
        "x509",
        "-in",
        s(&responder),
        "-noout",
        "-subject",
        "-ext",
        "extendedKeyUsage",
    ]);
    assert!(
        info.contains("OCSP Signing") && info.contains("esigd OCSP Responder"),
        "{info}"
    );
    // A second init of the responder is refused.
    let o = esigd()
        .arg("--config")
        .arg(&cfg)
        .args(["init", "ocsp"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("already initialised"),
        "{}",
        text(&o)
    );

    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg);
    let d = Daemon::start(cmd, &data);
    let (serial, a) = d.issue(t, "a", &ec_csr(t, "a"));
    // openssl accepts the answer signed by the responder (chained to the CA by -CAfile) ...
    let out = ocsp(&d, &["-cert", s(&a), "-resp_text"], true);
    assert!(out.contains(&format!("{}: good", s(&a))), "{out}");
    // Responder ID by key hash, and the responder's certificate in the answer.
    assert!(
        out.contains("Responder Id: ")
            && out.contains("Subject: C=EE, O=esigd development, CN=esigd OCSP Responder"),
        "the answer is not from the delegated responder:\n{out}"
    );
    // ... and follows a revocation.
    let (good, _, out) = d.cli(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    assert!(good, "{out}");
    let out = ocsp(&d, &["-cert", s(&a)], false);
    assert!(out.contains(&format!("{}: revoked", s(&a))), "{out}");
    d.stop();
}
