//! The certificate authority: issues one-time, SCD, TSA and OCSP-responder certificates, manages the
//! lifecycle, produces CRLs and answers OCSP requests.

use std::{
    marker::PhantomData,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use der::flagset::FlagSet;
use esigd_pki::{
    X509Error,
    certificate::{
        CertificateTemplate, SignedCertificate, random_serial, sign_certificate_der,
        signer_algorithm, signer_public_key, subject_key_id_of, tbs_certificate,
        truncate_to_seconds, verify_certificate_signature,
    },
    crl::{CrlParams, RevokedEntry, build_crl},
    csr::parse_csr,
    extensions::{
        ID_KP_OCSP_SIGNING, ID_KP_TIME_STAMPING, authority_info_access, authority_key_identifier,
        certificate_policies, crl_distribution_points, etsi_valassured_st_certs,
        extended_key_usage, key_usage, no_rev_avail, ocsp_nocheck, qc_statements,
        subject_key_identifier,
    },
    identity::{IdentityClaims, name_to_string, subject_from_claims},
    keys::{KeyKind, check_ecdsa_signature_form, classify_key, verify_signature},
    ocsp::{
        CertIdMatch, OcspAnswer, OcspStatus, build_ocsp_response, match_cert_id, parse_ocsp_request,
    },
    pem::serial_bytes,
};
use rand_core::OsRng;
use signature::{Keypair, Signer};
use spki::{
    DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::{
    Certificate,
    crl::CertificateList,
    ext::{
        Extension,
        pkix::{CrlReason, KeyUsages},
    },
    name::Name,
    serial_number::SerialNumber,
};

use crate::{
    ceremony::check_ca_certificate,
    config::{CaConfig, SignatureCheck},
    error::CaError,
    lifecycle::{Transition, plan_transition},
    lint::{LintContext, LintKind, lint_tbs},
    record::{CertRecord, ProfileKind},
    status::{StatusChange, StoredStatus},
    store::{CertStore, ListQuery, StoreError},
};

/// How many serials are drawn before giving up on finding an unused one.
const SERIAL_ATTEMPTS: usize = 4;

/// A freshly issued certificate and its store record.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The certificate.
    pub certificate: Certificate,
    /// Its DER encoding.
    pub der: Vec<u8>,
    /// The record written to the store.
    pub record: CertRecord,
}

impl IssuedCertificate {
    /// Lowercase hex serial (the certificateId).
    pub fn serial_hex(&self) -> String {
        self.record.serial_hex()
    }
}

/// A delegated OCSP responder: its certificate (issued by this CA) and its signer.
struct Responder<S> {
    cert: Certificate,
    signer: S,
}

/// The certificate authority. `S` is the CA signer (HSM key), `Sig` its signature type, `St` the store.
pub struct Authority<S, Sig, St> {
    ca_cert: Certificate,
    chain: Vec<Certificate>,
    ca_key_id: Vec<u8>,
    ca_key_kind: Option<KeyKind>,
    signer: S,
    config: CaConfig,
    store: St,
    responder: Option<Responder<S>>,
    /// Certificates signed so far (selects the sampled signature checks).
    signed: AtomicU64,
    /// Set by a failed signature check: from then on every signature is verified.
    verify_all: AtomicBool,
    _sig: PhantomData<fn() -> Sig>,
}

impl<S, Sig, St> Authority<S, Sig, St>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
    St: CertStore,
{
    /// Creates the authority. Checks the configuration and that `ca_cert` is a CA certificate for the
    /// signer's key.
    pub fn new(
        ca_cert: Certificate,
        signer: S,
        config: CaConfig,
        store: St,
    ) -> Result<Self, CaError> {
        config.validate()?;
        check_ca_certificate(&ca_cert, &signer)?;
        let ca_key_id = subject_key_id_of(&ca_cert)?;
        // `None` (a key type the subject-key policy does not list): every signature is verified.
        let ca_key_kind = classify_key(&ca_cert.tbs_certificate.subject_public_key_info).ok();
        Ok(Authority {
            chain: vec![ca_cert.clone()],
            ca_cert,
            ca_key_id,
            ca_key_kind,
            signer,
            config,
            store,
            responder: None,
            signed: AtomicU64::new(0),
            verify_all: AtomicBool::new(false),
            _sig: PhantomData,
        })
    }

    /// Sets the chain published with the CA (the CA certificate first, then its issuers up to the root).
    pub fn with_chain(mut self, chain: Vec<Certificate>) -> Result<Self, CaError> {
        if chain.first() != Some(&self.ca_cert) {
            return Err(CaError::CaCertificate(
                "the chain must start with the CA certificate".into(),
            ));
        }
        self.chain = chain;
        Ok(self)
    }

    /// Signs OCSP responses with a delegated responder (a certificate issued by this CA with
    /// id-kp-OCSPSigning, see [`Authority::issue_ocsp_responder`]) instead of the CA key.
    pub fn with_ocsp_responder(mut self, cert: Certificate, signer: S) -> Result<Self, CaError> {
        if cert.tbs_certificate.subject_public_key_info != signer_public_key(&signer)? {
            return Err(CaError::CaCertificate(
                "OCSP responder certificate does not match the responder key".into(),
            ));
        }
        verify_certificate_signature(&cert, &self.ca_cert.tbs_certificate.subject_public_key_info)
            .map_err(|_| {
                CaError::CaCertificate("OCSP responder certificate is not issued by this CA".into())
            })?;
        let eku = esigd_pki::certificate::decode_extension::<x509_cert::ext::pkix::ExtendedKeyUsage>(
            &cert.tbs_certificate,
            esigd_pki::extensions::ID_CE_EXT_KEY_USAGE,
        )?;
        if !eku.is_some_and(|(_, e)| e.0.contains(&ID_KP_OCSP_SIGNING)) {
            return Err(CaError::CaCertificate(
                "OCSP responder certificate lacks id-kp-OCSPSigning".into(),
            ));
        }
        self.responder = Some(Responder { cert, signer });
        Ok(self)
    }

    /// The CA certificate.
    pub fn ca_certificate(&self) -> &Certificate {
        &self.ca_cert
    }

    /// The CA chain (CA certificate first).
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The CA signer (e.g. to check HSM health).
    pub fn signer(&self) -> &S {
        &self.signer
    }

    /// The configuration.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Issues a one-time (short-term) certificate for the key in `csr` (DER or PEM; proof of possession is
    /// checked) with the subject from `identity`.
    pub fn issue_one_time(
        &self,
        csr: &[u8],
        identity: &IdentityClaims,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let csr = parse_csr(csr)?;
        self.issue_one_time_for_key(csr.public_key().clone(), identity, now)
    }

    /// Issues a one-time certificate for a key the caller already holds (e.g. a one-time key generated in the
    /// HSM, whose possession needs no CSR).
    pub fn issue_one_time_for_key(
        &self,
        public_key: SubjectPublicKeyInfoOwned,
        identity: &IdentityClaims,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let p = &self.config.one_time;
        let subject = subject_from_claims(identity, &self.config.subject)?;
        let usage = signer_key_usage(p.digital_signature);
        let mut ext = vec![
            key_usage(usage)?,
            certificate_policies(&p.policies)?,
            etsi_valassured_st_certs()?,
            no_rev_avail()?,
        ];
        if !p.ca_issuers_urls.is_empty() {
            ext.push(authority_info_access(&[], &p.ca_issuers_urls)?);
        }
        if !p.qc_statements.is_empty() {
            ext.push(qc_statements(p.qc_statements)?);
        }
        self.issue(Issue {
            profile: ProfileKind::OneTime,
            lint: LintKind::OneTime,
            public_key,
            subject,
            extensions: ext,
            now,
            validity: p.validity,
            backdate: p.backdate,
            require_subject_serial: self.config.subject.require_identifier,
            digital_signature: p.digital_signature,
        })
    }

    /// Issues an SCD certificate (long-lived signing key) for the key in `csr` with the subject from
    /// `identity`: CRL distribution point and AIA (OCSP + caIssuers) included.
    pub fn issue_scd(
        &self,
        csr: &[u8],
        identity: &IdentityClaims,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let csr = parse_csr(csr)?;
        self.issue_scd_for_key(csr.public_key().clone(), identity, now)
    }

    /// Issues an SCD certificate for a key whose possession the caller has established.
    pub fn issue_scd_for_key(
        &self,
        public_key: SubjectPublicKeyInfoOwned,
        identity: &IdentityClaims,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let p = &self.config.scd;
        let subject = subject_from_claims(identity, &self.config.subject)?;
        let usage = signer_key_usage(p.digital_signature);
        let mut ext = vec![
            key_usage(usage)?,
            certificate_policies(&p.policies)?,
            crl_distribution_points(&p.crl_urls)?,
            authority_info_access(&p.ocsp_urls, &p.ca_issuers_urls)?,
        ];
        if !p.qc_statements.is_empty() {
            ext.push(qc_statements(p.qc_statements)?);
        }
        self.issue(Issue {
            profile: ProfileKind::Scd,
            lint: LintKind::Scd,
            public_key,
            subject,
            extensions: ext,
            now,
            validity: p.validity,
            backdate: p.backdate,
            require_subject_serial: self.config.subject.require_identifier,
            digital_signature: p.digital_signature,
        })
    }

    /// Issues a time-stamping unit certificate: extendedKeyUsage id-kp-timeStamping marked critical (RFC 3161
    /// §2.3), keyUsage digitalSignature, CRL and OCSP pointers of the SCD profile.
    pub fn issue_tsa(
        &self,
        public_key: SubjectPublicKeyInfoOwned,
        subject: Name,
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let ext = vec![
            key_usage(KeyUsages::DigitalSignature)?,
            extended_key_usage(vec![ID_KP_TIME_STAMPING], true)?,
            crl_distribution_points(&self.config.scd.crl_urls)?,
            authority_info_access(&self.config.scd.ocsp_urls, &self.config.scd.ca_issuers_urls)?,
        ];
        self.issue(Issue {
            profile: ProfileKind::Tsa,
            lint: LintKind::Tsa,
            public_key,
            subject,
            extensions: ext,
            now,
            validity,
            backdate: Duration::ZERO,
            require_subject_serial: false,
            digital_signature: true,
        })
    }

    /// Issues a delegated OCSP responder certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck,
    /// keyUsage digitalSignature). Keep its validity short: it cannot be checked for revocation.
    pub fn issue_ocsp_responder(
        &self,
        public_key: SubjectPublicKeyInfoOwned,
        subject: Name,
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let ext = vec![
            key_usage(KeyUsages::DigitalSignature)?,
            extended_key_usage(vec![ID_KP_OCSP_SIGNING], false)?,
            ocsp_nocheck()?,
        ];
        self.issue(Issue {
            profile: ProfileKind::OcspResponder,
            lint: LintKind::OcspResponder,
            public_key,
            subject,
            extensions: ext,
            now,
            validity,
            backdate: Duration::ZERO,
            require_subject_serial: false,
            digital_signature: true,
        })
    }

    fn issue(&self, req: Issue) -> Result<IssuedCertificate, CaError> {
        // Key policy first: a clear error before anything else is computed.
        classify_key(&req.public_key)?;
        let now = truncate_to_seconds(req.now);
        let serial = self.unused_serial()?;
        let mut extensions = vec![
            subject_key_identifier(&req.public_key)?,
            authority_key_identifier(&self.ca_key_id)?,
        ];
        extensions.extend(req.extensions);
        // Backdate, but never before the CA certificate's own notBefore (e.g. right after installing it).
        let not_before = (now - req.backdate).max(
            self.ca_cert
                .tbs_certificate
                .validity
                .not_before
                .to_system_time(),
        );
        let not_after = now + req.validity;
        let template = CertificateTemplate {
            serial,
            issuer: self.ca_cert.tbs_certificate.subject.clone(),
            subject: req.subject,
            public_key: req.public_key,
            not_before,
            not_after,
            extensions,
        };
        let tbs = tbs_certificate(&self.signer, template)?;
        let alg = signer_algorithm(&self.signer)?;
        lint_tbs(
            &tbs,
            &LintContext {
                kind: req.lint,
                issuer: Some(&self.ca_cert),
                signer_algorithm: &alg,
                now,
                max_validity: req.validity,
                max_backdate: req.backdate,
                require_subject_serial: req.require_subject_serial,
                digital_signature: req.digital_signature,
            },
        )?;
        let signed = sign_certificate_der(&self.signer, tbs)?;
        self.check_signature(&signed)?;
        let SignedCertificate {
            certificate: cert,
            der,
            ..
        } = signed;
        let tbs = &cert.tbs_certificate;
        let record = CertRecord {
            serial: serial_bytes(&tbs.serial_number).to_vec(),
            profile: req.profile,
            subject: name_to_string(&tbs.subject),
            not_before: tbs.validity.not_before.to_system_time(),
            not_after: tbs.validity.not_after.to_system_time(),
            status: StoredStatus::Active,
            history: Vec::new(),
            der: der.clone(),
        };
        // The insert is the uniqueness guarantee; a certificate whose insert fails is dropped, never returned.
        self.store.insert_new(&record)?;
        Ok(IssuedCertificate {
            certificate: cert,
            der,
            record,
        })
    }

    /// Post-signing check of what the signer returned, per [`CaConfig::signature_check`] (see
    /// [`SignatureCheck`] for why ECDSA is sampled and RSA is not). A certificate that fails is an
    /// error, never returned or stored, and switches the CA to verifying every signature.
    fn check_signature(&self, signed: &SignedCertificate) -> Result<(), CaError> {
        let n = self.signed.fetch_add(1, Ordering::Relaxed);
        // `Some(kind)`: this certificate gets the form check only (an ECDSA CA key, sampling on,
        // not this certificate's turn, no failure seen).
        let form_only = match (self.config.signature_check, self.ca_key_kind) {
            (
                SignatureCheck::Sampled { ecdsa_one_in },
                Some(kind @ (KeyKind::EcdsaP256 | KeyKind::EcdsaP384)),
            ) if !n.is_multiple_of(u64::from(ecdsa_one_in.get()))
                && !self.verify_all.load(Ordering::Relaxed) =>
            {
                Some(kind)
            }
            _ => None,
        };
        let cert = &signed.certificate;
        let invalid = |reason: &str| X509Error::Invalid {
            what: "certificate signature",
            reason: reason.into(),
        };
        let result = if cert.signature_algorithm != cert.tbs_certificate.signature {
            Err(invalid(
                "signatureAlgorithm differs from the TBSCertificate signature field",
            ))
        } else if let Some(kind) = form_only {
            cert.signature
                .as_bytes()
                .ok_or_else(|| invalid("signature bit string has unused bits"))
                .and_then(|sig| check_ecdsa_signature_form(kind, sig))
        } else {
            verify_signature(
                "certificate signature",
                &self.ca_cert.tbs_certificate.subject_public_key_info,
                &cert.signature_algorithm,
                signed.tbs_der(),
                &cert.signature,
            )
            .map(|_| ())
        };
        if let Err(e) = &result
            && !self.verify_all.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                error = %e,
                "the signer returned a certificate signature that fails the check; \
                 verifying every certificate signature from now on"
            );
        }
        Ok(result?)
    }

    fn unused_serial(&self) -> Result<SerialNumber, CaError> {
        for _ in 0..SERIAL_ATTEMPTS {
            let serial = random_serial(&mut OsRng)?;
            if !self.store.contains(serial_bytes(&serial))? {
                return Ok(serial);
            }
        }
        Err(CaError::SerialExhausted(SERIAL_ATTEMPTS))
    }

    /// Changes the status of a certificate (see [`crate::lifecycle`]); records who, when and why.
    /// `serial` is the minimal big-endian serial (e.g. from `esigd_pki::pem::parse_serial_hex`).
    pub fn set_status(
        &self,
        serial: &[u8],
        transition: Transition,
        actor: &str,
        justification: &str,
        now: SystemTime,
    ) -> Result<CertRecord, CaError> {
        self.set_status_as(serial, transition, actor, None, justification, now)
    }

    /// [`Authority::set_status`], recording also `uid`, the operating-system user of the
    /// process that asked (the admin socket's peer credentials), next to the declared `actor`.
    pub fn set_status_as(
        &self,
        serial: &[u8],
        transition: Transition,
        actor: &str,
        uid: Option<u32>,
        justification: &str,
        now: SystemTime,
    ) -> Result<CertRecord, CaError> {
        let hex_serial = hex::encode(serial);
        let record = self
            .store
            .get(serial)?
            .ok_or_else(|| CaError::NotFound(hex_serial.clone()))?;
        let change = plan_transition(
            &record,
            transition,
            actor,
            justification,
            truncate_to_seconds(now),
        )
        .map_err(|reason| CaError::Transition {
            serial: hex_serial.clone(),
            reason,
        })?;
        let change = StatusChange { uid, ..change };
        self.store.update_status(serial, &change)?;
        self.store.get(serial)?.ok_or(CaError::NotFound(hex_serial))
    }

    /// The record of a certificate issued by this CA.
    pub fn certificate(&self, serial: &[u8]) -> Result<Option<CertRecord>, CaError> {
        Ok(self.store.get(serial)?)
    }

    /// Lists issued certificates.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<CertRecord>, CaError> {
        Ok(self.store.list(query)?)
    }

    /// Issues a full CRL: every suspended (reason certificateHold) and revoked certificate, the next CRL
    /// number, thisUpdate = now, nextUpdate = now + `crl_validity`.
    pub fn crl(&self, now: SystemTime) -> Result<CertificateList, CaError> {
        let now = truncate_to_seconds(now);
        let mut entries = Vec::new();
        for r in self.store.revoked()? {
            let serial = SerialNumber::new(&r.serial).map_err(|e| X509Error::Decode {
                what: "stored serial",
                source: e,
            })?;
            match r.status {
                StoredStatus::Suspended { since } => entries.push(RevokedEntry {
                    serial,
                    revocation_time: since,
                    reason: Some(CrlReason::CertificateHold),
                    invalidity_date: None,
                }),
                StoredStatus::Revoked { since, reason } => entries.push(RevokedEntry {
                    serial,
                    revocation_time: since,
                    reason: reason.crl_reason(),
                    invalidity_date: None,
                }),
                StoredStatus::Active => {}
            }
        }
        let params = CrlParams {
            crl_number: self.store.next_crl_number()?,
            this_update: now,
            next_update: now + self.config.crl_validity,
        };
        Ok(build_crl(&self.signer, &self.ca_cert, &params, &entries)?)
    }

    /// Answers a DER OCSP request with a DER OCSP response, always: malformed requests get
    /// `malformedRequest`, store failures `internalError`, signer failures `tryLater`. Use
    /// [`Authority::try_ocsp`] to see the failure itself.
    pub fn ocsp(&self, request: &[u8], now: SystemTime) -> Vec<u8> {
        match self.try_ocsp(request, now) {
            Ok(der) => der,
            Err(e) if e.is_signer_failure() => esigd_pki::ocsp::try_later(),
            Err(_) => esigd_pki::ocsp::internal_error(),
        }
    }

    /// Like [`Authority::ocsp`], but internal failures (store, signer) are returned as errors. A malformed
    /// request is not an error: it yields `Ok(malformedRequest response)`.
    ///
    /// Status rules:
    /// * CertID with another issuer's hashes, or an unsupported hash algorithm → `unknown`; when no CertID
    ///   of the request is for this CA → `unauthorized` (RFC 6960 §2.3).
    /// * Serial not issued by this CA → `unknown`.
    /// * SCD/TSA/responder certificate: ACTIVE → `good` (also after expiry: "good" only says "not revoked");
    ///   SUSPENDED → `revoked` with reason certificateHold; REVOKED → `revoked` with time and reason.
    /// * One-time certificate → `unknown`. RFC 9608 (noRevAvail) says the CA does not publish revocation
    ///   information for such certificates and relying parties skip revocation checking; ETSI's
    ///   valassured-ST-certs says the same. Answering `good` would publish exactly the status information the
    ///   certificate says does not exist, so the responder declines to give a status (`unknown`), consistent
    ///   with the CRL, which never lists them.
    pub fn try_ocsp(&self, request: &[u8], now: SystemTime) -> Result<Vec<u8>, CaError> {
        let now = truncate_to_seconds(now);
        let parsed = match parse_ocsp_request(request) {
            Ok(p) => p,
            Err(_) => return Ok(esigd_pki::ocsp::malformed_request()),
        };
        let mut answers = Vec::with_capacity(parsed.cert_ids.len());
        let mut ours = false;
        for cert_id in parsed.cert_ids {
            let status = match match_cert_id(&cert_id, &self.ca_cert)? {
                CertIdMatch::Issuer(_) => {
                    ours = true;
                    self.ocsp_status(serial_bytes(&cert_id.serial_number))?
                }
                CertIdMatch::OtherIssuer | CertIdMatch::UnsupportedHash => OcspStatus::Unknown,
            };
            answers.push(OcspAnswer {
                cert_id,
                status,
                this_update: now,
                next_update: Some(now + self.config.ocsp_validity),
            });
        }
        if !ours {
            return Ok(esigd_pki::ocsp::unauthorized());
        }
        let der = match &self.responder {
            Some(r) => build_ocsp_response(
                &r.signer,
                &r.cert,
                &answers,
                parsed.nonce.as_ref(),
                now,
                vec![r.cert.clone()],
            )?,
            None => build_ocsp_response(
                &self.signer,
                &self.ca_cert,
                &answers,
                parsed.nonce.as_ref(),
                now,
                Vec::new(),
            )?,
        };
        Ok(der)
    }

    fn ocsp_status(&self, serial: &[u8]) -> Result<OcspStatus, StoreError> {
        let Some(record) = self.store.get(serial)? else {
            return Ok(OcspStatus::Unknown);
        };
        if record.profile == ProfileKind::OneTime {
            return Ok(OcspStatus::Unknown);
        }
        Ok(match record.status {
            StoredStatus::Active => OcspStatus::Good,
            StoredStatus::Suspended { since } => OcspStatus::Revoked {
                time: since,
                reason: Some(CrlReason::CertificateHold),
            },
            StoredStatus::Revoked { since, reason } => OcspStatus::Revoked {
                time: since,
                reason: reason.crl_reason(),
            },
        })
    }
}

struct Issue {
    profile: ProfileKind,
    lint: LintKind,
    public_key: SubjectPublicKeyInfoOwned,
    subject: Name,
    extensions: Vec<Extension>,
    now: SystemTime,
    validity: Duration,
    backdate: Duration,
    require_subject_serial: bool,
    digital_signature: bool,
}

/// keyUsage of end-entity signing certificates: nonRepudiation (contentCommitment), plus
/// digitalSignature when the profile asks for it.
fn signer_key_usage(digital_signature: bool) -> FlagSet<KeyUsages> {
    let mut usage: FlagSet<KeyUsages> = KeyUsages::NonRepudiation.into();
    if digital_signature {
        usage |= KeyUsages::DigitalSignature;
    }
    usage
}
