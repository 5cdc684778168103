//! Certificate and CRL extensions used by the esigd profiles, including those x509-cert 0.2.5 does not model:
//! ETSI `id-etsi-ext-valassured-ST-certs`, RFC 9608 `noRevAvail` and ETSI EN 319 412-5 QCStatements.
//!
//! Every constructor returns a ready [`Extension`] whose criticality is set explicitly, so profiles never
//! depend on a library default.

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::flagset::FlagSet;
use der::{
    Encode, Sequence,
    asn1::{Ia5String, Null, OctetString},
};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::{
    Extension,
    pkix::{
        AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
        CertificatePolicies, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages,
        SubjectKeyIdentifier,
        certpolicy::PolicyInformation,
        crl::dp::DistributionPoint,
        name::{DistributionPointName, GeneralName},
    },
};

use crate::{X509Error, keys::key_identifier};

/// id-ce-subjectKeyIdentifier.
pub const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.14");
/// id-ce-keyUsage.
pub const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-basicConstraints.
pub const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-ce-cRLDistributionPoints.
pub const ID_CE_CRL_DISTRIBUTION_POINTS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.31");
/// id-ce-certificatePolicies.
pub const ID_CE_CERTIFICATE_POLICIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32");
/// id-ce-authorityKeyIdentifier.
pub const ID_CE_AUTHORITY_KEY_IDENTIFIER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.5.29.35");
/// id-ce-extKeyUsage.
pub const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-ce-noRevAvail (RFC 9608).
pub const ID_CE_NO_REV_AVAIL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.56");
/// id-pe-authorityInfoAccess.
pub const ID_PE_AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// id-pe-qcStatements (RFC 3739).
pub const ID_PE_QC_STATEMENTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.3");
/// id-ad-ocsp.
pub const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers.
pub const ID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// id-kp-timeStamping.
pub const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
/// id-kp-OCSPSigning.
pub const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
pub const ID_PKIX_OCSP_NOCHECK: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
/// id-etsi-ext-valassured-ST-certs (ETSI EN 319 412-1 §5.2): short-term certificate, validity assured.
pub const ID_ETSI_EXT_VALASSURED_ST_CERTS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.4.0.194121.2.1");
/// id-etsi-qcs-QcCompliance (ETSI EN 319 412-5).
pub const ID_ETSI_QCS_QC_COMPLIANCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.4.0.1862.1.1");
/// id-etsi-qcs-QcSSCD (ETSI EN 319 412-5): private key in a qualified signature creation device.
pub const ID_ETSI_QCS_QC_SSCD: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.4.0.1862.1.4");
/// id-etsi-qcs-QcType (ETSI EN 319 412-5).
pub const ID_ETSI_QCS_QC_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.4.0.1862.1.6");
/// id-etsi-qct-esign (ETSI EN 319 412-5): certificate for electronic signatures.
pub const ID_ETSI_QCT_ESIGN: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.4.0.1862.1.6.1");
/// id-etsi-qcs-semanticsId-Natural (ETSI EN 319 412-1 §5.1.3).
pub const ID_ETSI_QCS_SEMANTICS_ID_NATURAL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.4.0.194121.1.1");
/// id-qcs-pkixQCSyntax-v2 (RFC 3739), the statement carrying semantics information.
pub const ID_QCS_PKIX_QC_SYNTAX_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.11.2");

fn ext_from<T: Encode>(
    oid: ObjectIdentifier,
    critical: bool,
    value: &T,
    what: &'static str,
) -> Result<Extension, X509Error> {
    let der = value.to_der().map_err(X509Error::encode(what))?;
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(der).map_err(X509Error::encode(what))?,
    })
}

/// basicConstraints, critical (RFC 5280 §4.2.1.9: MUST be critical in CA certificates; we mark it critical
/// in end-entity certificates as well, which is allowed).
pub fn basic_constraints(ca: bool, path_len: Option<u8>) -> Result<Extension, X509Error> {
    ext_from(
        BasicConstraints::OID,
        true,
        &BasicConstraints {
            ca,
            path_len_constraint: path_len,
        },
        "basicConstraints",
    )
}

/// keyUsage, critical.
pub fn key_usage(usages: impl Into<FlagSet<KeyUsages>>) -> Result<Extension, X509Error> {
    ext_from(KeyUsage::OID, true, &KeyUsage(usages.into()), "keyUsage")
}

/// extendedKeyUsage with explicit criticality (RFC 3161 §2.3 requires a critical EKU with only
/// id-kp-timeStamping for TSA certificates).
pub fn extended_key_usage(
    purposes: Vec<ObjectIdentifier>,
    critical: bool,
) -> Result<Extension, X509Error> {
    ext_from(
        ExtendedKeyUsage::OID,
        critical,
        &ExtendedKeyUsage(purposes),
        "extendedKeyUsage",
    )
}

/// subjectKeyIdentifier (SHA-1 of the subject public key, RFC 5280 §4.2.1.2 method 1), non-critical.
pub fn subject_key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<Extension, X509Error> {
    let ski = SubjectKeyIdentifier(
        OctetString::new(key_identifier(spki))
            .map_err(X509Error::encode("subjectKeyIdentifier"))?,
    );
    ext_from(
        SubjectKeyIdentifier::OID,
        false,
        &ski,
        "subjectKeyIdentifier",
    )
}

/// authorityKeyIdentifier with only the keyIdentifier field, non-critical. `key_id` must be the issuer's
/// subjectKeyIdentifier (see [`crate::certificate::subject_key_id_of`]).
pub fn authority_key_identifier(key_id: &[u8]) -> Result<Extension, X509Error> {
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(
            OctetString::new(key_id).map_err(X509Error::encode("authorityKeyIdentifier"))?,
        ),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    ext_from(
        AuthorityKeyIdentifier::OID,
        false,
        &aki,
        "authorityKeyIdentifier",
    )
}

/// certificatePolicies listing the given policy OIDs without qualifiers, non-critical.
pub fn certificate_policies(policies: &[ObjectIdentifier]) -> Result<Extension, X509Error> {
    if policies.is_empty() {
        return Err(X509Error::invalid(
            "certificatePolicies",
            "no policy OID configured",
        ));
    }
    let value = CertificatePolicies(
        policies
            .iter()
            .map(|oid| PolicyInformation {
                policy_identifier: *oid,
                policy_qualifiers: None,
            })
            .collect(),
    );
    ext_from(
        CertificatePolicies::OID,
        false,
        &value,
        "certificatePolicies",
    )
}

fn uri(field: &'static str, url: &str) -> Result<GeneralName, X509Error> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(X509Error::invalid(
            field,
            format!("`{url}` is not an http(s) URL"),
        ));
    }
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(url)
            .map_err(|_| X509Error::invalid(field, format!("`{url}` is not ASCII (IA5String)")))?,
    ))
}

/// cRLDistributionPoints with one distribution point holding the given URLs, non-critical.
pub fn crl_distribution_points(urls: &[String]) -> Result<Extension, X509Error> {
    if urls.is_empty() {
        return Err(X509Error::invalid(
            "cRLDistributionPoints",
            "no CRL URL configured",
        ));
    }
    let names = urls
        .iter()
        .map(|u| uri("cRLDistributionPoints", u))
        .collect::<Result<Vec<_>, _>>()?;
    let value = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(names)),
        reasons: None,
        crl_issuer: None,
    }]);
    ext_from(
        CrlDistributionPoints::OID,
        false,
        &value,
        "cRLDistributionPoints",
    )
}

/// authorityInfoAccess with OCSP and caIssuers URLs, non-critical.
pub fn authority_info_access(
    ocsp_urls: &[String],
    ca_issuers_urls: &[String],
) -> Result<Extension, X509Error> {
    let mut descriptions = Vec::new();
    for u in ocsp_urls {
        descriptions.push(AccessDescription {
            access_method: ID_AD_OCSP,
            access_location: uri("authorityInfoAccess OCSP", u)?,
        });
    }
    for u in ca_issuers_urls {
        descriptions.push(AccessDescription {
            access_method: ID_AD_CA_ISSUERS,
            access_location: uri("authorityInfoAccess caIssuers", u)?,
        });
    }
    if descriptions.is_empty() {
        return Err(X509Error::invalid(
            "authorityInfoAccess",
            "no OCSP or caIssuers URL configured",
        ));
    }
    ext_from(
        AuthorityInfoAccessSyntax::OID,
        false,
        &AuthorityInfoAccessSyntax(descriptions),
        "authorityInfoAccess",
    )
}

/// ETSI EN 319 412-1 `id-etsi-ext-valassured-ST-certs` (value NULL), non-critical: the certificate is a
/// short-term certificate whose validity is assured, so no revocation status is provided.
pub fn etsi_valassured_st_certs() -> Result<Extension, X509Error> {
    ext_from(
        ID_ETSI_EXT_VALASSURED_ST_CERTS,
        false,
        &Null,
        "id-etsi-ext-valassured-ST-certs",
    )
}

/// RFC 9608 `noRevAvail` (value NULL), non-critical: the CA publishes no revocation information.
pub fn no_rev_avail() -> Result<Extension, X509Error> {
    ext_from(ID_CE_NO_REV_AVAIL, false, &Null, "noRevAvail")
}

/// id-pkix-ocsp-nocheck (value NULL), non-critical, for a delegated OCSP signing certificate.
pub fn ocsp_nocheck() -> Result<Extension, X509Error> {
    ext_from(ID_PKIX_OCSP_NOCHECK, false, &Null, "id-pkix-ocsp-nocheck")
}

/// One QCStatement (RFC 3739): `statementId` and optional DER `statementInfo`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct QcStatement {
    /// statementId.
    pub statement_id: ObjectIdentifier,
    /// statementInfo (DER of the statement-specific type).
    #[asn1(optional = "true")]
    pub statement_info: Option<der::Any>,
}

/// SemanticsInformation (RFC 3739) with only the semantics identifier.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SemanticsInformation {
    #[asn1(optional = "true")]
    semantics_identifier: Option<ObjectIdentifier>,
}

/// Which ETSI EN 319 412-5 statements to put into the qcStatements extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QcStatementsOptions {
    /// esi4-qcStatement-1 QcCompliance: an EU qualified certificate. Only for qualified trust services.
    pub qc_compliance: bool,
    /// esi4-qcStatement-4 QcSSCD: the private key resides in a QSCD.
    pub qc_sscd: bool,
    /// esi4-qcStatement-6 QcType esign.
    pub qc_type_esign: bool,
    /// RFC 3739 pkixQCSyntax-v2 with id-etsi-qcs-semanticsId-Natural (ETSI EN 319 412-1 §5.1.3), declaring
    /// the `PNOxx-` semantics of the subject serialNumber.
    pub semantics_id_natural: bool,
}

impl QcStatementsOptions {
    /// True when no statement is selected (then no qcStatements extension is added).
    pub fn is_empty(&self) -> bool {
        !(self.qc_compliance || self.qc_sscd || self.qc_type_esign || self.semantics_id_natural)
    }
}

/// qcStatements extension (RFC 3739 / ETSI EN 319 412-5), non-critical.
pub fn qc_statements(options: QcStatementsOptions) -> Result<Extension, X509Error> {
    const WHAT: &str = "qcStatements";
    let mut statements = Vec::new();
    if options.semantics_id_natural {
        let info = SemanticsInformation {
            semantics_identifier: Some(ID_ETSI_QCS_SEMANTICS_ID_NATURAL),
        };
        statements.push(QcStatement {
            statement_id: ID_QCS_PKIX_QC_SYNTAX_V2,
            statement_info: Some(der::Any::encode_from(&info).map_err(X509Error::encode(WHAT))?),
        });
    }
    if options.qc_compliance {
        statements.push(QcStatement {
            statement_id: ID_ETSI_QCS_QC_COMPLIANCE,
            statement_info: None,
        });
    }
    if options.qc_sscd {
        statements.push(QcStatement {
            statement_id: ID_ETSI_QCS_QC_SSCD,
            statement_info: None,
        });
    }
    if options.qc_type_esign {
        let types = vec![ID_ETSI_QCT_ESIGN];
        statements.push(QcStatement {
            statement_id: ID_ETSI_QCS_QC_TYPE,
            statement_info: Some(der::Any::encode_from(&types).map_err(X509Error::encode(WHAT))?),
        });
    }
    if statements.is_empty() {
        return Err(X509Error::invalid(WHAT, "no statement selected"));
    }
    ext_from(ID_PE_QC_STATEMENTS, false, &statements, WHAT)
}
