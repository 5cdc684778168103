//! Pre-issuance lint (in the spirit of Let's Encrypt Boulder): every to-be-signed certificate is checked in
//! code before the signer is called. Any failed rule is an error; no certificate is signed.

use std::time::{Duration, SystemTime};

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::{Decode, asn1::Null};
use esigd_pki::{
    certificate::{decode_extension, find_extension, subject_key_id_of},
    extensions::{
        ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_CERTIFICATE_POLICIES,
        ID_CE_CRL_DISTRIBUTION_POINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE, ID_CE_NO_REV_AVAIL,
        ID_CE_SUBJECT_KEY_IDENTIFIER, ID_ETSI_EXT_VALASSURED_ST_CERTS, ID_KP_OCSP_SIGNING,
        ID_KP_TIME_STAMPING, ID_PE_AUTHORITY_INFO_ACCESS, ID_PKIX_OCSP_NOCHECK,
    },
    identity::{ID_AT_COMMON_NAME, ID_AT_SERIAL_NUMBER},
    keys::{classify_key, key_identifier},
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::{
    Certificate, TbsCertificate, Version,
    ext::pkix::{
        AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies,
        ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
    },
};

use crate::error::CaError;

/// What kind of certificate is being linted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintKind {
    /// One-time signing certificate.
    OneTime,
    /// SCD signing certificate.
    Scd,
    /// Time-stamping unit.
    Tsa,
    /// Delegated OCSP responder.
    OcspResponder,
    /// CA certificate (root or subordinate).
    Ca,
}

impl LintKind {
    fn name(self) -> &'static str {
        match self {
            LintKind::OneTime => "one-time",
            LintKind::Scd => "scd",
            LintKind::Tsa => "tsa",
            LintKind::OcspResponder => "ocsp-responder",
            LintKind::Ca => "ca",
        }
    }
}

/// The expectations a to-be-signed certificate is checked against.
#[derive(Clone, Debug)]
pub struct LintContext<'a> {
    /// Profile.
    pub kind: LintKind,
    /// Issuing CA certificate; `None` for a self-signed certificate.
    pub issuer: Option<&'a Certificate>,
    /// Algorithm the signer will use.
    pub signer_algorithm: &'a AlgorithmIdentifierOwned,
    /// Issuance time.
    pub now: SystemTime,
    /// Longest allowed notAfter − now.
    pub max_validity: Duration,
    /// Largest allowed now − notBefore.
    pub max_backdate: Duration,
    /// Require a subject serialNumber attribute (natural-person semantics identifier).
    pub require_subject_serial: bool,
    /// Whether keyUsage must (true) or must not (false) include digitalSignature, for signing profiles.
    pub digital_signature: bool,
}

fn has_attr(tbs: &TbsCertificate, oid: ObjectIdentifier) -> bool {
    tbs.subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .any(|atv| atv.oid == oid)
}

/// Runs every rule for `ctx.kind`; returns all failures at once.
pub fn lint_tbs(tbs: &TbsCertificate, ctx: &LintContext<'_>) -> Result<(), CaError> {
    let mut p: Vec<String> = Vec::new();
    check(tbs, ctx, &mut p);
    if p.is_empty() {
        Ok(())
    } else {
        Err(CaError::Lint {
            profile: ctx.kind.name(),
            problems: p,
        })
    }
}

fn check(tbs: &TbsCertificate, ctx: &LintContext<'_>, p: &mut Vec<String>) {
    if tbs.version != Version::V3 {
        p.push("version is not v3".into());
    }
    // Serial: positive (the type guarantees it), ≥ 16 bytes of which 159 bits random, ≤ 20 bytes.
    let serial = esigd_pki::pem::serial_bytes(&tbs.serial_number);
    if serial.len() < 16 {
        p.push(format!(
            "serial number has {} bytes, at least 16 required",
            serial.len()
        ));
    }
    if serial.len() > 20 {
        p.push(format!(
            "serial number has {} bytes, at most 20 allowed",
            serial.len()
        ));
    }
    if tbs.signature != *ctx.signer_algorithm {
        p.push("TBS signature algorithm differs from the signer's".into());
    }
    if tbs.issuer_unique_id.is_some() || tbs.subject_unique_id.is_some() {
        p.push("unique identifiers must not be used (RFC 5280 §4.1.2.8)".into());
    }

    // Issuer and validity.
    let nb = tbs.validity.not_before.to_system_time();
    let na = tbs.validity.not_after.to_system_time();
    match ctx.issuer {
        Some(ca) => {
            if tbs.issuer != ca.tbs_certificate.subject {
                p.push("issuer is not the CA certificate's subject".into());
            }
            if nb < ca.tbs_certificate.validity.not_before.to_system_time() {
                p.push("notBefore is before the CA certificate's notBefore".into());
            }
            if na > ca.tbs_certificate.validity.not_after.to_system_time() {
                p.push("notAfter is after the CA certificate's notAfter".into());
            }
        }
        None => {
            if tbs.issuer != tbs.subject {
                p.push("self-signed certificate must have issuer = subject".into());
            }
        }
    }
    if na <= nb {
        p.push("notAfter is not after notBefore".into());
    }
    if let Ok(back) = ctx.now.duration_since(nb) {
        if back > ctx.max_backdate + Duration::from_secs(1) {
            p.push(format!(
                "notBefore is backdated by {} s, at most {} s allowed",
                back.as_secs(),
                ctx.max_backdate.as_secs()
            ));
        }
    } else if nb.duration_since(ctx.now).unwrap_or_default() > Duration::from_secs(1) {
        p.push("notBefore is in the future".into());
    }
    match na.duration_since(ctx.now) {
        Ok(life) if life > ctx.max_validity + Duration::from_secs(1) => {
            p.push(format!(
                "validity ends {} s after issuance, at most {} s allowed",
                life.as_secs(),
                ctx.max_validity.as_secs()
            ));
        }
        Ok(_) => {}
        Err(_) => p.push("notAfter is in the past".into()),
    }

    // Subject.
    if tbs.subject.0.is_empty() {
        p.push("subject is empty".into());
    }
    if !has_attr(tbs, ID_AT_COMMON_NAME) {
        p.push("subject has no commonName".into());
    }
    if ctx.require_subject_serial && !has_attr(tbs, ID_AT_SERIAL_NUMBER) {
        p.push("subject has no serialNumber (semantics identifier)".into());
    }

    // Key.
    if let Err(e) = classify_key(&tbs.subject_public_key_info) {
        p.push(e.to_string());
    }

    // Extensions: no duplicates.
    let exts = tbs.extensions.as_deref().unwrap_or(&[]);
    for (i, e) in exts.iter().enumerate() {
        if exts[..i].iter().any(|o| o.extn_id == e.extn_id) {
            p.push(format!("extension {} appears more than once", e.extn_id));
        }
    }
    let ext = |oid| find_extension(tbs, oid).ok().flatten();

    // SKI must match the key; AKI must match the issuer's SKI.
    match decode_extension::<SubjectKeyIdentifier>(tbs, ID_CE_SUBJECT_KEY_IDENTIFIER) {
        Ok(Some((critical, ski))) => {
            if critical {
                p.push("subjectKeyIdentifier must not be critical".into());
            }
            if ski.0.as_bytes() != key_identifier(&tbs.subject_public_key_info).as_slice() {
                p.push("subjectKeyIdentifier does not match the subject key".into());
            }
        }
        Ok(None) => p.push("subjectKeyIdentifier missing".into()),
        Err(e) => p.push(e.to_string()),
    }
    if let Some(ca) = ctx.issuer {
        match decode_extension::<AuthorityKeyIdentifier>(tbs, ID_CE_AUTHORITY_KEY_IDENTIFIER) {
            Ok(Some((critical, aki))) => {
                if critical {
                    p.push("authorityKeyIdentifier must not be critical".into());
                }
                match (aki.key_identifier, subject_key_id_of(ca)) {
                    (Some(k), Ok(expected)) if k.as_bytes() == expected.as_slice() => {}
                    _ => p.push(
                        "authorityKeyIdentifier does not match the CA's key identifier".into(),
                    ),
                }
            }
            Ok(None) => p.push("authorityKeyIdentifier missing".into()),
            Err(e) => p.push(e.to_string()),
        }
    }

    // Basic constraints and key usage.
    let bc = decode_extension::<BasicConstraints>(tbs, ID_CE_BASIC_CONSTRAINTS);
    let ku = decode_extension::<KeyUsage>(tbs, ID_CE_KEY_USAGE);
    let ku = match ku {
        Ok(Some((critical, ku))) => {
            if !critical {
                p.push("keyUsage must be critical".into());
            }
            Some(ku)
        }
        Ok(None) => {
            p.push("keyUsage missing".into());
            None
        }
        Err(e) => {
            p.push(e.to_string());
            None
        }
    };
    let eku = decode_extension::<ExtendedKeyUsage>(tbs, ID_CE_EXT_KEY_USAGE);
    let ca_bits = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
    match ctx.kind {
        LintKind::Ca => {
            match bc {
                Ok(Some((true, bc))) if bc.ca => {}
                _ => p.push("CA certificate needs a critical basicConstraints with cA=TRUE".into()),
            }
            if ku.is_some_and(|ku| !ku.key_cert_sign()) {
                p.push("CA keyUsage must include keyCertSign".into());
            }
        }
        _ => {
            if matches!(&bc, Ok(Some((_, bc))) if bc.ca) {
                p.push("end-entity certificate must not have cA=TRUE".into());
            }
            if let Some(ku) = ku {
                if !(ku.0 & ca_bits).is_empty() {
                    p.push("end-entity keyUsage must not include keyCertSign or cRLSign".into());
                }
                let encipher = KeyUsages::KeyEncipherment
                    | KeyUsages::DataEncipherment
                    | KeyUsages::KeyAgreement
                    | KeyUsages::EncipherOnly
                    | KeyUsages::DecipherOnly;
                if !(ku.0 & encipher).is_empty() {
                    p.push("signing certificate keyUsage must not include encipherment or key agreement".into());
                }
                match ctx.kind {
                    LintKind::OneTime | LintKind::Scd => {
                        if !ku.non_repudiation() {
                            p.push(
                                "keyUsage must include nonRepudiation (contentCommitment)".into(),
                            );
                        }
                        if ku.digital_signature() != ctx.digital_signature {
                            p.push(format!(
                                "keyUsage digitalSignature is {} but the profile says {}",
                                ku.digital_signature(),
                                ctx.digital_signature
                            ));
                        }
                    }
                    _ => {
                        if !ku.digital_signature() || ku.non_repudiation() {
                            p.push("keyUsage must be digitalSignature only".into());
                        }
                    }
                }
            }
        }
    }

    // Profile-specific extensions.
    let null_ext = |oid: ObjectIdentifier, name: &str, p: &mut Vec<String>| match ext(oid) {
        Some(e) => {
            if e.critical {
                p.push(format!("{name} must not be critical"));
            }
            if Null::from_der(e.extn_value.as_bytes()).is_err() {
                p.push(format!("{name} value must be NULL"));
            }
        }
        None => p.push(format!("{name} missing")),
    };
    let aia = decode_extension::<AuthorityInfoAccessSyntax>(tbs, ID_PE_AUTHORITY_INFO_ACCESS)
        .ok()
        .flatten();
    let aia_has_ocsp = aia.as_ref().is_some_and(|(_, a)| {
        a.0.iter()
            .any(|d| d.access_method == esigd_pki::extensions::ID_AD_OCSP)
    });
    let policies = decode_extension::<CertificatePolicies>(tbs, ID_CE_CERTIFICATE_POLICIES);
    match ctx.kind {
        LintKind::OneTime | LintKind::Scd => {
            match policies {
                Ok(Some((false, pol))) if !pol.0.is_empty() => {}
                Ok(Some((true, _))) => p.push("certificatePolicies must not be critical".into()),
                _ => p.push("certificatePolicies missing or empty".into()),
            }
            if let Ok(Some(_)) = &eku {
                p.push("signing certificates carry no extendedKeyUsage".into());
            }
        }
        _ => {}
    }
    match ctx.kind {
        LintKind::OneTime => {
            null_ext(ID_CE_NO_REV_AVAIL, "noRevAvail", p);
            null_ext(ID_ETSI_EXT_VALASSURED_ST_CERTS, "id-etsi-ext-valassured-ST-certs", p);
            if ext(ID_CE_CRL_DISTRIBUTION_POINTS).is_some() {
                p.push("one-time certificate must not have cRLDistributionPoints (noRevAvail)".into());
            }
            if aia_has_ocsp {
                p.push("one-time certificate must not have an OCSP pointer (noRevAvail)".into());
            }
        }
        LintKind::Scd => {
            if ext(ID_CE_CRL_DISTRIBUTION_POINTS).is_none() {
                p.push("cRLDistributionPoints missing".into());
            }
            if !aia_has_ocsp {
                p.push("authorityInfoAccess with an OCSP URL missing".into());
            }
            if ext(ID_CE_NO_REV_AVAIL).is_some() {
                p.push("SCD certificate has revocation information; noRevAvail not allowed".into());
            }
        }
        LintKind::Tsa => match eku {
            Ok(Some((true, eku))) if eku.0 == [ID_KP_TIME_STAMPING] => {}
            _ => p.push("TSA certificate needs a critical extendedKeyUsage with only id-kp-timeStamping (RFC 3161 §2.3)".into()),
        },
        LintKind::OcspResponder => {
            match eku {
                Ok(Some((_, eku))) if eku.0 == [ID_KP_OCSP_SIGNING] => {}
                _ => p.push("OCSP responder certificate needs extendedKeyUsage id-kp-OCSPSigning only".into()),
            }
            if ext(ID_PKIX_OCSP_NOCHECK).is_none() {
                p.push("OCSP responder certificate needs id-pkix-ocsp-nocheck".into());
            }
        }
        LintKind::Ca => {
            if ext(ExtendedKeyUsage::OID).is_some() {
                p.push("CA certificate carries no extendedKeyUsage".into());
            }
        }
    }
}
