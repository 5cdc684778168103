//! Disk cost of the TSA journal (`tsa_serials`: one record + one time-index entry per issued
//! token): writes N records as the appliance does (SHA-256 imprint, 8-byte nonce, policy OID,
//! genTime 1 ms apart) into a new RocksDB store, closes it, and prints the size on disk.
//!
//! ```sh
//! eval "$(scripts/rocksdb-lib.sh)"
//! cargo run -p esigd-store --example tsa_journal_size -- /tmp/journal-1m 1000000
//! ```
//!
//! The figure goes into README (Operating: TSA journal retention).
#![allow(clippy::unwrap_used)] // a one-off measurement

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use der::oid::ObjectIdentifier;
use esigd_store::persist::RocksImprintLog;
use esigd_store::{Batch, Store, StoreOptions};
use esigd_tsa::{DigestAlgorithm, ImprintRecord};

/// Records per durable commit (the appliance commits a signing batch of up to 16 at a time;
/// the size on disk does not depend on it).
const PER_COMMIT: u64 = 1000;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: tsa_journal_size DIR [N]"));
    let n: u64 = args.next().map_or(1_000_000, |v| v.parse().unwrap());
    assert!(
        !dir.exists(),
        "{} exists: give a new directory",
        dir.display()
    );
    let policy = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");
    let t0 = UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    let started = Instant::now();
    {
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        let log = RocksImprintLog::new(store.clone());
        let mut serial = 1u64;
        while serial <= n {
            let mut batch = Batch::new();
            for _ in 0..PER_COMMIT.min(n - serial + 1) {
                let record = ImprintRecord {
                    serial,
                    gen_time: t0 + Duration::from_millis(serial),
                    hash_algorithm: DigestAlgorithm::Sha256,
                    imprint: DigestAlgorithm::Sha256.digest(&serial.to_be_bytes()),
                    policy,
                    nonce: Some(
                        serial
                            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                            .to_be_bytes()
                            .to_vec(),
                    ),
                };
                batch.extend(log.batch_for(&record).unwrap());
                serial += 1;
            }
            store.commit_blocking(batch).unwrap();
        }
    }
    let bytes = du(&dir);
    println!(
        "{n} records: {bytes} bytes on disk in {} ({:.1} MiB; {:.0} bytes per record), written in {:.1?}",
        dir.display(),
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / n as f64,
        started.elapsed()
    );
}

/// Bytes of the files under `dir` (what `du -sb` reports, without directory entries).
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                du(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
