//! The `esigd-remote-scd` binary and the reference device app `esigd-device` as real processes over
//! real TLS: the relying party (this test, as esigd would) calls the RP API over mutual TLS with a
//! client certificate from `scripts/dev-rscd-pki.sh`; the device runs in `--cli` mode with its own
//! SoftHSM token and takes the citizen's decisions as JSON lines on stdin.
//!
//! `esigd-device` is the binary of another package: it is found next to this test's directory
//! (`target/<profile>/esigd-device`, built by `cargo build --workspace` or a whole-workspace
//! `cargo nextest run`), or at `$ESIGD_DEVICE_BIN`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esigd_pki::certificate::{CertificateTemplate, build_certificate, random_serial};
use esigd_pki::identity::DnBuilder;
use esigd_pki::keys::{DigestSignatureScheme, verify_digest_signature};
use esigd_scd::api::*;
use esigd_scd::interactions::{self, Interaction};
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use sha2::Digest;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The citizen's PIN (distinctive, so that the log check cannot match by accident).
const PIN: &str = "739146";
/// A wrong PIN (as distinctive).
const WRONG_PIN: &str = "582937";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn device_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ESIGD_DEVICE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("esigd-device");
    assert!(
        p.is_file(),
        "{} missing: cargo build -p esigd-device (or build the whole workspace), or set ESIGD_DEVICE_BIN",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The development PKI, made by the script run-dev.sh uses.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        let out = Command::new(workspace().join("scripts/dev-rscd-pki.sh"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev-rscd-pki.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// esigd's client identity (certificate + key, PEM).
    fn rp_identity(&self) -> reqwest::Identity {
        let mut pem = std::fs::read(self.path("esigd-rp.pem")).unwrap();
        pem.extend(std::fs::read(self.path("esigd-rp.key")).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    }

    fn ca(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&std::fs::read(self.path("rscd-ca.pem")).unwrap()).unwrap()
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `esigd-remote-scd serve`.
struct Rscd {
    proc: Proc,
    rp_port: u16,
    device_port: u16,
    log: PathBuf,
}

fn start_rscd(pki: &Pki, state: &Path, rp_port: u16, device_port: u16, log: &Path) -> Rscd {
    let child = Command::new(env!("CARGO_BIN_EXE_esigd-remote-scd"))
        .arg("serve")
        .args(["--rp-listen", &format!("127.0.0.1:{rp_port}")])
        .arg("--rp-client-ca")
        .arg(pki.path("rscd-ca.pem"))
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .arg("--cert")
        .arg(pki.path("rscd-server.pem"))
        .arg("--key")
        .arg(pki.path("rscd-server.key"))
        .arg("--state")
        .arg(state)
        .args(["--push-limit", "50"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let rscd = Rscd {
        proc: Proc(child),
        rp_port,
        device_port,
        log: log.to_owned(),
    };
    wait_for_log(
        &rscd.log,
        "esigd-remote-scd serving",
        Duration::from_secs(30),
    );
    rscd
}

impl Rscd {
    fn rp_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.rp_port)
    }

    fn device_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.device_port)
    }
}

fn wait_for_log(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{needle:?} not in {} after {limit:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `esigd-device run --cli`.
struct Device {
    _proc: Proc,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    id: String,
    state: PathBuf,
    log: PathBuf,
}

fn start_device(pki: &Pki, rscd: &Rscd, state: &Path, log: &Path) -> Device {
    let bin = device_binary();
    if !state.join("softhsm2.conf").exists() {
        let out = Command::new(&bin)
            .args(["init", "--state"])
            .arg(state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "esigd-device init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("SOFTHSM2_CONF="), "{stdout}");
    }
    let conf = std::fs::canonicalize(state.join("softhsm2.conf")).unwrap();
    let mut child = Command::new(&bin)
        .args(["run", "--cli", "--state"])
        .arg(state)
        .args(["--service", &rscd.device_url()])
        .arg("--service-ca")
        .arg(pki.path("rscd-ca.pem"))
        .args(["--module", SOFTHSM])
        .env("SOFTHSM2_CONF", &conf)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("device stdout is not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let proc = Proc(child);
    let line = wait_for_log(log, "device ID (SCDRemoteId): ", Duration::from_secs(30));
    let id = line
        .rsplit("device ID (SCDRemoteId): ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    Device {
        _proc: proc,
        stdin,
        lines,
        id,
        state: state.to_owned(),
        log: log.to_owned(),
    }
}

impl Device {
    /// The next line the device prints (a request on screen or the fate of a decision).
    fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "no line from the device in 60 s; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }

    /// Waits for the request `tx` on screen.
    fn shown(&self, tx: &str) -> Value {
        let line = self.next();
        assert_eq!(line["transactionId"], tx, "{line}");
        assert!(line.get("type").is_some(), "{line}");
        line
    }

    fn decide(&mut self, decision: Value) -> Value {
        writeln!(self.stdin, "{decision}").unwrap();
        self.stdin.flush().unwrap();
        self.next()
    }

    fn confirm(&mut self, tx: &str, pin: &str, pin_again: Option<&str>) -> Value {
        let mut d = serde_json::json!({"transactionId": tx, "decision": "confirm", "pin": pin});
        if let Some(again) = pin_again {
            d["pinAgain"] = again.into();
        }
        self.decide(d)
    }

    /// Labels of the certificates on the device's token.
    fn token_certificates(&self) -> Vec<String> {
        let conf = std::fs::canonicalize(self.state.join("softhsm2.conf")).unwrap();
        let list = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM, "--login", "--pin", PIN])
            .args(["--list-objects", "--type", "cert"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        assert!(list.status.success(), "pkcs11-tool: {text}");
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// The DER SubjectPublicKeyInfo of each public key on the device's token (pkcs11-tool, an
    /// independent PKCS#11 client, logged in with the citizen's PIN).
    fn token_public_keys(&self) -> Vec<Vec<u8>> {
        let conf = std::fs::canonicalize(self.state.join("softhsm2.conf")).unwrap();
        let list = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM, "--login", "--pin", PIN])
            .args(["--list-objects", "--type", "pubkey"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        assert!(list.status.success(), "pkcs11-tool: {text}");
        let mut keys = Vec::new();
        for label in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(str::trim)
        {
            let out = self.state.join("pubkey.der");
            let read = Command::new("pkcs11-tool")
                .args(["--module", SOFTHSM, "--login", "--pin", PIN])
                .args(["--read-object", "--type", "pubkey", "--label", label])
                .arg("--output-file")
                .arg(&out)
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap();
            assert!(
                read.status.success(),
                "pkcs11-tool --read-object: {}",
                String::from_utf8_lossy(&read.stderr)
            );
            keys.push(std::fs::read(&out).unwrap());
        }
        keys
    }
}

/// esigd's side: an HTTP client of the RP API with esigd's client certificate.
fn rp_client(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(pki.ca())
        .identity(pki.rp_identity())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(rp: &reqwest::Client, url: String, body: &impl serde::Serialize) -> (u16, Value) {
    let r = rp.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls the session until COMPLETE.
async fn complete(rp: &reqwest::Client, rscd: &Rscd, session: &str) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = rp
            .get(rscd.rp_url(&format!("/scd/v1/session/{session}?timeoutMs=2000")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "COMPLETE" {
            return v;
        }
        assert_eq!(v["state"], "RUNNING", "{v}");
        assert!(start.elapsed() < Duration::from_secs(90), "still {v}");
    }
}

fn shown_text(text: &str) -> String {
    interactions::encode(&[Interaction::DisplayTextAndPin {
        display_text60: text.into(),
    }])
    .unwrap()
}

fn signing(digest: &[u8]) -> SignatureRequest {
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    SignatureRequest {
        relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
        relying_party_name: "esigd".into(),
        signature_protocol: SignatureProtocol::RawDigestSignature,
        signature_protocol_parameters: RawDigestParameters {
            digest: STANDARD.encode(digest),
            signature_algorithm: SignatureAlgorithm::Ecdsa,
            signature_algorithm_parameters: AlgorithmParameters {
                hash_algorithm: HashAlgorithm::Sha256,
            },
        },
        interactions: shown_text("Sign the lease"),
        nonce: Some(STANDARD.encode(nonce)),
    }
}

/// Service, device, and an onboarded key with its certificate delivered.
struct World {
    tmp: tempfile::TempDir,
    pki: Pki,
    rscd: Rscd,
    device: Device,
    rp: reqwest::Client,
    key_handle: String,
    /// The registered key (from the CSR).
    spki: spki::SubjectPublicKeyInfoOwned,
}

impl World {
    async fn onboarded() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(tmp.path());
        let rscd = start_rscd(
            &pki,
            &tmp.path().join("rscd"),
            free_port(),
            free_port(),
            &tmp.path().join("rscd.log"),
        );
        let mut device = start_device(
            &pki,
            &rscd,
            &tmp.path().join("device"),
            &tmp.path().join("device.log"),
        );
        let rp = rp_client(&pki);

        // Onboarding: the device creates a key in its token behind the PIN the citizen chooses.
        let mut challenge = [0u8; 32];
        OsRng.fill_bytes(&mut challenge);
        let challenge = STANDARD.encode(challenge);
        let req = OnboardingRequest {
            relying_party_uuid: "00000000-0000-4000-8000-000000000000".into(),
            relying_party_name: "esigd".into(),
            subject: Subject {
                sub: "psut-1234".into(),
                display_name: Some("Jane Doe".into()),
            },
            scd_key_id: 0,
            key_spec: KeySpec::Ec { curve: Curve::P256 },
            challenge: challenge.clone(),
            interactions: shown_text("Create your signing key"),
            nonce: None,
        };
        let (status, created) = post(
            &rp,
            rscd.rp_url(&format!(
                "/scd/v1/onboarding/device/REMOTE_SCD/{}",
                device.id
            )),
            &req,
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let session = created["sessionID"].as_str().unwrap().to_owned();
        let screen = device.shown(&session);
        assert_eq!(screen["type"], "ONBOARD", "{screen}");
        assert_eq!(screen["rpName"], "esigd");
        assert_eq!(
            screen["vc"], created["vc"]["value"],
            "the same code on both sides"
        );
        assert_eq!(screen["choosePin"], true, "{screen}");
        // Two different PINs are refused on the device; the request stays.
        let again = device.confirm(&session, PIN, Some("000000"));
        assert!(again["again"].is_string(), "{again}");
        let again = device.next();
        assert_eq!(again["transactionId"], session.as_str(), "{again}");
        let sent = device.confirm(&session, PIN, Some(PIN));
        assert_eq!(sent["sent"], "OK", "{sent}");

        let done = complete(&rp, &rscd, &session).await;
        assert_eq!(done["result"]["endResult"], "OK", "{done}");
        let key_handle = done["result"]["keyHandle"].as_str().unwrap().to_owned();
        let csr_der = STANDARD.decode(done["csr"].as_str().unwrap()).unwrap();
        let csr = esigd_pki::csr::parse_csr(&csr_der).unwrap();
        assert_eq!(
            csr.challenge_password().unwrap().as_deref(),
            Some(challenge.as_str()),
            "the CSR is bound to this onboarding"
        );
        let spki = csr.public_key().clone();
        let spki_der = der::Encode::to_der(&spki).unwrap();
        assert!(
            device.token_public_keys().contains(&spki_der),
            "the CSR's key is on the device's token"
        );

        // esigd's CA certifies the key; the certificate goes to the service (and the device).
        let ca = p256::ecdsa::SigningKey::random(&mut OsRng);
        let now = SystemTime::now();
        let cert = build_certificate::<_, p256::ecdsa::DerSignature>(
            &ca,
            CertificateTemplate {
                serial: random_serial(&mut OsRng).unwrap(),
                issuer: DnBuilder::new().common_name("CA").unwrap().build(),
                subject: DnBuilder::new().common_name("Jane Doe").unwrap().build(),
                public_key: spki.clone(),
                not_before: now,
                not_after: now + Duration::from_secs(3600),
                extensions: vec![],
            },
        )
        .unwrap();
        let delivery = CertificateDelivery {
            certificate: STANDARD.encode(der::Encode::to_der(&cert).unwrap()),
            chain: vec![],
        };
        let r = rp
            .post(rscd.rp_url(&format!("/scd/v1/keys/{key_handle}/certificate")))
            .json(&delivery)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        World {
            tmp,
            pki,
            rscd,
            device,
            rp,
            key_handle,
            spki,
        }
    }

    /// Starts a signing session over `digest`; returns its ID after checking the device shows it
    /// with the same code.
    async fn start_signing(&mut self, digest: &[u8]) -> String {
        let (status, created) = post(
            &self.rp,
            self.rscd
                .rp_url(&format!("/scd/v1/signature/key/{}", self.key_handle)),
            &signing(digest),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let session = created["sessionID"].as_str().unwrap().to_owned();
        let screen = self.device.shown(&session);
        assert_eq!(screen["type"], "SIGN", "{screen}");
        assert_eq!(screen["text"], "Sign the lease", "{screen}");
        assert_eq!(screen["vc"], created["vc"]["value"], "{screen}");
        session
    }

    /// Signs `digest` with the right PIN and checks the signature with the registered key; returns
    /// the session's final state.
    async fn sign_ok(&mut self, digest: &[u8]) -> Value {
        let session = self.start_signing(digest).await;
        let sent = self.device.confirm(&session, PIN, None);
        assert_eq!(sent["sent"], "OK", "{sent}");
        let done = complete(&self.rp, &self.rscd, &session).await;
        assert_eq!(done["result"]["endResult"], "OK", "{done}");
        assert_eq!(done["signatureProtocol"], "RAW_DIGEST_SIGNATURE", "{done}");
        let sig = STANDARD
            .decode(done["signature"]["value"].as_str().unwrap())
            .unwrap();
        verify_digest_signature(
            "device signature",
            &self.spki,
            DigestSignatureScheme::Ecdsa,
            digest,
            &sig,
        )
        .unwrap();
        done
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.tmp.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                all.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
        all
    }
}

fn digest(text: &str) -> [u8; 32] {
    sha2::Sha256::digest(text.as_bytes()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_then_signing_verifies_with_the_csr_key() {
    let mut w = World::onboarded().await;
    w.sign_ok(&digest("lease 1")).await;
    w.sign_ok(&digest("lease 2")).await;
    // The device fetched its certificate into its token (at a poll after the delivery).
    wait_for_log(
        &w.device.log,
        "certificate stored on the token",
        Duration::from_secs(60),
    );
    assert_eq!(w.device.token_certificates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_citizen_refuses() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("not this one")).await;
    let sent = w.device.decide(serde_json::json!({
        "transactionId": session, "decision": "refuse"
    }));
    assert_eq!(sent["sent"], "USER_REFUSED_INTERACTION", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    // The citizen pressed Refuse on the PIN screen: Smart-ID's refusal on an interaction.
    assert_eq!(
        done["result"]["endResult"], "USER_REFUSED_INTERACTION",
        "{done}"
    );
    assert_eq!(
        done["result"]["details"]["interaction"], "displayTextAndPIN",
        "{done}"
    );
    assert!(done.get("signature").is_none_or(Value::is_null), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_pins_lock_the_key() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("guess")).await;
    for left in [2, 1] {
        let again = w.device.confirm(&session, WRONG_PIN, None);
        let msg = again["again"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(&format!("{left} tries left")), "{again}");
        let screen = w.device.next();
        assert_eq!(screen["transactionId"], session.as_str(), "{screen}");
        assert!(screen["message"].is_string(), "{screen}");
    }
    let sent = w.device.confirm(&session, WRONG_PIN, None);
    assert_eq!(sent["sent"], "DOCUMENT_UNUSABLE", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "DOCUMENT_UNUSABLE", "{done}");
    assert_eq!(done["result"]["details"]["reason"], "PIN_LOCKED", "{done}");

    // Locked: even the right PIN gets DOCUMENT_UNUSABLE now.
    let session = w.start_signing(&digest("after the lock")).await;
    let sent = w.device.confirm(&session, PIN, None);
    assert_eq!(sent["sent"], "DOCUMENT_UNUSABLE", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "DOCUMENT_UNUSABLE", "{done}");
    assert_eq!(done["result"]["details"]["reason"], "PIN_LOCKED", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_keeps_the_device_and_its_key() {
    let mut w = World::onboarded().await;
    let (rp_port, device_port) = (w.rscd.rp_port, w.rscd.device_port);

    // SIGTERM: a graceful stop, which does not wait for the device's open long poll.
    let stopping = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &w.rscd.proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = w.rscd.proc.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "graceful stop took {:?}",
        stopping.elapsed()
    );
    wait_for_log(&w.rscd.log, "stopped", Duration::from_secs(1));
    w.rscd = start_rscd(
        &w.pki,
        &w.tmp.path().join("rscd"),
        rp_port,
        device_port,
        &w.tmp.path().join("rscd-2.log"),
    );
    let replayed = wait_for_log(&w.rscd.log, "journal replayed", Duration::from_secs(5));
    assert!(!replayed.contains("events=0"), "{replayed}");
    // The device reconnects by itself and signs with the same key.
    w.sign_ok(&digest("after a graceful restart")).await;

    // SIGKILL: nothing is flushed at exit; the journal was fsynced before each answer.
    w.rscd.proc.0.kill().unwrap();
    w.rscd.proc.0.wait().unwrap();
    w.rscd = start_rscd(
        &w.pki,
        &w.tmp.path().join("rscd"),
        rp_port,
        device_port,
        &w.tmp.path().join("rscd-3.log"),
    );
    w.sign_ok(&digest("after a crash")).await;
    // The key's certificate survived too.
    let (status, cert) = post(
        &w.rp,
        w.rscd
            .rp_url(&format!("/scd/v1/signature/certificate/{}", w.key_handle)),
        &serde_json::json!({
            "relyingPartyUUID": "00000000-0000-4000-8000-000000000000",
            "relyingPartyName": "esigd"
        }),
    )
    .await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["state"], "OK", "{cert}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_without_a_client_certificate_is_refused_at_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let rscd = start_rscd(
        &pki,
        &tmp.path().join("rscd"),
        free_port(),
        free_port(),
        &tmp.path().join("rscd.log"),
    );
    let anonymous = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(pki.ca())
        .build()
        .unwrap();
    let err = anonymous
        .get(rscd.rp_url("/scd/v1/session/x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "no HTTP answer at all: {err:?}");
    wait_for_log(
        &rscd.log,
        "peer sent no certificates",
        Duration::from_secs(5),
    );
    // With esigd's certificate the same call gets an HTTP answer (404: no such session).
    let r = rp_client(&pki)
        .get(rscd.rp_url("/scd/v1/session/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The device API asks for no certificate: it answers an anonymous client.
    let r = anonymous
        .post(format!("{}/device/v1/devices", rscd.device_url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_in_the_logs_of_either_process() {
    let mut w = World::onboarded().await;
    let session = w.start_signing(&digest("wrong then right")).await;
    let again = w.device.confirm(&session, WRONG_PIN, None);
    assert!(again["again"].is_string(), "{again}");
    let _ = w.device.next();
    let sent = w.device.confirm(&session, PIN, None);
    assert_eq!(sent["sent"], "OK", "{sent}");
    let done = complete(&w.rp, &w.rscd, &session).await;
    assert_eq!(done["result"]["endResult"], "OK", "{done}");
    let done = w.sign_ok(&digest("right at once")).await;
    let logs = w.logs();
    // Nor the signature or the device's proof (the device's call tokens are in no log line
    // either: they would show up as `DeviceJWS ey…`).
    for value in [&done["signature"]["value"], &done["deviceProof"]] {
        let value = value.as_str().unwrap();
        assert!(!logs.contains(value), "{value} in the logs:\n{logs}");
    }
    assert!(!logs.contains("DeviceJWS ey"), "a call token in the logs");
    // Both processes logged at debug level: the check reads real output.
    assert!(logs.contains("esigd-remote-scd serving"), "{logs}");
    assert!(logs.contains("answer sent"), "{logs}");
    for secret in [PIN, WRONG_PIN] {
        assert!(!logs.contains(secret), "a PIN in the logs:\n{logs}");
    }
}
