//! One host abusing a listener, for the exhaustion tests (issue #11): connections from another
//! loopback address, request bodies trickled one byte at a time, and the 408 they must end with.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// A TCP connection to `to` from the local address `from` (127.0.0.2 is another host for the
/// listener).
pub async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    let local: SocketAddr = format!("{from}:0")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    sock.bind(local)?;
    sock.connect(to).await
}

/// Fails the test with the fix when the soft limit on open files cannot hold `needed` sockets.
pub fn require_open_files(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        soft >= needed,
        "this test holds about {needed} sockets: raise the open-file limit (ulimit -n {needed})"
    );
}

/// Sends `head` (a request head announcing `len` body bytes) and then the body one byte every
/// `every`, until the peer stops reading.
pub fn trickle(mut s: OwnedWriteHalf, head: String, len: usize, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..len {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Each trickled request must be answered `408` within 30 s (not after the minutes its body would
/// take); stops its writer.
pub async fn expect_408(trickles: Vec<(OwnedReadHalf, JoinHandle<()>)>) {
    for (mut r, writer) in trickles {
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
            let mut b = [0u8; 1024];
            match tokio::time::timeout_at(deadline, r.read(&mut b)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
                Ok(_) => break,
                Err(_) => panic!("trickled body still open after 30 s"),
            }
        }
        let head = String::from_utf8_lossy(&buf);
        assert!(
            head.starts_with("HTTP/1.1 408"),
            "trickled body answered {head:?}"
        );
        writer.abort();
    }
}
