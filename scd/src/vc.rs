//! Verification codes: the four digits shown both on the appliance's page and on the device, so the
//! citizen can see that the request on the phone is the one they started.
//!
//! The code is a hybrid of the Smart-ID v2 rule (computable from what is signed, so every party can
//! check it) and the v3 rule (the server adds randomness the requester cannot predict, so a
//! document author cannot grind documents until two codes collide, which v2 allowed in ~5,000
//! tries):
//!
//! ```text
//! h  = SHA-256("GS-RSCD-VC" 0x00 ‖ sessionID (ASCII) ‖ 0x00 ‖ bound ‖ salt)
//! vc = uint16_be(h[30..32]) mod 10000, as four digits
//! ```
//!
//! `bound` is the digest to be signed (signing sessions) or the onboarding challenge. The Remote
//! SCD service picks `salt` (16 random bytes) after the digest is fixed and returns it with the
//! code; the appliance and the device each recompute the code and refuse the session when the
//! service's value differs ([`Vc::check`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ScdError;

/// Domain separation prefix of the hash (includes the terminating 0x00).
const DOMAIN: &[u8] = b"GS-RSCD-VC\x00";

/// Length of the random salt the service picks.
pub const SALT_LEN: usize = 16;

/// The `vc` object of a session: type, value and the salt it was computed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vc {
    /// Always `numeric4` in this protocol (Smart-ID's name for four digits).
    #[serde(rename = "type")]
    pub kind: String,
    /// The four digits, zero-padded (`"0042"`).
    pub value: String,
    /// The salt, standard base64 of [`SALT_LEN`] bytes. Absent in real Smart-ID v3 answers (whose
    /// code is server-random and shown as received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// The `type` of a four-digit code.
pub const NUMERIC4: &str = "numeric4";

/// The code for `session_id`, `bound` (digest or challenge) and `salt`: four digits.
pub fn compute(session_id: &str, bound: &[u8], salt: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(session_id.as_bytes());
    h.update([0u8]);
    h.update(bound);
    h.update(salt);
    let h = h.finalize();
    let n = u16::from_be_bytes([h[30], h[31]]) % 10_000;
    format!("{n:04}")
}

impl Vc {
    /// A new code for a session: picks the salt from `rng` (the Remote SCD service's side).
    pub fn issue(session_id: &str, bound: &[u8], rng: &mut impl CryptoRngCore) -> Vc {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Vc {
            kind: NUMERIC4.to_owned(),
            value: compute(session_id, bound, &salt),
            salt: Some(STANDARD.encode(salt)),
        }
    }

    /// Recomputes the code (the appliance's and the device's side) and refuses a code that is not
    /// the one for this session, digest or challenge, and salt.
    pub fn check(&self, session_id: &str, bound: &[u8]) -> Result<(), ScdError> {
        if self.kind != NUMERIC4 {
            return Err(ScdError::invalid(
                "vc.type",
                format!("expected {NUMERIC4}, got {:?}", self.kind),
            ));
        }
        let salt = self
            .salt
            .as_deref()
            .ok_or(ScdError::Missing { field: "vc.salt" })?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| ScdError::invalid("vc.salt", "not standard base64"))?;
        if salt.len() != SALT_LEN {
            return Err(ScdError::invalid(
                "vc.salt",
                format!("must be {SALT_LEN} bytes, got {}", salt.len()),
            ));
        }
        if compute(session_id, bound, &salt) == self.value {
            Ok(())
        } else {
            Err(ScdError::VcMismatch)
        }
    }

    /// Three codes for the `confirmationMessageAndVerificationCodeChoice` interaction: the real one
    /// and two others, all distinct, in an order picked by `rng`. The device shows them and the user
    /// picks the one on the appliance's page; a wrong pick ends the session with `WRONG_VC`.
    pub fn choices(&self, rng: &mut impl CryptoRngCore) -> [String; 3] {
        let mut out: Vec<String> = vec![self.value.clone()];
        while out.len() < 3 {
            let n = rng.next_u32() % 10_000;
            let candidate = format!("{n:04}");
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        // Place the real code at a random position (0, 1 or 2).
        let pos = (rng.next_u32() % 3) as usize;
        out.swap(0, pos);
        [out[0].clone(), out[1].clone(), out[2].clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn known_vector() {
        // Computed independently with Python's hashlib (tests/data/vc-known.txt):
        // h = sha256(b"GS-RSCD-VC\0" + b"s-1" + b"\0" + bytes(32) + bytes(16)).digest()
        // "%04d" % (int.from_bytes(h[30:32], "big") % 10000)
        let v = compute("s-1", &[0u8; 32], &[0u8; 16]);
        assert_eq!(v, KNOWN);
        assert_eq!(v.len(), 4);
    }

    const KNOWN: &str = include_str!("../tests/data/vc-known.txt").trim_ascii();

    #[test]
    fn issue_then_check_and_every_input_matters() {
        let digest = [7u8; 32];
        let vc = Vc::issue("sess", &digest, &mut OsRng);
        vc.check("sess", &digest).unwrap();
        // A different digest, session or salt changes the code for all but a 1-in-10,000 chance;
        // try a few to keep the test deterministic in what it asserts.
        let mismatches = (0u8..20)
            .filter(|i| vc.check("sess", &[*i; 32]).is_err())
            .count();
        assert!(mismatches >= 19, "{mismatches}");
        let mut other = vc.clone();
        other.value = format!("{:04}", (other.value.parse::<u16>().unwrap() + 1) % 10_000);
        assert_eq!(other.check("sess", &digest), Err(ScdError::VcMismatch));
        let mut no_salt = vc.clone();
        no_salt.salt = None;
        assert_eq!(
            no_salt.check("sess", &digest),
            Err(ScdError::Missing { field: "vc.salt" })
        );
        let mut short = vc;
        short.salt = Some(STANDARD.encode([1u8; 8]));
        assert!(matches!(
            short.check("sess", &digest),
            Err(ScdError::Invalid {
                field: "vc.salt",
                ..
            })
        ));
    }

    #[test]
    fn choices_hold_the_real_code_once_and_are_distinct() {
        let vc = Vc::issue("s", b"challenge", &mut OsRng);
        let mut seen_at = [0usize; 3];
        for _ in 0..200 {
            let c = vc.choices(&mut OsRng);
            assert_eq!(c.iter().filter(|x| **x == vc.value).count(), 1);
            assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
            seen_at[c.iter().position(|x| *x == vc.value).unwrap()] += 1;
        }
        assert!(seen_at.iter().all(|n| *n > 0), "{seen_at:?}");
    }
}
