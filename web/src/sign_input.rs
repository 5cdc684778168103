//! The signing request as the e-Service API and the signing pages both take it: format, hash,
//! hashType, display text and request time, each checked with a message that names the field.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_formats::{Document, Format};
use esigd_service::signing::{
    HashType, Level, SINGLE_DOCUMENT_MEDIA_TYPE, SUPPORTED_HASH_TYPES, SignSpec,
};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest `dataToBeDisplayed`, in characters.
pub const MAX_DISPLAY_CHARS: usize = 256;
/// Longest part of a client's value that an error message repeats, in characters. Messages are
/// shown to the caller and, for the interactive redirect, on the appliance's own error page, where
/// a long echoed value could pose as the appliance's words.
pub const MAX_ECHO_CHARS: usize = 32;
/// Most documents one signature covers (`documents`).
pub const MAX_DOCUMENTS: usize = 64;
/// Longest document name (`documents[].name`) and media type, in characters.
pub const MAX_DOCUMENT_NAME_CHARS: usize = 255;
/// Longest total of the `doc` values of a signing redirect, in bytes (several documents belong in
/// the API body; a redirect is a URL).
pub const MAX_REDIRECT_DOCUMENTS_BYTES: usize = 8192;
/// Longest parser message about a request body, in characters (serde's messages quote values).
const MAX_PARSE_MESSAGE: usize = 160;

/// The first [`MAX_ECHO_CHARS`] characters of a client's value, for error messages.
fn echo(v: &str) -> String {
    v.chars().take(MAX_ECHO_CHARS).collect()
}

/// Body of `POST /v1/sign/onetime` (every field optional here so that a missing one gets the
/// contract's 422 with its name rather than a generic parse error).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignBody {
    /// `format`: `CAdES`, `PAdES`, `XAdES`, `ASIC` or `JWS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `hash`: the document digest, base64 (the contract's single-document form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// `documents`: several documents by name, media type and digest (our extension, for XAdES,
    /// ASIC and JWS; instead of `hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<DocumentBody>>,
    /// `hashType`, e.g. `SHA2-256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_type: Option<String>,
    /// `dataToBeDisplayed` (plain text in the API body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_to_be_displayed: Option<String>,
    /// `requestTimestamp` (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timestamp: Option<String>,
    /// `signatureLevel`: `B-T` (default) or `B-LT` (CAdES; our extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_level: Option<String>,
}

/// One entry of `documents`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentBody {
    /// The document's name (a relative URI or container path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its media type (default `application/octet-stream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Its digest with `hashType`, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl SignBody {
    /// Parses the request body; 400 with serde's message (which names the line and column) if it
    /// is not a JSON object of this shape.
    pub fn parse(body: &[u8]) -> Result<SignBody, ApiError> {
        serde_json::from_slice(body).map_err(|e| {
            let mut m = e.to_string();
            if m.chars().count() > MAX_PARSE_MESSAGE {
                // serde quotes the offending value (e.g. a whole top-level string): say where
                // instead.
                let what = match e.classify() {
                    serde_json::error::Category::Data => "a value of the wrong type",
                    _ => "not valid JSON",
                };
                m = format!("{what} at line {} column {}", e.line(), e.column());
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("request body is not the expected JSON object: {m}"),
            )
        })
    }

    /// The checks of [`validate_sign_input`] on this body.
    pub fn validate(&self, max_age: Duration) -> Result<SignInput, ApiError> {
        let mut input = validate_sign_input(
            self.format.as_deref(),
            self.hash.as_deref(),
            self.documents.as_deref(),
            self.hash_type.as_deref(),
            self.data_to_be_displayed.as_deref(),
            self.request_timestamp.as_deref(),
            max_age,
        )?;
        if let Some(level) = &self.signature_level {
            let unprocessable = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
            input.spec.level = Level::parse(level).map_err(unprocessable)?;
            input
                .spec
                .check()
                .map_err(|e| unprocessable(e.to_string()))?;
        }
        Ok(input)
    }
}

/// A validated signing request body.
#[derive(Debug, Clone)]
pub struct SignInput {
    /// The format, the hash type and the documents' digests.
    pub spec: SignSpec,
    /// Display text (≤ 256 characters).
    pub display: Option<String>,
}

/// Validates the fields every signing entry point shares (API body and interactive redirect).
pub fn validate_sign_input(
    format: Option<&str>,
    hash: Option<&str>,
    documents: Option<&[DocumentBody]>,
    hash_type: Option<&str>,
    display: Option<&str>,
    request_timestamp: Option<&str>,
    max_age: Duration,
) -> Result<SignInput, ApiError> {
    let missing =
        |f: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{f} is required"));
    let format = format.ok_or_else(|| missing("format"))?;
    let format = if format.chars().count() > MAX_ECHO_CHARS {
        Err(esigd_formats::FormatError::UnknownFormat(format!(
            "{}…",
            echo(format)
        )))
    } else {
        Format::parse(format)
    }
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let hash_type = hash_type.ok_or_else(|| missing("hashType"))?;
    // Every known name is short: a long value is unknown, and only its start is repeated.
    let hash_type = if hash_type.chars().count() > MAX_ECHO_CHARS {
        Err(format!(
            "hashType {:?}… is unknown; supported: {SUPPORTED_HASH_TYPES}",
            echo(hash_type)
        ))
    } else {
        HashType::parse(hash_type)
    }
    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let spec = match (hash, documents) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give either hash (one document) or documents, not both",
            ));
        }
        (None, Some(docs)) => SignSpec {
            format,
            hash_type,
            documents: documents_of(docs, hash_type)?,
            level: Level::BT,
        },
        (Some(hash), None) => {
            SignSpec::single(format, hash_type, digest_of("hash", hash, hash_type)?)
        }
        (None, None) => return Err(missing("hash")),
    };
    spec.check()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    if let Some(d) = display {
        if d.chars().count() > MAX_DISPLAY_CHARS {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("dataToBeDisplayed is longer than {MAX_DISPLAY_CHARS} characters"),
            ));
        }
        check_display_chars(d).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    }
    check_request_timestamp(request_timestamp, max_age)?;
    Ok(SignInput {
        spec,
        display: display.map(str::to_owned),
    })
}

/// The documents of a signing redirect: one `doc` query parameter per document, its value
/// `name|mediaType|hash` (the compact form of `documents`; split at the last two `|`, so a name
/// may contain `|`; an empty media type means `application/octet-stream`; a `+` of the base64
/// hash that arrives as a space is mended). At most [`MAX_DOCUMENTS`] and
/// [`MAX_REDIRECT_DOCUMENTS_BYTES`] in all.
pub fn redirect_documents(values: &[&str]) -> Result<Vec<DocumentBody>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let total: usize = values.iter().map(|v| v.len()).sum();
    if total > MAX_REDIRECT_DOCUMENTS_BYTES {
        return Err(bad(format!(
            "doc parameters are longer than {MAX_REDIRECT_DOCUMENTS_BYTES} bytes in all; send many documents through the API"
        )));
    }
    if values.len() > MAX_DOCUMENTS {
        return Err(bad(format!(
            "at most {MAX_DOCUMENTS} doc parameters, {} given",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut parts = v.rsplitn(3, '|');
            let (Some(hash), Some(media), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(format!("doc[{i}] is not name|mediaType|hash")));
            };
            Ok(DocumentBody {
                name: Some(name.to_owned()),
                media_type: (!media.is_empty()).then(|| media.to_owned()),
                hash: Some(hash.replace(' ', "+")),
            })
        })
        .collect()
}

/// The `doc` value of a document in a signing redirect ([`redirect_documents`] reads it).
pub fn redirect_document_value(d: &DocumentBody) -> String {
    format!(
        "{}|{}|{}",
        d.name.as_deref().unwrap_or(""),
        d.media_type.as_deref().unwrap_or(""),
        d.hash.as_deref().unwrap_or("")
    )
}

/// A base64 digest of `hash_type`'s length; 400 naming `field` otherwise.
fn digest_of(field: &str, hash: &str, hash_type: HashType) -> Result<Vec<u8>, ApiError> {
    let digest = decode_b64(hash).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{field} is not valid base64"),
        )
    })?;
    if digest.len() != hash_type.len() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{field} is {} bytes; {} needs {}",
                digest.len(),
                hash_type.name(),
                hash_type.len()
            ),
        ));
    }
    Ok(digest)
}

/// The `documents` of a request: 1 to [`MAX_DOCUMENTS`], each with a name, an optional media
/// type and a digest; names and media types short and free of control characters (the format
/// checks the rest: distinct names, what a name may contain).
fn documents_of(docs: &[DocumentBody], hash_type: HashType) -> Result<Vec<Document>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    if docs.is_empty() || docs.len() > MAX_DOCUMENTS {
        return Err(bad(format!(
            "documents must have 1 to {MAX_DOCUMENTS} entries, it has {}",
            docs.len()
        )));
    }
    let text = |field: String, v: &str| -> Result<String, ApiError> {
        if v.is_empty() || v.chars().count() > MAX_DOCUMENT_NAME_CHARS {
            return Err(bad(format!(
                "{field} must have 1 to {MAX_DOCUMENT_NAME_CHARS} characters"
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(bad(format!("{field} contains control characters")));
        }
        Ok(v.to_owned())
    };
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let name = d
                .name
                .as_deref()
                .ok_or_else(|| bad(format!("documents[{i}].name is required")))?;
            let hash = d
                .hash
                .as_deref()
                .ok_or_else(|| bad(format!("documents[{i}].hash is required")))?;
            Ok(Document {
                name: text(format!("documents[{i}].name"), name)?,
                media_type: text(
                    format!("documents[{i}].mediaType"),
                    d.media_type
                        .as_deref()
                        .unwrap_or(SINGLE_DOCUMENT_MEDIA_TYPE),
                )?,
                digest: digest_of(&format!("documents[{i}].hash"), hash, hash_type)?,
            })
        })
        .collect()
}

/// Refuses a `requestTimestamp` that is not an RFC 3339 UTC time or is more than `max_age` away
/// from the server time (`limits.request_max_age`); absent is accepted.
pub(crate) fn check_request_timestamp(
    request_timestamp: Option<&str>,
    max_age: Duration,
) -> Result<(), ApiError> {
    let Some(ts) = request_timestamp else {
        return Ok(());
    };
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
    Ok(())
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

/// The display text of the interactive redirect (`dataToBeDisplayed` in the query string). The
/// GovStack API has it base64url-encoded (UTF-8), and that is the only form taken: guessing
/// whether a value is encoded would turn some plain words into other text, and the user approves
/// what is shown. Padding is optional; what [`check_display_chars`] refuses is refused here too.
pub fn decode_display_text(v: &str) -> Result<String, &'static str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const MUST: &str = "dataToBeDisplayed must be base64url-encoded UTF-8 text (GovStack API; esig.js signUrl encodes it)";
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    {
        return Err(MUST);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| MUST)?;
    let text = String::from_utf8(bytes).map_err(|_| MUST)?;
    check_display_chars(&text)?;
    Ok(text)
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
            None,
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
        let e = validate_sign_input(None, Some(&h), None, Some("SHA2-256"), None, None, age)
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message().contains("format"));
        let e = validate_sign_input(
            Some("PDF"),
            Some(&h),
            None,
            Some("SHA2-256"),
            None,
            None,
            age,
        )
        .unwrap_err();
        assert!(
            e.message().contains("supported: XAdES, CAdES"),
            "{}",
            e.message()
        );
        let e = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            None,
            Some("SHA2-512"),
            None,
            None,
            age,
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("64"), "{}", e.message());
        let e = validate_sign_input(
            Some("CAdES"),
            Some("%%%"),
            None,
            Some("SHA2-256"),
            None,
            None,
            age,
        )
        .unwrap_err();
        assert!(e.message().contains("base64"));
        // What the client sent is repeated only in part.
        let long = "Call +1 555 0100 now. ".repeat(20);
        for (format, hash_type) in [(long.as_str(), "SHA2-256"), ("CAdES", long.as_str())] {
            let e = validate_sign_input(
                Some(format),
                Some(&h),
                None,
                Some(hash_type),
                None,
                None,
                age,
            )
            .unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message().len() < 120, "{}", e.message());
        }
        let body = serde_json::to_vec(&long).unwrap();
        let e = SignBody::parse(&body).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(!e.message().contains("Call"), "{}", e.message());
        assert!(e.message().contains("line 1 column"), "{}", e.message());
        let long = "x".repeat(257);
        let e = validate_sign_input(
            Some("CAdES"),
            Some(&h),
            None,
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
            None,
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
            None,
            Some("SHA2-256"),
            Some("ok"),
            Some(&now),
            age,
        )
        .unwrap();
        assert_eq!(ok.spec.digest().len(), 32);
        assert_eq!(ok.spec.documents[0].name, "document");
    }

    #[test]
    fn redirect_documents_are_compact_and_bounded() {
        let h = B64.encode([7u8; 32]);
        let docs = vec![
            DocumentBody {
                name: Some("a|b.pdf".into()),
                media_type: Some("application/pdf".into()),
                hash: Some(h.clone()),
            },
            DocumentBody {
                name: Some("note.txt".into()),
                media_type: None,
                hash: Some(h.clone()),
            },
        ];
        let values: Vec<String> = docs.iter().map(redirect_document_value).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(redirect_documents(&refs).unwrap(), docs);
        // A '+' that arrived as a space is mended.
        let spaced = format!("x|text/plain|{}", "+".repeat(4) + &h[4..]).replace('+', " ");
        let back = redirect_documents(&[spaced.as_str()]).unwrap();
        assert_eq!(
            back[0]
                .hash
                .as_deref()
                .unwrap()
                .chars()
                .filter(|c| *c == ' ')
                .count(),
            0
        );
        let e = redirect_documents(&["no-separators"]).unwrap_err();
        assert!(e.message().contains("doc[0]"), "{}", e.message());
        let long = format!("{}|x|{h}", "n".repeat(MAX_REDIRECT_DOCUMENTS_BYTES));
        let e = redirect_documents(&[long.as_str()]).unwrap_err();
        assert!(e.message().contains("8192"), "{}", e.message());
    }

    fn body(v: serde_json::Value) -> Result<SignInput, ApiError> {
        SignBody::parse(&serde_json::to_vec(&v).unwrap())?.validate(Duration::from_secs(600))
    }

    #[test]
    fn documents_are_checked_field_by_field() {
        let h = B64.encode([7u8; 32]);
        let ok = body(
            serde_json::json!({"format": "XAdES", "hashType": "SHA2-256",
            "documents": [{"name": "a b.pdf", "mediaType": "application/pdf", "hash": h},
                          {"name": "note.txt", "hash": h}]}),
        )
        .unwrap();
        assert_eq!(ok.spec.format, Format::Xades);
        assert_eq!(ok.spec.documents.len(), 2);
        assert_eq!(ok.spec.documents[1].media_type, "application/octet-stream");
        // Every format by its contract name, and the single-hash form for each.
        for f in ["CAdES", "PAdES", "XAdES", "ASIC", "JWS"] {
            let ok = body(serde_json::json!({"format": f, "hashType": "SHA2-256", "hash": h}));
            assert_eq!(ok.unwrap().spec.format.name(), f);
        }
        let cases = [
            (
                serde_json::json!({"format": "JWS", "hashType": "SHA2-256", "hash": h,
                "documents": [{"name": "a", "hash": h}]}),
                400,
                "not both",
            ),
            (
                serde_json::json!({"format": "JWS", "hashType": "SHA2-256", "documents": []}),
                400,
                "1 to 64",
            ),
            (
                serde_json::json!({"format": "JWS", "hashType": "SHA2-256",
                "documents": [{"hash": h}]}),
                400,
                "documents[0].name is required",
            ),
            (
                serde_json::json!({"format": "JWS", "hashType": "SHA2-256",
                "documents": [{"name": "a", "hash": "AAAA"}]}),
                400,
                "documents[0].hash is 3 bytes",
            ),
            (
                serde_json::json!({"format": "JWS", "hashType": "SHA2-256",
                "documents": [{"name": "a\nb", "hash": h}]}),
                400,
                "control",
            ),
            (
                serde_json::json!({"format": "XAdES", "hashType": "SHA2-256",
                "documents": [{"name": "a", "hash": h}, {"name": "a", "hash": h}]}),
                422,
                "documents[1].name",
            ),
            (
                serde_json::json!({"format": "CAdES", "hashType": "SHA2-256",
                "documents": [{"name": "a", "hash": h}, {"name": "b", "hash": h}]}),
                422,
                "signs one digest",
            ),
        ];
        for (v, status, needle) in cases {
            let e = body(v.clone()).unwrap_err();
            assert_eq!(e.status().as_u16(), status, "{v}: {}", e.message());
            assert!(e.message().contains(needle), "{v}: {}", e.message());
        }
    }
}
