//! The citizen's certificates on the e-Service API (issue 12), end to end with real parts: the
//! `esigd` binary with a SoftHSM token, the npm `oidc-provider` as the Identity BB (ID tokens, and
//! access tokens checked by RFC 7662 introspection), curl as the mTLS client, and validators we
//! did not write (`openssl verify -x509_strict`, `openssl ocsp`, `openssl crl`, pkilint).
//!
//! Here the CSR comes with the request (`POST /v1/cert/create` with `CSR`: the device is not
//! contacted); onboarding through a device is `scd_onboarding.rs`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{Reply, mtls, sha256_of_cert};
use esigd_testkit::certcheck::{check_scd_certificate, ec_csr, ocsp, openssl};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, esigd};
use serde_json::{Value, json};

const AUD: &str = "service-a";
const SECRET: &str = "service-a-secret";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const ESIGD_SECRET: &str = "esigd-introspection-secret";

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    other_client: (PathBuf, PathBuf),
    paying_client: (PathBuf, PathBuf),
    auditor: (PathBuf, PathBuf),
    payment_key: PathBuf,
    cfg: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = Idp::start_with(&json!({
        "clients": [
            {"client_id": "esigd", "client_secret": ESIGD_SECRET,
             "redirect_uris": ["http://127.0.0.1:9/esigd"],
             "token_endpoint_auth_method": "client_secret_basic", "introspect_any_token": true},
            {"client_id": AUD, "client_secret": SECRET, "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic"},
            {"client_id": "stranger", "client_secret": "s", "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic"},
            {"client_id": "short", "client_secret": "s", "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "client_secret_basic", "access_token_ttl": 1,
             "id_token_ttl": 1}
        ]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let client = pki.issue("a", "/CN=service-a", "client_ext", None);
    let other_client = pki.issue("b", "/CN=service-b", "client_ext", None);
    let auditor = pki.issue("auditor", "/CN=auditor", "client_ext", None);
    let paying_client = pki.issue("c", "/CN=service-c", "client_ext", None);
    // The Payment BB's key (ES256).
    let payment_key = dir.path().join("payment.key");
    let payment_pub = dir.path().join("payment.pub");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        payment_key.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        payment_key.to_str().unwrap(),
        "-pubout",
        "-out",
        payment_pub.to_str().unwrap(),
    ]);
    // The Remote SCD service is not reached when the CSR comes with the request; its client
    // certificate and CA must still exist.
    let rscd = Ca::new(dir.path(), "rscd-ca");
    let rp = rscd.issue("rp", "/CN=esigd", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[ca]
# A public name in the certificates' CRL and OCSP links (pkilint refuses internal ones).
base_url = "http://esig.example.com"

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_IDP_SECRET" }}
clock_skew = "1s"
[identity.claims]
default_country = "EE"

[scd]
url = "https://127.0.0.1:9"
client_cert = {rp:?}
client_key = {rp_key:?}
server_ca = {rscd_ca:?}
relying_party_uuid = "00000000-0000-4000-8000-000000000001"
relying_party_name = "esigd test"

[[eservice]]
id = "svc-a"
name = "Land Registry"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}", "short"]

[[eservice]]
id = "svc-b"
name = "Tax Board"
client_cert_sha256 = {b_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["stranger"]

[[eservice]]
id = "svc-paid"
name = "Paid Service"
client_cert_sha256 = {c_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
payment_required = true

[payment]
audience = "esigd"
key_file = {payment_pub:?}

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {b_fp_aud:?}
allowed_ips = ["127.0.0.1/32"]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        rp = rp.0,
        rp_key = rp.1,
        rscd_ca = rscd.pem(),
        a_fp = sha256_of_cert(&client.0),
        b_fp = sha256_of_cert(&other_client.0),
        c_fp = sha256_of_cert(&paying_client.0),
        b_fp_aud = sha256_of_cert(&auditor.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    Env {
        ca: pki.pem(),
        dir,
        _token: token,
        idp,
        client,
        other_client,
        paying_client,
        auditor,
        payment_key,
        cfg,
    }
}

impl Env {
    /// A Payment BB token for `svc-paid` with ID `jti`.
    fn payment_token(&self, jti: &str) -> String {
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&self.payment_key).unwrap())
                .unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &json!({"aud": "esigd", "exp": now + 300, "iat": now, "jti": jti, "sub": "svc-paid"}),
            &key,
        )
        .unwrap()
    }

    fn start(&self) -> Daemon {
        let mut cmd = esigd();
        cmd.arg("--config")
            .arg(&self.cfg)
            .args(esigd_testkit::SERVE)
            .env("ESIGD_TEST_IDP_SECRET", ESIGD_SECRET);
        Daemon::start_logged(cmd, self.dir.path().join("esigd.log"))
    }

    fn esigd_ca(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.pem")
    }
}

fn call(
    d: &Daemon,
    env: &Env,
    client: &(PathBuf, PathBuf),
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    let auth = format!("X-GovStack-AuthenticationToken: {token}");
    let mut extra = vec!["-H".to_string(), auth];
    if let Some(b) = body {
        extra.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            b.to_string(),
        ]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    mtls(&d.eservice, &env.ca, Some(client), method, path, &extra)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn certificates_are_created_listed_and_changed_by_their_owner_only() {
    let env = env();
    let d = env.start();
    let work = env.dir.path();
    let mari = env.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let juri = env.idp.tokens(AUD, SECRET, REDIRECT, "juri");

    // A request shaped exactly as the contract's example: PEM with CRLF line ends, one of the
    // contract's SCDType values, a UUID SCDRemoteId, a chosen `pseodonym` (the contract's
    // spelling). Authenticated by an ACCESS token (introspection).
    let (csr, key) = ec_csr(work, "mari-0");
    let body = json!({
        "CSR": csr.replace('\n', "\r\n"),
        "SCDType": "REMOTE_SCD_APP_ANDROID",
        "SCDRemoteId": "654C4DB3-3F68-4969-8ED2-80EA16B46EB0",
        "SCDKeyId": 0,
        "pseodonym": "johndoe5766",
        "requestTimestamp": now(),
    });
    let r = call(
        &d,
        &env,
        &env.client,
        "POST",
        "/v1/cert/create",
        &mari.access_token,
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let v = r.json();
    assert_eq!(v["status"]["code"], "OK");
    assert_eq!(v["pseudonym"], "johndoe5766");
    let id = v["certificateId"].as_str().unwrap().to_owned();
    let cert = write(work, "mari-0.pem", v["certificate"].as_str().unwrap());
    // Subject from the Identity BB, never from the CSR (/CN=requester); key from the CSR.
    let subject = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subject.contains("CN=Mari Maasikas"), "{subject}");
    assert!(!subject.contains("requester"), "{subject}");
    let cert_key = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    let csr_key = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert_eq!(cert_key, csr_key);
    check_scd_certificate(&env.esigd_ca(), &cert);
    let ocsp_url = d.url("/ocsp");
    let cert_arg = ["-cert", cert.to_str().unwrap()];
    assert!(ocsp(&env.esigd_ca(), &ocsp_url, &cert_arg, false).contains(": good"));
    // Published.
    let (code, pem) = d.get(&format!("/pki/certs/{id}"), &[]);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8(pem).unwrap().trim(),
        v["certificate"].as_str().unwrap().trim()
    );

    // With an ID token, a readable pseudonym is made (`pseudonym` absent).
    let (csr1, _) = ec_csr(work, "mari-1");
    let body1 = json!({"CSR": csr1, "SCDType": "REMOTE_SCD", "SCDRemoteId": "k7m2-9xqa-h3dz",
                       "SCDKeyId": 1, "requestTimestamp": now()});
    let r = call(
        &d,
        &env,
        &env.client,
        "POST",
        "/v1/cert/create",
        &mari.id_token,
        Some(&body1),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let made = r.json()["pseudonym"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = made.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [4, 4, 4],
        "{made}"
    );
    let id1 = r.json()["certificateId"].as_str().unwrap().to_owned();

    // Refusals, each with its status and a message naming the problem; nothing is issued.
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        // The same key a second time.
        (
            json!({"CSR": csr, "SCDRemoteId": "k7m2-9xqa-h3dz", "SCDKeyId": 2}),
            &mari.id_token,
            400,
            "already has certificate",
        ),
        // The same device and slot while its certificate is active (decided: refused; revoke first).
        (
            json!({"CSR": ec_csr(work, "again").0, "SCDRemoteId": "K7M2-9XQA-H3DZ", "SCDKeyId": 1}),
            &mari.id_token,
            409,
            "SCDKeyId",
        ),
        // The chosen pseudonym is taken.
        (
            json!({"CSR": ec_csr(work, "p").0, "SCDRemoteId": "x-1", "SCDKeyId": 0, "pseudonym": "JohnDoe5766"}),
            &juri.id_token,
            409,
            "pseudonym",
        ),
        (
            json!({"CSR": "bm90IGEgQ1NS", "SCDRemoteId": "x-2", "SCDKeyId": 0}),
            &mari.id_token,
            400,
            "CSR",
        ),
        (
            json!({"CSR": ec_csr(work, "m").0, "SCDKeyId": 0}),
            &mari.id_token,
            422,
            "SCDRemoteId is required",
        ),
        (
            json!({"CSR": ec_csr(work, "k").0, "SCDRemoteId": "x-3"}),
            &mari.id_token,
            422,
            "SCDKeyId is required",
        ),
        (
            json!({"CSR": ec_csr(work, "t").0, "SCDRemoteId": "x-4", "SCDKeyId": 0, "SCDType": "SMART_CARD"}),
            &mari.id_token,
            400,
            "SCDType",
        ),
        (
            json!({"CSR": ec_csr(work, "u").0, "SCDRemoteId": "x-5", "SCDKeyId": 0, "color": "red"}),
            &mari.id_token,
            400,
            "unknown field",
        ),
        (
            json!({"CSR": ec_csr(work, "o").0, "SCDRemoteId": "x-6", "SCDKeyId": 0, "requestTimestamp": "2001-01-01T00:00:00Z"}),
            &mari.id_token,
            400,
            "requestTimestamp",
        ),
    ];
    for (body, token, status, says) in &cases {
        let r = call(
            &d,
            &env,
            &env.client,
            "POST",
            "/v1/cert/create",
            token,
            Some(body),
        );
        assert_eq!(r.status, *status, "{body}: {}", r.message());
        assert!(r.message().contains(says), "{body}: {}", r.message());
    }
    // A CSR whose signature was made by another key than the one it names (proof of possession).
    let tampered = {
        use base64::Engine;
        let der = openssl(&[
            "req",
            "-in",
            work.join("mari-1.csr").to_str().unwrap(),
            "-outform",
            "DER",
        ]);
        let _ = der;
        let der_file = work.join("t.der");
        openssl(&[
            "req",
            "-in",
            work.join("mari-1.csr").to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der_file.to_str().unwrap(),
        ]);
        let mut der = std::fs::read(&der_file).unwrap();
        let n = der.len();
        der[n - 5] ^= 0x40; // inside the signature value
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let r = call(
        &d,
        &env,
        &env.client,
        "POST",
        "/v1/cert/create",
        &mari.id_token,
        Some(&json!({"CSR": tampered, "SCDRemoteId": "x-7", "SCDKeyId": 0})),
    );
    assert_eq!(r.status, 400, "{}", r.message());
    assert!(r.message().starts_with("CSR:"), "{}", r.message());

    // Tokens: garbage, a token of a client the e-Service does not accept, an expired one.
    for (token, why) in [
        ("not-a-token", "garbage"),
        (
            env.idp
                .tokens("stranger", "s", REDIRECT, "mari")
                .access_token
                .as_str(),
            "foreign access token",
        ),
    ] {
        let r = call(&d, &env, &env.client, "GET", "/v1/cert/list", token, None);
        assert_eq!(r.status, 401, "{why}: {}", r.message());
    }
    let short = env.idp.tokens("short", "s", REDIRECT, "mari");
    std::thread::sleep(std::time::Duration::from_secs(3));
    for t in [&short.access_token, &short.id_token] {
        let r = call(&d, &env, &env.client, "GET", "/v1/cert/list", t, None);
        assert_eq!(r.status, 401, "expired: {}", r.message());
    }

    // Lists: each citizen sees their own.
    let list = |token: &str, filter: &str| -> Vec<Value> {
        let r = call(
            &d,
            &env,
            &env.client,
            "GET",
            &format!("/v1/cert/list{filter}"),
            token,
            None,
        );
        assert_eq!(r.status, 200, "{}", r.message());
        r.json().as_array().unwrap().clone()
    };
    let mine = list(&mari.access_token, "");
    let ids: Vec<&str> = mine
        .iter()
        .map(|c| c["certificateId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{mine:?}");
    assert!(ids.contains(&id.as_str()) && ids.contains(&id1.as_str()));
    assert!(
        mine.iter().all(|c| c["status"]["code"] == "ACTIVE"),
        "{mine:?}"
    );
    assert!(list(&juri.access_token, "").is_empty());
    assert!(list(&mari.id_token, "?filter=SUSPENDED").is_empty());
    let r = call(
        &d,
        &env,
        &env.client,
        "GET",
        "/v1/cert/list?filter=GONE",
        &mari.id_token,
        None,
    );
    assert_eq!(r.status, 400, "{}", r.message());

    // Ownership: juri cannot change mari's certificate, and gets the answer of an unknown ID.
    let patch = |token: &str, id: &str, code: &str| {
        call(
            &d,
            &env,
            &env.client,
            "PATCH",
            &format!("/v1/cert/{id}"),
            token,
            Some(
                &json!({"requestTimestamp": now(), "status": {"code": code, "message": "lost phone"}}),
            ),
        )
    };
    let foreign = patch(&juri.access_token, &id, "SUSPEND");
    let unknown = patch(&juri.access_token, "0123456789abcdef", "SUSPEND");
    assert_eq!((foreign.status, unknown.status), (404, 404));
    assert_eq!(foreign.message(), unknown.message());
    // Another e-Service whose accepted audiences do not include the token's client: 401.
    let r = call(
        &d,
        &env,
        &env.other_client,
        "GET",
        "/v1/cert/list",
        &mari.access_token,
        None,
    );
    assert_eq!(r.status, 401, "{}", r.message());

    // Lifecycle with the spec's spellings; OCSP and the CRL follow at once.
    let r = patch(&mari.access_token, &id, "SUSPENDED");
    assert_eq!(r.status, 200, "{}", r.message());
    assert_eq!(r.json()["status"]["code"], "SUSPENDED");
    let out = ocsp(&env.esigd_ca(), &ocsp_url, &cert_arg, false);
    assert!(
        out.contains(": revoked") && out.contains("certificateHold"),
        "{out}"
    );
    assert_eq!(list(&mari.id_token, "?filter=SUSPENDED").len(), 1);
    let r = patch(&mari.id_token, &id, "ACTIVATE");
    assert_eq!(r.json()["status"]["code"], "ACTIVATED", "{}", r.message());
    assert!(ocsp(&env.esigd_ca(), &ocsp_url, &cert_arg, false).contains(": good"));
    let r = patch(&mari.id_token, &id, "REVOKE");
    assert_eq!(r.json()["status"]["code"], "REVOKED", "{}", r.message());
    assert!(ocsp(&env.esigd_ca(), &ocsp_url, &cert_arg, false).contains(": revoked"));
    let (code, crl) = d.get("/pki/crl", &[]);
    assert_eq!(code, 200);
    let crl_file = work.join("crl.der");
    std::fs::write(&crl_file, crl).unwrap();
    let crl_text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_file.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        crl_text
            .to_ascii_uppercase()
            .contains(&id.to_ascii_uppercase()),
        "{crl_text}"
    );
    // Revocation is final.
    let r = patch(&mari.id_token, &id, "ACTIVATE");
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().contains("revoked"), "{}", r.message());
    let r = patch(&mari.id_token, &id, "DELETE");
    assert_eq!(r.status, 400, "{}", r.message());
    // Now the slot is free again: a new key for device x, slot 0 (the revoked one's) is accepted.
    let r = call(
        &d,
        &env,
        &env.client,
        "POST",
        "/v1/cert/create",
        &mari.id_token,
        Some(
            &json!({"CSR": ec_csr(work, "rekey").0, "SCDRemoteId": "654c4db3-3f68-4969-8ed2-80ea16b46eb0", "SCDKeyId": 0}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.message());

    // An e-Service that must pay: 402 without a payment token; a token is used once, and given
    // back when no certificate is made.
    let paid = |extra: &[&str], body: &Value| {
        let auth = format!("X-GovStack-AuthenticationToken: {}", mari.id_token);
        let b = body.to_string();
        let mut args = vec![
            "-H",
            auth.as_str(),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            b.as_str(),
        ];
        args.extend_from_slice(extra);
        mtls(
            &d.eservice,
            &env.ca,
            Some(&env.paying_client),
            "POST",
            "/v1/cert/create",
            &args,
        )
    };
    let pay = |t: &str| format!("X-GovStack-PaymentToken: {t}");
    let good = json!({"CSR": ec_csr(work, "paid").0, "SCDRemoteId": "paid-1", "SCDKeyId": 0});
    let r = paid(&[], &good);
    assert_eq!(r.status, 402, "{}", r.message());
    let token = env.payment_token("pay-1");
    let bad = json!({"CSR": "bm90IGEgQ1NS", "SCDRemoteId": "paid-1", "SCDKeyId": 0});
    let r = paid(&["-H", &pay(&token)], &bad);
    assert_eq!(r.status, 400, "{}", r.message());
    let r = paid(&["-H", &pay(&token)], &good);
    assert_eq!(
        r.status,
        200,
        "the token was given back after the failure: {}",
        r.message()
    );
    let r = paid(
        &["-H", &pay(&token)],
        &json!({"CSR": ec_csr(work, "paid2").0, "SCDRemoteId": "paid-2", "SCDKeyId": 0}),
    );
    assert_eq!(r.status, 402, "a token pays once: {}", r.message());

    // Every step is an audit event.
    let log = mtls(
        &d.eservice,
        &env.ca,
        Some(&env.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    assert_eq!(log.status, 200, "{}", log.message());
    let events = log.json();
    let events = events.as_array().unwrap();
    let of = |kind: &str, serial: &str| {
        events
            .iter()
            .filter(|e| e["event"] == kind && e["certificateSerial"] == serial)
            .count()
    };
    assert_eq!(of("scd.certificate.issued", &id), 1, "{events:?}");
    assert_eq!(of("scd.certificate.issued", &id1), 1, "{events:?}");
    assert_eq!(of("scd.certificate.status_changed", &id), 3, "{events:?}");
    d.stop();
    let log = std::fs::read_to_string(env.dir.path().join("esigd.log")).unwrap();
    for secret in [&mari.access_token, &mari.id_token, &juri.access_token] {
        assert!(!log.contains(secret.as_str()), "a token is in the log");
    }
}
