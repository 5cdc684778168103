//! The signing pages' state: templates, the operator's branding, browser sessions (one per
//! signing visit, bound to a cookie) and the OIDC client credentials. The handlers are in
//! [`crate::routes::interactive`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
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
/// The wait page of a signature by the citizen's device: its one script (`/v1/ui/wait.js`) asks
/// this origin whether the device has answered.
pub(crate) const CSP_WAIT: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
/// The citizen's own pages post forms to this origin (onboarding, "My certificates").
pub(crate) const CSP_FORMS: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// One visit: a signature for an e-Service, or the citizen's own pages (onboarding, "My
/// certificates"). Keyed by its link token (`t` on our links), bound to the browser by the
/// `esigd_session` cookie, so one browser may have several tabs open at once.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) created: Instant,
    /// The browser's `esigd_session` cookie value.
    pub(crate) browser: String,
    /// Where the visit came from: an IPv4 address or the /64 of an IPv6 address (live sessions
    /// per address, and per IPv6 /48, are capped).
    pub(crate) ip: IpAddr,
    /// The link token of our pages (the session's key).
    pub(crate) csrf: String,
    /// Set while the browser is at the Identity BB.
    pub(crate) oidc: Option<Pending>,
    /// The browser was sent to the Identity BB (an established session: never evicted to make
    /// room; see [`Pages::insert`]).
    pub(crate) at_idp: bool,
    /// Insertion number, set by [`Pages::insert`] (orders sessions created in the same instant).
    pub(crate) seq: u64,
    /// What the visit is for.
    pub(crate) visit: Visit,
}

/// What a [`Session`] is for.
#[derive(Debug, Clone)]
pub(crate) enum Visit {
    /// Workflow 9.1 for an e-Service.
    Sign(Box<SignVisit>),
    /// The citizen's own pages.
    Account(Box<AccountVisit>),
}

/// A signing visit (workflow 9.1).
#[derive(Debug, Clone)]
pub(crate) struct SignVisit {
    /// A verified payment, used up right before signing.
    pub(crate) payment: Option<Payment>,
    pub(crate) eservice: String,
    pub(crate) eservice_name: String,
    pub(crate) input: SignInput,
    pub(crate) callback: url::Url,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    /// The signature asked of the citizen's device (workflow 9.2.2), once asked.
    pub(crate) scd: Option<ScdStep>,
    /// The transaction's signatureId, drawn when the session starts: the one-time signature gets it, and
    /// every audit event of the visit is indexed under it (hex).
    pub(crate) transaction: [u8; 32],
}

/// A signature asked of the citizen's device from the signing pages.
#[derive(Debug, Clone)]
pub(crate) struct ScdStep {
    /// Its signatureId.
    pub(crate) signature_id: [u8; 32],
    /// The verification code shown.
    pub(crate) code: String,
}

/// Which of the citizen's pages a visit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountPage {
    /// `/v1/onboard`: a signing device gets a key and a certificate (9.2.1).
    Onboard,
    /// `/v1/certs`: the citizen's certificates.
    Certs,
    /// `/v1/signatures`: the signatures made in the citizen's name, from the audit ledger.
    Signatures,
}

/// A visit to the citizen's own pages.
#[derive(Debug, Clone)]
pub(crate) struct AccountVisit {
    pub(crate) page: AccountPage,
    /// Who logged in (after the OIDC callback).
    pub(crate) citizen: Option<esigd_service::onboarding::Citizen>,
    /// Their e-mail / phone from the login's claims (notifications of status changes).
    pub(crate) contact: Option<esigd_service::notify::Contact>,
    /// Where onboarding stands.
    pub(crate) onboarding: OnboardStep,
}

/// Onboarding in a browser visit.
#[derive(Debug, Clone)]
pub(crate) enum OnboardStep {
    /// Nothing asked of a device yet.
    Idle,
    /// The device was asked; the page shows the code.
    Started(Box<esigd_service::onboarding::Started>),
    /// Waiting for the device (a request is long-polling); the code shown.
    Waiting(String),
    /// Ended: the pseudonym and certificate ID, or the message to show.
    Done(Result<(String, String), String>),
}

impl Session {
    /// The signing visit, if this is one.
    pub(crate) fn sign(&self) -> Option<&SignVisit> {
        match &self.visit {
            Visit::Sign(v) => Some(v),
            Visit::Account(_) => None,
        }
    }

    /// The account visit, if this is one.
    pub(crate) fn account(&self) -> Option<&AccountVisit> {
        match &self.visit {
            Visit::Account(v) => Some(v),
            Visit::Sign(_) => None,
        }
    }
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
    pub(crate) max_per_48: usize,
    pub(crate) secure_cookie: bool,
    pub(crate) redirect_url: String,
    pub(crate) ui_name: String,
    /// Pseudonym submissions per source address ([`SCD_SUBMITS_PER_MINUTE`]): each one can make
    /// a citizen's phone ring.
    pub(crate) scd_submits: crate::ratelimit::PublicRateLimit,
}

/// Pseudonym submissions a source address (an IPv4 address or an IPv6 /64) may make per minute
/// (bursts of 3).
pub const SCD_SUBMITS_PER_MINUTE: u32 = 6;

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
            ("scd_wait.html", include_str!("../templates/scd_wait.html")),
            ("result.html", include_str!("../templates/result.html")),
            (
                "account_start.html",
                include_str!("../templates/account_start.html"),
            ),
            (
                "account_error.html",
                include_str!("../templates/account_error.html"),
            ),
            (
                "onboard_device.html",
                include_str!("../templates/onboard_device.html"),
            ),
            (
                "onboard_wait.html",
                include_str!("../templates/onboard_wait.html"),
            ),
            (
                "onboard_done.html",
                include_str!("../templates/onboard_done.html"),
            ),
            ("certs.html", include_str!("../templates/certs.html")),
            (
                "signatures.html",
                include_str!("../templates/signatures.html"),
            ),
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
            max_per_48: ui.max_sessions_per_48,
            // The scheme of the public address of the pages (the OIDC redirect URL), not of the
            // CRL/OCSP links in certificates, which are usually plain http.
            secure_cookie: redirect_url.starts_with("https://"),
            redirect_url,
            ui_name: ui.name.clone(),
            scd_submits: crate::ratelimit::PublicRateLimit::with_quota(
                governor::Quota::per_minute(
                    std::num::NonZeroU32::new(SCD_SUBMITS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN)),
                &[],
                crate::ratelimit::TABLE_MAX,
            ),
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

    /// Stores a new session under its link token; returns how many unused sessions were evicted
    /// to make room, or the setting whose limit was hit.
    ///
    /// The budgets of one network (`ui.max_sessions_per_ip`: an IPv4 address or an IPv6 /64;
    /// `ui.max_sessions_per_48`: an IPv6 /48) refuse its next session: filling them hurts only
    /// that network. When the whole table (`ui.max_sessions`) is full, the oldest session that has
    /// not been sent to the Identity BB yet is evicted (opening one costs a plain GET); sessions
    /// at the Identity BB are never evicted, so a citizen who is logging in always comes back to
    /// a live session. Only a table full of sessions at the Identity BB refuses new ones.
    pub(crate) fn insert(&self, mut s: Session) -> Result<usize, &'static str> {
        let mut all = self.lock();
        all.purge(self.ttl);
        if all.per_64.get(&s.ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err("ui.max_sessions_per_ip");
        }
        if let Some(net) = prefix48(s.ip)
            && all.per_48.get(&net).copied().unwrap_or(0) >= self.max_per_48
        {
            return Err("ui.max_sessions_per_48");
        }
        let mut evicted = 0;
        while all.by_token.len() >= self.max {
            if !all.evict_oldest_unused() {
                return Err("ui.max_sessions");
            }
            evicted += 1;
        }
        s.seq = all.next_seq;
        all.next_seq += 1;
        all.add(s);
        Ok(evicted)
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
        let established = pending.is_some();
        if let Some(s) = all.by_token.get_mut(t) {
            s.oidc = pending;
        }
        if established {
            all.establish(t);
        }
    }

    pub(crate) fn remove(&self, t: &str) {
        self.lock().remove(t);
    }

    /// Changes the live session `t` of `browser` in place; false if there is none.
    pub(crate) fn update(&self, t: &str, browser: &str, f: impl FnOnce(&mut Session)) -> bool {
        let mut all = self.lock();
        match all.by_token.get_mut(t) {
            Some(s)
                if s.created.elapsed() < self.ttl
                    && constant_time_eq(s.browser.as_bytes(), browser.as_bytes()) =>
            {
                f(s);
                true
            }
            _ => false,
        }
    }

    /// Signing sessions open now (expired ones are dropped first): `esigd_signing_sessions`.
    pub fn open_sessions(&self) -> usize {
        let mut all = self.lock();
        all.purge(self.ttl);
        all.by_token.len()
    }
}

/// The /48 of an IPv6 session address (`None` for IPv4).
fn prefix48(ip: IpAddr) -> Option<[u8; 6]> {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Some([o[0], o[1], o[2], o[3], o[4], o[5]])
        }
        IpAddr::V4(_) => None,
    }
}

/// Live sessions by link token, the OIDC `state` index, the age order (expiry, eviction) and the
/// live count of each network. Every operation is O(log n): no scan of the table per request.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_token: HashMap<String, Session>,
    by_state: HashMap<String, String>,
    /// Every session, oldest first: `(created, seq)` → link token.
    by_age: BTreeMap<(Instant, u64), String>,
    /// Sessions not sent to the Identity BB yet, oldest first: evicted first when full.
    unused: BTreeMap<(Instant, u64), String>,
    /// Live sessions per IPv4 address or IPv6 /64.
    per_64: HashMap<IpAddr, usize>,
    /// Live sessions per IPv6 /48.
    per_48: HashMap<[u8; 6], usize>,
    next_seq: u64,
}

impl Sessions {
    fn add(&mut self, s: Session) {
        let age = (s.created, s.seq);
        self.by_age.insert(age, s.csrf.clone());
        if !s.at_idp {
            self.unused.insert(age, s.csrf.clone());
        }
        *self.per_64.entry(s.ip).or_default() += 1;
        if let Some(net) = prefix48(s.ip) {
            *self.per_48.entry(net).or_default() += 1;
        }
        if let Some(old) = self.by_token.insert(s.csrf.clone(), s) {
            // Link tokens are random; a clash would replace a session: keep the counts right.
            self.forget(&old);
        }
    }

    fn remove(&mut self, t: &str) {
        if let Some(s) = self.by_token.remove(t) {
            self.forget(&s);
        }
    }

    /// Drops the indexes and counts of a session taken out of `by_token`.
    fn forget(&mut self, s: &Session) {
        let age = (s.created, s.seq);
        self.by_age.remove(&age);
        self.unused.remove(&age);
        if let Some(p) = &s.oidc {
            self.by_state.remove(&p.state);
        }
        if let Some(n) = self.per_64.get_mut(&s.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_64.remove(&s.ip);
            }
        }
        if let Some(net) = prefix48(s.ip)
            && let Some(n) = self.per_48.get_mut(&net)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_48.remove(&net);
            }
        }
    }

    /// The session went to the Identity BB: no longer evictable.
    fn establish(&mut self, t: &str) {
        if let Some(s) = self.by_token.get_mut(t)
            && !s.at_idp
        {
            s.at_idp = true;
            let age = (s.created, s.seq);
            self.unused.remove(&age);
        }
    }

    /// Evicts the oldest session that has not been sent to the Identity BB; false if none.
    fn evict_oldest_unused(&mut self) -> bool {
        let Some((age, t)) = self.unused.first_key_value().map(|(a, t)| (*a, t.clone())) else {
            return false;
        };
        if self.by_token.contains_key(&t) {
            self.remove(&t);
        } else {
            self.unused.remove(&age);
        }
        tracing::debug!("signing session table full: the oldest unused session was evicted");
        true
    }

    /// Removes the expired sessions (oldest first, stopping at the first live one).
    fn purge(&mut self, ttl: Duration) {
        while let Some((age, t)) = self
            .by_age
            .first_key_value()
            .filter(|((created, _), _)| created.elapsed() >= ttl)
            .map(|(a, t)| (*a, t.clone()))
        {
            if self.by_token.contains_key(&t) {
                self.remove(&t);
            } else {
                self.by_age.remove(&age);
            }
        }
    }
}

/// A random URL-safe token of `n` bytes (cookies, link tokens).
pub(crate) fn random_token(n: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A 303 to `to`, not cached.
pub(crate) fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
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
    /// Sets the browser's session cookie on `resp`. Set on every visit, also to a browser that
    /// has the cookie: its lifetime then runs from the newest visit, so a tab opened earlier
    /// cannot make a later login find it expired.
    pub(crate) fn with_cookie(&self, mut resp: Response, browser: &str) -> Response {
        let cookie = format!(
            "{}={browser}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.cookie_name(),
            self.ttl.as_secs(),
            if self.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

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
            visit: shop_visit(),
            csrf: "link-1".into(),
            oidc: None,
            at_idp: false,
            seq: 0,
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

    fn shop_visit() -> Visit {
        Visit::Sign(Box::new(SignVisit {
            payment: None,
            eservice: "shop".into(),
            eservice_name: "Shop".into(),
            input: SignInput {
                spec: esigd_service::signing::SignSpec::single(
                    esigd_formats::Format::Cades,
                    esigd_service::signing::HashType::Sha256,
                    vec![1; 32],
                ),
                display: None,
            },
            callback: url::Url::parse("https://shop.example/cb").unwrap(),
            state: None,
            nonce: None,
            transaction: [0; 32],
            scd: None,
        }))
    }

    /// A session of `browser` with link token `t` from `ip` (already the /64 bucket), created
    /// `age` ago.
    fn session_from(t: &str, browser: &str, ip: &str, age: Duration) -> Session {
        Session {
            created: Instant::now().checked_sub(age).unwrap(),
            browser: browser.into(),
            ip: ip.parse().unwrap(),
            visit: shop_visit(),
            csrf: t.into(),
            oidc: None,
            at_idp: false,
            seq: 0,
        }
    }

    fn pages_with(max: usize, per_ip: usize, per_48: usize) -> (tempfile::TempDir, Pages) {
        let dir = tempfile::tempdir().unwrap();
        let ui = UiSection {
            max_sessions: max,
            max_sessions_per_ip: per_ip,
            max_sessions_per_48: per_48,
            ..UiSection::default()
        };
        let pages = Pages::new(&ui, dir.path(), None, "http://127.0.0.1:8080/cb".into()).unwrap();
        (dir, pages)
    }

    fn to_idp(pages: &Pages, t: &str, state: &str) {
        pages.set_pending(
            t,
            Some(Pending {
                state: state.into(),
                nonce: "n".into(),
                pkce_verifier: "v".into(),
            }),
        );
    }

    /// Issue #11: plain GETs from one /48 (many /64s, or one /56) cannot fill the table; a
    /// full table evicts the oldest session that has not gone to the Identity BB, so other
    /// networks still get a page and a citizen at the Identity BB still finds their session.
    #[test]
    fn a_flood_cannot_take_the_table_and_sessions_at_the_identity_bb_survive() {
        let (_dir, pages) = pages_with(20, 5, 10);
        let now = Duration::ZERO;
        // A citizen who went to the Identity BB, and one still reading the choice page.
        pages
            .insert(session_from("citizen", "b-c", "192.0.2.1", now))
            .unwrap();
        to_idp(&pages, "citizen", "st-c");
        pages
            .insert(session_from("reader", "b-r", "192.0.2.2", now))
            .unwrap();

        // Many /64s of one /48: the /48 budget stops them at 10 (50 /64s × 5 would be 250).
        let mut admitted = 0;
        for n in 0..50 {
            match pages.insert(session_from(
                &format!("a{n}"),
                "b-a",
                &format!("2001:db8:aaaa:{n:x}::"),
                now,
            )) {
                Ok(_) => admitted += 1,
                Err(limit) => assert_eq!(limit, "ui.max_sessions_per_48"),
            }
        }
        assert_eq!(admitted, 10);
        // One /56 (its 256 /64s are in one /48): the same budget.
        let mut admitted = 0;
        for n in 0..50 {
            if pages
                .insert(session_from(
                    &format!("b{n}"),
                    "b-b",
                    &format!("2001:db8:bbbb:{n:x}::"),
                    now,
                ))
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
        // One /64: its own budget of 5.
        let one_64: Vec<_> = (0..8)
            .map(|n| {
                pages.insert(session_from(
                    &format!("c{n}"),
                    "b",
                    "2001:db8:cccc:1::",
                    now,
                ))
            })
            .collect();
        assert_eq!(one_64.iter().filter(|r| r.is_ok()).count(), 5);
        assert_eq!(one_64[7], Err("ui.max_sessions_per_ip"));

        // The table (20) is full: many /48s keep coming, each evicting the oldest unused one.
        for n in 0..100 {
            pages
                .insert(session_from(
                    &format!("d{n}"),
                    "b-d",
                    &format!("2001:db8:{:x}:1::", 0x1000 + n),
                    now,
                ))
                .unwrap();
        }
        assert_eq!(pages.open_sessions(), 20);
        // Another network still gets a session ...
        pages
            .insert(session_from("new", "b-n", "198.51.100.1", now))
            .unwrap();
        assert!(pages.get("new", "b-n").is_some());
        // ... the unused one that was there first is gone, the one at the Identity BB is not.
        assert!(pages.get("reader", "b-r").is_none());
        let (s, _) = pages.take_oidc_state("st-c", "b-c").unwrap();
        assert_eq!(s.csrf, "citizen");
        // Evicted sessions gave their network budget back: /48 aaaa may open sessions again.
        assert!(
            pages
                .insert(session_from("a-again", "b-a", "2001:db8:aaaa:77::", now))
                .is_ok()
        );
    }

    /// Only a table full of sessions at the Identity BB refuses; expired sessions count nowhere.
    #[test]
    fn only_sessions_at_the_identity_bb_fill_the_table_and_expired_ones_do_not_count() {
        let (_dir, pages) = pages_with(3, 2, 10);
        for n in 0..3 {
            let t = format!("t{n}");
            pages
                .insert(session_from(
                    &t,
                    "b",
                    &format!("192.0.2.{n}"),
                    Duration::ZERO,
                ))
                .unwrap();
            to_idp(&pages, &t, &format!("st{n}"));
        }
        assert_eq!(
            pages.insert(session_from("x", "b", "198.51.100.1", Duration::ZERO)),
            Err("ui.max_sessions")
        );
        for n in 0..3 {
            assert!(pages.get(&format!("t{n}"), "b").is_some());
        }

        // Sessions older than ui.session_ttl (600 s) are dropped before any budget is counted.
        let (_dir, pages) = pages_with(3, 2, 2);
        let old = Duration::from_secs(601);
        for n in 0..2 {
            pages
                .insert(session_from(&format!("o{n}"), "b", "2001:db8:1:1::", old))
                .unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        pages
            .insert(session_from("live", "b", "2001:db8:1:1::", Duration::ZERO))
            .unwrap();
        assert_eq!(pages.open_sessions(), 1);
        let state = pages.lock();
        assert_eq!(state.by_age.len(), 1);
        assert_eq!(state.unused.len(), 1);
        assert_eq!(state.per_64.len(), 1);
        assert_eq!(state.per_48.values().sum::<usize>(), 1);
    }
}
