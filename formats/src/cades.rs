//! CAdES (ETSI EN 319 122-1) and PAdES (EN 319 142-1) signatures: a detached CMS `SignedData`
//! over one digest, built by [`esigd_pki::cms`].
//!
//! The two profiles differ in one signed attribute: CAdES-B carries signing-time; PAdES-B must not
//! (the claimed time is the signature dictionary's `/M`, which the client writes). Both carry
//! content-type id-data, message-digest and ESS signing-certificate-v2, and the signer's
//! certificate and chain. B-T adds the signature-time-stamp unsigned attribute over the
//! SignerInfo's signature value.

use esigd_pki::cms::{self, ContentType, SignParams, SignerContext};

use crate::{
    DigestAlgorithm, Format, FormatError, Prepared, SignRequest, SignatureFormat, Signed,
    check_documents,
};

/// A CMS-based format.
#[derive(Debug)]
pub struct CmsFormat {
    format: Format,
}

/// CAdES: signing-time included.
pub static CADES: CmsFormat = CmsFormat {
    format: Format::Cades,
};

/// PAdES: no signing-time.
pub static PADES: CmsFormat = CmsFormat {
    format: Format::Pades,
};

impl SignatureFormat for CmsFormat {
    fn format(&self) -> Format {
        self.format
    }

    fn prepare(&self, request: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError> {
        check_documents(request, false)?;
        let ctx = SignerContext::for_certificate(request.signer, request.digest_algorithm)
            .map_err(|e| FormatError::UnsupportedKey {
                format: self.format,
                problem: e.to_string(),
            })?;
        let signing_time = match self.format {
            Format::Pades => None,
            _ => Some(request.time),
        };
        let prepared = ctx
            .prepare(
                &SignParams {
                    content_type: ContentType::Data,
                    digest_algorithm: request.digest_algorithm,
                    digest: &request.documents[0].digest,
                    signing_time,
                    extra_certs: request.chain,
                    include_signer_cert: true,
                },
                None,
            )
            .map_err(|e| FormatError::request("documents", e.to_string()))?;
        Ok(Box::new(CmsPrepared {
            format: self.format,
            ctx,
            prepared,
        }))
    }
}

/// CMS signed attributes waiting for their signature.
#[derive(Debug)]
struct CmsPrepared {
    format: Format,
    ctx: SignerContext,
    prepared: cms::Prepared,
}

impl Prepared for CmsPrepared {
    fn format(&self) -> Format {
        self.format
    }

    fn to_be_signed(&self) -> &[u8] {
        self.prepared.signed_attributes()
    }

    fn signature_digest_algorithm(&self) -> DigestAlgorithm {
        self.prepared.digest_algorithm()
    }

    fn finish(&self, signature: &[u8]) -> Result<Box<dyn Signed>, FormatError> {
        let der = self
            .ctx
            .finish(&self.prepared, signature)
            .map_err(|e| match e {
                cms::CmsError::Verify(m) => FormatError::Verify(m.to_owned()),
                e => FormatError::Internal {
                    format: self.format,
                    problem: e.to_string(),
                },
            })?;
        let value = cms::signature_value(&der).map_err(|e| FormatError::Internal {
            format: self.format,
            problem: e.to_string(),
        })?;
        Ok(Box::new(CmsSigned {
            format: self.format,
            der,
            value,
        }))
    }
}

/// A CMS `ContentInfo(SignedData)` at B-B.
#[derive(Debug)]
struct CmsSigned {
    format: Format,
    der: Vec<u8>,
    value: Vec<u8>,
}

impl Signed for CmsSigned {
    fn format(&self) -> Format {
        self.format
    }

    fn bytes(&self) -> &[u8] {
        &self.der
    }

    fn timestamp_input(&self) -> Vec<u8> {
        self.value.clone()
    }

    fn add_timestamp(&self, token_der: &[u8]) -> Result<Vec<u8>, FormatError> {
        esigd_pki::cades::add_signature_timestamp(&self.der, token_der)
            .map_err(|e| FormatError::Timestamp(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{p256_signer, request_for, sign_prepared, tsa_token};
    use crate::{Document, prepare};

    fn doc(alg: DigestAlgorithm) -> Vec<Document> {
        vec![Document {
            name: "document".into(),
            media_type: "application/octet-stream".into(),
            digest: alg.digest(b"the document"),
        }]
    }

    #[test]
    fn pades_has_no_signing_time_and_cades_has_one() {
        let (key, cert) = p256_signer();
        let docs = doc(DigestAlgorithm::Sha256);
        for (format, wants_time) in [(Format::Cades, true), (Format::Pades, false)] {
            let p = prepare(format, &request_for(&cert, &docs)).unwrap();
            let signed = sign_prepared(&key, p.as_ref());
            let sd = cms::decode_signed_data(signed.bytes()).unwrap();
            let si = sd.signer_infos.0.get(0).unwrap();
            let has_time = si
                .signed_attrs
                .as_ref()
                .unwrap()
                .iter()
                .any(|a| a.oid == cms::oids::ID_SIGNING_TIME);
            assert_eq!(has_time, wants_time, "{format}");
            let bt = signed
                .add_timestamp(&tsa_token(&signed.timestamp_input()))
                .unwrap();
            assert!(bt.len() > signed.bytes().len());
        }
    }

    #[test]
    fn one_digest_only_and_a_wrong_signature_is_refused() {
        let (key, cert) = p256_signer();
        let mut docs = doc(DigestAlgorithm::Sha256);
        docs.push(docs[0].clone());
        let e = prepare(Format::Cades, &request_for(&cert, &docs)).unwrap_err();
        assert!(e.to_string().contains("documents"), "{e}");
        let docs = doc(DigestAlgorithm::Sha256);
        let p = prepare(Format::Pades, &request_for(&cert, &docs)).unwrap();
        let other = prepare(Format::Cades, &request_for(&cert, &docs)).unwrap();
        let sig = crate::testing::sign_der(&key, other.to_be_signed());
        assert!(matches!(p.finish(&sig), Err(FormatError::Verify(_))));
        let _ = key;
    }
}
