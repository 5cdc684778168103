//! `esigd-device`: the reference device app (the citizen's phone).
//!
//! ```text
//! esigd-device init --state DIR            # once: the device's own SoftHSM token directory
//! export SOFTHSM2_CONF=DIR/softhsm2.conf   # as printed by init
//! esigd-device run --state DIR --service https://127.0.0.1:8601 --service-ca ca.pem --ui 127.0.0.1:8700
//! esigd-device run ... --cli               # decisions as JSON lines on stdin (scripts)
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use esigd_device::agent::Agent;
use esigd_device::app::{App, Decision, Outcome};
use esigd_device::client::Client;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "esigd-device",
    version,
    about = "Reference device app for esigd's Remote SCD flows"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates the state directory and the device's own SoftHSM token directory, and prints the
    /// SOFTHSM2_CONF to export.
    Init {
        /// State directory (device key, token, processed requests).
        #[arg(long)]
        state: PathBuf,
    },
    /// Registers with the service (first run), then answers requests.
    Run {
        /// State directory made by `init`.
        #[arg(long)]
        state: PathBuf,
        /// Base URL of the Remote SCD service's device API.
        #[arg(long)]
        service: String,
        /// CA certificate(s) the service's TLS certificate must chain to (PEM).
        #[arg(long)]
        service_ca: PathBuf,
        /// Address of the web UI (localhost).
        #[arg(long, default_value = "127.0.0.1:8700")]
        ui: SocketAddr,
        /// Read decisions from stdin as JSON lines instead of serving the UI.
        #[arg(long)]
        cli: bool,
        /// PKCS#11 module.
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: PathBuf,
    },
}

fn conf_path(state: &Path) -> PathBuf {
    state.join("softhsm2.conf")
}

fn init(state: &Path) -> anyhow::Result<()> {
    let tokens = state.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let abs = std::fs::canonicalize(state)?;
    let conf = conf_path(&abs);
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            abs.join("tokens").display()
        ),
    )?;
    println!("export SOFTHSM2_CONF={}", conf.display());
    Ok(())
}

/// A decision line of `--cli` mode.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CliDecision {
    transaction_id: String,
    decision: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    pin_again: Option<String>,
    #[serde(default)]
    choice: Option<String>,
}

async fn cli_loop(app: Arc<App>) -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut shown: Option<String> = None;
    loop {
        if let Some(p) = app.current()
            && (shown.as_deref() != Some(p.tx.transaction_id.as_str()) || p.message.is_some())
        {
            let line = serde_json::json!({
                "transactionId": p.tx.transaction_id,
                "type": p.tx.kind,
                "rpName": p.review.rp_name,
                "text": p.review.interaction.text(),
                "vc": p.review.vc,
                "choices": p.review.choices,
                "choosePin": p.review.choose_pin,
                "locked": p.review.locked,
                "message": p.message,
            });
            println!("{line}");
            std::io::stdout().flush()?;
            shown = Some(p.tx.transaction_id.clone());
            let Some(input) = lines.next_line().await? else {
                return Ok(());
            };
            let d: CliDecision = match serde_json::from_str(&input) {
                Ok(d) => d,
                Err(e) => {
                    println!(
                        "{}",
                        serde_json::json!({"error": format!("not a decision: {e}")})
                    );
                    continue;
                }
            };
            let decision = match d.decision.as_str() {
                "refuse" => Decision::Refuse,
                "confirm" => Decision::Confirm {
                    pin: SecretString::from(d.pin.unwrap_or_default()),
                    pin_again: d.pin_again.map(SecretString::from),
                    choice: d.choice,
                },
                other => {
                    println!(
                        "{}",
                        serde_json::json!({"error": format!("decision: confirm or refuse, not {other}")})
                    );
                    continue;
                }
            };
            let out = match app.decide(&d.transaction_id, decision).await {
                Ok(Outcome::Sent(o)) => {
                    serde_json::json!({"transactionId": d.transaction_id, "sent": o})
                }
                Ok(Outcome::Again(m)) => {
                    serde_json::json!({"transactionId": d.transaction_id, "again": m})
                }
                Ok(Outcome::Gone) => {
                    serde_json::json!({"transactionId": d.transaction_id, "error": "no such request"})
                }
                Err(e) => {
                    serde_json::json!({"transactionId": d.transaction_id, "error": e.to_string()})
                }
            };
            println!("{out}");
            std::io::stdout().flush()?;
            continue;
        }
        app.wait_change(std::time::Duration::from_secs(1)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Init { state } => init(&state),
        Cmd::Run {
            state,
            service,
            service_ca,
            ui,
            cli,
            module,
        } => {
            let expected = std::fs::canonicalize(conf_path(&state)).map_err(|e| {
                anyhow::anyhow!(
                    "--state {}: no softhsm2.conf ({e}); run `esigd-device init --state {}` first",
                    state.display(),
                    state.display()
                )
            })?;
            let actual =
                std::env::var_os("SOFTHSM2_CONF").and_then(|p| std::fs::canonicalize(p).ok());
            if actual.as_deref() != Some(expected.as_path()) {
                anyhow::bail!(
                    "SOFTHSM2_CONF must be this device's own token configuration: export SOFTHSM2_CONF={}",
                    expected.display()
                );
            }
            let agent = Agent::open(&state, &module)?;
            let client = Client::new(&service, &service_ca)?;
            let app = App::start(
                agent,
                client,
                concat!("esigd-device/", env!("CARGO_PKG_VERSION")),
            )
            .await?;
            eprintln!("device ID (SCDRemoteId): {}", app.device_id());
            tokio::spawn(app.clone().run());
            if cli {
                cli_loop(app).await
            } else {
                let listener = tokio::net::TcpListener::bind(ui).await?;
                eprintln!("device UI: http://{}/", listener.local_addr()?);
                axum::serve(listener, esigd_device::ui::router(app)?).await?;
                Ok(())
            }
        }
    }
}
