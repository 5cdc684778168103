//! Workflow 9.2.1 (a citizen sets up their own signing device) end to end in a real browser:
//! Debian's Chromium driven by npm `playwright-core` (`tests/e2e/onboard-flow.mjs`), a real OpenID
//! provider as the Identity BB (`tests/e2e/idp.mjs`), the real `esigd` binary on a SoftHSM token,
//! the reference Remote SCD service `esigd-remote-scd` and the reference device app `esigd-device`
//! with its web UI and its own SoftHSM token, all as processes talking (mutual) TLS.
//!
//! One tab is the citizen at esigd (log in, type the device ID, read the code), a second tab of the
//! same browser is the phone (compare the code, confirm, choose the PIN twice). The certificate
//! esigd issues is then checked with validators we did not write (`openssl verify -x509_strict`,
//! pkilint, `openssl ocsp`) and against the key `pkcs11-tool` reads from the device's token;
//! "My certificates" suspends it in the browser and OCSP follows. No log of the three processes
//! may contain the PIN.
//!
//! `esigd-remote-scd` and `esigd-device` are binaries of other packages: build them first
//! (`cargo build --workspace`, or a whole-workspace `cargo nextest run`). Screenshots of every page
//! go to `$ESIGD_TEST_ARTIFACTS/<test>/` (default: under cargo's `CARGO_TARGET_TMPDIR`,
//! `browser-onboarding/<test>/`); `scripts/screenshots.sh` copies two of them to
//! `docs/screenshots/`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use esigd_hsm::testing::TestToken;
use esigd_testkit::browser::{artifacts, require_browser, tail};
use esigd_testkit::certcheck::{check_scd_certificate, ocsp, openssl};
use esigd_testkit::device_ui::DeviceUi;
use esigd_testkit::idp::{Idp, e2e_dir};
use esigd_testkit::pki::Ca;
use esigd_testkit::rscd::{Pki, Rscd, start_rscd};
use esigd_testkit::{Daemon, config, esigd, free_port};
use serde_json::Value;

/// The OIDC client secret of esigd at the test IdP.
const OIDC_SECRET: &str = "esigd-onboarding-test-secret";
/// `scd.relying_party_name`: what the device shows as the one asking.
const RP_NAME: &str = "esigd browser test";
/// The PIN the citizen chooses on the device: twelve digits (the longest the device takes), so
/// that the log check cannot match a hex or decimal run in a debug log by accident.
const PIN: &str = "904718263551";
/// The citizen (password `test`) and the name the Identity BB has for them.
const USER: &str = "mari";
const USER_NAME: &str = "Mari Maasikas";

/// The Identity BB, the Remote SCD service, one device with its UI, and esigd configured for both.
struct Env {
    daemon: Daemon,
    device: DeviceUi,
    rscd: Rscd,
    idp: Idp,
    /// `http://127.0.0.1:<port>`: esigd's public listener.
    public: String,
    _pki: Pki,
    _token: TestToken,
    dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Env {
        require_browser();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let token = TestToken::create();

        // The Remote SCD service and the device, with the PKI run-dev.sh makes.
        let pki = Pki::new(root);
        let rscd = start_rscd(
            &pki,
            &root.join("rscd-state"),
            free_port(),
            free_port(),
            &root.join("rscd.log"),
        );
        let device = DeviceUi::start(&pki, &rscd, &root.join("device"), &root.join("device.log"));

        let public_port = free_port();
        let public = format!("http://127.0.0.1:{public_port}");
        let idp = Idp::start_with(&serde_json::json!({
            "clients": [{
                "client_id": "esigd",
                "client_name": "esigd eSignature service",
                "client_secret": OIDC_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "redirect_uris": [format!("{public}/v1/oidc/callback")],
            }]
        }));
        // The e-Service listener's TLS (no e-Service is used here).
        let eservice_ca = Ca::new(root, "eservice-ca");
        let server = eservice_ca.issue("server", "/CN=esigd.test", "server_ext", None);
        let toml = format!(
            r#"
[ca]
# A public name in the certificates' CRL and OCSP links (pkilint refuses internal ones).
base_url = "http://esig.example.com"

[tls]
cert = {server_cert:?}
key = {server_key:?}
client_ca = {client_ca:?}

[tsa]
allow_unsynchronized_clock = true

[identity]
issuer = {issuer:?}
client_id = "esigd"
client_secret = {{ env = "ESIGD_TEST_OIDC_SECRET" }}
redirect_url = "{public}/v1/oidc/callback"
[identity.claims]
default_country = "EE"

[scd]
url = "https://127.0.0.1:{rp_port}"
client_cert = {rp_cert:?}
client_key = {rp_key:?}
server_ca = {rscd_ca:?}
relying_party_uuid = "00000000-0000-4000-8000-0000000000b1"
relying_party_name = "{RP_NAME}"
"#,
            server_cert = server.0,
            server_key = server.1,
            client_ca = eservice_ca.pem(),
            issuer = idp.issuer,
            rp_port = rscd.rp_port,
            rp_cert = pki.path("esigd-rp.pem"),
            rp_key = pki.path("esigd-rp.key"),
            rscd_ca = pki.path("rscd-ca.pem"),
        );
        let cfg = config(root, &token, &toml);
        esigd_testkit::init(&cfg);
        let mut cmd = esigd();
        cmd.arg("--config").arg(&cfg).args([
            "serve",
            "--public",
            &format!("127.0.0.1:{public_port}"),
            "--eservice",
            "127.0.0.1:0",
        ]);
        cmd.env("ESIGD_TEST_OIDC_SECRET", OIDC_SECRET)
            .env("RUST_LOG", "debug");
        let daemon = Daemon::start_logged(cmd, root.join("esigd.log"));
        Env {
            daemon,
            device,
            rscd,
            idp,
            public,
            _pki: pki,
            _token: token,
            dir,
        }
    }

    fn rscd_log(&self) -> String {
        std::fs::read_to_string(&self.rscd.log).unwrap_or_default()
    }

    /// Logs of everything involved, for failure messages.
    fn diagnostics(&self) -> String {
        format!(
            "--- esigd log (tail) ---\n{}\n--- Remote SCD service log (tail) ---\n{}\n--- device log (tail) ---\n{}\n--- IdP log (tail) ---\n{}",
            tail(&self.daemon.log_text(), 60),
            tail(&self.rscd_log(), 30),
            tail(&self.device.log_text(), 30),
            tail(&self.idp.log(), 30)
        )
    }

    /// Runs `tests/e2e/onboard-flow.mjs` with `args`; returns its JSON report (panics on failure).
    fn drive(&self, out: &Path, args: &[&str]) -> Value {
        let started = Instant::now();
        let o = Command::new("node")
            .arg(e2e_dir().join("onboard-flow.mjs"))
            .arg("--out")
            .arg(out)
            .args(["--esigd", &self.public, "--user", USER])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run node tests/e2e/onboard-flow.mjs");
        println!(
            "onboard-flow.mjs {}: {:.1} s",
            args.get(1).unwrap_or(&""),
            started.elapsed().as_secs_f64()
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let report = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<Value>(l).ok());
        match report {
            Some(r) if o.status.success() && r["ok"] == true => r,
            _ => panic!(
                "onboard-flow.mjs {args:?} failed ({}); screenshots in {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
                o.status,
                out.display(),
                self.diagnostics()
            ),
        }
    }

    /// esigd's CA certificate.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.pem")
    }

    /// `openssl ocsp` for `cert` at esigd's responder (SHA-256 CertID).
    fn ocsp(&self, cert: &Path) -> String {
        ocsp(
            &self.ca(),
            &format!("{}/ocsp", self.public),
            &["-cert", cert.to_str().unwrap()],
            true,
        )
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The DER SubjectPublicKeyInfo of the certificate `cert` (PEM), by openssl.
fn spki_der(cert: &Path, work: &Path) -> Vec<u8> {
    let pubkey = work.join("cert-pubkey.pem");
    let der = work.join("cert-pubkey.der");
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
        "-out",
        pubkey.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pubkey.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    std::fs::read(der).unwrap()
}

/// Every screenshot `names` was taken and is in `out`.
fn assert_screenshots(report: &Value, out: &Path, names: &[&str]) {
    let shots: Vec<&str> = report["screenshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    for name in names {
        assert!(
            shots.iter().any(|p| p.ends_with(name)) && out.join(name).is_file(),
            "{name} missing: {shots:?}"
        );
    }
}

#[test]
fn a_citizen_sets_up_a_signing_device_in_a_real_browser() {
    let env = Env::start();
    let out = artifacts(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-onboarding"),
        "onboarding",
    );
    let work = env.dir.path();
    let r = env.drive(
        &out.join("onboard"),
        &[
            "--scenario",
            "onboard",
            "--device-ui",
            &env.device.ui,
            "--device-id",
            &env.device.id,
            "--pin",
            PIN,
        ],
    );
    let ctx = format!("report: {r:#}\n{}", env.diagnostics());

    // The start page and the login at the Identity BB.
    assert_eq!(r["start"]["status"], 200, "{ctx}");
    assert_eq!(s(&r["start"]["h1"]), "Set up your signing device", "{ctx}");
    assert!(
        s(&r["start"]["loginHref"]).starts_with("/v1/account/login?t="),
        "{ctx}"
    );
    assert!(
        s(&r["idp"]["url"]).starts_with(&env.idp.issuer),
        "the login form was the Identity BB's\n{ctx}"
    );

    // The pairing form knows who logged in and offers the key slots.
    let form = &r["form"];
    assert_eq!(form["status"], 200, "{ctx}");
    assert_eq!(s(&form["citizenName"]), USER_NAME, "{ctx}");
    assert_eq!(
        form["keySlots"],
        serde_json::json!(["0", "1", "2", "3"]),
        "{ctx}"
    );

    // esigd's code page: four digits, and a refresh to the page that waits for the device.
    let wait = &r["wait"];
    let code = s(&wait["code"]);
    assert!(
        code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()),
        "{ctx}"
    );
    assert!(
        s(&wait["metaRefresh"]).contains("url=/v1/onboard/finish?t="),
        "{ctx}"
    );

    // The device showed this request with the same code, asked for the PIN twice, and sent OK.
    let device = &r["device"];
    assert_eq!(s(&device["rpName"]), RP_NAME, "{ctx}");
    assert_eq!(s(&device["what"]), "Create a signing key", "{ctx}");
    assert!(
        s(&device["text"]).contains(RP_NAME) && s(&device["text"]).contains(USER_NAME),
        "{ctx}"
    );
    assert!(s(&device["header"]).contains(&env.device.id), "{ctx}");
    match device["choices"].as_array().unwrap().len() {
        0 => assert_eq!(s(&device["code"]), code, "the same code on both\n{ctx}"),
        3 => assert_eq!(s(&device["picked"]), code, "{ctx}"),
        n => panic!("{n} codes on the device\n{ctx}"),
    }
    assert_eq!(device["pinFields"], 2, "the PIN is chosen twice\n{ctx}");
    assert_eq!(s(&device["after"]["notice"]), "Answer sent (OK).", "{ctx}");
    assert_eq!(device["after"]["request"], 0, "{ctx}");

    // esigd's last page: the pseudonym and the certificate.
    let done = &r["done"];
    assert_eq!(done["status"], 200, "{ctx}");
    assert_eq!(s(&done["result"]), "Your signing device is ready", "{ctx}");
    let pseudonym = s(&done["pseudonym"]);
    assert!(!pseudonym.is_empty(), "{ctx}");
    let id = s(&done["certificateId"]).to_owned();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ctx}"
    );
    assert_eq!(
        s(&done["certificateHref"]),
        format!("/pki/certs/{id}"),
        "{ctx}"
    );
    assert_eq!(s(&done["myCertsHref"]), "/v1/certs", "{ctx}");
    assert_eq!(r["dialogs"], serde_json::json!([]), "{ctx}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");
    assert_screenshots(
        &r,
        &out.join("onboard"),
        &[
            "01-onboard-start.png",
            "02-idp-login.png",
            "03-onboard-device.png",
            "04-onboard-code.png",
            "05-device-request.png",
            "06-device-answered.png",
            "07-onboard-done.png",
        ],
    );

    // The published certificate: strict X.509, pkilint (PKIX and ETSI natural person), the
    // citizen's name from the Identity BB, OCSP good.
    let (status, pem) = env.daemon.get(&format!("/pki/certs/{id}"), &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pem));
    let cert = work.join("scd-cert.pem");
    std::fs::write(&cert, &pem).unwrap();
    check_scd_certificate(&env.ca(), &cert);
    let subject = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-serial",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subject.contains(&format!("CN={USER_NAME}")), "{subject}");
    assert!(
        subject
            .to_ascii_lowercase()
            .contains(&format!("serial={}", id.to_ascii_lowercase())),
        "the certificate ID is its serial: {subject}"
    );
    let good = env.ocsp(&cert);
    assert!(good.contains(": good"), "{good}");

    // The certified key is the one on the device's token (read by pkcs11-tool with the PIN the
    // citizen chose), and the only one there.
    let keys = env.device.token_public_keys(PIN);
    assert_eq!(
        keys,
        vec![spki_der(&cert, work)],
        "the device's token holds exactly the certified key"
    );

    // "My certificates" lists it; Suspend puts it on hold.
    let r2 = env.drive(
        &out.join("certs"),
        &[
            "--scenario",
            "certs",
            "--certificate-id",
            &id,
            "--action",
            "suspend",
        ],
    );
    let ctx2 = format!("report: {r2:#}\n{}", env.diagnostics());
    let before = &r2["before"];
    assert_eq!(before["status"], 200, "{ctx2}");
    assert_eq!(s(&before["citizenName"]), USER_NAME, "{ctx2}");
    assert_eq!(before["rows"], 1, "{ctx2}");
    assert!(s(&before["row"]["status"]).starts_with("ACTIVE"), "{ctx2}");
    assert!(s(&before["row"]["text"]).contains(pseudonym), "{ctx2}");
    assert_eq!(
        before["row"]["buttons"],
        serde_json::json!([format!("suspend-{id}"), format!("revoke-{id}")]),
        "{ctx2}"
    );
    let after = &r2["after"];
    assert_eq!(s(&after["note"]), "The certificate is suspended.", "{ctx2}");
    assert!(
        s(&after["row"]["status"]).starts_with("SUSPENDED"),
        "{ctx2}"
    );
    assert_eq!(
        after["row"]["buttons"],
        serde_json::json!([format!("activate-{id}"), format!("revoke-{id}")]),
        "{ctx2}"
    );
    assert_eq!(r2["pageErrors"], serde_json::json!([]), "{ctx2}");
    assert_screenshots(
        &r2,
        &out.join("certs"),
        &[
            "01-certs-start.png",
            "02-idp-login.png",
            "03-certs-list.png",
            "04-certs-suspend.png",
        ],
    );
    let held = env.ocsp(&cert);
    assert!(
        held.contains(": revoked") && held.contains("certificateHold"),
        "{held}"
    );

    // The PIN is in no log. All three logged at debug level: the check reads real output.
    let logs = [
        ("esigd", env.daemon.log_text(), "citizen logged in"),
        (
            "the Remote SCD service",
            env.rscd_log(),
            "esigd-remote-scd serving",
        ),
        (
            "the device",
            env.device.log_text(),
            "device ID (SCDRemoteId)",
        ),
    ];
    for (who, log, expected) in &logs {
        assert!(log.contains(expected), "{who}'s log lacks {expected:?}");
        assert!(log.contains("DEBUG"), "{who} did not log at debug level");
        assert!(!log.contains(PIN), "the PIN is in {who}'s log");
    }
    println!(
        "browser-onboarding artifacts (screenshots): {}",
        out.display()
    );
}
