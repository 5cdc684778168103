//! The CA's published certificates and its CRL, re-signed when it is old or after a status change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use esigd_pki::pem::crl_to_der;

use crate::authorities::CaAuthority;

/// How long a CRL is served before it is re-signed (it is also re-signed at once after a status
/// change).
pub const CRL_REFRESH: Duration = Duration::from_secs(3600);

/// Certificates published on the public listener, encoded once at start.
#[derive(Debug, Clone)]
pub struct Published {
    /// CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// CA chain, PEM.
    pub chain_pem: Vec<u8>,
    /// TSA certificate, PEM.
    pub tsa_pem: Vec<u8>,
    /// TSA certificate, DER.
    pub tsa_der: Vec<u8>,
}

/// Why no CRL could be made.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The CA could not build or sign it.
    #[error(transparent)]
    Ca(#[from] esigd_ca::CaError),
    /// It could not be encoded.
    #[error(transparent)]
    Encoding(#[from] esigd_pki::X509Error),
}

/// The published certificates and the CRL cache.
pub struct Crls {
    ca: Arc<CaAuthority>,
    published: Published,
    cache: Mutex<Option<(SystemTime, Arc<[u8]>)>>,
}

impl std::fmt::Debug for Crls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crls").finish_non_exhaustive()
    }
}

impl Crls {
    /// Serves `published` and the CRL of `ca`.
    pub fn new(ca: Arc<CaAuthority>, published: Published) -> Self {
        Crls {
            ca,
            published,
            cache: Mutex::new(None),
        }
    }

    /// The published certificates.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The current CRL (DER), re-signed when older than [`CRL_REFRESH`] or after
    /// [`Crls::invalidate`]. Blocking (may sign in the HSM).
    pub fn current(&self, now: SystemTime) -> Result<Arc<[u8]>, CrlError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, der)) = cache
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at).unwrap_or(Duration::MAX) < CRL_REFRESH)
        {
            return Ok(der.clone());
        }
        let crl = self.ca.crl(now)?;
        let der: Arc<[u8]> = crl_to_der(&crl)?.into();
        *cache = Some((now, der.clone()));
        Ok(der)
    }

    /// Forces the next CRL request to build a new CRL (after a status change).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
