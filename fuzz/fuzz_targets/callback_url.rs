//! `callbackUrl` matching: a registered prefix (`eservice.callback_prefixes`, checked with
//! `CallbackPrefix::parse` when the configuration is loaded) and a callback URL from the browser
//! redirect, checked by `Eservice::callback` of a registry built from that entry. Input: the
//! prefix, a newline, the callback.
//!
//! Asserts, when the callback is accepted: same scheme, host and effective port as the prefix, no
//! user info, the path equal to the prefix's or below it at a segment boundary (so `/cb` never
//! admits `/cbx` and `https://h.evil.test` never passes for `https://h`); the accepted URL
//! re-parsed from its serialization, and with the parameters esigd appends to it, is accepted
//! again (what the browser is finally sent to stays registered). And a prefix accepted by the
//! configuration check admits itself.
#![no_main]

use esigd_service::config::EserviceEntry;
use esigd_service::registry::{CallbackPrefix, Registry};
use libfuzzer_sys::fuzz_target;

fn registry(prefix: &str) -> Registry {
    let entry: EserviceEntry = toml::from_str(&format!(
        "id = \"svc\"\nname = \"Svc\"\nclient_cert_sha256 = \"{}\"\nallowed_ips = []\ncallback_prefixes = [{}]\n",
        "ab".repeat(32),
        toml::Value::String(prefix.to_owned())
    ))
    .expect("fixture e-Service entry");
    Registry::new(&[entry], &[], None)
}

/// `path` equals `prefix` or is below it at a segment boundary.
fn path_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (prefix.ends_with('/') && path.starts_with(prefix))
        || path.starts_with(&format!("{prefix}/"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, callback) = text.split_once('\n').unwrap_or((text, ""));
    // What the configuration check refuses never reaches the registry.
    if CallbackPrefix::parse(prefix).is_err() {
        return;
    }
    let p = url::Url::parse(prefix).expect("a parsed prefix is a URL");
    let reg = registry(prefix);
    let svc = reg.eservice("svc").expect("fixture");

    // A registered prefix admits itself.
    assert!(
        svc.callback(p.as_str()).is_some(),
        "prefix {p} does not admit itself"
    );

    let Some(u) = svc.callback(callback) else {
        return;
    };
    assert_eq!(u.scheme(), p.scheme());
    assert_eq!(
        u.host_str().map(str::to_ascii_lowercase),
        p.host_str().map(str::to_ascii_lowercase),
        "host of {u} vs {p}"
    );
    assert_eq!(u.port_or_known_default(), p.port_or_known_default());
    assert_eq!(u.origin(), p.origin(), "origin of {u} vs {p}");
    assert!(u.username().is_empty() && u.password().is_none());
    assert!(
        path_under(u.path(), p.path()),
        "{} not under {}",
        u.path(),
        p.path()
    );

    let again = svc
        .callback(u.as_str())
        .expect("the serialized callback is accepted again");
    assert_eq!(again, u, "serialization round trip");
    let mut back = u.clone();
    back.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "The user cancelled")
        .append_pair("state", "s")
        .append_pair("nonce", "n");
    let b = svc
        .callback(back.as_str())
        .expect("the redirect target is accepted");
    assert_eq!(b.origin(), p.origin());
    assert!(path_under(b.path(), p.path()));
});
