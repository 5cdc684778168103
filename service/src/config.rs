//! The configuration sections the domain owns (`[hsm]`, `[ca]`, `[tsa]`, `[identity]`,
//! `[[eservice]]`, `[[auditor]]`, `[limits]`, `[store]`, `[payment]`).
//!
//! The configuration file model is assembled from these and the web crate's sections by the
//! binary (`esigd::config::Config`), which also validates them across sections. Every key is
//! documented in `config/esigd.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use esigd_hsm::SOFTHSM_MODULE;
use serde::Deserialize;

/// A setting that cannot be used: the key at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    /// The key at fault, e.g. `identity.client_secret`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl SettingError {
    /// An error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        SettingError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `path` resolved against `data_dir` when relative.
pub fn data_path(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        data_dir.join(path)
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

/// `[audit]`: the audit ledger's signed tree heads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The key on the token that signs tree heads (ECDSA P-256; created by `esigd init`, or at the
    /// first start when missing).
    #[serde(default = "default_audit_key")]
    pub key: String,
    /// Label of the HMAC-SHA-256 secret key on the token that makes citizens' pseudonymous references in
    /// audit events (`userRef`; created at the first start when missing). Changing it starts new
    /// references: signatures logged before are no longer listed on the citizens' "My signatures" page.
    #[serde(default = "default_audit_user_key")]
    pub user_key: String,
    /// How often a signed tree head is published when the ledger grew.
    #[serde(default = "default_sth_interval", with = "humantime_serde")]
    pub sth_interval: Duration,
}

fn default_audit_key() -> String {
    "pkcs11:object=audit-key".into()
}
fn default_audit_user_key() -> String {
    "audit-user-key".into()
}
fn default_sth_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            key: default_audit_key(),
            user_key: default_audit_user_key(),
            sth_interval: default_sth_interval(),
        }
    }
}

impl SecretSpec {
    /// How many sources are given (exactly one is valid).
    pub fn count(&self) -> usize {
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
    /// Sent as `max_age`; an ID token's `auth_time` must be no older than this (plus
    /// `clock_skew`): a signature needs a recent login, not an old single sign-on session.
    /// Default 10 minutes ([`DEFAULT_MAX_AGE`]).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// The RFC 7662 token introspection endpoint where access tokens presented on the e-Service
    /// API are checked (esigd authenticating as `client_id`, like at the token endpoint); default
    /// the discovery document's `introspection_endpoint`.
    pub introspection_url: Option<String>,
}

/// Default `identity.max_age`: a login older than this cannot make a signature.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

fn default_max_age() -> Option<Duration> {
    Some(DEFAULT_MAX_AGE)
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
    /// Where signed notification webhooks go (`[notifications]`; none when absent).
    #[serde(default)]
    pub notify_url: Option<String>,
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
    /// `POST /tsa` and `/ocsp` requests per second (sustained) from one client: an IPv4
    /// address or an IPv6 /64; more get 429 with `Retry-After`. 0 = no limit.
    #[serde(default = "default_public_rate")]
    pub public_rate_per_ip: u32,
    /// Burst above the sustained `public_rate_per_ip` (default: twice the rate).
    pub public_rate_burst: Option<u32>,
    /// Networks (CIDR) not limited by `public_rate_per_ip` (e-Services and relying parties
    /// that time-stamp or check in bulk); default loopback only.
    #[serde(default = "default_public_rate_exempt")]
    pub public_rate_exempt: Vec<ipnet::IpNet>,
}

fn default_public_rate() -> u32 {
    20
}
fn default_public_rate_exempt() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

impl LimitsSection {
    /// The burst of `public_rate_per_ip`: `public_rate_burst`, default twice the rate.
    pub fn public_burst(&self) -> u32 {
        self.public_rate_burst
            .unwrap_or(self.public_rate_per_ip.saturating_mul(2))
    }
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
            public_rate_per_ip: default_public_rate(),
            public_rate_burst: None,
            public_rate_exempt: default_public_rate_exempt(),
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
    /// Memory all RocksDB memtables together may use, in MiB (`esigd_store::StoreOptions::memtable_budget`).
    #[serde(default = "default_memtable_budget")]
    pub memtable_budget_mib: usize,
    /// Size of RocksDB's block cache shared by every column family, in MiB
    /// (`esigd_store::StoreOptions::block_cache`).
    #[serde(default = "default_block_cache")]
    pub block_cache_mib: usize,
}

fn default_memtable_budget() -> usize {
    32
}
fn default_block_cache() -> usize {
    16
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
            memtable_budget_mib: default_memtable_budget(),
            block_cache_mib: default_block_cache(),
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
    /// A token must carry this claim with the id of the e-Service it is presented for, so a
    /// payment made for one e-Service cannot be spent at another. Default `sub`.
    #[serde(default = "default_eservice_claim")]
    pub eservice_claim: Option<String>,
}

fn default_payment_algs() -> Vec<String> {
    vec!["ES256".into(), "RS256".into()]
}
fn default_eservice_claim() -> Option<String> {
    Some("sub".into())
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
    /// `POST /tsa` requests waiting for a signing thread; more get 503 with `Retry-After`.
    #[serde(default = "default_tsa_queue_max")]
    pub queue_max: usize,
    /// How long the record of each issued token (serial, genTime, imprint, policy, nonce) is
    /// kept; older records are removed every `store.sweep_interval`. Default 10 years.
    #[serde(default = "default_journal_retention", with = "humantime_serde")]
    pub journal_retention: Duration,
}

fn default_tsa_queue_max() -> usize {
    4096
}

/// Default `tsa.journal_retention`: 10 years (ETSI EN 319 421 leaves the period to the TSA's
/// policy; it must cover the time tokens are relied on, beyond the TSA certificate's validity).
pub const DEFAULT_JOURNAL_RETENTION: Duration = Duration::from_secs(10 * 365 * 86_400);

fn default_journal_retention() -> Duration {
    DEFAULT_JOURNAL_RETENTION
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
            queue_max: default_tsa_queue_max(),
            journal_retention: default_journal_retention(),
        }
    }
}

impl SecretSpec {
    /// Reads the secret (`key` names the setting in messages). Files are relative to `data_dir`;
    /// one trailing line break is removed; an empty secret is an error.
    pub fn read(&self, data_dir: &Path, key: &str) -> Result<secrecy::SecretString, SettingError> {
        let fail = |m: String| SettingError::new(key, m);
        let raw = if let Some(f) = &self.file {
            let path = data_path(data_dir, f);
            std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?
        } else if let Some(v) = &self.env {
            std::env::var(v).map_err(|_| fail(format!("environment variable {v} is not set")))?
        } else if let Some(c) = &self.credential {
            // `$CREDENTIALS_DIRECTORY/<name>`: a name with `/` (or `..`) would read outside it.
            credential_name(c).map_err(|m| SettingError::new(format!("{key}.credential"), m))?;
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
}

/// Checks a systemd credential name: one plain file name inside `$CREDENTIALS_DIRECTORY` (not
/// empty, no `/`, not `.` or `..`, no NUL); the message says what is wrong.
pub fn credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!(
            "{name:?} is not a credential name (a plain file name in $CREDENTIALS_DIRECTORY: no `/`, not `.` or `..`)"
        ));
    }
    Ok(())
}

impl IdentitySection {
    /// Our OIDC redirect URI: `redirect_url`, else `<base_url>/v1/oidc/callback` (`base_url` is
    /// `ca.base_url`, the appliance's public address).
    pub fn redirect_url_or(&self, base_url: &str) -> String {
        self.redirect_url
            .clone()
            .unwrap_or_else(|| format!("{}/v1/oidc/callback", base_url.trim_end_matches('/')))
    }
}

impl HsmSection {
    /// The defaults (SoftHSM module, token `esig`) with the PIN from `pin`.
    pub fn with_pin(pin: PinSpec) -> Self {
        HsmSection {
            module: default_module(),
            token: default_token(),
            pin,
            sessions: None,
            checkout_timeout: default_checkout(),
            onetime_keys_ready: default_onetime_ready(),
        }
    }
}

impl IdentitySection {
    /// The defaults for provider `issuer` and our `client_id` there (`client_secret_basic`
    /// without a secret yet).
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        IdentitySection {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_auth: default_client_auth(),
            client_secret: None,
            client_key: None,
            scopes: default_scopes(),
            ca_file: None,
            allowed_algs: default_algs(),
            clock_skew: default_skew(),
            claims: ClaimMapping::default(),
            redirect_url: None,
            acr_values: Vec::new(),
            max_age: default_max_age(),
            introspection_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A systemd credential is `$CREDENTIALS_DIRECTORY/<name>`: a name that leaves the directory
    /// is refused before anything is read, naming the setting.
    #[test]
    fn credential_names_with_a_slash_or_dot_dot_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../hsm/user-pin", "/etc/shadow", "a/b", "..", ".", ""] {
            let spec = SecretSpec {
                file: None,
                env: None,
                credential: Some(name.into()),
            };
            let e = spec
                .read(dir.path(), "identity.client_secret")
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.key, "identity.client_secret.credential", "{name:?}: {e}");
            assert!(e.message.contains("not a credential name"), "{name:?}: {e}");
        }
        assert!(credential_name("oidc-client-secret").is_ok());
        assert!(credential_name("hsm.pin").is_ok());
    }
}
