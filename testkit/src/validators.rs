//! Independent validators we did not write, run as the tests need them: pkilint's linters, with
//! their JSON report parsed and their exit status checked; pyHanko's validation API, with its status
//! fields parsed ([`pyhanko_validate_cms`], [`pyhanko_validate_tst`]); and the reasons an openssl
//! refusal must give ([`assert_openssl_refused`]). A validator check never passes on an empty or
//! unparseable answer, and never skips.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::venv;

/// Severity of a pkilint finding, most severe first (pkilint's `ValidationFindingSeverity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Severity {
    /// pkilint's name for the severity (`FATAL`, `ERROR`, ...).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "FATAL" => Severity::Fatal,
            "ERROR" => Severity::Error,
            "WARNING" => Severity::Warning,
            "NOTICE" => Severity::Notice,
            "INFO" => Severity::Info,
            "DEBUG" => Severity::Debug,
            _ => return None,
        })
    }
}

/// One pkilint finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The linter (`lint_pkix_cert`, ...).
    pub tool: String,
    /// File name of the linted document.
    pub file: String,
    pub severity: Severity,
    /// Finding code, e.g. `pkix.ee_certificate_keycertsign_keyusage_set`.
    pub code: String,
    /// Where in the document, e.g. `certificate.tbsCertificate.extensions.2.extnValue.keyUsage`.
    pub node_path: String,
    /// The pkilint validator that reported it.
    pub validator: String,
    pub message: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} ({:?}) @ {} [{}]",
            self.tool, self.file, self.code, self.severity, self.node_path, self.validator
        )?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// The path of a pkilint command; FAILS with the install hint when it is missing (a validator check is
/// never skipped).
pub fn pkilint_tool(tool: &str) -> PathBuf {
    let path = venv().join("bin").join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/install-deps.sh --with-test-tools` (pkilint into $ESIGD_VENV)",
        path.display()
    );
    path
}

/// Runs `<tool> lint <args> -s NOTICE -f JSON <file>` and returns every finding at NOTICE or above.
///
/// pkilint's `lint` commands print `{"results": [{"node_path", "validator", "finding_descriptions":
/// [{"severity", "code", "message"}]}]}` and exit with the number of findings at or above the `-s`
/// threshold (capped at 255): 0 means none. An argparse error (exit 2) or a document that does not load
/// (exit 1) print no JSON, and a crash prints a traceback, so this panics unless stdout is exactly that
/// JSON document and the exit status equals the number of findings in it.
pub fn pkilint(tool: &str, args: &[&str], file: &Path) -> Vec<Finding> {
    let bin = pkilint_tool(tool);
    let out = Command::new(&bin)
        .arg("lint")
        .args(args)
        .args(["-s", "NOTICE", "-f", "JSON"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || {
        format!(
            "{tool} lint {args:?} {}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            file.display(),
            out.status
        )
    };
    let file_name = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let findings = parse_pkilint_json(tool, &file_name, &stdout)
        .unwrap_or_else(|e| panic!("unparseable pkilint output ({e}): {}", context()));
    let expected_status = i32::try_from(findings.len().min(255)).unwrap();
    assert_eq!(
        out.status.code(),
        Some(expected_status),
        "pkilint's exit status does not match the {} findings it printed: {}",
        findings.len(),
        context()
    );
    eprintln!(
        "== {tool} {args:?} {}: {} findings",
        file.display(),
        findings.len()
    );
    for f in &findings {
        eprintln!("   {f}");
    }
    if !stderr.trim().is_empty() {
        eprintln!("   stderr: {stderr}");
    }
    findings
}

/// Parses pkilint's `-f JSON` report; every field must be there with its type.
pub fn parse_pkilint_json(tool: &str, file: &str, json: &str) -> Result<Vec<Finding>, String> {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let str_field = |v: &Value, key: &str| -> Result<String, String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{key}` missing or not a string in {v}"))
    };
    let results = doc
        .get("results")
        .and_then(Value::as_array)
        .ok_or("no `results` array")?;
    let mut findings = Vec::new();
    for result in results {
        let node_path = str_field(result, "node_path")?;
        let validator = str_field(result, "validator")?;
        let descriptions = result
            .get("finding_descriptions")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no `finding_descriptions` array in {result}"))?;
        if descriptions.is_empty() {
            return Err(format!("a result without findings: {result}"));
        }
        for d in descriptions {
            let severity = str_field(d, "severity")?;
            let message = match d.get("message") {
                Some(Value::Null) => None,
                Some(Value::String(m)) => Some(m.clone()),
                _ => return Err(format!("`message` missing or not a string/null in {d}")),
            };
            findings.push(Finding {
                tool: tool.to_owned(),
                file: file.to_owned(),
                severity: Severity::parse(&severity)
                    .ok_or_else(|| format!("unknown severity {severity:?}"))?,
                code: str_field(d, "code")?,
                node_path: node_path.clone(),
                validator: validator.clone(),
                message,
            });
        }
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------------
// pyHanko

/// The pyHanko validation script (`include_str!`): runs pyHanko's own API and prints one
/// `PYHANKO-REPORT <json>` line with the status fields (see [`pyhanko_validate_cms`]).
const PYHANKO_REPORT_PY: &str = include_str!("pyhanko_report.py");

/// What pyHanko reports for one signature (the CMS signer or a time-stamp token's TSA): its
/// `SignatureStatus` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyHankoStatus {
    /// The signed data matches: the message digest (or, for a token, the expected imprint).
    pub intact: bool,
    /// The signature value verifies with the signer's key.
    pub valid: bool,
    /// Intact, valid, and the signer's certificate chains to the trust anchor for its key usage.
    pub trusted: bool,
    /// pyHanko's AdES sub-indication when the chain is not trusted (e.g. `NO_CERTIFICATE_CHAIN_FOUND`).
    pub trust_problem: Option<String>,
    /// Subject of the signer's certificate, as pyHanko prints it (`Common Name: …, …`).
    pub signer_subject: String,
    /// Digest algorithm of the signature (`sha256`, …).
    pub md_algorithm: String,
}

impl PyHankoStatus {
    /// Intact, valid and trusted (pyHanko's bottom line for one signature).
    pub fn ok(&self) -> bool {
        self.intact && self.valid && self.trusted && self.trust_problem.is_none()
    }
}

/// pyHanko's result for an RFC 3161 time-stamp token, with the TSTInfo fields pyHanko decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyHankoTimestamp {
    /// The token's signature status (`intact` includes the expected message imprint).
    pub status: PyHankoStatus,
    /// genTime, ISO 8601.
    pub gen_time: String,
    /// TSA policy OID (dotted).
    pub policy: String,
    /// Serial number (decimal).
    pub serial: String,
    /// Message imprint hash algorithm (`sha256`, …) and value (hex).
    pub imprint_algorithm: String,
    pub imprint: String,
}

/// pyHanko's result for a detached CMS / CAdES signature over a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyHankoReport {
    /// The signer's status.
    pub signature: PyHankoStatus,
    /// pyHanko's `bottom_line`: signature intact, valid, trusted, and any time-stamp too.
    pub bottom_line: bool,
    /// The signing-time attribute, ISO 8601, if any.
    pub signer_reported_time: Option<String>,
    /// Signature-time-stamp tokens in the SignerInfo's unsigned attributes.
    pub timestamp_tokens: usize,
    /// pyHanko's validation of the (first) signature-time-stamp token, if there is one.
    pub timestamp: Option<PyHankoTimestamp>,
}

impl PyHankoReport {
    /// The signature is intact, valid, trusted and carries one time-stamp that is intact, valid and trusted.
    pub fn timestamp_valid(&self) -> bool {
        self.timestamp_tokens == 1 && self.timestamp.as_ref().is_some_and(|t| t.status.ok())
    }
}

/// Validates the detached CMS signature `sig` (DER or PEM) over `doc` with pyHanko's
/// `async_validate_detached_cms`, trusting the certificates in `trust`, at `moment` (Unix seconds;
/// `None` = now), without revocation fetching. Panics with the install hint when the venv is missing,
/// and with pyHanko's output when it fails or prints no well-formed report: this never passes on an
/// answer it cannot read. Whether the signature is good is for the caller to assert on the report.
pub fn pyhanko_validate_cms(
    sig: &Path,
    doc: &Path,
    trust: &Path,
    moment: Option<u64>,
) -> PyHankoReport {
    let json = run_pyhanko("cms", sig, doc.as_os_str(), trust, moment);
    parse_pyhanko_report(&json)
        .unwrap_or_else(|e| panic!("unparseable pyHanko report ({e}):\n{json}"))
}

/// Validates the RFC 3161 token `token` (a DER ContentInfo, `openssl ts -token_out`) with pyHanko's
/// `validate_tst_signed_data` against `expected_imprint` (the digest the token must be over), trusting
/// `trust`. Same failure rules as [`pyhanko_validate_cms`].
pub fn pyhanko_validate_tst(
    token: &Path,
    expected_imprint: &[u8],
    trust: &Path,
    moment: Option<u64>,
) -> PyHankoTimestamp {
    let imprint = hex::encode(expected_imprint);
    let json = run_pyhanko("tst", token, imprint.as_ref(), trust, moment);
    parse_pyhanko_timestamp(&json)
        .unwrap_or_else(|e| panic!("unparseable pyHanko report ({e}):\n{json}"))
}

/// Runs the script with the venv's Python; returns the JSON of its one report line.
fn run_pyhanko(
    mode: &str,
    input: &Path,
    arg: &std::ffi::OsStr,
    trust: &Path,
    moment: Option<u64>,
) -> String {
    let python = venv().join("bin/python");
    let script = tempfile::Builder::new()
        .prefix("pyhanko_report")
        .suffix(".py")
        .tempfile()
        .unwrap();
    std::fs::write(script.path(), PYHANKO_REPORT_PY).unwrap();
    let moment = moment.map_or_else(|| "now".to_owned(), |m| m.to_string());
    let out = Command::new(&python)
        .args(["-W", "ignore::DeprecationWarning"])
        .arg(script.path())
        .arg(mode)
        .arg(input)
        .arg(arg)
        .arg(trust)
        .arg(&moment)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}: run `scripts/install-deps.sh --with-test-tools`",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "pyHanko {mode} {} ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        input.display(),
        out.status
    );
    if stderr.contains("ModuleNotFoundError") {
        panic!(
            "pyHanko is not in the venv: run `scripts/install-deps.sh --with-test-tools`\n{context}"
        );
    }
    assert!(out.status.success(), "pyHanko failed: {context}");
    let mut reports = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PYHANKO-REPORT "));
    let json = reports
        .next()
        .unwrap_or_else(|| panic!("pyHanko printed no report: {context}"));
    assert!(reports.next().is_none(), "more than one report: {context}");
    eprintln!("== {context}");
    json.to_owned()
}

fn pyhanko_bool(v: &serde_json::Value, key: &str) -> Result<bool, String> {
    v.get(key)
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| format!("`{key}` missing or not a boolean in {v}"))
}

fn pyhanko_str(v: &serde_json::Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` missing or not a string in {v}"))
}

fn pyhanko_opt_str(v: &serde_json::Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(format!("`{key}` missing or not a string/null in {v}")),
    }
}

fn pyhanko_mode(v: &serde_json::Value, mode: &str) -> Result<(), String> {
    let got = pyhanko_str(v, "mode")?;
    if got == mode {
        Ok(())
    } else {
        Err(format!("a `{got}` report where `{mode}` was expected"))
    }
}

fn pyhanko_status(v: &serde_json::Value) -> Result<PyHankoStatus, String> {
    let s = v
        .get("status")
        .ok_or_else(|| format!("no `status` in {v}"))?;
    Ok(PyHankoStatus {
        intact: pyhanko_bool(s, "intact")?,
        valid: pyhanko_bool(s, "valid")?,
        trusted: pyhanko_bool(s, "trusted")?,
        trust_problem: pyhanko_opt_str(s, "trust_problem")?,
        signer_subject: pyhanko_str(s, "signer_subject")?,
        md_algorithm: pyhanko_str(s, "md_algorithm")?,
    })
}

fn pyhanko_tst(v: &serde_json::Value) -> Result<PyHankoTimestamp, String> {
    pyhanko_mode(v, "tst")?;
    Ok(PyHankoTimestamp {
        status: pyhanko_status(v)?,
        gen_time: pyhanko_str(v, "gen_time")?,
        policy: pyhanko_str(v, "policy")?,
        serial: pyhanko_str(v, "serial")?,
        imprint_algorithm: pyhanko_str(v, "imprint_algorithm")?,
        imprint: pyhanko_str(v, "imprint")?,
    })
}

/// Parses the report of a CMS validation; every field must be there with its type.
pub fn parse_pyhanko_report(json: &str) -> Result<PyHankoReport, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    pyhanko_mode(&v, "cms")?;
    let timestamp = match v.get("timestamp") {
        Some(serde_json::Value::Null) => None,
        Some(t @ serde_json::Value::Object(_)) => Some(pyhanko_tst(t)?),
        _ => return Err(format!("`timestamp` missing or not an object/null in {v}")),
    };
    let timestamp_tokens = v
        .get("timestamp_tokens")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("`timestamp_tokens` missing or not a count in {v}"))?;
    Ok(PyHankoReport {
        signature: pyhanko_status(&v)?,
        bottom_line: pyhanko_bool(&v, "bottom_line")?,
        signer_reported_time: pyhanko_opt_str(&v, "signer_reported_time")?,
        timestamp_tokens: usize::try_from(timestamp_tokens).map_err(|e| e.to_string())?,
        timestamp,
    })
}

/// Parses the report of a time-stamp token validation; every field must be there with its type.
pub fn parse_pyhanko_timestamp(json: &str) -> Result<PyHankoTimestamp, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    pyhanko_tst(&v)
}

// ---------------------------------------------------------------------------------------------------
// openssl refusals

/// `openssl cms -verify` of a signature over a changed document: the content digest does not match
/// (OpenSSL 3: `CMS_SignerInfo_verify_content:verification failure`, then `CMS_verify:content verify
/// error`, exit status 4). A missing file, a bad flag or an untrusted chain fail differently.
pub const CMS_CONTENT_MISMATCH: &[&str] = &[
    "CMS_SignerInfo_verify_content:verification failure",
    "CMS_verify:content verify error",
];

/// `openssl ts -verify` of a token over other data: `ts_check_imprints:message imprint mismatch`.
pub const TS_IMPRINT_MISMATCH: &[&str] = &[
    "ts_check_imprints:message imprint mismatch",
    "Verification: FAILED",
];

/// `openssl ts -verify` of a token without the TSA certificate when none is given (`-untrusted`):
/// `PKCS7_get0_signers:signer certificate not found`.
pub const TS_SIGNER_NOT_FOUND: &[&str] = &[
    "PKCS7_get0_signers:signer certificate not found",
    "Verification: FAILED",
];

/// `openssl verify` without the intermediate: `unable to get local issuer certificate` (error 20).
pub const VERIFY_NO_ISSUER: &[&str] =
    &["error 20 at 0 depth lookup: unable to get local issuer certificate"];

/// Asserts that an openssl run FAILED and for the expected reason: each of `reasons` is in its output
/// (so a failure for another reason, a missing file, a wrong flag, fails the test), and, when given,
/// with `exit_code`.
pub fn assert_openssl_refused(
    out: &std::process::Output,
    reasons: &[&str],
    exit_code: Option<i32>,
    what: &str,
) {
    let t = crate::text(out);
    assert!(!out.status.success(), "{what}: openssl succeeded:\n{t}");
    for r in reasons {
        assert!(
            t.contains(r),
            "{what}: openssl failed, but not with `{r}` ({}):\n{t}",
            out.status
        );
    }
    if let Some(code) = exit_code {
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}: unexpected openssl exit status:\n{t}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TST: &str = r#"{"mode": "tst", "status": {"intact": true, "valid": true, "trusted": true, "trust_problem": null, "signer_subject": "Common Name: tsa", "md_algorithm": "sha256"}, "gen_time": "2026-12-07T02:09:52+00:00", "policy": "1.2.3.4.1", "serial": "4", "imprint_algorithm": "sha256", "imprint": "30a4"}"#;

    fn cms(timestamp: &str) -> String {
        format!(
            r#"{{"mode": "cms", "status": {{"intact": true, "valid": true, "trusted": true, "trust_problem": null, "signer_subject": "Common Name: x", "md_algorithm": "sha256"}}, "bottom_line": true, "signer_reported_time": null, "timestamp_tokens": 1, "timestamp": {timestamp}}}"#
        )
    }

    #[test]
    fn pyhanko_reports_parse_with_every_field() {
        let t = parse_pyhanko_timestamp(TST).unwrap();
        assert!(t.status.ok());
        assert_eq!(t.policy, "1.2.3.4.1");
        let r = parse_pyhanko_report(&cms(TST)).unwrap();
        assert!(r.signature.ok() && r.bottom_line && r.timestamp_valid());
        let r = parse_pyhanko_report(&cms("null")).unwrap();
        assert!(
            !r.timestamp_valid(),
            "no token: the time-stamp is not valid"
        );
        let bad_ts = TST.replace(r#""intact": true"#, r#""intact": false"#);
        assert!(
            !parse_pyhanko_report(&cms(&bad_ts))
                .unwrap()
                .timestamp_valid()
        );
    }

    #[test]
    fn unparseable_or_incomplete_pyhanko_reports_are_errors() {
        for bad in [
            String::new(),
            "timestamp ok".to_owned(),
            "{}".to_owned(),
            TST.replace(r#""intact": true"#, r#""intact": "yes""#),
            TST.replace(r#""policy": "1.2.3.4.1", "#, ""),
            TST.replace(r#""trust_problem": null"#, r#""trust_problem": 3"#),
        ] {
            assert!(parse_pyhanko_timestamp(&bad).is_err(), "accepted {bad:?}");
        }
        assert!(
            parse_pyhanko_report(TST).is_err(),
            "a token report is no CMS report"
        );
        assert!(parse_pyhanko_timestamp(&cms("null")).is_err());
        assert!(parse_pyhanko_report(&cms("{}")).is_err());
        assert!(parse_pyhanko_report(&cms("\"yes\"")).is_err());
    }
}
