//! Wiring: the configuration file model turned into the running parts (HSM, store, CA, TSA,
//! identity, payment → [`Service`]; pages and metrics → [`WebState`]).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use esigd_ca::{Authority, CaConfig};
use esigd_hsm::Hsm;
use esigd_pki::pem::{certificate_to_der, certificate_to_pem, certificates_to_pem};
use esigd_service::certs::Published;
use esigd_service::clock::{ClockDiscipline, SharedClock};
use esigd_service::identity::IdentityProvider;
use esigd_service::identity::oidc::ClientAuth;
use esigd_service::payment::PaymentVerifier;
use esigd_service::registry::Registry;
use esigd_service::scd::{PseudonymTokens, RscdConnector, RscdSettings, ScdSection, ScdVault};
use esigd_service::service::ScdParts;
use esigd_service::{CaAuthority, Parts, Service, Settings};
use esigd_store::persist::{RocksCertStore, RocksImprintLog, RocksSerialStore, StampQueue};
use esigd_store::{Store, StoreOptions};
use esigd_tsa::{BlockSerials, KernelClock, Tsa, TsaConfig};
use esigd_web::WebState;
use esigd_web::metrics::Metrics;
use esigd_web::pages::Pages;
use x509_cert::Certificate;

use crate::ceremony::{self, PkiFiles};
use crate::config::Config;
use crate::sys::Adjtimex;

/// TSA serials reserved per durable write (see `esigd_tsa::BlockSerials`).
const TSA_SERIAL_BLOCK: u64 = 4096;

/// The kernel's clock discipline, read through adjtimex(2).
pub fn kernel_discipline() -> ClockDiscipline {
    Arc::new(KernelClock(Adjtimex))
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
        // Each CRL number is recorded in the HSM before it is used (`crate::backup`).
        RocksCertStore::new(store.clone())
            .with_mark_sink(crate::backup::HsmMarks::new(hsm.clone()).crl_sink()),
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

/// The e-Service and auditor registry of a configuration.
pub fn registry(cfg: &Config) -> Registry {
    Registry::new(
        &cfg.eservices,
        &cfg.auditors,
        cfg.identity.as_ref().map(|i| i.client_id.as_str()),
    )
}

/// Opens the store and builds the CA and TSA and the rest of the domain. With the embedded
/// defaults, a missing CA or TSA is created (key ceremony in the dev token); otherwise
/// `esigd init` must have run.
pub fn build_service(
    cfg: &Config,
    hsm: Hsm,
    meter: Arc<dyn esigd_service::meter::Meter>,
    clock: SharedClock,
    discipline: ClockDiscipline,
) -> Result<Service> {
    let store_options = StoreOptions {
        memtable_budget: cfg.store.memtable_budget_mib << 20,
        block_cache: cfg.store.block_cache_mib << 20,
        ..StoreOptions::default()
    };
    let store = Store::open(cfg.store_dir(), store_options)
        .with_context(|| format!("opening the store in {}", cfg.store_dir().display()))?;
    // Never below the high-water marks recorded in the HSM (`crate::backup`).
    let hsm_marks = crate::backup::HsmMarks::new(hsm.clone());
    let covered = crate::backup::reconcile_marks(&store, &hsm_marks)?;
    let files = PkiFiles::of(cfg);
    if !files.ca.exists() {
        if !cfg.dev {
            bail!(
                "{} is missing: run `esigd init ca` first",
                files.ca.display()
            );
        }
        ceremony::init_root(cfg, &hsm)?;
        tracing::info!(path = %files.ca.display(), "created the development root CA");
    }
    let mut ca = open_authority(cfg, &hsm, &store)?;
    if let Some(signer) = ceremony::ocsp_signer(cfg, &hsm)? {
        if !files.ocsp.exists() {
            if !cfg.dev {
                bail!(
                    "{} is missing: run `esigd init ocsp` first (ca.ocsp_key is set)",
                    files.ocsp.display()
                );
            }
            ceremony::init_ocsp(cfg, &hsm, &ca)?;
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
        ceremony::init_tsa(cfg, &hsm, &ca)?;
        tracing::info!(path = %files.tsa.display(), "created the development TSA certificate");
    }
    let tsa_cert = ceremony::read_certificate(&files.tsa)?;
    let serials = BlockSerials::open(
        RocksSerialStore::new(store.clone())
            .with_mark_sink(hsm_marks.tsa_sink(TSA_SERIAL_BLOCK, covered)?),
        TSA_SERIAL_BLOCK,
    )
    .context("tsa: reserving a block of serial numbers")?;
    let tsa = Tsa::new(
        tsa_config(cfg, &tsa_cert)?,
        tsa_cert.clone(),
        ceremony::tsa_signer(cfg, &hsm)?,
        serials,
        discipline.clone(),
    )
    .context("tsa: the TSA certificate does not fit the TSA key or the configuration")?;
    let published = Published {
        ca_pem: certificate_to_pem(&ca_cert)?.into_bytes(),
        ca_der: certificate_to_der(&ca_cert)?,
        chain_pem: certificates_to_pem(&chain)?.into_bytes(),
        tsa_pem: certificate_to_pem(&tsa_cert)?.into_bytes(),
        tsa_der: certificate_to_der(&tsa_cert)?,
    };
    let onetime_keys = esigd_hsm::OneTimeKeys::start(
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
            // esigd's client credentials: the code flow's token endpoint and the introspection of
            // access tokens e-Services pass on.
            let auth = ClientAuth::from_section(section, &cfg.data_dir)
                .map_err(|e| cfg.invalid(&e.key, e.message))?;
            Some(Arc::new(
                IdentityProvider::new(section, ca.as_deref())?
                    .with_clock(clock.clone())
                    .with_store(store.clone())
                    .with_client_auth(Arc::new(auth)),
            ))
        }
        None => None,
    };
    let payment = match &cfg.payment {
        Some(p) => Some(Arc::new(PaymentVerifier::new(
            p,
            &cfg.data_dir,
            store.clone(),
            clock.clone(),
        )?)),
        None => None,
    };
    let imprints = RocksImprintLog::new(store.clone());
    let tsa = Arc::new(tsa);
    let (signer, tsa_meter) = (tsa.clone(), meter.clone());
    let stamp_queue = StampQueue::start(
        Arc::new(move |request: &[u8], now| {
            let outcome = signer.stamp(request, now);
            // `/tsa` answers count in esigd_tsa_tokens_total like the signatures' own time-stamps.
            match &outcome {
                Ok(o) => match &o.rejection {
                    Some(r) => tsa_meter.tsa_rejected(r),
                    None => tsa_meter.tsa_granted(),
                },
                Err(_) => tsa_meter.tsa_failed("system_failure"),
            }
            outcome
        }),
        imprints.clone(),
        hsm.config().pool_size,
        cfg.tsa.queue_max,
    )
    .context("tsa: cannot start the time-stamp signing threads")?;
    stamp_queue
        .sweep_journal(cfg.tsa.journal_retention, cfg.store.sweep_interval)
        .context("tsa: cannot start the journal retention sweep (tsa.journal_retention)")?;
    let scd = match &cfg.scd {
        Some(section) if cfg.dev && !cfg.data_path(&section.client_cert).exists() => {
            tracing::info!(
                path = %cfg.data_path(&section.client_cert).display(),
                "no Remote SCD service set up for development (scripts/run-dev.sh makes one); SCD onboarding is off"
            );
            None
        }
        Some(section) => Some(scd_parts(cfg, section, &hsm, clock.clone())?),
        None => None,
    };
    // `[notifications]`: the webhook signing key (created in the HSM on first start), the SMTP
    // transport and the SMS gateway; the worker is started by `serve`.
    let notifier = match &cfg.notifications {
        Some(section) => Some(Arc::new(
            esigd_service::notify::Notifier::new(
                section,
                &cfg.data_dir,
                &hsm,
                store.clone(),
                clock.clone(),
                meter.clone(),
            )
            .map_err(|e| match e {
                esigd_service::notify::NotifyError::Setting(s) => cfg.invalid(&s.key, s.message),
                other => cfg.invalid("notifications.key", other.to_string()),
            })?,
        )),
        None => None,
    };
    // The audit ledger's tree heads: key in the HSM (made here when missing), public key published.
    let audit_signer = ceremony::audit_signer(cfg, &hsm)?;
    let audit = Arc::new(
        esigd_service::audit::AuditLog::new(
            esigd_store::ledger::LedgerStore::new(store.clone()),
            audit_signer,
            ceremony::audit_user_refs(cfg, &hsm)?,
            clock.clone(),
        )
        .context("opening the audit ledger")?,
    );
    std::fs::write(files.audit_key_pem(), audit.public_key_pem())
        .with_context(|| format!("writing {}", files.audit_key_pem().display()))?;
    Ok(Service::new(Parts {
        audit,
        settings: Settings {
            limits: cfg.limits.clone(),
            store: cfg.store.clone(),
            tsa: cfg.tsa.clone(),
        },
        hsm,
        store,
        ca,
        tsa,
        imprints,
        stamp_queue,
        published,
        onetime_keys,
        registry: registry(cfg),
        identity,
        payment,
        meter,
        clock,
        discipline,
        scd,
        notifier,
    }))
}

/// `[scd]`: the connector (client certificate and pinned server CA read now) and the HSM keys
/// that seal device IDs (created on first start).
fn scd_parts(cfg: &Config, s: &ScdSection, hsm: &Hsm, clock: SharedClock) -> Result<ScdParts> {
    let read = |key: &str, p: &std::path::Path| {
        let path = cfg.data_path(p);
        std::fs::read(&path).with_context(|| format!("{key}: reading {}", path.display()))
    };
    let mut identity = read("scd.client_cert", &s.client_cert)?;
    identity.push(b'\n');
    identity.extend(read("scd.client_key", &s.client_key)?);
    let connector = RscdConnector::new(&RscdSettings {
        base_url: s.url.clone(),
        client_identity_pem: identity,
        server_ca_pem: read("scd.server_ca", &s.server_ca)?,
        request_timeout: s.request_timeout,
    })
    .context("scd: the Remote SCD connector cannot be built")?;
    let vault = ScdVault::open(hsm.clone(), &s.seal_key, &s.index_key)
        .context("scd.seal_key / scd.index_key: the HSM keys cannot be found or created")?;
    let tokens = PseudonymTokens::open(hsm.clone(), &s.token_key, clock)
        .context("scd.token_key: the HSM key cannot be found or created")?;
    Ok(ScdParts {
        section: s.clone(),
        connector: Arc::new(connector),
        vault,
        tokens,
    })
}

/// The domain and the web state of a configuration, with the real clock and the kernel's clock
/// discipline.
pub fn build(cfg: &Config, hsm: Hsm, metrics: Arc<Metrics>) -> Result<Arc<WebState>> {
    let svc = build_service(
        cfg,
        hsm,
        metrics.clone(),
        esigd_service::clock::system(),
        kernel_discipline(),
    )?;
    let pages = Pages::new(
        &cfg.ui,
        &cfg.data_dir,
        cfg.identity.as_ref(),
        cfg.oidc_redirect_url(),
    )
    .map_err(|e| cfg.invalid(&e.key, e.message))?;
    Ok(Arc::new(WebState {
        svc: Arc::new(svc),
        pages,
        metrics,
    }))
}
