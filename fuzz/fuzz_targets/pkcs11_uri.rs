//! Key reference settings (`ca.key`, `ca.ocsp_key`, `tsa.key`) → `esigd_hsm::KeyRef::parse`: a bare
//! label or an RFC 7512 PKCS#11 URI with percent-encoded attributes.
//!
//! Asserts, for an accepted reference: it names a key (object= or id=); a URI displays as the text it was
//! parsed from; a bare label is taken verbatim; and the canonical URI rebuilt from the parsed parts
//! (every byte percent-encoded) parses to the same token, label and id. For every input: the result
//! does not depend on the values of query attributes or of a `pin-value`/`pin-source` path attribute,
//! i.e. a PIN written into the setting never reaches an error message.
#![no_main]

use esigd_hsm::KeyRef;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, percent_encode};

const SETTING: &str = "fuzz.key";

/// `value` with every query attribute value and every path `pin-value` / `pin-source` value replaced
/// by a fixed placeholder (`None` when there is nothing to replace).
fn redact(value: &str) -> Option<String> {
    let rest = value.strip_prefix("pkcs11:")?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path
        .split(';')
        .map(|a| match a.split_once('=') {
            Some((n @ ("pin-value" | "pin-source"), _)) => format!("{n}=REDACTED"),
            _ => a.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";");
    let mut out = format!("pkcs11:{path}");
    if let Some(q) = query {
        let q = q
            .split('&')
            .map(|a| match a.split_once('=') {
                Some((n, _)) => format!("{n}=REDACTED"),
                None => a.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.push('?');
        out.push_str(&q);
    }
    (out != value).then_some(out)
}

fn pct(bytes: &[u8]) -> String {
    percent_encode(bytes, NON_ALPHANUMERIC).to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = KeyRef::parse(SETTING, value);

    if let Some(redacted) = redact(value) {
        let other = KeyRef::parse(SETTING, &redacted);
        match (&parsed, &other) {
            (Err(a), Err(b)) => assert_eq!(
                a.to_string(),
                b.to_string(),
                "error message depends on a PIN/query value"
            ),
            (Ok(a), Ok(b)) => {
                assert_eq!(a.object_label(), b.object_label());
                assert_eq!(a.object_id(), b.object_id());
                assert_eq!(a.token(), b.token());
            }
            _ => panic!("result depends on a PIN/query value: {parsed:?} vs {other:?}"),
        }
    }

    let Ok(k) = parsed else {
        return;
    };
    assert!(k.object_label().is_some() || k.object_id().is_some());
    if value.starts_with("pkcs11:") {
        assert_eq!(k.to_string(), value, "Display is the configured URI");
    } else {
        // A bare label displays as `pkcs11:object=<label>` (not percent-encoded: messages only).
        assert_eq!(k.to_string(), format!("pkcs11:object={value}"));
        assert_eq!(k.object_label(), Some(value));
        assert_eq!((k.object_id(), k.token()), (None, None));
    }

    let mut attrs = Vec::new();
    if let Some(t) = k.token() {
        attrs.push(format!("token={}", pct(t.as_bytes())));
    }
    if let Some(l) = k.object_label() {
        attrs.push(format!("object={}", pct(l.as_bytes())));
    }
    if let Some(id) = k.object_id() {
        attrs.push(format!("id={}", pct(id)));
    }
    let canonical = format!("pkcs11:{}", attrs.join(";"));
    let again = KeyRef::parse(SETTING, &canonical).expect("canonical URI parses");
    assert_eq!(again.object_label(), k.object_label(), "{canonical}");
    assert_eq!(again.object_id(), k.object_id(), "{canonical}");
    assert_eq!(again.token(), k.token(), "{canonical}");
});
