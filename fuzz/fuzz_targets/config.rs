//! The configuration file (TOML) → `toml::from_str::<esigd::config::Config>` and
//! `Config::validate`, what `Config::load` runs on the file's text; then the parts `esigd serve`
//! derives from an accepted file without I/O (key references, HSM settings, the client registry).
//!
//! Asserts: no panic; an accepted file satisfies what the example config documents (key
//! references parse, limits at least their minimum, unique e-Service ids, every callback prefix
//! usable and admitting itself, durations that can be added to the current time, as the store,
//! the HSM pool and the ledgers do); a refusal names a key under a known section; and the result
//! does not depend on the file's layout (parsed as a TOML table, re-serialized, parsed again:
//! same outcome and same configuration).
#![no_main]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use esigd::config::{Config, ConfigError};
use esigd_service::registry::Registry;
use libfuzzer_sys::fuzz_target;

/// Top-level keys of the file.
const SECTIONS: [&str; 15] = [
    "data_dir", "listen", "tls", "hsm", "ca", "tsa", "log", "identity", "eservice", "auditor",
    "limits", "store", "metrics", "payment", "ui",
];

fn load(text: &str) -> Result<Config, ConfigError> {
    let path = PathBuf::from("fuzz.toml");
    let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    cfg.source = path;
    cfg.validate()?;
    Ok(cfg)
}

fn durations(c: &Config) -> Vec<(&'static str, Duration)> {
    let mut d = vec![
        ("hsm.checkout_timeout", c.hsm.checkout_timeout),
        ("ca.root_validity", c.ca.root_validity),
        ("ca.one_time_validity", c.ca.one_time_validity),
        ("ca.scd_validity", c.ca.scd_validity),
        (
            "ca.ocsp_certificate_validity",
            c.ca.ocsp_certificate_validity,
        ),
        ("tsa.accuracy", c.tsa.accuracy),
        ("tsa.certificate_validity", c.tsa.certificate_validity),
        ("tsa.journal_retention", c.tsa.journal_retention),
        ("limits.queue_timeout", c.limits.queue_timeout),
        ("limits.request_max_age", c.limits.request_max_age),
        ("store.retention_after_fetch", c.store.retention_after_fetch),
        ("store.retention_unfetched", c.store.retention_unfetched),
        ("store.sweep_interval", c.store.sweep_interval),
    ];
    if let Some(i) = &c.identity {
        d.push(("identity.clock_skew", i.clock_skew));
        if let Some(a) = i.max_age {
            d.push(("identity.max_age", a));
        }
    }
    d
}

fn check_accepted(c: &Config) {
    c.ca_key().expect("ca.key accepted by validate");
    c.tsa_key().expect("tsa.key accepted by validate");
    c.ocsp_key().expect("ca.ocsp_key accepted by validate");
    let _ = c.hsm_config();
    let _ = c.oidc_redirect_url();
    assert!(c.limits.max_body_bytes >= 1024);
    assert!(c.limits.max_concurrent_signatures >= 1);
    assert!(c.ui.max_sessions >= 1 && c.ui.max_sessions_per_ip >= 1);
    let now = SystemTime::now();
    let mono = Instant::now();
    for (key, d) in durations(c) {
        assert!(
            now.checked_add(d).is_some() && mono.checked_add(d).is_some(),
            "{key} = {d:?} accepted, but the current time plus it overflows"
        );
    }
    let reg = Registry::new(
        &c.eservices,
        &c.auditors,
        c.identity.as_ref().map(|i| i.client_id.as_str()),
    );
    assert_eq!(reg.counts(), (c.eservices.len(), c.auditors.len()));
    for e in &c.eservices {
        let svc = reg
            .eservice(&e.id)
            .expect("every e-Service id is unique and registered");
        for p in &e.callback_prefixes {
            let u = url::Url::parse(p).expect("an accepted prefix is a URL");
            assert!(
                svc.callback(u.as_str()).is_some(),
                "eservice {}: callback prefix {p:?} does not admit itself",
                e.id
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let outcome = load(text);
    match &outcome {
        Ok(c) => check_accepted(c),
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert!(!message.is_empty());
            let top = key.split(['.', '[']).next().unwrap_or_default();
            assert!(
                SECTIONS.contains(&top),
                "the error names no setting: {key:?}: {message}"
            );
        }
        Err(_) => {}
    }

    // Layout independence: the same table written canonically.
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        assert!(
            outcome.is_err(),
            "a file that is not a TOML table was accepted"
        );
        return;
    };
    let Ok(canonical) = toml::to_string(&table) else {
        return;
    };
    let again = load(&canonical);
    match (&outcome, &again) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{canonical}"),
        (Err(a), Err(b)) => {
            if let (ConfigError::Invalid { key: ka, .. }, ConfigError::Invalid { key: kb, .. }) =
                (a, b)
            {
                assert_eq!(ka, kb, "{canonical}");
            }
        }
        (a, b) => panic!("layout changed the outcome: {a:?} vs {b:?}\n{canonical}"),
    }
});
