//! XAdES (ETSI EN 319 132-1) detached signatures at B-B and B-T, and the same signature as the
//! `META-INF/signatures0.xml` of an ASiC-E container (EN 319 162-1).
//!
//! The server only knows each document's name, media type and digest, and generates every signed
//! byte itself. So no general XML canonicalizer runs: the signed subtrees (`ds:SignedInfo` and
//! `xades:SignedProperties`) are emitted from a fixed template that is already in exclusive XML
//! canonical form (exc-C14N, `http://www.w3.org/2001/10/xml-exc-c14n#`), and embedded verbatim:
//!
//! - each signed subtree's apex declares the prefixes it uses, and a descendant declares a prefix
//!   only when no rendered ancestor did (so the sibling `ds:DigestMethod` and `ds:DigestValue`
//!   under `xades:CertDigest` each carry `xmlns:ds`);
//! - namespace declarations come before attributes, attributes are sorted (`Id` < `Target` <
//!   `Type` < `URI`), there are no self-closing tags and no whitespace between elements;
//! - `& < " \t \n \r` are escaped in attributes, `& < > \r` in text.
//!
//! The signature has one `ds:Reference` per document (relative, percent-encoded URI; an `Id`, and a
//! `xades:DataObjectFormat` with its `MimeType`) and one to the `xades:SignedProperties` (with an
//! exc-C14N transform), which carry `SigningTime` and `SigningCertificateV2` (certificate digest
//! and the base64 DER `IssuerSerial`). `ds:KeyInfo` carries the signer's certificate and chain.
//! An ECDSA `ds:SignatureValue` is raw `r‖s` (RFC 4050 / RFC 6931).
//!
//! B-T adds `xades:UnsignedProperties/xades:UnsignedSignatureProperties/xades:SignatureTimeStamp`
//! over the exc-C14N of `ds:SignatureValue`:
//! `<ds:SignatureValue xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="…">…</ds:SignatureValue>`.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use der::Encode;
use esigd_pki::cms::IssuerSerial;
use esigd_pki::keys::KeyKind;
use esigd_pki::tsp;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;

use crate::sigvalue::{self, digest_name};
use crate::{
    DigestAlgorithm, Format, FormatError, Prepared, SignRequest, SignatureFormat, Signed,
    check_documents,
};

/// The XML-DSig namespace.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The XAdES namespace (v1.3.2, extended by EN 319 132-1 with `SigningCertificateV2`).
pub const NS_XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
/// The ASiC namespace of the `asic:XAdESSignatures` root of `META-INF/signatures*.xml`.
pub const NS_ASIC: &str = "http://uri.etsi.org/02918/v1.2.1#";
/// Exclusive XML canonicalization 1.0 (without comments).
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The `Type` of the reference to the signed properties.
pub const SIGNED_PROPERTIES_TYPE: &str = "http://uri.etsi.org/01903#SignedProperties";

/// XAdES or ASiC-E: the same `ds:Signature`, detached or wrapped in `asic:XAdESSignatures`.
#[derive(Debug)]
pub struct XadesFormat {
    format: Format,
}

/// XAdES-B-T, detached: the signature file's root is the `ds:Signature`.
pub static XADES: XadesFormat = XadesFormat {
    format: Format::Xades,
};

/// ASiC-E with XAdES: `META-INF/signatures0.xml`, whose references are container paths.
pub static ASICE: XadesFormat = XadesFormat {
    format: Format::Asice,
};

/// The RFC 6931 digest method URI of `alg` (SHA-2 only: the signature methods and the digest
/// verification of [`sigvalue::verify`] exist for SHA-2).
fn digest_method(alg: DigestAlgorithm) -> Option<&'static str> {
    match alg {
        DigestAlgorithm::Sha256 => Some("http://www.w3.org/2001/04/xmlenc#sha256"),
        DigestAlgorithm::Sha384 => Some("http://www.w3.org/2001/04/xmldsig-more#sha384"),
        DigestAlgorithm::Sha512 => Some("http://www.w3.org/2001/04/xmlenc#sha512"),
        DigestAlgorithm::Sha3_256 | DigestAlgorithm::Sha3_384 | DigestAlgorithm::Sha3_512 => None,
    }
}

/// The RFC 6931 signature method URI of a key kind with `alg` (SHA-2 only).
fn signature_method(kind: KeyKind, alg: DigestAlgorithm) -> Option<&'static str> {
    let ecdsa = matches!(kind, KeyKind::EcdsaP256 | KeyKind::EcdsaP384);
    Some(match (ecdsa, alg) {
        (true, DigestAlgorithm::Sha256) => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        (true, DigestAlgorithm::Sha384) => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        (true, DigestAlgorithm::Sha512) => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        (false, DigestAlgorithm::Sha256) => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        (false, DigestAlgorithm::Sha384) => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        (false, DigestAlgorithm::Sha512) => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        _ => return None,
    })
}

/// Escapes an attribute value as C14N renders it (`& < " \t \n \r`).
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text content as C14N renders it (`& < > \r`).
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a relative path: RFC 3986 unreserved characters and `/` stay, every other
/// UTF-8 byte becomes `%XX`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Checks a document name (a relative path: no scheme, no leading `/`, no empty, `.` or `..`
/// segment, no `\` or control character; in ASiC-E not under `META-INF/` nor `mimetype`) and
/// returns its reference URI.
fn reference_uri(format: Format, i: usize, name: &str) -> Result<String, FormatError> {
    let bad = |problem: &str| {
        Err(FormatError::request(
            format!("documents[{i}].name"),
            format!("{name:?}: {problem}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.contains('\\') {
        return bad("contains '\\' (use '/' between path segments)");
    }
    if name.starts_with('/') {
        return bad("an absolute path; a relative name is needed");
    }
    let first = name.split('/').next().unwrap_or_default();
    if let Some((scheme, _)) = first.split_once(':') {
        let mut chars = scheme.chars();
        let is_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return bad("an absolute URI; a relative name is needed");
        }
    }
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("has an empty, '.' or '..' path segment");
    }
    if format == Format::Asice && (name == "mimetype" || first.eq_ignore_ascii_case("META-INF")) {
        return bad("reserved in an ASiC-E container (mimetype, META-INF/)");
    }
    Ok(percent_encode(name))
}

/// `xsd:dateTime` in UTC, whole seconds.
fn xml_date_time(time: std::time::SystemTime) -> Result<String, FormatError> {
    let dt = der::DateTime::from_system_time(time)
        .map_err(|e| FormatError::request("time", format!("not representable: {e}")))?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minutes(),
        dt.seconds()
    ))
}

impl SignatureFormat for XadesFormat {
    fn format(&self) -> Format {
        self.format
    }

    fn prepare(&self, request: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError> {
        let format = self.format;
        check_documents(request, true)?;
        let alg = request.digest_algorithm;
        let digest_uri = digest_method(alg).ok_or_else(|| {
            FormatError::request(
                "hashType",
                format!(
                    "{} has no XML signature method here; use SHA-256, SHA-384 or SHA-512",
                    digest_name(alg)
                ),
            )
        })?;
        let kind = sigvalue::key_kind(format, request.signer)?;
        let sig_uri = signature_method(kind, alg).ok_or_else(|| FormatError::UnsupportedKey {
            format,
            problem: format!("no signature method for {kind} with {}", digest_name(alg)),
        })?;
        let mut uris = Vec::with_capacity(request.documents.len());
        for (i, d) in request.documents.iter().enumerate() {
            uris.push(reference_uri(format, i, &d.name)?);
            if d.media_type
                .chars()
                .any(|c| c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
            {
                return Err(FormatError::request(
                    format!("documents[{i}].mediaType"),
                    "contains a control character or a character XML cannot carry",
                ));
            }
        }
        let internal = |what: &str, e: der::Error| FormatError::Internal {
            format,
            problem: format!("{what}: {e}"),
        };
        let signer_der = request
            .signer
            .to_der()
            .map_err(|e| internal("signer certificate", e))?;
        let mut certs_b64 = vec![B64.encode(&signer_der)];
        for c in request.chain {
            certs_b64.push(B64.encode(c.to_der().map_err(|e| internal("chain certificate", e))?));
        }
        let issuer_serial = IssuerSerial {
            issuer: vec![GeneralName::DirectoryName(
                request.signer.tbs_certificate.issuer.clone(),
            )],
            serial_number: request.signer.tbs_certificate.serial_number.clone(),
        }
        .to_der()
        .map_err(|e| internal("IssuerSerial", e))?;
        let signing_time = xml_date_time(request.time)?;

        // Identifiers: derived from what is signed, so that one signature's Ids do not depend on
        // a random source and differ between signatures of different content.
        let mut seed = signer_der.clone();
        seed.extend_from_slice(signing_time.as_bytes());
        for d in request.documents {
            seed.extend_from_slice(d.name.as_bytes());
            seed.push(0);
            seed.extend_from_slice(&d.digest);
        }
        let mut id = String::with_capacity(16);
        for b in &DigestAlgorithm::Sha256.digest(&seed)[..8] {
            let _ = write!(id, "{b:02x}");
        }
        let ids = Ids::new(&id);

        // xades:SignedProperties, canonical (exc-C14N of the subtree).
        let mut sp = String::new();
        let _ = write!(
            sp,
            "<xades:SignedProperties xmlns:xades=\"{NS_XADES}\" Id=\"{sp_id}\">\
             <xades:SignedSignatureProperties>\
             <xades:SigningTime>{signing_time}</xades:SigningTime>\
             <xades:SigningCertificateV2><xades:Cert><xades:CertDigest>\
             <ds:DigestMethod xmlns:ds=\"{NS_DS}\" Algorithm=\"{digest_uri}\"></ds:DigestMethod>\
             <ds:DigestValue xmlns:ds=\"{NS_DS}\">{cert_digest}</ds:DigestValue>\
             </xades:CertDigest>\
             <xades:IssuerSerialV2>{issuer_serial}</xades:IssuerSerialV2>\
             </xades:Cert></xades:SigningCertificateV2>\
             </xades:SignedSignatureProperties>\
             <xades:SignedDataObjectProperties>",
            sp_id = ids.signed_properties,
            cert_digest = B64.encode(alg.digest(&signer_der)),
            issuer_serial = B64.encode(&issuer_serial),
        );
        for (i, d) in request.documents.iter().enumerate() {
            let _ = write!(
                sp,
                "<xades:DataObjectFormat ObjectReference=\"#{r}\">\
                 <xades:MimeType>{mime}</xades:MimeType>\
                 </xades:DataObjectFormat>",
                r = escape_attr(&ids.reference(i)),
                mime = escape_text(&d.media_type),
            );
        }
        sp.push_str("</xades:SignedDataObjectProperties></xades:SignedProperties>");

        // ds:SignedInfo, canonical.
        let mut si = String::new();
        let _ = write!(
            si,
            "<ds:SignedInfo xmlns:ds=\"{NS_DS}\">\
             <ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod>\
             <ds:SignatureMethod Algorithm=\"{sig_uri}\"></ds:SignatureMethod>"
        );
        for (i, (d, uri)) in request.documents.iter().zip(&uris).enumerate() {
            let _ = write!(
                si,
                "<ds:Reference Id=\"{rid}\" URI=\"{uri}\">\
                 <ds:DigestMethod Algorithm=\"{digest_uri}\"></ds:DigestMethod>\
                 <ds:DigestValue>{dv}</ds:DigestValue>\
                 </ds:Reference>",
                rid = escape_attr(&ids.reference(i)),
                uri = escape_attr(uri),
                dv = B64.encode(&d.digest),
            );
        }
        let _ = write!(
            si,
            "<ds:Reference Type=\"{SIGNED_PROPERTIES_TYPE}\" URI=\"#{sp_id}\">\
             <ds:Transforms><ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{digest_uri}\"></ds:DigestMethod>\
             <ds:DigestValue>{dv}</ds:DigestValue>\
             </ds:Reference></ds:SignedInfo>",
            sp_id = ids.signed_properties,
            dv = B64.encode(alg.digest(sp.as_bytes())),
        );

        let mut key_info = String::from("<ds:KeyInfo><ds:X509Data>");
        for c in &certs_b64 {
            let _ = write!(key_info, "<ds:X509Certificate>{c}</ds:X509Certificate>");
        }
        key_info.push_str("</ds:X509Data></ds:KeyInfo>");

        Ok(Box::new(XadesPrepared {
            format,
            kind,
            alg,
            signer: request.signer.clone(),
            ids,
            signed_info: si,
            signed_properties: sp,
            key_info,
        }))
    }
}

/// The `Id` attributes of one signature.
#[derive(Debug, Clone)]
struct Ids {
    /// `ds:Signature`.
    signature: String,
    /// `ds:SignatureValue`.
    value: String,
    /// `xades:SignedProperties`.
    signed_properties: String,
    /// `xades:SignatureTimeStamp`.
    timestamp: String,
    /// The prefix of the data references' Ids (`-1`, `-2`, … follow).
    reference_prefix: String,
}

impl Ids {
    fn new(id: &str) -> Self {
        Ids {
            signature: format!("S-{id}"),
            value: format!("SV-{id}"),
            signed_properties: format!("SP-{id}"),
            timestamp: format!("TS-{id}"),
            reference_prefix: format!("R-{id}"),
        }
    }

    /// The Id of the `i`-th (0-based) data reference.
    fn reference(&self, i: usize) -> String {
        format!("{}-{}", self.reference_prefix, i + 1)
    }
}

/// A XAdES signature waiting for its signature value: the canonical signed subtrees and the rest
/// of the document, byte for byte as they will be written.
#[derive(Debug)]
struct XadesPrepared {
    format: Format,
    kind: KeyKind,
    alg: DigestAlgorithm,
    signer: Certificate,
    ids: Ids,
    /// Canonical `ds:SignedInfo`: what the key signs.
    signed_info: String,
    /// Canonical `xades:SignedProperties`.
    signed_properties: String,
    /// `ds:KeyInfo` with the signer's certificate and chain.
    key_info: String,
}

impl Prepared for XadesPrepared {
    fn format(&self) -> Format {
        self.format
    }

    fn to_be_signed(&self) -> &[u8] {
        self.signed_info.as_bytes()
    }

    fn signature_digest_algorithm(&self) -> DigestAlgorithm {
        self.alg
    }

    fn finish(&self, signature: &[u8]) -> Result<Box<dyn Signed>, FormatError> {
        sigvalue::verify(
            &self.signer,
            self.to_be_signed(),
            self.signature_digest_algorithm(),
            signature,
        )?;
        let raw = sigvalue::to_raw(self.kind, signature)?;
        let value_b64 = B64.encode(&raw);
        let timestamp_input = format!(
            "<ds:SignatureValue xmlns:ds=\"{NS_DS}\" Id=\"{id}\">{value_b64}</ds:SignatureValue>",
            id = self.ids.value
        );
        let mut head = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if self.format == Format::Asice {
            let _ = write!(head, "<asic:XAdESSignatures xmlns:asic=\"{NS_ASIC}\">");
        }
        let _ = write!(
            head,
            "<ds:Signature xmlns:ds=\"{NS_DS}\" Id=\"{sig_id}\">{si}\
             <ds:SignatureValue Id=\"{value_id}\">{value_b64}</ds:SignatureValue>{ki}\
             <ds:Object><xades:QualifyingProperties xmlns:xades=\"{NS_XADES}\" Target=\"#{sig_id}\">\
             {sp}",
            sig_id = self.ids.signature,
            si = self.signed_info,
            value_id = self.ids.value,
            ki = self.key_info,
            sp = self.signed_properties,
        );
        let mut tail = String::from("</xades:QualifyingProperties></ds:Object></ds:Signature>");
        if self.format == Format::Asice {
            tail.push_str("</asic:XAdESSignatures>");
        }
        let bytes = format!("{head}{tail}").into_bytes();
        Ok(Box::new(XadesSigned {
            format: self.format,
            timestamp_id: self.ids.timestamp.clone(),
            head,
            tail,
            bytes,
            timestamp_input: timestamp_input.into_bytes(),
        }))
    }
}

/// A XAdES signature at B-B: the document split where the unsigned properties go.
#[derive(Debug)]
struct XadesSigned {
    format: Format,
    timestamp_id: String,
    /// Up to and including `</xades:SignedProperties>`.
    head: String,
    /// From `</xades:QualifyingProperties>` to the end.
    tail: String,
    /// `head` + `tail`.
    bytes: Vec<u8>,
    /// Exc-C14N of `ds:SignatureValue`.
    timestamp_input: Vec<u8>,
}

impl Signed for XadesSigned {
    fn format(&self) -> Format {
        self.format
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn timestamp_input(&self) -> Vec<u8> {
        self.timestamp_input.clone()
    }

    fn add_timestamp(&self, token_der: &[u8]) -> Result<Vec<u8>, FormatError> {
        let tst = tsp::token_tst_info(token_der).map_err(|e| {
            FormatError::Timestamp(format!("not a TimeStampToken with a TSTInfo: {e}"))
        })?;
        let alg = tsp::imprint_algorithm(&tst.message_imprint).ok_or_else(|| {
            FormatError::Timestamp(format!(
                "unsupported imprint algorithm {}",
                tst.message_imprint.hash_algorithm.oid
            ))
        })?;
        if alg.digest(&self.timestamp_input) != tst.message_imprint.hashed_message.as_bytes() {
            return Err(FormatError::Timestamp(
                "its imprint is not the digest of this signature's canonical ds:SignatureValue"
                    .into(),
            ));
        }
        let mut out = String::with_capacity(self.bytes.len() + token_der.len() * 4 / 3 + 512);
        out.push_str(&self.head);
        let _ = write!(
            out,
            "<xades:UnsignedProperties><xades:UnsignedSignatureProperties>\
             <xades:SignatureTimeStamp Id=\"{id}\">\
             <ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod>\
             <xades:EncapsulatedTimeStamp>{token}</xades:EncapsulatedTimeStamp>\
             </xades:SignatureTimeStamp>\
             </xades:UnsignedSignatureProperties></xades:UnsignedProperties>",
            id = self.timestamp_id,
            token = B64.encode(token_der),
        );
        out.push_str(&self.tail);
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{p256_signer, request_for, sign_der, sign_prepared, tsa_token};
    use crate::{Document, prepare};
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    fn docs(names: &[(&str, &str, &[u8])]) -> Vec<Document> {
        names
            .iter()
            .map(|(n, m, content)| Document {
                name: (*n).into(),
                media_type: (*m).into(),
                digest: DigestAlgorithm::Sha256.digest(content),
            })
            .collect()
    }

    /// The text between `start` (included) and the first `end` after it (included).
    fn slice<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
        let a = s
            .find(start)
            .unwrap_or_else(|| panic!("{start} not in {s}"));
        let from = a + start.len();
        let b = from
            + s[from..]
                .find(end)
                .unwrap_or_else(|| panic!("{end} not in {s}"))
            + end.len();
        &s[a..b]
    }

    /// The text content of the first `<tag …>…</tag>`.
    fn text<'a>(s: &'a str, tag: &str) -> &'a str {
        let el = slice(s, &format!("<{tag}"), &format!("</{tag}>"));
        let open_end = el.find('>').unwrap() + 1;
        &el[open_end..el.len() - tag.len() - 3]
    }

    #[test]
    fn structure_of_a_detached_signature() {
        let (key, cert) = p256_signer();
        let d = docs(&[("document.pdf", "application/pdf", b"%PDF-1.7")]);
        let p = prepare(Format::Xades, &request_for(&cert, &d)).unwrap();
        assert_eq!(p.format(), Format::Xades);
        assert_eq!(p.signature_digest_algorithm(), DigestAlgorithm::Sha256);
        let signed = sign_prepared(&key, p.as_ref());
        let xml = std::str::from_utf8(signed.bytes()).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" Id=\"S-"), "{xml}");
        assert!(xml.ends_with("</xades:QualifyingProperties></ds:Object></ds:Signature>"));
        // The signed bytes are embedded verbatim.
        let si = std::str::from_utf8(p.to_be_signed()).unwrap();
        assert!(xml.contains(si));
        assert!(si.starts_with("<ds:SignedInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256\"></ds:SignatureMethod>"), "{si}");
        assert!(si.contains("URI=\"document.pdf\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></ds:DigestMethod>"));
        assert_eq!(text(si, "ds:DigestValue"), B64.encode(&d[0].digest));
        // The SignedProperties reference digests the canonical SignedProperties.
        let sp = slice(xml, "<xades:SignedProperties", "</xades:SignedProperties>");
        assert!(sp.starts_with(
            "<xades:SignedProperties xmlns:xades=\"http://uri.etsi.org/01903/v1.3.2#\" Id=\"SP-"
        ));
        let sp_ref = slice(si, "<ds:Reference Type=", "</ds:Reference>");
        assert!(sp_ref.contains(&format!(
            "URI=\"#{}\"",
            &sp[sp.find("Id=\"").unwrap() + 4..sp.find("\">").unwrap()]
        )));
        assert!(sp_ref.contains("<ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform></ds:Transforms>"));
        assert_eq!(
            text(sp_ref, "ds:DigestValue"),
            B64.encode(DigestAlgorithm::Sha256.digest(sp.as_bytes()))
        );
        // SigningTime, SigningCertificateV2 (sibling ds: elements each declare the prefix).
        assert_eq!(text(sp, "xades:SigningTime"), "2023-11-14T22:13:20Z");
        let cert_der = cert.to_der().unwrap();
        assert!(sp.contains(&format!("<xades:CertDigest><ds:DigestMethod xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></ds:DigestMethod><ds:DigestValue xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{}</ds:DigestValue></xades:CertDigest>", B64.encode(DigestAlgorithm::Sha256.digest(&cert_der)))));
        let is = B64.decode(text(sp, "xades:IssuerSerialV2")).unwrap();
        let is = <IssuerSerial as der::Decode>::from_der(&is).unwrap();
        assert_eq!(is.serial_number, cert.tbs_certificate.serial_number);
        assert!(
            !sp.contains("URI="),
            "SigningCertificateV2 has no URI attribute"
        );
        // DataObjectFormat per data Reference, by Id.
        let r1 = slice(si, "<ds:Reference Id=\"", "\"");
        let rid = &r1["<ds:Reference Id=\"".len()..r1.len() - 1];
        assert!(sp.contains(&format!("<xades:DataObjectFormat ObjectReference=\"#{rid}\"><xades:MimeType>application/pdf</xades:MimeType></xades:DataObjectFormat>")));
        // KeyInfo with the certificate.
        assert!(xml.contains(&format!("<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>", B64.encode(&cert_der))));
        // No self-closing tag, no whitespace between elements.
        assert!({
            let body = xml.split_once("?>\n").unwrap().1;
            !body.contains("/>") && !body.contains('\n') && !body.contains("> <")
        });
        // The signature value is raw r||s, 64 bytes for P-256, and verifies.
        let value = B64.decode(text(xml, "ds:SignatureValue")).unwrap();
        assert_eq!(value.len(), 64);
        let sig = p256::ecdsa::Signature::from_slice(&value).unwrap();
        use p256::ecdsa::signature::Verifier;
        key.verifying_key().verify(si.as_bytes(), &sig).unwrap();
        // The time-stamp input is the canonical SignatureValue element.
        let input = String::from_utf8(signed.timestamp_input()).unwrap();
        assert!(input.starts_with(
            "<ds:SignatureValue xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" Id=\"SV-"
        ));
        assert!(input.ends_with(&format!(
            ">{}</ds:SignatureValue>",
            text(xml, "ds:SignatureValue")
        )));
        // B-T.
        let token = tsa_token(&signed.timestamp_input());
        let bt = String::from_utf8(signed.add_timestamp(&token).unwrap()).unwrap();
        let unsigned = slice(
            &bt,
            "<xades:UnsignedProperties>",
            "</xades:UnsignedProperties>",
        );
        assert!(
            unsigned
                .contains("<xades:UnsignedSignatureProperties><xades:SignatureTimeStamp Id=\"TS-")
        );
        assert!(unsigned.contains("<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:CanonicalizationMethod>"));
        assert_eq!(
            text(unsigned, "xades:EncapsulatedTimeStamp"),
            B64.encode(&token)
        );
        assert!(bt.contains("</xades:SignedProperties><xades:UnsignedProperties>"));
        assert!(bt.ends_with(
            "</xades:UnsignedProperties></xades:QualifyingProperties></ds:Object></ds:Signature>"
        ));
        // The B-T document is the B-B document with the unsigned properties inserted.
        assert_eq!(bt.replace(unsigned, ""), xml);
    }

    #[test]
    fn asice_wraps_the_same_signature() {
        let (key, cert) = p256_signer();
        let d = docs(&[
            ("dir/a.txt", "text/plain", b"a"),
            ("b.xml", "application/xml", b"b"),
        ]);
        let px = prepare(Format::Xades, &request_for(&cert, &d)).unwrap();
        let pa = prepare(Format::Asice, &request_for(&cert, &d)).unwrap();
        assert_eq!(px.to_be_signed(), pa.to_be_signed());
        let signed = sign_prepared(&key, pa.as_ref());
        assert_eq!(signed.format(), Format::Asice);
        let xml = std::str::from_utf8(signed.bytes()).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<asic:XAdESSignatures xmlns:asic=\"http://uri.etsi.org/02918/v1.2.1#\"><ds:Signature "));
        assert!(xml.ends_with("</ds:Signature></asic:XAdESSignatures>"));
        let bt = String::from_utf8(
            signed
                .add_timestamp(&tsa_token(&signed.timestamp_input()))
                .unwrap(),
        )
        .unwrap();
        assert!(bt.ends_with("</xades:UnsignedProperties></xades:QualifyingProperties></ds:Object></ds:Signature></asic:XAdESSignatures>"));
        assert!(xml.contains("URI=\"dir/a.txt\""));
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let (key, cert) = p256_signer();
        let d = docs(&[("a.txt", "text/plain", b"a")]);
        let p = prepare(Format::Xades, &request_for(&cert, &d)).unwrap();
        // Over other bytes.
        let sig = sign_der(&key, b"something else");
        assert!(matches!(p.finish(&sig), Err(FormatError::Verify(_))));
        // Raw r||s instead of DER.
        let good = sign_der(&key, p.to_be_signed());
        let raw = p256::ecdsa::Signature::from_der(&good).unwrap().to_bytes();
        assert!(matches!(p.finish(&raw), Err(FormatError::Verify(_))));
        // By another key.
        let other = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        assert!(matches!(
            p.finish(&sign_der(&other, p.to_be_signed())),
            Err(FormatError::Verify(_))
        ));
        assert!(p.finish(&good).is_ok());
    }

    #[test]
    fn a_wrong_token_is_refused() {
        let (key, cert) = p256_signer();
        let d = docs(&[("a.txt", "text/plain", b"a")]);
        let signed = sign_prepared(
            &key,
            prepare(Format::Xades, &request_for(&cert, &d))
                .unwrap()
                .as_ref(),
        );
        // A token over the signature value's raw bytes, over the document's SignatureValue (not
        // canonical: no xmlns:ds), and garbage.
        let xml = std::str::from_utf8(signed.bytes()).unwrap();
        let in_doc = slice(xml, "<ds:SignatureValue", "</ds:SignatureValue>");
        for input in [
            B64.decode(text(xml, "ds:SignatureValue")).unwrap(),
            in_doc.as_bytes().to_vec(),
        ] {
            let e = signed.add_timestamp(&tsa_token(&input)).unwrap_err();
            assert!(matches!(e, FormatError::Timestamp(_)), "{e}");
        }
        assert!(matches!(
            signed.add_timestamp(b"\x30\x03\x02\x01\x00"),
            Err(FormatError::Timestamp(_))
        ));
        assert!(
            signed
                .add_timestamp(&tsa_token(&signed.timestamp_input()))
                .is_ok()
        );
    }

    #[test]
    fn names_are_percent_encoded_and_checked() {
        let (key, cert) = p256_signer();
        let d = docs(&[
            ("my report 2024.pdf", "application/pdf", b"1"),
            (
                "dir/Ünï & co?#.txt",
                "text/plain; charset=\"utf-8\" & <x>",
                b"2",
            ),
        ]);
        let p = prepare(Format::Asice, &request_for(&cert, &d)).unwrap();
        let si = std::str::from_utf8(p.to_be_signed()).unwrap();
        assert!(si.contains("URI=\"my%20report%202024.pdf\""), "{si}");
        assert!(
            si.contains("URI=\"dir/%C3%9Cn%C3%AF%20%26%20co%3F%23.txt\""),
            "{si}"
        );
        let signed = sign_prepared(&key, p.as_ref());
        let xml = std::str::from_utf8(signed.bytes()).unwrap();
        assert!(
            xml.contains(
                "<xades:MimeType>text/plain; charset=\"utf-8\" &amp; &lt;x&gt;</xades:MimeType>"
            ),
            "{xml}"
        );

        for (format, name, wanted) in [
            (Format::Xades, "/etc/passwd", "absolute path"),
            (Format::Xades, "https://example.com/a.pdf", "absolute URI"),
            (Format::Xades, "file:a.pdf", "absolute URI"),
            (Format::Xades, "../a.pdf", "'..'"),
            (Format::Xades, "a/../../b", "'..'"),
            (Format::Xades, "a//b", "empty"),
            (Format::Xades, "./a", "'.'"),
            (Format::Xades, "a\\b", "'\\'"),
            (Format::Xades, "a\nb", "control"),
            (Format::Asice, "META-INF/manifest.xml", "reserved"),
            (Format::Asice, "mimetype", "reserved"),
        ] {
            let d = docs(&[("ok.txt", "text/plain", b"x"), (name, "text/plain", b"y")]);
            let e = prepare(format, &request_for(&cert, &d)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("documents[1].name: "), "{name}: {msg}");
            assert!(msg.contains(wanted), "{name}: {msg}");
        }
        // A media type XML cannot carry.
        for mime in ["text/plain\n", "text/\u{FFFF}"] {
            let d = vec![Document {
                name: "a.txt".into(),
                media_type: mime.into(),
                digest: DigestAlgorithm::Sha256.digest(b"a"),
            }];
            let e = prepare(Format::Xades, &request_for(&cert, &d)).unwrap_err();
            assert!(e.to_string().starts_with("documents[0].mediaType: "), "{e}");
        }
        // "a:b" in a later segment or without a scheme form is a relative name.
        let d = docs(&[
            ("dir/a:b.txt", "text/plain", b"x"),
            ("1:2", "text/plain", b"y"),
        ]);
        let p = prepare(Format::Xades, &request_for(&cert, &d)).unwrap();
        let si = std::str::from_utf8(p.to_be_signed()).unwrap();
        assert!(
            si.contains("URI=\"dir/a%3Ab.txt\"") && si.contains("URI=\"1%3A2\""),
            "{si}"
        );
        // Empty and duplicate names (check_documents).
        let d = docs(&[("", "text/plain", b"x")]);
        assert!(
            prepare(Format::Xades, &request_for(&cert, &d))
                .unwrap_err()
                .to_string()
                .starts_with("documents[0].name")
        );
        let d = docs(&[("a", "text/plain", b"x"), ("a", "text/plain", b"y")]);
        assert!(
            prepare(Format::Xades, &request_for(&cert, &d))
                .unwrap_err()
                .to_string()
                .starts_with("documents[1].name")
        );
    }

    #[test]
    fn several_documents_each_have_a_reference_and_a_format() {
        let (key, cert) = p256_signer();
        let d = docs(&[
            ("a.pdf", "application/pdf", b"a"),
            ("b.txt", "text/plain", b"b"),
            ("c/d.json", "application/json", b"c"),
        ]);
        let signed = sign_prepared(
            &key,
            prepare(Format::Xades, &request_for(&cert, &d))
                .unwrap()
                .as_ref(),
        );
        let xml = std::str::from_utf8(signed.bytes()).unwrap();
        let si = slice(xml, "<ds:SignedInfo", "</ds:SignedInfo>");
        let sp = slice(xml, "<xades:SignedProperties", "</xades:SignedProperties>");
        assert_eq!(si.matches("<ds:Reference ").count(), 4);
        assert_eq!(sp.matches("<xades:DataObjectFormat ").count(), 3);
        let mut last = 0;
        for (i, doc) in d.iter().enumerate() {
            let r = slice(si, &format!("URI=\"{}\"", doc.name), "</ds:Reference>");
            assert_eq!(text(r, "ds:DigestValue"), B64.encode(&doc.digest));
            let pos = si.find(&format!("URI=\"{}\"", doc.name)).unwrap();
            assert!(pos > last, "references in document order");
            last = pos;
            let rid = format!(
                "R-{}-{}",
                &sp[sp.find("Id=\"SP-").unwrap() + 7..sp.find("\">").unwrap()],
                i + 1
            );
            assert!(
                si.contains(&format!("<ds:Reference Id=\"{rid}\" URI=\"{}\">", doc.name)),
                "{si}"
            );
            assert!(sp.contains(&format!("<xades:DataObjectFormat ObjectReference=\"#{rid}\"><xades:MimeType>{}</xades:MimeType>", doc.media_type)));
        }
        // The SignedProperties reference comes last.
        assert!(si.ends_with("</ds:Reference></ds:SignedInfo>"));
        assert!(
            si.rfind("<ds:Reference Type=\"http://uri.etsi.org/01903#SignedProperties\"")
                .unwrap()
                > last
        );
    }

    #[test]
    fn digest_algorithms_follow_the_request() {
        let (key, cert) = p256_signer();
        for (alg, digest_uri, sig_uri) in [
            (
                DigestAlgorithm::Sha384,
                "http://www.w3.org/2001/04/xmldsig-more#sha384",
                "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
            ),
            (
                DigestAlgorithm::Sha512,
                "http://www.w3.org/2001/04/xmlenc#sha512",
                "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
            ),
        ] {
            let d = vec![Document {
                name: "a.txt".into(),
                media_type: "text/plain".into(),
                digest: alg.digest(b"a"),
            }];
            let mut req = request_for(&cert, &d);
            req.digest_algorithm = alg;
            let p = prepare(Format::Xades, &req).unwrap();
            assert_eq!(p.signature_digest_algorithm(), alg);
            assert_eq!(p.digest(), alg.digest(p.to_be_signed()));
            let si = std::str::from_utf8(p.to_be_signed()).unwrap();
            assert!(si.contains(&format!("<ds:SignatureMethod Algorithm=\"{sig_uri}\">")));
            assert_eq!(
                si.matches(&format!("<ds:DigestMethod Algorithm=\"{digest_uri}\">"))
                    .count(),
                2
            );
            let sig: p256::ecdsa::Signature = key.sign_prehash(&p.digest()).unwrap();
            let signed = p.finish(sig.to_der().as_bytes()).unwrap();
            let xml = std::str::from_utf8(signed.bytes()).unwrap();
            let sp = slice(xml, "<xades:SignedProperties", "</xades:SignedProperties>");
            assert!(sp.contains(&format!("Algorithm=\"{digest_uri}\"")));
            assert!(si.contains(&B64.encode(alg.digest(sp.as_bytes()))));
            assert!(sp.contains(&B64.encode(alg.digest(&cert.to_der().unwrap()))));
        }
        // SHA-3 has no signature method here: refused, naming the field.
        let d = vec![Document {
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            digest: DigestAlgorithm::Sha3_256.digest(b"a"),
        }];
        let mut req = request_for(&cert, &d);
        req.digest_algorithm = DigestAlgorithm::Sha3_256;
        let e = prepare(Format::Xades, &req).unwrap_err();
        assert!(e.to_string().starts_with("hashType: "), "{e}");
    }
}
