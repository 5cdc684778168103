//! CAdES (ETSI EN 319 122-1) on top of [`crate::cms`] and [`crate::tsp`]: the signature-time-stamp
//! unsigned attribute that turns a CAdES-B-B signature into CAdES-B-T.
//!
//! The signed attributes of CAdES-B-B (content-type, message-digest, signing-time, ESS
//! signing-certificate-v2) are written by [`crate::cms`] itself, since time-stamp tokens carry them
//! too. What is here needs the TSP parser, which builds on CMS; keeping it out of [`crate::cms`]
//! keeps the module dependencies one way: `cades` → `tsp` → `cms`.

use crate::cms::{
    CmsError, DigestAlgorithm, decode_signed_data, encode_signed_data, oids, single_signer_info,
    single_value_attribute,
};
use crate::tsp;
use cms::signed_data::SignerInfos;
use der::asn1::SetOfVec;

/// Adds `token_der` (an RFC 3161 TimeStampToken, i.e. ContentInfo DER) as unsigned attribute
/// id-aa-signatureTimeStampToken to the single SignerInfo and returns the CAdES-B-T DER.
///
/// The caller is responsible for the token's imprint being the hash of
/// [`crate::cms::signature_value`]; this is checked here too (the token's TSTInfo is parsed and
/// compared) so a wrong token cannot be attached.
pub fn add_signature_timestamp(
    content_info_der: &[u8],
    token_der: &[u8],
) -> Result<Vec<u8>, CmsError> {
    let mut sd = decode_signed_data(content_info_der)?;
    let mut si = single_signer_info(&sd)?.clone();
    let tst = tsp::token_tst_info(token_der)
        .map_err(|_| CmsError::Invalid("time-stamp token is not a SignedData with a TSTInfo"))?;
    let alg = DigestAlgorithm::from_oid(&tst.message_imprint.hash_algorithm.oid).ok_or(
        CmsError::Invalid("time-stamp imprint algorithm not supported"),
    )?;
    if alg.digest(si.signature.as_bytes()) != tst.message_imprint.hashed_message.as_bytes() {
        return Err(CmsError::Invalid(
            "time-stamp token does not cover this signature value",
        ));
    }
    let attr = single_value_attribute(oids::ID_AA_SIGNATURE_TIME_STAMP_TOKEN, token_der)?;
    let mut unsigned = si.unsigned_attrs.take().unwrap_or_default();
    unsigned.insert(attr)?;
    si.unsigned_attrs = Some(unsigned);
    sd.signer_infos = SignerInfos(SetOfVec::try_from(vec![si])?);
    encode_signed_data(&sd)
}

/// Adds validation data to a CAdES-B-T signature, making it CAdES-B-LT (EN 319 122-1 §5.5: the
/// values in `SignedData.certificates` and `SignedData.crls`, where validators look first):
/// each of `certificates` not already there, and each CRL of `crls_der` (DER `CertificateList`s).
/// Unsigned fields only: the signature and its time-stamp stay valid.
pub fn add_validation_data(
    content_info_der: &[u8],
    certificates: &[x509_cert::Certificate],
    crls_der: &[&[u8]],
) -> Result<Vec<u8>, CmsError> {
    use cms::cert::CertificateChoices;
    use cms::revocation::{RevocationInfoChoice, RevocationInfoChoices};
    use cms::signed_data::CertificateSet;
    use der::{Decode, Encode};
    let mut sd = decode_signed_data(content_info_der)?;
    let mut certs = sd.certificates.take().map(|c| c.0).unwrap_or_default();
    for c in certificates {
        let choice = CertificateChoices::Certificate(c.clone());
        let der = choice.to_der()?;
        let present = certs
            .iter()
            .any(|have| have.to_der().is_ok_and(|d| d == der));
        if !present {
            certs.insert(choice)?;
        }
    }
    sd.certificates = (!certs.is_empty()).then_some(CertificateSet(certs));
    let mut crls = sd.crls.take().map(|c| c.0).unwrap_or_default();
    for der in crls_der {
        let crl = x509_cert::crl::CertificateList::from_der(der)
            .map_err(|_| CmsError::Invalid("a CRL for the validation data is not DER"))?;
        let choice = RevocationInfoChoice::Crl(crl);
        let encoded = choice.to_der()?;
        if !crls.iter().any(|c| c.to_der().is_ok_and(|d| d == encoded)) {
            crls.insert(choice)?;
        }
    }
    sd.crls = (!crls.is_empty()).then_some(RevocationInfoChoices(crls));
    encode_signed_data(&sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cms::tests::{p256_signer, params};
    use crate::cms::{sign_detached_digest, signature_value, verify_detached_digest};
    use const_oid::ObjectIdentifier;
    use der::asn1::OctetString;
    use std::time::SystemTime;

    #[test]
    fn signature_timestamp_attribute() {
        let (k, cert) = p256_signer();
        let d = DigestAlgorithm::Sha256.digest(b"document");
        let der = sign_detached_digest::<_, p256::ecdsa::DerSignature>(
            &k,
            &cert,
            &params(&d, DigestAlgorithm::Sha256),
        )
        .unwrap();
        let sig = signature_value(&der).unwrap();
        let tst = |imprint: Vec<u8>| tsp::TstInfo {
            version: tsp::TspVersion::V1,
            policy: ObjectIdentifier::new_unwrap("1.2.3.4"),
            message_imprint: tsp::MessageImprint {
                hash_algorithm: DigestAlgorithm::Sha256.algorithm_identifier(),
                hashed_message: OctetString::new(imprint).unwrap(),
            },
            serial_number: der::asn1::Int::new(&[1]).unwrap(),
            gen_time: tsp::GenTime::from_system_time(SystemTime::now(), 3).unwrap(),
            accuracy: None,
            ordering: false,
            nonce: None,
            tsa: None,
            extensions: None,
        };
        // A token over something else is refused.
        let wrong =
            tsp::sign_token::<_, p256::ecdsa::DerSignature>(&k, &cert, &tst(vec![0; 32]), true)
                .unwrap();
        assert!(add_signature_timestamp(&der, &wrong).is_err());
        let token = tsp::sign_token::<_, p256::ecdsa::DerSignature>(
            &k,
            &cert,
            &tst(DigestAlgorithm::Sha256.digest(&sig)),
            true,
        )
        .unwrap();
        let bt = add_signature_timestamp(&der, &token).unwrap();
        let v = verify_detached_digest(&bt, Some(&d)).unwrap();
        assert_eq!(v.timestamp_tokens, vec![token.clone()]);
        assert_eq!(v.signature, sig);

        // B-LT: a CRL and a certificate added (the signer's, already there, is not repeated);
        // the signature and its time-stamp still verify.
        let now = SystemTime::now();
        let crl = crate::crl::build_crl::<_, p256::ecdsa::DerSignature>(
            &k,
            &cert,
            &crate::crl::CrlParams {
                crl_number: 1,
                this_update: now,
                next_update: now + std::time::Duration::from_secs(3600),
            },
            &[],
        )
        .unwrap();
        let crl_der = der::Encode::to_der(&crl).unwrap();
        let lt = add_validation_data(&bt, std::slice::from_ref(&cert), &[&crl_der]).unwrap();
        let again = add_validation_data(&lt, std::slice::from_ref(&cert), &[&crl_der]).unwrap();
        assert_eq!(again, lt, "adding the same data twice changes nothing");
        let v = verify_detached_digest(&lt, Some(&d)).unwrap();
        assert_eq!(v.timestamp_tokens, vec![token]);
        let sd = crate::cms::decode_signed_data(&lt).unwrap();
        assert_eq!(sd.certificates.unwrap().0.len(), 1);
        assert_eq!(sd.crls.unwrap().0.len(), 1);
        assert!(add_validation_data(&bt, &[], &[b"not a CRL"]).is_err());
    }
}
