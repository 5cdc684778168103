//! `[ui]`: the operator's name, logo and colours on the signing pages.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::pki::Ca;
use common::{Daemon, config, curl, esigd, init};
use esigd_hsm::testing::TestToken;

#[test]
fn the_operators_name_logo_and_colours_are_on_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let ca = Ca::new(dir.path(), "eservice-ca");
    let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>"#,
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &token,
        &format!(
            r##"
[tls]
cert = {cert:?}
key = {key:?}
client_ca = {ca:?}
[tsa]
allow_unsynchronized_clock = true
[ui]
name = "Testland <Trust> Service"
logo = {logo:?}
primary_color = "#aa0011"
background_color = "#fafafa"
[[eservice]]
id = "shop"
name = "Web Shop"
client_cert_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["https://shop.example/cb/"]
"##,
            cert = server.0,
            key = server.1,
            ca = ca.pem(),
        ),
    );
    init(&cfg);
    let mut cmd = esigd();
    cmd.arg("--config").arg(&cfg).args(common::SERVE);
    let d = Daemon::start_logged(cmd, dir.path().join("esigd.log"));

    let page = format!(
        "/v1/sign/interactive?serviceId=shop&hashType=SHA2-256&format=CAdES&hash={}&callbackUrl=https%3A%2F%2Fshop.example%2Fcb%2Fdone&dataToBeDisplayed={}",
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc%3D",
        URL_SAFE_NO_PAD.encode("Order 42"),
    );
    let (status, body) = d.get(&page, &[]);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{html}");
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
