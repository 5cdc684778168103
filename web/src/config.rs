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
    /// Connections served at once, per listener; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections at once from one IPv4 address or IPv6 /64 on the public listener (trusted
    /// proxies are not counted).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// The same on the e-Service listener.
    #[serde(default = "default_eservice_max_connections_per_ip")]
    pub eservice_max_connections_per_ip: usize,
    /// Time for the TLS handshake (e-Service listener).
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time for the first byte of a connection and for each HTTP/1 request head (also the
    /// keep-alive wait for the next one).
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time for a whole request body, from the end of its head (else 408).
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval (and the time allowed for the answer).
    #[serde(default = "default_h2_keep_alive", with = "humantime_serde")]
    pub h2_keep_alive: Duration,
    /// Requests at once on one HTTP/2 connection.
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u32,
    /// A connection is closed gracefully after this long (clients reconnect).
    #[serde(default = "default_max_connection_age", with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Time in-flight requests get at shutdown (and after `max_connection_age`/`idle_timeout`).
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

// The listener defaults are `crate::net::Limits::default()`'s: one source of truth.
fn default_max_connections() -> usize {
    crate::net::Limits::default().max_connections
}
fn default_max_connections_per_ip() -> usize {
    crate::net::DEFAULT_MAX_CONNECTIONS_PER_IP
}
fn default_eservice_max_connections_per_ip() -> usize {
    crate::net::DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP
}
fn default_handshake_timeout() -> Duration {
    crate::net::Limits::default().handshake_timeout
}
fn default_header_read_timeout() -> Duration {
    crate::net::Limits::default().header_read_timeout
}
fn default_body_read_timeout() -> Duration {
    crate::net::Limits::default().body_read_timeout
}
fn default_idle_timeout() -> Duration {
    crate::net::Limits::default().idle_timeout
}
fn default_h2_keep_alive() -> Duration {
    crate::net::Limits::default().h2_keep_alive
}
fn default_h2_max_concurrent_streams() -> u32 {
    crate::net::Limits::default().h2_max_concurrent_streams
}
fn default_max_connection_age() -> Duration {
    crate::net::Limits::default().max_connection_age
}
fn default_shutdown_grace() -> Duration {
    crate::net::Limits::default().shutdown_grace
}

fn default_public() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_eservice() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

impl Listen {
    /// The public listener's limits.
    pub fn public_limits(&self) -> crate::net::Limits {
        crate::net::Limits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            handshake_timeout: self.handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            h2_keep_alive: self.h2_keep_alive,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            max_connection_age: self.max_connection_age,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// The e-Service listener's limits (its own per-address cap).
    pub fn eservice_limits(&self) -> crate::net::Limits {
        crate::net::Limits {
            max_connections_per_ip: self.eservice_max_connections_per_ip,
            ..self.public_limits()
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            public: default_public(),
            eservice: default_eservice(),
            trusted_proxies: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            eservice_max_connections_per_ip: default_eservice_max_connections_per_ip(),
            handshake_timeout: default_handshake_timeout(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            idle_timeout: default_idle_timeout(),
            h2_keep_alive: default_h2_keep_alive(),
            h2_max_concurrent_streams: default_h2_max_concurrent_streams(),
            max_connection_age: default_max_connection_age(),
            shutdown_grace: default_shutdown_grace(),
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
    /// Certificate revocation lists of those CAs (PEM, one or more, or one DER CRL); when set, a
    /// revoked client certificate, or one whose issuer has no CRL here, is refused. Re-read on
    /// reload (SIGHUP), as are the other `[tls]` files.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
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
            client_crl: None,
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
    /// Live signing sessions from one IPv6 /48 (a site's allocation: many /64s of one network
    /// share this budget).
    #[serde(default = "default_max_sessions_per_48")]
    pub max_sessions_per_48: usize,
}

fn default_max_sessions_per_ip() -> usize {
    50
}

fn default_max_sessions_per_48() -> usize {
    200
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
            max_sessions_per_48: default_max_sessions_per_48(),
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
