//! Key ceremony: CA and TSA keys generated in the HSM, their certificates written under
//! `data_dir/pki/` (`ca.pem`, `chain.pem`, `tsa.pem`). Used by `esigd init` and, for the embedded
//! defaults, automatically on first start.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use esigd_ca::{Authority, CertStore};
use esigd_hsm::{Hsm, HsmSignature, HsmSigner, KeyKind, KeyRef};
use esigd_pki::identity::DnBuilder;
use esigd_pki::pem::{certificate_to_pem, certificates_to_pem, csr_to_pem, parse_certificates};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::name::Name;

use crate::config::Config;

/// The CA and TSA certificate files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The CA chain up to the root, CA first (PEM).
    pub chain: PathBuf,
    /// The TSA certificate (PEM).
    pub tsa: PathBuf,
    /// Delegated OCSP responder certificate (`ca.ocsp_key`).
    pub ocsp: PathBuf,
    /// The audit key's public key (PEM SubjectPublicKeyInfo), for offline verifiers.
    pub audit: PathBuf,
}

impl PkiFiles {
    /// The files under `cfg.data_dir/pki`.
    pub fn of(cfg: &Config) -> Self {
        let d = cfg.pki_dir();
        PkiFiles {
            ca: d.join("ca.pem"),
            chain: d.join("chain.pem"),
            tsa: d.join("tsa.pem"),
            ocsp: d.join("ocsp.pem"),
            audit: d.join("audit.pem"),
        }
    }

    /// Where the audit public key is written.
    pub fn audit_key_pem(&self) -> &Path {
        &self.audit
    }
}

/// Reads one certificate from a PEM file.
pub fn read_certificate(path: &Path) -> Result<Certificate> {
    read_certificates(path)?
        .into_iter()
        .next()
        .with_context(|| format!("{}: no certificate", path.display()))
}

/// Reads all certificates from a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<Certificate>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_certificates(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn subject(cfg: &Config, cn: &str) -> Result<Name> {
    Ok(DnBuilder::new()
        .country(&cfg.ca.country)?
        .organization(&cfg.ca.organization)?
        .common_name(cn)?
        .build())
}

/// Generates the key named by `key` if the token has none. Returns true if it was generated.
fn ensure_key(hsm: &Hsm, key: &KeyRef, setting: &str) -> Result<bool> {
    if hsm.has_private_key(key, setting)? {
        return Ok(false);
    }
    let Some(label) = key.object_label() else {
        bail!("{setting}: {key} has no object= label; esigd init needs one to create the key");
    };
    hsm.generate_key_pair(label, KeyKind::EcP256)?;
    tracing::info!(key = %key, "generated key pair in the HSM");
    Ok(true)
}

/// The CA signer.
pub fn ca_signer(cfg: &Config, hsm: &Hsm) -> Result<HsmSigner> {
    Ok(hsm.signer(&cfg.ca_key()?, "ca.key", None)?)
}

/// The delegated OCSP responder's signer, when `ca.ocsp_key` is configured.
pub fn ocsp_signer(cfg: &Config, hsm: &Hsm) -> Result<Option<HsmSigner>> {
    match cfg.ocsp_key()? {
        Some(k) => Ok(Some(hsm.signer(&k, "ca.ocsp_key", None)?)),
        None => Ok(None),
    }
}

/// Creates the delegated OCSP responder: key in the HSM (if missing) and a certificate from our
/// CA with id-kp-OCSPSigning and id-pkix-ocsp-nocheck, written to `pki/ocsp.pem`.
pub fn init_ocsp<St: CertStore>(
    cfg: &Config,
    hsm: &Hsm,
    authority: &Authority<HsmSigner, HsmSignature, St>,
) -> Result<Certificate> {
    let files = PkiFiles::of(cfg);
    let Some(key) = cfg.ocsp_key()? else {
        bail!("ca.ocsp_key is not set: OCSP responses are signed with the CA key");
    };
    if files.ocsp.exists() {
        bail!(
            "{} exists: the OCSP responder is already initialised",
            files.ocsp.display()
        );
    }
    ensure_key(hsm, &key, "ca.ocsp_key")?;
    let signer = hsm.signer(&key, "ca.ocsp_key", None)?;
    let spki = SubjectPublicKeyInfoOwned::try_from(signer.public_key().spki_der())?;
    let issued = authority.issue_ocsp_responder(
        spki,
        subject(cfg, "esigd OCSP Responder")?,
        cfg.ca.ocsp_certificate_validity,
        SystemTime::now(),
    )?;
    std::fs::write(&files.ocsp, certificate_to_pem(&issued.certificate)?)?;
    Ok(issued.certificate)
}

/// The audit key's signer (`audit.key`), generating the key when the token has none: it signs only
/// tree heads, has no certificate, and its public key is published, so making it at the first start
/// needs no ceremony.
pub fn audit_signer(cfg: &Config, hsm: &Hsm) -> Result<HsmSigner> {
    let key = cfg.audit_key()?;
    ensure_key(hsm, &key, "audit.key")?;
    Ok(hsm.signer(&key, "audit.key", None)?)
}

/// The citizens' audit references (`audit.user_key`): an HMAC-SHA-256 secret key on the token, made at
/// the first start when missing (it only keys pseudonyms; nothing is published about it).
pub fn audit_user_refs(cfg: &Config, hsm: &Hsm) -> Result<esigd_service::audit::UserRefs> {
    esigd_service::audit::UserRefs::open(hsm.clone(), &cfg.audit.user_key)
        .context("audit.user_key: the HSM key cannot be found or created")
}

/// The TSA signer.
pub fn tsa_signer(cfg: &Config, hsm: &Hsm) -> Result<HsmSigner> {
    Ok(hsm.signer(&cfg.tsa_key()?, "tsa.key", None)?)
}

/// `esigd init ca`: key in the HSM + self-signed root. Refuses to replace an existing CA.
pub fn init_root(cfg: &Config, hsm: &Hsm) -> Result<Certificate> {
    let files = PkiFiles::of(cfg);
    if files.ca.exists() {
        bail!(
            "{} exists: the CA is already initialised",
            files.ca.display()
        );
    }
    ensure_key(hsm, &cfg.ca_key()?, "ca.key")?;
    let signer = ca_signer(cfg, hsm)?;
    let cert = esigd_ca::ceremony::create_root::<_, HsmSignature>(
        &signer,
        subject(cfg, &cfg.ca.common_name)?,
        cfg.ca.root_validity,
        SystemTime::now(),
        &mut rand::rngs::OsRng,
    )?;
    std::fs::create_dir_all(cfg.pki_dir())?;
    std::fs::write(&files.chain, certificate_to_pem(&cert)?)?;
    std::fs::write(&files.ca, certificate_to_pem(&cert)?)?;
    Ok(cert)
}

/// `esigd init ca --csr FILE`: key in the HSM + a CSR for an external parent CA.
pub fn init_subordinate_csr(cfg: &Config, hsm: &Hsm, out: &Path) -> Result<()> {
    ensure_key(hsm, &cfg.ca_key()?, "ca.key")?;
    let signer = ca_signer(cfg, hsm)?;
    let csr = esigd_ca::ceremony::subordinate_csr::<_, HsmSignature>(
        &signer,
        subject(cfg, &cfg.ca.common_name)?,
    )?;
    std::fs::write(out, csr_to_pem(&csr)?).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `esigd init ca --import-cert FILE`: installs the parent-issued certificate (and chain).
pub fn import_subordinate(cfg: &Config, hsm: &Hsm, file: &Path) -> Result<Vec<Certificate>> {
    let files = PkiFiles::of(cfg);
    if files.ca.exists() {
        bail!(
            "{} exists: the CA is already initialised",
            files.ca.display()
        );
    }
    let signer = ca_signer(cfg, hsm)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let chain = esigd_ca::ceremony::install_subordinate(&signer, &bytes, SystemTime::now())?;
    std::fs::create_dir_all(cfg.pki_dir())?;
    std::fs::write(&files.chain, certificates_to_pem(&chain)?)?;
    std::fs::write(&files.ca, certificate_to_pem(&chain[0])?)?;
    Ok(chain)
}

/// `esigd init tsa`: TSA key in the HSM + certificate from our CA (EKU timeStamping, critical).
pub fn init_tsa<St: CertStore>(
    cfg: &Config,
    hsm: &Hsm,
    authority: &Authority<HsmSigner, HsmSignature, St>,
) -> Result<Certificate> {
    let files = PkiFiles::of(cfg);
    if files.tsa.exists() {
        bail!(
            "{} exists: the TSA is already initialised",
            files.tsa.display()
        );
    }
    ensure_key(hsm, &cfg.tsa_key()?, "tsa.key")?;
    let signer = tsa_signer(cfg, hsm)?;
    let spki = SubjectPublicKeyInfoOwned::try_from(signer.public_key().spki_der())?;
    let issued = authority.issue_tsa(
        spki,
        subject(cfg, "esigd Time-Stamping Authority")?,
        cfg.tsa.certificate_validity,
        SystemTime::now(),
    )?;
    std::fs::write(&files.tsa, certificate_to_pem(&issued.certificate)?)?;
    Ok(issued.certificate)
}
