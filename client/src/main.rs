//! `esig`: the esigd client command line (file digests; PAdES prepare and embed).

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

/// The client side of esigd: digests to send, and PDFs to prepare and complete (PAdES).
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
