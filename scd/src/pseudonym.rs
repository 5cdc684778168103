//! The pseudonym a citizen types to sign with their device (GovStack: a key handle bound to one
//! SCD and key), instead of logging in.
//!
//! Format: three groups of four characters of Crockford's base32 alphabet in lower case, joined by
//! hyphens, e.g. `k7m2-9xqa-h3dz`. That is 60 random bits: easy to read aloud and type (no `i`,
//! `l`, `o`, `u`; typing `O` for `0` or `I`/`L` for `1` is forgiven), and not guessable by walking a
//! counter. With ten million pseudonyms issued, one random guess hits one of them with probability
//! 10^7 / 2^60 ≈ 8.7 × 10^-12; at the per-IP limit of the pseudonym entry (a few tries a minute)
//! finding any pseudonym takes longer than the age of the universe. A hit only sends a request to
//! the owner's device, which they refuse; it never signs.

use std::fmt;

use rand_core::CryptoRngCore;

use crate::ScdError;

/// Crockford's base32 alphabet, lower case.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters in a pseudonym, without hyphens.
pub const CHARS: usize = 12;
/// Characters per group.
const GROUP: usize = 4;

/// A well-formed pseudonym, in canonical form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// A new random pseudonym (60 bits from `rng`).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Pseudonym {
        let mut out = String::with_capacity(CHARS + 2);
        for i in 0..CHARS {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            // 32 divides 2^32: no modulo bias.
            out.push(char::from(ALPHABET[(rng.next_u32() % 32) as usize]));
        }
        Pseudonym(out)
    }

    /// Parses what a person typed: case, spaces and hyphens do not matter, `o` reads as `0` and
    /// `i`/`l` as `1`. Anything else outside the alphabet, or a wrong length, is refused.
    pub fn parse(input: &str) -> Result<Pseudonym, ScdError> {
        let mut chars = Vec::with_capacity(CHARS);
        for c in input.chars() {
            let c = match c.to_ascii_lowercase() {
                ' ' | '-' => continue,
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(ScdError::invalid(
                    "pseudonym",
                    "use only the letters and digits shown when the device was registered",
                ));
            }
            chars.push(c);
            if chars.len() > CHARS {
                break;
            }
        }
        if chars.len() != CHARS {
            return Err(ScdError::invalid(
                "pseudonym",
                format!("must have {CHARS} letters and digits, as in k7m2-9xqa-h3dz"),
            ));
        }
        let mut out = String::with_capacity(CHARS + 2);
        for (i, c) in chars.into_iter().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        Ok(Pseudonym(out))
    }

    /// The canonical form (`k7m2-9xqa-h3dz`), also the lookup key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use std::collections::HashSet;

    #[test]
    fn generated_pseudonyms_parse_to_themselves_and_differ() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let p = Pseudonym::generate(&mut OsRng);
            assert_eq!(p.as_str().len(), 14);
            assert_eq!(Pseudonym::parse(p.as_str()).unwrap(), p);
            assert!(seen.insert(p));
        }
    }

    #[test]
    fn typing_mistakes_that_are_forgiven() {
        let p = Pseudonym::parse("k7m2-9xqa-h3dz").unwrap();
        assert_eq!(Pseudonym::parse("K7M2 9XQA H3DZ").unwrap(), p);
        assert_eq!(Pseudonym::parse("k7m29xqah3dz").unwrap(), p);
        assert_eq!(
            Pseudonym::parse("1o0i-llll-0000").unwrap().as_str(),
            "1001-1111-0000"
        );
    }

    #[test]
    fn wrong_input_is_refused_with_the_field() {
        for bad in [
            "",
            "k7m2-9xqa",
            "k7m2-9xqa-h3dz-1",
            "k7m2-9xqa-h3du",
            "k7m2-9xqa-h3d€",
            "k7m2/9xqa/h3dz",
        ] {
            let e = Pseudonym::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("pseudonym"), "{bad}");
        }
    }
}
