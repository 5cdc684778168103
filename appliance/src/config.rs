//! The configuration file (TOML) and the embedded defaults.
//!
//! Every key is documented in `config/esigd.example.toml`. Unknown keys and bad values are
//! errors that name the key and the file. Without a file, `esigd serve` runs on the embedded
//! development defaults: data under `./data`, a SoftHSM token created there on first start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esigd_hsm::{HsmConfig, KeyRef, PinSource, SOFTHSM_MODULE};
use serde::Deserialize;

/// A configuration error: the file and key at fault, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/invalid keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is syntactically fine but not acceptable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file (or `<embedded defaults>`).
        path: PathBuf,
        /// The key at fault, e.g. `tsa.accuracy`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the RocksDB store, published certificates and (dev) token live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Listener addresses.
    #[serde(default)]
    pub listen: Listen,
    /// TLS of the e-Service listener.
    #[serde(default)]
    pub tls: TlsFiles,
    /// The HSM.
    pub hsm: HsmSection,
    /// The certificate authority.
    #[serde(default)]
    pub ca: CaSection,
    /// The time-stamping authority.
    #[serde(default)]
    pub tsa: TsaSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// The Identity Building Block (OpenID Connect provider); without it, signing needs no
    /// login is impossible and the one-time routes answer 503.
    #[serde(default)]
    pub identity: Option<IdentitySection>,
    /// Registered e-Services (clients of the e-Service API).
    #[serde(default, rename = "eservice")]
    pub eservices: Vec<EserviceEntry>,
    /// Auditor clients (may read `/v1/audit/log`).
    #[serde(default, rename = "auditor")]
    pub auditors: Vec<AuditorEntry>,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Retention of stored signatures.
    #[serde(default)]
    pub store: StoreSection,
    /// The `/metrics` endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The Payment BB whose tokens e-Services with `payment_required` must present.
    #[serde(default)]
    pub payment: Option<PaymentSection>,
    /// Look of the pages users see.
    #[serde(default)]
    pub ui: UiSection,
    /// True for the embedded development defaults (not settable in a file).
    #[serde(skip)]
    pub dev: bool,
    /// The file this came from (for messages).
    #[serde(skip)]
    pub source: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/esigd")
}

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

/// Where a secret (HSM PIN, OIDC client secret) comes from: exactly one of the three.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// A file holding the secret (relative paths: under `data_dir`).
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub env: Option<String>,
    /// A systemd credential name (`$CREDENTIALS_DIRECTORY/<name>`).
    pub credential: Option<String>,
}

/// Where the HSM PIN comes from.
pub type PinSpec = SecretSpec;

impl SecretSpec {
    fn count(&self) -> usize {
        [
            self.file.is_some(),
            self.env.is_some(),
            self.credential.is_some(),
        ]
        .iter()
        .filter(|p| **p)
        .count()
    }
}

/// `[identity]`: the Identity Building Block, an OpenID Connect provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Issuer URL; the discovery document is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Our client ID at the provider (browser flow; also the default accepted ID-token audience).
    pub client_id: String,
    /// Client authentication at the token endpoint: `client_secret_basic` or `private_key_jwt`.
    #[serde(default = "default_client_auth")]
    pub client_auth: String,
    /// The client secret (`client_secret_basic`).
    pub client_secret: Option<SecretSpec>,
    /// PEM private key (PKCS#8, EC P-256 or RSA) signing client assertions (`private_key_jwt`).
    pub client_key: Option<PathBuf>,
    /// Scopes requested in the browser flow.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Extra CA certificates (PEM) trusted for an `https` issuer.
    pub ca_file: Option<PathBuf>,
    /// JWS algorithms accepted on ID tokens.
    #[serde(default = "default_algs")]
    pub allowed_algs: Vec<String>,
    /// Tolerated clock difference with the provider for `exp`/`iat`.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Which claims fill the certificate subject.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Our redirect URI registered at the provider; default `<ca.base_url>/v1/oidc/callback`.
    pub redirect_url: Option<String>,
    /// Authentication context classes (e.g. eIDAS levels of assurance) asked for as `acr_values`;
    /// when not empty, an ID token's `acr` must be one of them (browser flow and API).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Sent as `max_age`; when set, an ID token's `auth_time` must be no older than this (plus
    /// `clock_skew`): a signature needs a recent login, not an old single sign-on session.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

fn default_client_auth() -> String {
    "client_secret_basic".into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "national_id".into()]
}
fn default_algs() -> Vec<String> {
    vec!["ES256".into(), "RS256".into(), "PS256".into()]
}
fn default_skew() -> Duration {
    Duration::from_secs(30)
}

/// `[identity.claims]`: claim names (in the ID token or userinfo) that fill the subject DN.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// Full name → commonName.
    #[serde(default = "claim_name")]
    pub name: String,
    /// Given name → givenName.
    #[serde(default = "claim_given_name")]
    pub given_name: String,
    /// Family name → surname.
    #[serde(default = "claim_family_name")]
    pub family_name: String,
    /// Personal identifier → serialNumber (`PNO<country>-<id>`).
    #[serde(default = "claim_personal_identifier")]
    pub personal_identifier: String,
    /// Country (ISO 3166 alpha-2) → countryName.
    #[serde(default = "claim_country")]
    pub country: String,
    /// Country used when the claims carry none.
    pub default_country: Option<String>,
    /// ETSI EN 319 412-1 identity type reference of the serialNumber (`PNO`, `IDC`, `PAS`, `TIN`).
    #[serde(default = "claim_identifier_type")]
    pub identifier_type: String,
}

fn claim_name() -> String {
    "name".into()
}
fn claim_given_name() -> String {
    "given_name".into()
}
fn claim_family_name() -> String {
    "family_name".into()
}
fn claim_personal_identifier() -> String {
    "individual_id".into()
}
fn claim_country() -> String {
    "country".into()
}
fn claim_identifier_type() -> String {
    "PNO".into()
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            name: claim_name(),
            given_name: claim_given_name(),
            family_name: claim_family_name(),
            personal_identifier: claim_personal_identifier(),
            country: claim_country(),
            default_country: None,
            identifier_type: claim_identifier_type(),
        }
    }
}

/// How a client certificate is recognised: exactly one of the fingerprints, or subject + issuer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentity {
    /// SHA-256 of the client certificate DER (hex; colons allowed).
    pub client_cert_sha256: Option<String>,
    /// SHA-256 of the client certificate's SubjectPublicKeyInfo DER (survives re-issuance).
    pub client_spki_sha256: Option<String>,
    /// Subject DN of the client certificate (RFC 4514, as `openssl x509 -subject -nameopt RFC2253`).
    pub client_subject: Option<String>,
    /// Issuer DN of the client certificate (with `client_subject`).
    pub client_issuer: Option<String>,
}

/// One `[[eservice]]`: a registered e-Service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EserviceEntry {
    /// Short identifier: `serviceId` on the interactive redirect, owner of stored signatures.
    pub id: String,
    /// Display name shown to users.
    pub name: String,
    /// Client certificate identity.
    #[serde(flatten)]
    pub identity: ClientIdentity,
    /// Source addresses (CIDR) this e-Service may connect from.
    pub allowed_ips: Vec<ipnet::IpNet>,
    /// Callback URLs must start with one of these (scheme, host, port equal; path prefix).
    #[serde(default)]
    pub callback_prefixes: Vec<String>,
    /// Whether a Payment BB token is required.
    #[serde(default)]
    pub payment_required: bool,
    /// `aud` values accepted on ID tokens this e-Service sends (`X-GovStack-AuthenticationToken`);
    /// default: `identity.client_id`.
    #[serde(default)]
    pub id_token_audiences: Vec<String>,
    /// Signing requests per second (sustained); 0 = unlimited.
    #[serde(default)]
    pub rate_limit: u32,
    /// Burst above the sustained rate (default: the rate).
    pub rate_burst: Option<u32>,
}

/// One `[[auditor]]`: a client allowed to read the audit log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorEntry {
    /// Name for logs.
    pub name: String,
    /// Client certificate identity.
    #[serde(flatten)]
    pub identity: ClientIdentity,
    /// Source addresses (CIDR) this auditor may connect from.
    pub allowed_ips: Vec<ipnet::IpNet>,
}

/// `[limits]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest JSON request body on the e-Service API, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Signing requests processed at once; more wait up to `queue_timeout`, then get 503.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_signatures: usize,
    /// How long a signing request may wait for a slot.
    #[serde(default = "default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Oldest accepted `requestTimestamp` (and how far in the future it may be).
    #[serde(default = "default_request_age", with = "humantime_serde")]
    pub request_max_age: Duration,
}

fn default_max_body() -> usize {
    64 * 1024
}
fn default_concurrency() -> usize {
    64
}
fn default_queue_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_age() -> Duration {
    Duration::from_secs(600)
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_body_bytes: default_max_body(),
            max_concurrent_signatures: default_concurrency(),
            queue_timeout: default_queue_timeout(),
            request_max_age: default_request_age(),
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// How long a signature stays after its first fetch.
    #[serde(default = "default_after_fetch", with = "humantime_serde")]
    pub retention_after_fetch: Duration,
    /// How long a signature that is never fetched stays.
    #[serde(default = "default_unfetched", with = "humantime_serde")]
    pub retention_unfetched: Duration,
    /// How often expired signatures are removed.
    #[serde(default = "default_sweep", with = "humantime_serde")]
    pub sweep_interval: Duration,
}

fn default_after_fetch() -> Duration {
    Duration::from_secs(86_400)
}
fn default_unfetched() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_sweep() -> Duration {
    Duration::from_secs(300)
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            retention_after_fetch: default_after_fetch(),
            retention_unfetched: default_unfetched(),
            sweep_interval: default_sweep(),
        }
    }
}

/// `[payment]`: how Payment BB tokens (JWT) are verified.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSection {
    /// The `aud` a token must carry (this appliance).
    pub audience: String,
    /// The `iss` a token must carry, if set.
    pub issuer: Option<String>,
    /// PEM public key (EC or RSA) of the Payment BB (relative paths: under `data_dir`).
    pub key_file: Option<PathBuf>,
    /// Or: the Payment BB's JWKS URL.
    pub jwks_url: Option<String>,
    /// JWS algorithms accepted.
    #[serde(default = "default_payment_algs")]
    pub algorithms: Vec<String>,
    /// When set, a token must carry this claim (e.g. `"sub"`) with the id of the e-Service it is
    /// presented for, so a payment made for one e-Service cannot be spent at another.
    #[serde(default)]
    pub eservice_claim: Option<String>,
}

fn default_payment_algs() -> Vec<String> {
    vec!["ES256".into(), "RS256".into()]
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Source addresses (CIDR) that may read `/metrics`; empty = everyone.
    #[serde(default)]
    pub allowed_ips: Vec<ipnet::IpNet>,
}

/// `[hsm]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// PKCS#11 module path.
    #[serde(default = "default_module")]
    pub module: PathBuf,
    /// Token label.
    #[serde(default = "default_token")]
    pub token: String,
    /// PIN source: exactly one of `file`, `env`, `credential`.
    pub pin: PinSpec,
    /// Pooled sessions (default 2 × cores).
    pub sessions: Option<usize>,
    /// How long a request waits for a free session.
    #[serde(default = "default_checkout", with = "humantime_serde")]
    pub checkout_timeout: Duration,
    /// Pre-generated one-time keys kept ready.
    #[serde(default = "default_onetime_ready")]
    pub onetime_keys_ready: usize,
}

fn default_module() -> PathBuf {
    PathBuf::from(SOFTHSM_MODULE)
}
fn default_token() -> String {
    "esig".into()
}
fn default_checkout() -> Duration {
    Duration::from_secs(5)
}
fn default_onetime_ready() -> usize {
    8
}

/// `[ca]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// The CA key on the token.
    #[serde(default = "default_ca_key")]
    pub key: String,
    /// Public base URL of this appliance; CRL, OCSP and caIssuers URLs in certificates derive from it.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Subject of a self-signed root made by `esigd init ca` (ignored for a subordinate CA).
    #[serde(default = "default_ca_name")]
    pub common_name: String,
    /// Organization in CA and TSA subjects.
    #[serde(default = "default_org")]
    pub organization: String,
    /// Two-letter country in CA and TSA subjects.
    #[serde(default = "default_country")]
    pub country: String,
    /// Validity of a root made by `esigd init ca`.
    #[serde(default = "default_root_validity", with = "humantime_serde")]
    pub root_validity: Duration,
    /// Validity of one-time certificates.
    #[serde(default = "default_one_time_validity", with = "humantime_serde")]
    pub one_time_validity: Duration,
    /// Validity of SCD certificates.
    #[serde(default = "default_scd_validity", with = "humantime_serde")]
    pub scd_validity: Duration,
    /// A delegated OCSP responder key on the token; when set, `esigd init ocsp` has the CA issue
    /// it an id-kp-OCSPSigning certificate and OCSP responses are signed with it instead of the
    /// CA key.
    pub ocsp_key: Option<String>,
    /// Validity of the delegated OCSP responder certificate.
    #[serde(default = "default_ocsp_validity", with = "humantime_serde")]
    pub ocsp_certificate_validity: Duration,
    /// Check of the HSM's certificate signatures before a certificate is released: verify one in
    /// N for an ECDSA CA key (every one for RSA, and every one after any failure); 1 = always.
    #[serde(default = "default_verify_one_in")]
    pub verify_signatures_one_in: u32,
}

fn default_verify_one_in() -> u32 {
    64
}

fn default_ocsp_validity() -> Duration {
    Duration::from_secs(365 * 86_400)
}

fn default_ca_key() -> String {
    "pkcs11:object=ca-key".into()
}
fn default_base_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_ca_name() -> String {
    "esigd Development Root CA".into()
}
fn default_org() -> String {
    "esigd development".into()
}
fn default_country() -> String {
    "EE".into()
}
fn default_root_validity() -> Duration {
    Duration::from_secs(20 * 365 * 86_400)
}
fn default_one_time_validity() -> Duration {
    Duration::from_secs(60)
}
fn default_scd_validity() -> Duration {
    Duration::from_secs(730 * 86_400)
}

impl Default for CaSection {
    fn default() -> Self {
        CaSection {
            key: default_ca_key(),
            base_url: default_base_url(),
            common_name: default_ca_name(),
            organization: default_org(),
            country: default_country(),
            root_validity: default_root_validity(),
            one_time_validity: default_one_time_validity(),
            scd_validity: default_scd_validity(),
            ocsp_key: None,
            ocsp_certificate_validity: default_ocsp_validity(),
            verify_signatures_one_in: default_verify_one_in(),
        }
    }
}

/// `[tsa]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSection {
    /// The TSA key on the token.
    #[serde(default = "default_tsa_key")]
    pub key: String,
    /// TSA policy OID put in every TSTInfo.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// Declared accuracy; never smaller than the kernel's maximum clock error.
    #[serde(default = "default_accuracy", with = "humantime_serde")]
    pub accuracy: Duration,
    /// Stamp even when the kernel says the clock is unsynchronised (development only).
    #[serde(default)]
    pub allow_unsynchronized_clock: bool,
    /// Validity of the TSA certificate made by `esigd init tsa`.
    #[serde(default = "default_tsa_validity", with = "humantime_serde")]
    pub certificate_validity: Duration,
    /// Source addresses (CIDR) that may use `POST /tsa`; empty = everyone.
    #[serde(default)]
    pub allowed_ips: Vec<ipnet::IpNet>,
}

fn default_tsa_key() -> String {
    "pkcs11:object=tsa-key".into()
}
fn default_policy() -> String {
    "1.3.6.1.4.1.99999.1.1".into()
}
fn default_accuracy() -> Duration {
    Duration::from_secs(1)
}
fn default_tsa_validity() -> Duration {
    Duration::from_secs(5 * 365 * 86_400)
}

impl Default for TsaSection {
    fn default() -> Self {
        TsaSection {
            key: default_tsa_key(),
            policy: default_policy(),
            accuracy: default_accuracy(),
            allow_unsynchronized_clock: false,
            certificate_validity: default_tsa_validity(),
            allowed_ips: Vec::new(),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter, e.g. `info` or `esigd=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn loopback_v4() -> ipnet::IpNet {
    ipnet::IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).unwrap_or_default())
}
fn loopback_v6() -> ipnet::IpNet {
    ipnet::IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default())
}

fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.source = path.to_path_buf();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The embedded development defaults rooted at `data_dir`: a SoftHSM token under
    /// `data_dir/hsm` with its PIN in `data_dir/hsm/user-pin`, an unsynchronised clock allowed.
    pub fn dev_defaults(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            listen: Listen::default(),
            tls: TlsFiles::default(),
            hsm: HsmSection {
                module: default_module(),
                token: default_token(),
                pin: PinSpec {
                    file: Some(PathBuf::from("hsm/user-pin")),
                    env: None,
                    credential: None,
                },
                sessions: None,
                checkout_timeout: default_checkout(),
                onetime_keys_ready: default_onetime_ready(),
            },
            ca: CaSection::default(),
            tsa: TsaSection {
                allow_unsynchronized_clock: true,
                ..TsaSection::default()
            },
            log: LogSection::default(),
            identity: Some(IdentitySection {
                issuer: "http://127.0.0.1:9000".into(),
                client_id: "esigd".into(),
                client_auth: default_client_auth(),
                // Written by `devsetup` with the dev Identity BB's client secret.
                client_secret: Some(SecretSpec {
                    file: Some(PathBuf::from("idp/client-secret")),
                    env: None,
                    credential: None,
                }),
                client_key: None,
                scopes: default_scopes(),
                ca_file: None,
                allowed_algs: default_algs(),
                clock_skew: default_skew(),
                claims: ClaimMapping {
                    default_country: Some("EE".into()),
                    ..ClaimMapping::default()
                },
                redirect_url: None,
                acr_values: Vec::new(),
                max_age: None,
            }),
            // The demo e-Service's certificate fingerprint is filled in by `devsetup` once its
            // certificate exists.
            eservices: vec![EserviceEntry {
                id: "demo".into(),
                name: "Demo e-Service".into(),
                identity: ClientIdentity::default(),
                allowed_ips: vec![loopback_v4(), loopback_v6()],
                callback_prefixes: vec![
                    "http://127.0.0.1:8090/".into(),
                    "http://localhost:8090/".into(),
                ],
                payment_required: false,
                id_token_audiences: vec!["demo-eservice".into(), "esigd".into()],
                rate_limit: 0,
                rate_burst: None,
            }],
            auditors: Vec::new(),
            limits: LimitsSection::default(),
            store: StoreSection::default(),
            metrics: MetricsSection::default(),
            payment: None,
            ui: UiSection {
                name: "esigd (development)".into(),
                ..UiSection::default()
            },
            dev: true,
            source: PathBuf::from("<embedded defaults>"),
        }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hsm.pin.count() != 1 {
            return Err(self.invalid("hsm.pin", "give exactly one of file, env or credential"));
        }
        if self.hsm.sessions == Some(0) {
            return Err(self.invalid("hsm.sessions", "must be at least 1"));
        }
        if self.hsm.onetime_keys_ready == 0 {
            return Err(self.invalid("hsm.onetime_keys_ready", "must be at least 1"));
        }
        self.ca_key()?;
        self.tsa_key()?;
        self.ocsp_key()?;
        if self.ca.verify_signatures_one_in == 0 {
            return Err(self.invalid(
                "ca.verify_signatures_one_in",
                "must be at least 1 (1 = verify every signature)",
            ));
        }
        if !(self.ca.base_url.starts_with("http://") || self.ca.base_url.starts_with("https://")) {
            return Err(self.invalid("ca.base_url", "must start with http:// or https://"));
        }
        if self.ca.country.len() != 2 || !self.ca.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.invalid("ca.country", "must be two upper-case letters (ISO 3166)"));
        }
        if self.ca.one_time_validity < Duration::from_secs(10)
            || self.ca.one_time_validity > Duration::from_secs(3600)
        {
            return Err(self.invalid("ca.one_time_validity", "must be between 10s and 1h"));
        }
        if self
            .tsa
            .policy
            .parse::<const_oid::ObjectIdentifier>()
            .is_err()
        {
            return Err(self.invalid("tsa.policy", "not a dotted OID"));
        }
        if self.tsa.accuracy.is_zero() {
            return Err(self.invalid("tsa.accuracy", "must be greater than zero"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(self.invalid("log.format", "must be \"text\" or \"json\""));
        }
        if let Some(id) = &self.identity {
            self.validate_identity(id)?;
        }
        if let Some(everyone) = self
            .listen
            .trusted_proxies
            .iter()
            .find(|n| n.prefix_len() == 0)
        {
            // Trusting every peer would let anyone choose the address the allow-lists see.
            return Err(self.invalid(
                "listen.trusted_proxies",
                format!("{everyone} trusts every peer's X-Forwarded-For; list the reverse proxies' own addresses"),
            ));
        }
        if let Some(mapped) = self
            .listen
            .trusted_proxies
            .iter()
            .find(|n| matches!(n, ipnet::IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some()))
        {
            // Peers are compared as plain IPv4: a mapped network would never match.
            return Err(self.invalid(
                "listen.trusted_proxies",
                format!("{mapped} is an IPv4-mapped IPv6 network; write it as IPv4"),
            ));
        }
        self.validate_clients()?;
        if let Some(p) = &self.payment {
            if p.audience.is_empty() {
                return Err(self.invalid("payment.audience", "must not be empty"));
            }
            if p.eservice_claim.as_deref().is_some_and(str::is_empty) {
                return Err(self.invalid(
                    "payment.eservice_claim",
                    "must be a claim name (e.g. \"sub\") or left out",
                ));
            }
            if p.key_file.is_some() == p.jwks_url.is_some() {
                return Err(self.invalid(
                    "payment.key_file",
                    "give exactly one of key_file or jwks_url",
                ));
            }
            for a in &p.algorithms {
                if !matches!(
                    a.as_str(),
                    "ES256"
                        | "ES384"
                        | "RS256"
                        | "RS384"
                        | "RS512"
                        | "PS256"
                        | "PS384"
                        | "PS512"
                        | "EdDSA"
                ) {
                    return Err(self.invalid(
                        "payment.algorithms",
                        format!("unsupported JWS algorithm {a:?}"),
                    ));
                }
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(self.invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.limits.max_concurrent_signatures == 0 {
            return Err(self.invalid("limits.max_concurrent_signatures", "must be at least 1"));
        }
        for (key, c) in [
            ("ui.primary_color", &self.ui.primary_color),
            ("ui.background_color", &self.ui.background_color),
        ] {
            if !(c.len() == 7
                && c.starts_with('#')
                && c[1..].bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(self.invalid(key, "must be a #rrggbb colour"));
            }
        }
        if self.ui.max_sessions == 0 {
            return Err(self.invalid("ui.max_sessions", "must be at least 1"));
        }
        if self.ui.max_sessions_per_ip == 0 {
            return Err(self.invalid("ui.max_sessions_per_ip", "must be at least 1"));
        }
        if self.store.sweep_interval < Duration::from_secs(1) {
            return Err(self.invalid("store.sweep_interval", "must be at least 1s"));
        }
        Ok(())
    }

    fn validate_identity(&self, id: &IdentitySection) -> Result<(), ConfigError> {
        match url::Url::parse(&id.issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(self.invalid("identity.issuer", "must be an http(s) URL")),
        }
        if let Some(r) = &id.redirect_url
            && !matches!(url::Url::parse(r), Ok(u) if matches!(u.scheme(), "http" | "https"))
        {
            return Err(self.invalid("identity.redirect_url", "must be an http(s) URL"));
        }
        if id.client_id.is_empty() {
            return Err(self.invalid("identity.client_id", "must not be empty"));
        }
        match id.client_auth.as_str() {
            "client_secret_basic" => match &id.client_secret {
                Some(s) if s.count() == 1 => {}
                _ => {
                    return Err(self.invalid(
                        "identity.client_secret",
                        "client_secret_basic needs exactly one of file, env or credential",
                    ));
                }
            },
            "private_key_jwt" => {
                if id.client_key.is_none() {
                    return Err(self.invalid(
                        "identity.client_key",
                        "private_key_jwt needs a PEM private key file",
                    ));
                }
            }
            _ => {
                return Err(self.invalid(
                    "identity.client_auth",
                    "must be \"client_secret_basic\" or \"private_key_jwt\"",
                ));
            }
        }
        if !id.scopes.iter().any(|s| s == "openid") {
            return Err(self.invalid("identity.scopes", "must include \"openid\""));
        }
        for alg in &id.allowed_algs {
            if crate::identity::parse_alg(alg).is_none() {
                return Err(self.invalid(
                    "identity.allowed_algs",
                    format!("unknown or unsupported JWS algorithm {alg:?} (ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"),
                ));
            }
        }
        if id.allowed_algs.is_empty() {
            return Err(self.invalid("identity.allowed_algs", "must not be empty"));
        }
        if id
            .acr_values
            .iter()
            .any(|a| a.is_empty() || a.contains(' '))
        {
            return Err(self.invalid(
                "identity.acr_values",
                "each value must be a non-empty string without spaces",
            ));
        }
        if id.max_age.is_some_and(|a| a < Duration::from_secs(1)) {
            // OIDC max_age is in whole seconds: less would ask for a new login every time.
            return Err(self.invalid(
                "identity.max_age",
                "must be at least 1s (leave it out for no limit)",
            ));
        }
        if let Some(c) = &id.claims.default_country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(self.invalid(
                "identity.claims.default_country",
                "must be two upper-case letters (ISO 3166)",
            ));
        }
        Ok(())
    }

    fn validate_clients(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        for (i, e) in self.eservices.iter().enumerate() {
            let key = |k: &str| format!("eservice[{i}].{k}");
            if e.id.is_empty()
                || e.id.len() > 64
                || !e
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(self.invalid(
                    &key("id"),
                    "1-64 characters of letters, digits, '-', '_', '.'",
                ));
            }
            if !ids.insert(e.id.as_str()) {
                return Err(self.invalid(&key("id"), format!("{:?} is used twice", e.id)));
            }
            if e.name.trim().is_empty() {
                return Err(self.invalid(&key("name"), "must not be empty"));
            }
            // The dev defaults fill the demo identity after the certificate exists.
            if !self.dev {
                self.validate_identity_of(&key(""), &e.identity)?;
            }
            for (j, p) in e.callback_prefixes.iter().enumerate() {
                if let Err(m) = crate::registry::CallbackPrefix::parse(p) {
                    return Err(self.invalid(&key(&format!("callback_prefixes[{j}]")), m));
                }
            }
            if e.rate_burst == Some(0) {
                return Err(self.invalid(&key("rate_burst"), "must be at least 1"));
            }
        }
        for (i, a) in self.auditors.iter().enumerate() {
            let key = format!("auditor[{i}].");
            if a.name.trim().is_empty() {
                return Err(self.invalid(&format!("{key}name"), "must not be empty"));
            }
            self.validate_identity_of(&key, &a.identity)?;
        }
        Ok(())
    }

    fn validate_identity_of(&self, prefix: &str, c: &ClientIdentity) -> Result<(), ConfigError> {
        let fp = |k: &str, v: &Option<String>| -> Result<bool, ConfigError> {
            match v {
                None => Ok(false),
                Some(h) => {
                    if crate::registry::parse_fingerprint(h).is_none() {
                        Err(self.invalid(
                            &format!("{prefix}{k}"),
                            "must be 64 hex digits (SHA-256; colons allowed)",
                        ))
                    } else {
                        Ok(true)
                    }
                }
            }
        };
        let n = usize::from(fp("client_cert_sha256", &c.client_cert_sha256)?)
            + usize::from(fp("client_spki_sha256", &c.client_spki_sha256)?)
            + usize::from(c.client_subject.is_some());
        if c.client_subject.is_some() != c.client_issuer.is_some() {
            return Err(self.invalid(
                &format!("{prefix}client_subject"),
                "client_subject and client_issuer go together",
            ));
        }
        if n != 1 {
            return Err(self.invalid(
                &format!("{prefix}client_cert_sha256"),
                "give exactly one of client_cert_sha256, client_spki_sha256 or client_subject + client_issuer",
            ));
        }
        Ok(())
    }

    /// `path` resolved against `data_dir` when relative.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }

    /// The HSM configuration.
    pub fn hsm_config(&self) -> HsmConfig {
        let pin = if let Some(f) = &self.hsm.pin.file {
            PinSource::File(self.data_path(f))
        } else if let Some(e) = &self.hsm.pin.env {
            PinSource::Env(e.clone())
        } else {
            PinSource::Credential(self.hsm.pin.credential.clone().unwrap_or_default())
        };
        let mut cfg = HsmConfig::new(self.hsm.module.clone(), self.hsm.token.clone(), pin);
        if let Some(n) = self.hsm.sessions {
            cfg.pool_size = n;
        }
        cfg.checkout_timeout = self.hsm.checkout_timeout;
        cfg
    }

    /// Reads a secret (`key` names the setting in messages). Files relative to `data_dir`.
    pub fn read_secret(
        &self,
        key: &str,
        spec: &SecretSpec,
    ) -> Result<secrecy::SecretString, ConfigError> {
        let fail = |m: String| self.invalid(key, m);
        let raw = if let Some(f) = &spec.file {
            let path = self.data_path(f);
            std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?
        } else if let Some(v) = &spec.env {
            std::env::var(v).map_err(|_| fail(format!("environment variable {v} is not set")))?
        } else if let Some(c) = &spec.credential {
            let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                fail("CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)".into())
            })?;
            let path = Path::new(&dir).join(c);
            std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?
        } else {
            return Err(fail("give one of file, env or credential".into()));
        };
        let trimmed = raw.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(fail("the secret is empty".into()));
        }
        Ok(secrecy::SecretString::from(trimmed.to_owned()))
    }

    /// Our OIDC redirect URI (`identity.redirect_url`, else `<ca.base_url>/v1/oidc/callback`).
    pub fn oidc_redirect_url(&self) -> String {
        self.identity
            .as_ref()
            .and_then(|i| i.redirect_url.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}/v1/oidc/callback",
                    self.ca.base_url.trim_end_matches('/')
                )
            })
    }

    /// The CA key reference (`ca.key`).
    pub fn ca_key(&self) -> Result<KeyRef, ConfigError> {
        KeyRef::parse("ca.key", &self.ca.key).map_err(|e| self.invalid("ca.key", e.to_string()))
    }

    /// The delegated OCSP responder key (`ca.ocsp_key`), if configured.
    pub fn ocsp_key(&self) -> Result<Option<KeyRef>, ConfigError> {
        self.ca
            .ocsp_key
            .as_deref()
            .map(|k| {
                KeyRef::parse("ca.ocsp_key", k)
                    .map_err(|e| self.invalid("ca.ocsp_key", e.to_string()))
            })
            .transpose()
    }

    /// The TSA key reference (`tsa.key`).
    pub fn tsa_key(&self) -> Result<KeyRef, ConfigError> {
        KeyRef::parse("tsa.key", &self.tsa.key).map_err(|e| self.invalid("tsa.key", e.to_string()))
    }

    /// Directory of published certificates (`ca.pem`, `tsa.pem`, ...).
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// Directory of the RocksDB store.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("esigd.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn minimal_file_parses_with_defaults() {
        let c = parse("[hsm]\npin = { env = \"ESIGD_HSM_PIN\" }\n").unwrap();
        assert_eq!(c.listen.public.port(), 8080);
        assert_eq!(c.ca.one_time_validity, Duration::from_secs(60));
        assert!(
            !c.tsa.allow_unsynchronized_clock,
            "production default refuses an unsynchronised clock"
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = parse("[hsm]\npin = { env = \"X\" }\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("esigd.toml") && e.contains("colour"), "{e}");
        let e = parse("[hsm]\npin = { env = \"X\", file = \"/p\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hsm.pin"), "{e}");
        let e = parse("[hsm]\npin = { env = \"X\" }\n[tsa]\naccuracy = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("accuracy"), "{e}");
        let e =
            parse("[hsm]\npin = { env = \"X\" }\n[ca]\nkey = \"pkcs11:object=a?pin-value=1\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("ca.key") && !e.contains("pin-value=1"), "{e}");
        let e = parse("[hsm]\npin = { env = \"X\" }\n[tsa]\nallowed_ips = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_ips"), "{e}");
        let e = parse("[hsm]\npin = { env = \"X\" }\n[tsa]\npolicy = \"not.an.oid\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tsa.policy"), "{e}");
        for (extra, key) in [
            (
                "[listen]\ntrusted_proxies = [\"0.0.0.0/0\"]\n",
                "listen.trusted_proxies",
            ),
            (
                "[listen]\ntrusted_proxies = [\"::/0\"]\n",
                "listen.trusted_proxies",
            ),
            (
                "[payment]\naudience = \"esigd\"\njwks_url = \"http://x\"\neservice_claim = \"\"\n",
                "payment.eservice_claim",
            ),
        ] {
            let e = parse(&format!("[hsm]\npin = {{ env = \"X\" }}\n{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
        let identity = "[identity]\nissuer = \"https://idp\"\nclient_id = \"esigd\"\nclient_secret = { env = \"S\" }\n";
        for (extra, key) in [
            ("acr_values = [\"a b\"]\n", "identity.acr_values"),
            ("max_age = \"0s\"\n", "identity.max_age"),
            ("max_age = \"500ms\"\n", "identity.max_age"),
        ] {
            let e = parse(&format!(
                "[hsm]\npin = {{ env = \"X\" }}\n{identity}{extra}"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{e}");
        }
        let ok =
            parse("[hsm]\npin = { env = \"X\" }\n[listen]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/esigd.example.toml"
        ));
        let c = Config::load(path).unwrap();
        assert_eq!(c.eservices.len(), 1);
        assert_eq!(c.auditors.len(), 1);
        assert!(c.identity.is_some() && c.payment.is_some());
        assert!(!c.tsa.allow_unsynchronized_clock);
    }

    #[test]
    fn client_sections_are_checked() {
        let base = "[hsm]\npin = { env = \"X\" }\n";
        let e = parse(&format!(
            "{base}[[eservice]]\nid = \"a\"\nname = \"A\"\nallowed_ips = []\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("eservice[0].client_cert_sha256"), "{e}");
        let fp = "ab".repeat(32);
        let e = parse(&format!(
            "{base}[[eservice]]\nid = \"a\"\nname = \"A\"\nclient_cert_sha256 = \"{fp}\"\nallowed_ips = []\ncallback_prefixes = [\"javascript:x\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("callback_prefixes[0]"), "{e}");
        let e = parse(&format!(
            "{base}[[eservice]]\nid = \"a\"\nname = \"A\"\nclient_cert_sha256 = \"{fp}\"\nallowed_ips = []\n[[eservice]]\nid = \"a\"\nname = \"B\"\nclient_cert_sha256 = \"{fp}\"\nallowed_ips = []\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("eservice[1].id") && e.contains("twice"), "{e}");
        let e = parse(&format!(
            "{base}[identity]\nissuer = \"https://id\"\nclient_id = \"x\"\nclient_auth = \"private_key_jwt\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("identity.client_key"), "{e}");
        let e = parse(&format!(
            "{base}[identity]\nissuer = \"https://id\"\nclient_id = \"x\"\nclient_secret = {{ env = \"S\" }}\nallowed_algs = [\"HS256\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("identity.allowed_algs"), "{e}");
        let e = parse(&format!("{base}[ui]\nprimary_color = \"red\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ui.primary_color"), "{e}");
    }

    #[test]
    fn dev_defaults_are_valid() {
        let c = Config::dev_defaults(Path::new("./data"));
        c.validate().unwrap();
        assert!(c.dev && c.tsa.allow_unsynchronized_clock);
    }
}
