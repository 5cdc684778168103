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

/// The owner changes the certificate's status (`code`); a signature request by its pseudonym is
/// then refused (409, naming `state`) and the device is not contacted.
fn refused_before_the_device(
    w: &World,
    id_token: &str,
    serial: &str,
    pseudonym: &str,
    code: &str,
    state: &str,
) {
    let patch = json!({"status": {"code": code, "message": "lost phone"}}).to_string();
    let auth = format!("X-GovStack-AuthenticationToken: {id_token}");
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
        w,
        "X-Pseodonym-Token",
        &token_for(w, pseudonym),
        &body(code.as_bytes(), "x"),
    );
    assert_eq!(r.status, 409, "{}", r.message());
    assert!(r.message().contains(state), "{}", r.message());
    assert!(
        w.device.try_next(Duration::from_secs(2)).is_none(),
        "the device was contacted"
    );
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
    let code = v["verificationCode"].as_str().unwrap().to_owned();
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
    assert_eq!(
        screen["vc"],
        code.as_str(),
        "the e-Service and the device show one code"
    );
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

    // Tokens: a changed one is refused; none at all sends to the pseudonym page.
    let t = token_for(&w, &pseudonym);
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    // The claims always start `{"` (base64url `eyJ`): change their first character.
    assert!(parts[1].starts_with("eyJ"), "{t}");
    parts[1].replace_range(0..1, "f");

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
    // Without a token: 302 to the interactive pseudonym page, as the contract says.
    assert_eq!(r.status, 302, "{}", r.message());
    let location = r
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        location.starts_with("/v1/sign/interactivePseudonym?format=CAdES&hash="),
        "{location}"
    );
    assert!(location.contains("&dataToBeDisplayed=eA&"), "{location}");

    // A suspended certificate is refused before the device is contacted.
    refused_before_the_device(
        &w,
        &mari.id_token,
        &serial,
        &pseudonym,
        "SUSPEND",
        "suspended",
    );
    // That was the fifth request for this pseudonym: the sixth waits (429, Retry-After), known
    // or not.
    let r = sign(
        &w,
        "X-Pseodonym-Token",
        &token_for(&w, &pseudonym),
        &body(b"9", "x"),
    );
    assert_eq!(r.status, 429, "{}", r.message());
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        r.headers
    );

    // Metrics: the endings by code, and the pending signatures (the decoy still waits).
    let (code, metrics) = w.esigd.get("/metrics", &[]);
    assert_eq!(code, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let line = |needles: &[&str]| -> String {
        metrics
            .lines()
            .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no {needles:?} line in:\n{metrics}"))
            .to_owned()
    };
    assert!(
        line(&[
            "esigd_scd_sessions_ended_total",
            "kind=\"signing\"",
            "end=\"OK\""
        ])
        .ends_with(" 1")
    );
    assert!(
        line(&[
            "esigd_scd_sessions_ended_total",
            "kind=\"signing\"",
            "end=\"DOCUMENT_UNUSABLE\""
        ])
        .ends_with(" 1")
    );
    assert!(
        line(&[
            "esigd_scd_sessions_ended_total",
            "kind=\"onboarding\"",
            "end=\"OK\""
        ])
        .ends_with(" 1")
    );
    assert!(
        line(&["esigd_scd_sessions{", "state=\"pending\""]).ends_with(" 1"),
        "the decoy"
    );
    assert!(line(&["esigd_scd_session_seconds_count", "kind=\"signing\""]).ends_with(" 3"));

    // The audit trail of the first signature: requested, code shown, device answered, created,
    // fetched.
    let log = esigd_testkit::api::mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    assert_eq!(log.status, 200, "{}", log.message());
    let events = log.json();
    let mut kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["signatureId"] == id.as_str())
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The signature's time-stamp token is in the transaction too (logged at its genTime).
    let stamps = kinds.iter().filter(|k| **k == "timestamp.issued").count();
    assert_eq!(stamps, 1, "{events}");
    kinds.retain(|k| *k != "timestamp.issued");
    assert_eq!(
        kinds,
        [
            "scd.signature.requested",
            "scd.verification_code.shown",
            "scd.device.answered",
            "signature.created",
            "signature.fetched"
        ],
        "{events}"
    );

    // The citizen is named on every device event of the signature by her pseudonymous reference (of the
    // personal identifier in the certificate's subject), never by name; the created event carries what
    // she was shown. A one-time signature in her name gets the same reference ("My signatures" lists both).
    let trail: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["signatureId"] == id.as_str())
        .filter(|e| {
            e["event"].as_str().unwrap().starts_with("scd.") || e["event"] == "signature.created"
        })
        .collect();
    let user_ref = trail[0]["userRef"].as_str().unwrap().to_owned();
    assert_eq!(user_ref.len(), 64, "{events}");
    assert!(
        trail.iter().all(|e| e["userRef"] == user_ref.as_str()),
        "{events}"
    );
    let created = trail
        .iter()
        .find(|e| e["event"] == "signature.created")
        .unwrap();
    assert_eq!(created["display"], "Lease 42", "{created}");
    assert_eq!(created["format"], "CAdES", "{created}");
    assert_eq!(created["signatureType"], "SCD", "{created}");
    for e in &trail {
        assert!(!e.to_string().contains("49005170001"), "{e}");
    }
    let one_time = w.idp.id_token(AUD, SECRET, REDIRECT, "mari");
    let r = w.call(
        "POST",
        "/v1/sign/onetime",
        &[
            "-H",
            &format!("X-GovStack-AuthenticationToken: {one_time}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body(b"Lease annex", "Lease 42 annex").to_string(),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.message());
    let one_time_id = r.json()["signatureId"].as_str().unwrap().to_owned();
    let log = esigd_testkit::api::mtls(
        &w.esigd.eservice,
        &w.ca,
        Some(&w.auditor),
        "GET",
        "/v1/audit/log?limit=1000",
        &[],
    );
    let events = log.json();
    let created = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["signatureId"] == one_time_id.as_str() && e["event"] == "signature.created")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(created["signatureType"], "ONETIME", "{created}");
    assert_eq!(created["userRef"], user_ref.as_str(), "{created}");

    // No PIN in any log.
    for name in ["esigd.log", "rscd.log", "device.log"] {
        assert!(!w.log(name).contains(PIN), "the PIN is in {name}");
    }
}

/// The part of `html` between `start` and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in:\n{html}"))
        + start.len();
    let j = html[i..].find(end).unwrap() + i;
    &html[i..j]
}

#[test]
fn the_signing_pages_ask_the_device_and_return_to_the_callback() {
    let mut w = world();
    let mari = w.idp.tokens(AUD, SECRET, REDIRECT, "mari");
    let onboarded = w.onboard(&mari.access_token, 0);
    let pseudonym = onboarded["pseudonym"].as_str().unwrap().to_owned();
    let serial = onboarded["certificateId"].as_str().unwrap().to_owned();
    let work = w.dir.path().join("pages");
    std::fs::create_dir_all(&work).unwrap();
    let doc = work.join("form.txt");
    std::fs::write(&doc, b"Consent form 7\n").unwrap();
    let jar = work.join("cookies");
    let jar = jar.to_str().unwrap();
    let page = |path: &str, extra: &[&str]| -> (u16, String) {
        let url = w.esigd.url(path);
        let mut args = vec!["-c", jar, "-b", jar];
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, body) = esigd_testkit::curl(&args);
        (code, String::from_utf8(body).unwrap())
    };
    let hash = B64
        .encode(Sha256::digest(b"Consent form 7\n"))
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let display = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("Consent form 7");
    let (code, choice) = page(
        &format!(
            "/v1/sign/interactive?serviceId=svc-a&format=CAdES&hashType=SHA2-256&hash={hash}\
             &dataToBeDisplayed={display}&state=st-1&nonce=n-1\
             &callbackUrl=https%3A%2F%2Fland.example.test%2Fcb%2Fdone"
        ),
        &[],
    );
    assert_eq!(code, 200, "{choice}");
    let t = between(&choice, "/v1/sign/interactive/scd?t=", "\"").to_owned();
    // The pseudonym form, then the code.
    let (code, form) = page(&format!("/v1/sign/interactive/scd?t={t}"), &[]);
    assert_eq!(code, 200, "{form}");
    assert!(form.contains("id=\"pseudonym\""), "{form}");
    let (code, waiting) = page(
        "/v1/sign/interactive/scd",
        &[
            "--data-urlencode",
            &format!("t={t}"),
            "--data-urlencode",
            &format!("pseudonym={}", pseudonym.to_uppercase()),
        ],
    );
    assert_eq!(code, 200, "{waiting}");
    let shown = between(&waiting, "id=\"verification-code\">", "<").to_owned();
    // Without scripts the page refreshes itself; with them, /v1/ui/wait.js asks the status
    // endpoint (a long poll) and moves on only when the device has answered.
    assert!(
        waiting.contains("<noscript><meta http-equiv=\"refresh\""),
        "{waiting}"
    );
    assert!(waiting.contains("src=\"/v1/ui/wait.js\""), "{waiting}");
    let (code, js) = page("/v1/ui/wait.js", &[]);
    assert_eq!(code, 200);
    assert!(
        js.contains("/v1/sign/interactive/scd") || js.contains("data-status"),
        "{js}"
    );
    // The device shows the same code and the e-Service's text; the citizen types the PIN.
    let screen = w.device.next();
    assert_eq!(screen["type"], "SIGN", "{screen}");
    assert_eq!(
        screen["vc"],
        shown.as_str(),
        "the page and the device show one code"
    );
    assert_eq!(screen["text"], "Consent form 7", "{screen}");
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    assert_eq!(w.device.confirm(&tx, PIN, None)["sent"], "OK");
    let (code, status) = page(&format!("/v1/sign/interactive/scd/status?t={t}"), &[]);
    assert_eq!((code, status.trim()), (200, "{\"pending\":false}"));
    let (code, done) = page(&format!("/v1/sign/interactive/scd/wait?t={t}"), &[]);
    assert_eq!(code, 200, "{done}");
    let back = between(
        &done,
        "id=\"continue\" class=\"choice primary\" href=\"",
        "\"",
    )
    .replace("&amp;", "&")
    .replace("&#x2f;", "/");
    assert!(
        back.starts_with("https://land.example.test/cb/done?signatureId="),
        "{back}"
    );
    assert!(back.ends_with("&state=st-1&nonce=n-1"), "{back}");
    let id = between(&back, "signatureId=", "&").to_owned();
    // The e-Service's back end fetches it over mTLS; openssl verifies it against the document.
    let r = response(&w, &id, 0);
    assert_eq!(r.status, 200, "{}", r.message());
    let p7s = B64.decode(r.json()["signature"].as_str().unwrap()).unwrap();
    verify_with_openssl(
        &w.dir.path().join("data/pki/ca.pem"),
        &w.dir.path().join("data/pki/tsa.pem"),
        &p7s,
        &doc,
        &work,
        None,
    );

    // Refused on the device: back to the callback with access_denied and no signatureId.
    // This time through the contract's entry, which has no serviceId: the callbackUrl names the
    // e-Service, and the browser goes straight to the pseudonym form.
    let (code, out) = page(
        &format!(
            "/v1/sign/interactivePseudonym?format=CAdES&hashType=SHA2-256&hash={hash}\
             &state=st-2&callbackUrl=https%3A%2F%2Fland.example.test%2Fcb%2Fdone"
        ),
        &["-D", "-"],
    );
    assert_eq!(code, 303, "{out}");
    let t = between(&out, "location: /v1/sign/interactive/scd?t=", "\r").to_owned();
    let (code, _) = page(
        "/v1/sign/interactive/scd",
        &[
            "--data-urlencode",
            &format!("t={t}"),
            "--data-urlencode",
            &format!("pseudonym={pseudonym}"),
        ],
    );
    assert_eq!(code, 200);
    let tx = w.device.next()["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    w.device
        .decide(json!({"transactionId": tx, "decision": "refuse"}));
    let (code, out) = page(
        &format!("/v1/sign/interactive/scd/wait?t={t}"),
        &["-D", "-"],
    );
    assert_eq!(code, 303, "{out}");
    let location = out
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim();
    assert!(
        location.starts_with("https://land.example.test/cb/done?error=access_denied"),
        "{location}"
    );
    assert!(!location.contains("signatureId"), "{location}");
    assert!(location.ends_with("&state=st-2"), "{location}");

    // The same document again at once (same signed attributes within the second): a new
    // session reaches the device, not the refused one.
    let (_, choice) = page(
        &format!(
            "/v1/sign/interactive?serviceId=svc-a&format=CAdES&hashType=SHA2-256&hash={hash}\
             &state=st-3&callbackUrl=https%3A%2F%2Fland.example.test%2Fcb%2Fdone"
        ),
        &[],
    );
    let t = between(&choice, "/v1/sign/interactive/scd?t=", "\"").to_owned();
    let (code, waiting) = page(
        "/v1/sign/interactive/scd",
        &[
            "--data-urlencode",
            &format!("t={t}"),
            "--data-urlencode",
            &format!("pseudonym={pseudonym}"),
        ],
    );
    assert_eq!(code, 200, "{waiting}");
    let screen = w
        .device
        .try_next(Duration::from_secs(20))
        .expect("the second request reached the device");
    assert_eq!(screen["type"], "SIGN", "{screen}");
    let tx = screen["transactionId"].as_str().unwrap().to_owned();
    assert_eq!(w.device.confirm(&tx, PIN, None)["sent"], "OK");
    let (code, done) = page(&format!("/v1/sign/interactive/scd/wait?t={t}"), &[]);
    assert_eq!(code, 200, "{done}");
    assert!(done.contains("signatureId="), "{done}");

    // Pseudonym submissions from one address are limited (6 a minute, bursts of 3): each can
    // make a phone ring.
    let (_, choice) = page(
        &format!(
            "/v1/sign/interactive?serviceId=svc-a&format=CAdES&hashType=SHA2-256&hash={hash}\
             &callbackUrl=https%3A%2F%2Fland.example.test%2Fcb%2Fdone"
        ),
        &[],
    );
    let t = between(&choice, "/v1/sign/interactive/scd?t=", "\"").to_owned();
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            page(
                "/v1/sign/interactive/scd",
                &[
                    "--data-urlencode",
                    &format!("t={t}"),
                    "--data-urlencode",
                    "pseudonym=not a pseudonym",
                ],
            )
            .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");

    // A revoked certificate cannot sign (refused before the device), and OCSP says revoked.
    refused_before_the_device(&w, &mari.id_token, &serial, &pseudonym, "REVOKE", "revoked");
    let cert = work.join("revoked.pem");
    std::fs::write(&cert, onboarded["certificate"].as_str().unwrap()).unwrap();
    let out = ocsp(
        &w.dir.path().join("data/pki/ca.pem"),
        &w.esigd.url("/ocsp"),
        &["-cert", cert.to_str().unwrap()],
        false,
    );
    assert!(out.contains(": revoked"), "{out}");
}
