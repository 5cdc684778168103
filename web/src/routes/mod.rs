//! HTTP routes of the two listeners and the admin socket.

pub mod account;
pub mod admin;
pub mod audit;
pub mod caller;
pub mod cert;
pub mod eservice;
pub mod interactive;
pub mod metrics;
pub mod public;
pub mod scd_pages;
pub mod scd_sign;

/// Every browser page of the public listener: signing (9.1 and, with the citizen's device,
/// 9.2.2) and the citizen's own pages (onboarding, "My certificates"). They share the session
/// table and the OIDC callback.
pub fn browser(state: std::sync::Arc<crate::state::WebState>) -> axum::Router {
    interactive::router(state.clone())
        .merge(scd_pages::router(state.clone()))
        .merge(account::router(state))
}
