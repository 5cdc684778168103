//! Workflow 9.2.2 through the API with every part real (issue 13): a citizen onboarded through
//! `esigd-remote-scd` and `esigd-device` (own SoftHSM token, PIN) signs with a pseudonym: token,
//! `POST /v1/sign/pseudonym`, 202 while the device has not answered, the device approves in CLI
//! mode, 200 with the signature. The signature is checked by `openssl cms -verify`,
//! `openssl ts -verify` and pyHanko; the signer certificate is the onboarded one and OCSP says
//! good. Then the refusals.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_testkit::api::{Reply, verify_with_openssl};
use esigd_testkit::certcheck::ocsp;
use esigd_testkit::rscd::{PIN, WRONG_PIN};
use esigd_testkit::scd_world::{AUD, REDIRECT, SECRET, World, world};
use esigd_testkit::validators::pyhanko_validate_cms;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn token_for(w: &World, pseudonym: &str) -> String {
    let r = w.call("GET", &format!("/v1/token/pseodonym/{pseudonym}"), &[]);
    assert_eq!(r.status, 200, "{}", r.message());
    r.json()["jwt"].as_str().unwrap().to_owned()
}

fn body(doc: &[u8], display: &str) -> Value {
    json!({
        "format": "CAdES",
        "hash": B64.encode(Sha256::digest(doc)),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": display,
        "nonce": "d2dff00401c92ca6879ef5f0938ce31580898266d59832d8531e8d04fc3898a6",
        "state": "2569cb4125cb7303f0f16782e7e2814b2269888c734af4c90639653e4f92d3a5",
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
}

fn sign(w: &World, header: &str, token: &str, body: &Value) -> Reply {
    let h = format!("{header}: {token}");
    let b = body.to_string();
    w.call(
        "POST",
        "/v1/sign/pseudonym",
        &[
            "-H",
            &h,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &b,
        ],
    )
}

fn response(w: &World, id: &str, wait_ms: u64) -> Reply {
    w.call(
        "GET",
        &format!("/v1/sign/response/{id}?timeoutMs={wait_ms}"),
        &["--max-time", "40"],
    )
}

#[test]
fn a_citizen_signs_with_their_device_by_pseudonym() {
    let mut w = world();
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let onboarded = w.onboard(&mari.access_token, 0);
    let pseudonym = onboarded["pseudonym"].as_str().unwrap().to_owned();
    let serial = onboarded["certificateId"].as_str().unwrap().to_owned();
    let work = w.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let doc = work.join("lease.txt");
    std::fs::write(&doc, b"Lease agreement no. 42\n").unwrap();

    // Token (the contract's path and header spellings), request: answered at once.
    let token = token_for(&w, &pseudonym.to_uppercase());
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token,
        &body(b"Lease agreement no. 42\n", "Lease 42"),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let v = r.json();
    let id = v["signatureId"].as_str().unwrap().to_owned();
    assert_eq!(v["state"], body(b"", "")["state"]);
    assert_eq!(v["nonce"], body(b"", "")["nonce"]);
    // Pending while the device has not answered.
    let pending = response(&w, &id, 0);
    assert_eq!(
        pending.status,
        202,
        "{}",
        String::from_utf8_lossy(&pending.body)
    );
    assert!(
        pending
            .headers
            .to_ascii_lowercase()
            .contains("retry-after: 1"),
        "{}",
        pending.headers
    );
    assert_eq!(pending.json()["status"]["code"], "PENDING");
    // The token is spent.
    let again = sign(&w, "X-Pseudonym-Token", &token, &body(b"x", "x"));
    assert_eq!(again.status, 401, "{}", again.message());
    assert!(
        again.message().contains("already used"),
        "{}",
        again.message()
    );

    // The device shows the e-Service's text and the code; the citizen types the PIN.
    let screen = w.device.next();
    assert_eq!(screen["type"], "SIGN", "{screen}");
    assert_eq!(screen["text"], "Lease 42", "{screen}");
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    let sent = w.device.confirm(&tx, PIN, None);
    assert_eq!(sent["sent"], "OK", "{sent}");
    let r = response(&w, &id, 20_000);
    assert_eq!(r.status, 200, "{}", r.message());
    let v = r.json();
    assert_eq!(v["signatureType"], "SCD", "{v}");
    assert_eq!(v["certificateId"], serial.as_str(), "{v}");
    let p7s = B64.decode(v["signature"].as_str().unwrap()).unwrap();
    let esigd_ca = w.dir.path().join("data/pki/ca.pem");
    let tsa = w.dir.path().join("data/pki/tsa.pem");
    let verified = verify_with_openssl(&esigd_ca, &tsa, &p7s, &doc, &work, None);
    assert_eq!(
        esigd_pki::pem::serial_hex(&verified.signer_cert.tbs_certificate.serial_number),
        serial,
        "the signer is the onboarded certificate"
    );
    let report = pyhanko_validate_cms(&work.join("sig.p7s"), &doc, &esigd_ca, None);
    assert!(
        report.signature.ok() && report.bottom_line,
        "pyHanko: {report:#?}"
    );
    assert!(report.timestamp_valid(), "pyHanko time-stamp: {report:#?}");
    let cert = work.join("signer.pem");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
    assert!(
        ocsp(
            &esigd_ca,
            &w.esigd.url("/ocsp"),
            &["-cert", cert.to_str().unwrap()],
            false
        )
        .contains(": good")
    );

    // Refused on the device: no signature, the reason.
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, &pseudonym),
        &body(b"2", "Second"),
    );
    let id2 = r.json()["signatureId"].as_str().unwrap().to_owned();
    let tx = w.device.next()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = w
        .device
        .decide(json!({"transactionId": tx, "decision": "refuse"}));
    assert!(
        sent["sent"].as_str().unwrap().starts_with("USER_REFUSED"),
        "{sent}"
    );
    let r = response(&w, &id2, 20_000);
    assert_eq!(r.status, 403, "{}", r.message());
    assert!(r.message().starts_with("access_denied"), "{}", r.message());

    // One running signature per key: a second request while one waits is refused.
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, &pseudonym),
        &body(b"3", "Third"),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let id3 = r.json()["signatureId"].as_str().unwrap().to_owned();
    let tx = w.device.next()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, &pseudonym),
        &body(b"4", "Fourth"),
    );
    assert_eq!(r.status, 409, "{}", r.message());
    // Three wrong PINs lock the key: DOCUMENT_UNUSABLE.
    let mut last = w.device.confirm(&tx, WRONG_PIN, None);
    for _ in 0..2 {
        assert!(last["again"].is_string(), "{last}");
        let _ = w.device.next();
        last = w.device.confirm(&tx, WRONG_PIN, None);
    }
    assert_eq!(last["sent"], "DOCUMENT_UNUSABLE", "{last}");
    let r = response(&w, &id3, 20_000);
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().starts_with("key_unusable"), "{}", r.message());

    // A pseudonym that names no key looks the same from outside: token, signatureId, pending.
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, "zzzz-zzzz-zzzz"),
        &body(b"5", "Fifth"),
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let decoy = r.json()["signatureId"].as_str().unwrap().to_owned();
    assert_eq!(response(&w, &decoy, 0).status, 202);

    // Tokens: another e-Service's is refused; a changed one is refused; none at all is refused.
    let t = token_for(&w, &pseudonym);
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replace('A', "B");
    let r = sign(&w, "X-Pseodonym-Token", &parts.join("."), &body(b"6", "x"));
    assert_eq!(r.status, 401, "{}", r.message());
    let r = w.call(
        "POST",
        "/v1/sign/pseudonym",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body(b"7", "x").to_string(),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.message());

    // A suspended certificate is refused before the device is contacted.
    let patch = json!({"status": {"code": "SUSPEND", "message": "lost phone"}}).to_string();
    let auth = format!("X-GovStack-AuthenticationToken: {}", mari.id_token);
    let r = w.call(
        "PATCH",
        &format!("/v1/cert/{serial}"),
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &patch,
        ],
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, &pseudonym),
        &body(b"8", "x"),
    );
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().contains("suspended"), "{}", r.message());
    assert!(
        w.device.try_next(Duration::from_secs(2)).is_none(),
        "the device was contacted"
    );

    // No PIN in any log.
    for name in ["esigd.log", "rscd.log", "device.log"] {
        assert!(!w.log(name).contains(PIN), "the PIN is in {name}");
    }
}
