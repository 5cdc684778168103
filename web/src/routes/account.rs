//! The citizen's own pages (public listener), behind the same OIDC login as signing:
//!
//! * `/v1/onboard`: workflow 9.2.1 in the browser ([`esigd_service::onboarding`]): log in, type
//!   the device's pairing ID, compare the verification code, accept and choose a PIN on the
//!   device, read the pseudonym;
//! * `/v1/certs`: "My certificates" ([`esigd_service::citizen_certs`]): list, suspend, resume,
//!   revoke;
//! * `/v1/signatures`: "My signatures": the signatures made in the citizen's name, newest first,
//!   read from the audit ledger's index of their pseudonymous reference
//!   ([`esigd_service::audit::UserRefs`]), each with its proof bundle to download and check offline
//!   (`esig audit verify`).
//!
//! A visit is a session of the signing pages' table (same cookie, same per-network budgets,
//! same TTL) whose [`Visit`] is an account visit. Forms post the link token `t` with the
//! cookie-bound session (CSRF), and the pages allow `form-action 'self'` and nothing else.
//! Onboarding's wait for the device runs in its own task: a closed tab does not cut it between
//! issuing and recording, and reopening the link shows the outcome.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use minijinja::context;
use serde::Deserialize;

use esigd_service::citizen_certs::{Action, CertError, state_name};
use esigd_service::identity::IdentityError;
use esigd_service::identity::oidc::{self as oidc_flow, Pending};
use esigd_service::onboarding::{Citizen, MAX_SCD_KEY_ID, OnboardError, OnboardRequest};
use esigd_store::signatures::rfc3339;

use crate::net::address_bucket;
use crate::observe::RequestId;
use crate::pages::{
    AccountPage, AccountVisit, CSP_FORMS, OnboardStep, Session, Visit, random_token, redirect,
};
use crate::state::WebState;

/// Key slots offered on the page (the API takes up to [`MAX_SCD_KEY_ID`]).
const PAGE_SLOTS: u32 = 4;

/// The routes of the citizen's pages.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route(
            "/v1/onboard",
            get(|s, r, c, h| start(s, r, c, h, AccountPage::Onboard)),
        )
        .route(
            "/v1/certs",
            get(|s, r, c, h| start(s, r, c, h, AccountPage::Certs)),
        )
        .route(
            "/v1/signatures",
            get(|s, r, c, h| start(s, r, c, h, AccountPage::Signatures)),
        )
        .route("/v1/signatures/list", get(signatures_list))
        .route("/v1/signatures/proof", get(signatures_proof))
        .route("/v1/account/login", get(login))
        .route("/v1/onboard/device", get(device_form).post(device_submit))
        .route("/v1/onboard/finish", get(finish))
        .route("/v1/certs/list", get(certs_list))
        .route("/v1/certs/change", post(certs_change))
        .with_state(state)
}

fn rid(r: &Option<Extension<RequestId>>) -> String {
    r.as_ref()
        .map(|Extension(x)| x.0.clone())
        .unwrap_or_default()
}

/// Pages with forms allow posting to this origin.
fn forms(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP_FORMS),
    );
    r
}

fn start_url(page: AccountPage) -> &'static str {
    match page {
        AccountPage::Onboard => "/v1/onboard",
        AccountPage::Certs => "/v1/certs",
        AccountPage::Signatures => "/v1/signatures",
    }
}

fn error(
    st: &WebState,
    status: StatusCode,
    page: AccountPage,
    message: &str,
    rid: &str,
) -> Response {
    st.pages.render(
        status,
        "account_error.html",
        context! { message => message, start => start_url(page), request_id => rid },
    )
}

/// The live account visit of link `t` in this browser.
fn visit(
    st: &WebState,
    headers: &HeaderMap,
    t: &str,
) -> Result<(Session, String, AccountVisit), &'static str> {
    let expired = "Your session has expired, or this link is not yours. Start again.";
    let browser = st.pages.browser_id(headers).ok_or(expired)?;
    let s = st.pages.get(t, &browser).ok_or(expired)?;
    let v = s.account().cloned().ok_or(expired)?;
    Ok((s, browser, v))
}

/// `GET /v1/onboard`, `GET /v1/certs`: a new visit and the login link.
async fn start(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    page: AccountPage,
) -> Response {
    let rid = rid(&r);
    // "My signatures" needs only the login; the other pages the Remote SCD service too.
    let available = st.svc.identity.is_some()
        && (page == AccountPage::Signatures || st.svc.onboarding.available());
    let browser = st
        .pages
        .browser_id(&headers)
        .unwrap_or_else(|| random_token(32));
    let csrf = random_token(24);
    if available {
        let session = Session {
            created: Instant::now(),
            browser: browser.clone(),
            ip: address_bucket(peer.ip()),
            csrf: csrf.clone(),
            oidc: None,
            at_idp: false,
            seq: 0,
            visit: Visit::Account(Box::new(AccountVisit {
                page,
                citizen: None,
                contact: None,
                onboarding: OnboardStep::Idle,
            })),
        };
        if let Err(limit) = st.pages.insert(session) {
            tracing::warn!(limit, ip = %peer.ip(), "account session refused");
            return st.pages.try_later_page(
                "The service is busy. Please try again in a few minutes.",
                &rid,
            );
        }
    }
    let status = if available {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let page_name = match page {
        AccountPage::Onboard => "onboard",
        AccountPage::Certs => "certs",
        AccountPage::Signatures => "signatures",
    };
    let resp = st.pages.render(
        status,
        "account_start.html",
        context! { page => page_name, available => available, csrf => csrf },
    );
    st.pages.with_cookie(resp, &browser)
}

/// `GET /v1/account/login?t=`: to the Identity BB.
async fn login(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    let (s, _, v) = match visit(&st, &headers, t) {
        Ok(x) => x,
        Err(m) => return error(&st, StatusCode::BAD_REQUEST, AccountPage::Onboard, m, &rid),
    };
    let (Some(provider), Some(auth)) = (st.svc.identity.as_ref(), st.pages.auth.as_ref()) else {
        return error(
            &st,
            StatusCode::SERVICE_UNAVAILABLE,
            v.page,
            "Login with National ID is not configured on this service.",
            &rid,
        );
    };
    match oidc_flow::authorization_url(provider, auth, &st.pages.redirect_url).await {
        Ok((url, pending)) => {
            st.pages.set_pending(&s.csrf, Some(pending));
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

/// The OIDC callback of an account visit (`/v1/oidc/callback` is shared with signing).
pub(crate) async fn logged_in(
    st: &WebState,
    session: Session,
    pending: Pending,
    q: &HashMap<String, String>,
    rid: &str,
) -> Response {
    let Some(v) = session.account().cloned() else {
        return error(
            st,
            StatusCode::BAD_REQUEST,
            AccountPage::Onboard,
            "Not an account visit.",
            rid,
        );
    };
    if q.contains_key("error") {
        st.pages.remove(&session.csrf);
        return error(
            st,
            StatusCode::FORBIDDEN,
            v.page,
            "The login at the Identity BB was not completed.",
            rid,
        );
    }
    let (Some(code), Some(provider), Some(auth)) = (
        q.get("code"),
        st.svc.identity.as_ref(),
        st.pages.auth.as_ref(),
    ) else {
        return error(
            st,
            StatusCode::BAD_REQUEST,
            v.page,
            "The sign-in response has no authorization code.",
            rid,
        );
    };
    let claims =
        match oidc_flow::complete(provider, auth, &st.pages.redirect_url, &pending, code).await {
            Ok(c) => c,
            Err(e) => {
                st.pages.remove(&session.csrf);
                if matches!(e, IdentityError::Unavailable(_)) {
                    st.metrics.error("identity_unavailable");
                }
                tracing::warn!(error = %e, "login at the Identity BB failed");
                return error(
                    st,
                    StatusCode::FORBIDDEN,
                    v.page,
                    "The login could not be verified.",
                    rid,
                );
            }
        };
    let Some(sub) = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
    else {
        return error(
            st,
            StatusCode::FORBIDDEN,
            v.page,
            "The login did not say who you are.",
            rid,
        );
    };
    let citizen = Citizen {
        issuer: provider.config().issuer.clone(),
        identity: esigd_service::identity::map_claims(&provider.config().claims, &claims),
        sub,
    };
    let contact = esigd_service::notify::Contact::from_claims(&claims);
    st.pages.update(&session.csrf, &session.browser, |s| {
        if let Visit::Account(a) = &mut s.visit {
            a.citizen = Some(citizen);
            a.contact = contact;
        }
    });
    tracing::info!(request_id = rid, page = ?v.page, "citizen logged in for their own pages");
    match v.page {
        AccountPage::Onboard => redirect(&format!("/v1/onboard/device?t={}", session.csrf)),
        AccountPage::Certs => redirect(&format!("/v1/certs/list?t={}", session.csrf)),
        AccountPage::Signatures => redirect(&format!("/v1/signatures/list?t={}", session.csrf)),
    }
}

fn name_of(c: &Citizen) -> String {
    c.display_name().unwrap_or_else(|| "(no name)".into())
}

fn device_page(
    st: &WebState,
    status: StatusCode,
    csrf: &str,
    citizen: &Citizen,
    error: Option<&str>,
    remote_id: &str,
    key_id: u32,
) -> Response {
    forms(st.pages.render(
        status,
        "onboard_device.html",
        context! {
            csrf => csrf,
            name => name_of(citizen),
            error => error,
            remote_id => remote_id,
            key_id => key_id,
            slots => (0..PAGE_SLOTS).collect::<Vec<_>>(),
        },
    ))
}

/// The visit of `t` with a logged-in citizen.
fn logged_visit(
    st: &WebState,
    headers: &HeaderMap,
    t: &str,
    page: AccountPage,
    rid: &str,
) -> Result<(Session, String, AccountVisit, Citizen), Box<Response>> {
    let (s, browser, v) = visit(st, headers, t)
        .map_err(|m| Box::new(error(st, StatusCode::BAD_REQUEST, page, m, rid)))?;
    if v.page != page {
        return Err(Box::new(error(
            st,
            StatusCode::BAD_REQUEST,
            page,
            "This link is for another page.",
            rid,
        )));
    }
    let Some(c) = v.citizen.clone() else {
        return Err(Box::new(error(
            st,
            StatusCode::FORBIDDEN,
            page,
            "Log in first.",
            rid,
        )));
    };
    Ok((s, browser, v, c))
}

/// `GET /v1/onboard/device?t=`: the pairing form.
async fn device_form(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    match logged_visit(&st, &headers, t, AccountPage::Onboard, &rid) {
        Ok((s, browser, _, c)) => {
            // "Try again" after an ending: a fresh start.
            st.pages.update(&s.csrf, &browser, |s| {
                if let Visit::Account(a) = &mut s.visit
                    && matches!(a.onboarding, OnboardStep::Done(_))
                {
                    a.onboarding = OnboardStep::Idle;
                }
            });
            device_page(&st, StatusCode::OK, &s.csrf, &c, None, "", 0)
        }
        Err(resp) => *resp,
    }
}

/// The pairing form's fields.
#[derive(Debug, Deserialize)]
struct DeviceForm {
    t: String,
    scd_remote_id: String,
    #[serde(default)]
    scd_key_id: Option<String>,
}

/// What the page says for an onboarding failure (the API's message, in people's words where
/// it differs).
fn onboard_message(e: &OnboardError) -> String {
    match e {
        OnboardError::UnknownDevice => {
            "No device has this pairing ID. Check the ID your device app shows.".into()
        }
        OnboardError::Refused => "You declined on the device. Nothing was created.".into(),
        OnboardError::Timeout(d) => format!(
            "The device did not answer within {} seconds. Nothing was created.",
            d.as_secs()
        ),
        OnboardError::WrongVerificationCode => {
            "The code chosen on the device was not the one this page showed. Nothing was created."
                .into()
        }
        OnboardError::Internal => "Something went wrong on our side. Please try again.".into(),
        other => other.to_string(),
    }
}

/// `POST /v1/onboard/device`: asks the device.
async fn device_submit(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Form(f): Form<DeviceForm>,
) -> Response {
    let rid = rid(&r);
    let (s, browser, v, citizen) =
        match logged_visit(&st, &headers, &f.t, AccountPage::Onboard, &rid) {
            Ok(x) => x,
            Err(resp) => return *resp,
        };
    if !matches!(v.onboarding, OnboardStep::Idle) {
        return redirect(&format!("/v1/onboard/finish?t={}", s.csrf));
    }
    let remote_id: String = f.scd_remote_id.chars().take(128).collect();
    let key_id = match f.scd_key_id.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(k) => match k.parse::<u32>() {
            Ok(k) if k <= MAX_SCD_KEY_ID => k,
            _ => {
                return device_page(
                    &st,
                    StatusCode::BAD_REQUEST,
                    &s.csrf,
                    &citizen,
                    Some("Choose a key slot from the list."),
                    &remote_id,
                    0,
                );
            }
        },
    };
    let req = OnboardRequest {
        citizen: citizen.clone(),
        scd_type: None,
        pseudonym: None,
        scd_remote_id: remote_id.clone(),
        scd_key_id: key_id,
        eservice: None,
        request_id: rid.clone(),
    };
    match st.svc.onboarding.start(req).await {
        Ok(started) => {
            st.pages.update(&s.csrf, &browser, |s| {
                if let Visit::Account(a) = &mut s.visit {
                    a.onboarding = OnboardStep::Started(Box::new(started.clone()));
                }
            });
            wait_page(&st, &s.csrf, &started.verification_code, 1)
        }
        Err(e) => {
            let status = super::cert::onboard_status(&e);
            device_page(
                &st,
                status,
                &s.csrf,
                &citizen,
                Some(&onboard_message(&e)),
                &remote_id,
                key_id,
            )
        }
    }
}

/// The code, and a refresh to `/v1/onboard/finish` after `refresh` seconds.
fn wait_page(st: &WebState, csrf: &str, code: &str, refresh: u32) -> Response {
    st.pages.render(
        StatusCode::OK,
        "onboard_wait.html",
        context! {
            csrf => csrf,
            code => code,
            refresh => refresh,
            timeout => st.svc.onboarding.timeout().as_secs(),
        },
    )
}

fn done_page(st: &WebState, csrf: &str, outcome: &Result<(String, String), String>) -> Response {
    match outcome {
        Ok((pseudonym, certificate_id)) => st.pages.render(
            StatusCode::OK,
            "onboard_done.html",
            context! { pseudonym => pseudonym, certificate_id => certificate_id, csrf => csrf },
        ),
        Err(message) => st.pages.render(
            StatusCode::OK,
            "onboard_done.html",
            context! { error => message, csrf => csrf },
        ),
    }
}

/// `GET /v1/onboard/finish?t=`: waits for the device (long poll), then the outcome.
async fn finish(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    let (s, browser, v, _) = match logged_visit(&st, &headers, t, AccountPage::Onboard, &rid) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let started = match v.onboarding {
        OnboardStep::Idle => return redirect(&format!("/v1/onboard/device?t={}", s.csrf)),
        OnboardStep::Done(outcome) => return done_page(&st, &s.csrf, &outcome),
        OnboardStep::Waiting(code) => {
            // Another request is waiting for the device: show the code again, look back soon.
            return wait_page(&st, &s.csrf, &code, 3);
        }
        OnboardStep::Started(started) => started,
    };
    // Only one request waits: the step moves to Waiting under the table's lock.
    let mut mine = false;
    st.pages.update(&s.csrf, &browser, |s| {
        if let Visit::Account(a) = &mut s.visit
            && let OnboardStep::Started(started) = &a.onboarding
        {
            a.onboarding = OnboardStep::Waiting(started.verification_code.clone());
            mine = true;
        }
    });
    if !mine {
        return redirect(&format!("/v1/onboard/finish?t={}", s.csrf));
    }
    let state = st.clone();
    let (csrf, browser2) = (s.csrf.clone(), browser.clone());
    let task = tokio::spawn(async move {
        let outcome = state
            .svc
            .onboarding
            .finish(*started)
            .await
            .map(|o| (o.record.pseudonym.clone(), o.record.serial_hex()))
            .map_err(|e| onboard_message(&e));
        state.pages.update(&csrf, &browser2, |s| {
            if let Visit::Account(a) = &mut s.visit {
                a.onboarding = OnboardStep::Done(outcome.clone());
            }
        });
        outcome
    });
    match task.await {
        Ok(outcome) => done_page(&st, &s.csrf, &outcome),
        Err(_) => error(
            &st,
            StatusCode::INTERNAL_SERVER_ERROR,
            AccountPage::Onboard,
            "Something went wrong on our side. Please try again.",
            &rid,
        ),
    }
}

/// The list page.
async fn render_certs(
    st: &WebState,
    status: StatusCode,
    csrf: &str,
    citizen: &Citizen,
    note: Option<&str>,
    error_msg: Option<&str>,
    rid: &str,
) -> Response {
    let certs = match st
        .svc
        .citizen_certs
        .list(
            &citizen.issuer,
            &citizen.sub,
            esigd_service::citizen_certs::Filter::All,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            return error(
                st,
                StatusCode::SERVICE_UNAVAILABLE,
                AccountPage::Certs,
                &e.to_string(),
                rid,
            );
        }
    };
    let rows: Vec<_> = certs
        .iter()
        .map(|c| {
            let actions: Vec<&str> = match c.state {
                esigd_ca::CertState::Active => vec!["SUSPEND", "REVOKE"],
                esigd_ca::CertState::Suspended => vec!["ACTIVATE", "REVOKE"],
                _ => vec![],
            };
            context! {
                id => c.cert.serial_hex(),
                pseudonym => c.key.pseudonym.clone(),
                key_id => c.key.scd_key_id,
                not_after => rfc3339(c.cert.not_after),
                status => state_name(c.state),
                message => super::cert::status_message(c),
                actions => actions,
            }
        })
        .collect();
    forms(st.pages.render(
        status,
        "certs.html",
        context! {
            csrf => csrf,
            name => name_of(citizen),
            certs => rows,
            note => note,
            error => error_msg,
        },
    ))
}

/// `GET /v1/certs/list?t=`.
async fn certs_list(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    match logged_visit(&st, &headers, t, AccountPage::Certs, &rid) {
        Ok((s, _, _, c)) => {
            let note = match q.get("done").map(String::as_str) {
                Some("ACTIVATED") => Some("The certificate is active again."),
                Some("SUSPENDED") => Some("The certificate is suspended."),
                Some("REVOKED") => Some("The certificate is revoked."),
                _ => None,
            };
            render_certs(&st, StatusCode::OK, &s.csrf, &c, note, None, &rid).await
        }
        Err(resp) => *resp,
    }
}

/// A status change form.
#[derive(Debug, Deserialize)]
struct ChangeForm {
    t: String,
    id: String,
    action: String,
}

/// `POST /v1/certs/change`.
async fn certs_change(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Form(f): Form<ChangeForm>,
) -> Response {
    let rid = rid(&r);
    let (s, _, v, citizen) = match logged_visit(&st, &headers, &f.t, AccountPage::Certs, &rid) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let action = match Action::parse(&f.action) {
        Ok(a) => a,
        Err(m) => {
            return render_certs(
                &st,
                StatusCode::BAD_REQUEST,
                &s.csrf,
                &citizen,
                None,
                Some(&m),
                &rid,
            )
            .await;
        }
    };
    match st
        .svc
        .citizen_certs
        .change_notifying(
            &citizen.issuer,
            &citizen.sub,
            &f.id,
            action,
            Some("changed on the My certificates page"),
            &rid,
            v.contact.as_ref(),
        )
        .await
    {
        Ok(c) => redirect(&format!(
            "/v1/certs/list?t={}&done={}",
            s.csrf,
            esigd_service::citizen_certs::changed_state_name(c.state)
        )),
        Err(e) => {
            let status = match e {
                CertError::NotFound => StatusCode::NOT_FOUND,
                CertError::Transition(_) => StatusCode::CONFLICT,
                CertError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            render_certs(
                &st,
                status,
                &s.csrf,
                &citizen,
                None,
                Some(&e.to_string()),
                &rid,
            )
            .await
        }
    }
}

/// Signatures listed on one page of "My signatures".
const SIGNATURES_PER_PAGE: usize = 50;
/// Ledger events read for one page (a signature has up to six events naming the citizen).
const EVENTS_PER_PAGE: usize = 500;

/// The logged-in citizen's audit reference: of the personal identifier the CA puts in their
/// certificates' subject (`None` when the login's claims make none). Blocking HMAC in the HSM.
async fn user_ref_of(st: &WebState, citizen: &Citizen) -> Result<Option<String>, &'static str> {
    let (audit, ca, identity) = (
        st.svc.audit.clone(),
        st.svc.ca.clone(),
        citizen.identity.clone(),
    );
    tokio::task::spawn_blocking(move || audit.users().of_claims(&identity, &ca.config().subject))
        .await
        .map_err(|_| "Something went wrong on our side. Please try again.")?
        .map_err(|e| {
            tracing::warn!(error = %e, "audit user reference not computed");
            "The service cannot look up your signatures now. Please try again in a few minutes."
        })
}

/// One row of "My signatures" from a `signature.created` event.
fn signature_row(
    e: &esigd_store::signatures::AuditEvent,
    registry: &esigd_service::registry::Registry,
) -> Option<minijinja::Value> {
    use esigd_store::signatures::SignatureType;
    let id = e.signature_id.clone()?;
    let eservice = e.eservice.as_deref().unwrap_or_default();
    let name = registry
        .eservice(eservice)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| eservice.to_owned());
    let (method, method_label) = match e.signature_type {
        Some(SignatureType::OneTime) => ("ONETIME", "one-time certificate after your login"),
        Some(SignatureType::Scd) => ("SCD", "your own signing device and PIN"),
        None => ("", ""),
    };
    Some(context! {
        id => id,
        time => e.time.clone(),
        eservice => name,
        display => e.display.clone(),
        format => e.format.clone().unwrap_or_default(),
        method => method,
        method_label => method_label,
    })
}

/// `GET /v1/signatures/list?t=[&before=LEAF]`: the signatures made in the citizen's name, newest
/// first, from the ledger's index of their reference (no scan).
async fn signatures_list(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    let (s, _, _, citizen) = match logged_visit(&st, &headers, t, AccountPage::Signatures, &rid) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let before = match q.get("before").map(|b| b.parse::<u64>()) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => {
            return error(
                &st,
                StatusCode::BAD_REQUEST,
                AccountPage::Signatures,
                "This link is damaged.",
                &rid,
            );
        }
    };
    let user_ref = match user_ref_of(&st, &citizen).await {
        Ok(u) => u,
        Err(m) => {
            return error(
                &st,
                StatusCode::SERVICE_UNAVAILABLE,
                AccountPage::Signatures,
                m,
                &rid,
            );
        }
    };
    let events = match &user_ref {
        None => Vec::new(),
        Some(u) => {
            let (audit, u) = (st.svc.audit.clone(), u.clone());
            match tokio::task::spawn_blocking(move || {
                audit.user_events(&u, EVENTS_PER_PAGE, before)
            })
            .await
            {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the citizen's audit events");
                    return error(
                        &st,
                        StatusCode::SERVICE_UNAVAILABLE,
                        AccountPage::Signatures,
                        "The service cannot look up your signatures now. Please try again in a few minutes.",
                        &rid,
                    );
                }
                Err(_) => {
                    return error(
                        &st,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        AccountPage::Signatures,
                        "Something went wrong on our side. Please try again.",
                        &rid,
                    );
                }
            }
        }
    };
    let registry = st.svc.registry.load();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.event == "signature.created")
        .take(SIGNATURES_PER_PAGE)
        .collect();
    // More may be older: a full page of signatures, or every event read without filling one.
    let older = if created.len() == SIGNATURES_PER_PAGE {
        created.last().and_then(|e| e.leaf_index)
    } else if events.len() == EVENTS_PER_PAGE {
        events.last().and_then(|e| e.leaf_index)
    } else {
        None
    };
    let rows: Vec<_> = created
        .iter()
        .filter_map(|e| signature_row(e, &registry))
        .collect();
    tracing::info!(
        request_id = rid,
        listed = rows.len(),
        "citizen listed their signatures"
    );
    st.pages.render(
        StatusCode::OK,
        "signatures.html",
        context! {
            csrf => s.csrf,
            name => name_of(&citizen),
            signatures => rows,
            older => older,
            before => before,
            no_identifier => user_ref.is_none(),
        },
    )
}

/// `GET /v1/signatures/proof?t=&id=`: the proof bundle (JSON) of one of the citizen's signatures,
/// under a signed tree head; another citizen's signatureId is answered like an unknown one (404).
async fn signatures_proof(
    State(st): State<Arc<WebState>>,
    r: Option<Extension<RequestId>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rid = rid(&r);
    let t = q.get("t").map(String::as_str).unwrap_or_default();
    let (_, _, _, citizen) = match logged_visit(&st, &headers, t, AccountPage::Signatures, &rid) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let not_found = |st: &WebState| {
        error(
            st,
            StatusCode::NOT_FOUND,
            AccountPage::Signatures,
            "No signature with this ID was made in your name.",
            &rid,
        )
    };
    let id = q.get("id").map(String::as_str).unwrap_or_default();
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found(&st);
    }
    let id = id.to_ascii_lowercase();
    let user_ref = match user_ref_of(&st, &citizen).await {
        Ok(Some(u)) => u,
        Ok(None) => return not_found(&st),
        Err(m) => {
            return error(
                &st,
                StatusCode::SERVICE_UNAVAILABLE,
                AccountPage::Signatures,
                m,
                &rid,
            );
        }
    };
    match st.svc.audit.bundle_for_user(&id, &user_ref).await {
        Ok(bundle) => match serde_json::to_vec_pretty(&bundle) {
            Ok(json) => {
                tracing::info!(request_id = rid, signature_id = %id, "citizen downloaded a proof bundle");
                let mut resp = Response::new(axum::body::Body::from(json));
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename=\"proof-{id}.json\""))
                {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            Err(_) => error(
                &st,
                StatusCode::INTERNAL_SERVER_ERROR,
                AccountPage::Signatures,
                "Something went wrong on our side. Please try again.",
                &rid,
            ),
        },
        Err(esigd_service::audit::AuditError::UnknownTransaction(_)) => not_found(&st),
        Err(e) => {
            tracing::error!(error = %e, "citizen's proof bundle");
            error(
                &st,
                StatusCode::SERVICE_UNAVAILABLE,
                AccountPage::Signatures,
                "The proof cannot be made now. Please try again in a few minutes.",
                &rid,
            )
        }
    }
}
