//! [`RscdConnector`]: RSCD API v1 over HTTPS with mutual TLS. The appliance presents its client
//! certificate; the service must present a certificate from the configured CA (public roots are
//! not trusted, so the service is pinned to that CA).

use std::time::Duration;

use esigd_scd::api::{
    BASE_PATH, CertificateDelivery, KeyStatusChange, OnboardingRequest, SessionCreated,
    SessionStatus, SignatureRequest,
};
use esigd_scd::connector::{BoxFuture, ConnectorError, RemoteScdConnector};
use esigd_scd::problem::Problem;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Extra time the HTTP client allows over a long poll's `timeoutMs` before giving up.
const POLL_SLACK: Duration = Duration::from_secs(2);

/// What the connector needs (from `[scd]` in the configuration).
#[derive(Clone)]
pub struct RscdSettings {
    /// Base URL of the service, e.g. `https://rscd.example:8600` (`scd.url`).
    pub base_url: String,
    /// The appliance's client certificate chain and private key, PEM (`scd.client_cert`,
    /// `scd.client_key`).
    pub client_identity_pem: Vec<u8>,
    /// CA certificate(s) the service's certificate must chain to, PEM (`scd.server_ca`).
    pub server_ca_pem: Vec<u8>,
    /// Timeout of calls other than the long poll (`scd.request_timeout`).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for RscdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RscdSettings")
            .field("base_url", &self.base_url)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The RSCD API v1 connector.
#[derive(Debug, Clone)]
pub struct RscdConnector {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

fn transport(e: reqwest::Error) -> ConnectorError {
    // reqwest's Display omits the cause (e.g. the TLS error); keep the chain.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ConnectorError::Transport(msg)
}

impl RscdConnector {
    /// Builds the client; errors name the setting at fault.
    pub fn new(s: &RscdSettings) -> Result<RscdConnector, ConnectorError> {
        let url = url::Url::parse(&s.base_url)
            .map_err(|e| ConnectorError::Protocol(format!("scd.url: {e}")))?;
        if url.scheme() != "https" {
            return Err(ConnectorError::Protocol(
                "scd.url: must be an https:// URL".into(),
            ));
        }
        let identity = reqwest::Identity::from_pem(&s.client_identity_pem).map_err(|e| {
            ConnectorError::Protocol(format!("scd.client_cert / scd.client_key: {e}"))
        })?;
        let roots = reqwest::Certificate::from_pem_bundle(&s.server_ca_pem)
            .map_err(|e| ConnectorError::Protocol(format!("scd.server_ca: {e}")))?;
        if roots.is_empty() {
            return Err(ConnectorError::Protocol(
                "scd.server_ca: no certificate in the file".into(),
            ));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .identity(identity)
            .connect_timeout(Duration::from_secs(10));
        for r in roots {
            b = b.add_root_certificate(r);
        }
        let http = b.build().map_err(transport)?;
        Ok(RscdConnector {
            http,
            base: format!("{}{BASE_PATH}", s.base_url.trim_end_matches('/')),
            timeout: s.request_timeout,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
        timeout: Duration,
    ) -> Result<Option<T>, ConnectorError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ConnectorError::Status {
                status: status.as_u16(),
                problem: serde_json::from_slice::<Problem>(&bytes).ok().map(Box::new),
                retry_after,
            });
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ConnectorError::Protocol(format!("unreadable answer to {path}: {e}")))
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
        timeout: Duration,
    ) -> Result<T, ConnectorError> {
        self.call(method, path, body, timeout)
            .await?
            .ok_or_else(|| ConnectorError::Protocol(format!("empty answer to {path}")))
    }
}

/// A path segment, percent-encoded (IDs come from people and other services).
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl RemoteScdConnector for RscdConnector {
    fn start_onboarding<'a>(
        &'a self,
        scd_type: &'a str,
        scd_remote_id: &'a str,
        req: &'a OnboardingRequest,
    ) -> BoxFuture<'a, Result<SessionCreated, ConnectorError>> {
        Box::pin(async move {
            let path = format!(
                "/onboarding/device/{}/{}",
                seg(scd_type),
                seg(scd_remote_id)
            );
            self.expect(reqwest::Method::POST, &path, Some(req), self.timeout)
                .await
        })
    }

    fn start_signature<'a>(
        &'a self,
        key_handle: &'a str,
        req: &'a SignatureRequest,
    ) -> BoxFuture<'a, Result<SessionCreated, ConnectorError>> {
        Box::pin(async move {
            let path = format!("/signature/key/{}", seg(key_handle));
            self.expect(reqwest::Method::POST, &path, Some(req), self.timeout)
                .await
        })
    }

    fn poll_session<'a>(
        &'a self,
        session_id: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<SessionStatus, ConnectorError>> {
        Box::pin(async move {
            let ms = wait.as_millis().clamp(1000, 120_000);
            let path = format!("/session/{}?timeoutMs={ms}", seg(session_id));
            self.expect(
                reqwest::Method::GET,
                &path,
                None::<&()>,
                Duration::from_millis(ms as u64) + POLL_SLACK,
            )
            .await
        })
    }

    fn cancel<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let path = format!("/session/{}/cancel", seg(session_id));
            self.call::<serde_json::Value>(reqwest::Method::POST, &path, None::<&()>, self.timeout)
                .await
                .map(|_| ())
        })
    }

    fn deliver_certificate<'a>(
        &'a self,
        key_handle: &'a str,
        delivery: &'a CertificateDelivery,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let path = format!("/keys/{}/certificate", seg(key_handle));
            self.call::<serde_json::Value>(
                reqwest::Method::POST,
                &path,
                Some(delivery),
                self.timeout,
            )
            .await
            .map(|_| ())
        })
    }

    fn set_key_status<'a>(
        &'a self,
        key_handle: &'a str,
        change: &'a KeyStatusChange,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let path = format!("/keys/{}/status", seg(key_handle));
            self.call::<serde_json::Value>(reqwest::Method::POST, &path, Some(change), self.timeout)
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_named() {
        let s = RscdSettings {
            base_url: "http://rscd.test".into(),
            client_identity_pem: vec![],
            server_ca_pem: vec![],
            request_timeout: Duration::from_secs(5),
        };
        let err = RscdConnector::new(&s).unwrap_err().to_string();
        assert!(err.contains("scd.url") && err.contains("https"), "{err}");
        let s = RscdSettings {
            base_url: "https://rscd.test".into(),
            ..s
        };
        let err = RscdConnector::new(&s).unwrap_err().to_string();
        assert!(err.contains("scd.client_cert"), "{err}");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("k7m2-9xqa-h3dz"), "k7m2-9xqa-h3dz");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
