//! The configuration file (TOML) and the embedded defaults.
//!
//! Every key is documented in `config/esigd.example.toml`. Unknown keys and bad values are
//! errors that name the key and the file. Without a file, `esigd serve` runs on the embedded
//! development defaults: data under `./data`, a SoftHSM token created there on first start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use esigd_hsm::{HsmConfig, KeyRef, PinSource};
pub use esigd_service::config::{
    AuditorEntry, CaSection, ClaimMapping, ClientIdentity, EserviceEntry, HsmSection,
    IdentitySection, LimitsSection, PaymentSection, PinSpec, SecretSpec, StoreSection, TsaSection,
};
pub use esigd_web::config::{Listen, MetricsSection, TlsFiles, UiSection};
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
    /// The audit ledger (tree head key and interval).
    #[serde(default)]
    pub audit: esigd_service::config::AuditSection,
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
    /// The Remote SCD service of the citizens' own signing devices (workflows 9.2); without it
    /// onboarding and the certificate API answer that no SCD is served.
    #[serde(default)]
    pub scd: Option<esigd_service::scd::ScdSection>,
    /// Notifications to e-Services (signed webhooks to their `notify_url`) and citizens (e-mail,
    /// SMS); off without the section.
    #[serde(default)]
    pub notifications: Option<esigd_service::notify::NotificationsSection>,
    /// True for the embedded development defaults (not settable in a file).
    #[serde(skip)]
    pub dev: bool,
    /// The file this came from (for messages).
    #[serde(skip)]
    pub source: PathBuf,
}

/// Longest duration any setting takes (the current time plus it must not overflow).
const MAX_DURATION: Duration = Duration::from_secs(1000 * 365 * 86_400);

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/esigd")
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
            hsm: HsmSection::with_pin(PinSpec {
                file: Some(PathBuf::from("hsm/user-pin")),
                env: None,
                credential: None,
            }),
            ca: CaSection::default(),
            tsa: TsaSection {
                allow_unsynchronized_clock: true,
                ..TsaSection::default()
            },
            audit: Default::default(),
            log: LogSection::default(),
            identity: Some(IdentitySection {
                // Written by `devsetup` with the dev Identity BB's client secret.
                client_secret: Some(SecretSpec {
                    file: Some(PathBuf::from("idp/client-secret")),
                    env: None,
                    credential: None,
                }),
                claims: ClaimMapping {
                    default_country: Some("EE".into()),
                    ..ClaimMapping::default()
                },
                ..IdentitySection::new("http://127.0.0.1:9000", "esigd")
            }),
            // The demo e-Service's certificate fingerprint is filled in by `devsetup` once its
            // certificate exists.
            eservices: vec![EserviceEntry {
                id: "demo".into(),
                name: "Demo e-Service".into(),
                identity: ClientIdentity::default(),
                allowed_ips: esigd_web::config::loopback(),
                callback_prefixes: vec![
                    "http://127.0.0.1:8090/".into(),
                    "http://localhost:8090/".into(),
                ],
                payment_required: false,
                id_token_audiences: vec!["demo-eservice".into(), "esigd".into()],
                rate_limit: 0,
                rate_burst: None,
                notify_url: None,
            }],
            auditors: Vec::new(),
            limits: LimitsSection::default(),
            store: StoreSection::default(),
            metrics: MetricsSection::default(),
            payment: None,
            // Used when scripts/run-dev.sh has made the Remote SCD service's dev PKI.
            scd: Some(esigd_service::scd::ScdSection::dev()),
            notifications: None,
            ui: UiSection {
                name: "esigd (development)".into(),
                ..UiSection::default()
            },
            dev: true,
            source: PathBuf::from("<embedded defaults>"),
        }
    }

    /// An error about `key` of this configuration.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
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
        if let Some(c) = &self.hsm.pin.credential {
            esigd_service::config::credential_name(c)
                .map_err(|m| self.invalid("hsm.pin.credential", m))?;
        }
        if self.hsm.sessions == Some(0) {
            return Err(self.invalid("hsm.sessions", "must be at least 1"));
        }
        if self.hsm.onetime_keys_ready == 0 {
            return Err(self.invalid("hsm.onetime_keys_ready", "must be at least 1"));
        }
        self.ca_key()?;
        self.tsa_key()?;
        self.audit_key()?;
        if self.audit.user_key.trim().is_empty() {
            return Err(self.invalid(
                "audit.user_key",
                "must name the HMAC key of citizens' audit references",
            ));
        }
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
        if let Some(scd) = &self.scd {
            scd.validate()
                .map_err(|e| self.invalid(&e.key, e.message))?;
        }
        if let Some(n) = &self.notifications {
            n.validate().map_err(|e| self.invalid(&e.key, e.message))?;
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
        // The listener limits, named as the listeners name them in their own errors.
        self.listen
            .public_limits()
            .validate()
            .and_then(|()| self.listen.eservice_limits().validate_eservice())
            .map_err(|e| match e {
                esigd_web::net::NetError::Limit { setting, reason } => {
                    self.invalid(setting, reason)
                }
                other => self.invalid("listen", other.to_string()),
            })?;
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
        if !(4..=4096).contains(&self.store.memtable_budget_mib) {
            return Err(self.invalid("store.memtable_budget_mib", "must be 4 to 4096"));
        }
        if !(1..=65536).contains(&self.store.block_cache_mib) {
            return Err(self.invalid("store.block_cache_mib", "must be 1 to 65536"));
        }
        self.validate_cost_limits()?;
        self.validate_audit()?;
        self.validate_duration_ceiling()?;
        Ok(())
    }

    /// Durations are added to the current time (expiries, deadlines, certificate validity): one
    /// so large that the sum overflows would panic where it is used, so it is refused here.
    fn validate_duration_ceiling(&self) -> Result<(), ConfigError> {
        let mut all = vec![
            ("hsm.checkout_timeout", self.hsm.checkout_timeout),
            ("ca.root_validity", self.ca.root_validity),
            ("ca.scd_validity", self.ca.scd_validity),
            (
                "ca.ocsp_certificate_validity",
                self.ca.ocsp_certificate_validity,
            ),
            ("tsa.accuracy", self.tsa.accuracy),
            ("tsa.certificate_validity", self.tsa.certificate_validity),
            ("tsa.journal_retention", self.tsa.journal_retention),
            ("limits.queue_timeout", self.limits.queue_timeout),
            ("limits.request_max_age", self.limits.request_max_age),
            (
                "store.retention_after_fetch",
                self.store.retention_after_fetch,
            ),
            ("store.retention_unfetched", self.store.retention_unfetched),
            ("store.sweep_interval", self.store.sweep_interval),
            ("audit.sth_interval", self.audit.sth_interval),
        ];
        if let Some(id) = &self.identity {
            all.push(("identity.clock_skew", id.clock_skew));
            all.extend(id.max_age.map(|a| ("identity.max_age", a)));
        }
        if let Some(scd) = &self.scd {
            all.push(("scd.request_timeout", scd.request_timeout));
            all.push(("scd.onboarding_timeout", scd.onboarding_timeout));
            all.push(("scd.signing_timeout", scd.signing_timeout));
        }
        match all.into_iter().find(|(_, d)| *d > MAX_DURATION) {
            Some((key, _)) => Err(self.invalid(key, "must be at most 1000 years")),
            None => Ok(()),
        }
    }

    /// `audit.sth_interval` between 1 s and 1 day: tree heads are what monitors compare.
    fn validate_audit(&self) -> Result<(), ConfigError> {
        let i = self.audit.sth_interval;
        if i < Duration::from_secs(1) || i > Duration::from_secs(86_400) {
            return Err(self.invalid("audit.sth_interval", "must be between 1s and 1day"));
        }
        Ok(())
    }

    /// The budgets that keep what one client can make esigd spend bounded (issue #11).
    fn validate_cost_limits(&self) -> Result<(), ConfigError> {
        if self.ui.max_sessions_per_48 == 0 {
            return Err(self.invalid("ui.max_sessions_per_48", "must be at least 1"));
        }
        if self.limits.public_rate_per_ip > 0 && self.limits.public_rate_burst == Some(0) {
            return Err(self.invalid(
                "limits.public_rate_burst",
                "must be at least 1 (or leave public_rate_per_ip = 0 to turn the limit off)",
            ));
        }
        if self.tsa.queue_max == 0 {
            return Err(self.invalid("tsa.queue_max", "must be at least 1"));
        }
        if self.tsa.journal_retention < Duration::from_secs(86_400) {
            return Err(self.invalid(
                "tsa.journal_retention",
                "must be at least 1 day (the records of issued tokens are audit evidence)",
            ));
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
                Some(s) if s.count() == 1 => {
                    if let Some(c) = &s.credential {
                        esigd_service::config::credential_name(c)
                            .map_err(|m| self.invalid("identity.client_secret.credential", m))?;
                    }
                }
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
            if esigd_service::identity::parse_alg(alg).is_none() {
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
            return Err(self.invalid("identity.max_age", "must be at least 1s (default 10m)"));
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
                if let Err(m) = esigd_service::registry::CallbackPrefix::parse(p) {
                    return Err(self.invalid(&key(&format!("callback_prefixes[{j}]")), m));
                }
            }
            if e.rate_burst == Some(0) {
                return Err(self.invalid(&key("rate_burst"), "must be at least 1"));
            }
            if let Some(u) = &e.notify_url
                && !matches!(url::Url::parse(u), Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some())
            {
                return Err(self.invalid(&key("notify_url"), "must be an http(s) URL"));
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
                    if esigd_service::registry::parse_fingerprint(h).is_none() {
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
        for (k, v) in [
            ("client_subject", &c.client_subject),
            ("client_issuer", &c.client_issuer),
        ] {
            if let Some(dn) = v {
                esigd_service::registry::parse_dn(dn)
                    .map_err(|m| self.invalid(&format!("{prefix}{k}"), m))?;
            }
        }
        Ok(())
    }

    /// `path` resolved against `data_dir` when relative.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        esigd_service::config::data_path(&self.data_dir, path)
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
        spec.read(&self.data_dir, key)
            .map_err(|e| self.invalid(&e.key, e.message))
    }

    /// Our OIDC redirect URI (`identity.redirect_url`, else `<ca.base_url>/v1/oidc/callback`).
    pub fn oidc_redirect_url(&self) -> String {
        match &self.identity {
            Some(i) => i.redirect_url_or(&self.ca.base_url),
            None => format!(
                "{}/v1/oidc/callback",
                self.ca.base_url.trim_end_matches('/')
            ),
        }
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

    /// The audit key reference (`audit.key`).
    pub fn audit_key(&self) -> Result<KeyRef, ConfigError> {
        KeyRef::parse("audit.key", &self.audit.key)
            .map_err(|e| self.invalid("audit.key", e.to_string()))
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
        // /metrics answers loopback only unless the operator lists networks.
        assert_eq!(c.metrics.allowed_ips, esigd_web::config::loopback());
        assert_eq!(c.listen.public.port(), 8080);
        assert_eq!(c.ca.one_time_validity, Duration::from_secs(60));
        assert!(
            !c.tsa.allow_unsynchronized_clock,
            "production default refuses an unsynchronised clock"
        );
    }

    #[test]
    fn durations_whose_sum_with_now_overflows_are_refused() {
        // Found by fuzz/fuzz_targets/config.rs: accepted, then `now + d` panicked where used.
        let pin = "[hsm]\npin = { env = \"X\" }\n";
        for (key, text) in [
            (
                "store.retention_after_fetch",
                format!("{pin}[store]\nretention_after_fetch = \"300000000000years\"\n"),
            ),
            (
                "hsm.checkout_timeout",
                format!("{pin}checkout_timeout = \"300000000000years\"\n"),
            ),
            (
                "limits.request_max_age",
                format!("{pin}[limits]\nrequest_max_age = \"300000000000years\"\n"),
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("at most 1000 years"), "{e}");
        }
        let ok = parse(&format!("{pin}[tsa]\njournal_retention = \"100years\"\n"));
        assert!(ok.is_ok(), "{ok:?}");
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
                "[listen]\nmax_connections_per_ip = 0\n",
                "listen.max_connections_per_ip",
            ),
            (
                "[listen]\neservice_max_connections_per_ip = 0\n",
                "listen.eservice_max_connections_per_ip",
            ),
            (
                "[listen]\nbody_read_timeout = \"0s\"\n",
                "listen.body_read_timeout",
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
        // systemd credential names that would leave $CREDENTIALS_DIRECTORY.
        let e = parse("[hsm]\npin = { credential = \"../pin\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hsm.pin.credential"), "{e}");
        let e = parse(&format!(
            "[hsm]\npin = {{ env = \"X\" }}\n{}",
            identity.replace("{ env = \"S\" }", "{ credential = \"a/b\" }")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("identity.client_secret.credential"), "{e}");
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
        assert!(c.identity.is_some() && c.payment.is_some() && c.scd.is_some());
        assert!(!c.tsa.allow_unsynchronized_clock);
        // The shipped file lets only this host read /metrics.
        assert!(
            c.metrics.allowed_ips.iter().all(|n| n.addr().is_loopback()),
            "{:?}",
            c.metrics.allowed_ips
        );
    }

    #[test]
    fn store_memory_settings_are_read_and_checked() {
        let base = "[hsm]\npin = { env = \"X\" }\n[store]\n";
        let c = parse(&format!(
            "{base}memtable_budget_mib = 8\nblock_cache_mib = 4\n"
        ))
        .unwrap();
        assert_eq!(
            (c.store.memtable_budget_mib, c.store.block_cache_mib),
            (8, 4)
        );
        let c = parse(base).unwrap();
        assert_eq!(
            (c.store.memtable_budget_mib, c.store.block_cache_mib),
            (32, 16)
        );
        for (line, key) in [
            ("memtable_budget_mib = 2", "store.memtable_budget_mib"),
            ("block_cache_mib = 0", "store.block_cache_mib"),
        ] {
            let e = parse(&format!("{base}{line}\n")).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
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

    /// The pages' public address is the OIDC redirect URL (its scheme decides the `Secure`
    /// session cookie, `esigd_web::pages`), not the CRL/OCSP base URL in certificates, which is
    /// usually plain http.
    #[test]
    fn the_oidc_redirect_url_is_the_pages_address() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let base = format!(
            "[hsm]\npin = {{ file = {secret:?} }}\n[ca]\nbase_url = \"http://pki.example.gov\"\n\
             [identity]\nissuer = \"https://idp.example.gov\"\nclient_id = \"esigd\"\n\
             client_secret = {{ file = {secret:?} }}\n"
        );
        let c = parse(&format!(
            "{base}redirect_url = \"https://sign.example.gov/v1/oidc/callback\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.oidc_redirect_url(),
            "https://sign.example.gov/v1/oidc/callback"
        );
        let c = parse(&base).unwrap();
        assert_eq!(
            c.oidc_redirect_url(),
            "http://pki.example.gov/v1/oidc/callback"
        );
    }

    /// Issue #11: the budgets that bound what one client costs are checked, the setting named.
    #[test]
    fn cost_limits_are_validated_with_the_setting_named() {
        let c = parse("[hsm]\npin = { env = \"X\" }\n").unwrap();
        assert_eq!(c.ui.max_sessions_per_48, 200);
        assert_eq!(c.limits.public_rate_per_ip, 20);
        assert_eq!(c.limits.public_burst(), 40);
        assert_eq!(c.tsa.queue_max, 4096);
        for (extra, key) in [
            ("[ui]\nmax_sessions_per_48 = 0\n", "ui.max_sessions_per_48"),
            (
                "[limits]\npublic_rate_burst = 0\n",
                "limits.public_rate_burst",
            ),
            ("[tsa]\nqueue_max = 0\n", "tsa.queue_max"),
            (
                "[tsa]\njournal_retention = \"1h\"\n",
                "tsa.journal_retention",
            ),
            (
                "[limits]\npublic_rate_exempt = [\"10.0.0.0/33\"]\n",
                "public_rate_exempt",
            ),
        ] {
            let e = parse(&format!("[hsm]\npin = {{ env = \"X\" }}\n{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let off = parse("[hsm]\npin = { env = \"X\" }\n[limits]\npublic_rate_per_ip = 0\n");
        assert!(off.is_ok(), "{off:?}");
    }
}
