//! JWS / JAdES B-B and B-T signatures checked by validators we did not write, over a test PKI made
//! with the `openssl` CLI (P-256 root CA, signer, TSA with a critical timeStamping EKU):
//!
//! - jwcrypto 1.6.1 (`$ESIGD_VENV`) verifies the JWS with `sigD` registered and an empty detached
//!   payload, the key taken from the `x5c` certificate;
//! - `openssl ts -verify` checks the `sigTst` token (taken out of the JSON by Python) over the
//!   ASCII base64url signature value;
//! - Python checks the JAdES baseline rules of the EU DSS `JAdESBaselineRequirementsChecker`
//!   (one signing-certificate reference, `iat` and no `sigT`, `crit` content) and that each
//!   `hashV` is the digest of the raw document file;
//! - and they refuse a changed header byte (jwcrypto), a changed document (hashV) and a token over
//!   other data (openssl).
//!
//! A missing tool fails the test with the install hint; nothing is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::{Decode, DecodePem};
use esigd_formats::{DigestAlgorithm, Document, Format, FormatError, SignRequest, Signed, prepare};
use p256::pkcs8::DecodePrivateKey;
use signature::Signer;
use x509_cert::Certificate;

use common::{KeyAlg, TestPki, python, require_python_module, run, run_refused, write_file};

/// The validator script: `jwcrypto`, `baseline` and `extract-tst` modes.
const JADES_CHECK_PY: &str = r#"
import base64, hashlib, json, sys

def b64url_decode(s):
    if not isinstance(s, str) or '=' in s or '+' in s or '/' in s:
        raise SystemExit('not unpadded base64url: %r' % (s,))
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b'=').decode()

def load(path):
    raw = open(path).read()
    obj = json.loads(raw)
    header = json.loads(b64url_decode(obj['protected']))
    return raw, obj, header

def cmd_jwcrypto(path):
    from cryptography import x509
    from jwcrypto import jwk, jws
    from jwcrypto.common import JWSEHeaderParameter
    raw, obj, header = load(path)
    cert = x509.load_der_x509_certificate(base64.b64decode(header['x5c'][0]))
    key = jwk.JWK.from_pyca(cert.public_key())
    registry = {'sigD': JWSEHeaderParameter('JAdES signed data reference', True, True, None)}
    token = jws.JWS(header_registry=registry)
    token.deserialize(raw)
    token.verify(key, detached_payload=b'')
    print('jwcrypto: OK', header['alg'], 'payload=%r' % token.objects.get('payload', b''))

# DSS DSSJsonUtils: headers that must not be in crit (RFC 7515/7518), headers that must be in crit
# when present, and the protected headers crit may name.
CRIT_EXCEPTIONS = {'alg', 'jku', 'jwk', 'kid', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'typ', 'cty', 'crit',
                   'epk', 'apu', 'apv', 'iv', 'tag', 'p2s', 'p2c', 'enc', 'zip'}
CRIT_REQUIRED = {'sigD', 'b64'}
CRIT_SUPPORTED = {'sigT', 'x5t#o', 'sigX5ts', 'srCms', 'sigPl', 'srAts', 'adoTst', 'sigPId', 'sigD',
                  'iat', 'exp', 'b64'}
HASH_M = {'S256': 'sha256', 'S384': 'sha384', 'S512': 'sha512',
          'S3-256': 'sha3_256', 'S3-384': 'sha3_384', 'S3-512': 'sha3_512'}

def fail(msg):
    raise SystemExit('JAdES baseline check failed: ' + msg)

def short_media_type(m):
    if m.startswith('application/') and '/' not in m[len('application/'):]:
        return m[len('application/'):]
    return m

def cmd_baseline(path, signer_der_path, iat, docs):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    raw, obj, h = load(path)
    if set(obj) - {'protected', 'header', 'signature'} or 'signature' not in obj:
        fail('JSON members %s (want protected, [header,] signature; no payload)' % sorted(obj))
    if b64url(b64url_decode(obj['protected'])) != obj['protected']:
        fail('protected is not canonical base64url')
    # alg (cardinality 1), following the key.
    signer_der = open(signer_der_path, 'rb').read()
    if base64.b64decode(h['x5c'][0], validate=True) != signer_der:
        fail('x5c[0] is not the signer certificate')
    cert = x509.load_der_x509_certificate(signer_der)
    pk = cert.public_key()
    if isinstance(pk, ec.EllipticCurvePublicKey):
        want_alg = {'secp256r1': 'ES256', 'secp384r1': 'ES384'}[pk.curve.name]
        sig_len = {'ES256': 64, 'ES384': 96}[want_alg]
    elif isinstance(pk, rsa.RSAPublicKey):
        want_alg, sig_len = 'RS256', pk.key_size // 8
    else:
        fail('unexpected key type')
    if h.get('alg') != want_alg:
        fail('alg %r, want %r' % (h.get('alg'), want_alg))
    if len(b64url_decode(obj['signature'])) != sig_len:
        fail('signature length %d, want %d' % (len(b64url_decode(obj['signature'])), sig_len))
    # x5c: signer first, then certificates each issued by the next.
    chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in h['x5c']]
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    # Exactly one of x5t#S256 / x5t#o / sigX5ts.
    refs = [k for k in ('x5t#S256', 'x5t#o', 'sigX5ts') if h.get(k)]
    if refs != ['x5t#S256']:
        fail('signing-certificate references %s, want exactly x5t#S256' % refs)
    if h['x5t#S256'] != b64url(hashlib.sha256(signer_der).digest()):
        fail('x5t#S256 is not the SHA-256 of the signer certificate')
    # iat present (NumericDate), no sigT.
    if 'sigT' in h:
        fail('sigT present')
    if not isinstance(h.get('iat'), int) or isinstance(h.get('iat'), bool):
        fail('iat missing or not an integer NumericDate: %r' % (h.get('iat'),))
    if h['iat'] != iat:
        fail('iat %d, want %d' % (h['iat'], iat))
    if h.get('typ') != 'jose+json':
        fail('typ %r, want jose+json (JSON serialization)' % (h.get('typ'),))
    if 'cty' in h:
        fail('cty present in a detached signature')
    if h.get('b64') is not False:
        fail('b64 must be false (hashV over the raw octets)')
    # crit.
    crit = h.get('crit')
    if not isinstance(crit, list) or not crit:
        fail('crit missing or empty')
    if len(set(crit)) != len(crit) or not all(isinstance(c, str) for c in crit):
        fail('crit has duplicates or non-strings: %r' % crit)
    for c in crit:
        if c in CRIT_EXCEPTIONS:
            fail('crit names the RFC 7515/7518 header %r' % c)
        if c not in h:
            fail('crit names %r, which is not in the header' % c)
        if c not in CRIT_SUPPORTED:
            fail('crit names %r, which cannot be processed' % c)
    for k in h:
        if k in CRIT_REQUIRED and k not in crit:
            fail('%r is present but not in crit' % k)
    # sigD by URI hash over the raw documents.
    sig_d = h.get('sigD')
    if not isinstance(sig_d, dict):
        fail('sigD missing')
    if set(sig_d) != {'mId', 'pars', 'hashM', 'hashV', 'ctys'}:
        fail('sigD members %s' % sorted(sig_d))
    if sig_d['mId'] != 'http://uri.etsi.org/19182/ObjectIdByURIHash':
        fail('sigD.mId %r' % sig_d['mId'])
    names = [d[0] for d in docs]
    if sig_d['pars'] != names:
        fail('sigD.pars %r, want %r' % (sig_d['pars'], names))
    if sig_d['hashM'] not in HASH_M:
        fail('sigD.hashM %r' % sig_d['hashM'])
    if len(sig_d['hashV']) != len(docs) or len(sig_d['ctys']) != len(docs):
        fail('sigD.hashV/ctys lengths')
    for (name, file, media), hv, cty in zip(docs, sig_d['hashV'], sig_d['ctys']):
        digest = hashlib.new(HASH_M[sig_d['hashM']], open(file, 'rb').read()).digest()
        if b64url_decode(hv) != digest:
            fail('sigD.hashV for %r is not the %s of the document' % (name, sig_d['hashM']))
        if cty != short_media_type(media):
            fail('sigD.ctys for %r is %r, want %r' % (name, cty, short_media_type(media)))
    # B-T: the unprotected header holds etsiU only, base64url entries, one sigTst with one token.
    if 'header' in obj:
        u = obj['header']
        if set(u) != {'etsiU'} or not isinstance(u['etsiU'], list) or not u['etsiU']:
            fail('unprotected header %r' % (u,))
        for entry in u['etsiU']:
            prop = json.loads(b64url_decode(entry))
            if list(prop) != ['sigTst']:
                fail('etsiU entry %r' % (prop,))
            tokens = prop['sigTst']['tstTokens']
            if len(tokens) != 1:
                fail('sigTst has %d tokens, want 1' % len(tokens))
            base64.b64decode(tokens[0]['val'], validate=True)
    print('baseline: OK', h['alg'], sig_d['hashM'], 'level', 'B-T' if 'header' in obj else 'B-B')

def cmd_extract_tst(path, token_out, sig_out):
    raw, obj, h = load(path)
    entry = json.loads(b64url_decode(obj['header']['etsiU'][0]))
    open(token_out, 'wb').write(base64.b64decode(entry['sigTst']['tstTokens'][0]['val'], validate=True))
    open(sig_out, 'wb').write(obj['signature'].encode('ascii'))
    print('extracted')

mode = sys.argv[1]
if mode == 'jwcrypto':
    cmd_jwcrypto(sys.argv[2])
elif mode == 'baseline':
    docs = [tuple(a.split('|', 2)) for a in sys.argv[5:]]
    cmd_baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]), docs)
elif mode == 'extract-tst':
    cmd_extract_tst(sys.argv[2], sys.argv[3], sys.argv[4])
else:
    raise SystemExit('unknown mode ' + mode)
"#;

/// A document on disk: its name in `sigD.pars`, its file, its media type.
struct DocFile {
    name: &'static str,
    path: PathBuf,
    media_type: &'static str,
}

/// The test's PKI, documents and validator script.
struct Fixture {
    pki: TestPki,
    script: PathBuf,
    docs: Vec<DocFile>,
}

impl Fixture {
    fn new() -> Fixture {
        require_python_module("jwcrypto");
        require_python_module("cryptography");
        let pki = TestPki::new();
        let script = write_file(pki.dir(), "jades_check.py", JADES_CHECK_PY.as_bytes());
        let docs = vec![
            DocFile {
                name: "document.pdf",
                path: write_file(
                    pki.dir(),
                    "document.pdf",
                    b"%PDF-1.7\n% a test document\n%%EOF\n",
                ),
                media_type: "application/pdf",
            },
            DocFile {
                name: "note.txt",
                path: write_file(
                    pki.dir(),
                    "note.txt",
                    "a note, not ASCII: \u{e9}\n".as_bytes(),
                ),
                media_type: "text/plain",
            },
        ];
        Fixture { pki, script, docs }
    }

    fn documents(&self, alg: DigestAlgorithm) -> Vec<Document> {
        self.docs
            .iter()
            .map(|d| Document {
                name: d.name.into(),
                media_type: d.media_type.into(),
                digest: alg.digest(&std::fs::read(&d.path).expect("document readable")),
            })
            .collect()
    }

    fn jwcrypto(&self, jws_file: &Path) -> Command {
        let mut cmd = python();
        cmd.arg(&self.script).arg("jwcrypto").arg(jws_file);
        cmd
    }

    fn baseline(&self, jws_file: &Path, signer_der: &Path, iat: u64, docs: &[DocFile]) -> Command {
        let mut cmd = python();
        cmd.arg(&self.script)
            .arg("baseline")
            .arg(jws_file)
            .arg(signer_der)
            .arg(iat.to_string());
        for d in docs {
            cmd.arg(format!("{}|{}|{}", d.name, d.path.display(), d.media_type));
        }
        cmd
    }

    /// Takes the B-T object's token and signature text out with Python, then `openssl ts -verify`.
    fn openssl_verifies_sig_tst(&self, bt_file: &Path) {
        let token = self.pki.path("extracted-token.der");
        let sig = self.pki.path("extracted-signature.txt");
        run(python()
            .arg(&self.script)
            .arg("extract-tst")
            .arg(bt_file)
            .arg(&token)
            .arg(&sig));
        self.pki.verify_timestamp(&token, &sig);
    }
}

fn load_cert(path: &Path) -> Certificate {
    Certificate::from_pem(std::fs::read(path).expect("certificate readable"))
        .expect("a PEM certificate from openssl")
}

fn now_secs() -> (SystemTime, u64) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    (UNIX_EPOCH + Duration::from_secs(secs), secs)
}

/// Prepares, signs with `sign` (over `to_be_signed`, DER signature), finishes, and time-stamps with
/// the openssl TSA; returns the B-B object and the B-T bytes.
fn sign_and_timestamp(
    fx: &Fixture,
    request: &SignRequest<'_>,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> (Box<dyn Signed>, Vec<u8>) {
    let prepared = prepare(Format::Jws, request).expect("JWS prepared");
    let signed = prepared
        .finish(&sign(prepared.to_be_signed()))
        .expect("signature accepted");
    let token = fx.pki.timestamp(&signed.timestamp_input());
    let bt = signed.add_timestamp(&token).expect("token accepted");
    (signed, bt)
}

#[test]
fn p256_bb_and_bt_are_accepted_by_jwcrypto_openssl_ts_and_the_baseline_checks() {
    let fx = Fixture::new();
    let cert = load_cert(&fx.pki.signer.cert_pem);
    let ca = load_cert(&fx.pki.ca.cert_pem);
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&fx.pki.signer.key_pem()).unwrap();
    let (time, iat) = now_secs();
    let documents = fx.documents(DigestAlgorithm::Sha256);
    let chain = [ca];
    let request = SignRequest {
        digest_algorithm: DigestAlgorithm::Sha256,
        documents: &documents,
        signer: &cert,
        chain: &chain,
        time,
    };
    let (signed, bt) = sign_and_timestamp(&fx, &request, |tbs| {
        let s: p256::ecdsa::DerSignature = key.sign(tbs);
        s.as_bytes().to_vec()
    });
    let bb_file = write_file(fx.pki.dir(), "signature-bb.json", signed.bytes());
    let bt_file = write_file(fx.pki.dir(), "signature-bt.json", &bt);

    for file in [&bb_file, &bt_file] {
        let out = run(&mut fx.jwcrypto(file));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("jwcrypto: OK ES256 payload=b''"), "{text}");
        let out = run(&mut fx.baseline(file, &fx.pki.signer.cert_der, iat, &fx.docs));
        assert!(String::from_utf8_lossy(&out.stdout).contains("baseline: OK ES256 S256"));
    }
    fx.openssl_verifies_sig_tst(&bt_file);
}

#[test]
fn p384_signer_with_sha512_documents_is_es384_and_accepted() {
    let fx = Fixture::new();
    let issued = fx.pki.issue(
        "signer384",
        "Formats Test P-384 Signer",
        KeyAlg::P384,
        "signer",
    );
    let cert = load_cert(&issued.cert_pem);
    let key = p384::ecdsa::SigningKey::from_pkcs8_der(&issued.key_pkcs8_der()).unwrap();
    let (time, iat) = now_secs();
    let documents = fx.documents(DigestAlgorithm::Sha512);
    let request = SignRequest {
        digest_algorithm: DigestAlgorithm::Sha512,
        documents: &documents,
        signer: &cert,
        chain: &[],
        time,
    };
    // A device that signs the ready digest (SHA-384 for ES384, whatever the documents' digest).
    let prepared = prepare(Format::Jws, &request).unwrap();
    assert_eq!(
        prepared.signature_digest_algorithm(),
        DigestAlgorithm::Sha384
    );
    use signature::hazmat::PrehashSigner;
    let sig: p384::ecdsa::Signature = key.sign_prehash(&prepared.digest()).unwrap();
    let signed = prepared.finish(sig.to_der().as_bytes()).unwrap();
    let bt = signed
        .add_timestamp(&fx.pki.timestamp(&signed.timestamp_input()))
        .unwrap();
    let bt_file = write_file(fx.pki.dir(), "signature-p384.json", &bt);

    let out = run(&mut fx.jwcrypto(&bt_file));
    assert!(String::from_utf8_lossy(&out.stdout).contains("jwcrypto: OK ES384"));
    let out = run(&mut fx.baseline(&bt_file, &issued.cert_der, iat, &fx.docs));
    assert!(String::from_utf8_lossy(&out.stdout).contains("baseline: OK ES384 S512 level B-T"));
    fx.openssl_verifies_sig_tst(&bt_file);
}

#[test]
fn rsa_signer_is_rs256_and_accepted() {
    let fx = Fixture::new();
    let issued = fx.pki.issue(
        "signer-rsa",
        "Formats Test RSA Signer",
        KeyAlg::Rsa2048,
        "signer",
    );
    let cert = load_cert(&issued.cert_pem);
    let (time, iat) = now_secs();
    let documents = fx.documents(DigestAlgorithm::Sha256);
    let request = SignRequest {
        digest_algorithm: DigestAlgorithm::Sha256,
        documents: &documents,
        signer: &cert,
        chain: &[],
        time,
    };
    // openssl signs the ready SHA-256 (PKCS#1 v1.5 with the DigestInfo), like an HSM would.
    let (_, bt) = sign_and_timestamp(&fx, &request, |tbs| {
        let digest = write_file(
            fx.pki.dir(),
            "rsa-digest.bin",
            &DigestAlgorithm::Sha256.digest(tbs),
        );
        run(common::openssl()
            .args(["pkeyutl", "-sign", "-pkeyopt", "digest:sha256", "-inkey"])
            .arg(&issued.key)
            .arg("-in")
            .arg(&digest))
        .stdout
    });
    let bt_file = write_file(fx.pki.dir(), "signature-rsa.json", &bt);
    let out = run(&mut fx.jwcrypto(&bt_file));
    assert!(String::from_utf8_lossy(&out.stdout).contains("jwcrypto: OK RS256"));
    run(&mut fx.baseline(&bt_file, &issued.cert_der, iat, &fx.docs));
    fx.openssl_verifies_sig_tst(&bt_file);
}

/// Signs the fixture's documents with the P-256 signer; returns the B-T JSON and the `iat`.
fn p256_bt(fx: &Fixture) -> (serde_json::Value, Vec<u8>, u64) {
    let cert = load_cert(&fx.pki.signer.cert_pem);
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&fx.pki.signer.key_pem())
        .expect("a PKCS#8 P-256 key from openssl");
    let (time, iat) = now_secs();
    let documents = fx.documents(DigestAlgorithm::Sha256);
    let request = SignRequest {
        digest_algorithm: DigestAlgorithm::Sha256,
        documents: &documents,
        signer: &cert,
        chain: &[],
        time,
    };
    let (_, bt) = sign_and_timestamp(fx, &request, |tbs| {
        let s: p256::ecdsa::DerSignature = key.sign(tbs);
        s.as_bytes().to_vec()
    });
    (serde_json::from_slice(&bt).expect("B-T is JSON"), bt, iat)
}

#[test]
fn a_changed_header_byte_is_refused_by_jwcrypto() {
    let fx = Fixture::new();
    let (mut obj, bt, _) = p256_bt(&fx);
    // The untouched object passes, so the refusal below is the change's doing.
    run(&mut fx.jwcrypto(&write_file(fx.pki.dir(), "good.json", &bt)));

    let protected = obj["protected"].as_str().unwrap().to_owned();
    let mut header = URL_SAFE_NO_PAD.decode(&protected).unwrap();
    let at = String::from_utf8(header.clone())
        .unwrap()
        .find("document.pdf")
        .unwrap();
    header[at] = b'D'; // "Document.pdf": still valid JSON, one byte changed.
    obj["protected"] = URL_SAFE_NO_PAD.encode(&header).into();
    let bad = write_file(
        fx.pki.dir(),
        "changed-header.json",
        obj.to_string().as_bytes(),
    );
    run_refused(&mut fx.jwcrypto(&bad), "InvalidJWSSignature");

    // A changed signature byte is refused too.
    let (mut obj, _, _) = p256_bt(&fx);
    let mut sig = URL_SAFE_NO_PAD
        .decode(obj["signature"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    obj["signature"] = URL_SAFE_NO_PAD.encode(&sig).into();
    let bad = write_file(
        fx.pki.dir(),
        "changed-signature.json",
        obj.to_string().as_bytes(),
    );
    run_refused(&mut fx.jwcrypto(&bad), "InvalidJWSSignature");
}

#[test]
fn a_changed_document_fails_the_hash_check() {
    let fx = Fixture::new();
    let (_, bt, iat) = p256_bt(&fx);
    let file = write_file(fx.pki.dir(), "signature.json", &bt);
    run(&mut fx.baseline(&file, &fx.pki.signer.cert_der, iat, &fx.docs));

    let mut changed = std::fs::read(&fx.docs[1].path).unwrap();
    changed[0] ^= 0x20;
    let docs = vec![
        DocFile {
            name: fx.docs[0].name,
            path: fx.docs[0].path.clone(),
            media_type: fx.docs[0].media_type,
        },
        DocFile {
            name: fx.docs[1].name,
            path: write_file(fx.pki.dir(), "note-changed.txt", &changed),
            media_type: fx.docs[1].media_type,
        },
    ];
    run_refused(
        &mut fx.baseline(&file, &fx.pki.signer.cert_der, iat, &docs),
        "sigD.hashV for 'note.txt' is not the S256 of the document",
    );
    // JWS core does not see the documents: that is what the hashV check is for.
    run(&mut fx.jwcrypto(&file));
}

#[test]
fn a_token_over_other_data_is_refused_by_add_timestamp_and_openssl() {
    let fx = Fixture::new();
    let cert = load_cert(&fx.pki.signer.cert_pem);
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&fx.pki.signer.key_pem()).unwrap();
    let (time, _) = now_secs();
    let documents = fx.documents(DigestAlgorithm::Sha256);
    let request = SignRequest {
        digest_algorithm: DigestAlgorithm::Sha256,
        documents: &documents,
        signer: &cert,
        chain: &[],
        time,
    };
    let prepared = prepare(Format::Jws, &request).unwrap();
    let s: p256::ecdsa::DerSignature = key.sign(prepared.to_be_signed());
    let signed = prepared.finish(s.as_bytes()).unwrap();
    let input = signed.timestamp_input();

    // Over the decoded signature bytes instead of their base64url text.
    let decoded = URL_SAFE_NO_PAD.decode(&input).unwrap();
    let wrong = fx.pki.timestamp(&decoded);
    let e = signed.add_timestamp(&wrong).unwrap_err();
    assert!(matches!(e, FormatError::Timestamp(_)), "{e}");
    // openssl agrees that this token does not cover the signature text.
    let token_file = write_file(fx.pki.dir(), "wrong-token.der", &wrong);
    let sig_file = write_file(fx.pki.dir(), "signature.txt", &input);
    run_refused(
        &mut fx.pki.verify_timestamp_command(&token_file, &sig_file),
        "message imprint mismatch",
    );
    // The right token passes both.
    let right = fx.pki.timestamp(&input);
    signed.add_timestamp(&right).unwrap();
    let token_file = write_file(fx.pki.dir(), "right-token.der", &right);
    fx.pki.verify_timestamp(&token_file, &sig_file);
    // The token is a real RFC 3161 token from the openssl TSA.
    let tst = esigd_pki::tsp::token_tst_info(&right).unwrap();
    assert_eq!(
        tst.message_imprint.hashed_message.as_bytes(),
        DigestAlgorithm::Sha256.digest(&input)
    );
    let _ = Certificate::from_der(&fx.pki.tsa.der()).unwrap();
}
