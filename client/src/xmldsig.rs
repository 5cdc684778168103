//! Reading XML signatures (XAdES as esigd emits it, alone or in `asic:XAdESSignatures`): the
//! references, the signature value, the certificates and the time-stamps, and the *emitted*
//! bytes of the signed subtrees (no general canonicalization: see [`crate::verify`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::digest::HashAlgorithm;

/// The XML-DSig namespace.
pub(crate) const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The XAdES namespace.
pub(crate) const NS_XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
/// Exclusive XML canonicalization 1.0 (without comments).
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The `Type` of a reference to the signed properties.
pub(crate) const SIGNED_PROPERTIES_TYPE: &str = "http://uri.etsi.org/01903#SignedProperties";

/// One `ds:Reference`.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    /// The `URI` attribute as written.
    pub(crate) uri: String,
    /// The `Type` attribute.
    pub(crate) kind: Option<String>,
    /// The `Algorithm` of each `ds:Transform`.
    pub(crate) transforms: Vec<String>,
    /// The `ds:DigestMethod` `Algorithm`.
    pub(crate) digest_method: String,
    /// The decoded `ds:DigestValue`.
    pub(crate) digest_value: Vec<u8>,
}

impl Reference {
    /// Whether the reference points into the signature (`#Id`).
    pub(crate) fn is_internal(&self) -> bool {
        self.uri.starts_with('#')
    }

    /// The URI percent-decoded: the document or container path it names.
    pub(crate) fn path(&self) -> Result<String, String> {
        percent_decode(&self.uri)
    }
}

/// One `ds:Signature`.
#[derive(Debug, Clone)]
pub(crate) struct XmlSignature {
    /// `ds:SignedInfo` exactly as written in the file.
    pub(crate) signed_info: String,
    /// The `ds:CanonicalizationMethod` `Algorithm`.
    pub(crate) c14n_method: String,
    /// The `ds:SignatureMethod` `Algorithm`.
    pub(crate) signature_method: String,
    /// The references, in order.
    pub(crate) references: Vec<Reference>,
    /// The decoded `ds:SignatureValue`.
    pub(crate) signature_value: Vec<u8>,
    /// `ds:SignatureValue` as exclusive canonicalization renders it (its own `xmlns:ds`).
    pub(crate) signature_value_c14n: String,
    /// The DER certificates of `ds:KeyInfo/ds:X509Data`, in order.
    pub(crate) certificates: Vec<Vec<u8>>,
    /// `xades:SignedProperties`: its `Id` and its bytes as written.
    pub(crate) signed_properties: Option<(String, String)>,
    /// `SigningCertificateV2/Cert/CertDigest` (or V1): digest method and value.
    pub(crate) signing_cert_digest: Option<(String, Vec<u8>)>,
    /// `xades:SigningTime`.
    pub(crate) signing_time: Option<String>,
    /// Each `xades:SignatureTimeStamp`: its canonicalization method and the token.
    pub(crate) timestamps: Vec<(Option<String>, Vec<u8>)>,
}

/// The hash of an RFC 6931 digest method URI.
pub(crate) fn digest_method(uri: &str) -> Option<HashAlgorithm> {
    match uri {
        "http://www.w3.org/2001/04/xmlenc#sha256" => Some(HashAlgorithm::Sha256),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(HashAlgorithm::Sha384),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

/// The key family (`true` for ECDSA) and hash of an RFC 6931 signature method URI.
pub(crate) fn signature_method(uri: &str) -> Option<(bool, HashAlgorithm)> {
    let (ecdsa, hash) = uri
        .strip_prefix("http://www.w3.org/2001/04/xmldsig-more#")?
        .split_once('-')?;
    let ecdsa = match ecdsa {
        "ecdsa" => true,
        "rsa" => false,
        _ => return None,
    };
    let hash = match hash {
        "sha256" => HashAlgorithm::Sha256,
        "sha384" => HashAlgorithm::Sha384,
        "sha512" => HashAlgorithm::Sha512,
        _ => return None,
    };
    Some((ecdsa, hash))
}

/// Decodes `%XX` escapes (UTF-8).
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("URI {s:?} has a malformed %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("URI {s:?} does not decode to UTF-8"))
}

fn decode_b64(what: &str, text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(clean.as_bytes())
        .map_err(|e| format!("{what} is not base64: {e}"))
}

fn is(node: &roxmltree::Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| is(c, ns, name))
}

fn descendants<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    node.descendants().filter(move |c| is(c, ns, name))
}

fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.text().unwrap_or_default().trim().to_owned()
}

/// Parses every `ds:Signature` of `xml` (the root itself, or the children of an
/// `asic:XAdESSignatures` root).
pub(crate) fn parse(xml: &str) -> Result<Vec<XmlSignature>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root_element();
    let sigs: Vec<_> = if is(&root, NS_DS, "Signature") {
        vec![root]
    } else {
        root.children()
            .filter(|c| is(c, NS_DS, "Signature"))
            .collect()
    };
    if sigs.is_empty() {
        return Err(format!(
            "no ds:Signature (root element {{{}}}{})",
            root.tag_name().namespace().unwrap_or_default(),
            root.tag_name().name()
        ));
    }
    sigs.into_iter().map(|s| parse_signature(xml, s)).collect()
}

fn parse_signature(xml: &str, sig: roxmltree::Node<'_, '_>) -> Result<XmlSignature, String> {
    let si = child(sig, NS_DS, "SignedInfo").ok_or("no ds:SignedInfo")?;
    let c14n_method = child(si, NS_DS, "CanonicalizationMethod")
        .and_then(|n| n.attribute("Algorithm"))
        .ok_or("no ds:CanonicalizationMethod")?
        .to_owned();
    let signature_method = child(si, NS_DS, "SignatureMethod")
        .and_then(|n| n.attribute("Algorithm"))
        .ok_or("no ds:SignatureMethod")?
        .to_owned();
    let mut references = Vec::new();
    for r in si.children().filter(|c| is(c, NS_DS, "Reference")) {
        let transforms = child(r, NS_DS, "Transforms")
            .map(|t| {
                t.children()
                    .filter(|c| is(c, NS_DS, "Transform"))
                    .filter_map(|c| c.attribute("Algorithm").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        references.push(Reference {
            uri: r
                .attribute("URI")
                .ok_or("a ds:Reference without URI")?
                .to_owned(),
            kind: r.attribute("Type").map(str::to_owned),
            transforms,
            digest_method: child(r, NS_DS, "DigestMethod")
                .and_then(|n| n.attribute("Algorithm"))
                .ok_or("a ds:Reference without ds:DigestMethod")?
                .to_owned(),
            digest_value: decode_b64(
                "a ds:DigestValue",
                &text_of(child(r, NS_DS, "DigestValue").ok_or("no ds:DigestValue")?),
            )?,
        });
    }
    let sv = child(sig, NS_DS, "SignatureValue").ok_or("no ds:SignatureValue")?;
    let sv_text = text_of(sv);
    let signature_value = decode_b64("ds:SignatureValue", &sv_text)?;
    let prefix = sv
        .tag_name()
        .namespace()
        .and_then(|ns| sv.lookup_prefix(ns));
    let qname = match prefix {
        Some(p) if !p.is_empty() => format!("{p}:SignatureValue"),
        _ => "SignatureValue".to_owned(),
    };
    let xmlns = match prefix {
        Some(p) if !p.is_empty() => format!("xmlns:{p}=\"{NS_DS}\""),
        _ => format!("xmlns=\"{NS_DS}\""),
    };
    let id = sv
        .attribute("Id")
        .map(|id| format!(" Id=\"{}\"", escape_attr(id)))
        .unwrap_or_default();
    let signature_value_c14n = format!(
        "<{qname} {xmlns}{id}>{}</{qname}>",
        sv.text().unwrap_or_default()
    );
    let certificates = child(sig, NS_DS, "KeyInfo")
        .map(|ki| {
            descendants(ki, NS_DS, "X509Certificate")
                .map(|c| decode_b64("ds:X509Certificate", &text_of(c)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let sp = descendants(sig, NS_XADES, "SignedProperties").next();
    let signed_properties = sp.map(|sp| {
        (
            sp.attribute("Id").unwrap_or_default().to_owned(),
            xml[sp.range()].to_owned(),
        )
    });
    let signing_cert_digest = sp
        .and_then(|sp| descendants(sp, NS_XADES, "CertDigest").next())
        .map(|cd| -> Result<_, String> {
            Ok((
                child(cd, NS_DS, "DigestMethod")
                    .and_then(|n| n.attribute("Algorithm"))
                    .unwrap_or_default()
                    .to_owned(),
                decode_b64(
                    "CertDigest/ds:DigestValue",
                    &child(cd, NS_DS, "DigestValue")
                        .map(text_of)
                        .unwrap_or_default(),
                )?,
            ))
        })
        .transpose()?;
    let signing_time = sp
        .and_then(|sp| descendants(sp, NS_XADES, "SigningTime").next())
        .map(text_of);
    let timestamps = descendants(sig, NS_XADES, "SignatureTimeStamp")
        .map(|ts| -> Result<_, String> {
            let c14n = child(ts, NS_DS, "CanonicalizationMethod")
                .and_then(|n| n.attribute("Algorithm"))
                .map(str::to_owned);
            let token = decode_b64(
                "xades:EncapsulatedTimeStamp",
                &child(ts, NS_XADES, "EncapsulatedTimeStamp")
                    .map(text_of)
                    .ok_or("a SignatureTimeStamp without EncapsulatedTimeStamp")?,
            )?;
            Ok((c14n, token))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(XmlSignature {
        signed_info: xml[si.range()].to_owned(),
        c14n_method,
        signature_method,
        references,
        signature_value,
        signature_value_c14n,
        certificates,
        signed_properties,
        signing_cert_digest,
        signing_time,
        timestamps,
    })
}

/// Escapes an attribute value as C14N renders it.
pub(crate) fn escape_attr(s: &str) -> String {
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

/// Whether `subtree` (an element as written) looks like what exclusive canonicalization of it
/// gives: its start tag declares its own namespace, no self-closing tags, no whitespace between
/// elements, no XML comments or processing instructions, no `'`-quoted attributes. This is a
/// necessary condition, not a canonicalizer: it holds for the subtrees esigd emits.
pub(crate) fn looks_canonical(subtree: &str, ns: &str) -> Result<(), String> {
    let start_end = subtree.find('>').ok_or("no start tag")?;
    let start = &subtree[..start_end];
    if !start.contains(&format!("=\"{ns}\"")) || !start.contains("xmlns") {
        return Err("its start tag does not declare its own namespace".into());
    }
    if subtree.contains("/>") {
        return Err("it has a self-closing tag".into());
    }
    if subtree.contains("<!--") || subtree.contains("<?") {
        return Err("it has a comment or a processing instruction".into());
    }
    if subtree.contains('\'') && subtree.split('<').any(|t| t.contains("='")) {
        return Err("an attribute is quoted with '".into());
    }
    let bytes = subtree.as_bytes();
    let mut i = 0;
    while let Some(gt) = bytes[i..].iter().position(|&b| b == b'>') {
        let after = i + gt + 1;
        let ws = bytes[after..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        if ws > 0 && bytes.get(after + ws) == Some(&b'<') {
            return Err("it has whitespace between elements".into());
        }
        i = after;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("my%20file.pdf").unwrap(), "my file.pdf");
        assert_eq!(
            percent_decode("dir/%C3%9Cn%C3%AF%20%26.txt").unwrap(),
            "dir/Ünï &.txt"
        );
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("%FF").is_err());
    }

    #[test]
    fn methods() {
        assert_eq!(
            signature_method("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"),
            Some((true, HashAlgorithm::Sha384))
        );
        assert_eq!(
            signature_method("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
            Some((false, HashAlgorithm::Sha256))
        );
        assert_eq!(signature_method("http://example/x"), None);
        assert_eq!(
            digest_method("http://www.w3.org/2001/04/xmlenc#sha512"),
            Some(HashAlgorithm::Sha512)
        );
    }

    #[test]
    fn canonical_shape() {
        let ns = NS_DS;
        assert!(
            looks_canonical(&format!("<ds:A xmlns:ds=\"{ns}\"><ds:B></ds:B></ds:A>"), ns).is_ok()
        );
        assert!(looks_canonical("<ds:A><ds:B></ds:B></ds:A>", ns).is_err());
        assert!(looks_canonical(&format!("<ds:A xmlns:ds=\"{ns}\"><ds:B/></ds:A>"), ns).is_err());
        assert!(
            looks_canonical(
                &format!("<ds:A xmlns:ds=\"{ns}\">\n  <ds:B></ds:B></ds:A>"),
                ns
            )
            .is_err()
        );
    }
}
