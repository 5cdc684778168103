//! HSM throughput on a throw-away SoftHSM token: the session pool and the one-time key set
//! against bare cryptoki loops measured in the same run.
//!
//! `cargo bench --bench hsm_throughput` (env: `BENCH_SECS` per sample, default 1; `BENCH_ROUNDS`
//! samples per figure, default 5). Each figure is the median of its samples; the samples of the
//! baseline and of the pool are interleaved so that noise from other processes hits both alike.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Settings, hsm_with_key, median, par};
use esigd_hsm::testing::raw;
use esigd_hsm::{KeyKind, KeyRef, OneTimeConfig, OneTimeKeys};

fn main() {
    let Some(set) = Settings::from_env(1) else {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    };
    let (dur, rounds) = (set.dur, set.rounds);
    println!("hsm_throughput: SoftHSM2, ECDSA P-256, {}", set.describe());

    let (token, hsm) = hsm_with_key("bench", 8);
    let signer = Arc::new(
        hsm.signer(&KeyRef::label("bench"), "bench.key", None)
            .unwrap(),
    );

    println!();
    println!(
        "| caller threads | raw cryptoki sign/s (own session each) | pool sign/s | pool / raw |"
    );
    println!("|---|---|---|---|");
    for threads in [1usize, 2, 4, 8] {
        let (mut raw_s, mut pool_s) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw_s.push(raw::sign_loop(&token, "bench", threads, dur));
            let s = signer.clone();
            pool_s.push(par(
                threads,
                dur,
                Arc::new(move || {
                    s.sign_digest(&[0x5a; 32]).unwrap();
                }),
            ));
        }
        let (r, p) = (median(raw_s), median(pool_s));
        println!("| {threads} | {r:.0} | {p:.0} | {:.2} |", p / r);
    }

    // Latency on the request path: what one caller waits for one key's work. The caller is paced
    // (a pause between calls, outside the timed part) like a stream of requests below capacity.
    let lat = |f: &dyn Fn()| -> f64 {
        let mut v: Vec<f64> = (0..2000)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(300));
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };

    println!();
    println!("| one-time sequence (1 sign per key) | threads | keys/s | ratio to raw |");
    println!("|---|---|---|---|");
    let onetime = Arc::new(
        OneTimeKeys::start(
            &hsm,
            OneTimeConfig {
                ready: 8,
                max_signatures: 3,
                ..OneTimeConfig::default()
            },
        )
        .unwrap(),
    );
    onetime.wait_ready(8, Duration::from_secs(10));
    for threads in [1usize, 2] {
        let (mut raw_s, mut pre_s) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw_s.push(raw::keygen_sign_destroy_loop(&token, 1, threads, dur));
            let ot = onetime.clone();
            pre_s.push(par(
                threads,
                dur,
                Arc::new(move || {
                    let k = ot.take().unwrap();
                    k.sign_digest(&[0x5a; 32]).unwrap();
                    k.destroy().unwrap();
                }),
            ));
        }
        let (r, p) = (median(raw_s), median(pre_s));
        println!("| raw keygen+sign+destroy | {threads} | {r:.0} | 1.00 |");
        println!(
            "| pre-generated take+sign+destroy | {threads} | {p:.0} | {:.2} |",
            p / r
        );
    }
    let ot = onetime.clone();
    let pre = lat(&move || {
        let k = ot.take().unwrap();
        k.sign_digest(&[0x5a; 32]).unwrap();
        k.destroy().unwrap();
    });
    let h2 = hsm.clone();
    let bare = lat(&move || {
        h2.ephemeral_sign_once(KeyKind::EcP256, &[&[0x5a; 32]])
            .unwrap();
    });
    println!();
    println!("| request-path latency, median of 2000 paced calls (1 caller) | µs |");
    println!("|---|---|");
    println!("| keygen+sign+destroy inline (through the pool) | {bare:.0} |");
    println!("| take pre-generated key + sign + destroy | {pre:.0} |");
}
