//! Server-side cost of each signature format next to CAdES, in one run: what `esigd_formats` adds
//! around the key and the TSA (prepare what the key signs; finish: verify the signature with the
//! certificate's key and assemble; the time-stamp input; embed the token), and the size of the B-T
//! object.
//!
//! `cargo bench --bench formats` (env: `BENCH_ROUNDS`, default 7; `BENCH_ITERS` per round and
//! format, default 200).
//!
//! The key (a software P-256 key, `esigd_formats::testing`) and the time-stamp token (a software
//! TSA key) are made outside the timed parts: in esigd they are the HSM's and the TSA's, whose
//! costs `benches/onetime_api.rs` measures end to end. Each round times every format in turn, so
//! noise from other processes hits all alike; the figures are medians over rounds of the
//! per-signature mean, and the ratio is to CAdES in the same round.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, Instant};

use esigd_formats::testing::{p256_signer, request_for, sign_der, tsa_token};
use esigd_formats::{DigestAlgorithm, Document, Format, prepare};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn docs(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| Document {
            name: format!("document {i}.pdf"),
            media_type: "application/pdf".into(),
            digest: DigestAlgorithm::Sha256.digest(format!("doc {i}").as_bytes()),
        })
        .collect()
}

/// One signature in `format` over `documents`: (time in the format's code, B-T size).
fn one(
    format: Format,
    documents: &[Document],
    key: &p256::ecdsa::SigningKey,
    cert: &x509_cert::Certificate,
) -> (Duration, usize) {
    let t0 = Instant::now();
    let p = prepare(format, &request_for(cert, documents)).unwrap();
    let prepared = t0.elapsed();
    let sig = sign_der(key, p.to_be_signed());
    let t1 = Instant::now();
    let signed = p.finish(&sig).unwrap();
    let input = signed.timestamp_input();
    let finished = t1.elapsed();
    let token = tsa_token(&input);
    let t2 = Instant::now();
    let bt = signed.add_timestamp(&token).unwrap();
    let embedded = t2.elapsed();
    (prepared + finished + embedded, bt.len())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 7);
    let iters = env_usize("BENCH_ITERS", 200);
    let (key, cert) = p256_signer();
    let cases: Vec<(Format, usize)> = vec![
        (Format::Cades, 1),
        (Format::Pades, 1),
        (Format::Xades, 1),
        (Format::Asice, 1),
        (Format::Jws, 1),
        (Format::Xades, 10),
        (Format::Asice, 10),
        (Format::Jws, 10),
    ];
    let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut sizes = vec![0usize; cases.len()];
    // Key + TSA outside the timed parts, for scale.
    let mut outside = Vec::new();
    for _ in 0..rounds {
        let mut round = Vec::new();
        for (i, (format, n)) in cases.iter().enumerate() {
            let d = docs(*n);
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, size) = one(*format, &d, &key, &cert);
                total += t;
                sizes[i] = size;
            }
            let us = total.as_secs_f64() * 1e6 / iters as f64;
            per_case[i].push(us);
            round.push(us);
        }
        for (i, us) in round.iter().enumerate() {
            ratios[i].push(us / round[0]);
        }
        let t = Instant::now();
        for _ in 0..iters {
            let s = sign_der(&key, b"x");
            let _ = tsa_token(&s);
        }
        outside.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    println!(
        "formats: {rounds} rounds x {iters} signatures per format (medians; ratio to CAdES in the same round)"
    );
    println!(
        "{:<8} {:>4} {:>12} {:>10} {:>12}",
        "format", "docs", "µs/signature", "× CAdES", "B-T bytes"
    );
    for (i, (format, n)) in cases.iter().enumerate() {
        println!(
            "{:<8} {:>4} {:>12.1} {:>10.2} {:>12}",
            format.name(),
            n,
            median(&mut per_case[i]),
            median(&mut ratios[i]),
            sizes[i]
        );
    }
    println!(
        "for scale, outside the timed part: software P-256 signature + software TSA token = {:.1} µs",
        median(&mut outside)
    );
}
