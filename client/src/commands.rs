//! The `esig asice`, `esig verify` and `esig sign` commands (part of the binary).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use esig::asice::{self, DataFile};
use esig::digest::HashAlgorithm;
use esig::pdf::PrepareOptions;
use esig::sign::{self, Format, SignOptions};

/// `esig asice …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AsiceCommand {
    /// Builds an ASiC-E container: with --signature, around the XAdES signatures0.xml esigd
    /// returned for format ASIC; with --cades and --manifest, around the CMS esigd returned for
    /// format CAdES over the digest of the ASiCManifest (`esig asice manifest`). The files must be
    /// exactly the ones the signature references (names and digests).
    Build {
        /// The XAdES signature (META-INF/signatures0.xml of the container).
        #[arg(long, conflicts_with_all = ["cades", "manifest"], required_unless_present = "cades")]
        signature: Option<PathBuf>,
        /// The detached CMS over the ASiCManifest (DER, base64 or PEM).
        #[arg(long, requires = "manifest")]
        cades: Option<PathBuf>,
        /// The ASiCManifest written by `esig asice manifest`.
        #[arg(long, requires = "cades")]
        manifest: Option<PathBuf>,
        /// The data files (their file names become their container paths).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The container to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the ASiCManifest of the CAdES form for the files and prints its base64 digest, which
    /// goes to esigd with format CAdES.
    Manifest {
        /// The digest algorithm of the manifest's references and of the printed digest.
        #[arg(long = "hash", default_value = "SHA2-256")]
        hash: String,
        /// The data files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The ASiCManifest to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `esig verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The signed object: a PDF, a .p7s (DER, base64 or PEM), an XAdES .xml, a JWS .json or an
    /// .asice container.
    file: PathBuf,
    /// The signed documents of a detached signature (matched to the references by file name).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Treat FILE as a PDF even without a %PDF- header in its first 1024 bytes.
    #[arg(long)]
    pdf: bool,
}

/// `esig sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The e-Service API of esigd, e.g. https://esigd.example:8443.
    #[arg(long)]
    server: String,
    /// The e-Service's client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The e-Service's client key (PEM, PKCS #8, SEC1 or PKCS #1).
    #[arg(long)]
    key: PathBuf,
    /// The CA certificate(s) the server's certificate is checked against (PEM).
    #[arg(long)]
    cacert: PathBuf,
    /// The user's ID token from the Identity BB (X-GovStack-AuthenticationToken).
    #[arg(long, env = "ESIG_ID_TOKEN", hide_env_values = true)]
    id_token: String,
    /// A Payment BB token (X-GovStack-PaymentToken), when the e-Service must pay.
    #[arg(long, env = "ESIG_PAYMENT_TOKEN", hide_env_values = true)]
    payment_token: Option<String>,
    /// PAdES, CAdES, XAdES, JWS, ASIC (ASiC-E with XAdES) or ASIC-CAdES (ASiC-E with a CAdES
    /// signature over an ASiCManifest; sent as format CAdES).
    #[arg(long)]
    format: String,
    /// hashType: SHA2-256, SHA2-384 or SHA2-512 (PAdES: SHA2-256).
    #[arg(long = "hash", default_value = "SHA2-256")]
    hash: String,
    /// dataToBeDisplayed (at most 256 characters).
    #[arg(long)]
    display: Option<String>,
    /// PAdES: the signature's /Reason.
    #[arg(long)]
    reason: Option<String>,
    /// PAdES: the signature's /Location.
    #[arg(long)]
    location: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The files to sign (one for PAdES and CAdES).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where the result goes: the signed PDF, .p7s, .xml, .json or .asice.
    #[arg(long)]
    out: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| esig::Error::io(path, e).into())
}

fn data_files(paths: &[PathBuf]) -> Result<Vec<DataFile>> {
    paths
        .iter()
        .map(|p| DataFile::from_path(p).map_err(Into::into))
        .collect()
}

pub(crate) fn asice(command: AsiceCommand) -> Result<()> {
    match command {
        AsiceCommand::Build {
            signature,
            cades,
            manifest,
            files,
            out,
        } => {
            let files = data_files(&files)?;
            let now = SystemTime::now();
            let container = match (signature, cades, manifest) {
                (Some(sig), None, None) => asice::build_xades(&read(&sig)?, &files, now)
                    .with_context(|| format!("building a container around {}", sig.display()))?,
                (None, Some(p7s), Some(manifest)) => {
                    let der = crate::decode_signature(&read(&p7s)?)
                        .with_context(|| format!("reading {}", p7s.display()))?;
                    asice::build_cades(&der, &read(&manifest)?, &files, now)
                        .with_context(|| format!("building a container around {}", p7s.display()))?
                }
                _ => bail!("give --signature FILE, or --cades FILE with --manifest FILE"),
            };
            crate::write_atomically(&out, &container)
        }
        AsiceCommand::Manifest { hash, files, out } => {
            let alg = HashAlgorithm::parse(&hash)?;
            let manifest = asice::asic_manifest(&data_files(&files)?, alg)?;
            crate::write_atomically(&out, &manifest)?;
            use base64::Engine as _;
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(alg.digest(&manifest))
            );
            Ok(())
        }
    }
}

/// Prints the report; fails (exit 1) unless every check passed.
pub(crate) fn verify(args: VerifyArgs) -> Result<()> {
    let input = read(&args.file)?;
    let data = data_files(&args.data)?;
    let report = esig::verify::verify(&input, &data, args.pdf);
    println!("{}: {report}", args.file.display());
    if !report.passed() {
        let first = report
            .failures()
            .next()
            .map(|c| format!("{}: {}", c.what, c.detail))
            .unwrap_or_else(|| "nothing was checked".into());
        bail!("{} does not verify ({first})", args.file.display());
    }
    Ok(())
}

/// The mutual TLS client of the e-Service API.
fn client(args: &SignArgs) -> Result<reqwest::blocking::Client> {
    let mut identity = read(&args.cert)?;
    identity.push(b'\n');
    identity.extend_from_slice(&read(&args.key)?);
    let identity = reqwest::Identity::from_pem(&identity)
        .with_context(|| format!("{} / {}", args.cert.display(), args.key.display()))?;
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .identity(identity)
        .timeout(Duration::from_secs(args.timeout));
    for ca in reqwest::Certificate::from_pem_bundle(&read(&args.cacert)?)
        .with_context(|| args.cacert.display().to_string())?
    {
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder.build()?)
}

/// digests → POST /v1/sign/onetime over mTLS → the signed file.
pub(crate) fn sign(args: SignArgs) -> Result<()> {
    let format = Format::parse(&args.format)?;
    let files = data_files(&args.files)?;
    let options = SignOptions {
        format,
        hash: HashAlgorithm::parse(&args.hash)?,
        display: args.display.clone(),
        time: SystemTime::now(),
        pdf: PrepareOptions {
            reason: args.reason.clone(),
            location: args.location.clone(),
            ..PrepareOptions::default()
        },
    };
    if args.files.iter().any(|f| crate::same_file(f, &args.out)) {
        bail!("--out {} is an input file", args.out.display());
    }
    let plan = sign::plan(files, options)?;
    let url = format!(
        "{}{}",
        args.server.trim_end_matches('/'),
        sign::ONETIME_PATH
    );
    let mut request = client(&args)?
        .post(&url)
        .header(sign::AUTH_HEADER, &args.id_token)
        .json(&plan.body);
    if let Some(p) = &args.payment_token {
        request = request.header(sign::PAYMENT_HEADER, p);
    }
    let response = request.send().with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response.bytes().with_context(|| format!("POST {url}"))?;
    let answer =
        sign::parse_response(&body).with_context(|| format!("POST {url}: HTTP {status}"))?;
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}");
    }
    let out = plan.finish(&answer)?;
    crate::write_atomically(&args.out, &out)?;
    println!(
        "signed {} ({}): {}{}",
        plan.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        format.name(),
        args.out.display(),
        answer
            .signature_id
            .map(|id| format!(", signatureId {id}"))
            .unwrap_or_default()
    );
    Ok(())
}
