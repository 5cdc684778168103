//! `esig`: the esigd client command line (digests; PAdES prepare and embed; ASiC-E; verify; sign).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Parser, Subcommand};
use esig::digest::HashAlgorithm;
use esig::pdf::{self, PrepareOptions};

mod audit_cmd;
mod commands;

/// The client side of esigd: digests to send, PDFs to prepare and complete (PAdES), ASiC-E
/// containers to build, signatures to check, and the whole sign round trip of an e-Service.
#[derive(Debug, Parser)]
#[command(name = "esig", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the digest of each file, in hex and in base64 (the `hash` of a sign request).
    Digest {
        /// The hash (`hashType`): SHA2-256, SHA2-384 or SHA2-512.
        #[arg(long = "hash", default_value = "SHA2-256")]
        hash: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// PAdES: prepare a PDF for a signature, embed the signature.
    Pdf {
        #[command(subcommand)]
        command: PdfCommand,
    },
    /// ASiC-E containers: build one around a signature, write the ASiCManifest of the CAdES form.
    Asice {
        #[command(subcommand)]
        command: commands::AsiceCommand,
    },
    /// Checks a signed PDF, .p7s, XAdES, JWS or ASiC-E: structure, document digests, signature
    /// value, time-stamp imprint. Exit code 0 only when every check passes. A structural check,
    /// not a qualified validation (no trust list, no revocation checking).
    Verify(commands::VerifyArgs),
    /// Signs files through esigd (POST /v1/sign/onetime over mutual TLS) and writes the signed
    /// PDF, .p7s, .xml, .json or .asice.
    Sign(commands::SignArgs),
    /// The audit ledger: verify a proof bundle offline, monitor tree heads.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PdfCommand {
    /// Appends an empty signature (an incremental update) and prints the base64 SHA-256 of its
    /// ByteRange, which goes to esigd with format PAdES and hashType SHA2-256. The digest is also
    /// written to OUT.digest. Keep OUT unchanged until the signature comes back.
    Prepare {
        /// The PDF to sign (never modified).
        input: PathBuf,
        /// The prepared PDF to write.
        #[arg(long)]
        out: PathBuf,
        /// The signature field's name (default: the first free SignatureN).
        #[arg(long)]
        field: Option<String>,
        /// The signature's /Reason.
        #[arg(long)]
        reason: Option<String>,
        /// The signature's /Location.
        #[arg(long)]
        location: Option<String>,
        /// Bytes reserved for the CMS in /Contents.
        #[arg(long, default_value_t = pdf::DEFAULT_RESERVE)]
        reserve: usize,
    },
    /// PAdES B-LT: adds the validation data of the PDF's signatures (certificates, the CA's
    /// CRL, OCSP responses for the CA- and TSA-issued certificates that are not one-time) from
    /// esigd's public endpoints to the document security store, as an incremental update.
    /// With --lta (B-LTA), a document time-stamp from esigd's TSA follows. Running
    /// `esig pdf lt --lta` again on a B-LTA file adds the validation data of the last document
    /// time-stamp and another archive time-stamp over it (do so before the last TSA
    /// certificate expires or its algorithms weaken).
    Lt {
        /// The signed PDF (B-T, or B-LTA to renew; never modified).
        input: PathBuf,
        /// esigd's public base URL (e.g. https://esigd.example:8443).
        #[arg(long)]
        server: String,
        /// The CA certificate(s) (PEM) to trust for the server's TLS certificate, instead of
        /// the built-in web roots.
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// The PDF to write.
        #[arg(long)]
        out: PathBuf,
        /// Also add a document time-stamp (PAdES B-LTA).
        #[arg(long)]
        lta: bool,
        /// Bytes reserved for the document time-stamp token.
        #[arg(long, default_value_t = esig::pdf_lt::DEFAULT_TIMESTAMP_RESERVE)]
        reserve: usize,
    },
    /// Puts the CMS signature esigd returned (DER, base64 or PEM) into a prepared PDF.
    Embed {
        /// The PDF `esig pdf prepare` wrote, unchanged since.
        prepared: PathBuf,
        /// The detached CMS (.p7s) for the prepared PDF's digest.
        signature: PathBuf,
        /// The signed PDF to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("esig: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Asice { command } => commands::asice(command),
        Command::Verify(args) => commands::verify(args),
        Command::Sign(args) => commands::sign(args),
        Command::Audit { command } => audit_cmd::run(command),
        Command::Digest { hash, files } => {
            let alg = HashAlgorithm::parse(&hash)?;
            let mut out = std::io::stdout().lock();
            for f in files {
                let d = esig::digest::file(&f, alg)?;
                writeln!(
                    out,
                    "{}  {}  {}  {}",
                    alg,
                    hex::encode(&d),
                    B64.encode(&d),
                    f.display()
                )?;
            }
            Ok(())
        }
        Command::Pdf {
            command:
                PdfCommand::Prepare {
                    input,
                    out,
                    field,
                    reason,
                    location,
                    reserve,
                },
        } => {
            if same_file(&input, &out) {
                bail!(
                    "--out {} is the input: the original PDF is never overwritten",
                    out.display()
                );
            }
            let original = read(&input)?;
            let prepared = pdf::prepare(
                &original,
                &PrepareOptions {
                    field_name: field,
                    reason,
                    location,
                    signing_time: SystemTime::now(),
                    reserve,
                },
            )
            .with_context(|| format!("preparing {}", input.display()))?;
            let digest = B64.encode(prepared.digest);
            write_atomically(&out, &prepared.bytes)?;
            let mut digest_path = out.clone().into_os_string();
            digest_path.push(".digest");
            write_atomically(Path::new(&digest_path), format!("{digest}\n").as_bytes())?;
            println!("{digest}");
            Ok(())
        }
        Command::Pdf {
            command:
                PdfCommand::Lt {
                    input,
                    server,
                    cacert,
                    out,
                    lta,
                    reserve,
                },
        } => pdf_lt(&input, &server, cacert.as_deref(), &out, lta, reserve),
        Command::Pdf {
            command:
                PdfCommand::Embed {
                    prepared,
                    signature,
                    out,
                },
        } => {
            let bytes = read(&prepared)?;
            let cms = decode_signature(&read(&signature)?)
                .with_context(|| format!("reading {}", signature.display()))?;
            let signed = pdf::embed(&bytes, &cms)
                .with_context(|| format!("embedding into {}", prepared.display()))?;
            write_atomically(&out, &signed)?;
            Ok(())
        }
    }
}

/// `esig pdf lt`: B-LT (and B-LTA) from esigd's public endpoints.
fn pdf_lt(
    input: &Path,
    server: &str,
    cacert: Option<&Path>,
    out: &Path,
    lta: bool,
    reserve: usize,
) -> Result<()> {
    if same_file(input, out) {
        bail!(
            "--out {} is the input: the signed PDF is never overwritten",
            out.display()
        );
    }
    let signed = read(input)?;
    let cacert = cacert.map(read).transpose()?;
    let server = esig::lt_fetch::Server::new(server, cacert.as_deref())?;
    let done = esig::lt_fetch::extend(&signed, &server, lta, reserve)
        .with_context(|| format!("extending {}", input.display()))?;
    write_atomically(out, &done.bytes)?;
    let d = &done.data;
    eprintln!(
        "DSS: {} certificates, {} CRLs, {} OCSP responses ({} new bytes)",
        d.certs.len(),
        d.crls.len(),
        d.ocsps.len(),
        done.bytes.len() - signed.len()
    );
    for s in &done.plan.no_rev_avail {
        eprintln!("no revocation data by design (noRevAvail): {s}");
    }
    for s in &done.plan.unknown_issuer {
        eprintln!("warning: no OCSP request for {s}: its issuer is not among the certificates");
    }
    for s in &done.plan.unanswered {
        eprintln!("warning: esigd's OCSP responder is not authoritative for {s}");
    }
    if let Some(field) = &done.timestamp_field {
        eprintln!("document time-stamp: {field}");
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| esig::Error::io(path, e).into())
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(esig::Error::io(path, e).into());
    }
    Ok(())
}

/// A CMS as DER: raw DER (starts with a SEQUENCE tag), or base64, with or without PEM armor.
fn decode_signature(data: &[u8]) -> Result<Vec<u8>> {
    if data.first() == Some(&0x30) {
        return Ok(data.to_vec());
    }
    let text = std::str::from_utf8(data).context("neither DER nor base64 text")?;
    let b64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if b64.is_empty() {
        bail!("empty signature");
    }
    B64.decode(b64.as_bytes())
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))
        })
        .context("neither DER nor base64")
}
