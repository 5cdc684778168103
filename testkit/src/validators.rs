//! Independent validators we did not write, run as the tests need them: pkilint's linters, with
//! their JSON report parsed and their exit status checked (a validator check never passes on an
//! empty or unparseable answer, and never skips).

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
