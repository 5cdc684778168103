//! CA issuance throughput on a throw-away SoftHSM token: certificates issued per second from CSRs,
//! against the bare HSM signing rate (cryptoki `C_Sign`, own session per thread) measured in the
//! same run.
//!
//! `cargo bench --bench ca_issuance` (env: `BENCH_SECS` per sample, default 1; `BENCH_ROUNDS`
//! samples per figure, default 5). Each figure is the median of its samples; the samples of all
//! columns are interleaved so that noise from other processes hits them alike.
//!
//! One issuance is the whole library path: CSR parse and proof-of-possession check, key policy,
//! serial draw (with a store lookup), TBS build, pre-issuance lint, one HSM signature, the
//! post-signing check (default `SignatureCheck::Sampled`: form of every ECDSA signature, full
//! verification of one in 64), and the durable store insert. Columns:
//! * `scd, memory`: `Authority::issue_scd` with `MemoryStore`;
//! * `scd, memory, every signature verified`: the same with `SignatureCheck::Every`;
//! * `scd, RocksDB`: the same as the first with the appliance's `RocksCertStore` (group commit,
//!   WAL synced: one fsync per certificate when the issuers are 1 or 2 threads);
//! * `one-time for key, memory`: `Authority::issue_one_time_for_key` (the signing pipeline: the
//!   key is the HSM's one-time key, so no CSR to parse).
//!
//! Then the RocksDB column with more concurrent issuers (group commit shares the fsync), and the
//! CPU time per operation of each part on one thread (process CPU clock, which other processes on
//! the machine disturb far less than wall-clock rates): the floor the mandatory proof-of-possession
//! check puts on SCD issuance from CSRs.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::{Settings, cpu_us_per_op, hsm_with_key, median, par, process_cpu};
use esigd_ca::{
    Authority, CaConfig, CertStore, MemoryStore, SignatureCheck, ceremony::create_root,
};
use esigd_hsm::testing::raw;
use esigd_hsm::{Hsm, HsmSignature, HsmSigner, KeyRef};
use esigd_pki::identity::{DnBuilder, IdentityClaims};
use p256::ecdsa::DerSignature;
use rand_core::OsRng;

/// Distinct CSRs issued round-robin (every issuance still gets a fresh serial).
const CSRS: usize = 64;

type Ca<St> = Authority<HsmSigner, HsmSignature, St>;

fn authority<St: CertStore>(hsm: &Hsm, root: &x509_cert::Certificate, store: St) -> Ca<St> {
    authority_with(hsm, root, store, SignatureCheck::default())
}

fn authority_with<St: CertStore>(
    hsm: &Hsm,
    root: &x509_cert::Certificate,
    store: St,
    check: SignatureCheck,
) -> Ca<St> {
    let signer = hsm.signer(&KeyRef::label("ca"), "ca.key", None).unwrap();
    let mut cfg = CaConfig::with_base_url("http://127.0.0.1:8080");
    cfg.signature_check = check;
    Authority::new(root.clone(), signer, cfg, store).unwrap()
}

fn claims() -> IdentityClaims {
    IdentityClaims {
        name: None,
        given_name: Some("Mari-Liis".into()),
        family_name: Some("Männik".into()),
        personal_identifier: Some("47101010033".into()),
        country: Some("EE".into()),
    }
}

/// Issues round-robin over `csrs` with `issue`.
fn issuer<St: CertStore + 'static>(
    ca: Arc<Ca<St>>,
    csrs: Arc<Vec<Vec<u8>>>,
    scd: bool,
) -> Arc<dyn Fn() + Send + Sync> {
    let next = Arc::new(AtomicUsize::new(0));
    let claims = claims();
    let keys: Vec<_> = csrs
        .iter()
        .map(|c| esigd_pki::csr::parse_csr(c).unwrap().public_key().clone())
        .collect();
    Arc::new(move || {
        let i = next.fetch_add(1, Ordering::Relaxed) % csrs.len();
        if scd {
            ca.issue_scd(&csrs[i], &claims, SystemTime::now()).unwrap();
        } else {
            ca.issue_one_time_for_key(keys[i].clone(), &claims, SystemTime::now())
                .unwrap();
        }
    })
}

fn main() {
    let Some(set) = Settings::from_env(1) else {
        return; // `cargo test --benches` probes bench binaries; nothing to list
    };
    let (dur, rounds) = (set.dur, set.rounds);
    println!(
        "ca_issuance: SoftHSM2, CA key ECDSA P-256, subject keys P-256, {}",
        set.describe()
    );

    let (token, hsm) = hsm_with_key("ca", 8);
    let root_signer = hsm.signer(&KeyRef::label("ca"), "ca.key", None).unwrap();
    let name = DnBuilder::new()
        .country("EE")
        .unwrap()
        .organization("esigd bench")
        .unwrap()
        .common_name("esigd Bench CA")
        .unwrap()
        .build();
    let root = create_root::<_, HsmSignature>(
        &root_signer,
        name,
        Duration::from_secs(3650 * 86_400),
        SystemTime::now() - Duration::from_secs(60),
        &mut OsRng,
    )
    .unwrap();

    let csrs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..CSRS)
            .map(|_| {
                let key = p256::ecdsa::SigningKey::random(&mut OsRng);
                let subject = DnBuilder::new().common_name("requester").unwrap().build();
                let csr = esigd_pki::csr::build_csr::<_, DerSignature>(&key, subject).unwrap();
                esigd_pki::pem::csr_to_der(&csr).unwrap()
            })
            .collect(),
    );

    let mem = Arc::new(authority(&hsm, &root, MemoryStore::new()));
    let db_dir = tempfile::tempdir().unwrap();
    let store =
        esigd_store::Store::open(db_dir.path(), esigd_store::StoreOptions::default()).unwrap();
    let rocks = Arc::new(authority(
        &hsm,
        &root,
        esigd_store::persist::RocksCertStore::new(store.clone()),
    ));
    let ot = Arc::new(authority(&hsm, &root, MemoryStore::new()));
    let every = Arc::new(authority_with(
        &hsm,
        &root,
        MemoryStore::new(),
        SignatureCheck::Every,
    ));

    println!();
    println!(
        "| threads | raw HSM sign/s | scd, memory: certs/s | / raw | scd, memory, every signature verified | / raw | scd, RocksDB: certs/s | / raw | one-time for key, memory: certs/s | / raw |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for threads in [1usize, 2] {
        let (mut raw_s, mut mem_s, mut every_s, mut rocks_s, mut ot_s) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw_s.push(raw::sign_loop(&token, "ca", threads, dur));
            mem_s.push(par(threads, dur, issuer(mem.clone(), csrs.clone(), true)));
            every_s.push(par(threads, dur, issuer(every.clone(), csrs.clone(), true)));
            rocks_s.push(par(threads, dur, issuer(rocks.clone(), csrs.clone(), true)));
            ot_s.push(par(threads, dur, issuer(ot.clone(), csrs.clone(), false)));
        }
        let (r, m, e) = (median(raw_s), median(mem_s), median(every_s));
        let (k, o) = (median(rocks_s), median(ot_s));
        println!(
            "| {threads} | {r:.0} | {m:.0} | {:.2} | {e:.0} | {:.2} | {k:.0} | {:.2} | {o:.0} | {:.2} |",
            m / r,
            e / r,
            k / r,
            o / r
        );
    }

    // RocksDB: 1–2 issuers wait for one fsync each; more concurrent issuers share it.
    let commit_ms = {
        let mut lat = Vec::new();
        for i in 0..rounds * 20 {
            let mut b = esigd_store::Batch::new();
            b.put(
                esigd_store::Cf::Meta,
                b"bench/fsync".to_vec(),
                vec![i as u8],
            );
            let t0 = std::time::Instant::now();
            store.commit_blocking(b).unwrap();
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        median(lat)
    };
    println!();
    println!(
        "scd, RocksDB store, more concurrent issuers (one durable commit alone: {commit_ms:.2} ms):"
    );
    println!();
    println!("| issuer threads | raw HSM sign/s (2 threads) | scd, RocksDB: certs/s | / raw |");
    println!("|---|---|---|---|");
    for threads in [8usize, 32] {
        let (mut raw_s, mut rocks_s) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            raw_s.push(raw::sign_loop(&token, "ca", 2, dur));
            rocks_s.push(par(threads, dur, issuer(rocks.clone(), csrs.clone(), true)));
        }
        let (r, k) = (median(raw_s), median(rocks_s));
        println!("| {threads} | {r:.0} | {k:.0} | {:.2} |", k / r);
    }
    let cas = Cas {
        mem: mem.clone(),
        ot: ot.clone(),
        rocks: rocks.clone(),
    };
    cost_breakdown(&token, &cas, &csrs, &root, dur, rounds);
    drop(cas);
    // Every issuance above is in its store; a spot check that the RocksDB records are there.
    let listed = rocks
        .list(&esigd_ca::ListQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "RocksDB store holds the issued certificates"
    );
    drop(rocks);
    drop(store);
}

/// The authorities of the main table, for [`cost_breakdown`].
struct Cas {
    mem: Arc<Ca<MemoryStore>>,
    ot: Arc<Ca<MemoryStore>>,
    rocks: Arc<Ca<esigd_store::persist::RocksCertStore>>,
}

/// CPU time per operation on one thread (process CPU clock, so hardly disturbed by other load):
/// the bare HSM signature, the parts of an issuance that are not the signature, and the ceiling
/// they put on certificates/s ÷ raw sign/s when the CPU is the only resource (SoftHSM).
fn cost_breakdown(
    token: &esigd_hsm::testing::TestToken,
    cas: &Cas,
    csrs: &Arc<Vec<Vec<u8>>>,
    root: &x509_cert::Certificate,
    dur: Duration,
    rounds: usize,
) {
    let (mem, ot, rocks) = (&cas.mem, &cas.ot, &cas.rocks);
    let claims = claims();
    let issued = mem.issue_scd(&csrs[0], &claims, SystemTime::now()).unwrap();
    let ca_key = root.tbs_certificate.subject_public_key_info.clone();
    let key = esigd_pki::csr::parse_csr(&csrs[0])
        .unwrap()
        .public_key()
        .clone();
    let pooled = mem.signer().clone();
    let (mut sign, mut pool, mut pop, mut post) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut scd, mut scd_rocks, mut one) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c0 = process_cpu();
        let t0 = std::time::Instant::now();
        let rate = raw::sign_loop(token, "ca", 1, dur);
        sign.push((process_cpu() - c0).as_secs_f64() * 1e6 / (rate * t0.elapsed().as_secs_f64()));
        pool.push(cpu_us_per_op(dur, || {
            pooled.sign_digest(&[0x5a; 32]).unwrap();
        }));
        let mut i = 0;
        pop.push(cpu_us_per_op(dur, || {
            i = (i + 1) % csrs.len();
            esigd_pki::csr::parse_csr(&csrs[i]).unwrap();
        }));
        post.push(cpu_us_per_op(dur, || {
            esigd_pki::certificate::verify_certificate_signature(&issued.certificate, &ca_key)
                .unwrap();
        }));
        scd.push(cpu_us_per_op(dur, || {
            i = (i + 1) % csrs.len();
            mem.issue_scd(&csrs[i], &claims, SystemTime::now()).unwrap();
        }));
        scd_rocks.push(cpu_us_per_op(dur, || {
            i = (i + 1) % csrs.len();
            rocks
                .issue_scd(&csrs[i], &claims, SystemTime::now())
                .unwrap();
        }));
        one.push(cpu_us_per_op(dur, || {
            ot.issue_one_time_for_key(key.clone(), &claims, SystemTime::now())
                .unwrap();
        }));
    }
    let (s, h) = (median(sign), median(pool));
    let (p, v, c, o) = (median(pop), median(post), median(scd), median(one));
    let k = median(scd_rocks);
    println!();
    println!("CPU per operation, 1 thread (process CPU time, medians of {rounds}):");
    println!();
    println!("| operation | CPU µs | raw sign ÷ this |");
    println!("|---|---|---|");
    println!("| raw HSM sign (C_Sign, P-256) | {s:.1} | 1.00 |");
    println!(
        "| HSM sign through the esigd session pool (`HsmSigner`) | {h:.1} | {:.2} |",
        s / h
    );
    println!("| CSR parse + proof-of-possession check (ring) | {p:.1} | |");
    println!("| certificate signature check (ring, CA key) | {v:.1} | |");
    println!(
        "| SCD issuance from CSR, memory store | {c:.1} | {:.2} |",
        s / c
    );
    println!(
        "| SCD issuance from CSR, RocksDB store (incl. its writer and background threads) | {k:.1} | {:.2} |",
        s / k
    );
    println!(
        "| one-time issuance for a key, memory store | {o:.1} | {:.2} |",
        s / o
    );
    println!(
        "| floor for SCD from CSR: raw sign + PoP check only | {:.1} | {:.2} |",
        s + p,
        s / (s + p)
    );
}
