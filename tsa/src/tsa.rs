//! The [`Tsa`] object: request validation, TSTInfo, token signing, rejection responses.

use crate::clock::{ClockRejection, ClockState, check_clock};
use crate::serial::{SerialError, SerialSource};
use const_oid::ObjectIdentifier;
use der::asn1::{Int, OctetString};
use der::{Decode, Encode, Tagged};
use esigd_pki::cms::DigestAlgorithm;
use esigd_pki::tsp::{
    self, FailureInfo, GenTime, MessageImprint, TimeStampReq, TimeStampResp, TspError, TspVersion,
    TstInfo,
};
use signature::{Keypair, Signer};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding};
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::ext::pkix::name::GeneralName;

const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// TSA settings (from the appliance's `[tsa]` config section).
#[derive(Debug, Clone)]
pub struct TsaConfig {
    /// Default policy OID (`tsa.policy`), used when the request names none.
    pub policy: ObjectIdentifier,
    /// Further policies a request may ask for (`tsa.accepted_policies`); `policy` is always accepted.
    pub accepted_policies: Vec<ObjectIdentifier>,
    /// Accuracy declared in every token (`tsa.accuracy`); the clock's max error must not exceed it.
    pub accuracy: Duration,
    /// Decimal digits of a second in genTime (`tsa.gen_time_fraction_digits`, 0..=6).
    pub gen_time_fraction_digits: u8,
    /// Name placed in TSTInfo.tsa (`tsa.name`), e.g. the certificate subject as directoryName.
    pub tsa_name: Option<GeneralName>,
    /// Hash algorithms accepted in message imprints (`tsa.hash_algorithms`).
    pub accepted_hashes: Vec<DigestAlgorithm>,
    /// Development only: stamp even if the clock is unsynchronised (`tsa.allow_unsynchronized_clock`).
    pub allow_unsynchronized_clock: bool,
    /// Maximum request size in bytes (`tsa.max_request_bytes`, default 64 KiB).
    pub max_request_bytes: usize,
    /// Maximum nonce length in content octets (`tsa.max_nonce_bytes`, default 32).
    pub max_nonce_bytes: usize,
}

impl TsaConfig {
    /// Defaults: 1 s accuracy, millisecond genTime, all SHA-2/SHA-3 imprints, 64 KiB, 32-byte nonces.
    pub fn new(policy: ObjectIdentifier) -> Self {
        Self {
            policy,
            accepted_policies: Vec::new(),
            accuracy: Duration::from_secs(1),
            gen_time_fraction_digits: 3,
            tsa_name: None,
            accepted_hashes: DigestAlgorithm::ALL.to_vec(),
            allow_unsynchronized_clock: false,
            max_request_bytes: 64 * 1024,
            max_nonce_bytes: 32,
        }
    }
}

/// Invalid TSA configuration or certificate.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is out of range.
    #[error("invalid setting {setting}: {reason}")]
    Setting {
        /// Config key.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The TSA certificate does not fit RFC 3161 §2.3 or the signer.
    #[error("TSA certificate unusable: {0}")]
    Certificate(&'static str),
    /// The signer's public key could not be read.
    #[error("TSA signer public key")]
    PublicKey(#[from] spki::Error),
    /// DER error while inspecting the certificate.
    #[error("TSA certificate DER")]
    Asn1(#[from] der::Error),
}

/// Why a request was not granted. Every variant maps to a `PKIFailureInfo` bit; [`Rejection::kind`]
/// is a stable label for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Request larger than `tsa.max_request_bytes`.
    #[error("request of {size} bytes exceeds tsa.max_request_bytes ({max})")]
    TooLarge {
        /// Size received.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Not a DER TimeStampReq.
    #[error("request is not a DER TimeStampReq")]
    Malformed(#[source] TspError),
    /// version ≠ 1.
    #[error("unsupported TimeStampReq version")]
    UnsupportedVersion,
    /// Imprint hash algorithm not accepted.
    #[error("hash algorithm {0} not accepted (tsa.hash_algorithms)")]
    UnknownHashAlgorithm(ObjectIdentifier),
    /// Imprint length does not fit the algorithm.
    #[error("message imprint has {actual} bytes, {algorithm:?} needs {expected}")]
    ImprintLength {
        /// Algorithm.
        algorithm: DigestAlgorithm,
        /// Required length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// reqPolicy not accepted.
    #[error("policy {0} not accepted (tsa.policy / tsa.accepted_policies)")]
    UnacceptedPolicy(ObjectIdentifier),
    /// Request carries extensions (none are supported).
    #[error("request extensions are not supported")]
    UnacceptedExtension,
    /// Nonce longer than `tsa.max_nonce_bytes`.
    #[error("nonce of {len} bytes exceeds tsa.max_nonce_bytes ({max})")]
    NonceTooLarge {
        /// Length received.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The clock does not allow time-stamping now.
    #[error("time not available")]
    Clock(#[source] ClockRejection),
    /// No serial number could be allocated.
    #[error("serial number allocation failed")]
    Serial(#[source] SerialError),
    /// Building or signing the token failed; the chain ends in `signature::Error` when the signer (HSM) failed.
    #[error("building or signing the token failed")]
    Token(#[source] TspError),
}

impl Rejection {
    /// The PKIFailureInfo bit sent to the client.
    pub fn failure_info(&self) -> FailureInfo {
        match self {
            Self::TooLarge { .. } | Self::NonceTooLarge { .. } => FailureInfo::BAD_REQUEST,
            Self::Malformed(_) | Self::UnsupportedVersion | Self::ImprintLength { .. } => {
                FailureInfo::BAD_DATA_FORMAT
            }
            Self::UnknownHashAlgorithm(_) => FailureInfo::BAD_ALG,
            Self::UnacceptedPolicy(_) => FailureInfo::UNACCEPTED_POLICY,
            Self::UnacceptedExtension => FailureInfo::UNACCEPTED_EXTENSION,
            Self::Clock(_) => FailureInfo::TIME_NOT_AVAILABLE,
            Self::Serial(_) | Self::Token(_) => FailureInfo::SYSTEM_FAILURE,
        }
    }

    /// Stable label for metrics (`esigd_tsa_rejections_total{reason=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownHashAlgorithm(_) => "bad_alg",
            Self::ImprintLength { .. } => "imprint_length",
            Self::UnacceptedPolicy(_) => "unaccepted_policy",
            Self::UnacceptedExtension => "unaccepted_extension",
            Self::NonceTooLarge { .. } => "nonce_too_large",
            Self::Clock(ClockRejection::Unsynchronized { .. }) => "clock_unsynchronized",
            Self::Clock(ClockRejection::MaxErrorExceedsAccuracy { .. }) => "clock_max_error",
            Self::Clock(ClockRejection::Unreadable(_)) => "clock_unreadable",
            Self::Serial(_) => "serial",
            Self::Token(_) => "signing",
        }
    }

    /// Whether this is a server-side failure (as opposed to a client error or policy refusal).
    pub fn is_system_failure(&self) -> bool {
        matches!(self, Self::Serial(_) | Self::Token(_) | Self::Clock(_))
    }

    /// Short text sent in `statusString` (no internal details).
    fn client_text(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "request too large",
            Self::Malformed(_) => "request is not a DER TimeStampReq",
            Self::UnsupportedVersion => "unsupported request version",
            Self::UnknownHashAlgorithm(_) => "unsupported hash algorithm",
            Self::ImprintLength { .. } => {
                "message imprint length does not match the hash algorithm"
            }
            Self::UnacceptedPolicy(_) => "policy not accepted",
            Self::UnacceptedExtension => "extensions not supported",
            Self::NonceTooLarge { .. } => "nonce too large",
            Self::Clock(_) => "time source not available",
            Self::Serial(_) | Self::Token(_) => "system failure",
        }
    }
}

/// Error of [`Tsa::stamp`]: only when not even a rejection response could be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    /// Encoding the response failed.
    #[error("encoding the TimeStampResp failed")]
    Encode(#[source] TspError),
}

/// What the appliance records for audit for every issued token (ETSI EN 319 421 §7.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImprintRecord {
    /// TSTInfo serial number.
    pub serial: u64,
    /// TSTInfo genTime (as encoded, i.e. truncated to the configured fraction digits).
    pub gen_time: SystemTime,
    /// Imprint hash algorithm.
    pub hash_algorithm: DigestAlgorithm,
    /// Imprint value.
    pub imprint: Vec<u8>,
    /// Policy of the token.
    pub policy: ObjectIdentifier,
    /// Nonce content octets, if any.
    pub nonce: Option<Vec<u8>>,
}

/// Audit sink for [`ImprintRecord`]s, implemented by the appliance (RocksDB).
pub trait ImprintLog: Send + Sync {
    /// Appends one record durably.
    fn append(
        &self,
        record: &ImprintRecord,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Result of [`Tsa::stamp`]: always a TimeStampResp to send (HTTP 200), plus what to log.
#[derive(Debug)]
pub struct StampOutcome {
    /// DER TimeStampResp (granted or rejection).
    pub response_der: Vec<u8>,
    /// Audit record when granted.
    pub record: Option<ImprintRecord>,
    /// Why it was rejected (for logs / metrics), when rejected.
    pub rejection: Option<Rejection>,
}

/// A token issued in-process ([`Tsa::stamp_imprint`]).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// DER TimeStampToken (ContentInfo/SignedData).
    pub token_der: Vec<u8>,
    /// Audit record.
    pub record: ImprintRecord,
}

/// The time-stamping authority.
pub struct Tsa<S, Sig, Ser, C> {
    config: TsaConfig,
    cert: Certificate,
    // The TSA certificate, its ESS signing-certificate-v2 attribute and issuerAndSerialNumber,
    // encoded once instead of for every token.
    cms: esigd_pki::cms::SignerContext,
    signer: S,
    serials: Ser,
    clock: C,
    _sig: PhantomData<fn() -> Sig>,
}

impl<S, Sig, Ser, C> std::fmt::Debug for Tsa<S, Sig, Ser, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsa")
            .field("policy", &self.config.policy)
            .finish_non_exhaustive()
    }
}

struct Granted {
    imprint: MessageImprint,
    algorithm: DigestAlgorithm,
    policy: ObjectIdentifier,
    nonce: Option<Int>,
    include_cert: bool,
}

impl<S, Sig, Ser, C> Tsa<S, Sig, Ser, C>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
    Ser: SerialSource,
    C: ClockState,
{
    /// Checks the configuration and that `tsa_cert` is the signer's certificate with the sole, critical
    /// extended key usage id-kp-timeStamping (RFC 3161 §2.3).
    pub fn new(
        config: TsaConfig,
        tsa_cert: Certificate,
        signer: S,
        serials: Ser,
        clock: C,
    ) -> Result<Self, ConfigError> {
        let setting = |setting, reason| ConfigError::Setting { setting, reason };
        if config.accuracy.is_zero() {
            return Err(setting("tsa.accuracy", "must be greater than zero"));
        }
        tsp::accuracy_from_duration(config.accuracy)
            .map_err(|_| setting("tsa.accuracy", "out of range"))?;
        if config.gen_time_fraction_digits > 6 {
            return Err(setting("tsa.gen_time_fraction_digits", "must be 0..=6"));
        }
        if config.accepted_hashes.is_empty() {
            return Err(setting("tsa.hash_algorithms", "must not be empty"));
        }
        if config.max_nonce_bytes == 0 || config.max_request_bytes == 0 {
            return Err(setting(
                "tsa.max_nonce_bytes/max_request_bytes",
                "must be > 0",
            ));
        }
        let spki = signer.verifying_key().to_public_key_der()?;
        if spki.as_bytes() != tsa_cert.tbs_certificate.subject_public_key_info.to_der()? {
            return Err(ConfigError::Certificate(
                "public key does not match the TSA signing key",
            ));
        }
        esigd_pki::cms::signer_digest_algorithm(&signer).map_err(|_| {
            ConfigError::Certificate("signer's signature algorithm is not supported")
        })?;
        let cms = esigd_pki::cms::SignerContext::new(&signer, &tsa_cert)
            .map_err(|_| ConfigError::Certificate("cannot encode the TSA certificate for CMS"))?;
        let eku = tsa_cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == ID_CE_EXT_KEY_USAGE)
            .ok_or(ConfigError::Certificate("no extendedKeyUsage extension"))?;
        if !eku.critical {
            return Err(ConfigError::Certificate(
                "extendedKeyUsage must be critical",
            ));
        }
        let purposes = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())?;
        if purposes.0 != [ID_KP_TIME_STAMPING] {
            return Err(ConfigError::Certificate(
                "extendedKeyUsage must be exactly id-kp-timeStamping",
            ));
        }
        Ok(Self {
            config,
            cert: tsa_cert,
            cms,
            signer,
            serials,
            clock,
            _sig: PhantomData,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TsaConfig {
        &self.config
    }

    /// The TSA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// Handles one DER `TimeStampReq` received over HTTP at time `now`. Always yields a DER
    /// `TimeStampResp` (granted or rejection) for the client.
    pub fn stamp(&self, req_der: &[u8], now: SystemTime) -> Result<StampOutcome, TsaError> {
        let result = self.check_request(req_der).and_then(|g| self.issue(g, now));
        match result {
            Ok(issued) => {
                let response_der =
                    TimeStampResp::granted_der(&issued.token_der).map_err(TsaError::Encode)?;
                Ok(StampOutcome {
                    response_der,
                    record: Some(issued.record),
                    rejection: None,
                })
            }
            Err(rejection) => {
                let response_der = TimeStampResp::rejection_der(
                    rejection.failure_info(),
                    Some(rejection.client_text()),
                )
                .map_err(TsaError::Encode)?;
                Ok(StampOutcome {
                    response_der,
                    record: None,
                    rejection: Some(rejection),
                })
            }
        }
    }

    /// Issues a token for `digest` in-process (signing pipeline, CAdES/PAdES signature time-stamps):
    /// default policy, no nonce, TSA certificate included.
    pub fn stamp_imprint(
        &self,
        algorithm: DigestAlgorithm,
        digest: &[u8],
        now: SystemTime,
    ) -> Result<IssuedToken, Rejection> {
        if !self.config.accepted_hashes.contains(&algorithm) {
            return Err(Rejection::UnknownHashAlgorithm(algorithm.oid()));
        }
        if digest.len() != algorithm.output_len() {
            return Err(Rejection::ImprintLength {
                algorithm,
                expected: algorithm.output_len(),
                actual: digest.len(),
            });
        }
        let imprint = MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifier {
                oid: algorithm.oid(),
                parameters: None,
            },
            hashed_message: OctetString::new(digest)
                .map_err(|e| Rejection::Token(TspError::Asn1(e)))?,
        };
        self.issue(
            Granted {
                imprint,
                algorithm,
                policy: self.config.policy,
                nonce: None,
                include_cert: true,
            },
            now,
        )
    }

    fn check_request(&self, req_der: &[u8]) -> Result<Granted, Rejection> {
        if req_der.len() > self.config.max_request_bytes {
            return Err(Rejection::TooLarge {
                size: req_der.len(),
                max: self.config.max_request_bytes,
            });
        }
        let req: TimeStampReq = tsp::decode_request(req_der).map_err(|e| {
            if has_other_version(req_der) {
                Rejection::UnsupportedVersion
            } else {
                Rejection::Malformed(e)
            }
        })?;
        if req.version != TspVersion::V1 {
            return Err(Rejection::UnsupportedVersion);
        }
        let algorithm = tsp::imprint_algorithm(&req.message_imprint)
            .filter(|a| self.config.accepted_hashes.contains(a))
            .ok_or(Rejection::UnknownHashAlgorithm(
                req.message_imprint.hash_algorithm.oid,
            ))?;
        let actual = req.message_imprint.hashed_message.as_bytes().len();
        if actual != algorithm.output_len() {
            return Err(Rejection::ImprintLength {
                algorithm,
                expected: algorithm.output_len(),
                actual,
            });
        }
        let policy = match req.req_policy {
            None => self.config.policy,
            Some(p) if p == self.config.policy || self.config.accepted_policies.contains(&p) => p,
            Some(p) => return Err(Rejection::UnacceptedPolicy(p)),
        };
        if req.extensions.is_some() {
            return Err(Rejection::UnacceptedExtension);
        }
        if let Some(n) = &req.nonce {
            let len = n.as_bytes().len();
            if len > self.config.max_nonce_bytes {
                return Err(Rejection::NonceTooLarge {
                    len,
                    max: self.config.max_nonce_bytes,
                });
            }
        }
        Ok(Granted {
            imprint: req.message_imprint,
            algorithm,
            policy,
            nonce: req.nonce,
            include_cert: req.cert_req,
        })
    }

    fn issue(&self, g: Granted, now: SystemTime) -> Result<IssuedToken, Rejection> {
        // Clock first: a refused request must not consume a serial.
        check_clock(
            &self.clock,
            self.config.accuracy,
            self.config.allow_unsynchronized_clock,
        )
        .map_err(Rejection::Clock)?;
        let gen_time = GenTime::from_system_time(now, self.config.gen_time_fraction_digits)
            .map_err(Rejection::Token)?;
        let serial = self.serials.next_serial().map_err(Rejection::Serial)?;
        let tst = TstInfo {
            version: TspVersion::V1,
            policy: g.policy,
            message_imprint: g.imprint,
            serial_number: serial_int(serial).map_err(|e| Rejection::Token(TspError::Asn1(e)))?,
            gen_time,
            accuracy: Some(
                tsp::accuracy_from_duration(self.config.accuracy).map_err(Rejection::Token)?,
            ),
            ordering: false,
            nonce: g.nonce.clone(),
            tsa: self.config.tsa_name.clone(),
            extensions: None,
        };
        let token_der =
            tsp::sign_token_with::<S, Sig>(&self.cms, &self.signer, &tst, g.include_cert)
                .map_err(Rejection::Token)?;
        Ok(IssuedToken {
            token_der,
            record: ImprintRecord {
                serial,
                gen_time: gen_time.to_system_time(),
                hash_algorithm: g.algorithm,
                imprint: tst.message_imprint.hashed_message.as_bytes().to_vec(),
                policy: g.policy,
                nonce: g.nonce.map(|n| n.as_bytes().to_vec()),
            },
        })
    }
}

/// Positive INTEGER for a serial (leading 0x00 when the top bit is set, minimal otherwise).
fn serial_int(serial: u64) -> Result<Int, der::Error> {
    let bytes = serial.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut v = Vec::with_capacity(9);
    if bytes[first] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[first..]);
    Int::new(&v)
}

/// Whether `der` is a SEQUENCE starting with an INTEGER other than 1 (a TimeStampReq of another version).
fn has_other_version(der_bytes: &[u8]) -> bool {
    let Ok(seq) = der::asn1::AnyRef::from_der(der_bytes) else {
        return false;
    };
    if seq.tag() != der::Tag::Sequence {
        return false;
    }
    let mut reader = match der::SliceReader::new(seq.value()) {
        Ok(r) => r,
        Err(_) => return false,
    };
    match Int::decode(&mut reader) {
        Ok(v) => v.as_bytes() != [1],
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
