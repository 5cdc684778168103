//! The CA's published certificates, its CRL (re-signed when it is old or after a status change)
//! and its OCSP answers (cached until the next status change, or half their validity).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use esigd_pki::pem::crl_to_der;
use sha2::Digest;

use crate::authorities::CaAuthority;

/// How long a CRL is served before it is re-signed (it is also re-signed at once after a status
/// change).
pub const CRL_REFRESH: Duration = Duration::from_secs(3600);

/// Most OCSP answers kept in the cache (each a few hundred bytes, or ≈ 1–2 KiB with a delegated
/// responder's certificate). When it is full the answer closest to expiry is dropped.
pub const OCSP_CACHE_ENTRIES: usize = 4096;

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

/// The published certificates, the CRL cache and the OCSP answer cache.
pub struct Crls {
    ca: Arc<CaAuthority>,
    published: Published,
    cache: Mutex<Option<(SystemTime, Arc<[u8]>)>>,
    ocsp: Mutex<OcspCache>,
}

/// Signed OCSP answers by SHA-256 of the request DER, with the time order of their expiry.
#[derive(Default)]
struct OcspCache {
    answers: HashMap<[u8; 32], Cached>,
    by_expiry: BTreeMap<(SystemTime, u64), [u8; 32]>,
    next: u64,
    /// Counts [`Crls::invalidate`] calls: an answer signed before a status change is not stored
    /// after it.
    generation: u64,
}

struct Cached {
    signed: SystemTime,
    until: SystemTime,
    seq: u64,
    der: Arc<[u8]>,
}

impl OcspCache {
    fn get(&self, key: &[u8; 32], now: SystemTime) -> Option<Arc<[u8]>> {
        self.answers
            .get(key)
            .filter(|c| c.signed <= now && now < c.until)
            .map(|c| c.der.clone())
    }

    fn put(&mut self, key: [u8; 32], c: Cached) {
        if let Some(old) = self.answers.remove(&key) {
            self.by_expiry.remove(&(old.until, old.seq));
        }
        while self.answers.len() >= OCSP_CACHE_ENTRIES {
            // The first in expiry order: an expired answer if any, else the oldest.
            let Some(((_, seq), k)) = self.by_expiry.pop_first() else {
                break;
            };
            if self.answers.get(&k).is_some_and(|a| a.seq == seq) {
                self.answers.remove(&k);
            }
        }
        self.by_expiry.insert((c.until, c.seq), key);
        self.answers.insert(key, c);
    }

    fn clear(&mut self) {
        self.answers.clear();
        self.by_expiry.clear();
        self.generation += 1;
    }
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
            ocsp: Mutex::new(OcspCache::default()),
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

    /// Forces the next CRL request to build a new CRL and every OCSP request to be answered
    /// afresh (after a status change).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.lock_ocsp().clear();
    }

    /// The DER OCSP response to a DER OCSP request (always a response: see
    /// [`esigd_ca::Authority::ocsp`]). Blocking (may sign in the HSM).
    ///
    /// Identical requests without a nonce get the same signed answer from a cache (at most
    /// [`OCSP_CACHE_ENTRIES`]) until [`Crls::invalidate`] (a status change) or half the answer's
    /// validity (`nextUpdate` − `thisUpdate`), whichever comes first, so a flood of one request
    /// is not an HSM signature each. A request with a nonce is signed every time (its answer
    /// must echo that nonce); such floods are bounded by `limits.public_rate_per_ip`. Failures
    /// (`tryLater`, `internalError`) are never cached. `unknown` answers are: serials are random,
    /// so nobody asks for a certificate before it is issued.
    pub fn ocsp(&self, request: &[u8], now: SystemTime) -> Vec<u8> {
        let cacheable =
            esigd_pki::ocsp::parse_ocsp_request(request).is_ok_and(|parsed| parsed.nonce.is_none());
        if !cacheable {
            return self.ca.ocsp(request, now);
        }
        let key: [u8; 32] = sha2::Sha256::digest(request).into();
        let generation = {
            let cache = self.lock_ocsp();
            if let Some(der) = cache.get(&key, now) {
                return der.to_vec();
            }
            cache.generation
        };
        let der = match self.ca.try_ocsp(request, now) {
            Ok(der) => der,
            Err(e) if e.is_signer_failure() => return esigd_pki::ocsp::try_later(),
            Err(_) => return esigd_pki::ocsp::internal_error(),
        };
        let mut cache = self.lock_ocsp();
        if cache.generation == generation {
            let seq = cache.next;
            cache.next += 1;
            let keep = self.ca.config().ocsp_validity / 2;
            cache.put(
                key,
                Cached {
                    signed: now,
                    until: now + keep,
                    seq,
                    der: der.as_slice().into(),
                },
            );
        }
        der
    }

    fn lock_ocsp(&self) -> std::sync::MutexGuard<'_, OcspCache> {
        self.ocsp.lock().unwrap_or_else(|p| p.into_inner())
    }
}
