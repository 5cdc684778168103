//! What the device shows the citizen: the Smart-ID v3 `interactions` list.
//!
//! On the wire `interactions` is standard base64 of a JSON array, in order of preference; the device
//! uses the first one it supports and reports it as `interactionTypeUsed`. The device receives the
//! same base64 string the appliance sent, and its signed proof carries SHA-256 of that string
//! ([`digest`]), so the service cannot change what is shown without the appliance noticing.
//!
//! Text limits are Smart-ID's: 60 characters for `displayTextAndPIN` (shown on the PIN screen),
//! 200 for the two confirmation-message interactions (a screen of their own before the PIN).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ScdError;

/// Longest `displayText60`, in characters.
pub const TEXT60: usize = 60;
/// Longest `displayText200`, in characters.
pub const TEXT200: usize = 200;
/// Most interactions in one list (Smart-ID defines three types; one of each is the useful maximum).
pub const MAX_INTERACTIONS: usize = 3;

/// One interaction, tagged by `type` as in Smart-ID v3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Interaction {
    /// The text is shown on the PIN screen (≤ 60 characters).
    #[serde(rename = "displayTextAndPIN")]
    DisplayTextAndPin {
        /// The text.
        #[serde(rename = "displayText60")]
        display_text60: String,
    },
    /// A confirmation screen with the text (≤ 200 characters), then the PIN screen.
    #[serde(rename = "confirmationMessage")]
    ConfirmationMessage {
        /// The text.
        #[serde(rename = "displayText200")]
        display_text200: String,
    },
    /// As `confirmationMessage`, and the user picks the verification code out of three.
    #[serde(rename = "confirmationMessageAndVerificationCodeChoice")]
    ConfirmationMessageAndVerificationCodeChoice {
        /// The text.
        #[serde(rename = "displayText200")]
        display_text200: String,
    },
}

impl Interaction {
    /// The `type` string, as reported back in `interactionTypeUsed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Interaction::DisplayTextAndPin { .. } => "displayTextAndPIN",
            Interaction::ConfirmationMessage { .. } => "confirmationMessage",
            Interaction::ConfirmationMessageAndVerificationCodeChoice { .. } => {
                "confirmationMessageAndVerificationCodeChoice"
            }
        }
    }

    /// The text to show.
    pub fn text(&self) -> &str {
        match self {
            Interaction::DisplayTextAndPin { display_text60 } => display_text60,
            Interaction::ConfirmationMessage { display_text200 }
            | Interaction::ConfirmationMessageAndVerificationCodeChoice { display_text200 } => {
                display_text200
            }
        }
    }

    fn limit(&self) -> (&'static str, usize) {
        match self {
            Interaction::DisplayTextAndPin { .. } => ("displayText60", TEXT60),
            _ => ("displayText200", TEXT200),
        }
    }
}

/// Checks a list: 1 to [`MAX_INTERACTIONS`] entries, no type twice, every text non-empty, within its
/// limit in characters, and free of control characters.
pub fn validate(list: &[Interaction]) -> Result<(), ScdError> {
    if list.is_empty() {
        return Err(ScdError::Missing {
            field: "interactions",
        });
    }
    if list.len() > MAX_INTERACTIONS {
        return Err(ScdError::invalid(
            "interactions",
            format!("at most {MAX_INTERACTIONS} entries, got {}", list.len()),
        ));
    }
    for (i, item) in list.iter().enumerate() {
        if list[..i].iter().any(|x| x.kind() == item.kind()) {
            return Err(ScdError::invalid(
                "interactions",
                format!("type {} appears twice", item.kind()),
            ));
        }
        let (field, max) = item.limit();
        let text = item.text();
        let n = text.chars().count();
        if n == 0 || text.trim().is_empty() {
            return Err(ScdError::invalid(field, "must not be empty"));
        }
        if n > max {
            return Err(ScdError::invalid(
                field,
                format!("at most {max} characters, got {n}"),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(ScdError::invalid(
                field,
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

/// The wire form: standard base64 of the JSON array (validated first).
pub fn encode(list: &[Interaction]) -> Result<String, ScdError> {
    validate(list)?;
    let json =
        serde_json::to_vec(list).map_err(|e| ScdError::invalid("interactions", e.to_string()))?;
    Ok(STANDARD.encode(json))
}

/// Parses and validates the wire form.
pub fn decode(b64: &str) -> Result<Vec<Interaction>, ScdError> {
    if b64.is_empty() {
        return Err(ScdError::Missing {
            field: "interactions",
        });
    }
    // Bounded before decoding: 3 entries of 200 characters of up to 4 UTF-8 bytes, plus JSON.
    if b64.len() > 8 * 1024 {
        return Err(ScdError::invalid("interactions", "longer than 8 KiB"));
    }
    let json = STANDARD
        .decode(b64)
        .map_err(|_| ScdError::invalid("interactions", "not standard base64"))?;
    let list: Vec<Interaction> = serde_json::from_slice(&json).map_err(|e| {
        ScdError::invalid(
            "interactions",
            format!("not a JSON array of interactions: {e}"),
        )
    })?;
    validate(&list)?;
    Ok(list)
}

/// SHA-256 of the wire form exactly as sent (the ASCII of the base64 string), for signed proofs.
pub fn digest(b64: &str) -> [u8; 32] {
    Sha256::digest(b64.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(t: &str) -> Interaction {
        Interaction::DisplayTextAndPin {
            display_text60: t.into(),
        }
    }

    #[test]
    fn round_trip_uses_smart_id_field_names() {
        let list = vec![
            Interaction::ConfirmationMessage {
                display_text200: "Sign the lease of flat 4".into(),
            },
            pin("Sign the lease"),
        ];
        let b64 = encode(&list).unwrap();
        let json = String::from_utf8(STANDARD.decode(&b64).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"[{"type":"confirmationMessage","displayText200":"Sign the lease of flat 4"},{"type":"displayTextAndPIN","displayText60":"Sign the lease"}]"#
        );
        assert_eq!(decode(&b64).unwrap(), list);
    }

    #[test]
    fn limits_are_characters_not_bytes() {
        assert!(validate(&[pin(&"ä".repeat(60))]).is_ok());
        let err = validate(&[pin(&"ä".repeat(61))]).unwrap_err();
        assert_eq!(err.field(), Some("displayText60"));
        let long = Interaction::ConfirmationMessage {
            display_text200: "x".repeat(201),
        };
        assert_eq!(
            validate(&[long]).unwrap_err().field(),
            Some("displayText200")
        );
    }

    #[test]
    fn bad_lists_name_the_problem() {
        assert_eq!(
            validate(&[]).unwrap_err(),
            ScdError::Missing {
                field: "interactions"
            }
        );
        assert!(
            validate(&[pin("a"), pin("b")])
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(validate(&[pin("  ")]).is_err());
        assert!(validate(&[pin("a\u{7}b")]).is_err());
        assert!(decode("%%%").unwrap_err().to_string().contains("base64"));
        let unknown = STANDARD.encode(r#"[{"type":"verificationCodeChoice","displayText60":"x"}]"#);
        assert!(decode(&unknown).unwrap_err().to_string().contains("JSON"));
        let extra = STANDARD
            .encode(r#"[{"type":"displayTextAndPIN","displayText60":"x","displayText200":"y"}]"#);
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn digest_is_over_the_exact_string() {
        let a = encode(&[pin("x")]).unwrap();
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&encode(&[pin("y")]).unwrap()));
    }
}
