//! Who calls the e-Service API: [`Caller`], the registered client of the connection's verified
//! certificate with its source address checked, and the GovStack headers the routes read.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use esigd_service::registry::{Auditor, Client, Eservice, PeerInfo};

use crate::error::ApiError;
use crate::state::WebState;

/// Header carrying the user's ID token from the Identity BB.
pub const AUTH_TOKEN_HEADER: &str = "x-govstack-authenticationtoken";
/// Header carrying a Payment BB token.
pub const PAYMENT_TOKEN_HEADER: &str = "x-govstack-paymenttoken";

/// The registered client making the request, with its source IP checked.
#[derive(Debug, Clone)]
pub struct Caller(pub Client);

impl FromRequestParts<Arc<WebState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<Arc<PeerInfo>>()
            .cloned()
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "client certificate required")
            })?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(peer.addr.ip(), |c| c.0.ip());
        let registry = state.svc.registry.load();
        let Some(client) = registry.identify(&peer) else {
            tracing::warn!(cert_sha256 = %peer.cert_sha256_hex(), "client certificate not registered");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "client certificate is not registered for any e-Service or auditor",
            ));
        };
        let ok = match &client {
            Client::Eservice(e) => e.ip_allowed(ip),
            Client::Auditor(a) => a.ip_allowed(ip),
        };
        if !ok {
            tracing::warn!(%ip, "request from an address outside the client's allowed_ips");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("source address {ip} is not in this client's allowed_ips"),
            ));
        }
        Ok(Caller(client))
    }
}

impl Caller {
    /// The e-Service, or 403 for an auditor.
    pub(crate) fn eservice(&self) -> Result<&Arc<Eservice>, ApiError> {
        match &self.0 {
            Client::Eservice(e) => Ok(e),
            Client::Auditor(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this route is for e-Services; the client certificate belongs to an auditor",
            )),
        }
    }

    /// The auditor, or 403 for an e-Service.
    pub(crate) fn auditor(&self) -> Result<&Arc<Auditor>, ApiError> {
        match &self.0 {
            Client::Auditor(a) => Ok(a),
            Client::Eservice(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only auditor clients may read the audit log",
            )),
        }
    }
}
