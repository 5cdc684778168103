//! The device's phone-sized web UI on localhost: the request on screen (relying party, text,
//! verification code), a PIN field (twice when choosing one), Confirm and Refuse. Server-rendered
//! HTML, no script; a form token stops other web pages from posting decisions.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use esigd_scd::device::TransactionType;
use minijinja::{Environment, context};
use rand_core::{OsRng, RngCore};
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroize;

use crate::app::{App, Decision, Outcome};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% if not pending %}<meta http-equiv="refresh" content="2">{% endif %}
<title>esigd device</title><link rel="stylesheet" href="/style.css"></head>
<body><main class="phone">
<header><strong>My signing device</strong><br><small>ID {{ device_id }}</small></header>
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
{% if pending %}
<section class="request">
  <p class="rp">{{ rp_name }}</p>
  <p class="what">{{ "Create a signing key" if onboarding else "Signature request" }}</p>
  <p class="text">{{ text }}</p>
  {% if choices %}
  <p>Pick the code shown on the service's page:</p>
  {% else %}
  <p>Check that the service shows the same code:</p>
  <p class="vc" aria-label="verification code">{{ vc }}</p>
  {% endif %}
  {% if locked %}<p class="notice">Your PIN is locked after three wrong tries. This device can no longer sign.</p>{% endif %}
  {% if message %}<p class="notice" role="alert">{{ message }}</p>{% endif %}
  <form method="post" action="/decide">
    <input type="hidden" name="form" value="{{ form }}">
    <input type="hidden" name="tx" value="{{ tx }}">
    {% if choices %}<fieldset class="choices">{% for c in choices %}
      <label><input type="radio" name="choice" value="{{ c }}" required> {{ c }}</label>{% endfor %}</fieldset>{% endif %}
    {% if not locked %}
    <label>{{ "Choose a PIN (4–12 digits)" if choose_pin else "PIN" }}
      <input type="password" name="pin" inputmode="numeric" autocomplete="off" id="pin"></label>
    {% if choose_pin %}<label>PIN again <input type="password" name="pin_again" inputmode="numeric" autocomplete="off" id="pin_again"></label>{% endif %}
    {% endif %}
    <div class="buttons">
      <button type="submit" name="action" value="refuse" class="refuse" formnovalidate>Refuse</button>
      <button type="submit" name="action" value="confirm" class="confirm" id="confirm">Confirm</button>
    </div>
  </form>
</section>
{% else %}
<p class="idle">No request. Enter this device's ID on the service's onboarding page, or start a signature there.</p>
{% endif %}
</main></body></html>
"#;

const STYLE: &str = "body{margin:0;font-family:system-ui,sans-serif;background:#e9eef2}\
.phone{max-width:380px;margin:1rem auto;background:#fff;border-radius:1.5rem;padding:1.2rem;\
box-shadow:0 4px 20px #0002;min-height:560px}header{border-bottom:1px solid #ddd;padding-bottom:.5rem}\
.rp{font-weight:700;font-size:1.2rem}.vc{font-size:2.6rem;letter-spacing:.4rem;text-align:center;\
font-family:monospace;margin:.5rem 0}.text{background:#f4f6f8;padding:.6rem;border-radius:.5rem;\
white-space:pre-wrap;overflow-wrap:anywhere}label{display:block;margin:.6rem 0}\
input[type=password]{width:100%;font-size:1.4rem;padding:.4rem;box-sizing:border-box}\
.buttons{display:flex;gap:.6rem;margin-top:1rem}button{flex:1;font-size:1.1rem;padding:.7rem;\
border-radius:.6rem;border:0}.confirm{background:#1b6e3a;color:#fff}.refuse{background:#ddd}\
.notice{background:#fff3cd;padding:.5rem;border-radius:.4rem}.idle{color:#555}\
.choices label{display:inline-block;font-family:monospace;font-size:1.5rem;margin-right:1rem}";

/// State of the UI: the app and the form token.
pub struct Ui {
    app: Arc<App>,
    form: String,
    env: Environment<'static>,
    notice: std::sync::Mutex<Option<String>>,
}

/// The UI's router.
pub fn router(app: Arc<App>) -> Result<Router, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("page", PAGE)?;
    let mut token = [0u8; 16];
    OsRng.fill_bytes(&mut token);
    let ui = Arc::new(Ui {
        app,
        form: token.iter().map(|b| format!("{b:02x}")).collect(),
        env,
        notice: std::sync::Mutex::new(None),
    });
    Ok(Router::new()
        .route("/", get(page))
        .route("/style.css", get(style))
        .route("/decide", post(decide))
        .with_state(ui))
}

fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn style() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css")], STYLE).into_response())
}

async fn page(State(ui): State<Arc<Ui>>) -> Response {
    let p = ui.app.current();
    let notice = ui.notice.lock().ok().and_then(|mut n| n.take());
    let tmpl = match ui.env.get_template("page") {
        Ok(t) => t,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let html = match &p {
        Some(p) => tmpl.render(context! {
            pending => true,
            device_id => ui.app.device_id(),
            notice => notice,
            rp_name => p.review.rp_name,
            onboarding => p.review.kind == TransactionType::Onboard,
            text => p.review.interaction.text(),
            vc => p.review.vc,
            choices => p.review.choices.clone().map(|c| c.to_vec()),
            choose_pin => p.review.choose_pin,
            locked => p.review.locked,
            message => p.message,
            form => ui.form,
            tx => p.tx.transaction_id,
        }),
        None => tmpl.render(context! {
            pending => false,
            device_id => ui.app.device_id(),
            notice => notice,
        }),
    };
    match html {
        Ok(h) => secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], h).into_response()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The form. PINs are moved into `SecretString`s at once (zeroized on drop).
#[derive(Deserialize)]
struct DecideForm {
    form: String,
    tx: String,
    action: String,
    #[serde(default)]
    pin: String,
    #[serde(default)]
    pin_again: String,
    #[serde(default)]
    choice: Option<String>,
}

async fn decide(State(ui): State<Arc<Ui>>, Form(mut f): Form<DecideForm>) -> Response {
    if f.form != ui.form {
        f.pin.zeroize();
        f.pin_again.zeroize();
        return secure(
            (
                StatusCode::FORBIDDEN,
                "This form is not from this device's page.",
            )
                .into_response(),
        );
    }
    let decision = match f.action.as_str() {
        "refuse" => Decision::Refuse,
        "confirm" => Decision::Confirm {
            pin: SecretString::from(std::mem::take(&mut f.pin)),
            pin_again: (!f.pin_again.is_empty())
                .then(|| SecretString::from(std::mem::take(&mut f.pin_again))),
            choice: f.choice.take(),
        },
        _ => return secure((StatusCode::BAD_REQUEST, "action: confirm or refuse").into_response()),
    };
    f.pin.zeroize();
    f.pin_again.zeroize();
    let notice = match ui.app.decide(&f.tx, decision).await {
        Ok(Outcome::Sent(o)) => Some(format!("Answer sent ({o}).")),
        Ok(Outcome::Again(_)) => None,
        Ok(Outcome::Gone) => Some("That request is no longer waiting.".to_owned()),
        Err(e) => Some(format!("Could not answer: {e}")),
    };
    if let Ok(mut n) = ui.notice.lock() {
        *n = notice;
    }
    secure(Redirect::to("/").into_response())
}
