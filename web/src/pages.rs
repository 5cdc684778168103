//! The signing pages' state: templates, the operator's branding, browser sessions (one per
//! signing visit, bound to a cookie) and the OIDC client credentials. The handlers are in
//! [`crate::routes::interactive`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use esigd_service::config::{IdentitySection, SettingError, data_path};
use esigd_service::identity::oidc::{ClientAuth, Pending};
use esigd_service::payment::Payment;
use minijinja::{Environment, context};

use crate::config::UiSection;
use crate::sign_input::SignInput;

/// Name of the session cookie when the signing pages are served over plain http (development).
pub const SESSION_COOKIE: &str = "esigd_session";
/// Name of the session cookie behind https: the `__Host-` prefix makes browsers refuse it unless
/// it is `Secure`, has `Path=/` and no `Domain`, so neither a sibling (sub)domain nor a plain-http
/// response can plant one (session fixation).
pub const SECURE_SESSION_COOKIE: &str = "__Host-esigd_session";

pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// One signing visit. Keyed by its link token (`t` on our links), bound to the browser by the
/// `esigd_session` cookie, so one browser may have several signing tabs open at once.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) created: Instant,
    /// The browser's `esigd_session` cookie value.
    pub(crate) browser: String,
    /// Where the visit came from (live sessions per address are capped).
    pub(crate) ip: IpAddr,
    /// A verified payment, used up right before signing.
    pub(crate) payment: Option<Payment>,
    pub(crate) eservice: String,
    pub(crate) eservice_name: String,
    pub(crate) input: SignInput,
    pub(crate) callback: url::Url,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    /// The link token of our pages (the session's key).
    pub(crate) csrf: String,
    /// Set while the browser is at the Identity BB.
    pub(crate) oidc: Option<Pending>,
}

/// Templates, sessions and the OIDC client credentials of the pages.
pub struct Pages {
    pub(crate) env: Environment<'static>,
    pub(crate) sessions: Mutex<Sessions>,
    pub(crate) auth: Option<ClientAuth>,
    pub(crate) logo: Option<(Vec<u8>, &'static str)>,
    pub(crate) theme_css: String,
    pub(crate) ttl: Duration,
    pub(crate) max: usize,
    pub(crate) max_per_ip: usize,
    pub(crate) secure_cookie: bool,
    pub(crate) redirect_url: String,
    pub(crate) ui_name: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish()
    }
}

impl Pages {
    /// Loads the templates, the logo (`ui.logo`, relative to `data_dir`) and the OIDC client
    /// credentials (`identity`); `redirect_url` is the pages' public OIDC callback address,
    /// whose scheme decides whether the session cookie is `Secure`.
    pub fn new(
        ui: &UiSection,
        data_dir: &std::path::Path,
        identity: Option<&IdentitySection>,
        redirect_url: String,
    ) -> Result<Pages, SettingError> {
        let mut env = Environment::new();
        for (name, src) in [
            ("base.html", include_str!("../templates/base.html")),
            ("choice.html", include_str!("../templates/choice.html")),
            ("error.html", include_str!("../templates/error.html")),
            ("payment.html", include_str!("../templates/payment.html")),
            ("scd.html", include_str!("../templates/scd.html")),
            ("result.html", include_str!("../templates/result.html")),
        ] {
            env.add_template(name, src)
                .map_err(|e| SettingError::new("templates (built in)", e.to_string()))?;
        }
        let logo = match &ui.logo {
            Some(p) => {
                let path = data_path(data_dir, p);
                let bytes = std::fs::read(&path).map_err(|e| {
                    SettingError::new("ui.logo", format!("{}: {e}", path.display()))
                })?;
                let kind = if bytes.starts_with(b"\x89PNG") {
                    "image/png"
                } else if bytes.windows(4).take(512).any(|w| w == b"<svg") {
                    "image/svg+xml"
                } else {
                    return Err(SettingError::new(
                        "ui.logo",
                        format!("{}: not a PNG or SVG file", path.display()),
                    ));
                };
                Some((bytes, kind))
            }
            None => None,
        };
        let auth = match identity {
            Some(id) => Some(ClientAuth::from_section(id, data_dir)?),
            None => None,
        };
        Ok(Pages {
            env,
            sessions: Mutex::new(Sessions::default()),
            auth,
            logo,
            theme_css: format!(
                ":root {{ --primary: {}; --bg: {}; }}\n",
                ui.primary_color, ui.background_color
            ),
            ttl: ui.session_ttl,
            max: ui.max_sessions,
            max_per_ip: ui.max_sessions_per_ip,
            // The scheme of the public address of the pages (the OIDC redirect URL), not of the
            // CRL/OCSP links in certificates, which are usually plain http.
            secure_cookie: redirect_url.starts_with("https://"),
            redirect_url,
            ui_name: ui.name.clone(),
        })
    }

    pub(crate) fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        let base = context! { ui_name => self.ui_name.clone(), has_logo => self.logo.is_some() };
        match self
            .env
            .get_template(name)
            .and_then(|t| t.render(context! { ..base, ..ctx }))
        {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page not rendered");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>Internal error.</p>".into(),
                )
            }
        }
    }

    pub(crate) fn error_page(&self, status: StatusCode, message: &str, rid: &str) -> Response {
        self.render(
            status,
            "error.html",
            context! { message => message, request_id => rid },
        )
    }

    /// A 503 page for a passing condition (busy, a dependency down), with `Retry-After: 30`.
    pub(crate) fn try_later_page(&self, message: &str, rid: &str) -> Response {
        let mut r = self.error_page(StatusCode::SERVICE_UNAVAILABLE, message, rid);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        r
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new session under its link token; the error says which limit was hit.
    pub(crate) fn insert(&self, s: Session) -> Result<(), &'static str> {
        let mut all = self.lock();
        let ttl = self.ttl;
        if all.by_token.len() >= self.max {
            all.purge(ttl);
            if all.by_token.len() >= self.max {
                return Err("ui.max_sessions");
            }
        }
        let from_ip = all
            .by_token
            .values()
            .filter(|x| x.ip == s.ip && x.created.elapsed() < ttl)
            .count();
        if from_ip >= self.max_per_ip {
            return Err("ui.max_sessions_per_ip");
        }
        all.by_token.insert(s.csrf.clone(), s);
        Ok(())
    }

    /// The live session with link token `t`, if it belongs to `browser`.
    pub(crate) fn get(&self, t: &str, browser: &str) -> Option<Session> {
        let mut all = self.lock();
        match all.by_token.get(t) {
            Some(s) if s.created.elapsed() >= self.ttl => {
                all.remove(t);
                None
            }
            Some(s) if constant_time_eq(s.browser.as_bytes(), browser.as_bytes()) => {
                Some(s.clone())
            }
            _ => None,
        }
    }

    /// The session waiting for OIDC `state` in `browser`, and what it was waiting with; the state
    /// is used up in the same step (one lock), so two callbacks with one state cannot both pass.
    pub(crate) fn take_oidc_state(&self, state: &str, browser: &str) -> Option<(Session, Pending)> {
        let mut all = self.lock();
        let t = all.by_state.get(state).cloned()?;
        let s = all.by_token.get_mut(&t)?;
        if s.created.elapsed() >= self.ttl
            || !constant_time_eq(s.browser.as_bytes(), browser.as_bytes())
        {
            return None;
        }
        let pending = s.oidc.take()?;
        let session = s.clone();
        all.by_state.remove(state);
        Some((session, pending))
    }

    pub(crate) fn set_pending(&self, t: &str, pending: Option<Pending>) {
        let mut all = self.lock();
        if let Some(old) = all
            .by_token
            .get(t)
            .and_then(|s| s.oidc.as_ref())
            .map(|p| p.state.clone())
        {
            all.by_state.remove(&old);
        }
        if let Some(p) = &pending {
            all.by_state.insert(p.state.clone(), t.to_owned());
        }
        if let Some(s) = all.by_token.get_mut(t) {
            s.oidc = pending;
        }
    }

    pub(crate) fn remove(&self, t: &str) {
        self.lock().remove(t);
    }

    /// Signing sessions open now (expired ones are dropped first): `esigd_signing_sessions`.
    pub fn open_sessions(&self) -> usize {
        let mut all = self.lock();
        all.purge(self.ttl);
        all.by_token.len()
    }
}

/// Live sessions by link token, and the OIDC `state` index.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_token: HashMap<String, Session>,
    by_state: HashMap<String, String>,
}

impl Sessions {
    fn remove(&mut self, t: &str) {
        if let Some(s) = self.by_token.remove(t)
            && let Some(p) = s.oidc
        {
            self.by_state.remove(&p.state);
        }
    }

    fn purge(&mut self, ttl: Duration) {
        let old: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, s)| s.created.elapsed() >= ttl)
            .map(|(t, _)| t.clone())
            .collect();
        for t in old {
            self.remove(&t);
        }
    }
}

pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn session_id(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Pages {
    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.secure_cookie {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The browser's session cookie, if it looks like one we set.
    pub(crate) fn browser_id(&self, headers: &HeaderMap) -> Option<String> {
        session_id(headers, self.cookie_name()).filter(|v| {
            (32..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

/// Compares the browser cookie values without an early exit (the `subtle` crate).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn behind_https_the_cookie_is_host_prefixed_and_only_that_one_counts() {
        let dir = tempfile::tempdir().unwrap();
        let id = "A".repeat(43);
        let pages_at = |redirect: &str| {
            Pages::new(&UiSection::default(), dir.path(), None, redirect.into()).unwrap()
        };
        let pages = pages_at("https://sign.example.gov/v1/oidc/callback");
        assert!(pages.secure_cookie);
        assert_eq!(pages.cookie_name(), "__Host-esigd_session");
        // A plain-named cookie (which a sibling domain or an http response could plant) is ignored.
        assert_eq!(
            pages.browser_id(&cookies(&format!("esigd_session={id}"))),
            None
        );
        let both = format!(
            "esigd_session={}; __Host-esigd_session={id}",
            "B".repeat(43)
        );
        assert_eq!(pages.browser_id(&cookies(&both)), Some(id.clone()));

        // Plain http (development): no Secure, so no __Host- prefix is possible.
        let pages = pages_at("http://127.0.0.1:8080/v1/oidc/callback");
        assert!(!pages.secure_cookie);
        assert_eq!(
            pages.browser_id(&cookies(&format!("esigd_session={id}"))),
            Some(id)
        );
        // Which address is the pages' public one (the OIDC redirect URL, not the CRL/OCSP base
        // URL) is the configuration's business: esigd::config tests it.
    }

    #[test]
    fn an_oidc_state_is_taken_once_and_only_by_its_browser() {
        let dir = tempfile::tempdir().unwrap();
        let pages = Pages::new(
            &UiSection::default(),
            dir.path(),
            None,
            "http://127.0.0.1:8080/v1/oidc/callback".into(),
        )
        .unwrap();
        let session = Session {
            created: Instant::now(),
            browser: "browser-a".into(),
            ip: "192.0.2.1".parse().unwrap(),
            payment: None,
            eservice: "shop".into(),
            eservice_name: "Shop".into(),
            input: SignInput {
                hash_type: esigd_service::signing::HashType::Sha256,
                digest: vec![1; 32],
                display: None,
            },
            callback: url::Url::parse("https://shop.example/cb").unwrap(),
            state: None,
            nonce: None,
            csrf: "link-1".into(),
            oidc: None,
        };
        pages.insert(session).unwrap();
        let pending = Pending {
            state: "st-1".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
        };
        pages.set_pending("link-1", Some(pending));
        // Another browser cannot take it (nor use it up).
        assert!(pages.take_oidc_state("st-1", "browser-b").is_none());
        let (s, p) = pages.take_oidc_state("st-1", "browser-a").unwrap();
        assert_eq!((s.csrf.as_str(), p.state.as_str()), ("link-1", "st-1"));
        assert!(s.oidc.is_none());
        // Used up: a second callback with the same state finds nothing.
        assert!(pages.take_oidc_state("st-1", "browser-a").is_none());
        assert!(pages.lock().by_state.is_empty());
    }
}
