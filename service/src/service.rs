//! The domain assembled: the parts the workflows and the web layer share.
//!
//! The binary builds the parts (HSM, store, CA, TSA, identity, payment) from the configuration
//! and hands them to [`Service::new`]. Nothing here reads the configuration file or speaks HTTP.

use std::sync::Arc;

use esigd_hsm::{Hsm, OneTimeKeys};
use esigd_store::persist::{RocksImprintLog, StampQueue};
use esigd_store::signatures::SignatureStore;
use esigd_store::{Batch, Cf, Store};
use esigd_tsa::check_clock;

use crate::authorities::{CaAuthority, TsaService};
use crate::certs::{Crls, Published};
use crate::citizen_certs::CitizenCerts;
use crate::clock::{ClockDiscipline, SharedClock};
use crate::config::{LimitsSection, StoreSection, TsaSection};
use crate::identity::IdentityProvider;
use crate::meter::Meter;
use crate::onboarding::Onboarding;
use crate::payment::PaymentVerifier;
use crate::registry::Registry;
use crate::reload::Reloadable;
use crate::scd::{ScdSection, ScdVault};
use crate::signing::onetime::OneTime;
use esigd_scd::connector::RemoteScdConnector;
use esigd_store::scd::ScdKeyStore;

/// The settings the domain reads while it runs (from `[limits]`, `[store]` and `[tsa]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[tsa]`.
    pub tsa: TsaSection,
}

/// What [`Service::new`] is built from.
pub struct Parts {
    /// Settings in force.
    pub settings: Settings,
    /// The HSM.
    pub hsm: Hsm,
    /// The RocksDB store.
    pub store: Store,
    /// The certificate authority.
    pub ca: CaAuthority,
    /// The time-stamping authority.
    pub tsa: Arc<TsaService>,
    /// Audit records of issued time-stamp tokens.
    pub imprints: RocksImprintLog,
    /// `POST /tsa`: signing threads that batch requests and their audit commits.
    pub stamp_queue: StampQueue,
    /// Published certificates.
    pub published: Published,
    /// Pre-generated one-time keys (workflow 9.1).
    pub onetime_keys: OneTimeKeys,
    /// Registered e-Services and auditors.
    pub registry: Registry,
    /// The Identity BB, when configured.
    pub identity: Option<Arc<IdentityProvider>>,
    /// The Payment BB verifier, when configured.
    pub payment: Option<Arc<PaymentVerifier>>,
    /// Where domain events are counted.
    pub meter: Arc<dyn Meter>,
    /// The time.
    pub clock: SharedClock,
    /// The clock discipline the TSA and the readiness check read.
    pub discipline: ClockDiscipline,
    /// The Remote SCD service, when `[scd]` is configured.
    pub scd: Option<ScdParts>,
    /// Notifications, when `[notifications]` is configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// The audit ledger's tree heads and proofs.
    pub audit: Arc<crate::audit::AuditLog>,
}

/// What workflows 9.2 use when `[scd]` is configured.
pub struct ScdParts {
    /// `[scd]`.
    pub section: ScdSection,
    /// The connector to the Remote SCD service.
    pub connector: Arc<dyn RemoteScdConnector>,
    /// Sealing and blind indexes in the HSM.
    pub vault: ScdVault,
    /// Pseudonym tokens (HMAC key in the HSM).
    pub tokens: crate::scd::PseudonymTokens,
}

/// Everything the request handlers share.
pub struct Service {
    /// Settings in force.
    pub settings: Settings,
    /// The HSM.
    pub hsm: Hsm,
    /// The RocksDB store.
    pub store: Store,
    /// The certificate authority.
    pub ca: Arc<CaAuthority>,
    /// The time-stamping authority.
    pub tsa: Arc<TsaService>,
    /// Audit records of issued time-stamp tokens.
    pub imprints: RocksImprintLog,
    /// `POST /tsa`: signing threads that batch requests and their audit commits.
    pub stamp_queue: StampQueue,
    /// Published certificates and the CRL cache.
    pub crls: Arc<Crls>,
    /// Stored signatures and the audit trail.
    pub signatures: SignatureStore,
    /// Workflow 9.1 with the parts it uses.
    pub onetime: Arc<OneTime>,
    /// Workflow 9.2.1 with the parts it uses.
    pub onboarding: Arc<Onboarding>,
    /// The citizens' own certificates.
    pub citizen_certs: Arc<CitizenCerts>,
    /// Workflow 9.2.2 with the parts it uses.
    pub scd_signing: Arc<crate::signing::scd::ScdSigning>,
    /// Pseudonym tokens, when `[scd]` is configured.
    pub pseudonym_tokens: Option<Arc<crate::scd::PseudonymTokens>>,
    /// Registered e-Services and auditors (replaced on SIGHUP).
    pub registry: Reloadable<Registry>,
    /// The Identity BB, when `[identity]` is configured.
    pub identity: Option<Arc<IdentityProvider>>,
    /// The Payment BB verifier, when `[payment]` is configured.
    pub payment: Option<Arc<PaymentVerifier>>,
    /// Where domain events are counted.
    pub meter: Arc<dyn Meter>,
    /// The time.
    pub clock: SharedClock,
    /// The clock discipline.
    pub discipline: ClockDiscipline,
    /// Notifications, when `[notifications]` is configured (its worker: `Notifier::run`).
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// The audit ledger's tree heads and proofs (its publisher: `AuditLog::run_publisher`).
    pub audit: Arc<crate::audit::AuditLog>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    /// Assembles the service; the one-time workflow receives the parts it uses.
    pub fn new(p: Parts) -> Service {
        let ca = Arc::new(p.ca);
        let registry = Reloadable::new(p.registry);
        if let Some(n) = &p.notifier {
            n.attach_registry(registry.clone());
        }
        let signatures = SignatureStore::new(p.store.clone());
        let crls = Arc::new(Crls::new(ca.clone(), p.published));
        let onetime = Arc::new(OneTime {
            keys: p.onetime_keys,
            ca: ca.clone(),
            tsa: p.tsa.clone(),
            crls: crls.clone(),
            signatures: signatures.clone(),
            imprints: p.imprints.clone(),
            payments: p.payment.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(
                p.settings.limits.max_concurrent_signatures,
            )),
            tasks: tokio_util::task::TaskTracker::new(),
            queue_timeout: p.settings.limits.queue_timeout,
            retention_unfetched: p.settings.store.retention_unfetched,
            clock: p.clock.clone(),
            meter: p.meter.clone(),
            notifier: p.notifier.clone(),
            users: p.audit.users().clone(),
        });
        let keys = ScdKeyStore::new(p.store.clone());
        let (connector, vault, section, tokens) = match p.scd {
            Some(s) => (
                Some(s.connector),
                Some(s.vault),
                Some(s.section),
                Some(Arc::new(s.tokens)),
            ),
            None => (None, None, None, None),
        };
        let key_spec = section.as_ref().and_then(|s| s.key_spec().ok()).unwrap_or(
            esigd_scd::api::KeySpec::Ec {
                curve: esigd_scd::api::Curve::P256,
            },
        );
        let onboarding = Arc::new(Onboarding {
            connector: connector.clone(),
            scd_types: section
                .as_ref()
                .map(|s| s.scd_types.clone())
                .unwrap_or_else(|| vec![crate::scd::REMOTE_SCD.into()]),
            relying_party: section
                .as_ref()
                .map(|s| (s.relying_party_uuid.clone(), s.relying_party_name.clone()))
                .unwrap_or_default(),
            key_spec,
            timeout: section
                .as_ref()
                .map(|s| s.onboarding_timeout)
                .unwrap_or(esigd_scd::api::USER_WINDOW),
            ca: ca.clone(),
            keys: keys.clone(),
            vault: vault.clone(),
            audit: signatures.clone(),
            clock: p.clock.clone(),
            meter: p.meter.clone(),
        });
        let scd_signing = Arc::new(crate::signing::scd::ScdSigning {
            connector: connector.clone(),
            keys: keys.clone(),
            ca: ca.clone(),
            tsa: p.tsa.clone(),
            crls: crls.clone(),
            vault: crate::signing::seal::Vault {
                signatures: signatures.clone(),
                imprints: p.imprints.clone(),
                retention_unfetched: p.settings.store.retention_unfetched,
            },
            relying_party: section
                .as_ref()
                .map(|s| (s.relying_party_uuid.clone(), s.relying_party_name.clone()))
                .unwrap_or_default(),
            timeout: section
                .as_ref()
                .map(|s| s.signing_timeout)
                .unwrap_or(esigd_scd::api::USER_WINDOW),
            max_pending: section.as_ref().map(|s| s.max_pending).unwrap_or(1),
            pending: std::sync::Mutex::default(),
            per_pseudonym: crate::signing::scd::pseudonym_limiter(),
            tasks: tokio_util::task::TaskTracker::new(),
            clock: p.clock.clone(),
            meter: p.meter.clone(),
            notifier: p.notifier.clone(),
            users: p.audit.users().clone(),
        });
        let citizen_certs = Arc::new(CitizenCerts {
            keys,
            ca: ca.clone(),
            crls: crls.clone(),
            vault,
            connector,
            audit: signatures.clone(),
            clock: p.clock.clone(),
            notifier: p.notifier.clone(),
        });
        Service {
            audit: p.audit,
            crls,
            onboarding,
            citizen_certs,
            scd_signing,
            pseudonym_tokens: tokens,
            settings: p.settings,
            hsm: p.hsm,
            store: p.store,
            ca,
            tsa: p.tsa,
            imprints: p.imprints,
            stamp_queue: p.stamp_queue,
            signatures,
            onetime,
            registry,
            identity: p.identity,
            payment: p.payment,
            meter: p.meter,
            clock: p.clock,
            discipline: p.discipline,
            notifier: p.notifier,
        }
    }

    /// Readiness checks for `/readyz` and `esigd check`: HSM session, store writable, clock.
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let hsm = self.hsm.health_check().map_err(|e| e.to_string());
        let mut probe = Batch::new();
        probe.put(
            Cf::Meta,
            b"readyz".to_vec(),
            self.clock.unix_now().to_be_bytes().to_vec(),
        );
        let store = self.store.commit_blocking(probe).map_err(|e| e.to_string());
        let clock = if self.settings.tsa.allow_unsynchronized_clock {
            Ok(())
        } else {
            check_clock(self.discipline.as_ref(), self.settings.tsa.accuracy, false)
                .map_err(|e| e.to_string())
        };
        vec![("hsm", hsm), ("store", store), ("clock", clock)]
    }
}
