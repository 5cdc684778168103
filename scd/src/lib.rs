//! The Remote SCD protocol of esigd: how the appliance reaches a citizen's own signature-creation
//! device (SCD) through a Remote SCD service, and how a device talks to that service.
//!
//! The protocol follows the shape and field names of the Smart-ID RP API v3 *notification* flow
//! (a `POST` creates a session and returns `{sessionID, vc}`, `GET /session/{id}?timeoutMs=` long
//! polls for the end result, `RAW_DIGEST_SIGNATURE`, `interactions`, `endResult` codes, RFC 9457
//! errors), so that an adapter for a real Smart-ID service maps onto the same session semantics.
//! The one extension is onboarding: a session for a device (`SCDRemoteId`) whose result carries a
//! PKCS#10 CSR made by a new key on the device and bound to the session's challenge. The protocol is
//! documented as OpenAPI in `scd/openapi/rscd-v1.yaml`.
//!
//! # No I/O
//!
//! Like `esigd-pki`, nothing here does I/O or reads the clock: times are parameters, randomness
//! comes in as a `rand_core::CryptoRngCore`. The HTTP client (the connector the appliance uses)
//! and the reference service and device are built on these types elsewhere.
//!
//! # Modules
//!
//! | module | contents |
//! |---|---|
//! | [`api`] | RSCD API v1 (appliance → Remote SCD service) request and response bodies |
//! | [`device`] | Device API v1 (device ↔ Remote SCD service) bodies and signed-call claims |
//! | [`jws`] | signed device calls and result proofs (ES256 compact JWS) |
//! | [`interactions`] | what the device shows: the Smart-ID `interactions` list, its base64 form and limits |
//! | [`vc`] | verification codes, computed the same way by the appliance, the service and the device |
//! | [`session`] | the session state machine (CREATED → DELIVERED → COMPLETE), time as a parameter |
//! | [`pseudonym`] | the pseudonym a citizen types instead of logging in: format, generation, parsing |
//! | [`problem`] | RFC 9457 problem details with Smart-ID style `errors[].code` |
//! | [`connector`] | the [`connector::RemoteScdConnector`] trait a provider adapter implements |

pub mod api;
pub mod connector;
pub mod device;
mod error;
pub mod interactions;
pub mod jws;
pub mod problem;
pub mod pseudonym;
pub mod session;
pub mod vc;

pub use error::ScdError;
