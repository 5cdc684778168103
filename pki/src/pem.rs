//! PEM/DER helpers for publishing and reading certificates, CRLs and CSRs
//! (`/pki/ca.pem`, `/pki/ca.crt`, `/pki/crl`, `/pki/certs/{serial-hex}`).

use der::{Decode, Encode, pem::LineEnding};
use sha2::Digest;
use x509_cert::{Certificate, crl::CertificateList, request::CertReq, serial_number::SerialNumber};

use crate::X509Error;

/// PEM label of an X.509 certificate.
pub const CERTIFICATE_LABEL: &str = "CERTIFICATE";
/// PEM label of a CRL.
pub const CRL_LABEL: &str = "X509 CRL";
/// PEM label of a PKCS#10 certification request.
pub const CSR_LABEL: &str = "CERTIFICATE REQUEST";
/// Legacy PEM label of a PKCS#10 certification request (still produced by some tools).
pub const CSR_LABEL_LEGACY: &str = "NEW CERTIFICATE REQUEST";

/// Media type of a DER certificate (RFC 2585), e.g. for `/pki/ca.crt` and `/pki/certs/{serial}`.
pub const MEDIA_TYPE_CERT_DER: &str = "application/pkix-cert";
/// Media type of a DER CRL (RFC 2585), e.g. for `/pki/crl`.
pub const MEDIA_TYPE_CRL_DER: &str = "application/pkix-crl";
/// Media type of PEM text, e.g. for `/pki/ca.pem`.
pub const MEDIA_TYPE_PEM: &str = "application/x-pem-file";
/// Media type of an OCSP request (RFC 6960 appendix A).
pub const MEDIA_TYPE_OCSP_REQUEST: &str = "application/ocsp-request";
/// Media type of an OCSP response (RFC 6960 appendix A).
pub const MEDIA_TYPE_OCSP_RESPONSE: &str = "application/ocsp-response";

/// Largest PEM or DER object accepted by the parsers here (certificates, CRLs and CSRs are far smaller).
pub const MAX_OBJECT_LEN: usize = 256 * 1024;

/// Encodes DER bytes as PEM with the given label and LF line endings.
pub fn to_pem(label: &'static str, der: &[u8]) -> Result<String, X509Error> {
    der::pem::encode_string(label, LineEnding::LF, der).map_err(|e| X509Error::Encode {
        what: label,
        source: e.into(),
    })
}

/// True when the input looks like PEM (starts with `-----BEGIN`, after optional whitespace).
pub fn looks_like_pem(input: &[u8]) -> bool {
    let trimmed = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &input[i..]);
    trimmed.starts_with(b"-----BEGIN ")
}

/// Decodes PEM and returns `(label, der)`. Leading/trailing whitespace is allowed.
pub fn decode_pem(what: &'static str, input: &[u8]) -> Result<(String, Vec<u8>), X509Error> {
    check_len(what, input)?;
    let text = std::str::from_utf8(input).map_err(|_| X509Error::Pem {
        what,
        reason: "not UTF-8 text".into(),
    })?;
    let (label, der) =
        der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| X509Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    Ok((label.to_owned(), der))
}

pub(crate) fn check_len(what: &'static str, input: &[u8]) -> Result<(), X509Error> {
    if input.is_empty() {
        return Err(X509Error::Empty { what });
    }
    if input.len() > MAX_OBJECT_LEN {
        return Err(X509Error::TooLarge {
            what,
            len: input.len(),
            max: MAX_OBJECT_LEN,
        });
    }
    Ok(())
}

/// Returns DER from PEM or DER input. PEM must carry one of `labels`.
pub fn der_from_pem_or_der(
    what: &'static str,
    input: &[u8],
    labels: &[&str],
) -> Result<Vec<u8>, X509Error> {
    check_len(what, input)?;
    if looks_like_pem(input) {
        let (label, der) = decode_pem(what, input)?;
        if !labels.contains(&label.as_str()) {
            return Err(X509Error::Pem {
                what,
                reason: format!(
                    "PEM label is `{label}`, expected `{}`",
                    labels.join("` or `")
                ),
            });
        }
        Ok(der)
    } else {
        Ok(input.to_vec())
    }
}

/// DER encoding of a certificate (for `/pki/ca.crt` and `/pki/certs/{serial}`).
pub fn certificate_to_der(cert: &Certificate) -> Result<Vec<u8>, X509Error> {
    cert.to_der().map_err(X509Error::encode("certificate"))
}

/// PEM encoding of a certificate (for `/pki/ca.pem`).
pub fn certificate_to_pem(cert: &Certificate) -> Result<String, X509Error> {
    to_pem(CERTIFICATE_LABEL, &certificate_to_der(cert)?)
}

/// PEM encoding of a chain (leaf or CA first, then its issuers), concatenated.
pub fn certificates_to_pem(certs: &[Certificate]) -> Result<String, X509Error> {
    let mut out = String::new();
    for cert in certs {
        out.push_str(&certificate_to_pem(cert)?);
    }
    Ok(out)
}

/// Parses one certificate from PEM or DER.
pub fn parse_certificate(input: &[u8]) -> Result<Certificate, X509Error> {
    let der = der_from_pem_or_der("certificate", input, &[CERTIFICATE_LABEL])?;
    Certificate::from_der(&der).map_err(X509Error::decode("certificate"))
}

/// Parses all certificates of a PEM bundle (e.g. a chain file). DER input yields one certificate.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<Certificate>, X509Error> {
    if !looks_like_pem(input) {
        return Ok(vec![parse_certificate(input)?]);
    }
    check_len("certificate bundle", input)?;
    let text = std::str::from_utf8(input).map_err(|_| X509Error::Pem {
        what: "certificate bundle",
        reason: "not UTF-8 text".into(),
    })?;
    let end_marker = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let Some(end) = rest[start..].find(end_marker) else {
            return Err(X509Error::Pem {
                what: "certificate bundle",
                reason: "a BEGIN line has no matching `-----END CERTIFICATE-----`".into(),
            });
        };
        let block_end = start + end + end_marker.len();
        certs.push(parse_certificate(&rest.as_bytes()[start..block_end])?);
        rest = &rest[block_end..];
    }
    if certs.is_empty() {
        return Err(X509Error::Empty {
            what: "certificate bundle",
        });
    }
    Ok(certs)
}

/// DER encoding of a CRL (for `/pki/crl`).
pub fn crl_to_der(crl: &CertificateList) -> Result<Vec<u8>, X509Error> {
    crl.to_der().map_err(X509Error::encode("CRL"))
}

/// PEM encoding of a CRL.
pub fn crl_to_pem(crl: &CertificateList) -> Result<String, X509Error> {
    to_pem(CRL_LABEL, &crl_to_der(crl)?)
}

/// Parses a CRL from PEM or DER.
pub fn parse_crl(input: &[u8]) -> Result<CertificateList, X509Error> {
    let der = der_from_pem_or_der("CRL", input, &[CRL_LABEL])?;
    CertificateList::from_der(&der).map_err(X509Error::decode("CRL"))
}

/// DER encoding of a certification request.
pub fn csr_to_der(csr: &CertReq) -> Result<Vec<u8>, X509Error> {
    csr.to_der()
        .map_err(X509Error::encode("certification request"))
}

/// PEM encoding of a certification request (e.g. for an external parent CA during the key ceremony).
pub fn csr_to_pem(csr: &CertReq) -> Result<String, X509Error> {
    to_pem(CSR_LABEL, &csr_to_der(csr)?)
}

/// Lowercase hex of a serial number's positive integer value, without leading zero bytes
/// (the `{serial-hex}` of `/pki/certs/{serial-hex}` and the certificateId of the API).
pub fn serial_hex(serial: &SerialNumber) -> String {
    hex::encode(serial_bytes(serial))
}

/// The minimal big-endian bytes of a serial number (leading zero bytes stripped).
pub fn serial_bytes(serial: &SerialNumber) -> &[u8] {
    let bytes = serial.as_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Parses the hex form produced by [`serial_hex`] (case-insensitive, at most 20 bytes, not zero).
pub fn parse_serial_hex(text: &str) -> Result<SerialNumber, X509Error> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| X509Error::invalid("serial number", format!("not hex: {e}")))?;
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .ok_or_else(|| X509Error::invalid("serial number", "zero or empty"))?;
    let value = &bytes[first..];
    if value.len() > 20 {
        return Err(X509Error::invalid(
            "serial number",
            format!("{} bytes, at most 20 allowed", value.len()),
        ));
    }
    SerialNumber::new(value).map_err(X509Error::decode("serial number"))
}

/// Lowercase hex SHA-256 of DER bytes (thumbprint for logs; never log the full certificate).
pub fn sha256_thumbprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}
