//! `[scd]`: the Remote SCD service the citizens' own signing devices are reached through
//! (workflows 9.2.1 and 9.2.2).

use std::path::PathBuf;
use std::time::Duration;

use esigd_scd::api::{Curve, KeySpec, USER_WINDOW};
use serde::Deserialize;

use crate::config::SettingError;

/// The `SCDType` of the reference protocol (RSCD API v1).
pub const REMOTE_SCD: &str = "REMOTE_SCD";

/// The `SCDType` values of the GovStack contract that are device apps (served by a Remote SCD
/// service of the RSCD API v1 kind), and ours.
pub const DEFAULT_SCD_TYPES: [&str; 7] = [
    REMOTE_SCD,
    "REMOTE_SCD_APP_APPLE",
    "REMOTE_SCD_APP_ANDROID",
    "REMOTE_SCD_APP_SE_APPLE",
    "REMOTE_SCD_APP_SE_ANDROID",
    "REMOTE_SCD_SIM",
    "REMOTE_SCD_ESIM",
];

/// `[scd]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScdSection {
    /// Base URL of the Remote SCD service's relying-party API, e.g. `https://rscd.example:8600`.
    pub url: String,
    /// Our client certificate (chain, PEM) for the mutual TLS connection.
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// CA certificate(s), PEM, the service's certificate must chain to (public roots are not
    /// trusted: the service is pinned to this CA).
    pub server_ca: PathBuf,
    /// Our relying-party UUID at the service.
    pub relying_party_uuid: String,
    /// The name the device shows ("… asks to create a signing key").
    pub relying_party_name: String,
    /// The `SCDType` values this service is for (requests with another type are refused; the
    /// first is the one the onboarding page uses). Default: `REMOTE_SCD` and the contract's six
    /// device types.
    #[serde(default = "default_scd_types")]
    pub scd_types: Vec<String>,
    /// Timeout of calls other than the long poll.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long onboarding waits for the citizen to answer on the device (the service's own
    /// window is 120 s); then the session is cancelled and the answer is a timeout.
    #[serde(default = "default_onboarding_timeout", with = "humantime_serde")]
    pub onboarding_timeout: Duration,
    /// How long a signature waits for the citizen on the device (workflow 9.2.2); then it ends
    /// with a timeout and the session is cancelled.
    #[serde(default = "default_onboarding_timeout", with = "humantime_serde")]
    pub signing_timeout: Duration,
    /// Most signatures waiting for devices at once (each costs a task and a few KiB, no HSM
    /// session, thread or signing slot); more get 503.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Label of the HMAC-SHA-256 key in the HSM that signs pseudonym tokens
    /// (`GET /v1/token/pseodonym/{pseudonym}`; created on first start).
    #[serde(default = "default_token_key")]
    pub token_key: String,
    /// The key the device is asked to create: `P-256` (default), `P-384`, `RSA-2048`,
    /// `RSA-3072` or `RSA-4096`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Label of the AES-256 key in the HSM that seals each `SCDRemoteId` at rest (created on
    /// first start).
    #[serde(default = "default_seal_key")]
    pub seal_key: String,
    /// Label of the HMAC-SHA-256 key in the HSM that makes the blind indexes of owners and
    /// devices (created on first start).
    #[serde(default = "default_index_key")]
    pub index_key: String,
}

fn default_scd_types() -> Vec<String> {
    DEFAULT_SCD_TYPES.iter().map(|t| t.to_string()).collect()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_onboarding_timeout() -> Duration {
    USER_WINDOW + Duration::from_secs(10)
}

fn default_max_pending() -> usize {
    1000
}

fn default_token_key() -> String {
    "pseudonym-token".into()
}

fn default_key() -> String {
    "P-256".into()
}

fn default_seal_key() -> String {
    "scd-seal".into()
}

fn default_index_key() -> String {
    "scd-index".into()
}

impl ScdSection {
    /// The development setup's: the reference Remote SCD service (`esigd-remote-scd`) on
    /// `127.0.0.1:8600` with the files `scripts/dev-rscd-pki.sh` writes under `data_dir/rscd`.
    pub fn dev() -> ScdSection {
        ScdSection {
            url: "https://127.0.0.1:8600".into(),
            client_cert: PathBuf::from("rscd/esigd-rp.pem"),
            client_key: PathBuf::from("rscd/esigd-rp.key"),
            server_ca: PathBuf::from("rscd/rscd-ca.pem"),
            relying_party_uuid: "00000000-0000-4000-8000-00000000e51d".into(),
            relying_party_name: "esigd (development)".into(),
            scd_types: default_scd_types(),
            request_timeout: default_request_timeout(),
            onboarding_timeout: default_onboarding_timeout(),
            signing_timeout: default_onboarding_timeout(),
            max_pending: default_max_pending(),
            token_key: default_token_key(),
            key: default_key(),
            seal_key: default_seal_key(),
            index_key: default_index_key(),
        }
    }

    /// The `key` setting as the protocol's key spec.
    pub fn key_spec(&self) -> Result<KeySpec, SettingError> {
        Ok(match self.key.to_ascii_uppercase().as_str() {
            "P-256" | "EC-P256" => KeySpec::Ec { curve: Curve::P256 },
            "P-384" | "EC-P384" => KeySpec::Ec { curve: Curve::P384 },
            "RSA-2048" => KeySpec::Rsa { size: 2048 },
            "RSA-3072" => KeySpec::Rsa { size: 3072 },
            "RSA-4096" => KeySpec::Rsa { size: 4096 },
            other => {
                return Err(SettingError::new(
                    "scd.key",
                    format!("{other:?} is not one of P-256, P-384, RSA-2048, RSA-3072, RSA-4096"),
                ));
            }
        })
    }

    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.key_spec()?;
        let url =
            url::Url::parse(&self.url).map_err(|e| SettingError::new("scd.url", e.to_string()))?;
        if url.scheme() != "https" {
            return Err(SettingError::new(
                "scd.url",
                "must be https (the connection is mutual TLS)",
            ));
        }
        if self.relying_party_name.trim().is_empty() || self.relying_party_name.chars().count() > 64
        {
            return Err(SettingError::new(
                "scd.relying_party_name",
                "must be 1 to 64 characters",
            ));
        }
        if self.relying_party_uuid.trim().is_empty() {
            return Err(SettingError::new(
                "scd.relying_party_uuid",
                "must not be empty",
            ));
        }
        if self.scd_types.is_empty()
            || self
                .scd_types
                .iter()
                .any(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        {
            return Err(SettingError::new(
                "scd.scd_types",
                "must list at least one type, each in capitals and underscores (REMOTE_SCD)",
            ));
        }
        if self.onboarding_timeout < Duration::from_secs(5)
            || self.onboarding_timeout > Duration::from_secs(600)
        {
            return Err(SettingError::new(
                "scd.onboarding_timeout",
                "must be between 5 s and 10 min",
            ));
        }
        if self.signing_timeout < Duration::from_secs(5)
            || self.signing_timeout > Duration::from_secs(600)
        {
            return Err(SettingError::new(
                "scd.signing_timeout",
                "must be between 5 s and 10 min",
            ));
        }
        if self.max_pending == 0 {
            return Err(SettingError::new("scd.max_pending", "must be at least 1"));
        }
        if self.token_key == self.seal_key || self.token_key == self.index_key {
            return Err(SettingError::new(
                "scd.token_key",
                "must differ from scd.seal_key and scd.index_key (one key per purpose)",
            ));
        }
        if self.seal_key == self.index_key {
            return Err(SettingError::new(
                "scd.index_key",
                "must differ from scd.seal_key (one key per purpose)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Result<ScdSection, toml::de::Error> {
        toml::from_str(&format!(
            "url = \"https://127.0.0.1:8600\"\nclient_cert = \"a.pem\"\nclient_key = \"a.key\"\n\
             server_ca = \"ca.pem\"\nrelying_party_uuid = \"00000000-0000-4000-8000-000000000001\"\n\
             relying_party_name = \"esigd\"\n{extra}"
        ))
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let s = section("").unwrap();
        s.validate().unwrap();
        ScdSection::dev().validate().unwrap();
        assert_eq!(s.key_spec().unwrap(), KeySpec::Ec { curve: Curve::P256 });
        assert_eq!(s.onboarding_timeout, Duration::from_secs(130));
        let e = section("key = \"ed25519\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "scd.key");
        let e = section("onboarding_timeout = \"1h\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "scd.onboarding_timeout");
        assert!(section("unknown = 1").is_err());
    }
}
