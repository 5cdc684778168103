//! The device's HTTP client of the Remote SCD service's device API: TLS pinned to the service's
//! CA (no public roots), every call after registration signed with a fresh `DeviceJWS` token.

use std::path::Path;
use std::time::Duration;

use esigd_scd::api::CertValue;
use esigd_scd::device::{
    AUTH_SCHEME, DeviceRegistered, DeviceRegistration, Transaction, TransactionList,
    TransactionResult,
};
use esigd_scd::problem::Problem;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::agent::AgentError;

/// Signs a device call: `(method, url) → DeviceJWS token` (see [`crate::agent::Agent::call_token`]).
pub type CallSigner<'a> = dyn Fn(&str, &str) -> Result<String, AgentError> + Send + Sync + 'a;

/// Why a call to the service failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or parsed.
    #[error("--service-ca {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer (connection, TLS, timeout).
    #[error("Remote SCD service unreachable: {0}")]
    Transport(String),
    /// An error status, with the service's problem detail when it sent one.
    #[error("Remote SCD service answered {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The problem's detail, or the body.
        detail: String,
    },
    /// The agent could not sign the call.
    #[error("{0}")]
    Agent(#[from] crate::agent::AgentError),
}

/// A client of one service.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the service at `base` (e.g. `https://127.0.0.1:8601`), trusting only the CA
    /// certificate(s) in `ca_pem`.
    pub fn new(base: &str, ca_pem: &Path) -> Result<Client, ClientError> {
        let ca_err = |reason: String| ClientError::Ca {
            path: ca_pem.display().to_string(),
            reason,
        };
        let pem = std::fs::read(ca_pem).map_err(|e| ca_err(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no certificate in the file".into()));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10));
        for c in certs {
            b = b.add_root_certificate(c);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        sign: Option<&CallSigner<'_>>,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
        timeout: Duration,
    ) -> Result<Option<T>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).timeout(timeout);
        if let Some(sign) = sign {
            let htu = url.split('?').next().unwrap_or(&url);
            let token = sign(method.as_str(), htu)?;
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("{AUTH_SCHEME} {token}"),
            );
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Problem>(&bytes)
                .ok()
                .and_then(|p| p.detail)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(ClientError::Status {
                status: status.as_u16(),
                detail,
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Status {
                status: status.as_u16(),
                detail: format!("unreadable answer: {e}"),
            })
    }

    fn missing(what: &str) -> ClientError {
        ClientError::Status {
            status: 204,
            detail: format!("no {what} in the answer"),
        }
    }

    /// `POST /device/v1/devices`.
    pub async fn register(&self, reg: &DeviceRegistration) -> Result<String, ClientError> {
        let r: DeviceRegistered = self
            .call(
                None,
                Method::POST,
                "/device/v1/devices",
                Some(reg),
                Duration::from_secs(30),
            )
            .await?
            .ok_or_else(|| Self::missing("deviceId"))?;
        Ok(r.device_id)
    }

    /// The long poll: pending transactions, or an empty list after `wait`.
    pub async fn pending(
        &self,
        sign: &CallSigner<'_>,
        id: &str,
        wait: Duration,
    ) -> Result<TransactionList, ClientError> {
        let path = format!(
            "/device/v1/devices/{id}/transactions?waitMs={}",
            wait.as_millis()
        );
        let list: Option<TransactionList> = self
            .call(
                Some(sign),
                Method::GET,
                &path,
                None::<&()>,
                wait + Duration::from_secs(10),
            )
            .await?;
        Ok(list.unwrap_or(TransactionList {
            transactions: Vec::new(),
        }))
    }

    /// `GET /device/v1/transactions/{id}`.
    pub async fn transaction(
        &self,
        sign: &CallSigner<'_>,
        id: &str,
    ) -> Result<Transaction, ClientError> {
        self.call(
            Some(sign),
            Method::GET,
            &format!("/device/v1/transactions/{id}"),
            None::<&()>,
            Duration::from_secs(30),
        )
        .await?
        .ok_or_else(|| Self::missing("transaction"))
    }

    /// `POST /device/v1/transactions/{id}/result`; returns the new key's handle after an
    /// onboarding.
    pub async fn result(
        &self,
        sign: &CallSigner<'_>,
        id: &str,
        result: &TransactionResult,
    ) -> Result<Option<String>, ClientError> {
        let answer: Option<serde_json::Value> = self
            .call(
                Some(sign),
                Method::POST,
                &format!("/device/v1/transactions/{id}/result"),
                Some(result),
                Duration::from_secs(30),
            )
            .await?;
        Ok(answer.and_then(|v| v["keyHandle"].as_str().map(str::to_owned)))
    }

    /// `GET /device/v1/keys/{keyHandle}/certificate`: `None` while it is not issued yet.
    pub async fn certificate(
        &self,
        sign: &CallSigner<'_>,
        key_handle: &str,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self
            .call::<CertValue>(
                Some(sign),
                Method::GET,
                &format!("/device/v1/keys/{key_handle}/certificate"),
                None::<&()>,
                Duration::from_secs(30),
            )
            .await
        {
            Ok(Some(c)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(c.value)
                    .map(Some)
                    .map_err(|e| ClientError::Status {
                        status: 200,
                        detail: format!("certificate is not base64: {e}"),
                    })
            }
            Ok(None) => Ok(None),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
