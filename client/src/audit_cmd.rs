//! `esig audit`: offline proof verification and a Certificate-Transparency-style monitor of esigd's audit
//! ledger.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use esigd_ledger::{ConsistencyProof, Frontier, ProofBundle, SignedTreeHead, leaf_hash};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

/// `esig audit …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Checks a proof bundle (GET /v1/audit/proof/{signatureId}) without talking to esigd: the tree head's
    /// signature with the audit key, and every event's inclusion proof. Exit code 0 only when all hold.
    Verify {
        /// The proof bundle (JSON).
        bundle: PathBuf,
        /// A tree head you trust (JSON of GET /v1/audit/sth); the bundle must be under it.
        #[arg(long)]
        sth: Option<PathBuf>,
        /// The audit public key (PEM; GET /v1/audit/key or esigd's pki/audit.pem).
        #[arg(long)]
        key: PathBuf,
    },
    /// Watches esigd's tree heads like a CT monitor: checks each head's signature, its consistency with the
    /// previous head, and recomputes the root from every leaf. Exit code 1 on the first inconsistency.
    Monitor(MonitorArgs),
}

/// `esig audit monitor`.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// The e-Service API of esigd, e.g. https://esigd.example:8443.
    server: String,
    /// The audit public key (PEM).
    #[arg(long = "audit-key")]
    audit_key: PathBuf,
    /// The auditor's client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The auditor's client key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The CA certificate(s) the server's certificate is checked against (PEM).
    #[arg(long)]
    cacert: PathBuf,
    /// Keeps the last verified tree head here between runs (JSON); a later head must extend it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Stop after this many rounds (default: run until stopped).
    #[arg(long)]
    rounds: Option<u64>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn audit_key(path: &Path) -> Result<VerifyingKey> {
    let pem = String::from_utf8(read(path)?)
        .with_context(|| format!("{}: not PEM text", path.display()))?;
    VerifyingKey::from_public_key_pem(&pem)
        .with_context(|| format!("{}: not a P-256 public key (PEM)", path.display()))
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&read(path)?)
        .with_context(|| format!("{}: not the expected JSON", path.display()))
}

pub(crate) fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { bundle, sth, key } => {
            let key = audit_key(&key)?;
            let b: ProofBundle = json(&bundle)?;
            let trusted: Option<SignedTreeHead> = sth.as_deref().map(json).transpose()?;
            b.verify(&key, trusted.as_ref())
                .with_context(|| format!("{} does not verify", bundle.display()))?;
            println!(
                "{}: {} event(s) of {} are in the audit ledger under the tree head of {} leaves (root {}), signed by the audit key",
                bundle.display(),
                b.entries.len(),
                b.signature_id,
                b.sth.tree_size,
                hex::encode(b.sth.root_hash)
            );
            for e in &b.entries {
                let kind = serde_json::from_slice::<serde_json::Value>(&e.leaf)
                    .ok()
                    .and_then(|v| v.get("event").and_then(|k| k.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "?".into());
                println!("  leaf {}: {kind}", e.leaf_index);
            }
            Ok(())
        }
        AuditCommand::Monitor(args) => monitor(args),
    }
}

#[derive(Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    leaf_index: u64,
    leaf: String,
}

struct Api {
    http: reqwest::blocking::Client,
    base: String,
}

impl Api {
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.bytes()?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: unexpected answer"))
    }
}

fn monitor(args: MonitorArgs) -> Result<()> {
    let key = audit_key(&args.audit_key)?;
    let mut identity = read(&args.cert)?;
    identity.push(b'\n');
    identity.extend_from_slice(&read(&args.key)?);
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .identity(reqwest::Identity::from_pem(&identity).context("--cert / --key")?)
        .timeout(Duration::from_secs(60));
    for ca in reqwest::Certificate::from_pem_bundle(&read(&args.cacert)?).context("--cacert")? {
        builder = builder.add_root_certificate(ca);
    }
    let api = Api {
        http: builder.build()?,
        base: args.server.trim_end_matches('/').to_owned(),
    };
    let mut previous: Option<SignedTreeHead> = match &args.state {
        Some(p) if p.exists() => Some(json(p)?),
        _ => None,
    };
    let mut round = 0u64;
    loop {
        round += 1;
        let head: SignedTreeHead = api.get("/v1/audit/sth")?;
        check_round(&api, &key, previous.as_ref(), &head)?;
        println!(
            "tree head of {} leaves at {} ms: signature ok, {}, every leaf rehashed to its root",
            head.tree_size,
            head.timestamp,
            match &previous {
                Some(p) => format!(
                    "consistent with the previous head of {} leaves",
                    p.tree_size
                ),
                None => "first head seen".into(),
            }
        );
        if let Some(p) = &args.state {
            fs::write(p, serde_json::to_vec_pretty(&head)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        previous = Some(head);
        if args.rounds.is_some_and(|n| round >= n) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// One monitor round: signature, consistency with the previous head, and the root recomputed from all
/// leaves.
fn check_round(
    api: &Api,
    key: &VerifyingKey,
    previous: Option<&SignedTreeHead>,
    head: &SignedTreeHead,
) -> Result<()> {
    head.verify(key)
        .context("INCONSISTENT: the tree head's signature does not verify with the audit key")?;
    if let Some(p) = previous {
        if head.tree_size < p.tree_size {
            bail!(
                "INCONSISTENT: the tree head shrank from {} to {} leaves",
                p.tree_size,
                head.tree_size
            );
        }
        if head.tree_size == p.tree_size {
            if head.root_hash != p.root_hash {
                bail!(
                    "INCONSISTENT: two tree heads of {} leaves with different roots",
                    head.tree_size
                );
            }
        } else {
            let proof: ConsistencyProof = api.get(&format!(
                "/v1/audit/sth/consistency?first={}&second={}",
                p.tree_size, head.tree_size
            ))?;
            if !proof.verify(p, head) {
                bail!(
                    "INCONSISTENT: the head of {} leaves does not extend the head of {} leaves (consistency proof fails)",
                    head.tree_size,
                    p.tree_size
                );
            }
        }
    }
    // Every leaf, rehashed: a changed event changes the root.
    let mut frontier = Frontier::new();
    while frontier.size() < head.tree_size {
        let page: Entries = api.get(&format!(
            "/v1/audit/entries?start={}&end={}",
            frontier.size(),
            head.tree_size
        ))?;
        if page.entries.is_empty() {
            bail!(
                "INCONSISTENT: esigd serves no leaf at index {} of a tree of {} leaves",
                frontier.size(),
                head.tree_size
            );
        }
        for e in page.entries {
            if e.leaf_index != frontier.size() {
                bail!(
                    "INCONSISTENT: leaf {} came where leaf {} was expected",
                    e.leaf_index,
                    frontier.size()
                );
            }
            let leaf = B64
                .decode(e.leaf.as_bytes())
                .with_context(|| format!("leaf {}: not base64", e.leaf_index))?;
            frontier.append(leaf_hash(&leaf));
        }
    }
    if frontier.root() != head.root_hash {
        bail!(
            "INCONSISTENT: the {} leaves esigd serves hash to root {}, but its signed tree head says {}: a logged event was changed",
            head.tree_size,
            hex::encode(frontier.root()),
            hex::encode(head.root_hash)
        );
    }
    Ok(())
}
