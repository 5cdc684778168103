//! The `esigd_ca::Authority` running on `RocksCertStore`: issue, revoke, CRL, across a reopen.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::time::{Duration, SystemTime};

use der::oid::AssociatedOid;
use der::{Decode, Encode};
use esigd_ca::{
    Authority, CaConfig, CertState, ListQuery, ProfileKind, RevocationReason, Transition,
    ceremony::create_root,
};
use esigd_pki::certificate::signer_public_key;
use esigd_pki::identity::{DnBuilder, IdentityClaims};
use esigd_store::persist::RocksCertStore;
use esigd_store::{Store, StoreOptions};
use p256::ecdsa::{DerSignature, SigningKey};
use rand::rngs::OsRng;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::CrlNumber;

type Ca = Authority<SigningKey, DerSignature, RocksCertStore>;

fn claims(id: &str) -> IdentityClaims {
    IdentityClaims {
        name: Some(format!("Holder {id}")),
        given_name: Some("Holder".into()),
        family_name: Some(id.into()),
        personal_identifier: Some(format!("4710101{id}")),
        country: Some("EE".into()),
    }
}

fn authority(store: Store, root: &Certificate, key: SigningKey) -> Ca {
    Authority::new(
        root.clone(),
        key,
        CaConfig::with_base_url("http://esig.example.com"),
        RocksCertStore::new(store),
    )
    .unwrap()
}

fn crl_serials(crl: &CertificateList) -> Vec<Vec<u8>> {
    crl.tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| esigd_pki::pem::serial_bytes(&r.serial_number).to_vec())
        .collect()
}

fn crl_number(crl: &CertificateList) -> u64 {
    let ext = crl
        .tbs_cert_list
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == CrlNumber::OID)
        .expect("cRLNumber extension");
    let n = CrlNumber::from_der(ext.extn_value.as_bytes()).unwrap();
    n.0.as_bytes()
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

#[test]
fn authority_issues_revokes_and_lists_exactly_the_revoked_in_the_crl() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = SigningKey::random(&mut OsRng);
    let ca_name = DnBuilder::new()
        .country("EE")
        .unwrap()
        .organization("esigd persist test")
        .unwrap()
        .common_name("esigd Persist Test CA")
        .unwrap()
        .build();
    let now = SystemTime::now();
    let root = create_root::<_, DerSignature>(
        &ca_key,
        ca_name,
        Duration::from_secs(3650 * 86_400),
        now - Duration::from_secs(60),
        &mut OsRng,
    )
    .unwrap();

    let (scd, one_time, revoked_serial);
    {
        let ca = authority(
            Store::open(dir.path(), StoreOptions::default()).unwrap(),
            &root,
            ca_key.clone(),
        );
        scd = (0..3)
            .map(|i| {
                let key = SigningKey::random(&mut OsRng);
                ca.issue_scd_for_key(
                    signer_public_key(&key).unwrap(),
                    &claims(&format!("{i:04}")),
                    now,
                )
                .unwrap()
            })
            .collect::<Vec<_>>();
        one_time = (0..2)
            .map(|i| {
                let key = SigningKey::random(&mut OsRng);
                ca.issue_one_time_for_key(
                    signer_public_key(&key).unwrap(),
                    &claims(&format!("9{i:03}")),
                    now,
                )
                .unwrap()
            })
            .collect::<Vec<_>>();
        // The stored DER is the issued certificate.
        for c in scd.iter().chain(&one_time) {
            let rec = ca.certificate(&c.record.serial).unwrap().unwrap();
            assert_eq!(rec.der, c.der);
            assert_eq!(
                Certificate::from_der(&rec.der).unwrap().to_der().unwrap(),
                c.der
            );
        }

        revoked_serial = scd[1].record.serial.clone();
        let rec = ca
            .set_status(
                &revoked_serial,
                Transition::Revoke(RevocationReason::KeyCompromise),
                "operator-7",
                "key lost",
                now,
            )
            .unwrap();
        assert_eq!(rec.state(now), CertState::Revoked);
        assert_eq!(rec.history.len(), 1);
        // One-time certificates are never revoked: refused before reaching the store.
        assert!(
            ca.set_status(
                &one_time[0].record.serial,
                Transition::Suspend,
                "op",
                "",
                now
            )
            .is_err()
        );
        // Suspend + resume leaves a certificate off the CRL.
        ca.set_status(
            &scd[2].record.serial,
            Transition::Suspend,
            "op",
            "check",
            now,
        )
        .unwrap();
        ca.set_status(&scd[2].record.serial, Transition::Resume, "op", "ok", now)
            .unwrap();

        let crl = ca.crl(now).unwrap();
        assert_eq!(crl_serials(&crl), vec![revoked_serial.clone()]);
        assert_eq!(crl_number(&crl), 1);
        assert_eq!(crl_number(&ca.crl(now).unwrap()), 2);
    }

    // After reopening: same content, CRL numbers continue.
    let ca = authority(
        Store::open(dir.path(), StoreOptions::default()).unwrap(),
        &root,
        ca_key,
    );
    let crl = ca.crl(now).unwrap();
    assert_eq!(crl_serials(&crl), vec![revoked_serial.clone()]);
    assert_eq!(crl_number(&crl), 3);
    let entry = &crl.tbs_cert_list.revoked_certificates.as_ref().unwrap()[0];
    assert!(
        entry.crl_entry_extensions.is_some(),
        "keyCompromise reason present"
    );

    let scd_listed: Vec<_> = ca
        .list(&ListQuery {
            profile: Some(ProfileKind::Scd),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.serial)
        .collect();
    let mut want: Vec<_> = scd.iter().map(|c| c.record.serial.clone()).collect();
    want.sort();
    assert_eq!(scd_listed, want);
    assert_eq!(ca.list(&ListQuery::default()).unwrap().len(), 5);
    assert_eq!(
        ca.certificate(&scd[2].record.serial)
            .unwrap()
            .unwrap()
            .history
            .len(),
        2
    );
}
