//! PAdES client cost on a large document: `esig::pdf::prepare` + `esig::pdf::embed` of a 300-page,
//! 30 MB PDF, next to a baseline measured in the same run (one SHA-256 pass over the file: the
//! least any signer must do), and the peak memory of the process.
//!
//! `cargo bench -p esig --bench pdf` (env: `BENCH_ROUNDS`, default 7). The CMS is made once over
//! the prepared digest by `esigd_formats` (PAdES profile, a software key; the key is not timed).
//! Medians over rounds; ratio = (prepare + embed) / baseline in the same round. Peak RSS is the
//! process's `VmHWM` after the run minus before it (the test file itself is ~30 MB of it).
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Instant, SystemTime};

use esig::pdf::{self, PrepareOptions};
use esigd_formats::testing::{p256_signer, sign_prepared};
use esigd_formats::{DigestAlgorithm, Document, Format, SignRequest, prepare};
use sha2::Digest;

#[path = "../tests/common/pdfgen.rs"]
pub mod pdfgen;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let texts: Vec<String> = (1..=300).map(|i| format!("Page {i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let original = pdfgen::sample_pdf(&texts, 100_000);
    let (key, cert) = p256_signer();
    let options = PrepareOptions {
        signing_time: SystemTime::now(),
        ..PrepareOptions::default()
    };
    let before = vm_hwm_kib();
    let (mut base, mut prep, mut emb, mut ratio) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let d = sha2::Sha256::digest(&original);
        std::hint::black_box(d);
        let b = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let prepared = pdf::prepare(&original, &options).unwrap();
        let p = t.elapsed().as_secs_f64();
        let docs = [Document {
            name: "document".into(),
            media_type: "application/pdf".into(),
            digest: prepared.digest.to_vec(),
        }];
        let request = SignRequest {
            digest_algorithm: DigestAlgorithm::Sha256,
            documents: &docs,
            signer: &cert,
            chain: &[],
            time: SystemTime::now(),
        };
        let cms = sign_prepared(&key, prepare(Format::Pades, &request).unwrap().as_ref())
            .bytes()
            .to_vec();
        let t = Instant::now();
        let signed = pdf::embed(&prepared.bytes, &cms).unwrap();
        let e = t.elapsed().as_secs_f64();
        std::hint::black_box(signed);
        base.push(b * 1e3);
        prep.push(p * 1e3);
        emb.push(e * 1e3);
        ratio.push((p + e) / b);
    }
    let after = vm_hwm_kib();
    println!(
        "pdf: 300 pages, {} bytes, {rounds} rounds (medians)",
        original.len()
    );
    println!(
        "  baseline SHA-256 of the file  {:8.1} ms",
        median(&mut base)
    );
    println!(
        "  prepare                       {:8.1} ms",
        median(&mut prep)
    );
    println!(
        "  embed                         {:8.1} ms",
        median(&mut emb)
    );
    println!("  (prepare + embed) / baseline  {:8.2}", median(&mut ratio));
    println!(
        "  peak RSS {} MiB (before the runs {} MiB, with the 30 MB input)",
        after / 1024,
        before / 1024
    );
}
