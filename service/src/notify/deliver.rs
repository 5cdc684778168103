//! The delivery worker and the three channels (webhook, e-mail, SMS).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use secrecy::ExposeSecret;

use esigd_store::outbox::OutboxRow;

use super::config::{NotificationsSection, SmsSection, SmtpSecurity};
use super::jws::{JwsError, JwsSigner};
use super::{Channel, Event, EventKind, Notifier, Payload};
use crate::config::SettingError;

/// Why notifications cannot be set up (at start).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A setting cannot be used.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The signing key cannot be found, created or used.
    #[error(transparent)]
    Key(#[from] JwsError),
}

/// Most outbox rows counted for the depth gauge (it saturates there: a bounded scan per round).
const DEPTH_COUNT_LIMIT: usize = 100_000;

/// What delivering needs.
pub(crate) struct Delivery {
    pub(crate) signer: Arc<JwsSigner>,
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    sms: Option<Sms>,
    timeout: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    give_up_after: Duration,
    poll_interval: Duration,
    concurrency: usize,
}

struct Sms {
    url: reqwest::Url,
    template: String,
    content_type: String,
    encoding: Encoding,
    token: Option<secrecy::SecretString>,
}

/// How `{phone}` and `{text}` are put into the SMS template.
#[derive(Clone, Copy)]
enum Encoding {
    /// JSON string contents (a JSON `content_type`).
    Json,
    /// `application/x-www-form-urlencoded` values.
    Form,
    /// As they are.
    Plain,
}

/// Why one attempt failed (logged; never names the address, the number or the body).
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Transport(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Gone(&'static str),
}

impl Delivery {
    pub(crate) fn new(
        s: &NotificationsSection,
        data_dir: &std::path::Path,
        hsm: &esigd_hsm::Hsm,
    ) -> Result<Delivery, NotifyError> {
        let signer = Arc::new(JwsSigner::open(hsm, &s.key)?);
        let http = reqwest::Client::builder()
            // A webhook or gateway that redirects is misconfigured; following it invites SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(s.timeout)
            .connect_timeout(s.timeout)
            .user_agent(concat!("esigd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SettingError::new("notifications", format!("HTTP client: {e}")))?;
        let smtp = match &s.email {
            None => None,
            Some(e) => {
                let key = |k: &str| format!("notifications.email.{k}");
                let from: Mailbox = e
                    .from
                    .parse()
                    .map_err(|err| SettingError::new(key("from"), format!("{err}")))?;
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.host)
                    .port(e.port)
                    .timeout(Some(s.timeout));
                let tls = || -> Result<TlsParameters, SettingError> {
                    let mut p = TlsParameters::builder(e.host.clone());
                    if let Some(f) = &e.ca_file {
                        let path = crate::config::data_path(data_dir, f);
                        let pem = std::fs::read(&path).map_err(|err| {
                            SettingError::new(
                                key("ca_file"),
                                format!("cannot read {}: {err}", path.display()),
                            )
                        })?;
                        let cert = Certificate::from_pem(&pem)
                            .map_err(|err| SettingError::new(key("ca_file"), err.to_string()))?;
                        p = p.add_root_certificate(cert);
                    }
                    p.build_rustls()
                        .map_err(|err| SettingError::new(key("host"), err.to_string()))
                };
                b = match e.security {
                    SmtpSecurity::None => b.tls(Tls::None),
                    SmtpSecurity::Starttls => b.tls(Tls::Required(tls()?)),
                    SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
                };
                if let (Some(user), Some(pw)) = (&e.username, &e.password) {
                    let pw = pw.read(data_dir, &key("password"))?;
                    b = b.credentials(Credentials::new(
                        user.clone(),
                        pw.expose_secret().to_owned(),
                    ));
                }
                Some((b.build(), from))
            }
        };
        let sms = match &s.sms {
            None => None,
            Some(SmsSection {
                url,
                template,
                content_type,
                token,
            }) => Some(Sms {
                url: url
                    .parse()
                    .map_err(|e| SettingError::new("notifications.sms.url", format!("{e}")))?,
                template: template.clone(),
                encoding: match content_type.to_ascii_lowercase() {
                    c if c.contains("json") => Encoding::Json,
                    c if c.contains("x-www-form-urlencoded") => Encoding::Form,
                    _ => Encoding::Plain,
                },
                content_type: content_type.clone(),
                token: token
                    .as_ref()
                    .map(|t| t.read(data_dir, "notifications.sms.token"))
                    .transpose()?,
            }),
        };
        Ok(Delivery {
            signer,
            http,
            smtp,
            sms,
            timeout: s.timeout,
            retry_initial: s.retry_initial,
            retry_max: s.retry_max,
            give_up_after: s.give_up_after,
            poll_interval: s.poll_interval,
            concurrency: s.concurrency,
        })
    }

    pub(crate) fn has_email(&self) -> bool {
        self.smtp.is_some()
    }

    pub(crate) fn has_sms(&self) -> bool {
        self.sms.is_some()
    }

    /// The wait before attempt `attempts + 1`: `retry_initial` doubling per failure, at most
    /// `retry_max`, with up to 10 % jitter so that many rows do not retry in lockstep.
    fn backoff(&self, attempts: u32) -> Duration {
        Self::backoff_of(self.retry_initial, self.retry_max, attempts)
    }

    fn backoff_of(initial: Duration, max: Duration, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = initial.saturating_mul(1u32 << exp).min(max);
        let jitter = base.mul_f64(rand::thread_rng().gen_range(0.0..0.1));
        base + jitter
    }
}

impl Notifier {
    /// The delivery worker: runs until the task is dropped or aborted. Every round reads the
    /// rows that are due, attempts them (`notifications.concurrency` at once), deletes the
    /// delivered ones and moves the others to their next try; then it sleeps until the next row
    /// is due, `notifications.poll_interval` passes, or [`Notifier::wake`] is called.
    pub async fn run(self: Arc<Self>) {
        tracing::info!("notification delivery started");
        loop {
            let next = self.round().await;
            let now = self.clock.now();
            let sleep = next
                .and_then(|t| t.duration_since(now).ok())
                .map_or(self.delivery.poll_interval, |d| {
                    d.min(self.delivery.poll_interval)
                });
            if next.is_some_and(|t| t <= now) {
                // More rows are due already (a full round): go on almost at once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One round; returns when the earliest remaining row is due.
    async fn round(self: &Arc<Self>) -> Option<SystemTime> {
        let now = self.clock.now();
        let (outbox, limit) = (self.outbox.clone(), self.delivery.concurrency);
        let due = tokio::task::spawn_blocking(move || {
            let due = outbox.due(now, limit)?;
            let depth = outbox.count(DEPTH_COUNT_LIMIT)?;
            Ok::<_, esigd_store::persist::PersistError>((due, depth))
        })
        .await;
        let due = match due {
            Ok(Ok((due, depth))) => {
                self.meter.notify_outbox_depth(depth);
                due
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the outbox cannot be read");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the outbox read panicked");
                return None;
            }
        };
        let mut set = tokio::task::JoinSet::new();
        for row in due {
            let me = self.clone();
            set.spawn(async move { me.attempt(row).await });
        }
        while set.join_next().await.is_some() {}
        let outbox = self.outbox.clone();
        match tokio::task::spawn_blocking(move || outbox.next_due()).await {
            Ok(Ok(next)) => next,
            _ => None,
        }
    }

    /// One delivery attempt of `row`, and what follows from it in the outbox.
    async fn attempt(&self, row: OutboxRow) {
        let id = row.id_hex();
        let payload: Payload = match serde_json::from_slice(&row.payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(id, error = %e, "unreadable outbox row dropped");
                self.commit_or_log(self.outbox.delete_batch(&row)).await;
                return;
            }
        };
        let channel = payload.channel;
        let outcome = tokio::time::timeout(
            self.delivery.timeout + Duration::from_secs(1),
            self.deliver(&payload),
        )
        .await
        .unwrap_or_else(|_| Err(Failed::Transport("timed out".into())));
        let attempts = row.attempts.saturating_add(1);
        let now = self.clock.now();
        match outcome {
            Ok(()) => {
                self.meter.notify_attempt(channel.label(), true);
                tracing::info!(id, channel = channel.label(), kind = ?payload.event.kind, attempts, "notification delivered");
                self.commit_or_log(self.outbox.delete_batch(&row)).await;
            }
            Err(Failed::Gone(why)) => {
                self.meter.notify_attempt(channel.label(), false);
                tracing::warn!(id, channel = channel.label(), why, "notification dropped");
                self.commit_or_log(self.outbox.delete_batch(&row)).await;
            }
            Err(e) => {
                self.meter.notify_attempt(channel.label(), false);
                let age = now.duration_since(row.created).unwrap_or_default();
                if age >= self.delivery.give_up_after {
                    tracing::warn!(id, channel = channel.label(), attempts, error = %e, "notification not delivered in notifications.give_up_after; dropped");
                    self.commit_or_log(self.outbox.delete_batch(&row)).await;
                } else {
                    let wait = self.delivery.backoff(attempts);
                    tracing::info!(id, channel = channel.label(), attempts, error = %e, retry_in_ms = wait.as_millis() as u64, "notification not delivered yet");
                    let (batch, _) = self.outbox.reschedule_batch(&row, now + wait, attempts);
                    self.commit_or_log(batch).await;
                }
            }
        }
    }

    async fn commit_or_log(&self, batch: esigd_store::Batch) {
        if let Err(e) = self.outbox.commit(batch).await {
            tracing::warn!(error = %e, "outbox update not stored (the row is attempted again)");
        }
    }

    async fn deliver(&self, p: &Payload) -> Result<(), Failed> {
        match p.channel {
            Channel::Webhook => self.webhook(&p.event).await,
            Channel::Email => self.email(p).await,
            Channel::Sms => self.sms(p).await,
        }
    }

    async fn webhook(&self, event: &Event) -> Result<(), Failed> {
        let url = event
            .eservice_id
            .as_deref()
            .and_then(|id| self.registry.get()?.load().eservice(id))
            .and_then(|e| e.notify_url.clone())
            .ok_or(Failed::Gone(
                "the e-Service is no longer registered or has no notify_url",
            ))?;
        let body =
            serde_json::to_vec(event).map_err(|e| Failed::Transport(format!("encoding: {e}")))?;
        let signer = self.delivery.signer.clone();
        let signed = body.clone();
        let jws = tokio::task::spawn_blocking(move || signer.sign_detached(&signed))
            .await
            .map_err(|e| Failed::Transport(format!("signing task: {e}")))?
            .map_err(|e| Failed::Transport(format!("signing: {e}")))?;
        let answer = self
            .delivery
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &event.id)
            .header("X-Esigd-Signature", jws)
            .body(body)
            .send()
            .await
            .map_err(|e| Failed::Transport(transport_error(&e)))?;
        status_ok(answer.status())
    }

    async fn email(&self, p: &Payload) -> Result<(), Failed> {
        let (transport, from) = self
            .delivery
            .smtp
            .as_ref()
            .ok_or(Failed::Gone("e-mail is no longer configured"))?;
        let to: Mailbox =
            p.to.as_deref()
                .and_then(|t| t.parse().ok())
                .ok_or(Failed::Gone("the row has no usable address"))?;
        let (subject, text) = message(p);
        let mail = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "{text}\n\n-- \nThis message was sent automatically; please do not reply.\n"
            ))
            .map_err(|e| Failed::Transport(format!("building the message: {e}")))?;
        transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| Failed::Transport(smtp_error(&e)))
    }

    async fn sms(&self, p: &Payload) -> Result<(), Failed> {
        let sms = self
            .delivery
            .sms
            .as_ref()
            .ok_or(Failed::Gone("SMS is no longer configured"))?;
        let phone =
            p.to.as_deref()
                .ok_or(Failed::Gone("the row has no phone number"))?;
        let (_, text) = message(p);
        let body = fill_template(&sms.template, sms.encoding, phone, &text);
        let mut req = self
            .delivery
            .http
            .post(sms.url.clone())
            .header(reqwest::header::CONTENT_TYPE, &sms.content_type)
            .header("Idempotency-Key", &p.event.id)
            .body(body);
        if let Some(t) = &sms.token {
            req = req.bearer_auth(t.expose_secret());
        }
        let answer = req
            .send()
            .await
            .map_err(|e| Failed::Transport(transport_error(&e)))?;
        status_ok(answer.status())
    }
}

/// The SMS template with `{phone}` and `{text}` replaced, encoded for the body's media type.
fn fill_template(template: &str, encoding: Encoding, phone: &str, text: &str) -> String {
    let fill = |v: &str| match encoding {
        Encoding::Json => {
            let quoted = serde_json::Value::String(v.to_owned()).to_string();
            quoted[1..quoted.len() - 1].to_owned()
        }
        Encoding::Form => url::form_urlencoded::byte_serialize(v.as_bytes()).collect(),
        Encoding::Plain => v.to_owned(),
    };
    // One pass, so a `{text}` inside the phone number (or the reverse) is not replaced again.
    let mut out = String::with_capacity(template.len() + text.len() + phone.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(r) = tail.strip_prefix("{phone}") {
            out.push_str(&fill(phone));
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{text}") {
            out.push_str(&fill(text));
            rest = r;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// An SMTP failure by its kind and reply code only: a server's reply text may quote the
/// recipient's address, which is never logged.
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_tls() {
        "TLS failed"
    } else if e.is_permanent() {
        "permanent error"
    } else if e.is_transient() {
        "transient error"
    } else if e.is_client() {
        "client error"
    } else {
        "connection failed"
    };
    match e.status() {
        Some(code) => format!("SMTP {kind} (reply {code})"),
        None => format!("SMTP {kind}"),
    }
}

fn status_ok(s: reqwest::StatusCode) -> Result<(), Failed> {
    if s.is_success() {
        Ok(())
    } else {
        Err(Failed::Status(s.as_u16()))
    }
}

/// A transport error without the URL (the SMS gateway's may carry a token in its query).
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The subject and text of a citizen's message.
fn message(p: &Payload) -> (String, String) {
    let e = &p.event;
    let service = p
        .eservice_name
        .clone()
        .or_else(|| e.eservice_id.clone())
        .unwrap_or_else(|| "an e-Service".into());
    let short = |id: &Option<String>| {
        id.as_deref()
            .map(|s| s.chars().take(16).collect::<String>())
            .unwrap_or_default()
    };
    match e.kind {
        EventKind::SignatureCreated => (
            format!("Document signed for {service}"),
            format!(
                "You signed a document for {service} at {} (signature {}).",
                e.time,
                short(&e.signature_id)
            ),
        ),
        EventKind::SignatureFailed => (
            format!("Signature for {service} not made"),
            format!(
                "A signature for {service} was not made at {} ({}). Nothing was signed.",
                e.time,
                e.error.as_deref().unwrap_or("failed")
            ),
        ),
        EventKind::CertificateStatusChanged => {
            let status = e.status.as_deref().unwrap_or("CHANGED");
            (
                format!(
                    "Your signing certificate is {}",
                    status.to_ascii_lowercase()
                ),
                format!(
                    "Your signing certificate {} is {status} since {}. If you did not ask for this, contact the service desk.",
                    short(&e.certificate_id),
                    e.time
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_templates_are_filled_for_their_media_type() {
        let t = r#"{"to":"{phone}","text":"{text}"}"#;
        let body = fill_template(t, Encoding::Json, "+372 5", "said \"hi\" {phone}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["to"], "+372 5");
        assert_eq!(v["text"], "said \"hi\" {phone}");
        assert_eq!(
            fill_template("to={phone}&msg={text}", Encoding::Form, "+3725", "a&b c"),
            "to=%2B3725&msg=a%26b+c"
        );
        assert_eq!(
            fill_template("{phone}: {text} {x}", Encoding::Plain, "1", "t"),
            "1: t {x}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let d = |a| {
            let b = Delivery::backoff_of(Duration::from_secs(1), Duration::from_secs(10), a);
            (b.as_millis() / 100) as u64
        };
        assert!((10..=11).contains(&d(1)));
        assert!((20..=22).contains(&d(2)));
        assert!((80..=88).contains(&d(4)));
        assert!((100..=110).contains(&d(5)));
        assert!((100..=110).contains(&d(40)));
    }

    #[test]
    fn messages_name_the_service_and_the_outcome() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut e = Event::failed(
            "svc-a",
            None,
            esigd_store::signatures::SignatureType::OneTime,
            "signing_failed",
            t,
        );
        e.id = "x".into();
        let p = Payload {
            channel: Channel::Email,
            to: Some("mari@example.test".into()),
            eservice_name: Some("Land Registry".into()),
            event: e,
        };
        let (s, t) = message(&p);
        assert_eq!(s, "Signature for Land Registry not made");
        assert!(t.contains("signing_failed"), "{t}");
        assert!(!t.contains("mari@"), "{t}");
    }
}
