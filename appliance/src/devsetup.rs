//! Embedded development defaults: a SoftHSM token and TLS material under the data directory,
//! created on first start so that `esigd serve` runs with no configuration at all.
//!
//! Nothing here is used with a configuration file, and none of it is fit for production: the
//! development TLS keys are software keys in files.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use der::Encode;
use der::asn1::{Ia5String, OctetString};
use esigd_pki::certificate::{CertificateTemplate, build_certificate, random_serial};
use esigd_pki::extensions::{
    authority_key_identifier, basic_constraints, extended_key_usage, key_usage,
    subject_key_identifier,
};
use esigd_pki::identity::DnBuilder;
use esigd_pki::pem::certificate_to_pem;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rand::RngCore;
use rustls::pki_types::pem::PemObject;
use spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{KeyUsages, SubjectAltName};

use crate::config::Config;

const REEXEC_MARK: &str = "ESIGD_DEV_SOFTHSM_REEXEC";

/// Writes `contents` to `path` readable by the owner only (PINs, keys).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Makes sure the development SoftHSM token exists under `data_dir/hsm` and that this process
/// runs with `SOFTHSM2_CONF` pointing at it. SoftHSM reads that variable at `C_Initialize` and
/// the environment of a running process cannot be changed safely, so when it is not set yet the
/// process re-executes itself with it (before any thread is started).
pub fn ensure_dev_token(cfg: &Config) -> Result<()> {
    let dir = cfg.data_dir.join("hsm");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).with_context(|| format!("creating {}", tokens.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let conf = std::path::absolute(dir.join("softhsm2.conf"))?;
    if !conf.exists() {
        let tokendir = std::path::absolute(&tokens)?;
        std::fs::write(
            &conf,
            format!(
                "# Development SoftHSM2 configuration written by esigd.\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokendir.display()
            ),
        )?;
    }
    let current = std::env::var_os("SOFTHSM2_CONF").map(PathBuf::from);
    if current.as_deref() != Some(conf.as_path()) {
        if std::env::var_os(REEXEC_MARK).is_some() {
            bail!(
                "SOFTHSM2_CONF is still not {} after re-executing",
                conf.display()
            );
        }
        let exe = std::env::current_exe().context("locating the esigd executable")?;
        let err = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", &conf)
            .env(REEXEC_MARK, "1")
            .exec();
        bail!("re-executing esigd with SOFTHSM2_CONF: {err}");
    }
    let pin_file = cfg.data_dir.join("hsm/user-pin");
    if !pin_file.exists() {
        let pin = random_hex(8);
        let so_pin = random_hex(8);
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                &cfg.hsm.token,
                "--pin",
                &pin,
                "--so-pin",
                &so_pin,
            ])
            .output()
            .context("running softhsm2-util (install the softhsm2 package)")?;
        if !out.status.success() {
            bail!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        write_private(&dir.join("so-pin"), format!("{so_pin}\n").as_bytes())?;
        write_private(&pin_file, format!("{pin}\n").as_bytes())?;
        tracing::info!(token = %cfg.hsm.token, dir = %dir.display(), "created development SoftHSM token");
    }
    Ok(())
}

fn software_key() -> Result<(SigningKey, SubjectPublicKeyInfoOwned)> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let der = key.verifying_key().to_public_key_der()?;
    let spki = SubjectPublicKeyInfoOwned::try_from(der.as_bytes())?;
    Ok((key, spki))
}

fn key_pem(key: &SigningKey) -> Result<String> {
    Ok(key.to_pkcs8_pem(LineEnding::LF)?.to_string())
}

fn san_localhost() -> Result<Extension> {
    let san = SubjectAltName(vec![
        GeneralName::DnsName(Ia5String::new("localhost")?),
        GeneralName::IpAddress(OctetString::new(vec![127, 0, 0, 1])?),
    ]);
    Ok(Extension {
        extn_id: const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME,
        critical: false,
        extn_value: OctetString::new(san.to_der()?)?,
    })
}

fn leaf(
    ca_key: &SigningKey,
    ca_cert: &Certificate,
    cn: &str,
    eku: const_oid::ObjectIdentifier,
    san: bool,
) -> Result<(SigningKey, Certificate)> {
    let (key, spki) = software_key()?;
    let now = SystemTime::now();
    let ca_spki = &ca_cert.tbs_certificate.subject_public_key_info;
    let ca_kid = esigd_pki::keys::key_identifier(ca_spki);
    let mut extensions = vec![
        basic_constraints(false, None)?,
        key_usage(KeyUsages::DigitalSignature)?,
        extended_key_usage(vec![eku], false)?,
        subject_key_identifier(&spki)?,
        authority_key_identifier(&ca_kid)?,
    ];
    if san {
        extensions.push(san_localhost()?);
    }
    let cert = build_certificate::<_, DerSignature>(
        ca_key,
        CertificateTemplate {
            serial: random_serial(&mut rand::rngs::OsRng)?,
            issuer: ca_cert.tbs_certificate.subject.clone(),
            subject: DnBuilder::new()
                .organization("esigd development")?
                .common_name(cn)?
                .build(),
            public_key: spki,
            not_before: now - Duration::from_secs(300),
            not_after: now + Duration::from_secs(2 * 365 * 86_400),
            extensions,
        },
    )?;
    Ok((key, cert))
}

/// Paths of the development TLS material.
#[derive(Debug, Clone)]
pub struct DevTls {
    /// Demo e-Service client certificate.
    pub demo_cert: PathBuf,
    /// Its private key.
    pub demo_key: PathBuf,
}

/// Creates (once) a development client CA, the e-Service listener's server certificate for
/// `localhost`/`127.0.0.1`, and a demo e-Service client certificate + key in `data/pki/`.
pub fn ensure_dev_tls(cfg: &Config) -> Result<DevTls> {
    let tls_dir = cfg.data_dir.join("tls");
    let pki_dir = cfg.pki_dir();
    std::fs::create_dir_all(&tls_dir)?;
    std::fs::create_dir_all(&pki_dir)?;
    std::fs::set_permissions(&tls_dir, std::fs::Permissions::from_mode(0o700))?;
    let out = DevTls {
        demo_cert: pki_dir.join("demo-eservice.pem"),
        demo_key: pki_dir.join("demo-eservice.key"),
    };
    let server_cert = cfg.data_path(&cfg.tls.cert);
    if server_cert.exists() && out.demo_cert.exists() {
        return Ok(out);
    }
    let (ca_key, ca_spki) = software_key()?;
    let now = SystemTime::now();
    let kid = esigd_pki::keys::key_identifier(&ca_spki);
    let name = DnBuilder::new()
        .organization("esigd development")?
        .common_name("esigd Development e-Service Client CA")?
        .build();
    let ca_cert = build_certificate::<_, DerSignature>(
        &ca_key,
        CertificateTemplate {
            serial: random_serial(&mut rand::rngs::OsRng)?,
            issuer: name.clone(),
            subject: name,
            public_key: ca_spki.clone(),
            not_before: now - Duration::from_secs(300),
            not_after: now + Duration::from_secs(10 * 365 * 86_400),
            extensions: vec![
                basic_constraints(true, Some(0))?,
                key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)?,
                subject_key_identifier(&ca_spki)?,
                authority_key_identifier(&kid)?,
            ],
        },
    )?;
    let (srv_key, srv_cert) = leaf(
        &ca_key,
        &ca_cert,
        "localhost",
        const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
        true,
    )?;
    let (demo_key, demo_cert) = leaf(
        &ca_key,
        &ca_cert,
        "Demo e-Service",
        const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
        false,
    )?;
    std::fs::write(
        cfg.data_path(&cfg.tls.client_ca),
        certificate_to_pem(&ca_cert)?,
    )?;
    write_private(&tls_dir.join("client-ca.key"), key_pem(&ca_key)?.as_bytes())?;
    std::fs::write(&server_cert, certificate_to_pem(&srv_cert)?)?;
    write_private(&cfg.data_path(&cfg.tls.key), key_pem(&srv_key)?.as_bytes())?;
    std::fs::write(&out.demo_cert, certificate_to_pem(&demo_cert)?)?;
    write_private(&out.demo_key, key_pem(&demo_key)?.as_bytes())?;
    std::fs::write(
        pki_dir.join("eservice-client-ca.pem"),
        certificate_to_pem(&ca_cert)?,
    )?;
    Ok(out)
}

/// The development Identity BB's client secret for `esigd` (see `tests/e2e/idp.mjs`).
pub const DEV_IDP_CLIENT_SECRET: &str = "esigd-dev-secret";

/// Completes the embedded defaults once the development files exist: the demo e-Service is
/// recognised by the SHA-256 of `data/pki/demo-eservice.pem`, and the client secret of the dev
/// Identity BB is written to `data/idp/client-secret` (0600) if missing.
pub fn apply_dev_registrations(cfg: &mut Config, tls: &DevTls) -> Result<()> {
    let pem = std::fs::read(&tls.demo_cert)
        .with_context(|| format!("reading {}", tls.demo_cert.display()))?;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: not a PEM certificate", tls.demo_cert.display()))?;
    let fingerprint = esigd_pki::pem::sha256_thumbprint(der.as_ref());
    for e in cfg.eservices.iter_mut().filter(|e| e.id == "demo") {
        e.identity.client_cert_sha256 = Some(fingerprint.clone());
    }
    let secret = cfg.data_dir.join("idp/client-secret");
    if !secret.exists() {
        std::fs::create_dir_all(cfg.data_dir.join("idp"))?;
        write_private(&secret, DEV_IDP_CLIENT_SECRET.as_bytes())?;
    }
    Ok(())
}
