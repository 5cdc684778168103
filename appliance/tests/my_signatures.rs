//! "My signatures" (GovStack 2.3.1, "view the list of signings performed"; issue #15): a citizen logs in
//! on the public listener through the development Identity BB — plain HTTP with a cookie jar (curl), no
//! browser — and sees exactly the signatures made in their name, newest first, with the e-Service's name
//! and the text they were shown, read from the audit ledger's index of their pseudonymous reference. A
//! proof bundle downloaded from the page verifies offline with `esig audit verify`; another citizen's
//! signatureId is refused (404) and the ledger names citizens by reference only.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_hsm::testing::TestToken;
use esigd_ledger::ProofBundle;
use esigd_testkit::api::{Reply, mtls, sha256_of_cert};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, esig, esigd, free_port, text};
use sha2::Digest;

/// esigd's OIDC client secret at the IdP.
const OIDC_SECRET: &str = "esigd-my-signatures-secret";
/// The e-Services' client at the IdP (the audience of the ID tokens they pass on).
const AUD: &str = "service-a";
const AUD_SECRET: &str = "service-a-secret";
const AUD_REDIRECT: &str = "http://127.0.0.1:9/cb";

struct Env {
    dir: tempfile::TempDir,
    _token: TestToken,
    idp: Idp,
    daemon: Daemon,
    /// `http://127.0.0.1:<port>`: the public listener.
    public: String,
    ca: PathBuf,
    /// e-Service `land` ("Land Registry") and `tax` ("Tax Board").
    land: (PathBuf, PathBuf),
    tax: (PathBuf, PathBuf),
}

fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start_with(&serde_json::json!({
        "clients": [
            {"client_id": "esigd", "client_secret": OIDC_SECRET,
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": [format!("{public}/v1/oidc/callback")]},
            {"client_id": AUD, "client_secret": AUD_SECRET,
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": [AUD_REDIRECT]}
        ]
    }));
    let pki = Ca::new(dir.path(), "eservice-ca");
    let server = pki.issue("server", "/CN=esigd.test", "server_ext", None);
    let land = pki.issue("land", "/CN=land/O=Land Registry", "client_ext", None);
    let tax = pki.issue("tax", "/CN=tax/O=Tax Board", "client_ext", None);
    let toml = format!(
        r#"
[tls]
cert = {server:?}
key = {server_key:?}
client_ca = {ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_OIDC_SECRET" }}
redirect_url = "{public}/v1/oidc/callback"
[identity.claims]
default_country = "EE"

[[eservice]]
id = "land"
name = "Land Registry"
client_cert_sha256 = {land_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]

[[eservice]]
id = "tax"
name = "Tax Board"
client_cert_sha256 = {tax_fp:?}
allowed_ips = ["127.0.0.1/32"]
id_token_audiences = ["{AUD}"]
"#,
        server = server.0,
        server_key = server.1,
        ca = pki.pem(),
        issuer = idp.issuer,
        land_fp = sha256_of_cert(&land.0),
        tax_fp = sha256_of_cert(&tax.0),
    );
    let cfg = config(dir.path(), &token, &toml);
    esigd_testkit::init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg).args([
        "serve",
        "--public",
        &format!("127.0.0.1:{port}"),
        "--eservice",
        "127.0.0.1:0",
    ]);
    cmd.env("ESIGD_TEST_OIDC_SECRET", OIDC_SECRET);
    let daemon = Daemon::start_logged(cmd, dir.path().join("esigd.log"));
    Env {
        ca: pki.pem(),
        dir,
        _token: token,
        idp,
        daemon,
        public,
        land,
        tax,
    }
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn call(&self, client: &(PathBuf, PathBuf), method: &str, path: &str, extra: &[&str]) -> Reply {
        mtls(
            &self.daemon.eservice,
            &self.ca,
            Some(client),
            method,
            path,
            extra,
        )
    }

    /// A one-time signature by the e-Service `client` for `user` (their fresh ID token), showing
    /// `display`; its signatureId.
    fn sign(&self, client: &(PathBuf, PathBuf), user: &str, display: &str) -> String {
        let digest = sha2::Sha256::digest(format!("{user}: {display}").as_bytes());
        let body = serde_json::json!({
            "format": "CAdES",
            "hash": B64.encode(digest),
            "hashType": "SHA2-256",
            "dataToBeDisplayed": display,
            "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        let token = self.idp.id_token(AUD, AUD_SECRET, AUD_REDIRECT, user);
        let auth = format!("X-GovStack-AuthenticationToken: {token}");
        let r = self.call(
            client,
            "POST",
            "/v1/sign/onetime",
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ],
        );
        assert_eq!(r.status, 200, "one-time signature: {}", r.message());
        r.json()["signatureId"].as_str().unwrap().to_string()
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- esigd log ---\n{}\n--- IdP log ---\n{}",
            self.daemon.log_text(),
            self.idp.log()
        )
    }
}

/// One browser: curl with a cookie jar, following redirects.
struct Browser {
    jar: PathBuf,
}

/// A page: status, the URL it was read from (after redirects), the body.
struct Page {
    status: u16,
    url: String,
    body: String,
}

impl Browser {
    fn new(dir: &Path, name: &str) -> Browser {
        Browser {
            jar: dir.join(format!("{name}.cookies")),
        }
    }

    fn fetch(&self, url: &str, extra: &[&str]) -> Page {
        let out = Command::new("curl")
            .args(["-s", "-L", "--max-redirs", "20", "-c"])
            .arg(&self.jar)
            .arg("-b")
            .arg(&self.jar)
            .args(["-w", "\n%{http_code} %{url_effective}"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&out.stdout).to_string();
        let split = all.rfind('\n').unwrap();
        let (body, tail) = (all[..split].to_string(), &all[split + 1..]);
        let (status, url) = tail.split_once(' ').unwrap();
        Page {
            status: status.parse().unwrap(),
            url: url.to_string(),
            body,
        }
    }

    /// Opens "My signatures" and logs `user` in at the Identity BB; the list page.
    fn log_in(&self, env: &Env, user: &str) -> Page {
        let start = self.fetch(&format!("{}/v1/signatures", env.public), &[]);
        assert_eq!(start.status, 200, "{}", start.body);
        let login = attr(&start.body, "login", "href").expect("a login link");
        let form = self.fetch(&format!("{}{login}", env.public), &[]);
        assert_eq!(form.status, 200, "{}\n{}", form.body, env.diagnostics());
        assert!(
            form.url.starts_with(&env.idp.issuer),
            "at the IdP: {}",
            form.url
        );
        let action = between(&form.body, "action=\"", "\"").expect("the IdP's login form");
        let page = self.fetch(
            &format!("{}{}", env.idp.issuer, unescape(action)),
            &[
                "--data-urlencode",
                &format!("login={user}"),
                "--data-urlencode",
                "password=test",
                "--data-urlencode",
                "action=login",
            ],
        );
        assert_eq!(page.status, 200, "{}\n{}", page.body, env.diagnostics());
        assert!(
            page.url
                .starts_with(&format!("{}/v1/signatures/list?t=", env.public)),
            "{}",
            page.url
        );
        page
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Attribute `name` of the element with `id`.
fn attr(html: &str, id: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    between(tag, &format!("{name}=\""), "\"").map(unescape)
}

/// One listed signature.
#[derive(Debug)]
struct Row {
    id: String,
    time: String,
    eservice: String,
    display: String,
    format: String,
    method: String,
    proof: String,
}

/// The rows of the "My signatures" table, in page order.
fn rows(html: &str) -> Vec<Row> {
    html.split("<tr id=\"sig-")
        .skip(1)
        .map(|r| {
            let r = &r[..r.find("</tr>").unwrap()];
            let cell = |class: &str| {
                let from = r.find(&format!("class=\"{class}\"")).unwrap();
                let inner = &r[from..];
                let open = inner.find('>').unwrap() + 1;
                unescape(inner[open..inner.find("</td>").unwrap()].trim())
            };
            Row {
                id: r[..r.find('"').unwrap()].to_string(),
                time: cell("time"),
                eservice: cell("eservice"),
                display: cell("display"),
                format: cell("format"),
                method: cell("method"),
                proof: unescape(
                    between(r, "class=\"proof\"", ">")
                        .and_then(|a| between(a, "href=\"", "\""))
                        .unwrap(),
                ),
            }
        })
        .collect()
}

#[test]
fn citizens_see_exactly_their_signatures_and_verify_their_proofs() {
    let env = start();
    // Two signatures in Mari's name (two e-Services), one in Jüri's.
    let first = env.sign(&env.land, "mari", "Deed of sale: flat 12 & parking");
    let theirs = env.sign(&env.land, "juri", "Mortgage application 77");
    let second = env.sign(&env.tax, "mari", "Income declaration 2026");
    // The e-Service fetches the first: an event of the transaction without a user reference.
    let fetched = env.call(&env.land, "GET", &format!("/v1/sign/response/{first}"), &[]);
    assert_eq!(fetched.status, 200, "{}", fetched.message());

    let mari = Browser::new(env.dir.path(), "mari");
    let page = mari.log_in(&env, "mari");
    assert!(page.body.contains("Mari Maasikas"), "{}", page.body);
    let listed = rows(&page.body);
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [second.as_str(), first.as_str()],
        "exactly Mari's two, newest first:\n{}",
        page.body
    );
    let (newest, oldest) = (&listed[0], &listed[1]);
    assert_eq!(newest.eservice, "Tax Board");
    assert_eq!(newest.display, "Income declaration 2026");
    assert_eq!(oldest.eservice, "Land Registry");
    assert_eq!(oldest.display, "Deed of sale: flat 12 & parking");
    for r in &listed {
        assert_eq!(r.format, "CAdES", "{r:?}");
        assert_eq!(r.method, "ONETIME", "{r:?}");
        assert!(humantime::parse_rfc3339(&r.time).is_ok(), "{r:?}");
    }
    assert!(!page.body.contains("Mortgage application 77"));

    // The proof of the first, downloaded from the page, verifies offline with the audit key.
    let t = between(&page.url, "t=", "&")
        .unwrap_or_else(|| page.url.split("t=").nth(1).unwrap())
        .to_string();
    assert_eq!(
        oldest.proof,
        format!("/v1/signatures/proof?t={t}&id={first}")
    );
    let proof = mari.fetch(&format!("{}{}", env.public, oldest.proof), &[]);
    assert_eq!(proof.status, 200, "{}\n{}", proof.body, env.diagnostics());
    let bundle: ProofBundle = serde_json::from_str(&proof.body).unwrap();
    assert_eq!(bundle.signature_id, first);
    let events: Vec<serde_json::Value> = bundle
        .entries
        .iter()
        .map(|e| serde_json::from_slice(&e.leaf).unwrap())
        .collect();
    let created = events
        .iter()
        .find(|e| e["event"] == "signature.created")
        .unwrap_or_else(|| panic!("{events:?}"));
    let user_ref = created["userRef"].as_str().unwrap();
    assert_eq!(user_ref.len(), 64, "{created}");
    assert!(user_ref.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created["display"], "Deed of sale: flat 12 & parking");
    assert_eq!(created["format"], "CAdES");
    assert!(
        events.iter().any(|e| e["event"] == "signature.fetched"),
        "the whole transaction: {events:?}"
    );
    // The ledger names her by reference only.
    for e in &events {
        let s = e.to_string();
        for personal in ["49005170001", "Mari", "Maasikas"] {
            assert!(!s.contains(personal), "{personal} in {s}");
        }
    }
    let file = env.path("proof-first.json");
    std::fs::write(&file, &proof.body).unwrap();
    let o = esig()
        .args(["audit", "verify"])
        .arg(&file)
        .arg("--key")
        .arg(env.path("data/pki/audit.pem"))
        .output()
        .unwrap();
    assert!(o.status.success(), "esig audit verify: {}", text(&o));
    assert!(text(&o).contains("signature.created"), "{}", text(&o));

    // The second's proof too (its events are above the last published head: one is published).
    let proof = mari.fetch(&format!("{}{}", env.public, newest.proof), &[]);
    assert_eq!(proof.status, 200, "{}", proof.body);

    // Jüri's signatureId is not hers: the same 404 as an unknown one.
    let other = mari.fetch(
        &format!("{}/v1/signatures/proof?t={t}&id={theirs}", env.public),
        &[],
    );
    assert_eq!(other.status, 404, "{}", other.body);
    assert!(!other.body.contains("Mortgage"), "{}", other.body);
    let unknown = mari.fetch(
        &format!(
            "{}/v1/signatures/proof?t={t}&id={}",
            env.public,
            "ab".repeat(32)
        ),
        &[],
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // Without her session cookie (another browser), the link is refused.
    let stranger = Browser::new(env.dir.path(), "stranger");
    let refused = stranger.fetch(&format!("{}{}", env.public, oldest.proof), &[]);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(!refused.body.contains("\"entries\""));

    // Jüri, logged in elsewhere, sees his one signature only, and not Mari's proofs.
    let juri = Browser::new(env.dir.path(), "juri");
    let page = juri.log_in(&env, "juri");
    let listed = rows(&page.body);
    assert_eq!(listed.len(), 1, "{}", page.body);
    assert_eq!(listed[0].id, theirs);
    assert_eq!(listed[0].eservice, "Land Registry");
    assert_eq!(listed[0].display, "Mortgage application 77");
    let t = page.url.split("t=").nth(1).unwrap().to_string();
    let hers = juri.fetch(
        &format!("{}/v1/signatures/proof?t={t}&id={first}", env.public),
        &[],
    );
    assert_eq!(hers.status, 404, "{}", hers.body);
}
