//! Who may call the e-Service API: registered e-Services and auditors, recognised by their client
//! certificate and checked against their own source networks on every request.
//!
//! The registry is rebuilt from the configuration at start and on SIGHUP and swapped atomically
//! ([`crate::reload::Reloadable`]); requests in flight keep the snapshot they started with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

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
        if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
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
    SubjectIssuer { subject: String, issuer: String },
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
            (Some(s), Some(i)) => Some(Matcher::SubjectIssuer {
                subject: normalise_dn(s),
                issuer: normalise_dn(i),
            }),
            _ => None,
        }
    }

    fn matches(&self, peer: &PeerInfo) -> bool {
        match self {
            Matcher::Cert(h) => *h == peer.cert_sha256,
            Matcher::Spki(h) => *h == peer.spki_sha256,
            Matcher::SubjectIssuer { subject, issuer } => {
                *subject == normalise_dn(&peer.subject) && *issuer == normalise_dn(&peer.issuer)
            }
        }
    }
}

/// DN strings compared without spaces around separators and case-insensitively.
fn normalise_dn(s: &str) -> String {
    s.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
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
    }

    #[test]
    fn dn_comparison_ignores_spacing_and_case() {
        assert_eq!(
            normalise_dn("CN=Land Registry, O=State"),
            normalise_dn("cn=Land Registry,o = State")
        );
    }
}
