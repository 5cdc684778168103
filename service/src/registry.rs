//! Who may call the e-Service API: registered e-Services and auditors, recognised by their client
//! certificate and checked against their own source networks on every request.
//!
//! The registry is rebuilt from the configuration at start and on SIGHUP and swapped atomically
//! ([`crate::reload::Reloadable`]); requests in flight keep the snapshot they started with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{
    Any, Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::oid::db::rfc3280::EMAIL_ADDRESS;
use x509_cert::der::oid::db::rfc4519::{COUNTRY_NAME, DOMAIN_COMPONENT};
use x509_cert::der::{Tag, Tagged};
use x509_cert::name::{Name, RelativeDistinguishedName};

use crate::config::{AuditorEntry, ClientIdentity, EserviceEntry};
pub use crate::peer::PeerInfo;

/// Parses a SHA-256 fingerprint written as 64 hex digits, with or without colons, any case.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// A registered callback URL prefix: scheme, host and port must be equal, the path must start
/// with the prefix's path. Parsed, never compared as raw strings, so
/// `https://land.example.gov.evil.test/` cannot pass for `https://land.example.gov/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPrefix {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl CallbackPrefix {
    /// Parses a prefix from the configuration; the message says what is wrong.
    pub fn parse(s: &str) -> Result<CallbackPrefix, String> {
        let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{s:?}: only http and https callbacks"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("{s:?}: no host"))?
            .to_ascii_lowercase();
        if u.query().is_some()
            || u.fragment().is_some()
            || !u.username().is_empty()
            || u.password().is_some()
        {
            return Err(format!(
                "{s:?}: a prefix has no query, fragment or user info"
            ));
        }
        Ok(CallbackPrefix {
            scheme: u.scheme().into(),
            host,
            port: u.port_or_known_default(),
            path: u.path().into(),
        })
    }

    /// Whether `callback` (an absolute URL) falls under this prefix.
    pub fn matches(&self, callback: &url::Url) -> bool {
        callback.scheme() == self.scheme
            && callback
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && callback.port_or_known_default() == self.port
            && callback.username().is_empty()
            && callback.password().is_none()
            && path_under(callback.path(), &self.path)
    }
}

/// `path` equals `prefix` or lies under it at a segment boundary: a prefix `/cb` admits `/cb`
/// and `/cb/x` but not `/cbx`.
fn path_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How a client certificate is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Cert([u8; 32]),
    Spki([u8; 32]),
    SubjectIssuer { subject: Name, issuer: Name },
}

impl Matcher {
    fn of(c: &ClientIdentity) -> Option<Matcher> {
        if let Some(h) = &c.client_cert_sha256 {
            return parse_fingerprint(h).map(Matcher::Cert);
        }
        if let Some(h) = &c.client_spki_sha256 {
            return parse_fingerprint(h).map(Matcher::Spki);
        }
        match (&c.client_subject, &c.client_issuer) {
            // Validated at load: an unparsable DN cannot reach here (and would match nobody).
            (Some(s), Some(i)) => Some(Matcher::SubjectIssuer {
                subject: parse_dn(s).ok()?,
                issuer: parse_dn(i).ok()?,
            }),
            _ => None,
        }
    }

    fn matches(&self, peer: &PeerInfo) -> bool {
        match self {
            Matcher::Cert(h) => *h == peer.cert_sha256,
            Matcher::Spki(h) => *h == peer.spki_sha256,
            Matcher::SubjectIssuer { subject, issuer } => {
                dn_matches(subject, &peer.subject_name) && dn_matches(issuer, &peer.issuer_name)
            }
        }
    }
}

/// Parses a distinguished name of the configuration (`client_subject`, `client_issuer`): an
/// RFC 4514 string as `openssl x509 -noout -subject -nameopt RFC2253` prints it (most specific
/// RDN first, `,` between RDNs, `+` inside a multi-valued RDN, `\,` and `\XX` escapes, no spaces
/// around separators); attribute types by name in any case (`CN`, `commonName`, `cn`) or as a
/// dotted OID. The message says what is wrong.
pub fn parse_dn(s: &str) -> Result<Name, String> {
    Name::from_str(s).map_err(|e| {
        format!(
            "{s:?} is not an RFC 4514 distinguished name ({e}); write it as `openssl x509 -noout \
             -subject -nameopt RFC2253` prints it, e.g. CN=shop,O=Land Registry,C=EE"
        )
    })
}

/// Whether the certificate's name `actual` is the configured name `expected`: the same RDNs in the
/// same order, each with the same set of attributes (a multi-valued RDN in any order). Attribute
/// types are compared as OIDs (so `CN`, `cn`, `commonName` and `2.5.4.3` are one type); values
/// as text whatever their string type (UTF8String, PrintableString, IA5String, TeletexString),
/// exactly (case, spaces and punctuation count) except `C`, `DC` and `emailAddress`, which are
/// ASCII case-insensitive (their X.520 matching rules ignore case); values of other types as
/// their exact DER.
fn dn_matches(expected: &Name, actual: &Name) -> bool {
    expected.0.len() == actual.0.len()
        && expected
            .0
            .iter()
            .zip(actual.0.iter())
            .all(|(e, a)| rdn_matches(e, a))
}

fn rdn_matches(expected: &RelativeDistinguishedName, actual: &RelativeDistinguishedName) -> bool {
    let (e, a) = (expected.0.as_slice(), actual.0.as_slice());
    e.len() == a.len()
        && e.iter().all(|x| a.iter().any(|y| ava_matches(x, y)))
        && a.iter().all(|y| e.iter().any(|x| ava_matches(x, y)))
}

fn ava_matches(expected: &AttributeTypeAndValue, actual: &AttributeTypeAndValue) -> bool {
    if expected.oid != actual.oid {
        return false;
    }
    match (text_of(&expected.value), text_of(&actual.value)) {
        (Some(e), Some(a))
            if [COUNTRY_NAME, DOMAIN_COMPONENT, EMAIL_ADDRESS].contains(&expected.oid) =>
        {
            e.eq_ignore_ascii_case(a)
        }
        (Some(e), Some(a)) => e == a,
        _ => expected.value == actual.value,
    }
}

/// The text of a directory string value, whatever its ASN.1 string type.
fn text_of(value: &Any) -> Option<&str> {
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::PrintableString => PrintableStringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(value).ok().map(|s| s.as_str()),
        _ => None,
    }
}

/// A registered e-Service.
pub struct Eservice {
    /// `serviceId`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether a Payment BB token is required.
    pub payment_required: bool,
    /// Accepted `aud` values on ID tokens it sends.
    pub id_token_audiences: Vec<String>,
    /// Where its notification webhooks go (`notify_url`).
    pub notify_url: Option<url::Url>,
    matcher: Option<Matcher>,
    nets: Vec<IpNet>,
    callbacks: Vec<CallbackPrefix>,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Eservice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eservice").field("id", &self.id).finish()
    }
}

impl Eservice {
    /// Whether `ip` is in this e-Service's `allowed_ips`.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        allowed(&self.nets, ip)
    }

    /// The callback URL parsed, if it is absolute and under a registered prefix.
    pub fn callback(&self, callback: &str) -> Option<url::Url> {
        let u = url::Url::parse(callback).ok()?;
        self.callbacks.iter().any(|p| p.matches(&u)).then_some(u)
    }

    /// Takes one request from the rate limit; `false` means over the limit (429).
    pub fn rate_ok(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }
}

/// A registered auditor.
#[derive(Debug)]
pub struct Auditor {
    /// Name for logs.
    pub name: String,
    matcher: Option<Matcher>,
    nets: Vec<IpNet>,
}

impl Auditor {
    /// Whether `ip` is in this auditor's `allowed_ips`.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        allowed(&self.nets, ip)
    }
}

fn allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// The client on the other end of an e-Service API connection.
#[derive(Debug, Clone)]
pub enum Client {
    /// A registered e-Service.
    Eservice(Arc<Eservice>),
    /// A registered auditor.
    Auditor(Arc<Auditor>),
}

/// All registered clients.
#[derive(Debug, Default)]
pub struct Registry {
    eservices: Vec<Arc<Eservice>>,
    by_id: HashMap<String, Arc<Eservice>>,
    auditors: Vec<Arc<Auditor>>,
}

impl Registry {
    /// Builds the registry from validated `[[eservice]]` and `[[auditor]]` entries;
    /// `default_audience` (`identity.client_id`) is the ID-token audience of e-Services that name
    /// none.
    pub fn new(
        eservices: &[EserviceEntry],
        auditors: &[AuditorEntry],
        default_audience: Option<&str>,
    ) -> Registry {
        let default_aud: Vec<String> = default_audience.map(str::to_owned).into_iter().collect();
        let mut reg = Registry::default();
        for e in eservices {
            let limiter = NonZeroU32::new(e.rate_limit).map(|rate| {
                let burst = e.rate_burst.and_then(NonZeroU32::new).unwrap_or(rate);
                RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
            });
            let svc = Arc::new(Eservice {
                id: e.id.clone(),
                name: e.name.clone(),
                payment_required: e.payment_required,
                id_token_audiences: if e.id_token_audiences.is_empty() {
                    default_aud.clone()
                } else {
                    e.id_token_audiences.clone()
                },
                matcher: Matcher::of(&e.identity),
                // Validated at load: an unparsable URL cannot reach here.
                notify_url: e
                    .notify_url
                    .as_deref()
                    .and_then(|u| url::Url::parse(u).ok()),
                nets: e.allowed_ips.iter().map(IpNet::trunc).collect(),
                // Validated at load: unparsable prefixes cannot reach here.
                callbacks: e
                    .callback_prefixes
                    .iter()
                    .filter_map(|p| CallbackPrefix::parse(p).ok())
                    .collect(),
                limiter,
            });
            reg.by_id.insert(svc.id.clone(), svc.clone());
            reg.eservices.push(svc);
        }
        for a in auditors {
            reg.auditors.push(Arc::new(Auditor {
                name: a.name.clone(),
                matcher: Matcher::of(&a.identity),
                nets: a.allowed_ips.iter().map(IpNet::trunc).collect(),
            }));
        }
        reg
    }

    /// The client a verified client certificate belongs to (e-Services first).
    pub fn identify(&self, peer: &PeerInfo) -> Option<Client> {
        if let Some(e) = self
            .eservices
            .iter()
            .find(|e| e.matcher.as_ref().is_some_and(|m| m.matches(peer)))
        {
            return Some(Client::Eservice(e.clone()));
        }
        self.auditors
            .iter()
            .find(|a| a.matcher.as_ref().is_some_and(|m| m.matches(peer)))
            .map(|a| Client::Auditor(a.clone()))
    }

    /// The e-Service with this `serviceId`.
    pub fn eservice(&self, id: &str) -> Option<Arc<Eservice>> {
        self.by_id.get(id).cloned()
    }

    /// The e-Service whose registered callback prefixes match `callback` (for a redirect shaped
    /// as the contract shows, which has no `serviceId`): `Err` with the reason when none or
    /// several do, since guessing would send a signature to the wrong e-Service.
    pub fn eservice_for_callback(&self, callback: &str) -> Result<Arc<Eservice>, &'static str> {
        let mut found = self
            .eservices
            .iter()
            .filter(|e| e.callback(callback).is_some());
        match (found.next(), found.next()) {
            (Some(e), None) => Ok(e.clone()),
            (None, _) => Err("callbackUrl is not registered for any e-Service"),
            (Some(_), Some(_)) => Err(
                "callbackUrl matches the prefixes of several e-Services: add serviceId to the request",
            ),
        }
    }

    /// Every network any client may connect from: the connection-level allow-list.
    pub fn all_networks(&self) -> Vec<IpNet> {
        self.eservices
            .iter()
            .flat_map(|e| e.nets.iter().copied())
            .chain(self.auditors.iter().flat_map(|a| a.nets.iter().copied()))
            .collect()
    }

    /// Number of e-Services and auditors (for the reload log line).
    pub fn counts(&self) -> (usize, usize) {
        (self.eservices.len(), self.auditors.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_accept_colons_and_case() {
        let h = "AB".repeat(32);
        assert_eq!(parse_fingerprint(&h), Some([0xab; 32]));
        let c = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&c), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("abcd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn callback_prefixes_are_matched_on_parsed_urls() {
        let p = CallbackPrefix::parse("https://land.example.gov/esign/").unwrap();
        let ok = |u: &str| p.matches(&url::Url::parse(u).unwrap());
        assert!(ok("https://land.example.gov/esign/callback?x=1"));
        assert!(ok("https://LAND.example.gov:443/esign/cb"));
        assert!(!ok("https://land.example.gov.evil.test/esign/cb"));
        assert!(!ok("https://land.example.gov@evil.test/esign/cb"));
        assert!(!ok("https://user@land.example.gov/esign/cb"));
        assert!(!ok("http://land.example.gov/esign/cb"));
        assert!(!ok("https://land.example.gov:8443/esign/cb"));
        assert!(!ok("https://land.example.gov/other"));
        let p = CallbackPrefix::parse("https://land.example.gov/cb").unwrap();
        let ok = |u: &str| p.matches(&url::Url::parse(u).unwrap());
        assert!(ok("https://land.example.gov/cb"));
        assert!(ok("https://land.example.gov/cb/x?y=1"));
        assert!(!ok("https://land.example.gov/cbx"));
        assert!(CallbackPrefix::parse("javascript:alert(1)").is_err());
        assert!(CallbackPrefix::parse("https://x.test/?a=1").is_err());
        // A password without a user name is user info too (such a prefix would admit nothing).
        assert!(CallbackPrefix::parse("https://:pw@x.test/cb/").is_err());
    }

    use x509_cert::der::asn1::ObjectIdentifier;
    use x509_cert::der::oid::db::rfc4519::{COMMON_NAME, ORGANIZATION_NAME, SERIAL_NUMBER};

    fn ava(oid: ObjectIdentifier, tag: Tag, text: &str) -> AttributeTypeAndValue {
        AttributeTypeAndValue {
            oid,
            value: Any::new(tag, text.as_bytes()).unwrap(),
        }
    }

    /// A name as a certificate carries it: RDNs in DER order (least specific first).
    fn name(rdns: Vec<Vec<AttributeTypeAndValue>>) -> Name {
        x509_cert::name::RdnSequence(
            rdns.into_iter()
                .map(|v| RelativeDistinguishedName::try_from(v).unwrap())
                .collect(),
        )
    }

    /// Whether a registry entry with `client_subject = subject` (and the issuer written as the
    /// certificate's own issuer) recognises a client certificate whose subject is `cert`.
    fn recognises(subject: &str, cert: &Name) -> bool {
        let issuer = name(vec![vec![ava(COMMON_NAME, Tag::Utf8String, "Test CA")]]);
        let identity = ClientIdentity {
            client_subject: Some(subject.into()),
            client_issuer: Some("CN=Test CA".into()),
            ..ClientIdentity::default()
        };
        let peer = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            client_cert_der: Vec::new(),
            cert_sha256: [0; 32],
            spki_sha256: [0; 32],
            subject: cert.to_string(),
            issuer: issuer.to_string(),
            subject_name: cert.clone(),
            issuer_name: issuer,
        };
        Matcher::of(&identity).is_some_and(|m| m.matches(&peer))
    }

    #[test]
    fn dn_matching_parses_escaped_commas_and_multi_valued_rdns() {
        let c = ava(COUNTRY_NAME, Tag::PrintableString, "EE");
        let o = ava(ORGANIZATION_NAME, Tag::Utf8String, "Gov");
        let doe = name(vec![
            vec![c.clone()],
            vec![o.clone()],
            vec![ava(COMMON_NAME, Tag::Utf8String, "Doe, John")],
        ]);
        assert!(recognises(r"CN=Doe\, John,O=Gov,C=EE", &doe));
        // The space after the escaped comma belongs to the value.
        let doe_no_space = name(vec![
            vec![c.clone()],
            vec![o.clone()],
            vec![ava(COMMON_NAME, Tag::Utf8String, "Doe,John")],
        ]);
        assert!(!recognises(r"CN=Doe\, John,O=Gov,C=EE", &doe_no_space));
        assert!(recognises(r"CN=Doe\,John,O=Gov,C=EE", &doe_no_space));
        // A comma that is not escaped separates RDNs: another name.
        assert!(!recognises("CN=Doe, John,O=Gov,C=EE", &doe));

        // One RDN with two attributes, written in either order.
        let mari = name(vec![
            vec![c.clone()],
            vec![
                ava(COMMON_NAME, Tag::Utf8String, "Mari"),
                ava(SERIAL_NUMBER, Tag::PrintableString, "PNOEE-1"),
            ],
        ]);
        assert!(recognises("CN=Mari+serialNumber=PNOEE-1,C=EE", &mari));
        assert!(recognises("serialNumber=PNOEE-1+CN=Mari,C=EE", &mari));
        // The same attributes as two RDNs, or one of them missing: another name.
        assert!(!recognises("CN=Mari,serialNumber=PNOEE-1,C=EE", &mari));
        assert!(!recognises("CN=Mari,C=EE", &mari));
        // RDN order counts.
        assert!(!recognises("C=EE,O=Gov,CN=Doe\\, John", &doe));
    }

    #[test]
    fn dn_attribute_types_ignore_case_values_only_for_c_dc_and_email() {
        let shop = name(vec![
            vec![ava(DOMAIN_COMPONENT, Tag::Ia5String, "gov")],
            vec![ava(DOMAIN_COMPONENT, Tag::Ia5String, "example")],
            vec![ava(COUNTRY_NAME, Tag::PrintableString, "EE")],
            vec![ava(ORGANIZATION_NAME, Tag::Utf8String, "Land Registry")],
            vec![ava(COMMON_NAME, Tag::PrintableString, "shop")],
            vec![ava(EMAIL_ADDRESS, Tag::Ia5String, "Ops@Land.example.gov")],
        ]);
        let exact =
            "emailAddress=Ops@Land.example.gov,CN=shop,O=Land Registry,C=EE,DC=example,DC=gov";
        assert!(recognises(exact, &shop));
        // Attribute types in another spelling or case, or as OIDs.
        assert!(recognises(
            "EMAILADDRESS=Ops@Land.example.gov,commonName=shop,o=Land Registry,c=EE,dc=example,domainComponent=gov",
            &shop
        ));
        assert!(recognises(
            "1.2.840.113549.1.9.1=Ops@Land.example.gov,2.5.4.3=shop,2.5.4.10=Land Registry,2.5.4.6=EE,DC=example,DC=gov",
            &shop
        ));
        // C, DC and emailAddress values in any case.
        assert!(recognises(
            "emailAddress=ops@land.EXAMPLE.gov,CN=shop,O=Land Registry,C=ee,DC=Example,DC=GOV",
            &shop
        ));
        // CN and O values exactly: case and spaces count.
        for other in [
            "emailAddress=Ops@Land.example.gov,CN=SHOP,O=Land Registry,C=EE,DC=example,DC=gov",
            "emailAddress=Ops@Land.example.gov,CN=shop,O=land registry,C=EE,DC=example,DC=gov",
            "emailAddress=Ops@Land.example.gov,CN=shop,O=Land  Registry,C=EE,DC=example,DC=gov",
        ] {
            assert!(!recognises(other, &shop), "{other}");
        }
        // Not RFC 4514 (spaces around the separators): refused at load with a message.
        let e = parse_dn("CN = shop, O = Land Registry").unwrap_err();
        assert!(e.contains("RFC 4514"), "{e}");
    }
}
