//! What the handlers of every surface share: the domain service, the signing pages and the
//! metrics registry.

use std::sync::Arc;

use esigd_service::Service;

use crate::metrics::Metrics;
use crate::pages::Pages;

/// The state behind every router.
pub struct WebState {
    /// The domain.
    pub svc: Arc<Service>,
    /// The signing pages (templates, browser sessions, OIDC client credentials).
    pub pages: Pages,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}
