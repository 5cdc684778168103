//! The configuration sections the web layer owns (`[listen]`, `[tls]`, `[ui]`, `[metrics]`).
//!
//! The binary assembles the configuration file model from these and the domain's sections
//! (`esigd_service::config`). Every key is documented in `config/esigd.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[listen]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Public listener: pages, TSA, CA publication, OCSP, health.
    #[serde(default = "default_public")]
    pub public: SocketAddr,
    /// e-Service API listener (mTLS).
    #[serde(default = "default_eservice")]
    pub eservice: SocketAddr,
    /// Reverse proxies in front of the public listener (CIDR). A request whose TCP peer is one of
    /// them is treated as coming from the client named in `X-Forwarded-For` (see
    /// [`crate::net::forwarded`]); empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

fn default_public() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_eservice() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            public: default_public(),
            eservice: default_eservice(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[tls]`: server certificate and client CAs of the e-Service listener (PEM files).
/// Relative paths are relative to `data_dir`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    #[serde(default = "default_tls_cert")]
    pub cert: PathBuf,
    /// Server private key (PEM, PKCS#8).
    #[serde(default = "default_tls_key")]
    pub key: PathBuf,
    /// CA certificates that issue e-Service client certificates (PEM, one or more).
    #[serde(default = "default_client_ca")]
    pub client_ca: PathBuf,
}

fn default_tls_cert() -> PathBuf {
    PathBuf::from("tls/server.pem")
}
fn default_tls_key() -> PathBuf {
    PathBuf::from("tls/server.key")
}
fn default_client_ca() -> PathBuf {
    PathBuf::from("tls/client-ca.pem")
}

impl Default for TlsFiles {
    fn default() -> Self {
        TlsFiles {
            cert: default_tls_cert(),
            key: default_tls_key(),
            client_ca: default_client_ca(),
        }
    }
}

/// `[ui]`: what the operator may brand on the signing pages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    /// Service name in page titles and headers.
    #[serde(default = "default_ui_name")]
    pub name: String,
    /// A logo file (PNG or SVG; relative paths under `data_dir`), served at `/v1/ui/logo`.
    pub logo: Option<PathBuf>,
    /// Main colour (`#rrggbb`).
    #[serde(default = "default_ui_primary")]
    pub primary_color: String,
    /// Background colour (`#rrggbb`).
    #[serde(default = "default_ui_background")]
    pub background_color: String,
    /// How long a signing session (the browser's visit) may last.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Signing sessions kept at once (more are refused with 503 until some end).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Live signing sessions from one source address (behind a reverse proxy this is the
    /// proxy's address: raise it there).
    #[serde(default = "default_max_sessions_per_ip")]
    pub max_sessions_per_ip: usize,
}

fn default_max_sessions_per_ip() -> usize {
    50
}

fn default_ui_name() -> String {
    "eSignature service".into()
}
fn default_ui_primary() -> String {
    "#0b5394".into()
}
fn default_ui_background() -> String {
    "#f5f7fa".into()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_max_sessions() -> usize {
    10_000
}

impl Default for UiSection {
    fn default() -> Self {
        UiSection {
            name: default_ui_name(),
            logo: None,
            primary_color: default_ui_primary(),
            background_color: default_ui_background(),
            session_ttl: default_session_ttl(),
            max_sessions: default_max_sessions(),
            max_sessions_per_ip: default_max_sessions_per_ip(),
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Source addresses (CIDR) that may read `/metrics`; default loopback only (127.0.0.0/8,
    /// ::1); an explicit empty list = everyone.
    #[serde(default = "loopback")]
    pub allowed_ips: Vec<ipnet::IpNet>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            allowed_ips: loopback(),
        }
    }
}

/// The loopback networks, IPv4 and IPv6.
pub fn loopback() -> Vec<ipnet::IpNet> {
    vec![
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).unwrap_or_default()),
        ipnet::IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default(),
        ),
    ]
}
