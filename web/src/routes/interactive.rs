//! Workflow 9.1 in the user's browser (public listener):
//!
//! 1. the e-Service redirects the browser to `GET /v1/sign/interactive?serviceId&hash&hashType&
//!    format&dataToBeDisplayed&callbackUrl&state&nonce&requestTimestamp[&paymentToken]`;
//! 2. we validate everything *before* showing anything: known e-Service, `callbackUrl` under one
//!    of its registered prefixes (an invalid callback gets an error page, never a redirect), hash
//!    length, display text, payment token; then a short-lived session cookie and the choice page
//!    (National ID one-time signature, or the user's SCD);
//! 3. National ID: redirect to the Identity BB (authorization code + PKCE, `state`, `nonce`);
//! 4. `GET /v1/oidc/callback`: the `state` must be the one this browser's session is waiting
//!    for (single use), the code is exchanged, the ID token and userinfo read;
//! 5. the signing pipeline ([`crate::workflows::onetime`]);
//! 6. a result page that sends the browser to `callbackUrl?signatureId=…&state=…&nonce=…`.
//!
//! On cancellation or failure after step 2 the browser goes back to
//! `callbackUrl?error=<code>&error_description=…&state=…&nonce=…` with code `access_denied` (the
//! user cancelled, here or at the Identity BB), `login_failed` (the Identity BB or its answer
//! failed) or `signing_failed` (no signature could be made); never with a `signatureId`.
//!
//! Pages are server-rendered with auto-escaping templates, no inline script, and a strict CSP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::context;

use esigd_service::identity::IdentityError;
use esigd_service::identity::oidc as oidc_flow;
use esigd_service::payment::{self, PaymentError};
use esigd_service::registry::Eservice;
use esigd_service::signing::onetime::{self, OneTimeRequest};
use esigd_store::signatures::{AuditEvent, SignatureType};

use crate::observe::RequestId;
use crate::pages::{Session, SignVisit, Visit, random_token, redirect};
use crate::sign_input::{redirect_documents, validate_sign_input};
use crate::state::WebState;
/// Longest `state` / `nonce` echoed back to the e-Service.
pub const MAX_ECHO: usize = 512;
/// Longest `callbackUrl` accepted (it is kept in the session until the browser comes back).
pub const MAX_CALLBACK_URL: usize = 2048;
/// Query parameters esigd adds to the callback: a `callbackUrl` that has them already is refused,
/// so the e-Service never sees two values (or a `signatureId` on a failure).
const RESERVED_CALLBACK_PARAMS: [&str; 5] = [
    "signatureId",
    "error",
    "error_description",
    "state",
    "nonce",
];
const STYLE_CSS: &str = include_str!("../../templates/style.css");

/// The display text of the redirect. The GovStack API has it base64url-encoded (UTF-8) in the
/// query string, and that is the only form taken: guessing whether a value is encoded would turn
/// some plain words into other text, and the user approves what is shown. Padding is optional;
/// what [`crate::sign_input::check_display_chars`] refuses is refused here too. The same
/// decoding as the API's: [`crate::sign_input::decode_display_text`].
fn display_text(v: &str) -> Result<String, &'static str> {
    crate::sign_input::decode_display_text(v)
}

// What `ui.max_sessions_per_ip` (and `limits.public_rate_per_ip`) counts: an IPv4 address or an IPv6 /64;
// the one helper the listener's `listen.max_connections_per_ip` uses too.
pub(crate) use crate::net::address_bucket;

/// The public routes of the signing pages (9.1; the SCD path is [`super::scd_pages`], the
/// citizen's own pages [`super::account`]: all of them are [`super::browser`]).
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/v1/sign/interactive", get(interactive))
        .route("/v1/sign/interactivePseudonym", get(interactive_pseudonym))
        .route("/v1/sign/interactive/national-id", get(national_id))
        .route("/v1/sign/interactive/cancel", get(cancel))
        .route("/v1/oidc/callback", get(oidc_callback))
        .route("/v1/ui/style.css", get(style_css))
        .route("/v1/ui/theme.css", get(theme_css))
        .route("/v1/ui/logo", get(logo))
        // Browsers ask for it on every page; answer without a 404 in their console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(state)
}

pub(crate) fn rid(r: &Option<Extension<RequestId>>) -> String {
    r.as_ref()
        .map(|Extension(r)| r.0.clone())
        .unwrap_or_default()
}

fn echo_param(name: &str, v: Option<&String>) -> Result<Option<String>, String> {
    match v {
        None => Ok(None),
        Some(s) if s.len() <= MAX_ECHO && s.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(format!(
            "{name} must be at most {MAX_ECHO} visible ASCII characters"
        )),
    }
}

/// An audit event of the signing visit `v` (its transaction's signatureId, e-Service, request ID).
pub(crate) fn visit_event(kind: &str, v: &SignVisit, rid: &str) -> AuditEvent {
    let mut e = AuditEvent::new(kind, SystemTime::now());
    e.request_id = Some(rid.to_owned());
    e.eservice = Some(v.eservice.clone());
    e.signature_id = Some(hex::encode(v.transaction));
    e
}

/// `callback.sent`: the browser is sent back to the e-Service with `code` (`signed` or the error code).
/// Logged and continued on an audit failure ([`esigd_service::audit`]).
pub(crate) async fn callback_sent(st: &WebState, v: &SignVisit, code: &str, rid: &str) {
    let mut e = visit_event("callback.sent", v, rid);
    e.code = Some(code.to_owned());
    e.outcome = Some(
        if code == "signed" {
            "success"
        } else {
            "failure"
        }
        .into(),
    );
    esigd_service::audit::record_or_log(&st.svc.signatures, &e).await;
}

/// Sends the browser back to the e-Service with `error` and `error_description` (and its
/// `state` and `nonce`), never with a signature ID; audited as `callback.sent`.
pub(crate) async fn fail_back(
    st: &WebState,
    s: &SignVisit,
    code: &str,
    description: &str,
    rid: &str,
) -> Response {
    st.metrics.signing_session_ended(code);
    let mut e = visit_event("callback.sent", s, rid);
    e.code = Some(code.to_owned());
    e.outcome = Some("failure".into());
    e.message = Some(description.to_owned());
    esigd_service::audit::record_or_log(&st.svc.signatures, &e).await;
    redirect(&callback_url(
        s,
        &[("error", code), ("error_description", description)],
    ))
}

/// `callback?k=v&…&state=…&nonce=…`.
pub(crate) fn callback_url(s: &SignVisit, params: &[(&str, &str)]) -> String {
    let mut u = s.callback.clone();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(st) = &s.state {
            q.append_pair("state", st);
        }
        if let Some(n) = &s.nonce {
            q.append_pair("nonce", n);
        }
    }
    u.to_string()
}

fn fingerprint(digest: &[u8]) -> String {
    let h = hex::encode(digest);
    h.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /v1/sign/interactivePseudonym`: the contract's entry straight to the pseudonym form
/// (workflow 9.2.2), with the same parameters and checks as `/v1/sign/interactive`.
async fn interactive_pseudonym(
    st: State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: RawQuery,
    q: Query<HashMap<String, String>>,
) -> Response {
    entry(st, r, peer, headers, raw, q, true).await
}

async fn interactive(
    st: State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: RawQuery,
    q: Query<HashMap<String, String>>,
) -> Response {
    entry(st, r, peer, headers, raw, q, false).await
}

/// Both entries: validates everything, opens the session, then the choice page or (for the
/// pseudonym entry) straight to the pseudonym form.
async fn entry(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<HashMap<String, String>>,
    pseudonym_entry: bool,
) -> Response {
    let pages = &st.pages;
    let rid = rid(&r);
    let bad = |m: &str| pages.error_page(StatusCode::BAD_REQUEST, m, &rid);
    let Some(callback) = q.get("callbackUrl") else {
        return bad("callbackUrl is required");
    };
    // The contract's redirect has no serviceId: the e-Service is then the one whose registered
    // callback prefix matches, which must be unambiguous.
    let eservice = match q.get("serviceId") {
        Some(id) => match st.svc.registry.load().eservice(id) {
            Some(e) => e,
            None => return bad("serviceId is not a registered e-Service"),
        },
        None if callback.len() <= MAX_CALLBACK_URL => {
            match st.svc.registry.load().eservice_for_callback(callback) {
                Ok(e) => e,
                Err(m) => return bad(m),
            }
        }
        None => return bad("callbackUrl is longer than 2048 bytes"),
    };
    if callback.len() > MAX_CALLBACK_URL {
        return bad("callbackUrl is longer than 2048 bytes");
    }
    let Some(callback) = eservice.callback(callback) else {
        tracing::warn!(eservice = %eservice.id, "interactive request with an unregistered callbackUrl");
        return bad("callbackUrl is not registered for this e-Service");
    };
    if let Some((k, _)) = callback
        .query_pairs()
        .find(|(k, _)| RESERVED_CALLBACK_PARAMS.contains(&k.as_ref()))
    {
        return bad(&format!(
            "callbackUrl must not have a {k:?} parameter: esigd adds signatureId, error, error_description, state and nonce itself"
        ));
    }
    // A '+' of standard base64 that was not percent-encoded arrives as a space.
    let hash = q.get("hash").map(|h| h.replace(' ', "+"));
    let display = match q
        .get("dataToBeDisplayed")
        .map(|d| display_text(d))
        .transpose()
    {
        Ok(d) => d,
        Err(m) => return bad(m),
    };
    // Several documents: one `doc` parameter each (the map above keeps only one of a name).
    let doc_values: Vec<String> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "doc")
            .map(|(_, v)| v.into_owned())
            .collect();
    let documents = if doc_values.is_empty() {
        None
    } else {
        let refs: Vec<&str> = doc_values.iter().map(String::as_str).collect();
        match redirect_documents(&refs) {
            Ok(d) => Some(d),
            Err(e) => return bad(e.message()),
        }
    };
    let input = match validate_sign_input(
        q.get("format").map(String::as_str),
        hash.as_deref(),
        documents.as_deref(),
        q.get("hashType").map(String::as_str),
        display.as_deref(),
        q.get("requestTimestamp").map(String::as_str),
        st.svc.settings.limits.request_max_age,
    ) {
        Ok(i) => i,
        Err(e) => return bad(e.message()),
    };
    let (state, nonce) = match (
        echo_param("state", q.get("state")),
        echo_param("nonce", q.get("nonce")),
    ) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(m), _) | (_, Err(m)) => return bad(&m),
    };
    // The transaction's signatureId: every audit event of this visit is indexed under it.
    let transaction: [u8; 32] = {
        use rand::RngCore;
        let mut id = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        id
    };
    let audit = |kind: &str| {
        let mut e = AuditEvent::new(kind, SystemTime::now());
        e.request_id = Some(rid.clone());
        e.eservice = Some(eservice.id.clone());
        e.signature_id = Some(hex::encode(transaction));
        e
    };
    // Verified now, used up only right before the signature is made.
    let checked = payment::check(
        st.svc.payment.as_deref(),
        &eservice,
        q.get("paymentToken").map(String::as_str),
    )
    .await;
    if eservice.payment_required {
        let mut e = audit("payment.checked");
        match &checked {
            Ok(p) => {
                e.outcome = Some("success".into());
                e.payment_sha256 = p.as_ref().map(payment::Payment::jti_sha256);
            }
            Err(err) => {
                e.outcome = Some("failure".into());
                e.message = Some(err.to_string());
            }
        }
        esigd_service::audit::record_or_log(&st.svc.signatures, &e).await;
    }
    let payment = match checked {
        Ok(p) => p,
        Err(e) => return payment_page(&st, &eservice, e, &rid),
    };
    let browser = pages
        .browser_id(&headers)
        .unwrap_or_else(|| random_token(32));
    let csrf = random_token(24);
    let session = Session {
        created: Instant::now(),
        browser: browser.clone(),
        ip: address_bucket(peer.ip()),
        csrf: csrf.clone(),
        oidc: None,
        at_idp: false,
        seq: 0,
        visit: Visit::Sign(Box::new(SignVisit {
            payment,
            eservice: eservice.id.clone(),
            eservice_name: eservice.name.clone(),
            input: input.clone(),
            callback,
            state,
            nonce,
            scd: None,
            transaction,
        })),
    };
    match pages.insert(session) {
        Ok(0) => {}
        Ok(evicted) => {
            tracing::debug!(evicted, "unused signing sessions evicted (ui.max_sessions)");
        }
        Err(limit) => {
            tracing::warn!(limit, ip = %peer.ip(), "signing session refused");
            return pages.try_later_page(
                "The service is busy. Please try again in a few minutes.",
                &rid,
            );
        }
    }
    let mut started = audit("session.started");
    started.outcome = Some("success".into());
    started.hash_type = Some(input.spec.hash_type.name().into());
    started.digest = Some(hex::encode(input.spec.digest()));
    esigd_service::audit::record_or_log(&st.svc.signatures, &started).await;
    if pseudonym_entry {
        let resp = redirect(&format!("/v1/sign/interactive/scd?t={csrf}"));
        return pages.with_cookie(resp, &browser);
    }
    let resp = pages.render(
        StatusCode::OK,
        "choice.html",
        context! {
            eservice_name => eservice.name.clone(),
            display => input.display.clone(),
            hash_type => input.spec.hash_type.name(),
            fingerprint => fingerprint(input.spec.digest()),
            documents => document_list(&input.spec),
            csrf => csrf,
        },
    );
    pages.with_cookie(resp, &browser)
}

/// The documents a page lists (name and fingerprint), when the request named them (`doc` or
/// `documents`); empty for the contract's single `hash`.
pub(crate) fn document_list(spec: &esigd_service::signing::SignSpec) -> Vec<minijinja::Value> {
    let named = spec.documents.len() > 1
        || spec
            .documents
            .first()
            .is_some_and(|d| d.name != esigd_service::signing::SINGLE_DOCUMENT_NAME);
    if !named {
        return Vec::new();
    }
    spec.documents
        .iter()
        .map(|d| context! { name => d.name.clone(), fingerprint => fingerprint(&d.digest) })
        .collect()
}

fn payment_page(st: &WebState, eservice: &Eservice, e: PaymentError, rid: &str) -> Response {
    match e {
        PaymentError::Unavailable(m) => {
            tracing::warn!(error = %m, "payment verification unavailable");
            st.pages.try_later_page(
                "Payment cannot be checked right now. Please try again later.",
                rid,
            )
        }
        other => {
            tracing::info!(reason = %other, eservice = %eservice.id, "interactive request without a valid payment");
            st.pages.render(
                StatusCode::PAYMENT_REQUIRED,
                "payment.html",
                context! { eservice_name => eservice.name.clone(), message => other.to_string() },
            )
        }
    }
}

/// The session of this browser whose link token is `t`.
pub(crate) fn session_for(
    st: &WebState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(Session, SignVisit), &'static str> {
    let browser = st
        .pages
        .browser_id(headers)
        .ok_or("Your signing session has expired or cookies are blocked.")?;
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    let expired = "Your signing session has expired, or this link is not yours. Start again from the service.";
    let s = st.pages.get(t, &browser).ok_or(expired)?;
    let v = s.sign().cloned().ok_or(expired)?;
    Ok((s, v))
}

async fn national_id(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let (session, visit) = match session_for(&st, &headers, &q) {
        Ok(x) => x,
        Err(m) => return st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid),
    };
    let (Some(provider), Some(auth)) = (st.svc.identity.as_ref(), st.pages.auth.as_ref()) else {
        return st.pages.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Login with National ID is not configured on this service.",
            &rid,
        );
    };
    let mut method = visit_event("session.method", &visit, &rid);
    method.signature_type = Some(SignatureType::OneTime);
    method.outcome = Some("success".into());
    esigd_service::audit::record_or_log(&st.svc.signatures, &method).await;
    match oidc_flow::authorization_url(provider, auth, &st.pages.redirect_url).await {
        Ok((url, pending)) => {
            st.pages.set_pending(&session.csrf, Some(pending));
            tracing::info!(eservice = %visit.eservice, "user sent to the Identity BB");
            redirect(url.as_str())
        }
        Err(e) => {
            tracing::warn!(error = %e, "Identity BB unavailable");
            st.pages.try_later_page(
            "The National ID login service cannot be reached. Please try again in a few minutes.",
                &rid,
            )
        }
    }
}

async fn cancel(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match session_for(&st, &headers, &q) {
        Ok((s, v)) => {
            st.pages.remove(&s.csrf);
            fail_back(
                &st,
                &v,
                "access_denied",
                "The user cancelled the signature.",
                &rid(&r),
            )
            .await
        }
        Err(m) => st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid(&r)),
    }
}

/// A fixed, user-facing description for each way a signature can fail (internal details stay
/// in the log; the e-Service gets the code and this text).
fn failure_description(e: &onetime::SignError) -> &'static str {
    match e {
        onetime::SignError::Busy | onetime::SignError::Unavailable(_) => {
            "The signing service is busy or temporarily unavailable."
        }
        onetime::SignError::Identity(_) => {
            "The identity from the login cannot be put in a certificate."
        }
        onetime::SignError::Request(_) => "The documents cannot be signed in this format.",
        onetime::SignError::Internal => "The signature could not be made.",
    }
}

async fn oidc_callback(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let refuse = |m: &str| st.pages.error_page(StatusCode::BAD_REQUEST, m, &rid);
    let Some(browser) = st.pages.browser_id(&headers) else {
        return refuse("Your signing session has expired or cookies are blocked.");
    };
    let given = q.get("state").map(String::as_str).unwrap_or_default();
    // The session must be waiting for exactly this state, in this browser; whatever happens
    // next, this state cannot be used again.
    let Some((session, pending)) = st.pages.take_oidc_state(given, &browser) else {
        tracing::warn!("OIDC callback with an unknown, used or foreign state refused");
        return refuse(
            "This sign-in response does not belong to a signing session of this browser (expired, used already, or forged).",
        );
    };
    let visit = match &session.visit {
        Visit::Sign(v) => v.as_ref().clone(),
        Visit::Account(_) => {
            return super::account::logged_in(&st, session, pending, &q, &rid).await;
        }
    };

    if let Some(err) = q.get("error") {
        st.pages.remove(&session.csrf);
        let code = if err == "access_denied" {
            "access_denied"
        } else {
            "login_failed"
        };
        // The value comes from the browser's URL: logged bounded and escaped (Debug), never raw.
        let err: String = err.chars().take(64).collect();
        tracing::info!(eservice = %visit.eservice, error = ?err, "login at the Identity BB not completed");
        if let Err(page) = login_event(&st, &visit, &rid, Err(code)).await {
            return page;
        }
        return fail_back(
            &st,
            &visit,
            code,
            "The login at the Identity BB was not completed.",
            &rid,
        )
        .await;
    }
    let Some(code) = q.get("code") else {
        return refuse("The sign-in response has no authorization code.");
    };
    let (Some(provider), Some(auth)) = (st.svc.identity.as_ref(), st.pages.auth.as_ref()) else {
        return refuse("Login with National ID is not configured on this service.");
    };
    let claims =
        match oidc_flow::complete(provider, auth, &st.pages.redirect_url, &pending, code).await {
            Ok(c) => c,
            Err(e) => {
                st.pages.remove(&session.csrf);
                let kind = match e {
                    IdentityError::Unavailable(_) => "identity_unavailable",
                    _ => "login_failed",
                };
                st.metrics.error(kind);
                tracing::warn!(error = %e, "login at the Identity BB failed");
                if let Err(page) = login_event(&st, &visit, &rid, Err(kind)).await {
                    return page;
                }
                return fail_back(
                    &st,
                    &visit,
                    "login_failed",
                    "The login could not be verified.",
                    &rid,
                )
                .await;
            }
        };
    st.pages.remove(&session.csrf);
    let identity = esigd_service::identity::map_claims(&provider.config().claims, &claims);
    // The login event names the citizen by the keyed hash of their personal identifier (HMAC in the HSM).
    let user_ref = {
        let (audit, ca, id) = (st.svc.audit.clone(), st.svc.ca.clone(), identity.clone());
        match tokio::task::spawn_blocking(move || {
            audit.users().of_claims(&id, &ca.config().subject)
        })
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "audit user reference not computed");
                None
            }
            Err(_) => None,
        }
    };
    if let Err(page) = login_event(&st, &visit, &rid, Ok(user_ref)).await {
        return page;
    }
    // The payment is used up right before signing and given back if no signature is made.
    let result = onetime::sign_with_payment_as(
        &st.svc.onetime,
        visit.payment.clone(),
        OneTimeRequest {
            eservice: visit.eservice.clone(),
            identity,
            spec: visit.input.spec.clone(),
            request_id: rid.clone(),
            contact: esigd_service::notify::Contact::from_claims(&claims),
            display: visit.input.display.clone(),
        },
        Some(visit.transaction),
    )
    .await;
    match result {
        Ok(record) => {
            st.metrics.signing_session_ended("signed");
            let id = record.id_hex();
            callback_sent(&st, &visit, "signed", &rid).await;
            let to = callback_url(&visit, &[("signatureId", &id)]);
            st.pages.render(
                StatusCode::OK,
                "result.html",
                context! {
                    eservice_name => visit.eservice_name.clone(),
                    signature_id => id,
                    continue_url => to,
                },
            )
        }
        Err(onetime::PaidSignError::Payment(e)) => {
            tracing::info!(reason = %e, eservice = %visit.eservice, "payment not usable at signing time");
            fail_back(
                &st,
                &visit,
                "payment_required",
                "The payment token was used already or cannot be checked.",
                &rid,
            )
            .await
        }
        Err(onetime::PaidSignError::Sign(e)) => {
            tracing::warn!(error = %e, "interactive one-time signature failed");
            fail_back(&st, &visit, "signing_failed", failure_description(&e), &rid).await
        }
    }
}

/// `login.succeeded` or `login.failed` (with the failure's kind, never the user's data). A login result
/// is security-relevant: when it cannot be logged the step is refused with 503 (the returned page).
async fn login_event(
    st: &WebState,
    visit: &SignVisit,
    rid: &str,
    result: Result<Option<String>, &str>,
) -> Result<(), Response> {
    let mut e = match result {
        Ok(user_ref) => {
            let mut e = visit_event("login.succeeded", visit, rid);
            e.outcome = Some("success".into());
            e.user_ref = user_ref;
            e
        }
        Err(kind) => {
            let mut e = visit_event("login.failed", visit, rid);
            e.outcome = Some("failure".into());
            e.message = Some(kind.to_owned());
            e
        }
    };
    e.signature_type = Some(SignatureType::OneTime);
    match esigd_service::audit::record(&st.svc.signatures, &e).await {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, event = %e.event, "login result not logged: step refused");
            Err(st.pages.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot record the login right now. Please try again in a few minutes.",
                rid,
            ))
        }
    }
}

async fn style_css() -> Response {
    css(STYLE_CSS.to_owned())
}

async fn theme_css(State(st): State<Arc<WebState>>) -> Response {
    css(st.pages.theme_css.clone())
}

fn css(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn logo(State(st): State<Arc<WebState>>) -> Response {
    match &st.pages.logo {
        Some((bytes, kind)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // An SVG must not run script even if opened directly.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A digest's short SHA-256 display form, for tests.
pub fn display_fingerprint(digest: &[u8]) -> String {
    fingerprint(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn display_text_is_base64url_as_govstack_has_it_and_nothing_is_guessed() {
        // The GovStack example value; with and without padding; non-ASCII; line breaks and tabs.
        assert_eq!(
            display_text("UGxlYXNlIHNpZ24gdGhlIGNvbnNlbnQgZm9ybSBhcyByZXF1ZXN0ZWQgKHRyYW5zYWN0aW9uSWQ6MTIzNCk").unwrap(),
            "Please sign the consent form as requested (transactionId:1234)"
        );
        assert_eq!(display_text("SGVsbG8gV29ybGQ").unwrap(), "Hello World");
        assert_eq!(display_text("Q29uc2VudCDinJM=").unwrap(), "Consent ✓");
        assert_eq!(display_text("YQ0KYgli").unwrap(), "a\r\nb\tb");
        // Every value is decoded, never guessed: "Will" is base64url and means "Z)e" (a guesser
        // would have to choose); plain text that is not base64url is refused with the rule.
        assert_eq!(display_text("Will").unwrap(), "Z)e");
        for plain in ["Order 42", "<script>alert(1)</script>", "Order+42", "x"] {
            let e = display_text(plain).unwrap_err();
            assert!(e.contains("base64url"), "{plain}: {e}");
        }
        // Not UTF-8, or control characters.
        assert!(display_text("_w").is_err());
        assert!(display_text("YQBi").unwrap_err().contains("control"));
        // A right-to-left override (U+202E) in the decoded text.
        assert!(
            display_text("UGF5IOKArjAwMQ")
                .unwrap_err()
                .contains("bidirectional")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_bucket(v4), v4);
        assert_eq!(address_bucket("::ffff:192.0.2.7".parse().unwrap()), v4);
    }

    #[test]
    fn echo_params_are_bounded_visible_ascii() {
        assert_eq!(echo_param("state", None), Ok(None));
        assert!(echo_param("state", Some(&"a".repeat(600))).is_err());
        assert!(echo_param("state", Some(&"a b".to_string())).is_err());
        assert_eq!(
            echo_param("state", Some(&"abc-_.~".to_string())),
            Ok(Some("abc-_.~".into()))
        );
    }

    #[test]
    fn fingerprints_are_grouped() {
        assert_eq!(fingerprint(&[0xab, 0xcd, 0xef, 0x01, 0x23]), "abcd ef01 23");
    }
}
