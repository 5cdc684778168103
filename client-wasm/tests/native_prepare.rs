//! The native half of "the WebAssembly build prepares byte for byte what the native build
//! prepares": `tests/fixtures/prepared.json` records, for each fixture PDF and options, the SHA-256
//! of the prepared file, the digest, the `/ByteRange` and the field name. This test checks the
//! native build against it; `web/assets/esig-pdf.test.mjs` checks the WebAssembly build against
//! the same file. A change to what `esig::pdf::prepare` writes fails both until the record is
//! renewed: `ESIG_WASM_BLESS=1 cargo test -p esig-wasm --test native_prepare`, then
//! `scripts/build-wasm.sh` and `node --test web/assets/`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esig_wasm::{Options, prepare};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn options(o: &Value) -> Options {
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |k: &str| o.get(k).and_then(Value::as_f64);
    Options {
        field_name: s("fieldName"),
        reason: s("reason"),
        location: s("location"),
        signing_time_ms: n("signingTime"),
        reserve: n("reserve"),
    }
}

#[test]
fn native_prepare_matches_the_record_the_wasm_test_uses() {
    let path = fixtures().join("prepared.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let bless = std::env::var_os("ESIG_WASM_BLESS").is_some();
    let cases = record["cases"].as_array_mut().unwrap();
    assert!(cases.len() >= 2, "prepared.json has no cases");
    let mut mismatches = Vec::new();
    for case in cases.iter_mut() {
        let input = case["input"].as_str().unwrap().to_owned();
        let pdf = std::fs::read(fixtures().join(&input)).unwrap();
        let p = prepare(&pdf, &options(&case["options"])).unwrap();
        assert!(
            p.bytes.starts_with(&pdf),
            "{input}: the original is not a prefix"
        );
        let got = json!({
            "sha256": hex::encode(Sha256::digest(&p.bytes)),
            "length": p.bytes.len(),
            "digest": STANDARD.encode(p.digest),
            "byteRange": p.byte_range,
            "fieldName": p.field_name,
        });
        if bless {
            case["expected"] = got;
        } else if case["expected"] != got {
            mismatches.push(format!(
                "{input}: expected {}, native prepare gives {got}",
                case["expected"]
            ));
        }
    }
    if bless {
        let mut text = serde_json::to_string_pretty(&record).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    assert!(
        mismatches.is_empty(),
        "{}\n(if esig::pdf::prepare changed on purpose: ESIG_WASM_BLESS=1 cargo test -p esig-wasm \
         --test native_prepare, then scripts/build-wasm.sh and node --test web/assets/)",
        mismatches.join("\n")
    );
}
