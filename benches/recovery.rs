//! Recovery time vs store size (issue #16): `esigd serve` from spawn to its `ready` banner line on a data
//! directory holding 0, 1 M and 10 M records.
//!
//! The store is grown directly with the store API while no daemon runs (`esigd init` first, so the HSM
//! keys and certificates exist): half of the records are TSA issued-token journal records
//! (`RocksImprintLog::batch_for`, which also appends the token's audit leaf when the build writes
//! `timestamp.issued` events) and half audit-ledger leaves (`SignatureStore::audit_batch`, a
//! `signature.fetched` event with a signatureId, so the transaction index grows too), committed in
//! batches of 20,000 (one WAL sync each). Sizes are cumulative: the 10 M store is the 1 M store plus 9 M.
//! Then `esigd serve` is started and stopped (SIGTERM) `ESIGD_RECOVERY_RUNS` times (default 5) per size;
//! the table gives the median and the spread. Flat means: opening does not scan records and the audit
//! ledger loads its frontier with O(log n) reads.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo bench --bench recovery                                  # 0, 1 M, 10 M
//! ESIGD_RECOVERY_SIZES=0,100000 ESIGD_RECOVERY_RUNS=3 cargo bench --bench recovery
//! ```
//!
//! The `esigd` binary is the one next to the bench executable (`target/release/esigd`) or `$ESIGD_BIN`.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, Instant, SystemTime};

use esigd_hsm::testing::TestToken;
use esigd_store::persist::RocksImprintLog;
use esigd_store::signatures::{AuditEvent, SignatureStore};
use esigd_store::{Store, StoreOptions};
use esigd_testkit::{Daemon, SERVE, config, esigd, init};
use esigd_tsa::{DigestAlgorithm, ImprintRecord};

const BATCH: u64 = 20_000;

fn sizes() -> Vec<u64> {
    std::env::var("ESIGD_RECOVERY_SIZES")
        .unwrap_or_else(|_| "0,1000000,10000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("ESIGD_RECOVERY_SIZES: numbers, comma-separated")
        })
        .collect()
}

/// Appends `n` records (half journal records, half audit leaves) numbered from `from`.
fn grow(store: &Store, from: u64, n: u64) {
    let journal = RocksImprintLog::new(store.clone());
    let signatures = SignatureStore::new(store.clone());
    let policy = "1.3.6.1.4.1.99999.1.1".parse().unwrap();
    let mut i = from;
    let end = from + n;
    while i < end {
        let mut batch = esigd_store::Batch::new();
        let stop = (i + BATCH).min(end);
        while i < stop {
            let now = SystemTime::now();
            if i.is_multiple_of(2) {
                // Serials far above what the daemon hands out (it reserves blocks from its marks).
                let serial = (1u64 << 40) + i;
                let record = ImprintRecord {
                    serial,
                    gen_time: now,
                    hash_algorithm: DigestAlgorithm::Sha256,
                    imprint: sha2_of(i).to_vec(),
                    policy,
                    nonce: Some(i.to_be_bytes().to_vec()),
                };
                batch.extend(journal.batch_for(&record).unwrap());
            } else {
                let mut e = AuditEvent::new("signature.fetched", now);
                e.signature_id = Some(hex::encode(sha2_of(i)));
                e.eservice = Some("bench".into());
                e.request_id = Some(format!("bench-{i}"));
                batch.extend(signatures.audit_batch(&e, now).unwrap());
            }
            i += 1;
        }
        store.commit_blocking(batch).unwrap();
    }
}

fn sha2_of(i: u64) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(i.to_be_bytes()).into()
}

fn du(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() { du(&e.path()) } else { m.len() };
        }
    }
    total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs: usize = std::env::var("ESIGD_RECOVERY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::create();
    let cfg = config(
        dir.path(),
        &token,
        "[tsa]\nallow_unsynchronized_clock = true\n",
    );
    init(&cfg);
    // A configured (non-dev) run reads the e-Service listener's TLS files: a self-signed pair.
    let tls = dir.path().join("data/tls");
    std::fs::create_dir_all(&tls).unwrap();
    let o = std::process::Command::new("openssl")
        .current_dir(&tls)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ])
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::copy(tls.join("server.pem"), tls.join("client-ca.pem")).unwrap();
    let db = dir.path().join("data/db");
    let mut have = 0u64;
    println!(
        "recovery time vs store size: esigd serve spawn -> ready, {runs} runs each (binary {})",
        esigd_testkit::esigd_binary().display()
    );
    println!(
        "{:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8}",
        "records",
        "audit leaves",
        "disk MiB",
        "median ms",
        "min ms",
        "max ms",
        "build s",
        "unclean"
    );
    for size in sizes() {
        let built = Instant::now();
        let leaves = {
            let store = Store::open(&db, StoreOptions::default()).unwrap();
            if size > have {
                grow(&store, have, size - have);
                have = size;
            }
            esigd_store::ledger::LedgerStore::new(store).size()
        };
        let build = built.elapsed();
        let mut times = Vec::new();
        let mut unclean = 0;
        for r in 0..runs {
            let mut cmd = esigd();
            cmd.arg("--config").arg(&cfg).args(SERVE);
            let started = Instant::now();
            let d = Daemon::start_logged(cmd, dir.path().join(format!("serve-{size}-{r}.log")));
            times.push(started.elapsed());
            // esigd prints `ready` just before it installs its SIGTERM handler: a SIGTERM at once would
            // meet the default action. One request first.
            assert_eq!(d.get("/healthz", &[]).0, 200);
            // A stop that does not exit cleanly is counted (and its log kept), not fatal: the table goes on.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.stop())).is_err() {
                unclean += 1;
            }
        }
        times.sort();
        println!(
            "{:>12} {:>12} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>12.1} {:>8}",
            have,
            leaves,
            du(&db) as f64 / (1024.0 * 1024.0),
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
            build.as_secs_f64(),
            unclean
        );
    }
}
