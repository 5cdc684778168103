//! Workflow 9.2.1 through the API with every part real (issue 12): the `esigd` binary on a
//! SoftHSM token, the npm `oidc-provider` Identity BB (the e-Service passes the citizen's ACCESS
//! token; esigd introspects it), the `esigd-remote-scd` service over mutual TLS, and the
//! `esigd-device` app with its own SoftHSM token, answering in `--cli` mode as the citizen would.
//! The certificate is checked by `openssl verify -x509_strict`, pkilint and `openssl ocsp`, and
//! its key is read back from the device's token with `pkcs11-tool`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use esigd_testkit::api::mtls;
use esigd_testkit::certcheck::{check_scd_certificate, ocsp, openssl};
use esigd_testkit::rscd::PIN;
use esigd_testkit::scd_world::{AUD, REDIRECT, SECRET, world};
use serde_json::json;

#[test]
fn a_citizen_onboards_their_device_through_the_api() {
    let mut w = world();
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");

    // 1. The device is asked; the citizen picks the right code, accepts and chooses a PIN (twice).
    let call = w.create(&mari.access_token, 0);
    let screen = w.on_screen();
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    assert_eq!(screen["choosePin"], true, "{screen}");
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "confirm",
        "choice": screen["vc"], "pin": PIN, "pinAgain": PIN}));
    assert_eq!(sent["sent"], "OK", "{sent}");
    let r = call.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.message());
    let v = r.json();
    let id = v["certificateId"].as_str().unwrap().to_owned();
    let pseudonym = v["pseudonym"].as_str().unwrap().to_owned();
    assert_eq!(pseudonym.len(), 14, "{pseudonym}");

    // The certificate: valid, linted, OCSP good, subject from the Identity BB, key = the device's.
    let cert = w.dir.path().join("scd.pem");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
    let esigd_ca = w.dir.path().join("data/pki/ca.pem");
    check_scd_certificate(&esigd_ca, &cert);
    let out = ocsp(
        &esigd_ca,
        &w.esigd.url("/ocsp"),
        &["-cert", cert.to_str().unwrap()],
        false,
    );
    assert!(out.contains(": good"), "{out}");
    let subject = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subject.contains("CN=Mari Maasikas"), "{subject}");
    let spki_der = w.dir.path().join("spki.der");
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
        "-out",
        w.dir.path().join("spki.pem").to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        w.dir.path().join("spki.pem").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        spki_der.to_str().unwrap(),
    ]);
    assert!(
        w.device
            .token_public_keys()
            .contains(&std::fs::read(&spki_der).unwrap()),
        "the certificate's key is the one in the device's token"
    );
    // The SCDRemoteId is stored sealed: not in any file of the store (WAL, SST, manifest).
    let needle = w.device.id.as_bytes().to_vec();
    let mut files = vec![w.dir.path().join("data/db")];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            scanned += bytes.len();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "the SCDRemoteId is in the clear in {}",
                p.display()
            );
        }
    }
    assert!(scanned > 0, "no store files read");

    // 2. The same device and key slot again: refused at once (its certificate is active).
    let r = w.create(&mari.id_token, 0).join().unwrap();
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().contains(&id), "{}", r.message());

    // 3. The citizen refuses on the device.
    let call = w.create(&mari.access_token, 1);
    let tx = w.on_screen()["transactionId"].as_str().unwrap().to_owned();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "refuse"}));
    assert!(
        sent["sent"].as_str().unwrap().starts_with("USER_REFUSED"),
        "{sent}"
    );
    let r = call.join().unwrap();
    assert_eq!(r.status, 403, "{}", r.message());
    assert!(r.message().contains("refused"), "{}", r.message());

    // 4. The citizen picks a code other than the page's.
    let call = w.create(&mari.access_token, 1);
    let screen = w.on_screen();
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    let wrong = screen["choices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| **c != screen["vc"])
        .unwrap()
        .clone();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "confirm", "choice": wrong, "pin": PIN}));
    assert_eq!(sent["sent"], "WRONG_VC", "{sent}");
    let r = call.join().unwrap();
    assert_eq!(r.status, 403, "{}", r.message());
    assert!(r.message().contains("verification code"), "{}", r.message());

    // 5. No answer from the device within scd.onboarding_timeout (8 s): 504.
    let call = w.create(&mari.access_token, 1);
    let _ = w.on_screen();
    let r = call.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.message());

    // The service passed the certificate on to the device, which stored it in its token (it
    // fetches at its next poll, which the requests above have woken).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.device.token_certificates().is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "the certificate did not reach the device's token"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The citizen has one certificate.
    let auth = format!("X-GovStack-AuthenticationToken: {}", mari.access_token);
    let list = mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.client),
        "GET",
        "/v1/cert/list",
        &["-H", &auth],
    );
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["pseudonym"], pseudonym.as_str());

    // Each step is an audit event: 4 onboardings started, 3 refused (citizen, wrong code,
    // timeout), 1 certificate issued.
    let log = mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    assert_eq!(log.status, 200, "{}", log.message());
    let events = log.json();
    let count = |kind: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind && e["eservice"] == "svc-a")
            .count()
    };
    assert_eq!(count("scd.onboarding.started"), 4, "{events}");
    assert_eq!(count("scd.onboarding.refused"), 3, "{events}");
    assert_eq!(count("scd.certificate.issued"), 1, "{events}");

    // The PIN is in no log of the three processes (all at debug level); nor are the tokens.
    w.esigd.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for name in ["esigd.log", "rscd.log", "device.log"] {
        let text = w.log(name);
        assert!(!text.is_empty(), "{name} is empty");
        assert!(!text.contains(PIN), "the PIN is in {name}");
        assert!(!text.contains(&mari.access_token), "a token is in {name}");
    }
}
