//! `esigd`: the eSignature trust-service daemon.
//!
//! - `esigd serve` — run the listeners (embedded development defaults without `--config`);
//! - `esigd init [ca|tsa]` — key ceremony: keys in the HSM, CA (root or subordinate) and TSA certificates;
//! - `esigd check` — validate the configuration and HSM access, print what is wrong;
//! - `esigd backup DIR` / `esigd restore DIR` — online backup through the daemon, offline restore.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use esigd::ceremony::{self, PkiFiles};
use esigd::config::Config;
use esigd::{devsetup, wiring};
use esigd_hsm::Hsm;
use esigd_web::WebState;
use esigd_web::net::{AllowList, EserviceTls, Reloadable, ServeOptions};

/// How long shutdown waits for signatures still being made after their client went away.
const SIGNING_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The eSignature trust-service appliance.
#[derive(Parser, Debug)]
#[command(name = "esigd", version, about)]
struct Cli {
    /// Configuration file. Without it, the embedded development defaults are used.
    #[arg(long, short, global = true, env = "ESIGD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the embedded defaults (ignored with --config; set data_dir there).
    #[arg(long, global = true, default_value = "./data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the appliance.
    Serve {
        /// Override listen.public (e.g. 127.0.0.1:0 for any free port; the bound address is printed).
        #[arg(long)]
        public: Option<std::net::SocketAddr>,
        /// Override listen.eservice.
        #[arg(long)]
        eservice: Option<std::net::SocketAddr>,
    },
    /// Key ceremony: create keys in the HSM and the CA / TSA certificates.
    Init {
        #[command(subcommand)]
        what: Option<InitWhat>,
    },
    /// Check the configuration, the HSM, the keys and the certificates; print what is wrong.
    Check,
    /// Operator commands through the running daemon's admin socket (`data_dir/admin.sock`).
    Admin {
        #[command(subcommand)]
        what: esigd::admin::AdminCommand,
    },
    /// Online backup: the running daemon writes a consistent copy of its store, the PKI certificates
    /// and a manifest into DIR (asked over the admin socket).
    Backup {
        /// A new (or empty) directory; the daemon's service user must be able to create it.
        dir: PathBuf,
    },
    /// Offline restore of a backup into the configured data_dir (the daemon must be stopped).
    Restore {
        /// The backup directory (with its manifest.json).
        dir: PathBuf,
        /// Replace an existing store, and restore a backup older than the marks recorded in the HSM
        /// (time-stamp serials and CRL numbers then continue above them).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum InitWhat {
    /// The CA: a self-signed root, or a subordinate CA (`--csr`, then `--import-cert`).
    Ca {
        /// Write a CSR for an external parent CA to this file instead of self-signing.
        #[arg(long, conflicts_with = "import_cert")]
        csr: Option<PathBuf>,
        /// Install the certificate (with its chain, PEM) issued by the parent CA for our CSR.
        #[arg(long)]
        import_cert: Option<PathBuf>,
    },
    /// The TSA: key in the HSM and a certificate from our CA (EKU timeStamping, critical).
    Tsa,
    /// The delegated OCSP responder (`ca.ocsp_key`): key in the HSM and an OCSP-signing
    /// certificate from our CA.
    Ocsp,
}

fn load_config(cli: &Cli) -> Result<Config> {
    match &cli.config {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::dev_defaults(&cli.data_dir)),
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for journald or log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the HSM; for the embedded defaults, creates the development token first (which may
/// re-execute the process with `SOFTHSM2_CONF` set).
fn open_hsm(cfg: &Config) -> Result<Hsm> {
    open_hsm_observed(cfg, Arc::new(esigd_hsm::NoopObserver))
}

/// [`open_hsm`] reporting HSM operations to `observer` (metrics).
fn open_hsm_observed(cfg: &Config, observer: Arc<dyn esigd_hsm::HsmObserver>) -> Result<Hsm> {
    if cfg.dev {
        devsetup::ensure_dev_token(cfg)?;
    }
    Ok(Hsm::open_with_observer(cfg.hsm_config(), observer)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("esigd: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let result = match &cli.command {
        Command::Serve { public, eservice } => {
            let mut cfg = cfg;
            if let Some(a) = public {
                cfg.listen.public = *a;
            }
            if let Some(a) = eservice {
                cfg.listen.eservice = *a;
            }
            serve(cfg)
        }
        Command::Init { what } => init(cfg, what.as_ref()),
        Command::Check => check(cfg),
        Command::Admin { what } => esigd::admin::run(&cfg, what),
        Command::Backup { dir } => esigd::backup::run_backup(&cfg, dir),
        Command::Restore { dir, force } => {
            esigd::backup::run_restore(&cfg, dir, *force, || open_hsm(&cfg))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esigd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init(cfg: Config, what: Option<&InitWhat>) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let hsm = open_hsm(&cfg)?;
    let files = PkiFiles::of(&cfg);
    match what {
        Some(InitWhat::Ca { csr: Some(out), .. }) => {
            ceremony::init_subordinate_csr(&cfg, &hsm, out)?;
            println!("CSR for the parent CA written to {}", out.display());
            println!("then: esigd init ca --import-cert <issued certificate + chain, PEM>");
        }
        Some(InitWhat::Ca {
            import_cert: Some(file),
            ..
        }) => {
            let chain = ceremony::import_subordinate(&cfg, &hsm, file)?;
            println!(
                "subordinate CA installed ({} certificates in the chain): {}",
                chain.len(),
                files.ca.display()
            );
        }
        Some(InitWhat::Ca { .. }) => {
            ceremony::init_root(&cfg, &hsm)?;
            println!("root CA created: {}", files.ca.display());
        }
        Some(InitWhat::Ocsp) => {
            let store = esigd_store::Store::open(cfg.store_dir(), Default::default())?;
            let authority = wiring::open_authority(&cfg, &hsm, &store)?;
            ceremony::init_ocsp(&cfg, &hsm, &authority)?;
            println!(
                "OCSP responder certificate created: {}",
                files.ocsp.display()
            );
        }
        Some(InitWhat::Tsa) | None => {
            if what.is_none() && !files.ca.exists() {
                ceremony::init_root(&cfg, &hsm)?;
                println!("root CA created: {}", files.ca.display());
            }
            // The TSA certificate is issued by our CA, recorded in the store.
            let store = esigd_store::Store::open(cfg.store_dir(), Default::default())?;
            let authority = wiring::open_authority(&cfg, &hsm, &store)?;
            ceremony::init_tsa(&cfg, &hsm, &authority)?;
            println!("TSA certificate created: {}", files.tsa.display());
            if what.is_none() && cfg.ca.ocsp_key.is_some() {
                ceremony::init_ocsp(&cfg, &hsm, &authority)?;
                println!(
                    "OCSP responder certificate created: {}",
                    files.ocsp.display()
                );
            }
            if what.is_none() {
                let audit = ceremony::audit_signer(&cfg, &hsm)?;
                std::fs::create_dir_all(cfg.pki_dir())?;
                std::fs::write(
                    files.audit_key_pem(),
                    esigd_pki::pem::to_pem("PUBLIC KEY", audit.public_key().spki_der())?,
                )?;
                println!(
                    "audit key ready (signs tree heads): {}",
                    files.audit_key_pem().display()
                );
            }
        }
    }
    Ok(())
}

/// Runs every check and prints one line per problem; fails if there is any.
fn check(cfg: Config) -> Result<()> {
    let mut problems = Vec::new();
    println!("configuration: {} ok", cfg.source.display());
    match open_hsm(&cfg) {
        Err(e) => problems.push(format!("{e:#}")),
        Ok(hsm) => {
            println!("hsm: token {:?} logged in", cfg.hsm.token);
            for (setting, signer) in [
                ("ca.key", ceremony::ca_signer(&cfg, &hsm)),
                ("tsa.key", ceremony::tsa_signer(&cfg, &hsm)),
            ] {
                match signer {
                    Ok(s) => match s.sign_message(b"esigd check") {
                        Ok(_) => println!("{setting}: key found, signs ({:?})", s.scheme()),
                        Err(e) => problems.push(format!("{setting}: {e}")),
                    },
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            let files = PkiFiles::of(&cfg);
            for (name, path, signer) in [
                ("ca", &files.ca, ceremony::ca_signer(&cfg, &hsm).ok()),
                ("tsa", &files.tsa, ceremony::tsa_signer(&cfg, &hsm).ok()),
            ] {
                match ceremony::read_certificate(path) {
                    Err(e) => problems.push(format!("{name}: {e:#} (run `esigd init {name}`)")),
                    Ok(cert) => {
                        let spki =
                            der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                                .unwrap_or_default();
                        match signer {
                            Some(s) if s.public_key().spki_der() == spki.as_slice() => {
                                println!("{name}: {} matches its key", path.display())
                            }
                            Some(_) => problems.push(format!(
                                "{name}: {} does not match {name}.key",
                                path.display()
                            )),
                            None => {}
                        }
                    }
                }
            }
        }
    }
    if cfg.ca.ocsp_key.is_some()
        && let Ok(hsm) = open_hsm(&cfg)
    {
        let files = PkiFiles::of(&cfg);
        match (
            ceremony::ocsp_signer(&cfg, &hsm),
            ceremony::read_certificate(&files.ocsp),
        ) {
            (Ok(Some(s)), Ok(cert)) => {
                let spki = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                    .unwrap_or_default();
                if s.public_key().spki_der() == spki.as_slice() && s.sign_message(b"check").is_ok()
                {
                    println!("ocsp: {} matches ca.ocsp_key", files.ocsp.display());
                } else {
                    problems.push(format!(
                        "ocsp: {} does not match ca.ocsp_key",
                        files.ocsp.display()
                    ));
                }
            }
            (Err(e), _) => problems.push(format!("{e:#}")),
            (_, Err(e)) => problems.push(format!("ocsp: {e:#} (run `esigd init ocsp`)")),
            (Ok(None), _) => {}
        }
    }
    if let Some(id) = &cfg.identity {
        match esigd_service::identity::oidc::ClientAuth::from_section(id, &cfg.data_dir) {
            Ok(_) => println!(
                "identity: client credentials of {:?} readable",
                id.client_id
            ),
            Err(e) => problems.push(format!("{e:#}")),
        }
        // Reachability is reported, not required: the Identity BB may be down while esigd
        // starts (TSA, CA and OCSP do not need it).
        let reach = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async {
                    let ca = match &id.ca_file {
                        Some(f) => Some(std::fs::read(cfg.data_path(f))?),
                        None => None,
                    };
                    let p = esigd_service::identity::IdentityProvider::new(id, ca.as_deref())?;
                    tokio::time::timeout(std::time::Duration::from_secs(10), p.metadata())
                        .await
                        .map_err(|_| anyhow::anyhow!("timed out"))??;
                    Ok::<_, anyhow::Error>(())
                })
            });
        match reach {
            Ok(()) => println!("identity: discovery document of {} read", id.issuer),
            Err(e) => println!("warning: identity: {} not reachable now: {e:#}", id.issuer),
        }
    }
    if problems.is_empty() {
        println!("all checks passed");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        bail!("{} problem(s) found", problems.len())
    }
}

fn serve(cfg: Config) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let metrics = Arc::new(esigd_web::metrics::Metrics::new()?);
    let hsm = open_hsm_observed(&cfg, metrics.hsm_observer())?;
    let mut cfg = cfg;
    let dev_tls = if cfg.dev {
        let tls = devsetup::ensure_dev_tls(&cfg)?;
        devsetup::apply_dev_registrations(&mut cfg, &tls)?;
        Some(tls)
    } else {
        None
    };
    let state = wiring::build(&cfg, hsm, metrics)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(Arc::new(cfg), state, dev_tls))
}

async fn run(
    cfg: Arc<Config>,
    state: Arc<WebState>,
    dev_tls: Option<devsetup::DevTls>,
) -> Result<()> {
    let svc = state.svc.clone();
    // Listen for SIGTERM before anything says "ready": a stop right after start must be a clean one.
    let shutdown = shutdown_signal()?;
    let public = tokio::net::TcpListener::bind(cfg.listen.public)
        .await
        .with_context(|| format!("listen.public: cannot listen on {}", cfg.listen.public))?;
    let eservice = tokio::net::TcpListener::bind(cfg.listen.eservice)
        .await
        .with_context(|| format!("listen.eservice: cannot listen on {}", cfg.listen.eservice))?;
    let public_addr = public.local_addr()?;
    let eservice_addr = eservice.local_addr()?;
    let tls_config = Reloadable::from_arc(eservice_tls(&cfg)?);
    // Which source addresses may open a connection at all: the union of every registered
    // client's allowed_ips (an address nobody allows is dropped before the TLS handshake).
    let allow = AllowList::new(svc.registry.load().all_networks());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics = state.metrics.clone();
    // `[listen]`; the trusted reverse proxies carry many clients, so their address is not capped.
    let public_opts = ServeOptions {
        limits: cfg.listen.public_limits(),
        per_ip_exempt: cfg.listen.trusted_proxies.clone(),
        ..ServeOptions::default()
    };
    let eservice_opts = ServeOptions {
        limits: cfg.listen.eservice_limits(),
        ..ServeOptions::default()
    };
    install_probes(&state, &public_opts, &eservice_opts);
    esigd::probes::install(&state.metrics, &cfg);
    let public_app = esigd_web::routes::public::router(state.clone())
        .merge(esigd_web::routes::browser(state.clone()))
        .merge(esigd_web::routes::metrics::router(
            metrics.clone(),
            cfg.metrics.allowed_ips.clone(),
        ))
        .layer(esigd_web::observe::layer(metrics.clone(), "public"));
    // Outside the observe layer, so logs and metrics see the client behind a trusted proxy too.
    let public_app = if cfg.listen.trusted_proxies.is_empty() {
        public_app
    } else {
        public_app.layer(axum::middleware::from_fn_with_state(
            Arc::from(cfg.listen.trusted_proxies.clone()),
            esigd_web::net::forwarded::real_client,
        ))
    };
    let eservice_app = esigd_web::routes::eservice::router(state.clone())
        .layer(esigd_web::observe::layer(metrics.clone(), "eservice"));
    let public_task = tokio::spawn(esigd_web::net::serve_public(
        public,
        public_app,
        public_opts,
        stopped(stop_rx.clone()),
    ));
    let eservice_task = tokio::spawn(esigd_web::net::serve_eservice(
        eservice,
        eservice_app,
        EserviceTls {
            config: tls_config.clone(),
            allow: allow.clone(),
        },
        eservice_opts,
        stopped(stop_rx.clone()),
    ));
    // Operator admin API: Unix socket, mode 0600, replaced at every start.
    let admin_socket = esigd_web::routes::admin::socket_path(&cfg.data_dir);
    let admin_task = tokio::spawn(esigd::backup::serve_admin(
        esigd_web::routes::admin::bind(&admin_socket)?,
        state.clone(),
        cfg.clone(),
        stopped(stop_rx.clone()),
    ));
    // systemd (`Type=notify`, appliance/src/notify.rs): READY=1 once a first HSM/store/clock probe
    // answered (the listeners are bound by now), STATUS=, watchdog pings while the HSM and the
    // store answer, RELOADING=1/READY=1 around SIGHUP, STOPPING=1.
    let systemd = esigd::notify::Notifier::from_env();
    let reload_task = tokio::spawn(reload_on_sighup(
        cfg.clone(),
        svc.clone(),
        allow.clone(),
        tls_config,
        systemd.clone(),
    ));
    let sweep_task = tokio::spawn(sweep_signatures(svc.clone()));
    // Notification delivery from the outbox (`[notifications]`); undelivered rows wait in the
    // store for the next start.
    let notify_task = svc.notifier.clone().map(|n| tokio::spawn(n.run()));
    // Signed tree heads of the audit ledger, every audit.sth_interval when it grew.
    let sth_task = tokio::spawn(
        svc.audit
            .clone()
            .run_publisher(cfg.audit.sth_interval, std::future::pending()),
    );
    print_banner(&cfg, public_addr, eservice_addr, dev_tls.as_ref());
    let systemd_task =
        tokio::spawn(esigd::notify::Supervisor::for_service(systemd.clone(), &svc).run());
    shutdown.await;
    systemd.stopping();
    systemd_task.abort();
    reload_task.abort();
    sweep_task.abort();
    sth_task.abort();
    if let Some(t) = &notify_task {
        t.abort();
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let _ = public_task.await;
    let _ = eservice_task.await;
    let _ = admin_task.await;
    let _ = std::fs::remove_file(&admin_socket);
    // Signatures whose client went away are still being made: let them finish and be stored.
    let signing_tasks = svc.onetime.tasks();
    signing_tasks.close();
    if tokio::time::timeout(SIGNING_DRAIN, signing_tasks.wait())
        .await
        .is_err()
    {
        tracing::error!(
            left = signing_tasks.len(),
            "signing tasks still running at shutdown"
        );
    }
    state.metrics.clear_probes();
    // The time-stamp signing threads sign with the HSM: stop them before it closes.
    svc.stamp_queue.close();
    svc.hsm.close();
    Ok(())
}

/// Scrape-time readings for `/metrics`: clock discipline, HSM pool, one-time keys, listeners.
fn install_probes(state: &Arc<WebState>, public: &ServeOptions, eservice: &ServeOptions) {
    let m = &state.metrics;
    let discipline = state.svc.discipline.clone();
    m.set_clock_probe(Box::new(move || {
        discipline
            .status()
            .ok()
            .map(|s| (s.synchronized, s.max_error.as_secs_f64()))
    }));
    // Weak references: the probes must not keep the HSM alive after shutdown.
    let weak = Arc::downgrade(&state.svc);
    m.set_hsm_probe(Box::new(move || weak.upgrade().map(|s| s.hsm.stats())));
    let weak = Arc::downgrade(&state.svc);
    m.set_onetime_keys_probe(Box::new(move || {
        weak.upgrade().map(|s| s.onetime.ready_keys())
    }));
    let weak = Arc::downgrade(state);
    m.set_signing_sessions_probe(Box::new(move || {
        weak.upgrade().map(|s| s.pages.open_sessions())
    }));
    let weak = Arc::downgrade(&state.svc);
    m.set_scd_pending_probe(Box::new(move || {
        weak.upgrade().map(|s| s.scd_signing.pending())
    }));
    let stats = public.stats.clone();
    m.set_listener_probe("public", Box::new(move || stats.snapshot()));
    let stats = eservice.stats.clone();
    m.set_listener_probe("eservice", Box::new(move || stats.snapshot()));
}

/// The e-Service listener's TLS configuration from the `[tls]` files (certificate, key, client
/// CAs and their CRLs).
fn eservice_tls(cfg: &Config) -> Result<Arc<rustls::ServerConfig>, esigd_web::net::NetError> {
    let crl = cfg.tls.client_crl.as_ref().map(|p| cfg.data_path(p));
    esigd_web::net::mtls_server_config_from_files(
        &cfg.data_path(&cfg.tls.cert),
        &cfg.data_path(&cfg.tls.key),
        &cfg.data_path(&cfg.tls.client_ca),
        crl.as_deref(),
    )
}

/// SIGHUP: re-read the configuration file and swap the e-Service/auditor registry, the
/// connection allow-list and the e-Service listener's TLS configuration (the `[tls]` files: client
/// CAs, their CRLs, the server certificate). Requests in flight finish with what they started
/// with; a file that does not validate, or `[tls]` files that do not load, are logged and ignored
/// (everything running stays). systemd hears `RELOADING=1` before and `READY=1` after.
async fn reload_on_sighup(
    cfg: Arc<Config>,
    svc: Arc<esigd_service::Service>,
    allow: AllowList,
    tls: Reloadable<rustls::ServerConfig>,
    systemd: esigd::notify::Notifier,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("SIGHUP handler not installed; reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        if cfg.dev {
            tracing::info!("SIGHUP ignored: the embedded defaults have no file to reload");
            continue;
        }
        systemd.reloading();
        let mut event = esigd_store::signatures::AuditEvent::new(
            "config.reloaded",
            std::time::SystemTime::now(),
        );
        let status = match reload(&cfg, &svc, &allow, &tls) {
            Ok(status) => {
                event.outcome = Some("success".into());
                status
            }
            Err(err) => {
                let err = format!("{err:#}");
                tracing::error!(error = %err, "configuration reload refused; the running configuration stays");
                event.outcome = Some("failure".into());
                event.message = Some(err.clone());
                format!("serving; configuration reload refused, running configuration kept: {err}")
            }
        };
        // Logged and continued on an audit failure (esigd_service::audit).
        esigd_service::audit::record_or_log(&svc.signatures, &event).await;
        systemd.ready(&status);
    }
}

/// One SIGHUP reload (see [`reload_on_sighup`]); returns the status line for systemd.
fn reload(
    cfg: &Config,
    svc: &esigd_service::Service,
    allow: &AllowList,
    tls: &Reloadable<rustls::ServerConfig>,
) -> Result<String> {
    let path = &cfg.source;
    let new = Config::load(path)?;
    let tls_config = eservice_tls(&new)?;
    let registry = wiring::registry(&new);
    let (e, a) = registry.counts();
    allow.replace(registry.all_networks());
    svc.registry.store(registry);
    tls.store_arc(tls_config);
    tracing::info!(
        file = %path.display(),
        eservices = e,
        auditors = a,
        "configuration reloaded: e-Services, auditors and [tls] files replaced (other sections need a restart)"
    );
    Ok(format!(
        "serving; configuration reloaded (e-Services: {e}, auditors: {a})"
    ))
}

/// Removes stored signatures whose retention has ended, and the single-use records of ID tokens
/// and payment tokens that expired, every `store.sweep_interval`.
async fn sweep_signatures(svc: Arc<esigd_service::Service>) {
    let mut tick = tokio::time::interval(svc.settings.store.sweep_interval);
    loop {
        tick.tick().await;
        let store = svc.signatures.clone();
        let now = svc.clock.now();
        let removed = tokio::task::spawn_blocking(move || {
            let mut total = 0;
            loop {
                match store.sweep_blocking(now, 1000) {
                    Ok(n) => {
                        total += n;
                        if n < 1000 {
                            return Ok(total);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "expired signatures removed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "signature retention sweep failed"),
            Err(e) => tracing::warn!(error = %e, "signature retention sweep panicked"),
        }
        // The single-use records of ID tokens and payment tokens that expired (they can no
        // longer be replayed).
        if let Some(identity) = svc.identity.clone() {
            sweep_single_use("ID-token", move |n| {
                identity
                    .sweep_spent_tokens_blocking(n)
                    .map_err(|e| e.to_string())
            })
            .await;
        }
        if let Some(payment) = svc.payment.clone() {
            sweep_single_use("payment", move |n| {
                payment.sweep_blocking(n).map_err(|e| e.to_string())
            })
            .await;
        }
    }
}

/// Runs `sweep` (removes up to n expired single-use records of `kind`, returns how many) off the
/// async workers until nothing is left to remove, and logs the outcome.
async fn sweep_single_use(
    kind: &'static str,
    sweep: impl Fn(usize) -> Result<usize, String> + Send + 'static,
) {
    let removed = tokio::task::spawn_blocking(move || {
        let mut total = 0;
        loop {
            let n = sweep(1000)?;
            total += n;
            if n < 1000 {
                return Ok::<_, String>(total);
            }
        }
    })
    .await;
    match removed {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(removed = n, kind, "expired single-use records removed"),
        Ok(Err(e)) => tracing::warn!(error = %e, kind, "single-use record sweep failed"),
        Err(e) => tracing::warn!(error = %e, kind, "single-use record sweep panicked"),
    }
}

/// SIGTERM or Ctrl-C, registered now (before the banner), awaited later.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn print_banner(
    cfg: &Config,
    public: std::net::SocketAddr,
    eservice: std::net::SocketAddr,
    dev: Option<&devsetup::DevTls>,
) {
    let files = PkiFiles::of(cfg);
    let shown = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    println!(
        "esigd is running ({})",
        if cfg.dev {
            "embedded development defaults"
        } else {
            "configured"
        }
    );
    println!(
        "  public listener    http://{}  (/pki/ca.pem, /pki/crl, /ocsp, /tsa, /healthz, /readyz)",
        public
    );
    println!("  e-Service listener https://{}  (mutual TLS)", eservice);
    println!("  CA certificate     {}", shown(&files.ca));
    println!("  TSA certificate    {}", shown(&files.tsa));
    if let Some(d) = dev {
        println!(
            "  demo e-Service     {} / {}",
            shown(&d.demo_cert),
            shown(&d.demo_key)
        );
    }
    println!(
        "  admin socket       {}",
        shown(&esigd_web::routes::admin::socket_path(&cfg.data_dir))
    );
    println!("  data directory     {}", shown(&cfg.data_dir));
    // Scripts wait for this line.
    println!("ready");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
