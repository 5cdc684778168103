//! `RocksCertStore`: the `esigd_ca::CertStore` contract on a real RocksDB store in a temp dir.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esigd_ca::{
    CertRecord, CertStore, ListQuery, ProfileKind, RevocationReason, StatusChange, StoreError,
    StoredStatus,
};
use esigd_store::persist::{PersistError, RocksCertStore};
use esigd_store::{Cf, Store, StoreOptions};

fn open(dir: &std::path::Path) -> RocksCertStore {
    RocksCertStore::new(Store::open(dir, StoreOptions::default()).unwrap())
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn record(serial: &[u8], profile: ProfileKind) -> CertRecord {
    CertRecord {
        serial: serial.to_vec(),
        profile,
        subject: format!("CN=holder {},C=EE", hex::encode(serial)),
        // Nanosecond precision and a pre-1970 time must survive the encoding.
        not_before: UNIX_EPOCH - Duration::new(10, 250_000_000),
        not_after: t(1_900_000_000) + Duration::from_nanos(7),
        status: StoredStatus::Active,
        history: Vec::new(),
        der: [&[0x30, 0x82, 0x01, 0x00][..], serial, &[0xff; 16]].concat(),
    }
}

fn suspend(at: u64) -> StatusChange {
    StatusChange {
        from: StoredStatus::Active,
        to: StoredStatus::Suspended { since: t(at) },
        actor: "operator-1".into(),
        // The admin socket's peer uid is part of the history (compared after a reopen below).
        uid: Some(4242),
        justification: "lost card".into(),
        at: t(at),
    }
}

#[test]
fn insert_get_contains_and_duplicate_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let r = record(&[0x01, 0x02], ProfileKind::Scd);
    assert!(!s.contains(&r.serial).unwrap());
    assert_eq!(s.get(&r.serial).unwrap(), None);
    s.insert_new(&r).unwrap();
    assert!(s.contains(&r.serial).unwrap());
    assert_eq!(s.get(&r.serial).unwrap(), Some(r.clone()));
    // A prefix or extension of the serial is a different certificate.
    assert!(!s.contains(&[0x01]).unwrap());
    assert!(!s.contains(&[0x01, 0x02, 0x00]).unwrap());

    let mut other = record(&[0x01, 0x02], ProfileKind::OneTime);
    other.subject = "CN=intruder".into();
    match s.insert_new(&other) {
        Err(StoreError::SerialExists(hex)) => assert_eq!(hex, "0102"),
        other => panic!("expected SerialExists, got {other:?}"),
    }
    assert_eq!(s.get(&r.serial).unwrap(), Some(r), "first record untouched");
}

#[test]
fn status_compare_and_set_and_history_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let serial = [0x7f, 0x00, 0x11];
    {
        let s = open(dir.path());
        s.insert_new(&record(&serial, ProfileKind::Scd)).unwrap();
        s.update_status(&serial, &suspend(1000)).unwrap();

        // Stale `from` (another change won): refused, nothing written.
        let stale = StatusChange {
            from: StoredStatus::Active,
            to: StoredStatus::Revoked {
                since: t(1001),
                reason: RevocationReason::KeyCompromise,
            },
            actor: "operator-2".into(),
            uid: None,
            justification: "late".into(),
            at: t(1001),
        };
        assert!(matches!(
            s.update_status(&serial, &stale),
            Err(StoreError::Conflict(h)) if h == "7f0011"
        ));
        assert!(matches!(
            s.update_status(&[0x55], &suspend(1)),
            Err(StoreError::NotFound(h)) if h == "55"
        ));

        let resume = StatusChange {
            from: StoredStatus::Suspended { since: t(1000) },
            to: StoredStatus::Active,
            actor: "operator-1".into(),
            uid: None,
            justification: "found".into(),
            at: t(1002),
        };
        s.update_status(&serial, &resume).unwrap();
        let revoke = StatusChange {
            from: StoredStatus::Active,
            to: StoredStatus::Revoked {
                since: t(1003),
                reason: RevocationReason::Superseded,
            },
            actor: "user".into(),
            uid: None,
            justification: "new key".into(),
            at: t(1003),
        };
        s.update_status(&serial, &revoke).unwrap();
    }
    let s = open(dir.path());
    let r = s.get(&serial).unwrap().unwrap();
    assert_eq!(
        r.status,
        StoredStatus::Revoked {
            since: t(1003),
            reason: RevocationReason::Superseded
        }
    );
    let steps: Vec<_> = r
        .history
        .iter()
        .map(|c| (c.actor.as_str(), c.justification.as_str(), c.at))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("operator-1", "lost card", t(1000)),
            ("operator-1", "found", t(1002)),
            ("user", "new key", t(1003)),
        ]
    );
    assert_eq!(r.history[0], suspend(1000));
    assert_eq!(r.history[2].from, StoredStatus::Active);
}

#[test]
fn list_pages_by_serial_and_filters_by_profile() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Variable-length serials: order is bytewise, like Vec<u8> (and esigd_ca::MemoryStore).
    let mut serials: Vec<Vec<u8>> = (1u8..=30).map(|i| vec![i, i.wrapping_mul(7)]).collect();
    serials.push(vec![0x05]);
    serials.push(vec![0x05, 0x23, 0x00]);
    let mem = esigd_ca::MemoryStore::new();
    for (i, serial) in serials.iter().enumerate() {
        let profile = if i % 3 == 0 {
            ProfileKind::Scd
        } else {
            ProfileKind::OneTime
        };
        s.insert_new(&record(serial, profile)).unwrap();
        mem.insert_new(&record(serial, profile)).unwrap();
    }

    for profile in [None, Some(ProfileKind::Scd), Some(ProfileKind::OneTime)] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let q = ListQuery {
                profile,
                after_serial: after.clone(),
                limit: 7,
            };
            let page = s.list(&q).unwrap();
            assert_eq!(page, mem.list(&q).unwrap(), "page differs from MemoryStore");
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = Some(last.serial.clone());
            got.extend(page);
        }
        let mut want: Vec<_> = serials
            .iter()
            .enumerate()
            .filter(|(i, _)| match profile {
                None => true,
                Some(ProfileKind::Scd) => i % 3 == 0,
                Some(_) => i % 3 != 0,
            })
            .map(|(_, s)| s.clone())
            .collect();
        want.sort();
        let got: Vec<_> = got.into_iter().map(|r| r.serial).collect();
        assert_eq!(got, want, "profile {profile:?}");
        if let Some(p) = profile {
            assert!(s.get(&got[0]).unwrap().unwrap().profile == p);
        }
    }
    // limit 0 means 100.
    assert_eq!(s.list(&ListQuery::default()).unwrap().len(), serials.len());
    assert!(
        s.list(&ListQuery {
            profile: Some(ProfileKind::Tsa),
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
}

#[test]
fn revoked_lists_exactly_suspended_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        for i in 0u8..20 {
            s.insert_new(&record(&[0x10, i], ProfileKind::Scd)).unwrap();
        }
        s.update_status(&[0x10, 3], &suspend(5)).unwrap();
        s.update_status(&[0x10, 9], &suspend(6)).unwrap();
        s.update_status(&[0x10, 14], &suspend(7)).unwrap();
        // 9: suspended then resumed → no longer in the set.
        s.update_status(
            &[0x10, 9],
            &StatusChange {
                from: StoredStatus::Suspended { since: t(6) },
                to: StoredStatus::Active,
                actor: "op".into(),
                uid: None,
                justification: String::new(),
                at: t(8),
            },
        )
        .unwrap();
        // 14: suspended then revoked → stays.
        s.update_status(
            &[0x10, 14],
            &StatusChange {
                from: StoredStatus::Suspended { since: t(7) },
                to: StoredStatus::Revoked {
                    since: t(9),
                    reason: RevocationReason::KeyCompromise,
                },
                actor: "op".into(),
                uid: None,
                justification: String::new(),
                at: t(9),
            },
        )
        .unwrap();
        // A record inserted already revoked is indexed too.
        let mut pre = record(&[0x20], ProfileKind::Tsa);
        pre.status = StoredStatus::Revoked {
            since: t(1),
            reason: RevocationReason::Unspecified,
        };
        s.insert_new(&pre).unwrap();
    }
    let s = open(dir.path());
    let got: Vec<_> = s
        .revoked()
        .unwrap()
        .into_iter()
        .map(|r| (r.serial, r.status))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![0x10, 3], StoredStatus::Suspended { since: t(5) }),
            (
                vec![0x10, 14],
                StoredStatus::Revoked {
                    since: t(9),
                    reason: RevocationReason::KeyCompromise
                }
            ),
            (
                vec![0x20],
                StoredStatus::Revoked {
                    since: t(1),
                    reason: RevocationReason::Unspecified
                }
            ),
        ]
    );
    // The revoked set is served from its own index: the index holds exactly these keys.
    let index = s.store().scan_prefix(Cf::Certificates, b"r/", 100).unwrap();
    assert_eq!(index.len(), 3);
}

#[test]
fn crl_numbers_are_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        assert_eq!(
            (1..=3)
                .map(|_| s.next_crl_number().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
    {
        // Crash-like: no shutdown hook exists anyway; reopen continues after the last number.
        let s = open(dir.path());
        assert_eq!(s.next_crl_number().unwrap(), 4);
    }
    let s = Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| s.next_crl_number().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (5..=44).collect::<Vec<_>>(),
        "no number repeated or skipped"
    );
}

#[test]
fn concurrent_inserts_distinct_serials_and_a_race_on_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut won_race = 0;
                for i in 0u16..50 {
                    let serial = [&[0x40, t as u8][..], &i.to_be_bytes()].concat();
                    s.insert_new(&record(&serial, ProfileKind::OneTime))
                        .unwrap();
                    // Every thread also races for the same serials 0x77 i.
                    let mut contested = record(&[0x77, i as u8], ProfileKind::Scd);
                    contested.subject = format!("CN=thread {t}");
                    match s.insert_new(&contested) {
                        Ok(()) => won_race += 1,
                        Err(StoreError::SerialExists(_)) => {}
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                won_race
            })
        })
        .collect();
    let wins: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(wins, 50, "exactly one winner per contested serial");
    for i in 0u8..50 {
        let rec = s.get(&[0x77, i]).unwrap().unwrap();
        assert!(rec.subject.starts_with("CN=thread "));
    }
    let all = s
        .list(&ListQuery {
            profile: Some(ProfileKind::OneTime),
            after_serial: None,
            limit: 10_000,
        })
        .unwrap();
    assert_eq!(all.len(), threads * 50);
    // Profile index entries for the contested serials: exactly one per serial (losers wrote nothing).
    let scd_index = s
        .store()
        .scan_prefix(Cf::Certificates, b"p/scd/", 1000)
        .unwrap();
    assert_eq!(scd_index.len(), 50);
    let stats = s.store().stats();
    assert!(stats.batches <= stats.commits);
}

#[test]
fn corrupt_value_is_reported_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut b = esigd_store::Batch::new();
    b.put(Cf::Certificates, b"c/\x09".to_vec(), vec![9, 0, 0, 0, 0]);
    s.store().commit_blocking(b).unwrap();
    match s.get(&[0x09]) {
        Err(StoreError::Backend(e)) => {
            let p = e
                .downcast_ref::<PersistError>()
                .expect("PersistError source");
            assert!(
                matches!(
                    p,
                    PersistError::Corrupt {
                        cf: "certificates",
                        ..
                    }
                ),
                "{p}"
            );
            assert!(!p.is_busy());
        }
        other => panic!("expected a corrupt-value error, got {other:?}"),
    }
}
