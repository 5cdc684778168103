//! rustls configurations of the TLS listeners, ring provider: [`mtls_server_config`] (TLS 1.3 only, client
//! certificate required and verified against the configured client CA certificates and, when configured, their
//! CRLs) and [`server_config`] (server authentication only, TLS 1.2 and 1.3).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::error::NetError;

/// Setting names used in error messages.
const CERT: &str = "tls.cert";
const KEY: &str = "tls.key";
const CLIENT_CA: &str = "tls.client_ca";
const CLIENT_CRL: &str = "tls.client_crl";

/// The crypto provider: always ring, never the process default (aws-lc-rs must stay out of the graph).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM inputs of a mutual-TLS server.
#[derive(Debug, Clone)]
pub struct MtlsPem<'a> {
    /// Server certificate chain, leaf first (`tls.cert`).
    pub cert_chain: &'a [u8],
    /// Server private key, PKCS#8 / SEC1 / PKCS#1 (`tls.key`).
    pub key: &'a [u8],
    /// Client CA certificates whose issued certificates may connect (`tls.client_ca`).
    pub client_ca: &'a [u8],
    /// Certificate revocation lists of the client CAs (`tls.client_crl`): PEM (one or more) or one DER CRL.
    /// When given, a client certificate is refused if revoked, and also if no CRL of its issuer is given
    /// (its status would be unknown).
    pub client_crl: Option<&'a [u8]>,
}

/// Builds the server configuration: TLS 1.3 only, ALPN `h2` + `http/1.1`, client certificate required and
/// chain-verified (validity period, signature, key usage `clientAuth`, and revocation when CRLs are given) by
/// `WebPkiClientVerifier`.
pub fn mtls_server_config(pem: &MtlsPem<'_>) -> Result<Arc<ServerConfig>, NetError> {
    let chain = certs(pem.cert_chain, CERT)?;
    let key = private_key(pem.key)?;
    let mut roots = RootCertStore::empty();
    for ca in certs(pem.client_ca, CLIENT_CA)? {
        roots.add(ca).map_err(|e| NetError::ClientCa {
            setting: CLIENT_CA,
            message: e.to_string(),
        })?;
    }
    let provider = provider();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(pem_or_der) = pem.client_crl {
        verifier = verifier.with_crls(crls(pem_or_der)?);
    }
    let verifier = verifier.build().map_err(|e| match e {
        VerifierBuilderError::InvalidCrl(e) => NetError::ClientCrl {
            setting: CLIENT_CRL,
            message: rustls::Error::from(e).to_string(),
        },
        e => NetError::ClientCa {
            setting: CLIENT_CA,
            message: e.to_string(),
        },
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::ServerCert(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| NetError::ServerCert(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Same as [`mtls_server_config`], reading the PEM files (and the CRL file, PEM or DER, when given). Called at
/// start and again on every reload, so a changed file takes effect for the connections accepted afterwards.
pub fn mtls_server_config_from_files(
    cert_chain: &Path,
    key: &Path,
    client_ca: &Path,
    client_crl: Option<&Path>,
) -> Result<Arc<ServerConfig>, NetError> {
    let (c, k, ca) = (
        read(CERT, cert_chain)?,
        read(KEY, key)?,
        read(CLIENT_CA, client_ca)?,
    );
    let crl = client_crl.map(|p| read(CLIENT_CRL, p)).transpose()?;
    mtls_server_config(&MtlsPem {
        cert_chain: &c,
        key: &k,
        client_ca: &ca,
        client_crl: crl.as_deref(),
    })
}

/// A server configuration without client authentication (the callers authenticate themselves otherwise, e.g.
/// with signed requests): TLS 1.2 and 1.3, ALPN `h2` + `http/1.1`. `cert_chain` is the server certificate
/// chain, leaf first; `key` its private key (PKCS#8 / SEC1 / PKCS#1), both PEM.
pub fn server_config(cert_chain: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, NetError> {
    let chain = certs(cert_chain, CERT)?;
    let key = private_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| NetError::ServerCert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| NetError::ServerCert(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Same as [`server_config`], reading the PEM files.
pub fn server_config_from_files(
    cert_chain: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, NetError> {
    server_config(&read(CERT, cert_chain)?, &read(KEY, key)?)
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|e| NetError::Pem {
        setting,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, NetError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => NetError::Empty {
            setting: KEY,
            what: "private key",
        },
        other => NetError::ServerCert(format!("{KEY}: {other}")),
    })
}

/// CRLs from PEM (`-----BEGIN X509 CRL-----`, one or more) or from one DER CRL.
fn crls(data: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, NetError> {
    let is_pem = data.windows(11).any(|w| w == b"-----BEGIN ");
    let crls = if is_pem {
        CertificateRevocationListDer::pem_slice_iter(data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NetError::MalformedPem {
                setting: CLIENT_CRL,
                message: e.to_string(),
            })?
    } else if data.is_empty() {
        Vec::new()
    } else {
        vec![CertificateRevocationListDer::from(data.to_vec())]
    };
    if crls.is_empty() {
        return Err(NetError::Empty {
            setting: CLIENT_CRL,
            what: "certificate revocation list",
        });
    }
    Ok(crls)
}

fn certs(pem: &[u8], setting: &'static str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::MalformedPem {
            setting,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(NetError::Empty {
            setting,
            what: "certificate",
        });
    }
    Ok(certs)
}
