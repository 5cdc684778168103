//! RFC 9457 problem details, shaped as the Smart-ID v3 errors: `{type, status, title, detail,
//! instance, errors:[{code, detail, paramName, pointer}]}` with media type
//! `application/problem+json`.

use serde::{Deserialize, Serialize};

use crate::ScdError;

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// The HTTP status.
    pub status: u16,
    /// A short summary of the type.
    #[serde(default)]
    pub title: String,
    /// This occurrence, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// This occurrence, as a URI (the request path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Machine-readable causes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemError>,
}

/// One entry of `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemError {
    /// A stable code (`SESSION_IN_PROGRESS`, `INVALID_FIELD`, `NOT_FOUND`, …).
    pub code: String,
    /// For a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The query or path parameter at fault.
    #[serde(rename = "paramName", default, skip_serializing_if = "Option::is_none")]
    pub param_name: Option<String>,
    /// JSON pointer (RFC 6901) of the body field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

/// Codes used by the reference service.
pub mod codes {
    /// A request field is missing or wrong.
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    /// Unknown device, key or session (one uniform code, so nothing can be enumerated).
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The key already has a running session.
    pub const SESSION_IN_PROGRESS: &str = "SESSION_IN_PROGRESS";
    /// Too many requests; see `Retry-After`.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The caller is not authenticated or not allowed.
    pub const NOT_PERMITTED: &str = "NOT_PERMITTED";
    /// The session already completed (a second result).
    pub const ALREADY_COMPLETE: &str = "ALREADY_COMPLETE";
    /// The session or request expired.
    pub const EXPIRED: &str = "EXPIRED";
}

impl Problem {
    /// A problem with one error code.
    pub fn new(status: u16, title: &str, code: &str, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        Problem {
            kind: about_blank(),
            status,
            title: title.to_owned(),
            detail: Some(detail.clone()),
            instance: None,
            errors: vec![ProblemError {
                code: code.to_owned(),
                detail: Some(detail),
                param_name: None,
                pointer: None,
            }],
        }
    }

    /// The first error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|e| e.code.as_str())
    }
}

impl From<&ScdError> for Problem {
    /// A 400 naming the field (as a JSON pointer into the body).
    fn from(e: &ScdError) -> Problem {
        let mut p = Problem::new(400, "Bad Request", codes::INVALID_FIELD, e.to_string());
        if let (Some(field), Some(first)) = (e.field(), p.errors.first_mut()) {
            if field == "timeoutMs" {
                first.param_name = Some(field.to_owned());
            } else {
                first.pointer = Some(format!("/{}", field.replace('.', "/")));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_become_pointers() {
        let e = ScdError::Missing {
            field: "signatureProtocolParameters.digest",
        };
        let p = Problem::from(&e);
        assert_eq!(p.status, 400);
        assert_eq!(p.code(), Some(codes::INVALID_FIELD));
        assert_eq!(
            p.errors[0].pointer.as_deref(),
            Some("/signatureProtocolParameters/digest")
        );
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.starts_with(r#"{"type":"about:blank","status":400"#),
            "{json}"
        );
        let back: Problem = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn reads_a_smart_id_problem() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"about:blank","status":404,"title":"Not Found",
                "errors":[{"code":"NO_SUITABLE_ACCOUNT_FOUND"}]}"#,
        )
        .unwrap();
        assert_eq!(p.code(), Some("NO_SUITABLE_ACCOUNT_FOUND"));
    }
}
