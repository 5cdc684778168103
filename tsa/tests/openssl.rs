//! Independent validation with the OpenSSL CLI: TSA responses (`openssl ts`), detached CMS
//! (`openssl cms -verify`) and CAdES-B-T signature time-stamps (`openssl ts -verify -token_in`).
//! Keys and certificates are made by openssl in a temp dir; signing uses in-memory RustCrypto keys.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use const_oid::ObjectIdentifier;
use der::{Decode, DecodePem, Encode};
use esigd_pki::cms::{self, ContentType, DigestAlgorithm, SignParams};
use esigd_pki::tsp::{FailureInfo, PkiStatus, TimeStampResp};
use esigd_tsa::{FixedClock, InMemorySerials, Tsa, TsaConfig};
use p256::pkcs8::DecodePrivateKey;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;

const CNF: &str = r#"
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_tsa ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer

[ v3_signer ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"#;

const POLICY: &str = "1.3.6.1.4.1.99999.1.1";

struct Pki {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, text) = openssl(dir, args);
    assert!(success, "openssl {args:?} failed:\n{text}");
    text
}

impl Pki {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("pki.cnf"), CNF).unwrap();
        let d = &dir;
        ok(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=Test Root CA/O=esigd",
                "-config",
                "pki.cnf",
                "-extensions",
                "v3_ca",
            ],
        );
        let leaf = |name: &str, newkey: &[&str], subj: &str, ext: &str| {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let mut args = vec!["req", "-new"];
            args.extend_from_slice(newkey);
            args.extend_from_slice(&[
                "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj, "-config", "pki.cnf",
            ]);
            ok(d, &args);
            ok(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "30",
                    "-extfile",
                    "pki.cnf",
                    "-extensions",
                    ext,
                ],
            );
            ok(
                d,
                &[
                    "pkcs8",
                    "-topk8",
                    "-nocrypt",
                    "-in",
                    &key,
                    "-outform",
                    "DER",
                    "-out",
                    &format!("{name}.p8"),
                ],
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        leaf("tsa", &ec, "/CN=Test TSA/O=esigd", "v3_tsa");
        leaf(
            "tsa_rsa",
            &["-newkey", "rsa:2048"],
            "/CN=Test TSA RSA/O=esigd",
            "v3_tsa",
        );
        leaf("signer", &ec, "/CN=Test Signer/O=esigd", "v3_signer");
        std::fs::write(dir.join("doc.txt"), b"The document to be time-stamped.\n").unwrap();
        Pki { _tmp: tmp, dir }
    }

    fn cert(&self, name: &str) -> Certificate {
        Certificate::from_pem(std::fs::read(self.dir.join(format!("{name}.pem"))).unwrap()).unwrap()
    }

    fn p256(&self, name: &str) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_pkcs8_der(
            &std::fs::read(self.dir.join(format!("{name}.p8"))).unwrap(),
        )
        .unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join(name), bytes).unwrap();
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }
}

fn config() -> TsaConfig {
    let mut c = TsaConfig::new(ObjectIdentifier::new_unwrap(POLICY));
    c.accuracy = Duration::from_millis(250);
    c
}

fn ec_tsa(
    pki: &Pki,
    clock: FixedClock,
) -> Tsa<p256::ecdsa::SigningKey, p256::ecdsa::DerSignature, InMemorySerials, FixedClock> {
    let mut cfg = config();
    cfg.tsa_name = Some(x509_cert::ext::pkix::name::GeneralName::DirectoryName(
        pki.cert("tsa").tbs_certificate.subject,
    ));
    Tsa::new(
        cfg,
        pki.cert("tsa"),
        pki.p256("tsa"),
        InMemorySerials::starting_at(0x1234),
        clock,
    )
    .unwrap()
}

fn synced() -> FixedClock {
    FixedClock::synchronized(Duration::from_millis(5))
}

#[test]
fn openssl_verifies_every_hash_nonce_certreq_combination() {
    let pki = Pki::new();
    let d = pki.dir.as_path();
    let tsa = ec_tsa(&pki, synced());
    for hash in [
        "-sha256",
        "-sha384",
        "-sha512",
        "-sha3-256",
        "-sha3-384",
        "-sha3-512",
    ] {
        for nonce in [true, false] {
            for cert_req in [true, false] {
                let mut q = vec!["ts", "-query", "-data", "doc.txt", hash, "-out", "req.tsq"];
                if !nonce {
                    q.push("-no_nonce");
                }
                if cert_req {
                    q.push("-cert");
                }
                ok(d, &q);
                let out = tsa.stamp(&pki.read("req.tsq"), SystemTime::now()).unwrap();
                assert!(out.rejection.is_none(), "{hash}: {:?}", out.rejection);
                pki.write("resp.tsr", &out.response_der);
                let text = ok(d, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
                let ctx = format!("{hash} nonce={nonce} cert={cert_req}:\n{text}");
                assert!(text.contains("Status: Granted."), "{ctx}");
                assert!(text.contains(&format!("Policy OID: {POLICY}")), "{ctx}");
                assert!(text.contains("Serial number: 0x"), "{ctx}");
                assert!(
                    text.contains("Accuracy: unspecified seconds, 0xFA millis, unspecified micros"),
                    "{ctx}"
                );
                assert!(text.contains("Ordering: no"), "{ctx}");
                assert!(text.contains("TSA: DirName:/CN=Test TSA/O=esigd"), "{ctx}");
                assert_eq!(text.contains("Nonce: unspecified"), !nonce, "{ctx}");
                let mut v = vec![
                    "ts", "-verify", "-data", "doc.txt", "-in", "resp.tsr", "-CAfile", "ca.pem",
                ];
                if !cert_req {
                    v.extend_from_slice(&["-untrusted", "tsa.pem"]);
                }
                let text = ok(d, &v);
                assert!(text.contains("Verification: OK"), "{ctx}\n{text}");
                // -queryfile also checks nonce, policy and imprint against the request.
                let mut v = vec![
                    "ts",
                    "-verify",
                    "-queryfile",
                    "req.tsq",
                    "-in",
                    "resp.tsr",
                    "-CAfile",
                    "ca.pem",
                ];
                if !cert_req {
                    v.extend_from_slice(&["-untrusted", "tsa.pem"]);
                }
                let text = ok(d, &v);
                assert!(text.contains("Verification: OK"), "{ctx}\n{text}");
                // Without the TSA certificate the token cannot verify: proves certReq was honoured.
                if !cert_req {
                    let (success, text) = openssl(
                        d,
                        &[
                            "ts", "-verify", "-data", "doc.txt", "-in", "resp.tsr", "-CAfile",
                            "ca.pem",
                        ],
                    );
                    assert!(
                        !success && !text.contains("Verification: OK"),
                        "{ctx}\n{text}"
                    );
                }
            }
        }
    }
    // Wrong data must fail.
    pki.write("other.txt", b"something else");
    let (success, text) = openssl(
        d,
        &[
            "ts",
            "-verify",
            "-data",
            "other.txt",
            "-in",
            "resp.tsr",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
    );
    assert!(!success, "{text}");
    assert!(text.contains("message imprint mismatch"), "{text}");
}

#[test]
fn openssl_verifies_rsa_tsa() {
    let pki = Pki::new();
    let d = pki.dir.as_path();
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&pki.read("tsa_rsa.p8")).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let tsa: Tsa<_, rsa::pkcs1v15::Signature, _, _> = Tsa::new(
        config(),
        pki.cert("tsa_rsa"),
        signer,
        InMemorySerials::starting_at(1),
        synced(),
    )
    .unwrap();
    ok(
        d,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let out = tsa.stamp(&pki.read("req.tsq"), SystemTime::now()).unwrap();
    pki.write("resp.tsr", &out.response_der);
    let text = ok(
        d,
        &[
            "ts",
            "-verify",
            "-queryfile",
            "req.tsq",
            "-in",
            "resp.tsr",
            "-CAfile",
            "ca.pem",
        ],
    );
    assert!(text.contains("Verification: OK"), "{text}");
}

fn reply_text(pki: &Pki, resp: &[u8]) -> String {
    pki.write("rej.tsr", resp);
    ok(&pki.dir, &["ts", "-reply", "-in", "rej.tsr", "-text"])
}

#[test]
fn openssl_reads_rejections() {
    let pki = Pki::new();
    let d = pki.dir.as_path();
    let tsa = ec_tsa(&pki, synced());
    let check = |req: &[u8], bit: FailureInfo, openssl_text: &str| {
        let out = tsa.stamp(req, SystemTime::now()).unwrap();
        let resp = TimeStampResp::from_der(&out.response_der).unwrap();
        assert_eq!(resp.status.status, PkiStatus::Rejection);
        assert_eq!(resp.failure_info().unwrap(), Some(bit));
        let text = reply_text(&pki, &out.response_der);
        assert!(text.contains("Status: Rejected."), "{text}");
        assert!(
            text.contains(openssl_text),
            "expected {openssl_text:?} in:\n{text}"
        );
        assert!(text.contains("TST info:\nNot included."), "{text}");
    };
    ok(
        d,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha1", "-out", "sha1.tsq",
        ],
    );
    check(
        &pki.read("sha1.tsq"),
        FailureInfo::BAD_ALG,
        "unrecognized or unsupported algorithm identifier",
    );
    ok(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "doc.txt",
            "-sha256",
            "-tspolicy",
            "1.2.3.4",
            "-out",
            "pol.tsq",
        ],
    );
    check(
        &pki.read("pol.tsq"),
        FailureInfo::UNACCEPTED_POLICY,
        "the requested TSA policy is not supported by the TSA",
    );
    check(
        b"\x30\x03\x02\x01",
        FailureInfo::BAD_DATA_FORMAT,
        "the data submitted has the wrong format",
    );
    check(
        &vec![0u8; 70_000],
        FailureInfo::BAD_REQUEST,
        "transaction not permitted or supported",
    );
    // Request with an extension (openssl ts -query cannot add one): splice [0] { ext } in.
    ok(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "doc.txt",
            "-sha256",
            "-no_nonce",
            "-out",
            "plain.tsq",
        ],
    );
    let plain = pki.read("plain.tsq");
    let ext = x509_cert::ext::Extension {
        extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
        critical: false,
        extn_value: der::asn1::OctetString::new(vec![1]).unwrap(),
    }
    .to_der()
    .unwrap();
    let mut body = plain[2..].to_vec();
    body.push(0xa0);
    body.push(ext.len() as u8);
    body.extend_from_slice(&ext);
    let mut with_ext = vec![0x30, body.len() as u8];
    with_ext.extend_from_slice(&body);
    check(
        &with_ext,
        FailureInfo::UNACCEPTED_EXTENSION,
        "the requested extension is not supported by the TSA",
    );

    // Unsynchronised clock.
    let tsa = ec_tsa(&pki, FixedClock::unsynchronized());
    ok(
        d,
        &[
            "ts", "-query", "-data", "doc.txt", "-sha256", "-out", "req.tsq",
        ],
    );
    let out = tsa.stamp(&pki.read("req.tsq"), SystemTime::now()).unwrap();
    let text = reply_text(&pki, &out.response_der);
    assert!(text.contains("Status: Rejected."), "{text}");
    assert!(
        text.contains("the TSA's time source is not available"),
        "{text}"
    );
    assert!(
        text.contains("time source not available"),
        "status string: {text}"
    );
}

#[test]
fn cms_detached_and_cades_b_t_verified_by_openssl() {
    let pki = Pki::new();
    let d = pki.dir.as_path();
    let doc = pki.read("doc.txt");
    let digest = DigestAlgorithm::Sha256.digest(&doc);
    let signer = pki.p256("signer");
    let cert = pki.cert("signer");
    let ca = pki.cert("ca");
    let sig = cms::sign_detached_digest::<_, p256::ecdsa::DerSignature>(
        &signer,
        &cert,
        &SignParams {
            content_type: ContentType::Data,
            digest_algorithm: DigestAlgorithm::Sha256,
            digest: &digest,
            signing_time: Some(SystemTime::now()),
            extra_certs: std::slice::from_ref(&ca),
            include_signer_cert: true,
        },
    )
    .unwrap();
    pki.write("sig.p7s", &sig);
    let verify = |file: &str, content: &str, cades: bool| {
        let mut a = vec![
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            file,
            "-content",
            content,
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ];
        if cades {
            a.push("-cades");
        }
        openssl(d, &a)
    };
    let (success, text) = verify("sig.p7s", "doc.txt", false);
    assert!(
        success && text.contains("CMS Verification successful"),
        "{text}"
    );
    // -cades additionally requires and checks ESS signing-certificate-v2.
    let (success, text) = verify("sig.p7s", "doc.txt", true);
    assert!(
        success && text.contains("Verification successful"),
        "{text}"
    );
    pki.write("tampered.txt", b"The document to be time-stamped!\n");
    let (success, text) = verify("sig.p7s", "tampered.txt", false);
    assert!(!success && text.contains("Verification failure"), "{text}");
    let printed = ok(
        d,
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.p7s",
        ],
    );
    for attr in [
        "contentType",
        "messageDigest",
        "signingTime",
        "id-smime-aa-signingCertificateV2",
    ] {
        assert!(printed.contains(attr), "{attr} missing:\n{printed}");
    }
    assert!(
        printed.contains("eContent: <ABSENT>"),
        "not detached:\n{printed}"
    );

    // CAdES-B-T with a token from our TSA over SHA-256(signature value).
    let tsa = ec_tsa(&pki, synced());
    let sig_value = cms::signature_value(&sig).unwrap();
    let ts_digest = DigestAlgorithm::Sha256.digest(&sig_value);
    let issued = tsa
        .stamp_imprint(DigestAlgorithm::Sha256, &ts_digest, SystemTime::now())
        .unwrap();
    let bt = esigd_pki::cades::add_signature_timestamp(&sig, &issued.token_der).unwrap();
    pki.write("sig_t.p7s", &bt);
    let (success, text) = verify("sig_t.p7s", "doc.txt", true);
    assert!(success, "B-T must still verify as CMS: {text}");
    let printed = ok(
        d,
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "sig_t.p7s",
        ],
    );
    assert!(printed.contains("unsignedAttrs"), "{printed}");
    assert!(printed.contains("id-smime-aa-timeStampToken"), "{printed}");
    // Extract the token from the B-T structure (as a validator would) and verify it.
    let v = cms::verify_detached_digest(&bt, Some(&digest)).unwrap();
    assert_eq!(v.timestamp_tokens.len(), 1);
    pki.write("tst.der", &v.timestamp_tokens[0]);
    let hex_digest = hex::encode(DigestAlgorithm::Sha256.digest(&v.signature));
    let text = ok(
        d,
        &[
            "ts",
            "-verify",
            "-token_in",
            "-in",
            "tst.der",
            "-digest",
            &hex_digest,
            "-CAfile",
            "ca.pem",
        ],
    );
    assert!(text.contains("Verification: OK"), "{text}");
    // ... and against a different digest it fails.
    let other = hex::encode(DigestAlgorithm::Sha256.digest(b"other"));
    let (success, _) = openssl(
        d,
        &[
            "ts",
            "-verify",
            "-token_in",
            "-in",
            "tst.der",
            "-digest",
            &other,
            "-CAfile",
            "ca.pem",
        ],
    );
    assert!(!success);
}
