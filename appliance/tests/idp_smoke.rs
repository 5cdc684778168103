//! Smoke test of the development Identity BB (`tests/e2e/idp.mjs`): start it, log `mari` in for the `esigd`
//! client without a browser, and read the ID token's claims. Needs `scripts/install-deps.sh --with-test-tools`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use esigd_testkit::idp::Idp;

#[test]
fn idp_issues_an_id_token_for_mari() {
    let idp = Idp::start();
    assert!(
        idp.issuer.starts_with("http://127.0.0.1:"),
        "{}",
        idp.issuer
    );

    let token = idp.id_token(
        "esigd",
        "esigd-dev-secret",
        "http://127.0.0.1:8080/v1/oidc/callback",
        "mari",
    );
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS: {token}");

    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");

    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert_eq!(claims["aud"], "esigd");
    assert_eq!(claims["sub"], "user-mari");
    assert_eq!(claims["name"], "Mari Maasikas");
    assert_eq!(claims["individual_id"], "49005170001");
    assert!(claims["nonce"].is_string(), "{claims}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(
        idp.log().contains("POST /token 200"),
        "IdP log:\n{}",
        idp.log()
    );
}
