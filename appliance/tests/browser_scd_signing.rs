//! Workflow 9.2.2 (a citizen signs with their own device, named by a pseudonym) end to end in a
//! real browser: Debian's Chromium driven by npm `playwright-core` (`tests/e2e/scd-sign-flow.mjs`),
//! the example e-Service (`examples/eservice/server.mjs`) with its mutual-TLS back end, the real
//! `esigd` binary on a SoftHSM token, the reference Remote SCD service `esigd-remote-scd` and the
//! reference device app `esigd-device` with its web UI and its own SoftHSM token, all as processes.
//!
//! First the device is set up in the browser (workflow 9.2.1, `tests/e2e/onboard-flow.mjs`: a
//! real OpenID provider, the device's UI answering). Then the e-Service hashes a document and
//! redirects to esigd; the citizen chooses "My signing device (SCD)", types the pseudonym, and
//! sees a code; the device's page (second tab) shows the same code; the PIN typed there signs. The
//! browser lands on the e-Service's callback, whose back end fetched the signature over mutual
//! TLS; `openssl cms -verify`, `openssl ts -verify` and pyHanko accept it, its signer is the
//! onboarded certificate and `openssl ocsp` says good. A PDF is signed the same way in PAdES: the
//! browser prepares it and embeds the device's signature (WebAssembly `esig-pdf.js`), and the
//! signed PDF it offers passes pyHanko, pdfsig and qpdf. Then Refuse on the device sends the browser
//! back with `error=access_denied` and no signature. No log holds the PIN.
//!
//! `esigd-remote-scd` and `esigd-device` are binaries of other packages: build them first
//! (`cargo build --workspace`). Screenshots of every page go to
//! `$ESIGD_TEST_ARTIFACTS/scd-signing/` (default: under cargo's `CARGO_TARGET_TMPDIR`,
//! `browser-scd-signing/scd-signing/`); `scripts/screenshots.sh` copies two of them to
//! `docs/screenshots/`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};

use esigd_hsm::testing::TestToken;
use esigd_testkit::api::{mtls, sha256_of_cert, verify_with_openssl};
use esigd_testkit::browser::{artifacts, require_browser, tail};
use esigd_testkit::certcheck::{ocsp, openssl};
use esigd_testkit::device_ui::DeviceUi;
use esigd_testkit::e2e::{EServiceSetup, NodeServer, drive, start_example_eservice};
use esigd_testkit::formats_check::{
    Anchors, check_pdf_signature, pdfsig, pyhanko_validate_pdf, qpdf_check, simple_pdf,
};
use esigd_testkit::idp::Idp;
use esigd_testkit::pki::Ca;
use esigd_testkit::rscd::{Pki, Rscd, start_rscd};
use esigd_testkit::validators::pyhanko_validate_cms;
use esigd_testkit::{Daemon, config, esigd, free_port};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The OIDC client secret of esigd at the test IdP (the onboarding login).
const OIDC_SECRET: &str = "esigd-scd-signing-test-secret";
/// `scd.relying_party_name`: what the device shows as the one asking.
const RP_NAME: &str = "esigd browser signing test";
/// The e-Service the example server plays.
const SERVICE: &str = "demo-svc";
const SERVICE_NAME: &str = "Demo e-Service (SCD browser test)";
/// The PIN the citizen chooses when setting up the device and types to sign: twelve digits, so
/// that the log check cannot match a hex or decimal run in a debug log by accident.
const PIN: &str = "615203948172";
/// The citizen (password `test`).
const USER: &str = "mari";
const USER_NAME: &str = "Mari Maasikas";

/// The Identity BB, the Remote SCD service, one device with its UI, esigd configured for both,
/// and the example e-Service.
struct Env {
    eservice: NodeServer,
    daemon: Daemon,
    device: DeviceUi,
    rscd: Rscd,
    idp: Idp,
    /// `http://127.0.0.1:<port>`: esigd's public listener.
    public: String,
    /// The CA of the e-Service listener and the auditor's client certificate.
    ca: PathBuf,
    auditor: (PathBuf, PathBuf),
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
        let mut eservice_port = free_port();
        while eservice_port == public_port {
            eservice_port = free_port();
        }
        let public = format!("http://127.0.0.1:{public_port}");
        let eservice_origin = format!("http://127.0.0.1:{eservice_port}");
        let idp = Idp::start_with(&serde_json::json!({
            "clients": [{
                "client_id": "esigd",
                "client_name": "esigd eSignature service",
                "client_secret": OIDC_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "redirect_uris": [format!("{public}/v1/oidc/callback")],
            }]
        }));
        let ca = Ca::new(root, "eservice-ca");
        let server = ca.issue("server", "/CN=esigd.test", "server_ext", None);
        let client = ca.issue("demo", "/CN=demo-eservice/O=Demo", "client_ext", None);
        let auditor = ca.issue("auditor", "/CN=auditor/O=Audit Office", "client_ext", None);
        let toml = format!(
            r#"
[ca]
base_url = {public:?}

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
relying_party_uuid = "00000000-0000-4000-8000-0000000000c2"
relying_party_name = "{RP_NAME}"

[[eservice]]
id = "{SERVICE}"
name = "{SERVICE_NAME}"
client_cert_sha256 = {es_fp:?}
allowed_ips = ["127.0.0.1/32"]
callback_prefixes = ["{eservice_origin}/"]

[[auditor]]
name = "Audit Office"
client_cert_sha256 = {aud_fp:?}
allowed_ips = ["127.0.0.1/32"]
"#,
            server_cert = server.0,
            server_key = server.1,
            client_ca = ca.pem(),
            issuer = idp.issuer,
            rp_port = rscd.rp_port,
            rp_cert = pki.path("esigd-rp.pem"),
            rp_key = pki.path("esigd-rp.key"),
            rscd_ca = pki.path("rscd-ca.pem"),
            es_fp = sha256_of_cert(&client.0),
            aud_fp = sha256_of_cert(&auditor.0),
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
        let eservice = start_example_eservice(
            &root.join("eservice"),
            &EServiceSetup {
                port: eservice_port,
                esigd_public: &public,
                esigd_eservice: &daemon.eservice,
                client: &client,
                ca: &ca.pem(),
                service_id: SERVICE,
            },
        );
        Env {
            eservice,
            daemon,
            device,
            rscd,
            idp,
            public,
            ca: ca.pem(),
            auditor,
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
            "--- esigd log (tail) ---\n{}\n--- Remote SCD service log (tail) ---\n{}\n--- device log (tail) ---\n{}\n--- e-Service log (tail) ---\n{}\n--- IdP log (tail) ---\n{}",
            tail(&self.daemon.log_text(), 60),
            tail(&self.rscd_log(), 30),
            tail(&self.device.log_text(), 30),
            tail(&self.eservice.log_text(), 20),
            tail(&self.idp.log(), 20)
        )
    }

    /// Runs the driver `script` with `args`; its JSON report.
    fn drive(&self, script: &str, out: &Path, args: &[&str]) -> Value {
        drive(script, out, args, || self.diagnostics())
    }

    /// The e-Service start page's URL.
    fn eservice_url(&self) -> &str {
        s(&self.eservice.ready["url"])
    }

    /// esigd's CA certificate.
    fn esigd_ca(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.pem")
    }

    /// The auditor's view of the audit log.
    fn audit_log(&self) -> Vec<Value> {
        let r = mtls(
            &self.daemon.eservice,
            &self.ca,
            Some(&self.auditor),
            "GET",
            "/v1/audit/log?limit=1000",
            &[],
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json().as_array().unwrap().clone()
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
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

/// The checks both scenarios share up to the device's answer: the choice page, the pseudonym
/// form, the code page, and the device showing this request with the same code.
fn assert_asked_the_device(r: &Value, env: &Env, document: &str, ctx: &str) {
    let choice = &r["choice"];
    assert_eq!(choice["status"], 200, "{ctx}");
    assert_eq!(s(&choice["eserviceName"]), SERVICE_NAME, "{ctx}");
    let display = format!("Demo e-Service: sign \"{document}\"");
    assert_eq!(s(&choice["displayText"]), display, "{ctx}");
    assert!(s(&choice["scdText"]).contains("signing device"), "{ctx}");
    assert!(
        s(&choice["scdHref"]).starts_with("/v1/sign/interactive/scd?t="),
        "{ctx}"
    );

    let form = &r["form"];
    assert_eq!(form["status"], 200, "{ctx}");
    assert_eq!(s(&form["h1"]), "Sign with your signing device", "{ctx}");
    assert_eq!(s(&form["onboardHref"]), "/v1/onboard", "{ctx}");

    // esigd's code page: four digits, a refresh to the page that waits for the device.
    let wait = &r["wait"];
    assert_eq!(wait["status"], 200, "{ctx}");
    assert_eq!(s(&wait["h1"]), "Check your device", "{ctx}");
    let code = s(&wait["code"]);
    assert!(
        code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()),
        "{ctx}"
    );
    // With scripts (as here) the page is not reloaded while it waits: no live refresh (it is in
    // <noscript>), the script long-polls and moves on to the wait URL once the device answered.
    assert!(wait["metaRefresh"].is_null(), "{ctx}");
    assert_eq!(s(&wait["waitScript"]), "/v1/ui/wait.js", "{ctx}");
    assert!(
        s(&wait["waitNext"]).starts_with("/v1/sign/interactive/scd/wait?t="),
        "{ctx}"
    );
    assert!(
        s(&wait["cancelHref"]).starts_with("/v1/sign/interactive/cancel?t="),
        "{ctx}"
    );

    // The device showed a signature request from esigd with the e-Service's text and the same
    // code to compare (no choice of three), and one PIN field.
    let device = &r["device"];
    assert!(
        s(&device["url"]).starts_with(&env.device.ui),
        "the device's own page answered\n{ctx}"
    );
    assert!(s(&device["header"]).contains(&env.device.id), "{ctx}");
    assert_eq!(s(&device["rpName"]), RP_NAME, "{ctx}");
    assert_eq!(s(&device["what"]), "Signature request", "{ctx}");
    assert_eq!(s(&device["text"]), display, "{ctx}");
    assert_eq!(s(&device["code"]), code, "the same code on both\n{ctx}");
    assert_eq!(device["choices"], serde_json::json!([]), "{ctx}");
    assert_eq!(device["pinFields"], 1, "one PIN when signing\n{ctx}");
    assert_eq!(device["after"]["request"], 0, "{ctx}");

    assert_eq!(r["dialogs"], serde_json::json!([]), "{ctx}");
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");
}

#[test]
fn a_citizen_signs_with_their_device_in_a_real_browser() {
    let env = Env::start();
    let out = artifacts(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-scd-signing"),
        "scd-signing",
    );
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // 9.2.1 first, in the browser, with the device's UI answering: the pseudonym and certificate.
    let onboarded = env.drive(
        "onboard-flow.mjs",
        &out.join("onboard"),
        &[
            "--scenario",
            "onboard",
            "--esigd",
            &env.public,
            "--user",
            USER,
            "--device-ui",
            &env.device.ui,
            "--device-id",
            &env.device.id,
            "--pin",
            PIN,
        ],
    );
    let done = &onboarded["done"];
    assert_eq!(
        s(&done["result"]),
        "Your signing device is ready",
        "{onboarded:#}"
    );
    let pseudonym = s(&done["pseudonym"]).to_owned();
    let certificate_id = s(&done["certificateId"]).to_ascii_lowercase();
    assert!(
        !pseudonym.is_empty() && !certificate_id.is_empty(),
        "{onboarded:#}"
    );

    // 9.2.2: the e-Service hashes the document, the citizen signs on the device.
    let doc = work.join("lease.txt");
    std::fs::write(
        &doc,
        "Lease agreement no. 42\nLandlord: Jaan Tamm\nTenant: Mari Maasikas\n",
    )
    .unwrap();
    let sign_out = out.join("sign");
    let r = env.drive(
        "scd-sign-flow.mjs",
        &sign_out,
        &[
            "--scenario",
            "sign",
            "--eservice",
            env.eservice_url(),
            "--device-ui",
            &env.device.ui,
            // As typed by a person: upper case is forgiven.
            "--pseudonym",
            &pseudonym.to_uppercase(),
            "--pin",
            PIN,
            "--document",
            doc.to_str().unwrap(),
        ],
    );
    let ctx = format!("report: {r:#}\n{}", env.diagnostics());
    assert_asked_the_device(&r, &env, "lease.txt", &ctx);
    let state = s(&r["choice"]["query"]["state"]).to_owned();
    let nonce = s(&r["choice"]["query"]["nonce"]).to_owned();
    assert!(!state.is_empty() && !nonce.is_empty(), "{ctx}");
    assert_eq!(
        s(&r["device"]["after"]["notice"]),
        "Answer sent (OK).",
        "{ctx}"
    );

    // esigd's result page names the signature and links (and refreshes) to the callback.
    let res = &r["esigdResult"];
    assert_eq!(res["status"], 200, "{ctx}");
    assert_eq!(s(&res["result"]), "Signed", "{ctx}");
    assert!(
        s(&res["text"]).contains("Your device signed with your key."),
        "{ctx}"
    );
    let id = s(&res["signatureId"]).to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ctx}"
    );
    let callback = format!("{}callback?signatureId={id}&", env.eservice_url());
    assert!(s(&res["continueHref"]).starts_with(&callback), "{ctx}");
    assert!(s(&res["metaRefresh"]).contains(&callback), "{ctx}");

    // Back at the e-Service with signatureId, state and nonce; its back end fetched the
    // signature over mutual TLS and checked it against its hash, and esig.js did in the browser.
    let cb = &r["callback"];
    assert!(s(&cb["url"]).starts_with(&callback), "{ctx}");
    assert_eq!(s(&cb["query"]["signatureId"]), id, "{ctx}");
    assert_eq!(s(&cb["query"]["state"]), state, "{ctx}");
    assert_eq!(s(&cb["query"]["nonce"]), nonce, "{ctx}");
    assert!(cb["query"]["error"].is_null(), "{ctx}");
    assert_eq!(s(&cb["signatureId"]), id, "{ctx}");
    assert_eq!(cb["serverCheckOk"], "true", "{ctx}");
    assert_eq!(cb["browserCheckOk"], "true", "{ctx}");
    assert_eq!(cb["timestampPresent"], "true", "{ctx}");
    assert!(s(&cb["subject"]).contains(USER_NAME), "{ctx}");
    let events = env.audit_log();
    for kind in ["signature.created", "signature.fetched"] {
        assert!(
            events
                .iter()
                .any(|e| e["event"] == kind && e["signatureId"] == id.as_str()),
            "{kind} of {id} missing from the audit log: {events:#?}\n{ctx}"
        );
    }
    assert_screenshots(
        &r,
        &sign_out,
        &[
            "01-eservice-start.png",
            "02-esigd-choice.png",
            "03-scd-pseudonym.png",
            "04-scd-code.png",
            "05-device-sign.png",
            "06-device-answered.png",
            "07-esigd-result.png",
            "08-eservice-result.png",
        ],
    );

    // The signature the browser downloaded from the e-Service: openssl verifies it against the
    // document (and refuses a changed one) and its time-stamp; pyHanko accepts both.
    let p7s = std::fs::read(s(&r["signature"])).unwrap();
    let verified = verify_with_openssl(
        &env.esigd_ca(),
        &env.dir.path().join("data/pki/tsa.pem"),
        &p7s,
        &doc,
        &work,
        None,
    );
    let report = pyhanko_validate_cms(&work.join("sig.p7s"), &doc, &env.esigd_ca(), None);
    assert!(
        report.signature.ok() && report.bottom_line && report.timestamp_valid(),
        "pyHanko did not accept the signature and its time-stamp: {report:#?}"
    );
    let ts = report.timestamp.as_ref().unwrap();
    assert_eq!(
        ts.imprint,
        hex::encode(Sha256::digest(&verified.signature)),
        "{report:#?}"
    );

    // Its signer is the certificate issued at onboarding (serial = certificateId), the one
    // published at /pki/certs/{id}; OCSP says good.
    assert_eq!(
        esigd_pki::pem::serial_hex(&verified.signer_cert.tbs_certificate.serial_number)
            .to_ascii_lowercase(),
        certificate_id,
        "the signer is the onboarded certificate"
    );
    let signer = work.join("signer.pem");
    let pem = der::EncodePem::to_pem(&verified.signer_cert, der::pem::LineEnding::LF).unwrap();
    std::fs::write(&signer, &pem).unwrap();
    let (status, published) = env.daemon.get(&format!("/pki/certs/{certificate_id}"), &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&published));
    assert_eq!(
        String::from_utf8_lossy(&published).trim(),
        pem.trim(),
        "the signer certificate is the published one"
    );
    let subject = openssl(&[
        "x509",
        "-in",
        signer.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subject.contains(&format!("CN={USER_NAME}")), "{subject}");
    let good = ocsp(
        &env.esigd_ca(),
        &format!("{}/ocsp", env.public),
        &["-cert", signer.to_str().unwrap()],
        true,
    );
    assert!(good.contains(": good"), "{good}");

    // A PDF, signed in PAdES (what the e-Service chooses for a PDF) with the device: the browser
    // prepares it, the device signs the digest of its byte ranges, the browser embeds the CMS and
    // offers contract-signed.pdf.
    let pdf = work.join("contract.pdf");
    let original = simple_pdf(&[
        "Rental contract no. 42",
        "Landlord: Jaan Tamm. Tenant: Mari Maasikas.",
    ]);
    std::fs::write(&pdf, &original).unwrap();
    let pades_out = out.join("pades");
    let r = env.drive(
        "scd-sign-flow.mjs",
        &pades_out,
        &[
            "--scenario",
            "sign",
            "--eservice",
            env.eservice_url(),
            "--device-ui",
            &env.device.ui,
            "--pseudonym",
            &pseudonym,
            "--pin",
            PIN,
            "--document",
            pdf.to_str().unwrap(),
        ],
    );
    let ctx = format!("PAdES: report: {r:#}\n{}", env.diagnostics());
    assert_asked_the_device(&r, &env, "contract.pdf", &ctx);
    assert_eq!(
        s(&r["choice"]["formatChoice"]["defaultFormat"]),
        "PAdES",
        "{ctx}"
    );
    assert_eq!(s(&r["choice"]["format"]), "PAdES", "{ctx}");
    let cb = &r["callback"];
    assert_eq!(s(&cb["format"]), "PAdES", "{ctx}");
    assert_eq!(cb["serverCheckOk"], "true", "{ctx}");
    assert_eq!(cb["browserCheckOk"], "true", "{ctx}");
    assert_eq!(
        s(&r["result"]["downloadPdfText"]),
        "Download signed PDF",
        "{ctx}"
    );
    assert_eq!(
        s(&r["result"]["signedPdf"]["name"]),
        "contract-signed.pdf",
        "{ctx}"
    );
    let signed = std::fs::read(s(&r["result"]["signedPdf"]["file"])).unwrap();
    assert!(
        signed.starts_with(&original),
        "an incremental update\n{ctx}"
    );
    let at = signed.windows(8).position(|w| w == b"contract").unwrap();
    let file = check_pdf_signature(
        &signed,
        USER_NAME,
        at,
        &Anchors::of_data_dir(&env.dir.path().join("data")),
        &work.join("pades"),
    );
    std::fs::copy(&file, pades_out.join("signed.pdf")).unwrap();
    // The validators' words next to the screenshots (for the documentation).
    let report = [
        format!(
            "$ pyhanko sign validate --pretty-print --trust ca.pem --trust-replace --no-revocation-check signed.pdf\n{}",
            pyhanko_validate_pdf(&file, &env.esigd_ca()).accepted("pyHanko")
        ),
        format!("$ pdfsig signed.pdf\n{}", pdfsig(&file).accepted("pdfsig")),
        format!("$ qpdf --check signed.pdf\n{}", qpdf_check(&file).accepted("qpdf")),
    ]
    .join("\n");
    std::fs::write(pades_out.join("validation.txt"), report).unwrap();
    // Its signer is the onboarded certificate too.
    let cms = std::fs::read(s(&r["signature"])).unwrap();
    let verified = esigd_pki::cms::verify_detached_digest(&cms, None).unwrap();
    assert_eq!(
        esigd_pki::pem::serial_hex(&verified.signer_cert.tbs_certificate.serial_number)
            .to_ascii_lowercase(),
        certificate_id,
        "the PDF's signer is the onboarded certificate"
    );
    assert_eq!(r["pageErrors"], serde_json::json!([]), "{ctx}");
    let pades_id = s(&r["esigdResult"]["signatureId"]).to_owned();
    assert_eq!(s(&cb["signatureId"]), pades_id, "{ctx}");

    // Refuse on the device: back at the e-Service with access_denied, its state and nonce, and
    // no signature.
    let refuse_out = out.join("refuse");
    let r = env.drive(
        "scd-sign-flow.mjs",
        &refuse_out,
        &[
            "--scenario",
            "refuse",
            "--eservice",
            env.eservice_url(),
            "--device-ui",
            &env.device.ui,
            "--pseudonym",
            &pseudonym,
            "--document",
            doc.to_str().unwrap(),
        ],
    );
    let ctx = format!("refuse: {r:#}\n{}", env.diagnostics());
    assert_asked_the_device(&r, &env, "lease.txt", &ctx);
    assert!(
        s(&r["device"]["after"]["notice"]).starts_with("Answer sent (USER_REFUSED"),
        "{ctx}"
    );
    let cb = &r["callback"];
    let q = &cb["query"];
    assert!(
        s(&cb["url"]).starts_with(&format!("{}callback?", env.eservice_url())),
        "{ctx}"
    );
    assert_eq!(s(&q["error"]), "access_denied", "{ctx}");
    assert!(q["signatureId"].is_null(), "{ctx}");
    assert_eq!(q["state"], r["choice"]["query"]["state"], "{ctx}");
    assert_eq!(q["nonce"], r["choice"]["query"]["nonce"], "{ctx}");
    assert_eq!(s(&cb["errorCode"]), "access_denied", "{ctx}");
    assert!(cb["result"].is_null(), "{ctx}");
    assert_screenshots(
        &r,
        &refuse_out,
        &[
            "04-scd-code.png",
            "05-device-refuse.png",
            "07-eservice-refused.png",
        ],
    );
    // Only the confirmed requests (CAdES, then PAdES) made a signature, with the onboarded
    // certificate; the refusal is in the audit log as such.
    let events = env.audit_log();
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "signature.created")
        .collect();
    assert_eq!(created.len(), 2, "{created:#?}\n{ctx}");
    let ids: Vec<&str> = created.iter().map(|e| s(&e["signatureId"])).collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&pades_id.as_str()),
        "{created:#?}\n{ctx}"
    );
    for e in &created {
        assert_eq!(
            s(&e["certificateSerial"]).to_ascii_lowercase(),
            certificate_id,
            "{created:#?}"
        );
    }
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "scd.signature.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert!(
        s(&failed[0]["message"]).starts_with("access_denied"),
        "{failed:#?}"
    );

    // The PIN is in no log. All three logged at debug level: the check reads real output.
    for (who, log) in [
        ("esigd", env.daemon.log_text()),
        ("the Remote SCD service", env.rscd_log()),
        ("the device", env.device.log_text()),
        ("the e-Service", env.eservice.log_text()),
    ] {
        assert!(!log.is_empty(), "{who}'s log is empty");
        assert!(!log.contains(PIN), "the PIN is in {who}'s log");
    }
    println!(
        "browser-scd-signing artifacts (screenshots, signature.p7s): {}",
        out.display()
    );
}
