//! The load client of the e-Service API and what runs around it, for the API benches
//! (`onetime_api`, `scd_pending`): the development IdP with the bench's clients and ID tokens
//! minted with its key, `esigd init` / `esigd serve` of the release binary, a rustls 0.23 client
//! over blocking `std::net::TcpStream` (mutual TLS, TLS 1.3, one keep-alive HTTP/1.1 connection
//! per client thread: the least client CPU on a machine the server shares), the closed/open-loop
//! one-time signing load, and RSS / CPU readings of other processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sha2::{Digest, Sha256};

use super::{Proc, process_cpu, process_cpu_of, start};

/// `tests/e2e` of the repository.
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// The development IdP (`tests/e2e/idp.mjs`) with `clients` (its `{"clients": [...]}` config);
/// returns it and its issuer URL. Its signing keys go to `work/idp-keys.json` (for
/// [`mint_id_tokens`]).
pub fn start_idp(work: &Path, clients: &serde_json::Value) -> (Proc, String) {
    let marker = e2e_dir().join("node_modules/oidc-provider/package.json");
    assert!(
        marker.is_file(),
        "{} is missing: run `scripts/install-deps.sh --with-test-tools`",
        marker.display()
    );
    let cfg = work.join("idp.json");
    std::fs::write(&cfg, clients.to_string()).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(e2e_dir().join("idp.mjs"))
        .args(["--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&cfg)
        .arg("--keys")
        .arg(work.join("idp-keys.json"))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let (idp, issuer, _) = start(cmd, |l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        match (v["ready"].as_bool(), v["issuer"].as_str()) {
            (Some(true), Some(i)) => Some(i.to_string()),
            _ => None,
        }
    });
    (idp, issuer)
}

/// A real login of the IdP's test user `user` at the client: (ID token, access token).
pub fn login(
    issuer: &str,
    client_id: &str,
    secret: &str,
    redirect: &str,
    user: &str,
) -> (String, String) {
    let out = Command::new("node")
        .arg(e2e_dir().join("get-id-token.mjs"))
        .args(["--issuer", issuer, "--client-id", client_id])
        .args(["--client-secret", secret, "--redirect-uri", redirect])
        .args(["--user", user, "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("node tests/e2e/get-id-token.mjs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    match (v["id_token"].as_str(), v["access_token"].as_str()) {
        (Some(id), Some(at)) if out.status.success() => (id.to_string(), at.to_string()),
        _ => panic!(
            "get-id-token.mjs --json: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// ID tokens are single use at esigd, so every request carries a token of its own: `n` tokens
/// like `real` (the IdP's own header and claims), each with a fresh `iat`/`auth_time` and a
/// unique `jti`, signed with the IdP's ES256 key from its keys file, as the IdP would sign them.
pub fn mint_id_tokens(real: &str, idp_keys: &Path, n: usize) -> Vec<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::pkcs8::EncodePrivateKey;
    let part = |i: usize| -> serde_json::Value {
        let seg = real.split('.').nth(i).expect("a JWT");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
    };
    let (header, claims) = (part(0), part(1));
    assert_eq!(header["alg"], "ES256", "the IdP signs ID tokens with ES256");
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(idp_keys).unwrap()).unwrap();
    let jwk = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's key in the IdP's keys file");
    let d = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap();
    let der = p256::SecretKey::from_slice(&d)
        .unwrap()
        .to_pkcs8_der()
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    h.typ = header["typ"].as_str().map(str::to_owned);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (0..n)
        .map(|i| {
            let mut c = claims.clone();
            c["iat"] = now.into();
            c["auth_time"] = now.into();
            c["jti"] = format!("bench-{i}").into();
            jsonwebtoken::encode(&h, &c, &key).unwrap()
        })
        .collect()
}

/// `esigd --config cfg init` with the environment `env`; panics with its output on failure.
pub fn esigd_init(bin: &Path, cfg: &Path, env: &[(&str, &str)]) {
    let o = Command::new(bin)
        .envs(env.iter().copied())
        .arg("--config")
        .arg(cfg)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "esigd init: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A running `esigd serve` on free ports.
pub struct Esigd {
    /// The process (killed on drop).
    pub proc: Proc,
    /// `host:port` of the public listener (plain HTTP).
    pub public: String,
    /// `host:port` of the e-Service listener (mutual TLS).
    pub eservice: String,
}

impl Esigd {
    /// `esigd --config cfg serve` on free ports with the environment `env`, stderr (its log) to
    /// `log`; returns once it prints `ready`.
    pub fn serve(bin: &Path, cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Esigd {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied())
            .arg("--config")
            .arg(cfg)
            .args([
                "serve",
                "--public",
                "127.0.0.1:0",
                "--eservice",
                "127.0.0.1:0",
            ])
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
        let (proc, (), banner) = start(cmd, |l| (l == "ready").then_some(()));
        let addr_of = |prefix: &str| {
            banner
                .lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {prefix:?} in the banner:\n{banner}"))
                .to_string()
        };
        Esigd {
            public: addr_of("public listener    http://"),
            eservice: addr_of("e-Service listener https://"),
            proc,
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// rustls client configuration: TLS 1.3, ring, the test client CA as the only root, the client certificate.
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("CA PEM"))
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("client certificate PEM")
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).expect("client key PEM");
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
    Arc::new(cfg)
}

/// One keep-alive HTTP/1.1 connection over mutual TLS, handshake done.
pub struct Conn {
    r: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    addr: String,
}

impl Conn {
    /// Connects to `addr` (the e-Service listener on 127.0.0.1) and completes the handshake.
    pub fn open(addr: &str, tls: &Arc<ClientConfig>) -> Conn {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut conn = ClientConnection::new(tls.clone(), name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("TLS handshake");
        }
        Conn {
            r: BufReader::new(StreamOwned::new(conn, sock)),
            addr: addr.to_string(),
        }
    }

    /// Sends the complete request `req`; (status, body).
    pub fn send(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        let s = self.r.get_mut();
        s.write_all(req).expect("send");
        s.flush().expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("HTTP status line {line:?}"));
        let mut len = None;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = Some(v.trim().parse().expect("Content-Length"));
            }
        }
        let mut out = vec![0; len.expect("a Content-Length response")];
        self.r.read_exact(&mut out).expect("body");
        (status, out)
    }

    /// `method path` with the extra header lines `headers` (`Name: value`) and a JSON `body`;
    /// (status, body as JSON, `Null` when the body is not JSON).
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for h in headers {
            req += h;
            req += "\r\n";
        }
        if !body.is_empty() {
            req += "Content-Type: application/json\r\n";
        }
        req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        let (status, out) = self.send(req.as_bytes());
        (status, serde_json::from_slice(&out).unwrap_or_default())
    }
}

/// One-time signing requests: the JSON body signing the SHA-256 of each document, and a fresh ID
/// token for each request (single use at esigd).
pub struct Requests {
    addr: String,
    bodies: Vec<String>,
    tokens: Vec<String>,
    next: AtomicUsize,
}

impl Requests {
    /// Requests to the e-Service listener `addr` signing `docs`, with `tokens` used in turn.
    pub fn new(addr: &str, tokens: Vec<String>, docs: &[PathBuf]) -> Arc<Requests> {
        let bodies = docs
            .iter()
            .map(|d| {
                let digest = Sha256::digest(std::fs::read(d).unwrap());
                serde_json::json!({
                    "format": "CAdES",
                    "hash": B64.encode(digest),
                    "hashType": "SHA2-256",
                })
                .to_string()
            })
            .collect();
        Arc::new(Requests {
            addr: addr.to_string(),
            bodies,
            tokens,
            next: Default::default(),
        })
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// Whether there is no document.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// The complete HTTP request for document `doc`, with a token no request used before.
    pub fn build(&self, doc: usize) -> Vec<u8> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let token = self.tokens.get(i).unwrap_or_else(|| {
            panic!(
                "all {} minted ID tokens are used: lower BENCH_SECS/BENCH_ROUNDS",
                self.tokens.len()
            )
        });
        let body = &self.bodies[doc];
        let mut req = format!(
            "POST /v1/sign/onetime HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nX-GovStack-AuthenticationToken: {token}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body.as_bytes());
        req
    }
}

/// What one load sample measured.
pub struct Sample {
    /// Signatures per second.
    pub per_sec: f64,
    /// Sorted latencies, ms.
    pub lat_ms: Vec<f64>,
    /// (scheduled send time since the start, latency), ms, by send time.
    pub trace: Vec<(f64, f64)>,
}

/// Responses kept for the openssl checks: (JSON body, document index, Unix seconds when received).
pub type Kept = Arc<Mutex<Vec<(Vec<u8>, usize, u64)>>>;

/// `clients` connections (opened and handshaken before the clock starts); closed loop (`rate` =
/// None: each sends its next request when the reply is in) or open loop at `rate` requests/s in
/// total (client `c` sends request `i` at `(i * clients + c) / rate`, latency counted from that
/// time). Every reply must be HTTP 200 with a signature ID; the first reply of each client is kept
/// while fewer than 16 are.
pub fn run_load(
    addr: &str,
    tls: &Arc<ClientConfig>,
    clients: usize,
    dur: Duration,
    rate: Option<f64>,
    reqs: &Arc<Requests>,
    kept: &Kept,
) -> Sample {
    let barrier = Arc::new(Barrier::new(clients));
    let start_at = Arc::new(OnceLock::<Instant>::new());
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, tls, reqs, kept) =
                (addr.to_string(), tls.clone(), reqs.clone(), kept.clone());
            let (barrier, start_at) = (barrier.clone(), start_at.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr, &tls);
                barrier.wait();
                let start = *start_at.get_or_init(|| Instant::now() + Duration::from_millis(5));
                let end = start + dur;
                let mut lat = Vec::new();
                let mut i = 0usize;
                loop {
                    let scheduled = match rate {
                        Some(r) => start + Duration::from_secs_f64((i * clients + c) as f64 / r),
                        None => Instant::now().max(start),
                    };
                    if scheduled >= end {
                        break;
                    }
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let doc = (c + i) % reqs.len();
                    let (status, body) = conn.send(&reqs.build(doc));
                    lat.push((
                        (scheduled - start).as_secs_f64() * 1e3,
                        scheduled.elapsed().as_secs_f64() * 1e3,
                    ));
                    assert!(
                        status == 200 && body.windows(13).any(|w| w == b"\"signatureId\""),
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    if i == 0 {
                        let mut k = kept.lock().unwrap();
                        if k.len() < 16 {
                            let at = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_secs();
                            k.push((body, doc, at));
                        }
                    }
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut trace: Vec<(f64, f64)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    trace.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut lat_ms: Vec<f64> = trace.iter().map(|t| t.1).collect();
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Sample {
        per_sec: lat_ms.len() as f64 / dur.as_secs_f64(),
        lat_ms,
        trace,
    }
}

/// CPU time the whole machine spent in processes (all CPUs, `/proc/stat`: user, nice, system) or
/// lost to the hypervisor (steal); interrupt time is left out as it is not charged to processes.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks: u64 = [0, 1, 2, 7].iter().filter_map(|&i| v.get(i)).sum();
    // Clock ticks of 10 ms, as in `common::process_cpu`.
    Duration::from_millis(ticks * 10)
}

/// CPU used by processes other than esigd and this bench over an interval, in cores: how much
/// the rest of the (shared) machine competed for the CPUs.
pub struct OthersCpu {
    pid: u32,
    at: (Instant, Duration, Duration, Duration),
}

impl OthersCpu {
    /// Starts counting; `pid` is esigd's.
    pub fn start(pid: u32) -> OthersCpu {
        OthersCpu {
            pid,
            at: (
                Instant::now(),
                machine_busy(),
                process_cpu_of(pid),
                process_cpu(),
            ),
        }
    }

    /// Cores used by other processes since the start or the previous call.
    pub fn cores(&mut self) -> f64 {
        let now = (
            Instant::now(),
            machine_busy(),
            process_cpu_of(self.pid),
            process_cpu(),
        );
        let others = (now.1.saturating_sub(self.at.1)).as_secs_f64()
            - (now.2.saturating_sub(self.at.2)).as_secs_f64()
            - (now.3.saturating_sub(self.at.3)).as_secs_f64();
        let secs = (now.0 - self.at.0).as_secs_f64();
        self.at = now;
        (others / secs).max(0.0)
    }
}

/// `VmRSS` of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the RSS of `pid` every 50 ms while running; keeps the peak.
pub struct RssSampler {
    on: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let on = Arc::new(AtomicBool::new(true));
        let peak = Arc::new(AtomicU64::new(0));
        let (o, p) = (on.clone(), peak.clone());
        std::thread::spawn(move || {
            while o.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { on, peak }
    }

    /// The peak so far, KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.on.store(false, Ordering::Relaxed);
    }
}
