//! Key ceremony support: a self-signed root from an HSM key, or a CSR for an external parent CA followed by
//! the installation of the parent-issued (subordinate) certificate.

use std::time::{Duration, SystemTime};

use esigd_pki::{
    certificate::{
        CertificateTemplate, decode_extension, random_serial, sign_tbs_certificate,
        signer_algorithm, signer_public_key, tbs_certificate, verify_certificate_signature,
    },
    csr::build_csr,
    extensions::{
        ID_CE_BASIC_CONSTRAINTS, ID_CE_KEY_USAGE, basic_constraints, key_usage,
        subject_key_identifier,
    },
    pem::parse_certificates,
};
use rand_core::CryptoRngCore;
use signature::{Keypair, Signer};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding};
use x509_cert::{
    Certificate,
    ext::pkix::{BasicConstraints, KeyUsage, KeyUsages},
    name::Name,
    request::CertReq,
};

use crate::{
    error::CaError,
    lint::{LintContext, LintKind, lint_tbs},
};

/// Creates a self-signed root CA certificate for the signer's key: basicConstraints cA (critical),
/// keyUsage keyCertSign + cRLSign + digitalSignature (critical; digitalSignature lets the CA key sign OCSP
/// responses), subjectKeyIdentifier. The certificate is linted before signing and its signature checked after.
pub fn create_root<S, Sig>(
    signer: &S,
    subject: Name,
    validity: Duration,
    now: SystemTime,
    rng: &mut impl CryptoRngCore,
) -> Result<Certificate, CaError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let spki = signer_public_key(signer)?;
    let template = CertificateTemplate {
        serial: random_serial(rng)?,
        issuer: subject.clone(),
        subject,
        public_key: spki.clone(),
        not_before: now,
        not_after: now + validity,
        extensions: vec![
            basic_constraints(true, None)?,
            key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature)?,
            subject_key_identifier(&spki)?,
        ],
    };
    let tbs = tbs_certificate(signer, template)?;
    let alg = signer_algorithm(signer)?;
    lint_tbs(
        &tbs,
        &LintContext {
            kind: LintKind::Ca,
            issuer: None,
            signer_algorithm: &alg,
            now,
            max_validity: validity,
            max_backdate: Duration::ZERO,
            require_subject_serial: false,
            digital_signature: true,
        },
    )?;
    let cert = sign_tbs_certificate(signer, tbs)?;
    verify_certificate_signature(&cert, &spki)?;
    Ok(cert)
}

/// Builds a CSR for a subordinate CA key (to be signed by an external parent CA).
pub fn subordinate_csr<S, Sig>(signer: &S, subject: Name) -> Result<CertReq, CaError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    Ok(build_csr(signer, subject)?)
}

/// Checks that `cert` is a CA certificate for the signer's key: same public key, basicConstraints cA=TRUE,
/// keyUsage with keyCertSign (and cRLSign, needed for our CRLs).
pub fn check_ca_certificate<S>(cert: &Certificate, signer: &S) -> Result<(), CaError>
where
    S: Keypair,
    S::VerifyingKey: EncodePublicKey,
{
    let spki = signer_public_key(signer)?;
    let tbs = &cert.tbs_certificate;
    if tbs.subject_public_key_info != spki {
        return Err(CaError::CaCertificate(
            "its public key is not the key of the CA signer".into(),
        ));
    }
    match decode_extension::<BasicConstraints>(tbs, ID_CE_BASIC_CONSTRAINTS)? {
        Some((_, bc)) if bc.ca => {}
        _ => {
            return Err(CaError::CaCertificate(
                "not a CA certificate (basicConstraints cA=TRUE missing)".into(),
            ));
        }
    }
    match decode_extension::<KeyUsage>(tbs, ID_CE_KEY_USAGE)? {
        Some((_, ku)) if ku.key_cert_sign() && ku.crl_sign() => {}
        Some(_) => {
            return Err(CaError::CaCertificate(
                "keyUsage lacks keyCertSign or cRLSign".into(),
            ));
        }
        None => return Err(CaError::CaCertificate("keyUsage missing".into())),
    }
    Ok(())
}

/// Installs a parent-issued subordinate CA certificate: `input` is PEM (the certificate, optionally followed by
/// its issuer chain) or DER (the certificate alone). Checks that the first certificate belongs to the signer's
/// key and is a CA, that it is valid at `now`, and that each certificate of the chain is signed by the next
/// one (and a self-signed last one by itself). Returns the chain, ours first.
pub fn install_subordinate<S>(
    signer: &S,
    input: &[u8],
    now: SystemTime,
) -> Result<Vec<Certificate>, CaError>
where
    S: Keypair,
    S::VerifyingKey: EncodePublicKey,
{
    let chain = parse_certificates(input)?;
    let ours = &chain[0];
    check_ca_certificate(ours, signer)?;
    let v = &ours.tbs_certificate.validity;
    if now < v.not_before.to_system_time() || now > v.not_after.to_system_time() {
        return Err(CaError::CaCertificate(
            "not valid at the current time".into(),
        ));
    }
    for pair in chain.windows(2) {
        if pair[0].tbs_certificate.issuer != pair[1].tbs_certificate.subject {
            return Err(CaError::CaCertificate(
                "chain order: a certificate's issuer is not the next certificate's subject".into(),
            ));
        }
        verify_certificate_signature(&pair[0], &pair[1].tbs_certificate.subject_public_key_info)
            .map_err(|e| CaError::CaCertificate(format!("chain signature check failed: {e}")))?;
    }
    let last = &chain[chain.len() - 1];
    if chain.len() > 1 && last.tbs_certificate.issuer == last.tbs_certificate.subject {
        verify_certificate_signature(last, &last.tbs_certificate.subject_public_key_info).map_err(
            |e| CaError::CaCertificate(format!("root self-signature check failed: {e}")),
        )?;
    }
    Ok(chain)
}
