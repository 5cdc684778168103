//! Key references: a label, or an RFC 7512 PKCS#11 URI such as `pkcs11:token=esig;object=ca-key`.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::error::HsmError;

/// Which key on the token a setting means. Matching uses `CKA_LABEL` and/or `CKA_ID`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef {
    label: Option<String>,
    id: Option<Vec<u8>>,
    token: Option<String>,
    text: String,
}

impl KeyRef {
    /// A reference by label (`CKA_LABEL`).
    pub fn label(label: impl Into<String>) -> Self {
        let label = label.into();
        let text = format!("pkcs11:object={label}");
        KeyRef {
            label: Some(label),
            id: None,
            token: None,
            text,
        }
    }

    /// Parses a configuration value: either a PKCS#11 URI (RFC 7512) or a bare label.
    ///
    /// `setting` names the configuration key for error messages. Only the path attributes
    /// `token`, `object`, `id` and `type` are accepted; a PIN in the URI (`pin-value`) is refused
    /// because PINs never live in the configuration.
    pub fn parse(setting: &str, value: &str) -> Result<Self, HsmError> {
        let bad = |message: String| HsmError::Config {
            setting: setting.to_string(),
            message,
        };
        let Some(rest) = value.strip_prefix("pkcs11:") else {
            if value.is_empty() || value.contains(['\n', '\0']) {
                return Err(bad(
                    "key label must be a non-empty single-line string".into()
                ));
            }
            return Ok(KeyRef::label(value));
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if let Some(attr) = query.and_then(|q| q.split('&').find(|a| !a.is_empty())) {
            let name = attr.split_once('=').map_or(attr, |(n, _)| n);
            return Err(bad(format!(
                "query attribute {name:?} is not accepted in a key reference (PINs are read from hsm.pin)"
            )));
        }
        let mut key = KeyRef {
            label: None,
            id: None,
            token: None,
            text: value.to_string(),
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| bad(format!("path attribute {attr:?} has no '=' (RFC 7512)")))?;
            let bytes: Vec<u8> = percent_decode_str(raw).collect();
            let text = || {
                String::from_utf8(bytes.clone()).map_err(|_| {
                    bad(format!(
                        "attribute {name:?} is not valid UTF-8 after percent-decoding"
                    ))
                })
            };
            match name {
                "object" => key.label = Some(text()?),
                "token" => key.token = Some(text()?),
                "id" => key.id = Some(bytes.clone()),
                "type" => {
                    let t = text()?;
                    if !matches!(t.as_str(), "private" | "public" | "cert") {
                        return Err(bad(format!("type={t:?}: expected private, public or cert")));
                    }
                }
                "manufacturer"
                | "model"
                | "serial"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
                | "slot-id" => {
                    return Err(bad(format!(
                        "attribute {name:?} is not supported; name the token with token= and the key with object= or id="
                    )));
                }
                other => return Err(bad(format!("unknown PKCS#11 URI attribute {other:?}"))),
            }
        }
        if key.label.is_none() && key.id.is_none() {
            return Err(bad(
                "the URI names no key: add object=<label> or id=<hex bytes>".into(),
            ));
        }
        Ok(key)
    }

    /// The `CKA_LABEL` to match, if any.
    pub fn object_label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The `CKA_ID` to match, if any.
    pub fn object_id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// The token label the URI names, if any (checked against the configured token).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uri_and_bare_label() {
        let k = KeyRef::parse("ca.key", "pkcs11:token=esig;object=ca-key").unwrap();
        assert_eq!(k.object_label(), Some("ca-key"));
        assert_eq!(k.token(), Some("esig"));
        let k = KeyRef::parse("ca.key", "pkcs11:object=my%20key;id=%01%a2;type=private").unwrap();
        assert_eq!(k.object_label(), Some("my key"));
        assert_eq!(k.object_id(), Some(&[0x01, 0xa2][..]));
        let k = KeyRef::parse("ca.key", "ca-key").unwrap();
        assert_eq!(k.object_label(), Some("ca-key"));
    }

    #[test]
    fn refuses_pins_unknown_attributes_and_empty_refs() {
        let e = KeyRef::parse("ca.key", "pkcs11:object=a?pin-value=1234")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ca.key:") && !e.contains("1234"), "{e}");
        assert!(KeyRef::parse("ca.key", "pkcs11:colour=red;object=a").is_err());
        assert!(KeyRef::parse("ca.key", "pkcs11:token=esig").is_err());
        assert!(KeyRef::parse("ca.key", "pkcs11:object").is_err());
        assert!(KeyRef::parse("ca.key", "pkcs11:object=a;type=secret").is_err());
        assert!(KeyRef::parse("ca.key", "").is_err());
    }
}
