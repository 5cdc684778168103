//! Query string of `GET /v1/sign/interactive` (the browser redirect an e-Service builds) → axum's
//! `Query<HashMap<String, String>>` extractor (what the route takes), the registry's `serviceId`
//! lookup and `callbackUrl` check (`Eservice::callback` of a registry built from a config entry),
//! `dataToBeDisplayed` decoding (`sign_input::decode_display_text`) and `validate_sign_input`, in
//! the order of `interactive` in web/src/routes/interactive.rs.
//!
//! The checks of the handler that are not functions of their own (serviceId lookup, callbackUrl
//! length and reserved parameters, `+` as space in `hash`) are restated here in the route's order.
//!
//! Asserts, for an accepted request: the callback has the prefix's scheme, host and port, no user
//! info, a path under the prefix's, and the URL esigd redirects to (the callback with
//! `signatureId`, `state` and `nonce` appended) is accepted again with each of those once; the
//! digest has the hash type's length; the display text is within bounds; and the canonical query
//! built from the accepted values (as esig.js `signUrl` writes it) is accepted with the same
//! values. For every input: refusal messages echo a bounded part of it (they are shown on the
//! appliance's error page, where echoed text could pose as the appliance's own words).
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Query;
use axum::http::Uri;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use esigd_service::config::EserviceEntry;
use esigd_service::registry::Registry;
use esigd_web::routes::interactive::MAX_CALLBACK_URL;
use esigd_web::sign_input::{
    MAX_DISPLAY_CHARS, SignInput, check_display_chars, decode_display_text, validate_sign_input,
};
use libfuzzer_sys::fuzz_target;

const MAX_AGE: Duration = Duration::from_secs(600);
const PREFIX: &str = "https://land.example.gov/esign/";
const RESERVED: [&str; 5] = [
    "signatureId",
    "error",
    "error_description",
    "state",
    "nonce",
];
const MAX_MESSAGE: usize = 400;

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let entry: EserviceEntry = toml::from_str(&format!(
            r#"
id = "land-registry"
name = "Land Registry"
client_cert_sha256 = "{}"
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["{PREFIX}", "http://127.0.0.1:8081/cb"]
"#,
            "ab".repeat(32)
        ))
        .expect("fixture e-Service entry");
        Registry::new(&[entry], &[], Some("esigd"))
    })
}

/// What the route accepts before it creates a session (payment aside: no Payment BB here).
struct Accepted {
    callback: url::Url,
    input: SignInput,
}

fn check(uri: &Uri) -> Option<Result<Accepted, String>> {
    // A query the extractor refuses gets axum's 400 before the handler runs.
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    Some(handler(&q))
}

fn handler(q: &HashMap<String, String>) -> Result<Accepted, String> {
    let service_id = q.get("serviceId").ok_or("serviceId is required")?;
    let eservice = registry()
        .eservice(service_id)
        .ok_or("serviceId is not a registered e-Service")?;
    let callback = q.get("callbackUrl").ok_or("callbackUrl is required")?;
    if callback.len() > MAX_CALLBACK_URL {
        return Err("callbackUrl is longer than 2048 bytes".into());
    }
    let callback = eservice
        .callback(callback)
        .ok_or("callbackUrl is not registered for this e-Service")?;
    if let Some((k, _)) = callback
        .query_pairs()
        .find(|(k, _)| RESERVED.contains(&k.as_ref()))
    {
        return Err(format!("callbackUrl must not have a {k:?} parameter"));
    }
    let hash = q.get("hash").map(|h| h.replace(' ', "+"));
    let display = q
        .get("dataToBeDisplayed")
        .map(|d| decode_display_text(d))
        .transpose()?;
    let input = validate_sign_input(
        q.get("format").map(String::as_str),
        hash.as_deref(),
        None,
        q.get("hashType").map(String::as_str),
        display.as_deref(),
        q.get("requestTimestamp").map(String::as_str),
        MAX_AGE,
    )
    .map_err(|e| e.message().to_owned())?;
    Ok(Accepted { callback, input })
}

fn canonical_query(callback: &str, input: &SignInput) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("serviceId", "land-registry")
        .append_pair("hash", &STANDARD.encode(input.spec.digest()))
        .append_pair("hashType", input.spec.hash_type.name())
        .append_pair("format", input.spec.format.name())
        .append_pair("callbackUrl", callback);
    if let Some(d) = &input.display {
        s.append_pair("dataToBeDisplayed", &URL_SAFE_NO_PAD.encode(d));
    }
    s.finish()
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    // hyper refuses request targets that are not a valid URI before routing.
    let Ok(uri) = format!("/v1/sign/interactive?{query}").parse::<Uri>() else {
        return;
    };
    let Some(outcome) = check(&uri) else {
        return;
    };
    let a = match outcome {
        Ok(a) => a,
        Err(m) => {
            assert!(
                m.len() <= MAX_MESSAGE,
                "{}-byte message echoes the input: {:?}…",
                m.len(),
                m.chars().take(120).collect::<String>()
            );
            return;
        }
    };

    let prefix = url::Url::parse(PREFIX).expect("prefix");
    let other = url::Url::parse("http://127.0.0.1:8081/cb").expect("prefix");
    let under = |p: &url::Url| {
        a.callback.origin() == p.origin()
            && (a.callback.path() == p.path()
                || a.callback
                    .path()
                    .starts_with(&format!("{}/", p.path().trim_end_matches('/'))))
    };
    assert!(under(&prefix) || under(&other), "{} escapes", a.callback);
    assert!(a.callback.username().is_empty() && a.callback.password().is_none());
    // The limit applies to the value as sent; the parsed URL kept in the session may be longer only
    // by percent-encoding (at most three bytes per byte).
    assert!(a.callback.as_str().len() <= 3 * MAX_CALLBACK_URL);
    assert_eq!(a.input.spec.documents.len(), 1);
    assert_eq!(a.input.spec.digest().len(), a.input.spec.hash_type.len());
    if let Some(d) = &a.input.display {
        assert!(d.chars().count() <= MAX_DISPLAY_CHARS);
        assert!(check_display_chars(d).is_ok());
    }

    // Where the browser is sent at the end: still a registered callback, with each added
    // parameter present once.
    let mut back = a.callback.clone();
    back.query_pairs_mut()
        .append_pair("signatureId", &"0".repeat(64))
        .append_pair("state", "s")
        .append_pair("nonce", "n");
    let eservice = registry().eservice("land-registry").expect("fixture");
    let again = eservice
        .callback(back.as_str())
        .expect("the redirect target is under the registered prefix");
    for k in ["signatureId", "state", "nonce"] {
        assert_eq!(
            again.query_pairs().filter(|(n, _)| n == k).count(),
            1,
            "{k} in {again}"
        );
    }

    // The canonical redirect (esig.js signUrl) names the same request.
    if a.callback.as_str().len() > MAX_CALLBACK_URL {
        return;
    }
    let q = canonical_query(a.callback.as_str(), &a.input);
    let uri: Uri = format!("/v1/sign/interactive?{q}")
        .parse()
        .expect("canonical query is a URI");
    let b = check(&uri)
        .expect("extractor takes the canonical query")
        .expect("canonical query is accepted");
    assert_eq!(b.callback, a.callback);
    assert_eq!(b.input.spec, a.input.spec);
    assert_eq!(b.input.display, a.input.display);
});
