//! `[notifications]`: where notifications go and how often delivery is retried. Without the
//! section nothing is notified and no outbox row is written.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{SecretSpec, SettingError};

/// `[notifications]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSection {
    /// Label of the ES256 key (EC P-256) in the HSM that signs webhook bodies; created on first
    /// start when missing. Its public key is published at `GET /v1/notifications/jwks`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Longest time one delivery attempt may take (connect, send, answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before the second attempt; it doubles after every failure ...
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// ... up to this.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A notification not delivered this long after it was made is dropped (and counted as a
    /// failure).
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// How often the outbox is looked at when nothing wakes the worker.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most deliveries attempted at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// E-mail to citizens whose Identity BB claims carry `email`.
    #[serde(default)]
    pub email: Option<EmailSection>,
    /// Text messages to citizens whose claims carry `phone_number`, through an HTTP gateway.
    #[serde(default)]
    pub sms: Option<SmsSection>,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS, required (the default).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS at all: for a local relay or a test server only.
    None,
}

/// `[notifications.email]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// SMTP server host name (also the name its certificate must carry).
    pub host: String,
    /// SMTP port (default 587).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    /// The sender, e.g. `esigd <noreply@esig.example.gov>`.
    pub from: String,
    /// SMTP AUTH user name (with `password`).
    pub username: Option<String>,
    /// SMTP AUTH password: one of file, env or credential.
    pub password: Option<SecretSpec>,
    /// Extra CA certificates (PEM) trusted for the SMTP server (besides the Web PKI roots).
    pub ca_file: Option<PathBuf>,
}

/// `[notifications.sms]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
    /// The gateway's URL: one POST per message.
    pub url: String,
    /// The request body; `{phone}` and `{text}` are replaced (JSON-escaped when
    /// `content_type` is JSON, percent-encoded when it is `application/x-www-form-urlencoded`).
    #[serde(default = "default_sms_template")]
    pub template: String,
    /// `Content-Type` of the request.
    #[serde(default = "default_sms_content_type")]
    pub content_type: String,
    /// A bearer token sent as `Authorization: Bearer …`: one of file, env or credential.
    pub token: Option<SecretSpec>,
}

fn default_key() -> String {
    "esigd-notify".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_give_up() -> Duration {
    Duration::from_secs(3 * 86_400)
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}
fn default_concurrency() -> usize {
    8
}
fn default_smtp_port() -> u16 {
    587
}
fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn default_sms_template() -> String {
    r#"{"to":"{phone}","text":"{text}"}"#.into()
}
fn default_sms_content_type() -> String {
    "application/json".into()
}

impl NotificationsSection {
    /// Checks what the types alone do not; the error names the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |k: &str, m: &str| Err(SettingError::new(format!("notifications.{k}"), m));
        if self.key.trim().is_empty() {
            return bad("key", "must be an HSM key label");
        }
        for (k, d) in [
            ("timeout", self.timeout),
            ("retry_initial", self.retry_initial),
            ("poll_interval", self.poll_interval),
        ] {
            if d < Duration::from_millis(10) {
                return bad(k, "must be at least 10ms");
            }
        }
        if self.retry_max < self.retry_initial {
            return bad("retry_max", "must be at least retry_initial");
        }
        if self.give_up_after < self.retry_initial {
            return bad("give_up_after", "must be at least retry_initial");
        }
        const CAP: Duration = Duration::from_secs(365 * 86_400);
        for (k, d) in [
            ("timeout", self.timeout),
            ("retry_max", self.retry_max),
            ("give_up_after", self.give_up_after),
            ("poll_interval", self.poll_interval),
        ] {
            if d > CAP {
                return bad(k, "must be at most one year");
            }
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return bad("concurrency", "must be between 1 and 256");
        }
        if let Some(e) = &self.email {
            if e.host.trim().is_empty() {
                return bad("email.host", "must not be empty");
            }
            if e.from.parse::<lettre::message::Mailbox>().is_err() {
                return bad(
                    "email.from",
                    "must be an address like `esigd <noreply@example.gov>`",
                );
            }
            if e.username.is_some() != e.password.is_some() {
                return bad("email.username", "username and password go together");
            }
            if let Some(p) = &e.password {
                if p.count() != 1 {
                    return bad(
                        "email.password",
                        "give exactly one of file, env or credential",
                    );
                }
                if let Some(c) = &p.credential {
                    crate::config::credential_name(c).map_err(|m| {
                        SettingError::new("notifications.email.password.credential", m)
                    })?;
                }
            }
        }
        if let Some(s) = &self.sms {
            match url::Url::parse(&s.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return bad("sms.url", "must be an http(s) URL"),
            }
            if !s.template.contains("{phone}") || !s.template.contains("{text}") {
                return bad("sms.template", "must contain {phone} and {text}");
            }
            if s.content_type
                .parse::<reqwest::header::HeaderValue>()
                .is_err()
            {
                return bad("sms.content_type", "is not a header value");
            }
            if let Some(t) = &s.token {
                if t.count() != 1 {
                    return bad("sms.token", "give exactly one of file, env or credential");
                }
                if let Some(c) = &t.credential {
                    crate::config::credential_name(c)
                        .map_err(|m| SettingError::new("notifications.sms.token.credential", m))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NotificationsSection {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_and_checks_name_the_key() {
        let n = parse("");
        assert_eq!(n.key, "esigd-notify");
        assert!(n.validate().is_ok());
        let e = parse("retry_initial = \"10m\"\nretry_max = \"1m\"")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "notifications.retry_max");
        let e = parse("[email]\nhost = \"smtp.test\"\nfrom = \"not an address\"")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "notifications.email.from");
        let e = parse("[sms]\nurl = \"http://sms.test/send\"\ntemplate = \"{text}\"")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "notifications.sms.template");
        let ok = parse(
            "[email]\nhost = \"smtp.test\"\nport = 2525\nsecurity = \"none\"\nfrom = \"esigd <no@x.test>\"\n[sms]\nurl = \"http://sms.test/send\"",
        );
        assert!(ok.validate().is_ok());
        assert_eq!(ok.email.unwrap().security, SmtpSecurity::None);
    }
}
