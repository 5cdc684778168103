//! Lints the whole `/metrics` exposition with `promtool check metrics` (Debian package
//! `prometheus`, installed by `scripts/install-deps.sh`): every `esigd_*` family is exercised at
//! least once (HTTP through the real middleware, HSM through the observer adapter, scrape-time
//! probes included), rendered, and piped into promtool, which must exit 0 and print nothing.
//! A missing promtool fails the test; it is never skipped.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use esigd_ca::ProfileKind;
use esigd_hsm::{HsmObserver, HsmOp, HsmStats};
use esigd_tsa::{ClockRejection, Rejection};
use esigd_web::metrics::{Metrics, Op};
use esigd_web::net::ListenerCounts;
use tower::ServiceExt;

/// Every family the appliance exports; each must appear in the exercised exposition.
const FAMILIES: &[&str] = &[
    "esigd_http_requests_total",
    "esigd_http_request_duration_seconds",
    "esigd_operation_duration_seconds",
    "esigd_hsm_operation_errors_total",
    "esigd_hsm_sessions",
    "esigd_hsm_session_pool_size",
    "esigd_hsm_checkout_wait_seconds",
    "esigd_onetime_keys_ready",
    "esigd_tsa_tokens_total",
    "esigd_tsa_clock_rejections_total",
    "esigd_ca_certificates_issued_total",
    "esigd_signatures_created_total",
    "esigd_errors_total",
    "esigd_clock_synchronized",
    "esigd_clock_max_error_seconds",
    "esigd_listener_connections_total",
    "esigd_listener_connections_active",
];

async fn exercise(metrics: &Arc<Metrics>) {
    // HTTP: through the middleware, on a matched route, a 404 and a 405.
    let app = Router::new()
        .route("/pki/certs/{serial}", get(|| async { "ok" }))
        .merge(esigd_web::routes::metrics::router(
            metrics.clone(),
            Vec::new(),
        ))
        .layer(esigd_web::observe::layer(metrics.clone(), "public"));
    for (method, uri) in [
        ("GET", "/pki/certs/01ab"),
        ("GET", "/no/such/route"),
        ("POST", "/pki/certs/01ab"),
        ("GET", "/metrics"),
    ] {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50000))));
        let r = app.clone().oneshot(req).await.expect("infallible");
        assert_ne!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    // Operations, by hand and through the timer.
    metrics.observe(Op::CaIssue, Duration::from_millis(4));
    metrics.timer(Op::TsaStamp).finish();
    drop(metrics.timer(Op::StoreWrite));

    // HSM observer.
    let hsm = metrics.hsm_observer();
    hsm.operation(HsmOp::Sign, Duration::from_micros(45), None);
    hsm.operation(HsmOp::GenerateEphemeral, Duration::from_millis(2), None);
    hsm.operation(
        HsmOp::SignOneTime,
        Duration::from_micros(30),
        Some("CKR_DEVICE_ERROR"),
    );
    hsm.operation(
        HsmOp::OpenSession,
        Duration::from_micros(30),
        Some("some library failure"),
    );
    hsm.checkout_wait(Duration::from_micros(120));
    hsm.sessions(1, 3);
    hsm.one_time_keys_ready(8);

    // Business counters.
    metrics.tsa_granted();
    metrics.tsa_rejected(&Rejection::UnacceptedPolicy(
        "1.2.3.4".parse().expect("oid"),
    ));
    metrics.tsa_rejected(&Rejection::Clock(ClockRejection::MaxErrorExceedsAccuracy {
        max_error: Duration::from_secs(2),
        accuracy: Duration::from_secs(1),
    }));
    metrics.tsa_failed("audit_store");
    metrics.ca_issued(ProfileKind::OneTime);
    metrics.ca_issued(ProfileKind::Scd);
    metrics.signature_created("cades");
    metrics.error("hsm_unavailable");

    // Scrape-time probes.
    metrics.set_clock_probe(Box::new(|| Some((true, 0.012))));
    metrics.set_hsm_probe(Box::new(|| {
        Some(HsmStats {
            pool_size: 4,
            open: 4,
            in_use: 1,
            dedicated: 2,
        })
    }));
    metrics.set_onetime_keys_probe(Box::new(|| Some(16)));
    metrics.set_listener_probe(
        "public",
        Box::new(|| ListenerCounts {
            accepted: 12,
            rejected_ip: 0,
            rejected_limit: 1,
            handshake_failed: 0,
            active: 2,
        }),
    );
    metrics.set_listener_probe(
        "eservice",
        Box::new(|| ListenerCounts {
            accepted: 5,
            rejected_ip: 2,
            rejected_limit: 0,
            handshake_failed: 3,
            active: 1,
        }),
    );
}

fn promtool(exposition: &str) -> (Option<i32>, String, String) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: run scripts/install-deps.sh (Debian package `prometheus`) \
             before the tests"
        ),
        Err(e) => panic!("cannot start promtool: {e}"),
    };
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(exposition.as_bytes())
            .expect("writing to promtool");
    }
    let out = child.wait_with_output().expect("waiting for promtool");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn exposition_passes_promtool_lint() {
    let metrics = Arc::new(Metrics::new().expect("registry"));
    exercise(&metrics).await;
    let text = metrics.render();

    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "family {family} missing from the exposition:\n{text}"
        );
    }
    // Route templates only; raw paths never become label values.
    assert!(text.contains("route=\"/pki/certs/{serial}\""), "{text}");
    assert!(
        text.contains("route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    assert!(text.contains("route=\"/metrics\""), "{text}");
    assert!(
        !text.contains("01ab") && !text.contains("/no/such"),
        "{text}"
    );

    let (code, stdout, stderr) = promtool(&text);
    let problems: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        code == Some(0) && problems.is_empty(),
        "promtool check metrics: exit {code:?}, problems:\n{}\n--- exposition ---\n{text}",
        problems.join("\n")
    );
}

/// The lint itself must work: a deliberately bad exposition is reported (so a silent promtool
/// cannot make the test above pass vacuously).
#[test]
fn promtool_reports_a_bad_counter_name() {
    let bad = "# HELP esigd_bad_counter A counter without the suffix.\n\
               # TYPE esigd_bad_counter counter\n\
               esigd_bad_counter 1\n";
    let (code, stdout, stderr) = promtool(bad);
    assert!(
        code != Some(0) || !(stdout.trim().is_empty() && stderr.trim().is_empty()),
        "promtool accepted a counter without _total: {code:?} {stdout} {stderr}"
    );
}
