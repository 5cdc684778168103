//! The audit ledger end to end (issue #15): one-time signatures become ledger leaves; signed tree heads,
//! consistency proofs and a transaction's proof bundle come from the e-Service API over mutual TLS;
//! `esig audit verify` checks a bundle offline and `esig audit monitor` recomputes the root. Then the
//! tampering cases: one changed byte of a stored event (proofs fail, the monitor reports it) and a truncated
//! ledger (esigd refuses smaller tree heads and says why).

#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use esigd_ledger::{ConsistencyProof, ProofBundle, SignedTreeHead};
use esigd_store::ledger::{LedgerStore, SIZE_KEY, leaf_key};
use esigd_store::{Batch, Cf, Store};
use esigd_testkit::onetime_env::OneTimeEnv;
use esigd_testkit::{esig, text};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use sha2::Digest;

fn sign(env: &OneTimeEnv, n: u32) -> String {
    let digest = sha2::Sha256::digest(format!("ledger document {n}").as_bytes());
    let r = env.post(&serde_json::json!({
        "format": "CAdES",
        "hash": B64.encode(digest),
        "hashType": "SHA2-256",
        "dataToBeDisplayed": format!("Ledger test {n}"),
        "requestTimestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    }));
    assert_eq!(r.status, 200, "one-time signature: {}", r.message());
    let id = r.json()["signatureId"].as_str().unwrap().to_string();
    let fetched = env.call("GET", &format!("/v1/sign/response/{id}"), &[]);
    assert_eq!(fetched.status, 200, "{}", fetched.message());
    id
}

fn publish(env: &OneTimeEnv) -> SignedTreeHead {
    let r = env.call_as_auditor("POST", "/v1/audit/sth", &[]);
    assert_eq!(r.status, 200, "POST /v1/audit/sth: {}", r.message());
    serde_json::from_slice(&r.body).unwrap()
}

fn esig_audit(args: &[&str]) -> std::process::Output {
    esig().arg("audit").args(args).output().expect("run esig")
}

/// Opens the stopped daemon's store.
fn with_store(data: &Path, f: impl FnOnce(&Store)) {
    let store = Store::open(data.join("db"), Default::default()).unwrap();
    f(&store);
}

#[test]
fn ledger_proofs_verify_offline_and_tampering_is_detected() {
    let mut env = OneTimeEnv::start();
    let a = sign(&env, 1);

    // The audit key: the API serves what esigd wrote to pki/audit.pem.
    let key = env.call("GET", "/v1/audit/key", &[]);
    assert_eq!(key.status, 200);
    let pem = String::from_utf8(key.body.clone()).unwrap();
    assert_eq!(
        pem,
        std::fs::read_to_string(env.path("data/pki/audit.pem")).unwrap()
    );
    let key_path = env.path("audit.pem");
    std::fs::write(&key_path, &pem).unwrap();
    let vk = VerifyingKey::from_public_key_pem(&pem).unwrap();

    let first = publish(&env);
    first.verify(&vk).unwrap();
    assert!(
        first.tree_size >= 2,
        "created + fetched: {}",
        first.tree_size
    );
    let b = sign(&env, 2);
    let second = publish(&env);
    second.verify(&vk).unwrap();
    assert!(second.tree_size >= first.tree_size + 2);
    // An e-Service may read tree heads; GET returns the latest published.
    let latest = env.call("GET", "/v1/audit/sth", &[]);
    assert_eq!(latest.status, 200);
    assert_eq!(
        serde_json::from_slice::<SignedTreeHead>(&latest.body).unwrap(),
        second
    );

    // Consistency between the two heads, checked here with the RFC 9162 algorithm.
    let c = env.call(
        "GET",
        &format!(
            "/v1/audit/sth/consistency?first={}&second={}",
            first.tree_size, second.tree_size
        ),
        &[],
    );
    assert_eq!(c.status, 200, "{}", c.message());
    let proof: ConsistencyProof = serde_json::from_slice(&c.body).unwrap();
    assert!(proof.verify(&first, &second));
    let bad = env.call("GET", "/v1/audit/sth/consistency?first=0&second=1", &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.message().contains("first"), "{}", bad.message());

    // The e-Service's proof bundle for its signature: created and fetched, verified by esig offline.
    let r = env.call("GET", &format!("/v1/audit/proof/{a}"), &[]);
    assert_eq!(r.status, 200, "{}", r.message());
    let bundle: ProofBundle = serde_json::from_slice(&r.body).unwrap();
    let kinds: Vec<String> = bundle
        .entries
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(&e.leaf).unwrap()["event"].to_string())
        .collect();
    assert!(
        kinds.iter().any(|k| k.contains("signature.created")),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k.contains("signature.fetched")),
        "{kinds:?}"
    );
    // The ledger commits to the signed object: signature.created carries its SHA-256.
    let fetched = env.call("GET", &format!("/v1/sign/response/{a}"), &[]);
    let signature = B64
        .decode(fetched.json()["signature"].as_str().unwrap())
        .unwrap();
    let created: serde_json::Value = bundle
        .entries
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(&e.leaf).unwrap())
        .find(|v| v["event"] == "signature.created")
        .unwrap();
    assert_eq!(
        created["signatureSha256"].as_str(),
        Some(hex::encode(sha2::Sha256::digest(&signature)).as_str())
    );
    let bundle_path = env.path("bundle-a.json");
    std::fs::write(&bundle_path, &r.body).unwrap();
    let sth_path = env.path("sth.json");
    std::fs::write(&sth_path, &latest.body).unwrap();
    let o = esig_audit(&[
        "verify",
        bundle_path.to_str().unwrap(),
        "--sth",
        sth_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "esig audit verify: {}", text(&o));
    assert!(text(&o).contains("signature.created"), "{}", text(&o));
    // Under the older head: the bundle is for that head and does not match the newer one.
    let old = env.call(
        "GET",
        &format!("/v1/audit/proof/{b}?treeSize={}", first.tree_size),
        &[],
    );
    assert_eq!(
        old.status,
        404,
        "b was signed after the first head: {}",
        old.message()
    );
    let unknown = env.call("GET", &format!("/v1/audit/proof/{}", "ab".repeat(32)), &[]);
    assert_eq!(unknown.status, 404);
    // Leaves are for auditors only.
    assert_eq!(env.call("GET", "/v1/audit/entries?end=1", &[]).status, 403);

    // The monitor: signature, consistency with the previous head (state file), every leaf rehashed.
    let state = env.path("monitor-state.json");
    let (cert, key, cacert) = (env.auditor.0.clone(), env.auditor.1.clone(), env.ca.clone());
    // The listeners get new ports at each restart.
    let monitor = |eservice: &str, state: &Path| {
        esig_audit(&[
            "monitor",
            &format!("https://{eservice}"),
            "--audit-key",
            key_path.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--cacert",
            cacert.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--rounds",
            "1",
        ])
    };
    let o = monitor(&env.daemon.eservice, &state);
    assert!(o.status.success(), "esig audit monitor: {}", text(&o));
    sign(&env, 3);
    publish(&env);
    let o = monitor(&env.daemon.eservice, &state);
    assert!(o.status.success(), "second round: {}", text(&o));
    assert!(
        text(&o).contains("consistent with the previous head"),
        "{}",
        text(&o)
    );

    // Tamper: one byte of a's signature.created event, changed in RocksDB while esigd is stopped.
    let tampered_index = bundle.entries[0].leaf_index;
    env.restart("esigd-2.log", |data| {
        with_store(data, |store| {
            let ledger = LedgerStore::new(store.clone());
            let mut leaf = ledger.leaf(tampered_index).unwrap().unwrap();
            // The year of the event's time: still an audit event, one byte different.
            let text = String::from_utf8(leaf.clone()).unwrap();
            let at = text.find("\"time\":\"").unwrap() + 8;
            leaf[at] ^= 0x01;
            let mut b = Batch::new();
            b.put(Cf::Ledger, leaf_key(tampered_index), leaf);
            store.commit_blocking(b).unwrap();
        })
    });
    let r = env.call("GET", &format!("/v1/audit/proof/{a}"), &[]);
    assert_eq!(r.status, 200, "{}", r.message());
    std::fs::write(&bundle_path, &r.body).unwrap();
    let o = esig_audit(&[
        "verify",
        bundle_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success(),
        "a tampered event must not verify: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("does not lead to the tree head's root"),
        "{}",
        text(&o)
    );
    let fresh = env.path("monitor-fresh.json");
    let o = monitor(&env.daemon.eservice, &fresh);
    assert!(
        !o.status.success(),
        "the monitor must report the change: {}",
        text(&o)
    );
    assert!(text(&o).contains("INCONSISTENT"), "{}", text(&o));
    assert!(
        text(&o).contains("a logged event was changed"),
        "{}",
        text(&o)
    );

    // Truncate: drop the last three leaves and lower the size; esigd refuses smaller tree heads.
    let published = publish(&env);
    let cut = published.tree_size - 3;
    env.restart("esigd-3.log", |data| {
        with_store(data, |store| {
            let mut b = Batch::new();
            for i in cut..published.tree_size {
                b.delete(Cf::Ledger, leaf_key(i));
            }
            b.put(Cf::Meta, SIZE_KEY, cut.to_be_bytes());
            store.commit_blocking(b).unwrap();
        })
    });
    let r = env.call("GET", "/v1/audit/sth", &[]);
    assert_eq!(r.status, 503, "{}", r.message());
    assert!(r.message().contains("truncated"), "{}", r.message());
    assert!(
        r.message().contains(&format!("{cut} leaves")),
        "{}",
        r.message()
    );
    let r = env.call_as_auditor("POST", "/v1/audit/sth", &[]);
    assert_eq!(r.status, 503, "{}", r.message());
    let log = std::fs::read_to_string(env.path("esigd-3.log")).unwrap();
    assert!(
        log.contains("audit ledger smaller than its last published tree head"),
        "{log}"
    );
}
