//! A mixed load against a running [`OneTimeEnv`]: RFC 3161 time-stamps over keep-alive HTTP/1.1
//! (`POST /tsa` on the public listener), one-time signatures (`POST /v1/sign/onetime`, a fresh ID
//! token each) and fetches of the signatures made (`GET /v1/sign/response/{id}`), from threads,
//! until a stop flag is set. Shared by `appliance/tests/backup_restore.rs` (strict: every request
//! must succeed), `appliance/tests/kill9_load.rs` (tolerant: the daemon is killed under the load,
//! failed requests are simply not acknowledged) and the soak bench (tolerant, latencies recorded).
//!
//! Only what the daemon acknowledged is recorded ([`Acked`]): a time-stamp whose 200 reply with a
//! granted token arrived, a signature whose 200 reply with a `signatureId` arrived.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, DecodePem, Encode};
use esigd_pki::tsp::{
    MessageImprint, PkiStatus, TimeStampReq, TimeStampResp, TspVersion, token_tst_info,
};
use sha2::Digest;

use crate::onetime_env::OneTimeEnv;

/// SHA-256 (2.16.840.1.101.3.4.2.1).
const SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// A keep-alive HTTP/1.1 connection to the public listener for `POST /tsa`.
pub struct TsaConn {
    addr: String,
    r: BufReader<TcpStream>,
}

impl TsaConn {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> std::io::Result<TsaConn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(TsaConn {
            addr: addr.to_string(),
            r: BufReader::new(s),
        })
    }

    /// [`TsaConn::connect`], panicking on failure.
    pub fn open(addr: &str) -> TsaConn {
        TsaConn::connect(addr).unwrap()
    }

    /// `POST /tsa` with `body`: (status, body).
    pub fn post(&mut self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut req = format!(
            "POST /tsa HTTP/1.1\r\nHost: {}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.r.get_mut().write_all(&req)?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut len = 0;
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().map_err(|_| bad("content-length"))?;
            }
        }
        let mut out = vec![0; len];
        self.r.read_exact(&mut out)?;
        Ok((status, out))
    }
}

/// `v` as a positive DER INTEGER.
pub fn positive_int(v: u64) -> Int {
    let mut b: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    if b.first().is_none_or(|b| *b >= 0x80) {
        b.insert(0, 0);
    }
    Int::new(&b).unwrap()
}

/// Big-endian `bytes` (an INTEGER's content octets) as a u64; `None` if longer than 64 bits.
pub fn be_u64(bytes: &[u8]) -> Option<u64> {
    let b: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    (b.len() <= 8).then(|| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// A time-stamp request (SHA-256 imprint `digest`, `nonce`, no certificate).
pub fn stamp_request(nonce: u64, digest: &[u8; 32]) -> Vec<u8> {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: x509_cert::spki::AlgorithmIdentifier {
                oid: SHA_256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.to_vec()).unwrap(),
        },
        req_policy: None,
        nonce: Some(positive_int(nonce)),
        cert_req: false,
        extensions: None,
    }
    .to_der()
    .unwrap()
}

/// One time-stamp of `data`: its serial and imprint, or why it was not acknowledged.
pub fn try_stamp(conn: &mut TsaConn, nonce: u64, data: &[u8]) -> Result<(u64, [u8; 32]), String> {
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    let (status, reply) = conn
        .post(&stamp_request(nonce, &digest))
        .map_err(|e| format!("POST /tsa: {e}"))?;
    if status != 200 {
        return Err(format!(
            "POST /tsa: {status} {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    let resp = TimeStampResp::from_der(&reply).map_err(|e| format!("TimeStampResp: {e}"))?;
    if resp.status.status != PkiStatus::Granted {
        return Err(format!("not granted: {:?}", resp.status.status));
    }
    let token = resp
        .token_der()
        .map_err(|e| format!("token: {e}"))?
        .ok_or("granted without a token")?;
    let tst = token_tst_info(&token).map_err(|e| format!("TSTInfo: {e}"))?;
    // Acknowledged from here on: a wrong answer is a failure of the daemon, not of the transport.
    assert_eq!(
        tst.message_imprint.hashed_message.as_bytes(),
        digest,
        "token over another imprint"
    );
    let nonce_back = tst.nonce.as_ref().and_then(|n| be_u64(n.as_bytes()));
    assert_eq!(nonce_back, Some(nonce), "token with another nonce");
    let serial = be_u64(tst.serial_number.as_bytes()).expect("serial longer than 64 bits");
    Ok((serial, digest))
}

/// [`try_stamp`], panicking when the time-stamp is not granted.
pub fn stamp(conn: &mut TsaConn, nonce: u64, data: &[u8]) -> (u64, [u8; 32]) {
    try_stamp(conn, nonce, data).unwrap_or_else(|e| panic!("{e}"))
}

/// The body of a one-time CAdES signature over the SHA-256 of `document {n}`.
pub fn signature_body(n: u64) -> serde_json::Value {
    let digest = sha2::Sha256::digest(format!("document {n}").as_bytes());
    serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(digest),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": format!("Contract {n}"),
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
}

/// A signature the daemon acknowledged (200).
#[derive(Clone, Debug)]
pub struct Signed {
    /// `signatureId`.
    pub id: String,
    /// Serial number of the one-time certificate (hex, from the `certificate` PEM of the reply).
    pub cert_serial: String,
}

/// A one-time CAdES signature over a fresh digest, or why it was not acknowledged.
pub fn try_one_time_signature(env: &OneTimeEnv, n: u64) -> Result<Signed, String> {
    let r = env.post(&signature_body(n));
    if r.status != 200 {
        return Err(format!(
            "POST /v1/sign/onetime: {} (curl {}) {}",
            r.status,
            r.rc,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let v = r.json();
    let id = v["signatureId"]
        .as_str()
        .expect("200 without signatureId")
        .to_string();
    let pem = v["certificate"].as_str().expect("200 without certificate");
    let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).expect("certificate PEM");
    let cert_serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    Ok(Signed { id, cert_serial })
}

/// [`try_one_time_signature`], panicking on failure; the signatureId.
pub fn one_time_signature(env: &OneTimeEnv, n: u64) -> String {
    try_one_time_signature(env, n)
        .unwrap_or_else(|e| panic!("one-time signature: {e}"))
        .id
}

/// What kind of request a latency sample is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /tsa`.
    Stamp,
    /// `POST /v1/sign/onetime` (including the ID token from the Identity BB).
    Sign,
    /// `GET /v1/sign/response/{id}`.
    Fetch,
}

/// What the load got acknowledged, with when.
#[derive(Default)]
pub struct Acked {
    /// (serial, imprint, when the reply arrived).
    pub stamps: Vec<(u64, [u8; 32], Instant)>,
    /// (signature, when the reply arrived).
    pub signatures: Vec<(Signed, Instant)>,
    /// Successful fetches of acknowledged signatures.
    pub fetches: u64,
    /// Requests that were not acknowledged (tolerant mode only), with the last reason.
    pub failures: u64,
    /// The last failure's reason.
    pub last_failure: Option<String>,
    /// (operation, when it ended, latency) of every successful request, when [`LoadSpec::latencies`].
    pub latencies: Vec<(Op, Instant, Duration)>,
}

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Time-stamp connections (one thread each).
    pub tsa_clients: u64,
    /// Threads making one-time signatures.
    pub signers: u64,
    /// Threads fetching signatures made by this load (0: none).
    pub fetchers: u64,
    /// Pause after each time-stamp of a client.
    pub tsa_pause: Duration,
    /// Pause after each signature of a signer.
    pub sign_pause: Duration,
    /// Pause after each fetch.
    pub fetch_pause: Duration,
    /// Paced: the pauses are the intervals between the starts of a thread's requests (a steady rate
    /// per thread), not the pauses after each reply.
    pub paced: bool,
    /// Strict: any failed request panics (and stops the load). Tolerant: it is counted, the thread
    /// backs off 50 ms and goes on (the daemon may be down).
    pub strict: bool,
    /// Record the latency of every successful request.
    pub latencies: bool,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            tsa_clients: 3,
            signers: 1,
            fetchers: 0,
            tsa_pause: Duration::from_millis(10),
            sign_pause: Duration::ZERO,
            fetch_pause: Duration::from_millis(50),
            paced: false,
            strict: true,
            latencies: false,
        }
    }
}

/// Sets the flag when dropped during a panic: a failing thread stops the load (the scoped threads
/// would otherwise keep the caller waiting forever).
pub struct StopOnPanic<'a>(pub &'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

fn failed(spec: &LoadSpec, acked: &Mutex<Acked>, why: String) {
    assert!(!spec.strict, "{why}");
    let mut a = acked.lock().unwrap();
    a.failures += 1;
    a.last_failure = Some(why);
    drop(a);
    std::thread::sleep(Duration::from_millis(50));
}

/// Sleeps `pause` after a request that began at `started` (until `started + pause` when paced).
fn pause(spec: &LoadSpec, pause: Duration, started: Instant) {
    let d = if spec.paced {
        pause.saturating_sub(started.elapsed())
    } else {
        pause
    };
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

fn sample(spec: &LoadSpec, acked: &mut Acked, op: Op, started: Instant) {
    if spec.latencies {
        let now = Instant::now();
        acked.latencies.push((op, now, now - started));
    }
}

/// Runs the load of `spec` until `stop` against `env.daemon` (its addresses are read per request, so a
/// restarted daemon is picked up); `run` makes nonces and documents distinct between runs.
pub fn run(env: &OneTimeEnv, spec: &LoadSpec, run: u64, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let next_sig = AtomicU64::new(run << 32);
    std::thread::scope(|s| {
        for c in 0..spec.tsa_clients {
            s.spawn(move || {
                let _stop = StopOnPanic(stop);
                let mut conn: Option<TsaConn> = None;
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let c_ = match conn.take() {
                        Some(c) => Ok(c),
                        None => TsaConn::connect(&env.daemon.public),
                    };
                    let mut c_ = match c_ {
                        Ok(c) => c,
                        Err(e) => {
                            failed(spec, acked, format!("connect: {e}"));
                            continue;
                        }
                    };
                    let nonce = (run << 48) | (c << 32) | i;
                    i += 1;
                    let started = Instant::now();
                    match try_stamp(&mut c_, nonce, format!("doc {run}/{c}/{i}").as_bytes()) {
                        Ok((serial, digest)) => {
                            let mut a = acked.lock().unwrap();
                            a.stamps.push((serial, digest, Instant::now()));
                            sample(spec, &mut a, Op::Stamp, started);
                            drop(a);
                            conn = Some(c_);
                            pause(spec, spec.tsa_pause, started);
                        }
                        Err(e) => failed(spec, acked, e),
                    }
                }
            });
        }
        for _ in 0..spec.signers {
            let next_sig = &next_sig;
            s.spawn(move || {
                let _stop = StopOnPanic(stop);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    match try_one_time_signature(env, next_sig.fetch_add(1, Ordering::SeqCst)) {
                        Ok(signed) => {
                            let mut a = acked.lock().unwrap();
                            a.signatures.push((signed, Instant::now()));
                            sample(spec, &mut a, Op::Sign, started);
                            drop(a);
                            pause(spec, spec.sign_pause, started);
                        }
                        Err(e) => failed(spec, acked, e),
                    }
                }
            });
        }
        for f in 0..spec.fetchers {
            s.spawn(move || {
                let _stop = StopOnPanic(stop);
                let mut k = f as usize;
                while !stop.load(Ordering::SeqCst) {
                    let id = {
                        let a = acked.lock().unwrap();
                        (!a.signatures.is_empty())
                            .then(|| a.signatures[k % a.signatures.len()].0.id.clone())
                    };
                    k = k.wrapping_mul(31).wrapping_add(7);
                    let Some(id) = id else {
                        std::thread::sleep(spec.fetch_pause);
                        continue;
                    };
                    let started = Instant::now();
                    let r = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
                    if r.status == 200 {
                        let mut a = acked.lock().unwrap();
                        a.fetches += 1;
                        sample(spec, &mut a, Op::Fetch, started);
                        drop(a);
                        pause(spec, spec.fetch_pause, started);
                    } else {
                        failed(
                            spec,
                            acked,
                            format!("GET /v1/sign/response/{id}: {} (curl {})", r.status, r.rc),
                        );
                    }
                }
            });
        }
    });
}

/// Waits until the load has at least `stamps` time-stamps and `signatures` signatures in all (at most
/// `within`); panics if the load stopped or is too slow.
pub fn wait_for(
    acked: &Mutex<Acked>,
    stop: &AtomicBool,
    stamps: usize,
    signatures: usize,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        assert!(
            !stop.load(Ordering::SeqCst),
            "the load stopped (a client failed)"
        );
        {
            let a = acked.lock().unwrap();
            if a.stamps.len() >= stamps && a.signatures.len() >= signatures {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "load too slow: {} time-stamps, {} signatures (last failure: {:?})",
                a.stamps.len(),
                a.signatures.len(),
                a.last_failure
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every audit event of the daemon (`GET /v1/audit/log` as the auditor, paged with `X-Next-Cursor`).
pub fn audit_events(env: &OneTimeEnv) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit/log?limit=1000&cursor={c}"),
            None => "/v1/audit/log?limit=1000".to_string(),
        };
        let r = env.call_as_auditor("GET", &path, &[]);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let page = r.json();
        let page = page.as_array().expect("audit log: a JSON array");
        out.extend(page.iter().cloned());
        cursor = r.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("x-next-cursor")
                .then(|| v.trim().to_string())
        });
        if cursor.is_none() || page.is_empty() {
            return out;
        }
    }
}
