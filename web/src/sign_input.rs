//! The signing request as the e-Service API and the signing pages both take it: format, hash,
//! hashType, display text and request time, each checked with a message that names the field.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_service::signing::HashType;

use crate::error::ApiError;

/// Longest `dataToBeDisplayed`, in characters.
pub const MAX_DISPLAY_CHARS: usize = 256;

/// A validated signing request body.
#[derive(Debug, Clone)]
pub struct SignInput {
    /// Hash type.
    pub hash_type: HashType,
    /// Digest bytes.
    pub digest: Vec<u8>,
    /// Display text (≤ 256 characters).
    pub display: Option<String>,
}

/// Validates the fields every signing entry point shares (API body and interactive redirect).
pub fn validate_sign_input(
    format: Option<&str>,
    hash: Option<&str>,
    hash_type: Option<&str>,
    display: Option<&str>,
    request_timestamp: Option<&str>,
    max_age: Duration,
) -> Result<SignInput, ApiError> {
    let missing =
        |f: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{f} is required"));
    let format = format.ok_or_else(|| missing("format"))?;
    if !format.eq_ignore_ascii_case("CAdES") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "format {:?} is not supported yet; supported: CAdES",
                // Echo a bounded prefix only: the value comes from the client.
                format.chars().take(32).collect::<String>()
            ),
        ));
    }
    let hash_type = hash_type.ok_or_else(|| missing("hashType"))?;
    let hash_type = HashType::parse(hash_type)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let hash = hash.ok_or_else(|| missing("hash"))?;
    let digest = decode_b64(hash)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "hash is not valid base64"))?;
    if digest.len() != hash_type.len() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "hash is {} bytes; {} needs {}",
                digest.len(),
                hash_type.name(),
                hash_type.len()
            ),
        ));
    }
    if let Some(d) = display {
        if d.chars().count() > MAX_DISPLAY_CHARS {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("dataToBeDisplayed is longer than {MAX_DISPLAY_CHARS} characters"),
            ));
        }
        check_display_chars(d).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    }
    if let Some(ts) = request_timestamp {
        let at = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z'))
            .or_else(|_| humantime::parse_rfc3339(ts))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "requestTimestamp is not an ISO 8601 / RFC 3339 UTC time",
                )
            })?;
        let now = SystemTime::now();
        let age = now.duration_since(at).unwrap_or_else(|e| e.duration());
        if age > max_age {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "requestTimestamp is more than {} away from the server time",
                    humantime::format_duration(max_age)
                ),
            ));
        }
    }
    Ok(SignInput {
        hash_type,
        digest,
        display: display.map(str::to_owned),
    })
}

/// Refuses display text a citizen could read otherwise than it is stored: control characters
/// other than tab and line breaks, bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, which reorder what is shown) and invisible format characters (zero-width
/// spaces and joiners, U+200B–U+200F, U+2060–U+2064, U+FEFF, U+061C, U+180E). The citizen
/// approves what they read, so what they read must be the text itself.
pub fn check_display_chars(text: &str) -> Result<(), &'static str> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(
            "dataToBeDisplayed must not contain control characters other than tab and line breaks",
        );
    }
    if text.chars().any(|c| {
        matches!(c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}' | '\u{061C}' | '\u{180E}')
    }) {
        return Err(
            "dataToBeDisplayed must not contain bidirectional overrides or invisible (zero-width) characters",
        );
    }
    Ok(())
}

/// Standard base64 (padding optional), or base64url as a courtesy.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let t = s.trim();
    B64.decode(t)
        .ok()
        .or_else(|| STANDARD_NO_PAD.decode(t).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok())
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use esigd_store::signatures::rfc3339;

    #[test]
    fn display_text_that_reads_otherwise_than_it_is_stored_is_refused() {
        assert!(check_display_chars("Pay 100 EUR to\tAcme\r\nThanks ✓").is_ok());
        // "Pay 100 EUR" shown as "Pay 001 EUR" by a right-to-left override.
        for evil in [
            "Pay \u{202E}001\u{202C} EUR",
            "Pay \u{2067}100\u{2069} EUR",
            "Pay 1\u{200B}00 EUR",
            "Pay 100\u{FEFF} EUR",
            "Pay \u{200F}100 EUR",
        ] {
            let e = check_display_chars(evil).unwrap_err();
            assert!(e.contains("dataToBeDisplayed"), "{e}");
        }
        assert!(check_display_chars("bell\u{7}").is_err());
        let h = B64.encode([0u8; 32]);
        let e = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            Some("SHA2-256"),
            Some("Pay \u{202E}001"),
            None,
            Duration::from_secs(600),
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("bidirectional"), "{}", e.message());
    }

    #[test]
    fn sign_input_errors_name_the_field() {
        let age = Duration::from_secs(600);
        let h = B64.encode([0u8; 32]);
        let e = validate_sign_input(None, Some(&h), Some("SHA2-256"), None, None, age).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message().contains("format"));
        let e = validate_sign_input(Some("PAdES"), Some(&h), Some("SHA2-256"), None, None, age)
            .unwrap_err();
        assert!(e.message().contains("not supported yet"));
        let e = validate_sign_input(Some("CAdES"), Some(&h), Some("SHA2-512"), None, None, age)
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("64"), "{}", e.message());
        let e = validate_sign_input(
            Some("CAdES"),
            Some("%%%"),
            Some("SHA2-256"),
            None,
            None,
            age,
        )
        .unwrap_err();
        assert!(e.message().contains("base64"));
        let long = "x".repeat(257);
        let e = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            Some("SHA2-256"),
            Some(&long),
            None,
            age,
        )
        .unwrap_err();
        assert!(e.message().contains("dataToBeDisplayed"));
        let e = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            Some("SHA2-256"),
            None,
            Some("2001-01-01T00:00:00Z"),
            age,
        )
        .unwrap_err();
        assert!(e.message().contains("requestTimestamp"));
        let now = rfc3339(SystemTime::now());
        let ok = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            Some("SHA2-256"),
            Some("ok"),
            Some(&now),
            age,
        )
        .unwrap();
        assert_eq!(ok.digest.len(), 32);
    }
}
