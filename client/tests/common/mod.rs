//! Shared setup of the client's integration tests: external tools (openssl, pyHanko, pdfsig,
//! qpdf) and a test PKI made with the openssl CLI.
//!
//! Each test binary uses a part of it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

/// How to install what a test needs.
pub const HINT: &str = "run `scripts/install-deps.sh --with-test-tools`";

/// A program on PATH, or a failure with the install hint.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: {HINT}"))
}

/// pyHanko from the validators' virtualenv (`$ESIGD_VENV`, else `~/.cache/esigd-venv`).
pub fn pyhanko() -> PathBuf {
    let venv = std::env::var_os("ESIGD_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|c| PathBuf::from(c).join("esigd-venv"))
                .filter(|p| p.exists())
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/esigd-venv")))
        .expect("ESIGD_VENV or HOME is set");
    let p = venv.join("bin/pyhanko");
    assert!(p.is_file(), "{} is missing: {HINT}", p.display());
    p
}

/// stdout and stderr of a finished command.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` and fails the test unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} ({HINT})"));
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    o
}

/// `openssl ARGS` in `dir`, which must succeed.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(tool("openssl")).current_dir(dir).args(args))
}

/// A unique file-name stem.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A test CA run by `openssl ca` (so it has an index for `openssl ocsp` and `-gencrl`):
/// a P-256 root `ca.pem`, a TSA `tsa.pem` (critical EKU timeStamping, `tsa.cnf` for
/// `openssl ts -reply`), a delegated OCSP responder `ocsp.pem` (EKU OCSPSigning,
/// `id-pkix-ocsp-nocheck`), and signers issued on demand. Files live in `dir`.
///
/// Like esigd's, the TSA and ordinary signer certificates name a CRL distribution point and an
/// OCSP responder (AIA), here on the discard port 127.0.0.1:9: pyhanko-certvalidator only
/// considers OCSP responses for certificates with an AIA OCSP entry. One-time signer
/// certificates (`onetime_ext`) carry `noRevAvail` and neither.
pub struct TestCa {
    /// The working directory (deleted on drop).
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// Creates the CA, the TSA and the OCSP responder.
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = &dir.path().to_path_buf();
        std::fs::create_dir(d.join("newcerts")).expect("newcerts");
        std::fs::write(d.join("index.txt"), "").expect("index.txt");
        std::fs::write(d.join("serial"), "1000\n").expect("serial");
        std::fs::write(d.join("crlnumber"), "01\n").expect("crlnumber");
        std::fs::write(
            d.join("ca.cnf"),
            format!(
                "[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndir = {}\n\
                 database = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
                 serial = $dir/serial\ncrlnumber = $dir/crlnumber\ncertificate = $dir/ca.pem\n\
                 private_key = $dir/ca.key\ndefault_md = sha256\ndefault_days = 365\n\
                 default_crl_days = 7\npolicy = policy_any\nunique_subject = no\n\
                 preserve = yes\ncrl_extensions = crl_ext\n\
                 [ policy_any ]\ncommonName = supplied\norganizationName = optional\n\
                 [ crl_ext ]\nauthorityKeyIdentifier = keyid\n\
                 [ signer_ext ]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,nonRepudiation\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
                 crlDistributionPoints = URI:http://127.0.0.1:9/pki/crl\n\
                 authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp\n\
                 [ onetime_ext ]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,nonRepudiation\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
                 2.5.29.56 = ASN1:NULL\n\
                 [ tsa_ext ]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = critical,timeStamping\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 crlDistributionPoints = URI:http://127.0.0.1:9/pki/crl\n\
                 authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp\n\
                 [ ocsp_ext ]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = OCSPSigning\n\
                 noCheck = ignored\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
                d.display()
            ),
        )
        .expect("ca.cnf");
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ca.key",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=esig LT Test Root CA/O=esigd tests",
                "-days",
                "3650",
                "-sha256",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "ca.pem",
            ],
        );
        let ca = TestCa { dir };
        ca.issue("tsa", "esig LT Test TSA", "tsa_ext");
        ca.issue("ocsp", "esig LT Test OCSP responder", "ocsp_ext");
        std::fs::write(d.join("tsaserial"), "01\n").expect("tsaserial");
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/tsaserial\n\
                 crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n\
                 signer_key = $dir/tsa.key\nsigner_digest = sha256\n\
                 default_policy = 1.3.6.1.4.1.99999.1\ndigests = sha256, sha384, sha512\n\
                 accuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\n\
                 ess_cert_id_alg = sha256\n",
                d.display()
            ),
        )
        .expect("tsa.cnf");
        ca
    }

    /// A file in the CA's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `NAME.pem` (key `NAME.key`, P-256) for `/CN=cn` with the extension section
    /// `ext` of `ca.cnf` (`signer_ext`, `onetime_ext` with noRevAvail, `tsa_ext`,
    /// `ocsp_ext`) and records it in the index.
    pub fn issue(&self, name: &str, cn: &str, ext: &str) -> PathBuf {
        let d = self.dir.path();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={cn}/O=esigd tests"),
                "-out",
                &csr,
            ],
        );
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-extensions",
                ext,
                "-notext",
                "-in",
                &csr,
                "-out",
                &pem,
            ],
        );
        self.path(&pem)
    }

    /// Revokes `NAME.pem` in the index.
    pub fn revoke(&self, name: &str) {
        openssl(
            self.dir.path(),
            &["ca", "-config", "ca.cnf", "-revoke", &format!("{name}.pem")],
        );
    }

    /// The CA's current CRL (DER), from `openssl ca -gencrl`.
    pub fn crl(&self) -> Vec<u8> {
        let d = self.dir.path();
        let n = unique();
        let (pem, der) = (format!("crl{n}.pem"), format!("crl{n}.der"));
        openssl(d, &["ca", "-gencrl", "-config", "ca.cnf", "-out", &pem]);
        openssl(d, &["crl", "-in", &pem, "-outform", "DER", "-out", &der]);
        std::fs::read(d.join(der)).expect("the CRL")
    }

    /// The delegated responder's answer (DER `OCSPResponse`, valid 7 days) to the DER
    /// `OCSPRequest` `request`, from `openssl ocsp -index`.
    pub fn ocsp_answer(&self, request: &[u8]) -> Vec<u8> {
        let d = self.dir.path();
        let n = unique();
        let (req, resp) = (format!("ocsp{n}.req"), format!("ocsp{n}.resp"));
        std::fs::write(d.join(&req), request).expect("the OCSP request");
        openssl(
            d,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ocsp.pem",
                "-rkey",
                "ocsp.key",
                "-CA",
                "ca.pem",
                "-reqin",
                &req,
                "-respout",
                &resp,
                "-ndays",
                "7",
            ],
        );
        std::fs::read(d.join(resp)).expect("the OCSP response")
    }

    /// An OCSP response for `NAME.pem` (the request made by `openssl ocsp -reqout`).
    pub fn ocsp_for(&self, name: &str) -> Vec<u8> {
        let d = self.dir.path();
        let req = format!("ocsp{}.req", unique());
        openssl(
            d,
            &[
                "ocsp",
                "-issuer",
                "ca.pem",
                "-cert",
                &format!("{name}.pem"),
                "-no_nonce",
                "-reqout",
                &req,
            ],
        );
        self.ocsp_answer(&std::fs::read(d.join(req)).expect("the OCSP request"))
    }

    /// The TSA's `TimeStampResp` (DER) to the DER `TimeStampReq` `query`.
    pub fn tsa_answer(&self, query: &[u8]) -> Vec<u8> {
        let d = self.dir.path();
        let n = unique();
        let (q, r) = (format!("q{n}.tsq"), format!("r{n}.tsr"));
        std::fs::write(d.join(&q), query).expect("the query");
        openssl(
            d,
            &[
                "ts",
                "-reply",
                "-config",
                "tsa.cnf",
                "-queryfile",
                &q,
                "-out",
                &r,
            ],
        );
        std::fs::read(d.join(r)).expect("the time-stamp response")
    }

    /// An RFC 3161 token (DER `TimeStampToken`) over the SHA-256 `digest`.
    pub fn timestamp_token(&self, digest: &[u8]) -> Vec<u8> {
        let d = self.dir.path();
        let n = unique();
        let (q, t) = (format!("q{n}.tsq"), format!("t{n}.tst"));
        openssl(
            d,
            &[
                "ts",
                "-query",
                "-digest",
                &hex::encode(digest),
                "-sha256",
                "-cert",
                "-out",
                &q,
            ],
        );
        openssl(
            d,
            &[
                "ts",
                "-reply",
                "-config",
                "tsa.cnf",
                "-queryfile",
                &q,
                "-token_out",
                "-out",
                &t,
            ],
        );
        std::fs::read(d.join(t)).expect("the token")
    }

    /// `NAME.pem` as DER.
    pub fn cert_der(&self, name: &str) -> Vec<u8> {
        let d = self.dir.path();
        let der = format!("{name}{}.der", unique());
        openssl(
            d,
            &[
                "x509",
                "-in",
                &format!("{name}.pem"),
                "-outform",
                "DER",
                "-out",
                &der,
            ],
        );
        std::fs::read(d.join(der)).expect("the certificate")
    }
}

pub mod pdfgen;

/// A one-page PDF with `text` ([`pdfgen::sample_pdf`]).
pub fn simple_pdf(text: &str) -> Vec<u8> {
    pdfgen::sample_pdf(&[text], 0)
}

// ---------------------------------------------------------------------------------------------
// The PAdES / ASiC-E test PKI and the signing service stand-in (pades.rs, asice.rs)

use der::DecodePem;
use esig::pdf::{self, PrepareOptions, PreparedPdf};
use esigd_formats::{DigestAlgorithm, Document, Format, SignRequest};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use tempfile::TempDir;
use x509_cert::Certificate;

/// The Python of the validators' virtualenv (next to [`pyhanko`]).
pub fn venv_python() -> PathBuf {
    pyhanko().with_file_name("python")
}

/// A P-256 root CA, a P-256 signer and a TSA with critical EKU timeStamping, made with the
/// openssl CLI in a temporary directory; the signer's key signs in software.
pub struct Pki {
    /// The working directory (deleted on drop).
    pub dir: TempDir,
    /// The signer's key.
    pub key: SigningKey,
    /// The signer's certificate.
    pub cert: Certificate,
}

impl Pki {
    /// Creates the PKI.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("signer.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        std::fs::write(
            d.join("tsa.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        for k in ["ca", "signer", "tsa"] {
            openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &format!("{k}.key"),
                ],
            );
        }
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=esig Test Root CA/O=esigd tests",
                "-days",
                "3650",
                "-sha256",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "ca.pem",
            ],
        );
        for (k, cn) in [("signer", "esig Test Signer"), ("tsa", "esig Test TSA")] {
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{k}.key"),
                    "-subj",
                    &format!("/CN={cn}/O=esigd tests"),
                    "-out",
                    &format!("{k}.csr"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{k}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "365",
                    "-sha256",
                    "-extfile",
                    &format!("{k}.ext"),
                    "-out",
                    &format!("{k}.pem"),
                ],
            );
        }
        std::fs::write(d.join("tsaserial"), "01\n").unwrap();
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/tsaserial\n\
                 crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n\
                 signer_key = $dir/tsa.key\nsigner_digest = sha256\n\
                 default_policy = 1.3.6.1.4.1.99999.1\ndigests = sha256, sha384, sha512\n\
                 accuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\n\
                 ess_cert_id_alg = sha256\n",
                d.display()
            ),
        )
        .unwrap();
        Pki::with_signer(dir, "signer")
    }

    /// A PKI over an existing directory with `tsa.cnf`, `ca.pem` and `NAME.key`/`NAME.pem`
    /// for the signer (e.g. a [`TestCa`]'s).
    pub fn with_signer(dir: TempDir, name: &str) -> Pki {
        let d = dir.path();
        let key_pem = std::fs::read_to_string(d.join(format!("{name}.key"))).unwrap();
        let key = SigningKey::from_pkcs8_pem(&key_pem).unwrap();
        let cert =
            Certificate::from_pem(std::fs::read(d.join(format!("{name}.pem"))).unwrap()).unwrap();
        Pki { dir, key, cert }
    }

    /// A file in the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An RFC 3161 token over SHA-256(`input`) from `openssl ts -reply`.
    pub fn timestamp(&self, input: &[u8]) -> Vec<u8> {
        let d = self.dir.path();
        let imprint = hex::encode(DigestAlgorithm::Sha256.digest(input));
        let n = unique();
        let (q, t) = (format!("q{n}.tsq"), format!("t{n}.tst"));
        openssl(
            d,
            &[
                "ts", "-query", "-digest", &imprint, "-sha256", "-cert", "-out", &q,
            ],
        );
        openssl(
            d,
            &[
                "ts",
                "-reply",
                "-config",
                "tsa.cnf",
                "-queryfile",
                &q,
                "-token_out",
                "-out",
                &t,
            ],
        );
        std::fs::read(d.join(t)).unwrap()
    }

    /// What esigd does for `format` over `documents`: the signature, B-T when `timestamp`,
    /// else B-B.
    pub fn sign(&self, format: Format, documents: &[Document], timestamp: bool) -> Vec<u8> {
        self.sign_at(format, documents, SystemTime::now(), timestamp)
    }

    fn sign_at(
        &self,
        format: Format,
        documents: &[Document],
        time: SystemTime,
        timestamp: bool,
    ) -> Vec<u8> {
        let prepared = esigd_formats::prepare(
            format,
            &SignRequest {
                digest_algorithm: DigestAlgorithm::Sha256,
                documents,
                signer: &self.cert,
                chain: &[],
                time,
            },
        )
        .unwrap();
        let sig: DerSignature = self.key.sign(prepared.to_be_signed());
        let signed = prepared.finish(sig.as_bytes()).unwrap();
        if !timestamp {
            return signed.bytes().to_vec();
        }
        let token = self.timestamp(&signed.timestamp_input());
        signed.add_timestamp(&token).unwrap()
    }

    /// What esigd does for format PAdES, hashType SHA2-256: the CMS over `digest`, B-T.
    pub fn sign_pades(&self, digest: &[u8], time: SystemTime) -> Vec<u8> {
        self.sign_pades_level(digest, time, true)
    }

    /// The PAdES CMS over `digest`, B-T when `timestamp`, else B-B.
    pub fn sign_pades_level(&self, digest: &[u8], time: SystemTime, timestamp: bool) -> Vec<u8> {
        let docs = [Document {
            name: "document.pdf".into(),
            media_type: "application/pdf".into(),
            digest: digest.to_vec(),
        }];
        self.sign_at(Format::Pades, &docs, time, timestamp)
    }

    /// prepare → sign → embed, checking that the prepared bytes extend `original`.
    pub fn sign_pdf(&self, original: &[u8], options: &PrepareOptions) -> (PreparedPdf, Vec<u8>) {
        let prepared = pdf::prepare(original, options).unwrap();
        assert!(
            prepared.bytes.starts_with(original),
            "the original is not a prefix of the prepared file"
        );
        let cms = self.sign_pades(&prepared.digest, options.signing_time);
        let signed = pdf::embed(&prepared.bytes, &cms).unwrap();
        assert_eq!(signed.len(), prepared.bytes.len());
        let [_, a, b, _] = prepared.byte_range;
        assert_eq!(&signed[..a], &prepared.bytes[..a]);
        assert_eq!(&signed[b..], &prepared.bytes[b..]);
        (prepared, signed)
    }
}
