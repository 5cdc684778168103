//! Workflow 9.1 through esigd's pages without a browser (`tests/e2e/http-flow.mjs`, plain HTTP with
//! cookies), against the real OpenID provider, with the client authentication the GovStack
//! Identity BB (MOSIP eSignet) uses: `private_key_jwt`, and a signed (JWT) userinfo response.
//! Also the Payment BB token rules on both entry points (browser redirect and API). The browser
//! itself is covered by `browser_flow.rs`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use esigd_hsm::testing::TestToken;
use esigd_testkit::api::sha256_of_cert;
use esigd_testkit::idp::{Idp, e2e_dir};
use esigd_testkit::pki::{Ca, openssl, openssl_out};
use esigd_testkit::{Daemon, config, esigd, free_port};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

const CALLBACK: &str = "https://shop.example.test/cb/";

/// An EC P-256 key made by openssl: (PKCS#8 PEM path, public PEM path, public JWK).
fn ec_key(dir: &Path, name: &str) -> (PathBuf, PathBuf, serde_json::Value) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            &format!("{name}.key"),
            "-pubout",
            "-out",
            &format!("{name}.pub"),
        ],
    );
    let pem = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
    let sk = p256::SecretKey::from_pkcs8_pem(&pem).unwrap();
    let point = sk.public_key().to_encoded_point(false);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": name,
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
    });
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
        jwk,
    )
}

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    d: Daemon,
    public: String,
    ca: PathBuf,
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
    payment_key: PathBuf,
}

fn env() -> Env {
    env_with("")
}

/// [`env`] with `identity_extra` added to the `[identity]` section.
fn env_with(identity_extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let port = free_port();
    let public = format!("127.0.0.1:{port}");
    let (client_key, _, client_jwk) = ec_key(dir.path(), "oidc-client");
    let (payment_key, payment_pub, _) = ec_key(dir.path(), "payment");
    let idp = Idp::start_with(&serde_json::json!({
        "clients": [
            {"client_id": "esigd-jwt", "token_endpoint_auth_method": "private_key_jwt",
             "token_endpoint_auth_signing_alg": "ES256",
             "jwks": {"keys": [client_jwk]},
             "userinfo_signed_response_alg": "ES256",
             "redirect_uris": [format!("http://{public}/v1/oidc/callback")]},
            {"client_id": "api-client", "client_secret": "api-secret",
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": ["http://127.0.0.1:9/cb"]}
        ]
    }));
    let ca = Ca::new(dir.path(), "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let a = ca.issue("a", "/CN=shop", "client_ext", None);
    let b = ca.issue("b", "/CN=paid", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[ca]
base_url = "http://{public}"

[tsa]
allow_unsynchronized_clock = true

[ui]
max_sessions_per_ip = 8

[identity]
issuer = {issuer:?}
client_id = "esigd-jwt"
client_auth = "private_key_jwt"
client_key = {client_key:?}
{identity_extra}
[identity.claims]
default_country = "EE"

[payment]
audience = "esigd"
key_file = {payment_pub:?}

[[eservice]]
id = "shop"
name = "Web Shop"
client_cert_sha256 = {a_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = [{CALLBACK:?}]

[[eservice]]
id = "paid"
name = "Paid Service"
client_cert_sha256 = {b_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = [{CALLBACK:?}]
payment_required = true
id_token_audiences = ["api-client"]
"#,
        server = server.0,
        server_key = server.1,
        ca = ca.pem(),
        issuer = idp.issuer,
        a_fp = sha256_of_cert(&a.0),
        b_fp = sha256_of_cert(&b.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["serve", "--public", &public, "--eservice", "127.0.0.1:0"]);
    let d = Daemon::start_logged(cmd, dir.path().join("esigd.log"));
    Env {
        ca: ca.pem(),
        dir,
        _token: token,
        idp,
        d,
        public,
        a,
        b,
        payment_key,
    }
}

impl Env {
    fn interactive_url(&self, service: &str, digest: &[u8], extra: &[(&str, &str)]) -> String {
        let mut u =
            url::Url::parse(&format!("http://{}/v1/sign/interactive", self.public)).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("serviceId", service)
                .append_pair("hash", &B64.encode(digest))
                .append_pair("hashType", "SHA2-256")
                .append_pair("format", "CAdES")
                .append_pair("dataToBeDisplayed", &URL_SAFE_NO_PAD.encode("Order 42"))
                .append_pair("callbackUrl", &format!("{CALLBACK}done?order=42"))
                .append_pair("state", "st-123")
                .append_pair("nonce", "no-456");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }

    /// Runs the browserless flow: Ok(callback params) or Err(driver message).
    fn flow(&self, start: &str, action: &str) -> Result<serde_json::Value, String> {
        self.flow_as(start, action, "mari")
    }

    /// [`Env::flow`] with the test user `user` logging in.
    fn flow_as(&self, start: &str, action: &str, user: &str) -> Result<serde_json::Value, String> {
        let out = Command::new("node")
            .arg(e2e_dir().join("http-flow.mjs"))
            .args([
                "--start",
                start,
                "--callback-prefix",
                CALLBACK,
                "--action",
                action,
                "--user",
                user,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["params"].clone())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    fn fetch(&self, client: &(PathBuf, PathBuf), id: &str) -> (u16, serde_json::Value) {
        let (status, body) = esigd_testkit::curl(&[
            "--cacert",
            self.ca.to_str().unwrap(),
            "--cert",
            client.0.to_str().unwrap(),
            "--key",
            client.1.to_str().unwrap(),
            &format!("https://{}/v1/sign/response/{id}", self.d.eservice),
        ]);
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    fn payment_token(&self, aud: &str, exp_offset: i64, jti: &str) -> String {
        self.payment_token_for("paid", aud, exp_offset, jti)
    }

    /// A payment token for the e-Service `sub` (`payment.eservice_claim` defaults to `sub`).
    fn payment_token_for(&self, sub: &str, aud: &str, exp_offset: i64, jti: &str) -> String {
        let pem = std::fs::read(&self.payment_key).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &serde_json::json!({"aud": aud, "exp": now + exp_offset, "iat": now, "jti": jti, "sub": sub}),
            &key,
        )
        .unwrap()
    }
}

#[test]
fn private_key_jwt_login_with_signed_userinfo_signs_and_returns_to_the_callback() {
    let env = env();
    let doc = env.dir.path().join("order.txt");
    std::fs::write(&doc, b"Order 42: 3 books").unwrap();
    let digest = Sha256::digest(std::fs::read(&doc).unwrap());
    let params = env
        .flow(&env.interactive_url("shop", &digest, &[]), "login")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- esigd ---\n{}\n--- IdP ---\n{}",
                env.d.log_text(),
                env.idp.log()
            )
        });
    // The e-Service's own query, state and nonce come back intact, with the signature ID.
    assert_eq!(params["order"], "42", "{params}");
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["nonce"], "no-456");
    assert!(params.get("error").is_none(), "{params}");
    let id = params["signatureId"].as_str().unwrap();
    // The IdP saw a private_key_jwt token request and a userinfo call.
    let idp_log = env.idp.log();
    assert!(idp_log.contains("POST /token 200"), "{idp_log}");
    assert!(idp_log.contains("/me 200"), "{idp_log}");
    // ... and esigd read the signed userinfo (a failure would be logged and fall back).
    assert!(
        !env.d.log_text().contains("userinfo not read"),
        "{}",
        env.d.log_text()
    );

    let (status, resp) = env.fetch(&env.a, id);
    assert_eq!(status, 200, "{resp}");
    let p7s = B64.decode(resp["signature"].as_str().unwrap()).unwrap();
    let sig = env.dir.path().join("order.p7s");
    std::fs::write(&sig, p7s).unwrap();
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&sig)
        .arg("-content")
        .arg(&doc)
        .arg("-CAfile")
        .arg(env.dir.path().join("data/pki/ca.pem"))
        .args(["-purpose", "any", "-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        env.dir.path().join("signer.pem"),
        resp["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let subject = openssl_out(
        env.dir.path(),
        "openssl x509 -in signer.pem -noout -subject -nameopt RFC2253",
    );
    assert!(subject.contains("CN=Mari Maasikas"), "{subject}");
    // The other e-Service cannot fetch it.
    assert_eq!(env.fetch(&env.b, id).0, 404);

    // Cancelling at the Identity BB: back to the callback with an error and no signature.
    let params = env
        .flow(&env.interactive_url("shop", &digest, &[]), "cancel")
        .unwrap();
    assert_eq!(params["error"], "access_denied", "{params}");
    assert_eq!(params["state"], "st-123");
    assert!(params.get("signatureId").is_none());

    // An unregistered callback: an error page, never a redirect.
    let evil = env
        .interactive_url("shop", &digest, &[])
        .replace("shop.example.test", "shop.example.test.evil.test");
    let e = env.flow(&evil, "login").unwrap_err();
    assert!(e.contains("HTTP 400") && e.contains("callbackUrl"), "{e}");

    // Two signing requests open in one browser (one cookie) stay independent.
    let jar = env.dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            let (status, body) = esigd_testkit::curl(&[
                "-b",
                jar,
                "-c",
                jar,
                &env.interactive_url("shop", &digest, &[]),
            ]);
            assert_eq!(status, 200);
            let page = String::from_utf8(body).unwrap();
            let at = page.find("/v1/sign/interactive/scd?t=").unwrap();
            page[at + 27..].split('"').next().unwrap().to_string()
        })
        .collect();
    assert_ne!(tokens[0], tokens[1]);
    for t in &tokens {
        let url = format!("http://{}/v1/sign/interactive/scd?t={t}", env.public);
        let (status, body) = esigd_testkit::curl(&["-b", jar, &url]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    // Without the cookie the link is refused.
    let url = format!(
        "http://{}/v1/sign/interactive/scd?t={}",
        env.public, tokens[0]
    );
    assert_eq!(esigd_testkit::curl(&[&url]).0, 400);

    // Live sessions from one address are capped (ui.max_sessions_per_ip = 8 here).
    let statuses: Vec<u16> = (0..8)
        .map(|_| esigd_testkit::curl(&[&env.interactive_url("shop", &digest, &[])]).0)
        .collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(statuses[0], 200, "{statuses:?}");
}

#[test]
fn several_documents_in_the_redirect_are_listed_and_signed_as_xades() {
    let env = env();
    let (contract, note) = (b"contract body".as_slice(), b"a note".as_slice());
    let docs = [
        (
            "contract 2024.pdf",
            "application/pdf",
            Sha256::digest(contract),
        ),
        ("note.txt", "", Sha256::digest(note)),
    ];
    let mut u = url::Url::parse(&format!("http://{}/v1/sign/interactive", env.public)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("serviceId", "shop")
            .append_pair("hashType", "SHA2-256")
            .append_pair("format", "XAdES")
            .append_pair("callbackUrl", &format!("{CALLBACK}done?order=43"))
            .append_pair("state", "st-docs");
        for (name, media, digest) in &docs {
            q.append_pair("doc", &format!("{name}|{media}|{}", B64.encode(digest)));
        }
    }
    // The choice page lists each document with its fingerprint.
    let (status, page) = esigd_testkit::curl(&[u.as_str()]);
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"documents\""), "{page}");
    assert!(
        page.contains("contract 2024.pdf") && page.contains("note.txt"),
        "{page}"
    );

    let params = env.flow(u.as_str(), "login").unwrap_or_else(|e| {
        panic!("{e}\n--- esigd ---\n{}", env.d.log_text());
    });
    let id = params["signatureId"].as_str().expect("signatureId");
    let (status, resp) = env.fetch(&env.a, id);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["format"], "XAdES");
    let xml = String::from_utf8(B64.decode(resp["signature"].as_str().unwrap()).unwrap()).unwrap();
    // Both documents are referenced by name (percent-encoded), with their digests and media
    // types; the independent validators run on this format in formats_api.rs.
    assert!(xml.contains("URI=\"contract%202024.pdf\""), "{xml}");
    assert!(xml.contains("URI=\"note.txt\""), "{xml}");
    for (_, _, digest) in &docs {
        assert!(xml.contains(&B64.encode(digest)), "{xml}");
    }
    assert!(
        xml.contains("<xades:MimeType>application/pdf</xades:MimeType>"),
        "{xml}"
    );
    assert!(
        xml.contains("<xades:MimeType>application/octet-stream</xades:MimeType>"),
        "{xml}"
    );
    assert!(xml.contains("SignatureTimeStamp"), "B-T: {xml}");

    // CAdES signs one digest: two documents are refused on the page, before any login.
    let cades = u.as_str().replace("format=XAdES", "format=CAdES");
    let (status, page) = esigd_testkit::curl(&[&cades]);
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("signs one digest"), "{page}");
    // hash and doc together are refused.
    let both = format!("{}&hash={}", u.as_str(), B64.encode(docs[0].2));
    let (status, _) = esigd_testkit::curl(&[&both]);
    assert_eq!(status, 400);
}

#[test]
fn payment_tokens_are_required_checked_and_single_use_on_both_entry_points() {
    let env = env();
    let digest = Sha256::digest(b"paid document");

    // Browser entry point.
    let e = env
        .flow(&env.interactive_url("paid", &digest, &[]), "login")
        .unwrap_err();
    assert!(
        e.contains("HTTP 402") && e.contains("payment"),
        "missing token: {e}"
    );
    let expired = env.payment_token("esigd", -120, "jti-expired");
    let e = env
        .flow(
            &env.interactive_url("paid", &digest, &[("paymentToken", &expired)]),
            "login",
        )
        .unwrap_err();
    assert!(e.contains("HTTP 402"), "expired token: {e}");
    let wrong_aud = env.payment_token("someone-else", 300, "jti-aud");
    let e = env
        .flow(
            &env.interactive_url("paid", &digest, &[("paymentToken", &wrong_aud)]),
            "login",
        )
        .unwrap_err();
    assert!(e.contains("HTTP 402"), "wrong audience: {e}");
    let good = env.payment_token("esigd", 300, "jti-browser-1");
    // Opening (or reloading) the page does not use the payment up; only signing does.
    for _ in 0..2 {
        let (status, _) = esigd_testkit::curl(&[&env.interactive_url(
            "paid",
            &digest,
            &[("paymentToken", &good)],
        )]);
        assert_eq!(status, 200);
    }
    let params = env
        .flow(
            &env.interactive_url("paid", &digest, &[("paymentToken", &good)]),
            "login",
        )
        .unwrap();
    assert!(params["signatureId"].is_string(), "{params}");
    let e = env
        .flow(
            &env.interactive_url("paid", &digest, &[("paymentToken", &good)]),
            "login",
        )
        .unwrap_err();
    assert!(
        e.contains("HTTP 402") && e.contains("already used"),
        "reused token: {e}"
    );

    // API entry point (X-GovStack-PaymentToken).
    let id_token = env
        .idp
        .id_token("api-client", "api-secret", "http://127.0.0.1:9/cb", "mari");
    let body =
        serde_json::json!({"format": "CAdES", "hash": B64.encode(digest), "hashType": "SHA2-256"})
            .to_string();
    let post = |payment: Option<&str>| {
        let auth = format!("X-GovStack-AuthenticationToken: {id_token}");
        let pay = payment.map(|p| format!("X-GovStack-PaymentToken: {p}"));
        let url = format!("https://{}/v1/sign/onetime", env.d.eservice);
        let mut args = vec![
            "--cacert",
            env.ca.to_str().unwrap(),
            "--cert",
            env.b.0.to_str().unwrap(),
            "--key",
            env.b.1.to_str().unwrap(),
            "-H",
            &auth,
            "--data-binary",
            &body,
        ];
        if let Some(p) = &pay {
            args.extend(["-H", p.as_str()]);
        }
        args.push(&url);
        let (status, body) = esigd_testkit::curl(&args);
        (status, String::from_utf8_lossy(&body).to_string())
    };
    let (s, b) = post(None);
    assert_eq!(s, 402, "{b}");
    assert!(b.contains("payment token is required"), "{b}");
    let (s, b) = post(Some(&env.payment_token("esigd", -120, "jti-api-expired")));
    assert_eq!(s, 402, "{b}");
    let (s, b) = post(Some("not.a.jwt"));
    assert_eq!(s, 402, "{b}");
    // A payment made for another e-Service is not spent here (payment.eservice_claim, default
    // `sub`, is not set in this configuration).
    let (s, b) = post(Some(&env.payment_token_for(
        "shop",
        "esigd",
        300,
        "jti-api-shop",
    )));
    assert_eq!(s, 402, "{b}");
    assert!(b.contains("payment.eservice_claim"), "{b}");
    let api_token = env.payment_token("esigd", 300, "jti-api-1");
    let (s, b) = post(Some(&api_token));
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(Some(&api_token));
    assert_eq!(s, 402, "{b}");
    assert!(b.contains("already used"), "{b}");
    // A token never shows up in the log.
    let log = env.d.log_text();
    assert!(
        !log.contains(&api_token) && !log.contains(&good),
        "a payment token was logged"
    );
}

/// A callbackUrl that already has a parameter esigd adds, or is overlong, gets an error page and
/// no session (no redirect, nothing kept).
#[test]
fn callback_urls_with_reserved_parameters_or_overlong_are_refused() {
    let env = env();
    let digest = Sha256::digest(b"callback checks");
    for (callback, says) in [
        (
            format!("{CALLBACK}done?signatureId=ffff"),
            "must not have a",
        ),
        (
            format!("{CALLBACK}done?order=1&state=forged"),
            "must not have a",
        ),
        (
            format!("{CALLBACK}done?error=access_denied"),
            "must not have a",
        ),
        (
            format!("{CALLBACK}{}", "a".repeat(2100)),
            "longer than 2048",
        ),
    ] {
        let url = env.interactive_url("shop", &digest, &[]);
        // Replace the default callbackUrl with the one under test.
        let mut u = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "callbackUrl" {
                    callback.clone()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        let (status, body) = esigd_testkit::curl(&["-D", "-", u.as_str()]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{callback}: {body}");
        assert!(body.contains(says), "{callback}: {body}");
        assert!(!body.to_ascii_lowercase().contains("location:"), "{body}");
    }
}

/// `identity.acr_values` and `identity.max_age`: the login must have the asked-for level of
/// assurance and be recent. Mari logs in at eIDAS LoA high, Jüri at substantial (the dev IdP's
/// users); oidc-provider answers max_age with auth_time.
#[test]
fn the_login_must_have_the_configured_assurance_level_and_be_recent() {
    let env = env_with("acr_values = [\"http://eidas.europa.eu/LoA/high\"]\nmax_age = \"5m\"\n");
    let digest = Sha256::digest(b"assurance");
    let ok = env
        .flow_as(&env.interactive_url("shop", &digest, &[]), "login", "mari")
        .unwrap();
    assert!(
        ok["signatureId"].as_str().is_some_and(|s| s.len() == 64),
        "{ok}"
    );
    let refused = env
        .flow_as(&env.interactive_url("shop", &digest, &[]), "login", "juri")
        .unwrap();
    assert_eq!(refused["error"], "login_failed", "{refused}");
    assert!(refused.get("signatureId").is_none(), "{refused}");
    let log = std::fs::read_to_string(env.dir.path().join("esigd.log")).unwrap();
    assert!(
        log.contains("is not in identity.acr_values"),
        "the log says why"
    );
    // The operator sees how the sessions ended, and how many are open (one page opened now).
    assert_eq!(
        esigd_testkit::curl(&[&env.interactive_url("shop", &digest, &[])]).0,
        200
    );
    let (status, body) = esigd_testkit::curl(&[&format!("http://{}/metrics", env.public)]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    for line in [
        "esigd_signing_sessions_ended_total{outcome=\"signed\"} 1",
        "esigd_signing_sessions_ended_total{outcome=\"login_failed\"} 1",
        "esigd_signing_sessions_ended_total{outcome=\"access_denied\"} 0",
        "esigd_signing_sessions 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}
