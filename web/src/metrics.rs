//! Prometheus metrics of the appliance: one [`Metrics`] registry with every `esigd_*` family, the
//! [`HsmMetrics`] adapter that turns `esigd_hsm` observer events into samples, scrape-time probes
//! (clock, HSM pool, one-time keys, listener counters, expiry dates, store disk use) and the text exposition ([`Metrics::render`]).
//!
//! Label values are route templates and fixed enumerations only (an [`Op`], a PKCS#11 `CKR_*`
//! name, a certificate profile, a TSA rejection kind, a `&'static str` chosen by the code): never
//! a raw path, a query string, a header, an identifier or anything else a client sent. Nothing is
//! logged here except a failure to encode the exposition (which names no request data).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use esigd_ca::ProfileKind;
use esigd_hsm::{HsmObserver, HsmOp, HsmStats};
use esigd_tsa::Rejection;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use esigd_service::meter::{Meter, Timer};

use crate::net::ListenerCounts;

/// Buckets of `esigd_http_request_duration_seconds`: 0.5 ms … 10 s.
pub const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `esigd_operation_duration_seconds` and `esigd_hsm_checkout_wait_seconds`:
/// 0.1 ms … 10 s (a SoftHSM signature takes ≈ 40 µs, a network HSM milliseconds).
pub const OPERATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Media type of the text exposition format served at `/metrics`.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Errors building the registry.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric family could not be created or registered (a programming error: duplicate or
    /// malformed name).
    #[error("metrics: cannot register {name}")]
    Register {
        /// The family at fault.
        name: &'static str,
        /// The library's reason.
        #[source]
        source: prometheus::Error,
    },
}

pub use esigd_service::meter::Op;

/// Scrape-time probe of the clock discipline: `Some((synchronized, max_error_seconds))`, or
/// `None` when the state cannot be read.
pub type ClockProbe = Box<dyn Fn() -> Option<(bool, f64)> + Send + Sync>;
/// Scrape-time probe of the HSM session pool (`None` when unknown, e.g. the HSM is closed).
pub type HsmProbe = Box<dyn Fn() -> Option<HsmStats> + Send + Sync>;
/// Scrape-time probe of a count (one-time keys ready); `None` when unknown.
pub type CountProbe = Box<dyn Fn() -> Option<usize> + Send + Sync>;
/// Scrape-time probe of one listener's connection counters.
pub type ListenerProbe = Box<dyn Fn() -> ListenerCounts + Send + Sync>;
/// Scrape-time probe of the dates the operator must act before: certificates' `notAfter`,
/// CRLs' `nextUpdate`.
pub type ExpiryProbe = Box<dyn Fn() -> Expiries + Send + Sync>;
/// Scrape-time probe of the store's disk use (`None` when it cannot be read).
pub type StoreDiskProbe = Box<dyn Fn() -> Option<StoreDisk> + Send + Sync>;

/// One date of [`Expiries`]: a fixed name (the label value) and seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expiry {
    /// The label value: a fixed name chosen by the code (`ca`, `tsa`, `tls_server`, ...).
    pub name: &'static str,
    /// The date, in seconds since the Unix epoch.
    pub unix_seconds: f64,
}

/// What an [`ExpiryProbe`] reports: `esigd_certificate_not_after_timestamp_seconds{certificate}`
/// and `esigd_crl_next_update_timestamp_seconds{crl}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expiries {
    /// Certificates esigd signs or serves with, by name, with their `notAfter`.
    pub certificates: Vec<Expiry>,
    /// CRLs esigd checks against, by name, with their (earliest) `nextUpdate`.
    pub crls: Vec<Expiry>,
}

/// What a [`StoreDiskProbe`] reports: `esigd_store_disk_bytes`,
/// `esigd_store_filesystem_available_bytes` and `esigd_store_filesystem_size_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreDisk {
    /// Bytes in the files of the store directory.
    pub used_bytes: u64,
    /// Bytes an unprivileged process may still write on the store's file system.
    pub filesystem_available_bytes: u64,
    /// Size of the store's file system in bytes.
    pub filesystem_size_bytes: u64,
}

/// Probes registered by the caller, run at every [`Metrics::render`].
#[derive(Default)]
struct Probes {
    clock: RwLock<Option<ClockProbe>>,
    hsm: RwLock<Option<HsmProbe>>,
    onetime: RwLock<Option<CountProbe>>,
    signing_sessions: RwLock<Option<CountProbe>>,
    scd_pending: RwLock<Option<CountProbe>>,
    listeners: RwLock<Vec<(&'static str, ListenerProbe)>>,
    expiries: RwLock<Option<ExpiryProbe>>,
    store_disk: RwLock<Option<StoreDiskProbe>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The HSM session gauge's `state` values (they add up to the sessions the process has open).
const SESSION_STATES: [&str; 3] = ["in_use", "idle", "dedicated"];

/// The metrics registry of the appliance. Share it as `Arc<Metrics>`; every method is cheap
/// (atomic updates) and safe to call from any thread.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    op_duration: HistogramVec,
    hsm_errors: IntCounterVec,
    hsm_sessions: IntGaugeVec,
    hsm_pool_size: IntGauge,
    hsm_checkout_wait: Histogram,
    onetime_ready: IntGauge,
    tsa_tokens: IntCounterVec,
    tsa_clock_rejections: IntCounter,
    ca_issued: IntCounterVec,
    signatures: IntCounterVec,
    errors: IntCounterVec,
    signing_sessions: IntGauge,
    signing_outcomes: IntCounterVec,
    scd_sessions: IntGaugeVec,
    scd_ended: IntCounterVec,
    scd_seconds: HistogramVec,
    notify_attempts: IntCounterVec,
    notify_failures: IntCounterVec,
    notify_depth: IntGauge,
    probes: Arc<Probes>,
}

/// The `channel` values of the `esigd_notify_*` families.
pub const NOTIFY_CHANNELS: [&str; 3] = ["webhook", "email", "sms"];

/// How a browser signing session ended (`esigd_signing_sessions_ended_total{outcome}`): signed, or
/// the error code sent back to the e-Service's callback.
pub const SIGNING_OUTCOMES: [&str; 5] = [
    "signed",
    "access_denied",
    "login_failed",
    "signing_failed",
    "payment_required",
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn reg<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    made: prometheus::Result<C>,
) -> Result<C, MetricsError> {
    let c = made.map_err(|source| MetricsError::Register { name, source })?;
    registry
        .register(Box::new(c.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(c)
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// A registry with every `esigd_*` family registered. Label combinations known in advance
    /// (operations, session states, clock rejections) start at zero so that their series exist
    /// from the first scrape.
    pub fn new() -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let http_requests = reg(
            &r,
            "esigd_http_requests_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_http_requests_total",
                    "HTTP requests answered, by listener, route template and status code.",
                ),
                &["listener", "route", "status"],
            ),
        )?;
        let http_duration = reg(
            &r,
            "esigd_http_request_duration_seconds",
            HistogramVec::new(
                histogram_opts(
                    "esigd_http_request_duration_seconds",
                    "Time from receiving an HTTP request to sending its response head, by listener and route template.",
                    HTTP_BUCKETS,
                ),
                &["listener", "route"],
            ),
        )?;
        let op_duration = reg(
            &r,
            "esigd_operation_duration_seconds",
            HistogramVec::new(
                histogram_opts(
                    "esigd_operation_duration_seconds",
                    "Duration of internal operations (HSM signing and key generation, certificate issuance, time-stamping, store writes).",
                    OPERATION_BUCKETS,
                ),
                &["op"],
            ),
        )?;
        let hsm_errors = reg(
            &r,
            "esigd_hsm_operation_errors_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_hsm_operation_errors_total",
                    "Failed PKCS#11 operations, by operation and PKCS#11 return value (other for non-PKCS#11 failures).",
                ),
                &["op", "kind"],
            ),
        )?;
        let hsm_sessions = reg(
            &r,
            "esigd_hsm_sessions",
            IntGaugeVec::new(
                Opts::new(
                    "esigd_hsm_sessions",
                    "HSM sessions open, by state: in_use and idle pooled sessions, dedicated sessions held by one-time keys.",
                ),
                &["state"],
            ),
        )?;
        let hsm_pool_size = reg(
            &r,
            "esigd_hsm_session_pool_size",
            IntGauge::new(
                "esigd_hsm_session_pool_size",
                "Configured size of the HSM session pool (hsm.sessions).",
            ),
        )?;
        let hsm_checkout_wait = reg(
            &r,
            "esigd_hsm_checkout_wait_seconds",
            Histogram::with_opts(histogram_opts(
                "esigd_hsm_checkout_wait_seconds",
                "Time a caller waited for a pooled HSM session.",
                OPERATION_BUCKETS,
            )),
        )?;
        let onetime_ready = reg(
            &r,
            "esigd_onetime_keys_ready",
            IntGauge::new(
                "esigd_onetime_keys_ready",
                "One-time signing keys generated in the HSM and ready to use.",
            ),
        )?;
        let tsa_tokens = reg(
            &r,
            "esigd_tsa_tokens_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_tsa_tokens_total",
                    "Time-stamp requests answered, by result: granted, or the rejection kind.",
                ),
                &["result"],
            ),
        )?;
        let tsa_clock_rejections = reg(
            &r,
            "esigd_tsa_clock_rejections_total",
            IntCounter::new(
                "esigd_tsa_clock_rejections_total",
                "Time-stamp requests refused because the clock was unsynchronised, too inaccurate or unreadable.",
            ),
        )?;
        let ca_issued = reg(
            &r,
            "esigd_ca_certificates_issued_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_ca_certificates_issued_total",
                    "Certificates issued, by profile.",
                ),
                &["profile"],
            ),
        )?;
        let signatures = reg(
            &r,
            "esigd_signatures_created_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_signatures_created_total",
                    "Signatures created, by format.",
                ),
                &["format"],
            ),
        )?;
        let errors = reg(
            &r,
            "esigd_errors_total",
            IntCounterVec::new(
                Opts::new("esigd_errors_total", "Errors answered or logged, by kind."),
                &["kind"],
            ),
        )?;
        let signing_sessions = reg(
            &r,
            "esigd_signing_sessions",
            IntGauge::new(
                "esigd_signing_sessions",
                "Browser signing sessions open now (limit ui.max_sessions).",
            ),
        )?;
        let signing_outcomes = reg(
            &r,
            "esigd_signing_sessions_ended_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_signing_sessions_ended_total",
                    "Browser signing sessions that went back to the e-Service, by outcome (signed or the callback's error code).",
                ),
                &["outcome"],
            ),
        )?;
        for outcome in SIGNING_OUTCOMES {
            signing_outcomes.with_label_values(&[outcome]);
        }
        let scd_sessions = reg(
            &r,
            "esigd_scd_sessions",
            IntGaugeVec::new(
                Opts::new(
                    "esigd_scd_sessions",
                    "Signatures waiting for citizens' devices now (state=\"pending\"; limit scd.max_pending).",
                ),
                &["state"],
            ),
        )?;
        scd_sessions.with_label_values(&["pending"]);
        let scd_ended = reg(
            &r,
            "esigd_scd_sessions_ended_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_scd_sessions_ended_total",
                    "Remote SCD sessions (onboarding, signing) that ended, by the device's endResult (TIMEOUT when esigd stopped waiting, ERROR when the service failed).",
                ),
                &["kind", "end"],
            ),
        )?;
        let scd_seconds = reg(
            &r,
            "esigd_scd_session_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "esigd_scd_session_seconds",
                    "Time from asking a citizen's device to its answer (or to giving up), by kind.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0,
                ]),
                &["kind"],
            ),
        )?;
        let notify_attempts = reg(
            &r,
            "esigd_notify_attempts_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_notify_attempts_total",
                    "Notification delivery attempts from the outbox, by channel (webhook, email, sms).",
                ),
                &["channel"],
            ),
        )?;
        let notify_failures = reg(
            &r,
            "esigd_notify_failures_total",
            IntCounterVec::new(
                Opts::new(
                    "esigd_notify_failures_total",
                    "Notification delivery attempts that failed (retried later, or dropped), by channel.",
                ),
                &["channel"],
            ),
        )?;
        for channel in NOTIFY_CHANNELS {
            notify_attempts.with_label_values(&[channel]);
            notify_failures.with_label_values(&[channel]);
        }
        let notify_depth = reg(
            &r,
            "esigd_notify_outbox_depth",
            IntGauge::new(
                "esigd_notify_outbox_depth",
                "Notifications waiting for delivery in the durable outbox (at the last delivery round; counted up to 100000).",
            ),
        )?;
        let probes = Arc::new(Probes::default());
        let collector =
            ProbeCollector::new(probes.clone()).map_err(|source| MetricsError::Register {
                name: "esigd_clock_synchronized",
                source,
            })?;
        r.register(Box::new(collector))
            .map_err(|source| MetricsError::Register {
                name: "esigd_clock_synchronized",
                source,
            })?;
        for op in Op::ALL {
            op_duration.with_label_values(&[op.as_str()]);
        }
        for state in SESSION_STATES {
            hsm_sessions.with_label_values(&[state]);
        }
        Ok(Metrics {
            registry: r,
            http_requests,
            http_duration,
            op_duration,
            hsm_errors,
            hsm_sessions,
            hsm_pool_size,
            hsm_checkout_wait,
            onetime_ready,
            tsa_tokens,
            tsa_clock_rejections,
            ca_issued,
            signatures,
            errors,
            signing_sessions,
            signing_outcomes,
            scd_sessions,
            scd_ended,
            scd_seconds,
            notify_attempts,
            notify_failures,
            notify_depth,
            probes,
        })
    }

    /// The underlying registry, for families owned by other modules.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered HTTP request. `route` must be a route template (`MatchedPath`) or
    /// `"unmatched"`; [`crate::observe`] is the only caller.
    pub(crate) fn http_request(
        &self,
        listener: &'static str,
        route: &str,
        status: axum::http::StatusCode,
        elapsed: Duration,
    ) {
        self.http_requests
            .with_label_values(&[listener, route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[listener, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Records the duration of one operation.
    pub fn observe(&self, op: Op, d: Duration) {
        self.op_duration
            .with_label_values(&[op.as_str()])
            .observe(d.as_secs_f64());
    }

    /// Starts timing `op`; the duration is recorded when the timer is finished or dropped.
    pub fn timer(&self, op: Op) -> Timer<'_> {
        Timer::start(self, op)
    }

    /// An [`HsmObserver`] feeding this registry: pass it to `Hsm::open_with_observer`. It holds
    /// handles to the families only (no reference back to `Metrics`), so a probe that captures
    /// the `Hsm` does not create a reference cycle.
    pub fn hsm_observer(&self) -> Arc<HsmMetrics> {
        Arc::new(HsmMetrics {
            op_duration: self.op_duration.clone(),
            errors: self.hsm_errors.clone(),
            sessions: self.hsm_sessions.clone(),
            checkout_wait: self.hsm_checkout_wait.clone(),
            onetime_ready: self.onetime_ready.clone(),
        })
    }

    /// Counts a granted time-stamp token.
    pub fn tsa_granted(&self) {
        self.tsa_tokens.with_label_values(&["granted"]).inc();
    }

    /// Counts a rejected time-stamp request under its kind; clock rejections also count in
    /// `esigd_tsa_clock_rejections_total`.
    pub fn tsa_rejected(&self, rejection: &Rejection) {
        self.tsa_tokens.with_label_values(&[rejection.kind()]).inc();
        if matches!(rejection, Rejection::Clock(_)) {
            self.tsa_clock_rejections.inc();
        }
    }

    /// Counts a time-stamp request that failed after the TSA granted it (e.g. `"audit_store"`
    /// when the audit record could not be stored and the token was withheld).
    pub fn tsa_failed(&self, reason: &'static str) {
        self.tsa_tokens.with_label_values(&[reason]).inc();
    }

    /// Counts an issued certificate.
    pub fn ca_issued(&self, profile: ProfileKind) {
        self.ca_issued.with_label_values(&[profile.as_str()]).inc();
    }

    /// Counts a created signature; `format` is a fixed name such as `"cades"`, `"xades"`,
    /// `"pades"` or `"raw"`.
    pub fn signature_created(&self, format: &'static str) {
        self.signatures.with_label_values(&[format]).inc();
    }

    /// Counts a browser signing session that went back to the e-Service with `outcome` (one of
    /// [`SIGNING_OUTCOMES`]; anything else counts as `signing_failed`).
    pub fn signing_session_ended(&self, outcome: &str) {
        let outcome = SIGNING_OUTCOMES
            .into_iter()
            .find(|o| *o == outcome)
            .unwrap_or("signing_failed");
        self.signing_outcomes.with_label_values(&[outcome]).inc();
    }

    /// Counts an error under a fixed kind (e.g. `"hsm_unavailable"`, `"store"`, `"bad_request"`).
    pub fn error(&self, kind: &'static str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// Installs the clock probe behind `esigd_clock_synchronized` and
    /// `esigd_clock_max_error_seconds` (absent until a probe is installed; a probe answering
    /// `None` gives synchronized 0 and max error NaN).
    pub fn set_clock_probe(&self, probe: ClockProbe) {
        *write(&self.probes.clock) = Some(probe);
    }

    /// Installs the HSM pool probe that refreshes `esigd_hsm_sessions` and
    /// `esigd_hsm_session_pool_size` at scrape time (the observer also updates the session
    /// gauge as sessions move).
    pub fn set_hsm_probe(&self, probe: HsmProbe) {
        *write(&self.probes.hsm) = Some(probe);
    }

    /// Installs the probe that refreshes `esigd_onetime_keys_ready` at scrape time.
    pub fn set_onetime_keys_probe(&self, probe: CountProbe) {
        *write(&self.probes.onetime) = Some(probe);
    }

    /// Installs the probe that refreshes `esigd_signing_sessions` at scrape time.
    pub fn set_signing_sessions_probe(&self, probe: CountProbe) {
        *write(&self.probes.signing_sessions) = Some(probe);
    }

    /// Installs the probe that refreshes `esigd_scd_sessions{state="pending"}` at scrape time.
    pub fn set_scd_pending_probe(&self, probe: CountProbe) {
        *write(&self.probes.scd_pending) = Some(probe);
    }

    /// Counts a Remote SCD session's ending and its duration.
    pub fn scd_session_ended(&self, kind: &'static str, end: &'static str, d: Duration) {
        self.scd_ended.with_label_values(&[kind, end]).inc();
        self.scd_seconds
            .with_label_values(&[kind])
            .observe(d.as_secs_f64());
    }

    /// Installs (or replaces) the counter probe of listener `listener` (e.g. `"public"`,
    /// `"eservice"`) behind `esigd_listener_connections_total` and
    /// `esigd_listener_connections_active`.
    pub fn set_listener_probe(&self, listener: &'static str, probe: ListenerProbe) {
        let mut listeners = write(&self.probes.listeners);
        listeners.retain(|(name, _)| *name != listener);
        listeners.push((listener, probe));
    }

    /// Installs the probe behind `esigd_certificate_not_after_timestamp_seconds` and
    /// `esigd_crl_next_update_timestamp_seconds`.
    pub fn set_expiry_probe(&self, probe: ExpiryProbe) {
        *write(&self.probes.expiries) = Some(probe);
    }

    /// Installs the probe behind `esigd_store_disk_bytes`,
    /// `esigd_store_filesystem_available_bytes` and `esigd_store_filesystem_size_bytes`.
    pub fn set_store_disk_probe(&self, probe: StoreDiskProbe) {
        *write(&self.probes.store_disk) = Some(probe);
    }

    /// Removes every probe (e.g. at shutdown, to drop the handles they captured).
    pub fn clear_probes(&self) {
        *write(&self.probes.clock) = None;
        *write(&self.probes.hsm) = None;
        *write(&self.probes.onetime) = None;
        *write(&self.probes.signing_sessions) = None;
        *write(&self.probes.scd_pending) = None;
        write(&self.probes.listeners).clear();
        *write(&self.probes.expiries) = None;
        *write(&self.probes.store_disk) = None;
    }

    /// Runs the probes and renders every family in the text exposition format 0.0.4
    /// ([`TEXT_CONTENT_TYPE`]). Probes may block briefly: call it from a blocking thread.
    pub fn render(&self) -> String {
        if let Some(stats) = read(&self.probes.hsm).as_ref().and_then(|p| p()) {
            let idle = stats.open.saturating_sub(stats.in_use);
            self.hsm_sessions
                .with_label_values(&["in_use"])
                .set(gauge_value(stats.in_use));
            self.hsm_sessions
                .with_label_values(&["idle"])
                .set(gauge_value(idle));
            self.hsm_sessions
                .with_label_values(&["dedicated"])
                .set(gauge_value(stats.dedicated));
            self.hsm_pool_size.set(gauge_value(stats.pool_size));
        }
        if let Some(ready) = read(&self.probes.onetime).as_ref().and_then(|p| p()) {
            self.onetime_ready.set(gauge_value(ready));
        }
        if let Some(open) = read(&self.probes.signing_sessions)
            .as_ref()
            .and_then(|p| p())
        {
            self.signing_sessions.set(gauge_value(open));
        }
        if let Some(pending) = read(&self.probes.scd_pending).as_ref().and_then(|p| p()) {
            self.scd_sessions
                .with_label_values(&["pending"])
                .set(gauge_value(pending));
        }
        // The clock and listener families are produced by `ProbeCollector` during `gather`.
        let families = self.registry.gather();
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "encoding the metrics exposition failed");
        }
        out
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The domain's events, counted in this registry.
impl Meter for Metrics {
    fn observe(&self, op: Op, d: Duration) {
        Metrics::observe(self, op, d);
    }
    fn error(&self, kind: &'static str) {
        Metrics::error(self, kind);
    }
    fn signature_created(&self, format: &'static str) {
        Metrics::signature_created(self, format);
    }
    fn ca_issued(&self, profile: ProfileKind) {
        Metrics::ca_issued(self, profile);
    }
    fn tsa_granted(&self) {
        Metrics::tsa_granted(self);
    }
    fn tsa_rejected(&self, rejection: &Rejection) {
        Metrics::tsa_rejected(self, rejection);
    }
    fn tsa_failed(&self, reason: &'static str) {
        Metrics::tsa_failed(self, reason);
    }
    fn signing_session_ended(&self, outcome: &str) {
        Metrics::signing_session_ended(self, outcome);
    }
    fn scd_session_ended(&self, kind: &'static str, end: &'static str, d: Duration) {
        Metrics::scd_session_ended(self, kind, end, d);
    }
    fn notify_attempt(&self, channel: &'static str, ok: bool) {
        self.notify_attempts.with_label_values(&[channel]).inc();
        if !ok {
            self.notify_failures.with_label_values(&[channel]).inc();
        }
    }
    fn notify_outbox_depth(&self, depth: usize) {
        self.notify_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

/// The [`HsmObserver`] of the appliance (from [`Metrics::hsm_observer`]):
///
/// * `C_Sign` (persistent and one-time keys) → `esigd_operation_duration_seconds{op="hsm_sign"}`,
///   `C_GenerateKeyPair` (persistent and ephemeral) → `{op="hsm_keygen"}`; other HSM operations
///   are not timed;
/// * every failed operation → `esigd_hsm_operation_errors_total{op,kind}` with `op` the
///   `esigd_hsm::HsmOp` label (`sign`, `sign_one_time`, `open_session`, …) and `kind` the PKCS#11
///   return value (`CKR_DEVICE_ERROR`, …) or `other`;
/// * pool checkout waits → `esigd_hsm_checkout_wait_seconds`;
/// * pool occupancy → `esigd_hsm_sessions{state="in_use"|"idle"}`;
/// * one-time keys ready → `esigd_onetime_keys_ready`.
#[derive(Clone)]
pub struct HsmMetrics {
    op_duration: HistogramVec,
    errors: IntCounterVec,
    sessions: IntGaugeVec,
    checkout_wait: Histogram,
    onetime_ready: IntGauge,
}

impl std::fmt::Debug for HsmMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmMetrics").finish_non_exhaustive()
    }
}

/// The `kind` label of an HSM error: a well-formed `CKR_*` name (a finite set), else `other`
/// (non-PKCS#11 errors carry free text that must not become a label value).
pub fn hsm_error_kind(error: &str) -> &str {
    let well_formed = error.len() <= 64
        && error.starts_with("CKR_")
        && error
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if well_formed { error } else { "other" }
}

impl HsmObserver for HsmMetrics {
    fn operation(&self, op: HsmOp, elapsed: Duration, error: Option<&str>) {
        if let Some(timed) = Op::of_hsm(op) {
            self.op_duration
                .with_label_values(&[timed.as_str()])
                .observe(elapsed.as_secs_f64());
        }
        if let Some(e) = error {
            self.errors
                .with_label_values(&[op.as_str(), hsm_error_kind(e)])
                .inc();
        }
    }

    fn checkout_wait(&self, wait: Duration) {
        self.checkout_wait.observe(wait.as_secs_f64());
    }

    fn sessions(&self, in_use: usize, idle: usize) {
        self.sessions
            .with_label_values(&["in_use"])
            .set(gauge_value(in_use));
        self.sessions
            .with_label_values(&["idle"])
            .set(gauge_value(idle));
    }

    fn one_time_keys_ready(&self, ready: usize) {
        self.onetime_ready.set(gauge_value(ready));
    }
}

/// Families computed from probes during `gather`: the clock gauges and the listener counters.
/// A family whose probe is not installed has no samples and is left out of the exposition.
struct ProbeCollector {
    probes: Arc<Probes>,
    clock_sync: Desc,
    clock_max_error: Desc,
    conn_total: Desc,
    conn_active: Desc,
    cert_not_after: Desc,
    crl_next_update: Desc,
    store_bytes: Desc,
    fs_available: Desc,
    fs_size: Desc,
}

const CLOCK_SYNC: &str = "esigd_clock_synchronized";
const CLOCK_SYNC_HELP: &str =
    "Whether the kernel clock is synchronised to a time source (1) or not (0).";
const CLOCK_MAX_ERROR: &str = "esigd_clock_max_error_seconds";
const CLOCK_MAX_ERROR_HELP: &str =
    "Maximum error of the kernel clock as estimated by the kernel (NaN when unreadable).";
const CONN_TOTAL: &str = "esigd_listener_connections_total";
const CONN_TOTAL_HELP: &str = "Connections seen by a listener, by result: accepted, rejected_ip, rejected_limit, handshake_failed.";
const CONN_ACTIVE: &str = "esigd_listener_connections_active";
const CONN_ACTIVE_HELP: &str = "Connections open on a listener right now.";
const CERT_NOT_AFTER: &str = "esigd_certificate_not_after_timestamp_seconds";
const CERT_NOT_AFTER_HELP: &str = "notAfter of a certificate esigd signs or serves with (ca, tsa, ocsp, tls_server), in Unix seconds.";
const CRL_NEXT_UPDATE: &str = "esigd_crl_next_update_timestamp_seconds";
const CRL_NEXT_UPDATE_HELP: &str =
    "Earliest nextUpdate of the CRLs in a file esigd checks against (tls_client), in Unix seconds.";
const STORE_BYTES: &str = "esigd_store_disk_bytes";
const STORE_BYTES_HELP: &str = "Bytes in the files of the store directory (RocksDB).";
const FS_AVAILABLE: &str = "esigd_store_filesystem_available_bytes";
const FS_AVAILABLE_HELP: &str =
    "Bytes an unprivileged process may still write on the store's file system.";
const FS_SIZE: &str = "esigd_store_filesystem_size_bytes";
const FS_SIZE_HELP: &str = "Size of the store's file system in bytes.";

impl ProbeCollector {
    fn new(probes: Arc<Probes>) -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_string(),
                help.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
        };
        Ok(ProbeCollector {
            probes,
            clock_sync: desc(CLOCK_SYNC, CLOCK_SYNC_HELP, &[])?,
            clock_max_error: desc(CLOCK_MAX_ERROR, CLOCK_MAX_ERROR_HELP, &[])?,
            conn_total: desc(CONN_TOTAL, CONN_TOTAL_HELP, &["listener", "result"])?,
            conn_active: desc(CONN_ACTIVE, CONN_ACTIVE_HELP, &["listener"])?,
            cert_not_after: desc(CERT_NOT_AFTER, CERT_NOT_AFTER_HELP, &["certificate"])?,
            crl_next_update: desc(CRL_NEXT_UPDATE, CRL_NEXT_UPDATE_HELP, &["crl"])?,
            store_bytes: desc(STORE_BYTES, STORE_BYTES_HELP, &[])?,
            fs_available: desc(FS_AVAILABLE, FS_AVAILABLE_HELP, &[])?,
            fs_size: desc(FS_SIZE, FS_SIZE_HELP, &[])?,
        })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn gauge_sample(labels: Vec<LabelPair>, value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::from_label(labels);
    m.set_gauge(g);
    m
}

fn counter_sample(labels: Vec<LabelPair>, value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for ProbeCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![
            &self.clock_sync,
            &self.clock_max_error,
            &self.conn_total,
            &self.conn_active,
            &self.cert_not_after,
            &self.crl_next_update,
            &self.store_bytes,
            &self.fs_available,
            &self.fs_size,
        ]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(9);
        if let Some(probe) = read(&self.probes.clock).as_ref() {
            let (sync, max_error) = match probe() {
                Some((sync, max_error)) => (if sync { 1.0 } else { 0.0 }, max_error),
                None => (0.0, f64::NAN),
            };
            out.push(family(
                CLOCK_SYNC,
                CLOCK_SYNC_HELP,
                MetricType::GAUGE,
                vec![gauge_sample(Vec::new(), sync)],
            ));
            out.push(family(
                CLOCK_MAX_ERROR,
                CLOCK_MAX_ERROR_HELP,
                MetricType::GAUGE,
                vec![gauge_sample(Vec::new(), max_error)],
            ));
        }
        let listeners = read(&self.probes.listeners);
        if !listeners.is_empty() {
            let mut total = Vec::with_capacity(listeners.len() * 4);
            let mut active = Vec::with_capacity(listeners.len());
            for (name, probe) in listeners.iter() {
                let c = probe();
                for (result, value) in [
                    ("accepted", c.accepted),
                    ("rejected_ip", c.rejected_ip),
                    ("rejected_limit", c.rejected_limit),
                    ("handshake_failed", c.handshake_failed),
                ] {
                    total.push(counter_sample(
                        vec![label("listener", name), label("result", result)],
                        value,
                    ));
                }
                active.push(gauge_sample(vec![label("listener", name)], c.active as f64));
            }
            out.push(family(
                CONN_TOTAL,
                CONN_TOTAL_HELP,
                MetricType::COUNTER,
                total,
            ));
            out.push(family(
                CONN_ACTIVE,
                CONN_ACTIVE_HELP,
                MetricType::GAUGE,
                active,
            ));
        }
        drop(listeners);
        if let Some(probe) = read(&self.probes.expiries).as_ref() {
            let dates = probe();
            for (name, help, label_name, items) in [
                (
                    CERT_NOT_AFTER,
                    CERT_NOT_AFTER_HELP,
                    "certificate",
                    &dates.certificates,
                ),
                (CRL_NEXT_UPDATE, CRL_NEXT_UPDATE_HELP, "crl", &dates.crls),
            ] {
                if !items.is_empty() {
                    let samples = items
                        .iter()
                        .map(|e| gauge_sample(vec![label(label_name, e.name)], e.unix_seconds))
                        .collect();
                    out.push(family(name, help, MetricType::GAUGE, samples));
                }
            }
        }
        if let Some(disk) = read(&self.probes.store_disk).as_ref().and_then(|p| p()) {
            for (name, help, value) in [
                (STORE_BYTES, STORE_BYTES_HELP, disk.used_bytes),
                (
                    FS_AVAILABLE,
                    FS_AVAILABLE_HELP,
                    disk.filesystem_available_bytes,
                ),
                (FS_SIZE, FS_SIZE_HELP, disk.filesystem_size_bytes),
            ] {
                out.push(family(
                    name,
                    help,
                    MetricType::GAUGE,
                    vec![gauge_sample(Vec::new(), value as f64)],
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new().unwrap()
    }

    #[test]
    fn operations_are_labelled_and_preinitialised() {
        let m = metrics();
        let text = m.render();
        for op in Op::ALL {
            assert!(
                text.contains(&format!(
                    "esigd_operation_duration_seconds_count{{op=\"{}\"}} 0",
                    op.as_str()
                )),
                "{text}"
            );
        }
        m.observe(Op::CaIssue, Duration::from_millis(3));
        m.timer(Op::TsaStamp).finish();
        drop(m.timer(Op::StoreWrite));
        m.timer(Op::StoreWrite).discard();
        let text = m.render();
        assert!(text.contains("esigd_operation_duration_seconds_count{op=\"ca_issue\"} 1"));
        assert!(text.contains("esigd_operation_duration_seconds_count{op=\"tsa_stamp\"} 1"));
        assert!(text.contains("esigd_operation_duration_seconds_count{op=\"store_write\"} 1"));
        assert!(
            text.contains(
                "esigd_operation_duration_seconds_bucket{op=\"ca_issue\",le=\"0.005\"} 1"
            )
        );
    }

    #[test]
    fn hsm_observer_maps_operations_and_errors() {
        let m = metrics();
        let obs = m.hsm_observer();
        obs.operation(HsmOp::Sign, Duration::from_micros(40), None);
        obs.operation(HsmOp::SignOneTime, Duration::from_micros(40), None);
        obs.operation(HsmOp::GenerateEphemeral, Duration::from_millis(1), None);
        obs.operation(HsmOp::Login, Duration::from_millis(1), None);
        obs.operation(
            HsmOp::Sign,
            Duration::from_micros(10),
            Some("CKR_DEVICE_ERROR"),
        );
        obs.operation(
            HsmOp::OpenSession,
            Duration::from_micros(10),
            Some("Library loading error: /secret/path.so"),
        );
        obs.checkout_wait(Duration::from_millis(2));
        obs.sessions(3, 1);
        obs.one_time_keys_ready(17);
        let text = m.render();
        assert!(text.contains("esigd_operation_duration_seconds_count{op=\"hsm_sign\"} 3"));
        assert!(text.contains("esigd_operation_duration_seconds_count{op=\"hsm_keygen\"} 1"));
        assert!(
            text.contains(
                "esigd_hsm_operation_errors_total{kind=\"CKR_DEVICE_ERROR\",op=\"sign\"} 1"
            )
        );
        assert!(
            text.contains("esigd_hsm_operation_errors_total{kind=\"other\",op=\"open_session\"} 1")
        );
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("esigd_hsm_checkout_wait_seconds_count 1"));
        assert!(text.contains("esigd_hsm_sessions{state=\"in_use\"} 3"));
        assert!(text.contains("esigd_hsm_sessions{state=\"idle\"} 1"));
        assert!(text.contains("esigd_onetime_keys_ready 17"));
    }

    #[test]
    fn hsm_error_kinds_are_bounded() {
        assert_eq!(hsm_error_kind("CKR_PIN_INCORRECT"), "CKR_PIN_INCORRECT");
        assert_eq!(hsm_error_kind("CKR_"), "CKR_");
        assert_eq!(hsm_error_kind("CKR_x"), "other");
        assert_eq!(hsm_error_kind("CKR_A\"}"), "other");
        assert_eq!(hsm_error_kind(&format!("CKR_{}", "A".repeat(80))), "other");
        assert_eq!(hsm_error_kind(""), "other");
    }

    #[test]
    fn probes_run_at_render() {
        let m = metrics();
        let text = m.render();
        assert!(!text.contains("esigd_clock_synchronized"), "{text}");
        assert!(!text.contains("esigd_listener_connections_total"), "{text}");
        m.set_clock_probe(Box::new(|| Some((true, 0.25))));
        m.set_hsm_probe(Box::new(|| {
            Some(HsmStats {
                pool_size: 4,
                open: 3,
                in_use: 2,
                dedicated: 5,
            })
        }));
        m.set_onetime_keys_probe(Box::new(|| Some(9)));
        m.set_listener_probe(
            "public",
            Box::new(|| ListenerCounts {
                accepted: 10,
                rejected_ip: 1,
                rejected_limit: 2,
                handshake_failed: 3,
                active: 4,
            }),
        );
        m.set_listener_probe("eservice", Box::new(ListenerCounts::default));
        let text = m.render();
        assert!(text.contains("esigd_clock_synchronized 1\n"), "{text}");
        assert!(
            text.contains("esigd_clock_max_error_seconds 0.25\n"),
            "{text}"
        );
        assert!(text.contains("esigd_hsm_sessions{state=\"in_use\"} 2"));
        assert!(text.contains("esigd_hsm_sessions{state=\"idle\"} 1"));
        assert!(text.contains("esigd_hsm_sessions{state=\"dedicated\"} 5"));
        assert!(text.contains("esigd_hsm_session_pool_size 4"));
        assert!(text.contains("esigd_onetime_keys_ready 9"));
        assert!(text.contains(
            "esigd_listener_connections_total{listener=\"public\",result=\"accepted\"} 10"
        ));
        assert!(text.contains(
            "esigd_listener_connections_total{listener=\"public\",result=\"handshake_failed\"} 3"
        ));
        assert!(text.contains("esigd_listener_connections_active{listener=\"public\"} 4"));
        assert!(text.contains("esigd_listener_connections_active{listener=\"eservice\"} 0"));
        assert!(text.contains("# TYPE esigd_listener_connections_total counter"));

        // Replacing a listener probe keeps one series set per listener.
        m.set_listener_probe("public", Box::new(ListenerCounts::default));
        let text = m.render();
        assert_eq!(
            text.matches("esigd_listener_connections_active{listener=\"public\"}")
                .count(),
            1
        );

        m.set_clock_probe(Box::new(|| None));
        let text = m.render();
        assert!(text.contains("esigd_clock_synchronized 0\n"), "{text}");
        assert!(
            text.contains("esigd_clock_max_error_seconds NaN\n"),
            "{text}"
        );

        m.clear_probes();
        assert!(!m.render().contains("esigd_clock_synchronized"));
    }

    #[test]
    fn business_counters() {
        use esigd_tsa::ClockRejection;
        let m = metrics();
        m.tsa_granted();
        m.tsa_rejected(&Rejection::UnacceptedExtension);
        m.tsa_rejected(&Rejection::Clock(ClockRejection::Unsynchronized {
            max_error: Duration::from_secs(16),
        }));
        m.tsa_failed("audit_store");
        m.ca_issued(ProfileKind::OneTime);
        m.signature_created("cades");
        m.error("store");
        let text = m.render();
        assert!(text.contains("esigd_tsa_tokens_total{result=\"granted\"} 1"));
        assert!(text.contains("esigd_tsa_tokens_total{result=\"unaccepted_extension\"} 1"));
        assert!(text.contains("esigd_tsa_tokens_total{result=\"clock_unsynchronized\"} 1"));
        assert!(text.contains("esigd_tsa_tokens_total{result=\"audit_store\"} 1"));
        assert!(text.contains("esigd_tsa_clock_rejections_total 1"));
        assert!(text.contains("esigd_ca_certificates_issued_total{profile=\"one-time\"} 1"));
        assert!(text.contains("esigd_signatures_created_total{format=\"cades\"} 1"));
        assert!(text.contains("esigd_errors_total{kind=\"store\"} 1"));
    }

    #[test]
    fn http_requests_are_labelled() {
        let m = metrics();
        m.http_request(
            "public",
            "/pki/certs/{serial}",
            axum::http::StatusCode::NOT_FOUND,
            Duration::from_millis(2),
        );
        let text = m.render();
        assert!(text.contains(
            "esigd_http_requests_total{listener=\"public\",route=\"/pki/certs/{serial}\",status=\"404\"} 1"
        ), "{text}");
        assert!(text.contains(
            "esigd_http_request_duration_seconds_bucket{listener=\"public\",route=\"/pki/certs/{serial}\",le=\"0.0025\"} 1"
        ), "{text}");
    }

    #[test]
    fn expiry_and_store_disk_probes_run_at_render() {
        let m = metrics();
        let text = m.render();
        assert!(!text.contains("esigd_certificate_not_after_timestamp_seconds"));
        assert!(!text.contains("esigd_store_disk_bytes"));
        m.set_expiry_probe(Box::new(|| Expiries {
            certificates: vec![
                Expiry {
                    name: "ca",
                    unix_seconds: 2_000_000_000.0,
                },
                Expiry {
                    name: "tls_server",
                    unix_seconds: 1_900_000_000.0,
                },
            ],
            crls: vec![Expiry {
                name: "tls_client",
                unix_seconds: 1_800_000_000.0,
            }],
        }));
        m.set_store_disk_probe(Box::new(|| {
            Some(StoreDisk {
                used_bytes: 4096,
                filesystem_available_bytes: 1 << 30,
                filesystem_size_bytes: 1 << 33,
            })
        }));
        let text = m.render();
        assert!(
            text.contains(
                "esigd_certificate_not_after_timestamp_seconds{certificate=\"ca\"} 2000000000"
            ),
            "{text}"
        );
        assert!(text.contains(
            "esigd_certificate_not_after_timestamp_seconds{certificate=\"tls_server\"} 1900000000"
        ));
        assert!(
            text.contains("esigd_crl_next_update_timestamp_seconds{crl=\"tls_client\"} 1800000000")
        );
        assert!(text.contains("esigd_store_disk_bytes 4096"), "{text}");
        assert!(text.contains("esigd_store_filesystem_available_bytes 1073741824"));
        assert!(text.contains("esigd_store_filesystem_size_bytes 8589934592"));
        m.clear_probes();
        assert!(!m.render().contains("esigd_store_disk_bytes"));
    }
}
