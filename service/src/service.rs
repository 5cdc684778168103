//! The appliance assembled: HSM, store, CA, TSA, and the state the routes share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use esigd_ca::{Authority, CaConfig};
use esigd_hsm::{Hsm, HsmSignature, HsmSigner};
use esigd_pki::pem::{certificate_to_der, certificate_to_pem, certificates_to_pem, crl_to_der};
use esigd_tsa::{BlockSerials, KernelClock, Tsa, TsaConfig, check_clock};
use x509_cert::Certificate;

use crate::ceremony::{self, PkiFiles};
use crate::clock::Adjtimex;
use crate::config::Config;
use crate::identity::IdentityProvider;
use crate::net::Reloadable;
use crate::payment::PaymentVerifier;
use crate::persist::{RocksCertStore, RocksImprintLog, RocksSerialStore, StampQueue};
use crate::registry::Registry;
use crate::signatures::SignatureStore;
use crate::store::{Store, StoreOptions};

/// The CA as the appliance runs it: key in the HSM, records in RocksDB.
pub type CaAuthority = Authority<HsmSigner, HsmSignature, RocksCertStore>;

/// The TSA as the appliance runs it: key in the HSM, serial blocks in RocksDB, kernel clock.
pub type TsaService =
    Tsa<HsmSigner, HsmSignature, BlockSerials<RocksSerialStore>, KernelClock<Adjtimex>>;

/// TSA serials reserved per durable write (see `esigd_tsa::BlockSerials`).
const TSA_SERIAL_BLOCK: u64 = 4096;

/// Certificates published on the public listener, encoded once at start.
#[derive(Debug, Clone)]
pub struct Published {
    /// CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// CA chain, PEM.
    pub chain_pem: Vec<u8>,
    /// TSA certificate, PEM.
    pub tsa_pem: Vec<u8>,
    /// TSA certificate, DER.
    pub tsa_der: Vec<u8>,
}

/// Everything the request handlers share.
pub struct AppState {
    /// The configuration in force.
    pub cfg: Config,
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
    /// Published certificates.
    pub published: Published,
    /// Pre-generated one-time keys (workflow 9.1).
    pub onetime: esigd_hsm::OneTimeKeys,
    /// Stored signatures and the audit trail.
    pub signatures: SignatureStore,
    /// Signing slots (`limits.max_concurrent_signatures`).
    pub signing_slots: Arc<tokio::sync::Semaphore>,
    /// The signing tasks in progress (they outlive a client that disconnects): shutdown waits
    /// for them before the HSM and the store close.
    pub signing_tasks: tokio_util::task::TaskTracker,
    /// Registered e-Services and auditors (replaced on SIGHUP).
    pub registry: Reloadable<Registry>,
    /// The Identity BB, when `[identity]` is configured.
    pub identity: Option<Arc<IdentityProvider>>,
    /// The Payment BB verifier, when `[payment]` is configured.
    pub payment: Option<PaymentVerifier>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The signing pages (templates, browser sessions, OIDC client credentials).
    pub pages: crate::routes::interactive::Pages,
    crl_cache: Mutex<Option<(SystemTime, Arc<[u8]>)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.cfg.data_dir)
            .finish()
    }
}

/// The CA as configured: certificate and chain from `data_dir/pki`, key in the HSM, records in
/// `store`. Used by `serve` and by `esigd init tsa` (which has our CA issue the TSA certificate).
pub fn open_authority(cfg: &Config, hsm: &Hsm, store: &Store) -> Result<CaAuthority> {
    let files = PkiFiles::of(cfg);
    let ca_cert = ceremony::read_certificate(&files.ca)?;
    let chain = if files.chain.exists() {
        ceremony::read_certificates(&files.chain)?
    } else {
        vec![ca_cert.clone()]
    };
    Authority::new(
        ca_cert,
        ceremony::ca_signer(cfg, hsm)?,
        ca_config(cfg),
        RocksCertStore::new(store.clone()),
    )
    .context("ca: the CA certificate does not fit the CA key or the configuration")?
    .with_chain(chain)
    .with_context(|| {
        format!(
            "{}: the chain does not fit the CA certificate",
            files.chain.display()
        )
    })
}

fn ca_config(cfg: &Config) -> CaConfig {
    let mut c = CaConfig::with_base_url(&cfg.ca.base_url);
    c.one_time.validity = cfg.ca.one_time_validity;
    c.scd.validity = cfg.ca.scd_validity;
    c.signature_check = match std::num::NonZeroU32::new(cfg.ca.verify_signatures_one_in) {
        Some(n) if n.get() > 1 => esigd_ca::config::SignatureCheck::Sampled { ecdsa_one_in: n },
        _ => esigd_ca::config::SignatureCheck::Every,
    };
    c
}

fn tsa_config(cfg: &Config, tsa_cert: &Certificate) -> Result<TsaConfig> {
    let policy = cfg
        .tsa
        .policy
        .parse()
        .map_err(|_| anyhow::anyhow!("tsa.policy: not a dotted OID"))?;
    let mut c = TsaConfig::new(policy);
    c.accuracy = cfg.tsa.accuracy;
    c.allow_unsynchronized_clock = cfg.tsa.allow_unsynchronized_clock;
    c.tsa_name = Some(x509_cert::ext::pkix::name::GeneralName::DirectoryName(
        tsa_cert.tbs_certificate.subject.clone(),
    ));
    Ok(c)
}

impl AppState {
    /// Opens the store and builds the CA and TSA. With the embedded defaults, a missing CA or TSA
    /// is created (key ceremony in the dev token); otherwise `esigd init` must have run.
    pub fn build(cfg: Config, hsm: Hsm, metrics: Arc<crate::metrics::Metrics>) -> Result<AppState> {
        let store = Store::open(cfg.store_dir(), StoreOptions::default())
            .with_context(|| format!("opening the store in {}", cfg.store_dir().display()))?;
        let files = PkiFiles::of(&cfg);
        if !files.ca.exists() {
            if !cfg.dev {
                bail!(
                    "{} is missing: run `esigd init ca` first",
                    files.ca.display()
                );
            }
            ceremony::init_root(&cfg, &hsm)?;
            tracing::info!(path = %files.ca.display(), "created the development root CA");
        }
        let mut ca = open_authority(&cfg, &hsm, &store)?;
        if let Some(signer) = ceremony::ocsp_signer(&cfg, &hsm)? {
            if !files.ocsp.exists() {
                if !cfg.dev {
                    bail!(
                        "{} is missing: run `esigd init ocsp` first (ca.ocsp_key is set)",
                        files.ocsp.display()
                    );
                }
                ceremony::init_ocsp(&cfg, &hsm, &ca)?;
            }
            let cert = ceremony::read_certificate(&files.ocsp)?;
            ca = ca.with_ocsp_responder(cert, signer).with_context(|| {
                format!(
                    "{}: not a responder certificate for ca.ocsp_key",
                    files.ocsp.display()
                )
            })?;
            tracing::info!("OCSP responses are signed by the delegated responder");
        }
        let ca_cert = ca.ca_certificate().clone();
        let chain = ca.chain().to_vec();
        if !files.tsa.exists() {
            if !cfg.dev {
                bail!(
                    "{} is missing: run `esigd init tsa` first",
                    files.tsa.display()
                );
            }
            ceremony::init_tsa(&cfg, &hsm, &ca)?;
            tracing::info!(path = %files.tsa.display(), "created the development TSA certificate");
        }
        let tsa_cert = ceremony::read_certificate(&files.tsa)?;
        let serials = BlockSerials::open(RocksSerialStore::new(store.clone()), TSA_SERIAL_BLOCK)
            .context("tsa: reserving a block of serial numbers")?;
        let tsa = Tsa::new(
            tsa_config(&cfg, &tsa_cert)?,
            tsa_cert.clone(),
            ceremony::tsa_signer(&cfg, &hsm)?,
            serials,
            KernelClock(Adjtimex),
        )
        .context("tsa: the TSA certificate does not fit the TSA key or the configuration")?;
        let published = Published {
            ca_pem: certificate_to_pem(&ca_cert)?.into_bytes(),
            ca_der: certificate_to_der(&ca_cert)?,
            chain_pem: certificates_to_pem(&chain)?.into_bytes(),
            tsa_pem: certificate_to_pem(&tsa_cert)?.into_bytes(),
            tsa_der: certificate_to_der(&tsa_cert)?,
        };
        let onetime = esigd_hsm::OneTimeKeys::start(
            &hsm,
            esigd_hsm::OneTimeConfig {
                ready: cfg.hsm.onetime_keys_ready,
                take_timeout: cfg.limits.queue_timeout,
                ..esigd_hsm::OneTimeConfig::default()
            },
        )
        .context("hsm: starting the one-time key generator")?;
        let identity = match &cfg.identity {
            Some(section) => {
                let ca = match &section.ca_file {
                    Some(f) => Some(std::fs::read(cfg.data_path(f)).with_context(|| {
                        format!("identity.ca_file: reading {}", cfg.data_path(f).display())
                    })?),
                    None => None,
                };
                Some(Arc::new(IdentityProvider::new(section, ca.as_deref())?))
            }
            None => None,
        };
        let payment = match &cfg.payment {
            Some(p) => Some(PaymentVerifier::new(&cfg, p, store.clone())?),
            None => None,
        };
        let imprints = RocksImprintLog::new(store.clone());
        let tsa = Arc::new(tsa);
        let signer = tsa.clone();
        let stamp_queue = StampQueue::start(
            Arc::new(move |request: &[u8], now| signer.stamp(request, now)),
            imprints.clone(),
            hsm.config().pool_size,
        )
        .context("tsa: cannot start the time-stamp signing threads")?;
        Ok(AppState {
            imprints,
            stamp_queue,
            onetime,
            signatures: SignatureStore::new(store.clone()),
            signing_slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.limits.max_concurrent_signatures,
            )),
            signing_tasks: tokio_util::task::TaskTracker::new(),
            registry: Reloadable::new(Registry::from_config(&cfg)),
            pages: crate::routes::interactive::Pages::new(&cfg)?,
            identity,
            payment,
            metrics,
            cfg,
            hsm,
            store,
            ca: Arc::new(ca),
            tsa,
            published,
            crl_cache: Mutex::new(None),
        })
    }

    /// The current CRL (DER), re-signed when older than [`crate::routes::public::CRL_REFRESH`]
    /// or after [`AppState::invalidate_crl`]. Blocking (may sign in the HSM).
    pub fn current_crl(&self, now: SystemTime) -> Result<Arc<[u8]>> {
        let mut cache = self.crl_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, der)) = cache.as_ref().filter(|(at, _)| {
            now.duration_since(*at).unwrap_or(Duration::MAX) < crate::routes::public::CRL_REFRESH
        }) {
            return Ok(der.clone());
        }
        let crl = self.ca.crl(now)?;
        let der: Arc<[u8]> = crl_to_der(&crl)?.into();
        *cache = Some((now, der.clone()));
        Ok(der)
    }

    /// Forces the next CRL request to build a new CRL (after a status change).
    pub fn invalidate_crl(&self) {
        *self.crl_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Readiness checks for `/readyz` and `esigd check`: HSM session, store writable, clock.
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let hsm = self.hsm.health_check().map_err(|e| e.to_string());
        let mut probe = crate::store::Batch::new();
        probe.put(
            crate::store::Cf::Meta,
            b"readyz".to_vec(),
            now_secs().to_be_bytes().to_vec(),
        );
        let store = self.store.commit_blocking(probe).map_err(|e| e.to_string());
        let clock = if self.cfg.tsa.allow_unsynchronized_clock {
            Ok(())
        } else {
            check_clock(&KernelClock(Adjtimex), self.cfg.tsa.accuracy, false)
                .map_err(|e| e.to_string())
        };
        vec![("hsm", hsm), ("store", store), ("clock", clock)]
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
