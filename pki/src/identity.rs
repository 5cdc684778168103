//! Mapping identity claims (from the ID building block) to an X.509 subject distinguished name, following
//! ETSI EN 319 412-2 §4.2.4 (natural persons) and ETSI EN 319 412-1 §5.1.3 (semantics identifier in
//! `serialNumber`, e.g. `PNOEE-38001085718`).
//!
//! Encodings follow RFC 5280 / X.520: `countryName` and `serialNumber` are PrintableString, the name
//! attributes are UTF8String.

use const_oid::ObjectIdentifier;
use der::{
    Tag,
    asn1::{Any, SetOfVec},
};
use x509_cert::{
    attr::AttributeTypeAndValue,
    name::{Name, RdnSequence, RelativeDistinguishedName},
};

use crate::X509Error;

/// id-at-commonName.
pub const ID_AT_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// id-at-surname.
pub const ID_AT_SURNAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.4");
/// id-at-serialNumber.
pub const ID_AT_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
/// id-at-countryName.
pub const ID_AT_COUNTRY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
/// id-at-organizationName.
pub const ID_AT_ORGANIZATION_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// id-at-organizationalUnitName.
pub const ID_AT_ORGANIZATIONAL_UNIT_NAME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.4.11");
/// id-at-givenName.
pub const ID_AT_GIVEN_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.42");
/// id-at-organizationIdentifier (ETSI EN 319 412-1 §5.1.4).
pub const ID_AT_ORGANIZATION_IDENTIFIER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.4.97");

/// X.520 upper bound of commonName / organizationName (ub-common-name, ub-organization-name).
pub const UB_COMMON_NAME: usize = 64;
/// X.520 upper bound of serialNumber (ub-serial-number).
pub const UB_SERIAL_NUMBER: usize = 64;
/// Practical bound for givenName / surname (X.520 ub-name is 32768; ETSI/CABF practice uses 64).
pub const UB_NAME: usize = 64;

/// Identity claims of a natural person, as delivered by the identity building block (OIDC claims).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityClaims {
    /// Full display name (`name` claim).
    pub name: Option<String>,
    /// Given name (`given_name` claim).
    pub given_name: Option<String>,
    /// Family name (`family_name` claim).
    pub family_name: Option<String>,
    /// Personal identifier (national ID number or an already formatted semantics identifier).
    pub personal_identifier: Option<String>,
    /// ISO 3166-1 alpha-2 country (of the identifier's issuing state).
    pub country: Option<String>,
}

/// Which claims make the `commonName`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CommonNameSource {
    /// The `name` claim; falls back to "given family" when `name` is missing.
    #[default]
    Name,
    /// "given_name family_name".
    GivenAndFamily,
}

/// How claims map to the subject DN. Defaults: CN from `name`, given name and surname included when
/// present, country required, serialNumber `PNO` + country + `-` + identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectMapping {
    /// Source of the commonName.
    pub common_name: CommonNameSource,
    /// Include `givenName` when the claim is present.
    pub include_given_name: bool,
    /// Include `surname` when the claim is present.
    pub include_surname: bool,
    /// Include `countryName`.
    pub include_country: bool,
    /// Country used when the claims carry none (ISO 3166-1 alpha-2), e.g. the deploying state.
    pub default_country: Option<String>,
    /// ETSI EN 319 412-1 §5.1.3 identity type reference: `PNO` (national personal number), `IDC`
    /// (identity card), `PAS` (passport), `TIN` (tax), or a national scheme.
    pub semantics_type: String,
    /// Require a personal identifier (ETSI EN 319 412-2 requires a serialNumber for natural persons when the
    /// name alone is not unique; the default is `true`).
    pub require_identifier: bool,
}

impl Default for SubjectMapping {
    fn default() -> Self {
        SubjectMapping {
            common_name: CommonNameSource::Name,
            include_given_name: true,
            include_surname: true,
            include_country: true,
            default_country: None,
            semantics_type: "PNO".into(),
            require_identifier: true,
        }
    }
}

/// True when every character is in the PrintableString set (X.680 §41.4).
pub fn is_printable_string(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                ' ' | '\'' | '(' | ')' | '+' | ',' | '-' | '.' | '/' | ':' | '=' | '?'
            )
    })
}

fn clean(
    claim: &'static str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, X509Error> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().any(char::is_control) {
        return Err(X509Error::Identity {
            claim,
            reason: "contains control characters".into(),
        });
    }
    if v.chars().count() > max {
        return Err(X509Error::Identity {
            claim,
            reason: format!("longer than {max} characters"),
        });
    }
    Ok(Some(v.to_owned()))
}

/// Checks and normalises an ISO 3166-1 alpha-2 country code (two ASCII letters, returned upper case).
pub fn normalize_country(claim: &'static str, value: &str) -> Result<String, X509Error> {
    let v = value.trim();
    if v.len() != 2 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(X509Error::Identity {
            claim,
            reason: format!("`{v}` is not an ISO 3166-1 alpha-2 country code (two letters)"),
        });
    }
    Ok(v.to_ascii_uppercase())
}

/// Builds the subject DN for a natural person from identity claims.
///
/// Attribute order (most general first): C, SN, GN, serialNumber, CN.
pub fn subject_from_claims(
    claims: &IdentityClaims,
    mapping: &SubjectMapping,
) -> Result<Name, X509Error> {
    let given = clean("given_name", &claims.given_name, UB_NAME)?;
    let family = clean("family_name", &claims.family_name, UB_NAME)?;
    let name = clean("name", &claims.name, UB_COMMON_NAME)?;
    let identifier = clean(
        "personal_identifier",
        &claims.personal_identifier,
        UB_SERIAL_NUMBER,
    )?;
    let country = match clean("country", &claims.country, 2).map_err(|_| X509Error::Identity {
        claim: "country",
        reason: "not an ISO 3166-1 alpha-2 country code (two letters)".into(),
    })? {
        Some(c) => Some(normalize_country("country", &c)?),
        None => match &mapping.default_country {
            Some(c) => Some(normalize_country("default_country (configuration)", c)?),
            None => None,
        },
    };

    let given_and_family = match (&given, &family) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(g), None) => Some(g.clone()),
        (None, Some(f)) => Some(f.clone()),
        (None, None) => None,
    };
    let cn = match mapping.common_name {
        CommonNameSource::Name => name.or(given_and_family),
        CommonNameSource::GivenAndFamily => given_and_family.or(name),
    }
    .ok_or_else(|| X509Error::Identity {
        claim: "name",
        reason: "no name, given_name or family_name claim to build the commonName".into(),
    })?;
    if cn.chars().count() > UB_COMMON_NAME {
        return Err(X509Error::Identity {
            claim: "name",
            reason: format!("commonName longer than {UB_COMMON_NAME} characters"),
        });
    }

    let serial = match identifier {
        Some(id) => {
            let ty = mapping.semantics_type.trim();
            if ty.is_empty() || !is_printable_string(ty) {
                return Err(X509Error::Identity {
                    claim: "semantics_type (configuration)",
                    reason: format!("`{ty}` is not a usable identity type reference"),
                });
            }
            let cc = country.clone().ok_or_else(|| X509Error::Identity {
                claim: "country",
                reason: "needed for the semantics identifier (e.g. PNOEE-...) but missing and no default_country is configured".into(),
            })?;
            let prefix = format!("{ty}{cc}-");
            // Accept an identifier that already carries the semantics prefix.
            let value = if id
                .to_ascii_uppercase()
                .starts_with(&prefix.to_ascii_uppercase())
            {
                format!("{prefix}{}", &id[prefix.len()..])
            } else {
                format!("{prefix}{id}")
            };
            if value.len() > UB_SERIAL_NUMBER {
                return Err(X509Error::Identity {
                    claim: "personal_identifier",
                    reason: format!(
                        "semantics identifier longer than {UB_SERIAL_NUMBER} characters"
                    ),
                });
            }
            if !is_printable_string(&value) {
                return Err(X509Error::Identity {
                    claim: "personal_identifier",
                    reason: "contains characters outside the PrintableString set (A-Z a-z 0-9 space ' ( ) + , - . / : = ?)".into(),
                });
            }
            Some(value)
        }
        None if mapping.require_identifier => {
            return Err(X509Error::Identity {
                claim: "personal_identifier",
                reason: "missing; the subject serialNumber (semantics identifier) is required"
                    .into(),
            });
        }
        None => None,
    };
    if mapping.include_country && country.is_none() {
        return Err(X509Error::Identity {
            claim: "country",
            reason: "missing and no default_country is configured".into(),
        });
    }

    let mut dn = DnBuilder::new();
    if let Some(c) = country.as_ref().filter(|_| mapping.include_country) {
        dn = dn.country(c)?;
    }
    if let Some(f) = family.as_ref().filter(|_| mapping.include_surname) {
        dn = dn.utf8(ID_AT_SURNAME, "family_name", f)?;
    }
    if let Some(g) = given.as_ref().filter(|_| mapping.include_given_name) {
        dn = dn.utf8(ID_AT_GIVEN_NAME, "given_name", g)?;
    }
    if let Some(s) = &serial {
        dn = dn.printable(ID_AT_SERIAL_NUMBER, "personal_identifier", s)?;
    }
    dn = dn.common_name(&cn)?;
    Ok(dn.build())
}

/// Builds a distinguished name attribute by attribute, one attribute per RDN, with the encodings RFC 5280
/// requires (PrintableString for country and serialNumber, UTF8String otherwise).
#[derive(Clone, Debug, Default)]
pub struct DnBuilder {
    rdns: Vec<RelativeDistinguishedName>,
}

impl DnBuilder {
    /// An empty DN.
    pub fn new() -> Self {
        DnBuilder::default()
    }

    fn push(
        mut self,
        oid: ObjectIdentifier,
        field: &'static str,
        tag: Tag,
        value: &str,
    ) -> Result<Self, X509Error> {
        if value.is_empty() {
            return Err(X509Error::Identity {
                claim: field,
                reason: "empty".into(),
            });
        }
        let value = Any::new(tag, value.as_bytes()).map_err(X509Error::encode("name attribute"))?;
        let atv = AttributeTypeAndValue { oid, value };
        let set = SetOfVec::try_from(vec![atv]).map_err(X509Error::encode("name attribute"))?;
        self.rdns.push(RelativeDistinguishedName::from(set));
        Ok(self)
    }

    /// Adds an attribute encoded as UTF8String.
    pub fn utf8(
        self,
        oid: ObjectIdentifier,
        field: &'static str,
        value: &str,
    ) -> Result<Self, X509Error> {
        self.push(oid, field, Tag::Utf8String, value)
    }

    /// Adds an attribute encoded as PrintableString (rejects characters outside that set).
    pub fn printable(
        self,
        oid: ObjectIdentifier,
        field: &'static str,
        value: &str,
    ) -> Result<Self, X509Error> {
        if !is_printable_string(value) {
            return Err(X509Error::Identity {
                claim: field,
                reason: format!("`{value}` has characters outside the PrintableString set"),
            });
        }
        self.push(oid, field, Tag::PrintableString, value)
    }

    /// Adds `countryName` (two letters, PrintableString).
    pub fn country(self, code: &str) -> Result<Self, X509Error> {
        let c = normalize_country("countryName", code)?;
        self.push(ID_AT_COUNTRY_NAME, "countryName", Tag::PrintableString, &c)
    }

    /// Adds `organizationName` (UTF8String, at most 64 characters).
    pub fn organization(self, value: &str) -> Result<Self, X509Error> {
        bounded("organizationName", value, UB_COMMON_NAME)?;
        self.utf8(ID_AT_ORGANIZATION_NAME, "organizationName", value)
    }

    /// Adds `organizationIdentifier` (ETSI EN 319 412-1 §5.1.4, e.g. `VATEE-123456789`; PrintableString here).
    pub fn organization_identifier(self, value: &str) -> Result<Self, X509Error> {
        self.printable(
            ID_AT_ORGANIZATION_IDENTIFIER,
            "organizationIdentifier",
            value,
        )
    }

    /// Adds `commonName` (UTF8String, at most 64 characters).
    pub fn common_name(self, value: &str) -> Result<Self, X509Error> {
        bounded("commonName", value, UB_COMMON_NAME)?;
        self.utf8(ID_AT_COMMON_NAME, "commonName", value)
    }

    /// The finished name.
    pub fn build(self) -> Name {
        RdnSequence(self.rdns)
    }
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), X509Error> {
    if value.chars().count() > max {
        return Err(X509Error::Identity {
            claim: field,
            reason: format!("longer than {max} characters"),
        });
    }
    Ok(())
}

/// The RFC 4514 string of `name`, exactly as `x509_cert`'s `Display` writes it (`CN=…,SERIALNUMBER=…`,
/// last RDN first), but without its per-attribute search of the whole `const_oid` name database:
/// the keywords of the attribute types esigd puts in names are looked up once, and only other
/// types go through the library. That search was about 7 % of a certificate issuance (the CA
/// records every subject as a string).
pub fn name_to_string(name: &Name) -> String {
    use der::Tagged;
    use std::fmt::Write;
    use std::sync::OnceLock;
    // Keywords as the library renders them (the database's shortest name, upper-cased).
    static KEYWORDS: OnceLock<Vec<(ObjectIdentifier, String)>> = OnceLock::new();
    let keywords = KEYWORDS.get_or_init(|| {
        [
            ID_AT_COMMON_NAME,
            ID_AT_SURNAME,
            ID_AT_SERIAL_NUMBER,
            ID_AT_COUNTRY_NAME,
            ID_AT_ORGANIZATION_NAME,
            ID_AT_ORGANIZATIONAL_UNIT_NAME,
            ID_AT_GIVEN_NAME,
            ID_AT_ORGANIZATION_IDENTIFIER,
        ]
        .into_iter()
        .filter_map(|oid| {
            // Rendered once by the library itself, so the keyword is the library's by construction.
            let probe = AttributeTypeAndValue {
                oid,
                value: Any::new(Tag::Utf8String, "x".as_bytes()).ok()?,
            }
            .to_string();
            let keyword = probe.strip_suffix("=x")?;
            (!keyword.contains('#')).then(|| (oid, keyword.to_string()))
        })
        .collect()
    });
    let mut out = String::with_capacity(128);
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let keyword = keywords.iter().find(|(oid, _)| *oid == atv.oid);
            // The two string types esigd writes, accepted exactly as the library's string types
            // accept them; anything else is left to the library.
            let value = match atv.value.tag() {
                Tag::Utf8String => std::str::from_utf8(atv.value.value()).ok(),
                Tag::PrintableString => std::str::from_utf8(atv.value.value())
                    .ok()
                    .filter(|v| is_printable_string(v)),
                _ => None,
            };
            match (keyword, value) {
                (Some((_, keyword)), Some(value)) => {
                    out.push_str(keyword);
                    out.push('=');
                    escape_rfc4514(&mut out, value);
                }
                // Unknown types, other value types: the library's own rendering.
                _ => {
                    let _ = write!(out, "{atv}");
                }
            }
        }
    }
    out
}

/// RFC 4514 §2.4 escaping, as `x509_cert` does it.
fn escape_rfc4514(out: &mut String, value: &str) {
    use std::fmt::Write;
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || chars.peek().is_none() => out.push_str("\\ "),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x00'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:02x}", c as u8);
            }
            _ => out.push(c),
        }
    }
}
