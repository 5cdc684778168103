//! Helpers for the tests of the e-Service API and the browser flow: client-certificate fingerprints, curl
//! over mutual TLS, and the checks of a one-time signature with validators we did not write
//! (`openssl cms -verify`, `openssl ts -verify`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::pki::openssl_out;

/// The SHA-256 fingerprint (hex) of the DER of the PEM certificate `pem`, as `client_cert_sha256` wants it.
pub fn sha256_of_cert(pem: &Path) -> String {
    let dir = pem.parent().unwrap();
    let out = openssl_out(
        dir,
        &format!(
            "openssl x509 -in {} -outform DER | openssl dgst -sha256 -r",
            pem.display()
        ),
    );
    out.split_whitespace().next().unwrap().to_string()
}

/// Runs `cmd`; panics with its output unless it succeeds; returns stdout followed by stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{t}");
    t
}

/// Result of one curl call against the e-Service (mTLS) listener.
#[derive(Debug)]
pub struct Reply {
    /// curl's exit code (0 = HTTP exchange happened).
    pub rc: i32,
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `status.message` of a JSON reply.
    pub fn message(&self) -> String {
        self.json()["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// `curl -X method https://<addr><path>` trusting `ca`, with the client certificate `cert` (PEM, key).
pub fn mtls(
    addr: &str,
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Reply {
    let tmp = tempfile::tempdir().unwrap();
    let hdr = tmp.path().join("h");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-D"])
        .arg(&hdr)
        .args(["--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["-X", method]);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    cmd.args(extra).arg(format!("https://{addr}{path}"));
    let out = cmd.output().unwrap();
    let body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = std::str::from_utf8(&body[(split + 1).min(body.len())..])
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    Reply {
        rc: out.status.code().unwrap_or(-1),
        status,
        body: body[..split].to_vec(),
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
    }
}

/// Checks the detached CAdES signature `p7s` over `doc` with openssl: `openssl cms -verify -cades`
/// against the document (and refused for a changed document), chain to `ca`; its signature time-stamp
/// with `openssl ts -verify` over SHA-256 of the signature value (TSA certificate `tsa`). `attime`
/// (Unix seconds) verifies the certificate as of that time instead of now. Returns what esigd-pki's
/// own parser sees (signer certificate, time-stamp tokens, …).
pub fn verify_with_openssl(
    ca: &Path,
    tsa: &Path,
    p7s: &[u8],
    doc: &Path,
    work: &Path,
    attime: Option<u64>,
) -> esigd_pki::cms::VerifiedSignature {
    std::fs::create_dir_all(work).unwrap();
    let sig = work.join("sig.p7s");
    std::fs::write(&sig, p7s).unwrap();
    let attime: Vec<String> = attime
        .map(|t| vec!["-attime".to_string(), t.to_string()])
        .unwrap_or_default();
    // The CAdES signature verifies against the document itself (ESS attribute checked).
    let t = run_ok(
        Command::new("openssl")
            .args([
                "cms", "-verify", "-cades", "-binary", "-inform", "DER", "-in",
            ])
            .arg(&sig)
            .arg("-content")
            .arg(doc)
            .arg("-CAfile")
            .arg(ca)
            .args(&attime)
            .args(["-purpose", "any", "-out", "/dev/null"]),
    );
    assert!(t.contains("Verification successful"), "{t}");
    // ... and fails for a changed document.
    let changed = work.join("changed.bin");
    let mut bytes = std::fs::read(doc).unwrap();
    bytes.push(b'!');
    std::fs::write(&changed, bytes).unwrap();
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&sig)
        .arg("-content")
        .arg(&changed)
        .arg("-CAfile")
        .arg(ca)
        .args(&attime)
        .args(["-purpose", "any", "-out", "/dev/null"])
        .output()
        .unwrap();
    // ... for that reason: the content digest does not match (not a missing file or a bad flag).
    crate::validators::assert_openssl_refused(
        &out,
        crate::validators::CMS_CONTENT_MISMATCH,
        Some(4),
        "a changed document must not verify",
    );

    // The signature-time-stamp token: openssl ts -verify accepts it over SHA-256 of the SignerInfo
    // signature value.
    let verified = esigd_pki::cms::verify_detached_digest(p7s, None).unwrap();
    assert_eq!(
        verified.timestamp_tokens.len(),
        1,
        "one signature time-stamp expected"
    );
    let tst = work.join("tst.der");
    std::fs::write(&tst, &verified.timestamp_tokens[0]).unwrap();
    let digest = hex::encode(Sha256::digest(&verified.signature));
    let t = run_ok(
        Command::new("openssl")
            .args(["ts", "-verify", "-token_in", "-in"])
            .arg(&tst)
            .args(["-digest", &digest, "-CAfile"])
            .arg(ca)
            .arg("-untrusted")
            .arg(tsa),
    );
    assert!(t.contains("Verification: OK"), "{t}");
    verified
}

/// The one-time certificate (PEM) names the test user `mari` of the development IdP and is valid for
/// 60 s (plus backdating). Returns the subject (RFC 2253).
pub fn check_one_time_certificate(pem: &str, work: &Path) -> String {
    std::fs::create_dir_all(work).unwrap();
    let cert_path = work.join("signer.pem");
    std::fs::write(&cert_path, pem).unwrap();
    let subject = openssl_out(
        work,
        &format!(
            "openssl x509 -in {} -noout -subject -nameopt RFC2253",
            cert_path.display()
        ),
    );
    assert!(subject.contains("CN=Mari Maasikas"), "{subject}");
    assert!(
        subject.contains("serialNumber=PNOEE-49005170001"),
        "{subject}"
    );
    let cert = <x509_cert::Certificate as der::DecodePem>::from_pem(pem).unwrap();
    let v = &cert.tbs_certificate.validity;
    let secs = v.not_after.to_unix_duration().as_secs() - v.not_before.to_unix_duration().as_secs();
    assert!(
        (60..=90).contains(&secs),
        "one-time certificate valid for {secs} s (60 s + backdating expected)"
    );
    subject.trim().to_string()
}
