//! Shared helpers of the formats crate's validator tests: the Python venv with the validators,
//! running external tools with useful failure messages, and a test PKI made with the `openssl`
//! CLI (root CA, signer, TSA with a critical timeStamping EKU) that also answers time-stamp
//! requests (`openssl ts -reply`) and checks tokens (`openssl ts -verify`).
//!
//! A missing tool FAILS the test with the install hint; validator checks are never skipped.
//! Each test file uses a part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The fix for a missing validator or tool.
pub(crate) const INSTALL_HINT: &str = "run `scripts/install-deps.sh --with-test-tools`";

/// The Python virtualenv with the validators: `$ESIGD_VENV`, else `$XDG_CACHE_HOME/esigd-venv`,
/// else `$HOME/.cache/esigd-venv` (where `scripts/install-deps.sh --with-test-tools` puts it).
/// Panics with the fix when it has no Python.
pub(crate) fn venv() -> PathBuf {
    let p = std::env::var_os("ESIGD_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("esigd-venv")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/esigd-venv")))
        .expect("ESIGD_VENV, XDG_CACHE_HOME or HOME is set");
    assert!(
        p.join("bin/python").exists(),
        "{} has no Python: {INSTALL_HINT} (it creates the venv from tests/requirements.txt)",
        p.display()
    );
    p
}

/// A `Command` for the venv's Python.
pub(crate) fn python() -> Command {
    Command::new(venv().join("bin/python"))
}

/// Fails with the install hint unless the venv's Python can import `module`.
pub(crate) fn require_python_module(module: &str) {
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

/// How a command ran, for failure messages.
pub(crate) fn describe(cmd: &Command, out: &Output) -> String {
    let mut s = format!("{:?}", cmd.get_program());
    for a in cmd.get_args() {
        let _ = write!(s, " {a:?}");
    }
    format!(
        "`{s}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and returns its output whatever its exit status; a program that cannot be started
/// fails with the install hint.
pub(crate) fn run_any(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {:?} ({e}): {INSTALL_HINT}", cmd.get_program()),
    }
}

/// Runs `cmd`, fails unless it exits with success, and returns its output.
pub(crate) fn run(cmd: &mut Command) -> Output {
    let out = run_any(cmd);
    assert!(out.status.success(), "{}", describe(cmd, &out));
    out
}

/// Runs `cmd`, fails unless it exits with an error whose stdout or stderr contains `expected`,
/// and returns its output (a refusal must be the expected one, not any crash).
pub(crate) fn run_refused(cmd: &mut Command, expected: &str) -> Output {
    let out = run_any(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains(expected),
        "expected a refusal mentioning {expected:?}, got: {}",
        describe(cmd, &out)
    );
    out
}

/// A `Command` for the `openssl` CLI (Debian package `openssl`).
pub(crate) fn openssl() -> Command {
    Command::new("openssl")
}

/// Key types the test PKI can issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAlg {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
    /// RSA 2048.
    Rsa2048,
}

impl KeyAlg {
    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            KeyAlg::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyAlg::P384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyAlg::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        }
    }
}

/// A key (PKCS#8 PEM) and its certificate (PEM and DER) in the test PKI's directory.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The private key, PKCS#8 PEM.
    pub(crate) key: PathBuf,
    /// The certificate, PEM.
    pub(crate) cert_pem: PathBuf,
    /// The certificate, DER.
    pub(crate) cert_der: PathBuf,
}

impl Issued {
    /// The private key's PEM text.
    pub(crate) fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).expect("key PEM readable")
    }

    /// The private key as PKCS#8 DER (`openssl pkcs8 -topk8 -nocrypt -outform DER`).
    pub(crate) fn key_pkcs8_der(&self) -> Vec<u8> {
        run(openssl()
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(&self.key))
        .stdout
    }

    /// The certificate's DER bytes.
    pub(crate) fn der(&self) -> Vec<u8> {
        std::fs::read(&self.cert_der).expect("certificate DER readable")
    }
}

/// A test PKI made with the `openssl` CLI in a temporary directory: a P-256 root CA, a P-256
/// signer (digitalSignature + nonRepudiation) and a P-256 TSA (critical EKU timeStamping) that
/// answers `openssl ts` requests.
#[derive(Debug)]
pub(crate) struct TestPki {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The root CA (self-signed).
    pub(crate) ca: Issued,
    /// The signer, issued by the root CA.
    pub(crate) signer: Issued,
    /// The TSA, issued by the root CA.
    pub(crate) tsa: Issued,
}

const OPENSSL_CNF: &str = r#"
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa]
default_tsa = tsa_config
[tsa_config]
dir = @DIR@
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.2.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"#;

impl TestPki {
    /// Makes the PKI in a fresh temporary directory.
    pub(crate) fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("openssl.cnf");
        let dir_str = dir.path().to_str().expect("a UTF-8 temp path");
        std::fs::write(&config, OPENSSL_CNF.replace("@DIR@", dir_str)).expect("config written");
        std::fs::write(dir.path().join("tsaserial"), "01\n").expect("serial written");
        let ca = Self::self_signed(dir.path(), &config, "ca", "Formats Test Root CA");
        let mut pki = TestPki {
            signer: ca.clone(),
            tsa: ca.clone(),
            ca,
            config,
            dir,
        };
        pki.signer = pki.issue("signer", "Formats Test Signer", KeyAlg::P256, "signer");
        pki.tsa = pki.issue("tsa", "Formats Test TSA", KeyAlg::P256, "tsa_ext");
        pki
    }

    /// The PKI's directory (also a good place for the test's files).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the PKI's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn genpkey(dir: &Path, name: &str, alg: KeyAlg) -> PathBuf {
        let key = dir.join(format!("{name}.key"));
        run(openssl()
            .arg("genpkey")
            .args(alg.genpkey_args())
            .arg("-out")
            .arg(&key));
        key
    }

    fn to_der(dir: &Path, name: &str) -> PathBuf {
        let der = dir.join(format!("{name}.der"));
        run(openssl()
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.join(format!("{name}.pem")))
            .arg("-out")
            .arg(&der));
        der
    }

    fn self_signed(dir: &Path, config: &Path, name: &str, cn: &str) -> Issued {
        let key = Self::genpkey(dir, name, KeyAlg::P256);
        let cert_pem = dir.join(format!("{name}.pem"));
        run(openssl()
            .args([
                "req",
                "-x509",
                "-new",
                "-sha256",
                "-days",
                "3650",
                "-extensions",
                "v3_ca",
            ])
            .arg("-config")
            .arg(config)
            .arg("-key")
            .arg(&key)
            .arg("-subj")
            .arg(format!("/CN={cn}/O=esigd tests"))
            .arg("-out")
            .arg(&cert_pem));
        let cert_der = Self::to_der(dir, name);
        Issued {
            key,
            cert_pem,
            cert_der,
        }
    }

    /// Issues a certificate from the root CA: `ext_section` is a section of the PKI's
    /// `openssl.cnf` (`signer`, `tsa_ext`, or `v3_ca`).
    pub(crate) fn issue(&self, name: &str, cn: &str, alg: KeyAlg, ext_section: &str) -> Issued {
        let dir = self.dir.path();
        let key = Self::genpkey(dir, name, alg);
        let csr = dir.join(format!("{name}.csr"));
        run(openssl()
            .args(["req", "-new", "-sha256"])
            .arg("-config")
            .arg(&self.config)
            .arg("-key")
            .arg(&key)
            .arg("-subj")
            .arg(format!("/CN={cn}/O=esigd tests"))
            .arg("-out")
            .arg(&csr));
        let cert_pem = dir.join(format!("{name}.pem"));
        run(openssl()
            .args(["x509", "-req", "-sha256", "-days", "365", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&self.ca.cert_pem)
            .arg("-CAkey")
            .arg(&self.ca.key)
            .arg("-extfile")
            .arg(&self.config)
            .arg("-extensions")
            .arg(ext_section)
            .arg("-out")
            .arg(&cert_pem));
        let cert_der = Self::to_der(dir, name);
        Issued {
            key,
            cert_pem,
            cert_der,
        }
    }

    /// A time-stamp token (DER) from the test TSA over SHA-256 of `data`, made with
    /// `openssl ts -query -data` and `openssl ts -reply -token_out` (the TSA certificate is
    /// included).
    pub(crate) fn timestamp(&self, data: &[u8]) -> Vec<u8> {
        let n = unique();
        let data_file = self.path(&format!("ts-data-{n}.bin"));
        std::fs::write(&data_file, data).expect("data written");
        let query = self.path(&format!("ts-{n}.tsq"));
        run(openssl()
            .args(["ts", "-query", "-sha256", "-cert", "-data"])
            .arg(&data_file)
            .arg("-out")
            .arg(&query));
        self.reply(&query, n)
    }

    /// A time-stamp token (DER) from the test TSA over a ready SHA-256 `digest`
    /// (`openssl ts -query -digest`).
    pub(crate) fn timestamp_digest(&self, digest: &[u8]) -> Vec<u8> {
        let n = unique();
        let query = self.path(&format!("ts-{n}.tsq"));
        run(openssl()
            .args(["ts", "-query", "-sha256", "-cert", "-digest"])
            .arg(hex::encode(digest))
            .arg("-out")
            .arg(&query));
        self.reply(&query, n)
    }

    fn reply(&self, query: &Path, n: u64) -> Vec<u8> {
        let token = self.path(&format!("ts-{n}.der"));
        run(openssl()
            .args(["ts", "-reply", "-token_out"])
            .arg("-config")
            .arg(&self.config)
            .arg("-queryfile")
            .arg(query)
            .arg("-out")
            .arg(&token));
        std::fs::read(&token).expect("token written")
    }

    /// `openssl ts -verify` of a token (DER file) over the bytes in `data_file`, trusting the root
    /// CA (the token carries the TSA certificate). Fails the test with openssl's answer unless it
    /// prints `Verification: OK`.
    pub(crate) fn verify_timestamp(&self, token_file: &Path, data_file: &Path) {
        let out = run(&mut self.verify_timestamp_command(token_file, data_file));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verification: OK"),
            "openssl ts -verify: {text}"
        );
    }

    /// The `openssl ts -verify` command of [`TestPki::verify_timestamp`] (for refusal tests).
    pub(crate) fn verify_timestamp_command(&self, token_file: &Path, data_file: &Path) -> Command {
        let mut cmd = openssl();
        cmd.args(["ts", "-verify", "-token_in", "-in"])
            .arg(token_file)
            .arg("-data")
            .arg(data_file)
            .arg("-CAfile")
            .arg(&self.ca.cert_pem);
        cmd
    }
}

/// A process-unique number for file names.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Writes `bytes` to `name` in `dir` and returns the path.
pub(crate) fn write_file(dir: &Path, name: impl AsRef<OsStr>, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name.as_ref());
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    p
}
