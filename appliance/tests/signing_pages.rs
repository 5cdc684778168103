//! The signing pages on a configured daemon: the operator's branding (`[ui]`), and what the user
//! sees when the Identity BB cannot be reached.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use esigd_hsm::testing::TestToken;
use esigd_testkit::pki::Ca;
use esigd_testkit::{Daemon, config, curl, esigd, init};

/// A configured daemon (its own token, TLS files from a test CA) with `extra` TOML, one e-Service
/// `shop` with callback prefix `https://shop.example/cb/`, logging to `<dir>/esigd.log`.
fn daemon(dir: &Path, token: &TestToken, extra: &str) -> Daemon {
    let ca = Ca::new(dir, "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let cfg = config(
        dir,
        token,
        &format!(
            r##"
[tls]
cert = {cert:?}
key = {key:?}
client_ca = {ca:?}
[tsa]
allow_unsynchronized_clock = true
{extra}
{shop}"##,
            cert = server.0,
            key = server.1,
            ca = ca.pem(),
            shop = esigd_testkit::SHOP_ESERVICE,
        ),
    );
    init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg).args(esigd_testkit::SERVE);
    Daemon::start_logged(cmd, dir.join("esigd.log"))
}

/// The interactive URL for e-Service `shop` with a fixed digest.
fn page_url() -> String {
    format!(
        "/v1/sign/interactive?serviceId=shop&hashType=SHA2-256&format=CAdES&hash={}&callbackUrl=https%3A%2F%2Fshop.example%2Fcb%2Fdone&dataToBeDisplayed={}",
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc%3D",
        URL_SAFE_NO_PAD.encode("Order 42"),
    )
}

#[test]
fn the_operators_name_logo_and_colours_are_on_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>"#,
    )
    .unwrap();
    let d = daemon(
        dir.path(),
        &token,
        &format!(
            r##"[ui]
name = "Testland <Trust> Service"
logo = {logo:?}
primary_color = "#aa0011"
background_color = "#fafafa""##
        ),
    );
    let (status, body) = d.get(&page_url(), &[]);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{html}");
    // The display text must come base64url-encoded (GovStack): plain text is refused, not guessed.
    let plain = page_url().replace(&URL_SAFE_NO_PAD.encode("Order 42"), "Order%2042");
    let (status, body) = d.get(&plain, &[]);
    let refused = String::from_utf8(body).unwrap();
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.contains("dataToBeDisplayed must be base64url"),
        "{refused}"
    );
    // The name, escaped, in the title and the header; the logo; the theme.
    assert!(html.contains("Testland &lt;Trust&gt; Service"), "{html}");
    assert!(!html.contains("<Trust>"), "{html}");
    assert!(html.contains(r#"src="/v1/ui/logo""#), "{html}");
    assert!(html.contains("/v1/ui/theme.css"), "{html}");
    assert!(html.contains("Order 42"), "{html}");

    let (status, css) = d.get("/v1/ui/theme.css", &[]);
    assert_eq!(status, 200);
    let css = String::from_utf8(css).unwrap();
    assert!(
        css.contains("--primary: #aa0011") && css.contains("--bg: #fafafa"),
        "{css}"
    );

    // The logo is served as SVG under a CSP that lets no script of it run, even opened directly.
    let (status, answer) = curl(&["-D", "-", &d.url("/v1/ui/logo")]);
    assert_eq!(status, 200);
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.contains("content-type: image/svg+xml"), "{answer}");
    assert!(
        answer.contains("content-security-policy: default-src 'none'"),
        "{answer}"
    );
}

/// The Identity BB is down: the choice page still shows (it needs no IdP), and choosing National
/// ID gives a 503 page that says so, with no redirect anywhere; the e-Service can still be
/// returned to with "cancel".
#[test]
fn an_unreachable_identity_bb_gives_a_clear_page_not_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    // A port that was free a moment ago: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = daemon(
        dir.path(),
        &token,
        &format!(
            "[identity]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"esigd\"\nclient_secret = {{ file = {secret:?} }}\n"
        ),
    );
    let jar = dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let (status, body) = d.get(&page_url(), &["-c", jar]);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{html}");
    let link = |name: &str| {
        let at = html
            .find(&format!("/v1/sign/interactive/{name}?t="))
            .unwrap_or_else(|| panic!("no {name} link in {html}"));
        html[at..].split('"').next().unwrap().replace("&amp;", "&")
    };
    let (status, answer) = d.get(&link("national-id"), &["-b", jar, "-D", "-"]);
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("cannot be reached"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\nretry-after: 30"),
        "{answer}"
    );
    assert!(
        !answer.to_ascii_lowercase().contains("\nlocation:"),
        "{answer}"
    );
    // The user can still go back to the e-Service.
    let (status, answer) = d.get(&link("cancel"), &["-b", jar, "-D", "-"]);
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert_eq!(status, 303, "{answer}");
    assert!(
        answer.contains("location: https://shop.example/cb/done?error=access_denied"),
        "{answer}"
    );
}

/// Issue #11: plain GETs cannot take the signing-session table. With a table of 20 sessions,
/// 5 per /64 and 10 per /48 (`ui.max_sessions*`), and the clients' IPv6 addresses presented by
/// a trusted proxy: many /64s of one /48, and one /56, get 10 sessions each; a flood from many
/// /48s evicts the oldest unused sessions, never the one at the Identity BB; another network
/// still gets the choice page, and the citizen who went to log in comes back to a live session.
#[test]
fn a_session_flood_leaves_room_for_others_and_keeps_logins_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let idp = esigd_testkit::idp::Idp::start();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "esigd-dev-secret\n").unwrap();
    let d = daemon(
        dir.path(),
        &token,
        &format!(
            r#"[listen]
trusted_proxies = ["127.0.0.1/32"]
[ui]
max_sessions = 20
max_sessions_per_ip = 5
max_sessions_per_48 = 10
[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ file = {secret:?} }}
"#,
            issuer = idp.issuer
        ),
    );
    let open = |client: &str, extra: &[&str]| {
        let header = format!("X-Forwarded-For: {client}");
        let mut args = vec!["-H", header.as_str()];
        args.extend(extra);
        d.get(&page_url(), &args)
    };
    // A citizen opens the page and goes to the Identity BB.
    let jar = dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let (status, body) = open("198.51.100.7", &["-c", jar]);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{html}");
    let at = html.find("/v1/sign/interactive/national-id?t=").unwrap();
    let link = html[at..].split('"').next().unwrap().replace("&amp;", "&");
    let (status, answer) = d.get(&link, &["-b", jar, "-D", "-"]);
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(status, 303, "{answer}");
    let location = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| l[9..].trim().to_owned())
        })
        .unwrap();
    assert!(location.starts_with(&idp.issuer), "{location}");
    let state = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let count = |clients: Vec<String>| {
        clients
            .iter()
            .map(|c| open(c, &[]).0)
            .filter(|s| {
                assert!(*s == 200 || *s == 503, "{s}");
                *s == 200
            })
            .count()
    };
    // 30 /64s of one /48; 30 /64s of one /56: the /48 budget (10) each.
    assert_eq!(
        count((0..30).map(|n| format!("2001:db8:aaaa:{n:x}::1")).collect()),
        10
    );
    assert_eq!(
        count((0..30).map(|n| format!("2001:db8:bbbb:{n:x}::1")).collect()),
        10
    );
    // 40 more /48s: the table (20) is full, each new session evicts the oldest unused one.
    assert_eq!(
        count(
            (0..40)
                .map(|n| format!("2001:db8:{:x}::1", 0x100 + n))
                .collect()
        ),
        40
    );
    // Another network still gets the choice page.
    let (status, body) = open("203.0.113.9", &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // The citizen at the Identity BB comes back (here: cancelled there) to a live session: sent
    // back to the e-Service, not refused as an unknown session.
    let (status, answer) = d.get(
        &format!("/v1/oidc/callback?state={state}&error=access_denied"),
        &["-b", jar, "-D", "-"],
    );
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert_eq!(status, 303, "{answer}");
    assert!(
        answer.contains("location: https://shop.example/cb/done?error=access_denied"),
        "{answer}"
    );
}
