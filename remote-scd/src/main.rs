//! `esigd-remote-scd`: the reference Remote SCD service as a daemon.
//!
//! ```text
//! esigd-remote-scd serve \
//!     --rp-listen 127.0.0.1:8600 --rp-client-ca rscd-rp-ca.pem \
//!     --device-listen 127.0.0.1:8601 \
//!     --cert rscd-server.pem --key rscd-server.key \
//!     --state /var/lib/esigd-remote-scd
//! ```
//!
//! Two listeners on esigd's hardened accept loops (`esigd-net`):
//! * the relying-party API (`/scd/v1`) over mutual TLS 1.3: a relying party (esigd) presents a client
//!   certificate issued by a CA of `--rp-client-ca`; it is known by the SHA-256 of that certificate;
//! * the device API (`/device/v1`) over TLS without client certificates: every device call is signed
//!   by the device's own key (`Authorization: DeviceJWS`).
//!
//! The state (devices, keys, sessions) is an `fsync`ed journal in `--state`; SIGTERM or SIGINT stop
//! both listeners gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use esigd_net::{
    AllowList, Limits, Reloadable, ServeOptions, TimeoutAnswer, TlsListener,
    mtls_server_config_from_files, serve_tls, server_config_from_files,
};
use esigd_remote_scd::engine::Config;
use esigd_remote_scd::http::{RelyingParty, Service, device_router, problem_response, rp_router};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The journal's file name in `--state`.
const JOURNAL: &str = "journal.jsonl";
/// How often expired sessions and replay entries are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "esigd-remote-scd",
    version,
    about = "Reference Remote SCD service of esigd (relying-party API over mTLS, device API over TLS)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serves the relying-party and the device API until SIGTERM or SIGINT.
    Serve(Serve),
}

#[derive(clap::Args)]
struct Serve {
    /// Address of the relying-party API (mutual TLS).
    #[arg(long)]
    rp_listen: SocketAddr,
    /// CA certificate(s) (PEM) of the relying parties' client certificates.
    #[arg(long)]
    rp_client_ca: PathBuf,
    /// Certificate revocation list(s) of those CAs (PEM or DER); a client certificate whose issuer
    /// has no CRL here is then refused.
    #[arg(long)]
    rp_client_crl: Option<PathBuf>,
    /// Networks allowed to connect to the relying-party API (repeatable; default: any address).
    #[arg(long = "rp-allow", value_name = "CIDR")]
    rp_allow: Vec<IpNet>,
    /// Address of the device API (TLS; devices sign every call).
    #[arg(long)]
    device_listen: SocketAddr,
    /// External base URL of the device API, as devices call it (what they sign as `htu`).
    /// Default: `https://<--device-listen>`.
    #[arg(long)]
    public_url: Option<String>,
    /// Server certificate chain (PEM, leaf first) of both listeners.
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM) of `--cert`.
    #[arg(long)]
    key: PathBuf,
    /// State directory (the journal); created if missing.
    #[arg(long)]
    state: PathBuf,
    /// Time the citizen has to answer on the device (e.g. `120s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    user_window: Option<Duration>,
    /// Sessions one device may receive within 10 minutes (against notification spam).
    #[arg(long)]
    push_limit: Option<usize>,
    /// How long open connections (long polls) may finish at shutdown (e.g. `5s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    shutdown_grace: Duration,
}

/// Lowercase hex of the SHA-256 of a DER certificate: how a relying party is known.
fn cert_sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The relying party of a mutual-TLS connection: its verified leaf certificate's SHA-256.
fn relying_party(addr: SocketAddr, chain: &[CertificateDer<'static>]) -> Option<RelyingParty> {
    let leaf = chain.first()?;
    let rp = RelyingParty(cert_sha256_hex(leaf.as_ref()));
    tracing::debug!(peer = %addr, relying_party = %rp.0, "relying-party connection");
    Some(rp)
}

/// Creates `dir` (mode 0700) if it does not exist.
fn state_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("--state {}: cannot create", dir.display()))?;
    }
    Ok(())
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("signal handlers not installed; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

fn options(name: &'static str, limits: Limits) -> ServeOptions {
    ServeOptions {
        limits,
        name: Some(name),
        body_timeout_answer: Some(TimeoutAnswer::new(|| {
            problem_response(408, "REQUEST_TIMEOUT", "request body not complete in time")
        })),
        ..ServeOptions::default()
    }
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    state_dir(&args.state)?;
    let mut cfg = Config::default();
    if let Some(w) = args.user_window {
        anyhow::ensure!(!w.is_zero(), "--user-window must be greater than zero");
        cfg.user_window = w;
    }
    if let Some(n) = args.push_limit {
        anyhow::ensure!(n > 0, "--push-limit must be at least 1");
        cfg.push_limit = n;
    }
    let rp_tls = mtls_server_config_from_files(
        &args.cert,
        &args.key,
        &args.rp_client_ca,
        args.rp_client_crl.as_deref(),
    )
    .context("relying-party listener (--cert, --key, --rp-client-ca, --rp-client-crl)")?;
    let device_tls = server_config_from_files(&args.cert, &args.key)
        .context("device listener (--cert, --key)")?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", args.device_listen));
    if args.public_url.is_none() && args.device_listen.ip().is_unspecified() {
        tracing::warn!(
            "--device-listen is a wildcard address: set --public-url to the URL devices call"
        );
    }
    let journal = args.state.join(JOURNAL);
    let svc = Service::open(cfg, &journal, &public_url, SystemTime::now())
        .with_context(|| format!("--state {}", args.state.display()))?;

    let rp_listener = tokio::net::TcpListener::bind(args.rp_listen)
        .await
        .with_context(|| format!("--rp-listen {}", args.rp_listen))?;
    let device_listener = tokio::net::TcpListener::bind(args.device_listen)
        .await
        .with_context(|| format!("--device-listen {}", args.device_listen))?;
    let rp_addr = rp_listener.local_addr()?;
    let device_addr = device_listener.local_addr()?;
    let allow = if args.rp_allow.is_empty() {
        AllowList::any()
    } else {
        AllowList::new(args.rp_allow.clone())
    };
    let limits = Limits {
        shutdown_grace: args.shutdown_grace,
        ..Limits::default()
    };
    let rp_limits = Limits {
        max_connections_per_ip: esigd_net::DEFAULT_ESERVICE_MAX_CONNECTIONS_PER_IP,
        ..limits
    };

    limits.validate()?;
    rp_limits.validate_eservice()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let rp_task = tokio::spawn(serve_tls(
        rp_listener,
        rp_router(svc.clone()),
        TlsListener {
            config: Reloadable::from_arc(rp_tls),
            allow,
        },
        options("relying-party", rp_limits),
        stopped(stop_rx.clone()),
        relying_party,
    ));
    let device_task = tokio::spawn(serve_tls(
        device_listener,
        device_router(svc.clone()),
        TlsListener {
            config: Reloadable::from_arc(device_tls),
            allow: AllowList::any(),
        },
        options("device", limits),
        stopped(stop_rx.clone()),
        |_, _: &[CertificateDer<'static>]| Some(()),
    ));
    let sweeper = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                svc.sweep();
            }
        })
    };
    tracing::info!(
        rp = %rp_addr,
        device = %device_addr,
        public_url = %public_url,
        state = %args.state.display(),
        "esigd-remote-scd serving: relying-party API (mTLS) and device API (TLS)"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing open ones");
    svc.close();
    let _ = stop_tx.send(true);
    sweeper.abort();
    for (name, task) in [("relying-party", rp_task), ("device", device_task)] {
        match task.await {
            Ok(Ok(report)) => {
                tracing::info!(
                    listener = name,
                    aborted = report.aborted,
                    "listener stopped"
                )
            }
            Ok(Err(e)) => tracing::error!(listener = name, error = %e, "listener failed"),
            Err(e) => tracing::error!(listener = name, error = %e, "listener task failed"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match cli.cmd {
        Cmd::Serve(args) => rt.block_on(serve(args)),
    }
}
