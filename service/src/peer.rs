//! Identity of the client on an mTLS connection, handed to every request of that connection.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::name::Name;

/// Who is on the other end of an e-Service connection. The listener inserts it into each request of the
/// connection as `Arc<PeerInfo>`; the e-Service routes map
/// [`PeerInfo::cert_sha256_hex`] (or the SPKI hash) to the e-Service and re-check `addr.ip()` against that
/// e-Service's own `allowed_ips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Remote address; the IP is canonical (IPv4-mapped IPv6 shown as IPv4).
    pub addr: SocketAddr,
    /// DER of the verified leaf client certificate.
    pub client_cert_der: Vec<u8>,
    /// SHA-256 of the leaf certificate DER (the usual "certificate fingerprint").
    pub cert_sha256: [u8; 32],
    /// SHA-256 of the leaf's SubjectPublicKeyInfo DER (stable across re-issuance with the same key).
    pub spki_sha256: [u8; 32],
    /// Subject DN of the leaf, RFC 4514 string form (e.g. `CN=client,O=Land Registry`), for logs.
    pub subject: String,
    /// Issuer DN of the leaf, same form as `subject`.
    pub issuer: String,
    /// Subject DN of the leaf as parsed from the certificate (what the registry matches
    /// `client_subject` against, RDN by RDN; never the string form).
    pub subject_name: Name,
    /// Issuer DN of the leaf as parsed (matched against `client_issuer`).
    pub issuer_name: Name,
}

impl PeerInfo {
    /// Builds the identity from the verified chain presented by the client (leaf first, DER).
    ///
    /// Returns `None` when there is no certificate or the leaf does not parse (cannot happen after a successful
    /// `WebPkiClientVerifier` handshake, but the caller drops the connection rather than trusting it blindly).
    pub fn from_chain<C: AsRef<[u8]>>(addr: SocketAddr, chain: &[C]) -> Option<Self> {
        let leaf = chain.first()?;
        let cert = Certificate::from_der(leaf.as_ref()).ok()?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
        Some(Self {
            addr: SocketAddr::new(addr.ip().to_canonical(), addr.port()),
            client_cert_der: leaf.as_ref().to_vec(),
            cert_sha256: Sha256::digest(leaf.as_ref()).into(),
            spki_sha256: Sha256::digest(&spki).into(),
            subject: cert.tbs_certificate.subject.to_string(),
            issuer: cert.tbs_certificate.issuer.to_string(),
            subject_name: cert.tbs_certificate.subject,
            issuer_name: cert.tbs_certificate.issuer,
        })
    }

    /// Lowercase hex of [`PeerInfo::cert_sha256`] (compare with `client_cert_sha256` in the config).
    pub fn cert_sha256_hex(&self) -> String {
        hex::encode(self.cert_sha256)
    }

    /// Lowercase hex of [`PeerInfo::spki_sha256`].
    pub fn spki_sha256_hex(&self) -> String {
        hex::encode(self.spki_sha256)
    }
}
