//! Notifications (GovStack eSignature 6.8): when a signature is made or fails, and when a
//! certificate's status changes, the e-Service and the citizen are told.
//!
//! * The **e-Service** gets a signed webhook: an HTTP POST of a JSON [`Event`] to its
//!   `notify_url` (`[[eservice]]`), with an `Idempotency-Key` header (stable for the life of the
//!   notification: receivers drop repeats) and `X-Esigd-Signature`, a detached compact JWS
//!   (RFC 7515 appendix F: `<protected>..<signature>`, ES256) over the body, made in the HSM
//!   with the key `notifications.key`; the public key is published as a JWKS at
//!   `GET /v1/notifications/jwks` ([`jws`]).
//! * The **citizen**, when the Identity BB's claims carry `email` / `phone_number` (and do not
//!   say they are unverified), gets an e-mail over SMTP and/or a text message through the
//!   configured SMS gateway ([`Contact`]).
//!
//! Every notification is a row in the durable outbox ([`esigd_store::outbox`]), written in the
//! same atomic batch as the record it describes where there is one (the signature record), so a
//! notification exists exactly when its record does. The delivery worker ([`Notifier::run`])
//! delivers each row at least once, retries with exponential backoff (`retry_initial` doubling
//! up to `retry_max`, dropped after `give_up_after`) and deletes it once delivered. Nothing here
//! can block or fail a signature: writing the rows rides the signature's batch, and delivery
//! runs in the background.
//!
//! A row holds the citizen's address or phone number until it is delivered: they are needed to
//! deliver, are never logged, and go with the row.

pub mod config;
mod deliver;
pub mod jws;

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::reload::Reloadable;
use esigd_store::Batch;
use esigd_store::outbox::{Outbox, OutboxRow};
use esigd_store::signatures::{SignatureRecord, SignatureType, rfc3339};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::meter::Meter;
use crate::registry::Registry;

pub use config::NotificationsSection;
pub use deliver::NotifyError;

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The e-Service's `notify_url`.
    Webhook,
    /// The citizen's e-mail address.
    Email,
    /// The citizen's phone, through the SMS gateway.
    Sms,
}

impl Channel {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// What happened (the webhook body's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A signature was made and stored.
    #[serde(rename = "signature.created")]
    SignatureCreated,
    /// A signing transaction ended without a signature.
    #[serde(rename = "signature.failed")]
    SignatureFailed,
    /// A certificate was suspended, resumed or revoked.
    #[serde(rename = "certificate.status_changed")]
    CertificateStatusChanged,
}

/// The webhook body. It carries identifiers only: no name, no address, no document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The notification's id (equal to the `Idempotency-Key` header).
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The e-Service concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eservice_id: Option<String>,
    /// The signature concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_id: Option<String>,
    /// `ONETIME` or `SCD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_type: Option<SignatureType>,
    /// The certificate concerned (hex serial, the API's `certificateId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// A certificate's status after the change (`ACTIVATED`, `SUSPENDED`, `REVOKED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why a signature failed: the code the e-Service sees elsewhere (`signing_failed`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    fn new(kind: EventKind, at: SystemTime) -> Event {
        Event {
            id: String::new(),
            kind,
            time: rfc3339(at),
            eservice_id: None,
            signature_id: None,
            signature_type: None,
            certificate_id: None,
            status: None,
            error: None,
        }
    }

    /// A signature made and stored.
    pub fn signed(r: &SignatureRecord) -> Event {
        let mut e = Event::new(EventKind::SignatureCreated, r.created);
        e.eservice_id = Some(r.owner.clone());
        e.signature_id = Some(r.id_hex());
        e.signature_type = Some(r.signature_type);
        e.certificate_id = Some(r.certificate_serial.clone());
        e
    }

    /// A signing transaction of `eservice` that ended without a signature at `at`, with the
    /// error code the e-Service sees elsewhere.
    pub fn failed(
        eservice: &str,
        signature_id: Option<String>,
        signature_type: SignatureType,
        code: &str,
        at: SystemTime,
    ) -> Event {
        let mut e = Event::new(EventKind::SignatureFailed, at);
        e.eservice_id = Some(eservice.to_owned());
        e.signature_id = signature_id;
        e.signature_type = Some(signature_type);
        e.error = Some(code.to_owned());
        e
    }

    /// Certificate `serial_hex` is now `status` (`ACTIVATED`, `SUSPENDED`, `REVOKED`); `eservice`
    /// is the e-Service that onboarded it, if any.
    pub fn status_changed(
        eservice: Option<&str>,
        serial_hex: &str,
        status: &str,
        at: SystemTime,
    ) -> Event {
        let mut e = Event::new(EventKind::CertificateStatusChanged, at);
        e.eservice_id = eservice.map(str::to_owned);
        e.certificate_id = Some(serial_hex.to_owned());
        e.status = Some(status.to_owned());
        e
    }
}

/// The citizen's contact data from the Identity BB's claims. Never logged (Debug hides it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The `email` claim.
    pub email: Option<String>,
    /// The `phone_number` claim (E.164 as OIDC recommends).
    pub phone: Option<String>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("email", &self.email.is_some())
            .field("phone", &self.phone.is_some())
            .finish()
    }
}

impl Contact {
    /// The contact data in verified ID-token or userinfo claims: `email` unless
    /// `email_verified` is false, `phone_number` unless `phone_number_verified` is false; values
    /// that do not look like an address or a phone number are left out. `None` when neither.
    pub fn from_claims(claims: &Map<String, Value>) -> Option<Contact> {
        let unverified = |k: &str| claims.get(k).and_then(Value::as_bool) == Some(false);
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !unverified("email_verified") && plausible_email(e))
            .map(str::to_owned);
        let phone = claims
            .get("phone_number")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !unverified("phone_number_verified") && plausible_phone(p))
            .map(str::to_owned);
        (email.is_some() || phone.is_some()).then_some(Contact { email, phone })
    }
}

fn plausible_email(e: &str) -> bool {
    e.len() <= 254
        && e.parse::<lettre::Address>().is_ok()
        && !e.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn plausible_phone(p: &str) -> bool {
    let digits = p.chars().filter(char::is_ascii_digit).count();
    (6..=20).contains(&digits)
        && p.len() <= 32
        && p.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))
}

/// What an outbox row holds (JSON).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) channel: Channel,
    /// The address or phone number (email, sms); none for a webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    /// The e-Service's display name when the row was made (the citizen's messages name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) eservice_name: Option<String>,
    pub(crate) event: Event,
}

/// The notifications of a running appliance: the enqueue side (the workflows' hooks) and the
/// delivery worker ([`Notifier::run`]).
pub struct Notifier {
    outbox: Outbox,
    registry: OnceLock<Reloadable<Registry>>,
    wake: tokio::sync::Notify,
    clock: SharedClock,
    meter: Arc<dyn Meter>,
    delivery: deliver::Delivery,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Makes the notifier of `[notifications]`: the signing key in the HSM (created when
    /// missing: blocking), the HTTP client, the SMTP transport, the secrets read from
    /// `data_dir` / the environment / systemd credentials.
    pub fn new(
        section: &NotificationsSection,
        data_dir: &std::path::Path,
        hsm: &esigd_hsm::Hsm,
        store: esigd_store::Store,
        clock: SharedClock,
        meter: Arc<dyn Meter>,
    ) -> Result<Notifier, NotifyError> {
        let delivery = deliver::Delivery::new(section, data_dir, hsm)?;
        Ok(Notifier {
            outbox: Outbox::new(store),
            registry: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
            clock,
            meter,
            delivery,
        })
    }

    /// Gives the notifier the e-Service registry (their `notify_url` and names), as reloaded on
    /// SIGHUP. Called once by [`crate::Service::new`].
    pub fn attach_registry(&self, registry: Reloadable<Registry>) {
        let _ = self.registry.set(registry);
    }

    /// The JWKS of the webhook signing key (`GET /v1/notifications/jwks`).
    pub fn jwks(&self) -> &Value {
        self.delivery.signer.jwks()
    }

    /// The outbox rows for `event`: a webhook to its e-Service when that one has a
    /// `notify_url`, an e-mail and a text message to the citizen when `contact` has the address
    /// or number and the channel is configured. Put them into the batch of the record `event`
    /// describes, and call [`Notifier::wake`] once it is durable.
    pub fn rows(&self, event: &Event, contact: Option<&Contact>) -> Batch {
        let now = self.clock.now();
        let registry = self.registry.get().map(Reloadable::load);
        let eservice = event
            .eservice_id
            .as_deref()
            .and_then(|id| registry.as_ref()?.eservice(id));
        let name = eservice.as_ref().map(|e| e.name.clone());
        let mut batch = Batch::new();
        let mut add = |channel: Channel, to: Option<String>| {
            let mut id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut id);
            let mut event = event.clone();
            event.id = hex::encode(id);
            let payload = Payload {
                channel,
                to,
                eservice_name: name.clone(),
                event,
            };
            match serde_json::to_vec(&payload) {
                Ok(payload) => {
                    batch.extend(self.outbox.put_batch(&OutboxRow {
                        id,
                        next_try: now,
                        attempts: 0,
                        created: now,
                        payload,
                    }));
                }
                Err(e) => tracing::error!(error = %e, "notification not encoded"),
            }
        };
        if eservice.as_ref().is_some_and(|e| e.notify_url.is_some()) {
            add(Channel::Webhook, None);
        }
        if let Some(c) = contact {
            if let (Some(email), true) = (&c.email, self.delivery.has_email()) {
                add(Channel::Email, Some(email.clone()));
            }
            if let (Some(phone), true) = (&c.phone, self.delivery.has_sms()) {
                add(Channel::Sms, Some(phone.clone()));
            }
        }
        batch
    }

    /// Writes the rows of `event` in a batch of their own (when there is no record to ride
    /// with) and wakes the worker. Never fails: a row that cannot be written is logged.
    pub async fn enqueue(&self, event: &Event, contact: Option<&Contact>) {
        let batch = self.rows(event, contact);
        if batch.is_empty() {
            return;
        }
        match self.outbox.commit(batch).await {
            Ok(()) => self.wake(),
            Err(e) => {
                tracing::error!(error = %e, kind = ?event.kind, "notification not stored in the outbox")
            }
        }
    }

    /// Tells the worker that new rows are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The rows of `event` for `notifier`, if notifications are on (an empty batch otherwise).
pub fn rows(notifier: Option<&Notifier>, event: &Event, contact: Option<&Contact>) -> Batch {
    notifier.map_or_else(Batch::new, |n| n.rows(event, contact))
}

/// [`Notifier::enqueue`] when notifications are on.
pub async fn enqueue(notifier: Option<&Notifier>, event: &Event, contact: Option<&Contact>) {
    if let Some(n) = notifier {
        n.enqueue(event, contact).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contact_comes_from_verified_plausible_claims() {
        let m = |v: Value| v.as_object().unwrap().clone();
        let c = Contact::from_claims(&m(json!({
            "email": "mari@example.test", "phone_number": "+372 5555 0101"
        })))
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("mari@example.test"));
        assert_eq!(c.phone.as_deref(), Some("+372 5555 0101"));
        assert!(!format!("{c:?}").contains("mari"));
        let c = Contact::from_claims(&m(json!({
            "email": "mari@example.test", "email_verified": false, "phone_number": "+3725550101"
        })))
        .unwrap();
        assert_eq!(c.email, None);
        assert!(Contact::from_claims(&m(json!({"email": "not an address"}))).is_none());
        assert!(Contact::from_claims(&m(json!({"phone_number": "call me"}))).is_none());
        assert!(Contact::from_claims(&m(json!({"name": "Mari"}))).is_none());
    }

    #[test]
    fn events_serialize_as_documented() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let mut e = Event::failed("svc-a", None, SignatureType::OneTime, "signing_failed", t);
        e.id = "ab".into();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"id": "ab", "type": "signature.failed", "time": "2027-01-15T08:00:00Z",
                   "eserviceId": "svc-a", "signatureType": "ONETIME", "error": "signing_failed"})
        );
    }
}
