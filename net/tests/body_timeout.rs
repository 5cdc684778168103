//! The 408 a late request body gets: neutral by default, the application's own document when it
//! gives one ([`esigd_net::TimeoutAnswer`]); the status and `Connection: close` come from the loop.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use esigd_net::{BODY_TIMEOUT_TEXT, Limits, ServeOptions, TimeoutAnswer, serve_public};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn late_body(answer: Option<TimeoutAnswer>) -> String {
    let app = Router::new().route("/", post(|body: String| async move { body }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = ServeOptions {
        limits: Limits {
            body_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        body_timeout_answer: answer,
        ..ServeOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_public(listener, app, opts, async move {
        let _ = stopped.await;
    }));
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Ten bytes announced, two sent.
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_late_body_gets_a_neutral_408_by_default() {
    let text = late_body(None).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_lowercase().contains("connection: close"), "{text}");
    assert!(text.ends_with(BODY_TIMEOUT_TEXT), "{text}");
}

#[tokio::test]
async fn a_late_body_gets_the_applications_own_document() {
    let answer = TimeoutAnswer::new(|| {
        (
            [("content-type", "application/problem+json")],
            r#"{"status":408}"#,
        )
            .into_response()
    });
    let text = late_body(Some(answer)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("content-type: application/problem+json"),
        "{text}"
    );
    assert!(text.ends_with(r#"{"status":408}"#), "{text}");
}
