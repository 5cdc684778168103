//! `esigd admin …`: a small HTTP/1 client for the admin socket. Prints the JSON answer; on an error
//! answer prints its message and exits non-zero.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use axum::body::Body;
use base64::Engine;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::config::Config;

/// Largest answer read from the daemon (a listing of 1000 records with their PEM).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// `esigd admin …`
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Certificates issued by the CA.
    Cert {
        /// What to do.
        #[command(subcommand)]
        action: CertAction,
    },
}

/// `esigd admin cert …`
#[derive(clap::Subcommand, Debug)]
pub enum CertAction {
    /// Issue an SCD certificate for a CSR (customer care).
    Issue {
        /// The CSR, PEM or DER.
        #[arg(long)]
        csr: PathBuf,
        /// Identity claims as JSON (`{"given_name":…,"family_name":…,"personal_identifier":…,"country":…}`),
        /// or `@FILE` to read them from a file.
        #[arg(long)]
        claims: String,
        /// Certificate profile (only `scd`; one-time certificates come from the signing pipeline).
        #[arg(long, default_value = "scd")]
        profile: String,
    },
    /// Revoke a certificate (final).
    Revoke {
        /// Serial number (hex).
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded,
        /// cessationOfOperation, privilegeWithdrawn.
        #[arg(long)]
        reason: String,
        /// Who asks, and why.
        #[command(flatten)]
        who: Who,
    },
    /// Suspend a certificate (CRL/OCSP: revoked, certificateHold).
    Suspend {
        /// Serial number (hex).
        serial: String,
        /// Who asks, and why.
        #[command(flatten)]
        who: Who,
    },
    /// Resume a suspended certificate.
    Resume {
        /// Serial number (hex).
        serial: String,
        /// Who asks, and why.
        #[command(flatten)]
        who: Who,
    },
    /// Show one certificate record.
    Show {
        /// Serial number (hex).
        serial: String,
    },
    /// List certificate records in serial order.
    List {
        /// Only this profile (one-time, scd, tsa, ocsp-responder).
        #[arg(long)]
        profile: Option<String>,
        /// Start after this serial (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Page size (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Who asks for a status change, and why (recorded in the certificate's history).
#[derive(clap::Args, Debug)]
pub struct Who {
    /// Who asks for the change (default: $SUDO_USER, else $USER).
    #[arg(long)]
    actor: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    justification: String,
}

impl Who {
    fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("SUDO_USER").ok())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".into())
    }
}

/// Runs an admin command against the daemon's socket (`data_dir/admin.sock`); prints the answer.
pub fn run(cfg: &Config, cmd: &AdminCommand) -> Result<()> {
    let (method, path, body) = request_for(cmd)?;
    let socket = esigd_web::routes::admin::socket_path(&cfg.data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(call(&socket, method, &path, body))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if !status.is_success() {
        let message = answer["status"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        bail!("{status}: {message}");
    }
    Ok(())
}

fn request_for(cmd: &AdminCommand) -> Result<(Method, String, Option<Value>)> {
    let AdminCommand::Cert { action } = cmd;
    let status = |serial: &str, action: &str, reason: Option<&str>, who: &Who| {
        let mut body =
            json!({"action": action, "actor": who.actor(), "justification": who.justification});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        (
            Method::POST,
            format!("/admin/cert/{}/status", segment(serial)),
            Some(body),
        )
    };
    Ok(match action {
        CertAction::Issue {
            csr,
            claims,
            profile,
        } => {
            let bytes =
                std::fs::read(csr).with_context(|| format!("--csr: reading {}", csr.display()))?;
            let csr_text = match std::str::from_utf8(&bytes) {
                Ok(t) if t.trim_start().starts_with("-----BEGIN") => t.to_owned(),
                _ => base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            let claims_text = match claims.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("--claims: reading {file}"))?,
                None => claims.clone(),
            };
            let claims: Value =
                serde_json::from_str(&claims_text).context("--claims: not a JSON object")?;
            if !claims.is_object() {
                bail!("--claims: not a JSON object");
            }
            (
                Method::POST,
                "/admin/cert/issue".into(),
                Some(json!({"profile": profile, "csr": csr_text, "claims": claims})),
            )
        }
        CertAction::Revoke {
            serial,
            reason,
            who,
        } => status(serial, "revoke", Some(reason.as_str()), who),
        CertAction::Suspend { serial, who } => status(serial, "suspend", None, who),
        CertAction::Resume { serial, who } => status(serial, "resume", None, who),
        CertAction::Show { serial } => (
            Method::GET,
            format!("/admin/cert/{}", segment(serial)),
            None,
        ),
        CertAction::List {
            profile,
            after,
            limit,
        } => {
            let mut q = Vec::new();
            if let Some(p) = profile {
                q.push(format!("profile={}", segment(p)));
            }
            if let Some(a) = after {
                q.push(format!("after={}", segment(a)));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            let path = if q.is_empty() {
                "/admin/cert".to_owned()
            } else {
                format!("/admin/cert?{}", q.join("&"))
            };
            (Method::GET, path, None)
        }
    })
}

/// Percent-encodes everything but unreserved characters (serials are hex; anything else is passed
/// on for the daemon to refuse with a message).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request over the Unix socket; returns the status and the JSON answer.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let stream = tokio::net::UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot connect to the admin socket {} (is `esigd serve` running with this data directory, \
             and may this user open the socket?)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("admin socket: HTTP handshake")?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    let body = match body {
        Some(v) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v)?)
        }
        None => Body::empty(),
    };
    let resp = sender
        .send_request(req.body(body)?)
        .await
        .context("admin socket: request failed")?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ANSWER)
        .await
        .context("admin socket: reading the answer")?;
    drop(sender);
    let _ = driver.await;
    let answer = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| json!({"status": {"code": "ERROR", "message": String::from_utf8_lossy(&bytes)}}),
    );
    Ok((status, answer))
}
