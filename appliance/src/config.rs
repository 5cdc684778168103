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

/// Where the HSM PIN comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinSpec {
    /// A file holding the PIN.
    pub file: Option<PathBuf>,
    /// An environment variable holding the PIN.
    pub env: Option<String>,
    /// A systemd credential name (`$CREDENTIALS_DIRECTORY/<name>`).
    pub credential: Option<String>,
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
        let cfg = Config {
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
            dev: true,
            source: PathBuf::from("<embedded defaults>"),
        };
        debug_assert!(cfg.validate().is_ok());
        cfg
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
        let pins = [
            self.hsm.pin.file.is_some(),
            self.hsm.pin.env.is_some(),
            self.hsm.pin.credential.is_some(),
        ];
        if pins.iter().filter(|p| **p).count() != 1 {
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

    /// The CA key reference (`ca.key`).
    pub fn ca_key(&self) -> Result<KeyRef, ConfigError> {
        KeyRef::parse("ca.key", &self.ca.key).map_err(|e| self.invalid("ca.key", e.to_string()))
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
    }

    #[test]
    fn dev_defaults_are_valid() {
        let c = Config::dev_defaults(Path::new("./data"));
        c.validate().unwrap();
        assert!(c.dev && c.tsa.allow_unsynchronized_clock);
    }
}
