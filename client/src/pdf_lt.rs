//! PAdES B-LT and B-LTA on the client: validation data in the Document Security Store, and
//! document time-stamps (ETSI EN 319 142-1 §5.4 and §5.5, ISO 32000-2 §12.8.4 and §12.8.5).
//!
//! A B-T file (a signature with a signature time-stamp, see [`crate::pdf`]) becomes:
//!
//! - **B-LT** with [`add_dss`]: one more incremental update that adds (or extends) the catalog's
//!   `/DSS` dictionary with the certificates, CRLs and OCSP responses a validator needs later:
//!
//!   ```text
//!   << /Type /DSS /Certs [n 0 R …] /CRLs [n 0 R …] /OCSPs [n 0 R …] >>
//!   ```
//!
//!   each entry a stream holding one DER object. No `/VRI` is written: it is optional in
//!   PAdES (EN 319 142-1 §5.4.2.2), and neither pyHanko nor EU DSS needs it to find the data.
//! - **B-LTA** with [`add_document_timestamp`] then [`embed_document_timestamp`], after the
//!   DSS: a signature field whose value is
//!
//!   ```text
//!   << /Type /DocTimeStamp /Filter /Adobe.PPKLite /SubFilter /ETSI.RFC3161
//!      /ByteRange [0 a b c] /Contents <RFC 3161 TimeStampToken> >>
//!   ```
//!
//!   The token's message imprint is the SHA-256 of the `/ByteRange`, which covers the DSS.
//!   Adding a fresh DSS and another document time-stamp to a B-LTA file later renews the
//!   archive time-stamp chain (each time-stamp's validation data goes into the next DSS).
//!
//! Every step appends; the earlier bytes, and so the earlier signatures, are never rewritten.

use std::collections::BTreeSet;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use crate::Error;
use crate::pdf::{self, Entry, PreparedPdf, SigKind};

/// The `/Contents` reserve of a document time-stamp [`add_document_timestamp`] callers use by
/// default, in token bytes: room for an RSA-4096 TSA certificate with its chain.
pub const DEFAULT_TIMESTAMP_RESERVE: usize = 12 * 1024;

/// The largest DSS stream [`read_dss`] decodes (a CRL of a big CA fits easily).
const MAX_DSS_STREAM: usize = 64 * 1024 * 1024;

/// id-signedData (1.2.840.113549.1.7.2) as DER, with its tag and length.
const OID_SIGNED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
/// id-ct-TSTInfo (1.2.840.113549.1.9.16.1.4) as DER, with its tag and length.
const OID_TST_INFO: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];

/// Why a DSS or a document time-stamp could not be added.
#[derive(Debug, thiserror::Error)]
pub enum LtError {
    /// The PDF could not be read or updated (the same checks as for a signature).
    #[error(transparent)]
    Pdf(#[from] Error),
    /// An item of the validation data is not one DER object.
    #[error("{kind} #{index} of the validation data is not one DER object: {problem}")]
    NotDer {
        /// `certificate`, `CRL` or `OCSP response`.
        kind: &'static str,
        /// Its index in its list (from 0).
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The token to embed is not an RFC 3161 `TimeStampToken` (a CMS `SignedData` with
    /// `TSTInfo` content); a `TimeStampResp` must be unwrapped first.
    #[error(
        "not an RFC 3161 time-stamp token: {0} (give the TimeStampToken, not the whole \
         TimeStampResp)"
    )]
    NotTimestampToken(String),
    /// The last placeholder of the file is not a document time-stamp's.
    #[error(
        "the last signature placeholder of the file is not a document time-stamp \
         (/SubFilter /ETSI.RFC3161); was the file made by add_document_timestamp?"
    )]
    NotDocTimeStamp,
    /// The existing `/DSS` is not what ISO 32000-2 §12.8.4.3 describes.
    #[error("the existing /DSS is malformed: {0}")]
    Dss(String),
}

/// Validation material for the DSS: DER certificates, DER CRLs (`CertificateList`) and DER
/// OCSP responses (`OCSPResponse`, the whole response as the responder sent it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationData {
    /// Certificates (DER).
    pub certs: Vec<Vec<u8>>,
    /// CRLs (DER).
    pub crls: Vec<Vec<u8>>,
    /// OCSP responses (DER `OCSPResponse`).
    pub ocsps: Vec<Vec<u8>>,
}

impl ValidationData {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.crls.is_empty() && self.ocsps.is_empty()
    }
}

/// One signature or document time-stamp of a PDF, as [`signatures`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSignature {
    /// The signature dictionary's object id.
    pub id: ObjectId,
    /// `/Type`: `Sig` or `DocTimeStamp` (empty if absent).
    pub kind: String,
    /// `/SubFilter` (e.g. `ETSI.CAdES.detached`, `ETSI.RFC3161`).
    pub sub_filter: String,
    /// The DER in `/Contents` without the zero padding (a CMS `ContentInfo`; for a document
    /// time-stamp the `TimeStampToken`). Empty for a placeholder never filled.
    pub contents: Vec<u8>,
}

/// The DSS keys and what each holds, for messages.
const DSS_ARRAYS: [(&[u8], &str); 3] = [
    (b"Certs", "certificate"),
    (b"CRLs", "CRL"),
    (b"OCSPs", "OCSP response"),
];

/// Appends an incremental update that adds `data` to the catalog's `/DSS` (created if the file
/// has none; extended otherwise) and returns the new file, of which `pdf` is a byte prefix.
///
/// Items already in the DSS (same bytes) and duplicates within `data` are left out; when
/// nothing new remains, `pdf` is returned unchanged. Refuses a file with a signature that was
/// prepared but never embedded, and what [`crate::pdf::prepare`] refuses as unreadable.
pub fn add_dss(pdf: &[u8], data: &ValidationData) -> Result<Vec<u8>, LtError> {
    let lists = [&data.certs, &data.crls, &data.ocsps];
    for (list, (_, kind)) in lists.iter().zip(DSS_ARRAYS) {
        for (index, der) in list.iter().enumerate() {
            match pdf::der_sequence_len(der) {
                Ok(n) if n == der.len() => {}
                Ok(n) => {
                    return Err(LtError::NotDer {
                        kind,
                        index,
                        problem: format!("{} bytes after the {n}-byte object", der.len() - n),
                    });
                }
                Err(problem) => {
                    return Err(LtError::NotDer {
                        kind,
                        index,
                        problem,
                    });
                }
            }
        }
    }
    let (doc, root_id) = pdf::load_for_update(pdf)?;
    // Fails on a prepared but unfilled signature: a DSS after it would break its ByteRange.
    pdf::field_names(&doc, root_id)?;
    let existing = read_dss_of(&doc, root_id)?;
    let known = [&existing.certs, &existing.crls, &existing.ocsps];
    let mut new: [Vec<&Vec<u8>>; 3] = Default::default();
    for ((list, known), new) in lists.iter().zip(known).zip(&mut new) {
        let mut seen: BTreeSet<&[u8]> = known.iter().map(Vec::as_slice).collect();
        new.extend(list.iter().filter(|d| seen.insert(d.as_slice())));
    }
    if new.iter().all(Vec::is_empty) {
        return Ok(pdf.to_vec());
    }
    let size: usize = new.iter().flatten().map(|d| d.len() + 64).sum();

    let mut inc = pdf::start_update(pdf, doc);
    let mut refs: [Vec<Object>; 3] = Default::default();
    for (items, refs) in new.iter().zip(&mut refs) {
        for der in items {
            let stream = Stream::new(Dictionary::new(), (*der).clone()).with_compression(false);
            let id = inc
                .new_document
                .try_add_object(stream)
                .map_err(|e| Error::Write(e.to_string()))?;
            refs.push(Object::Reference(id));
        }
    }
    let catalog = pdf::new_dict_mut(&mut inc, root_id, "catalog (/Root)")?;
    let (holder, inline) = match pdf::entry(catalog, b"DSS") {
        Entry::Missing => {
            let mut dss = Dictionary::new();
            dss.set("Type", Object::Name(b"DSS".to_vec()));
            for (refs, (key, _)) in refs.into_iter().zip(DSS_ARRAYS) {
                if !refs.is_empty() {
                    dss.set(key, Object::Array(refs));
                }
            }
            let id = inc
                .new_document
                .try_add_object(dss)
                .map_err(|e| Error::Write(e.to_string()))?;
            pdf::new_dict_mut(&mut inc, root_id, "catalog (/Root)")?
                .set("DSS", Object::Reference(id));
            return Ok(pdf::finish_update(pdf, inc, size)?);
        }
        Entry::Direct => (root_id, Some(&b"DSS"[..])),
        Entry::Indirect(id) => (id, None),
    };
    for (refs, (key, _)) in refs.into_iter().zip(DSS_ARRAYS) {
        for r in refs {
            pdf::push_to_array(&mut inc, holder, inline, key, r, "/DSS")?;
        }
    }
    Ok(pdf::finish_update(pdf, inc, size)?)
}

/// The contents of the catalog's `/DSS` (empty if the file has none).
pub fn read_dss(pdf: &[u8]) -> Result<ValidationData, LtError> {
    let doc = Document::load_mem(pdf).map_err(|e| Error::Parse(e.to_string()))?;
    let root_id = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|e| pdf::structure("trailer /Root", e))?;
    read_dss_of(&doc, root_id)
}

fn read_dss_of(doc: &Document, root_id: ObjectId) -> Result<ValidationData, LtError> {
    let mut out = ValidationData::default();
    let catalog = doc
        .get_dictionary(root_id)
        .map_err(|e| pdf::structure("catalog (/Root)", e))?;
    let Ok(dss) = catalog.get(b"DSS") else {
        return Ok(out);
    };
    let dss = match doc.dereference(dss) {
        Ok((_, Object::Dictionary(d))) => d,
        Ok((_, Object::Null)) => return Ok(out),
        _ => return Err(LtError::Dss("not a dictionary".into())),
    };
    let lists = [&mut out.certs, &mut out.crls, &mut out.ocsps];
    for (list, (key, _)) in lists.into_iter().zip(DSS_ARRAYS) {
        let Ok(array) = dss.get(key) else {
            continue;
        };
        let Ok((_, Object::Array(array))) = doc.dereference(array) else {
            return Err(LtError::Dss(format!(
                "/{} is not an array",
                String::from_utf8_lossy(key)
            )));
        };
        for item in array {
            let Ok((_, Object::Stream(stream))) = doc.dereference(item) else {
                return Err(LtError::Dss(format!(
                    "/{} holds something other than a stream",
                    String::from_utf8_lossy(key)
                )));
            };
            let der = stream
                .get_plain_content_with_limit(MAX_DSS_STREAM)
                .map_err(|e| LtError::Dss(e.to_string()))?;
            list.push(der);
        }
    }
    Ok(out)
}

/// Appends an empty document time-stamp (`/Type /DocTimeStamp`, `/SubFilter /ETSI.RFC3161`)
/// in a new signature field `DocTimeStamp1`, `DocTimeStamp2`, … as an incremental update, with
/// `reserve` bytes for the token ([`crate::pdf::MIN_RESERVE`]..=[`crate::pdf::MAX_RESERVE`]).
///
/// The returned `digest` is the message imprint (SHA-256) to send to the TSA. Keep `bytes`
/// unchanged until [`embed_document_timestamp`]. Add the DSS first ([`add_dss`]): the
/// time-stamp then covers it.
pub fn add_document_timestamp(pdf: &[u8], reserve: usize) -> Result<PreparedPdf, LtError> {
    Ok(pdf::prepare_placeholder(
        pdf,
        &SigKind::DocTimeStamp,
        None,
        reserve,
    )?)
}

/// Embeds an RFC 3161 `TimeStampToken` (DER) into the placeholder [`add_document_timestamp`]
/// made, after checking that it is a token, that the placeholder is a document time-stamp's and
/// that the token's message imprint is the digest of the `/ByteRange` (the other checks of
/// [`crate::pdf::embed`] apply).
pub fn embed_document_timestamp(prepared: &[u8], token_der: &[u8]) -> Result<Vec<u8>, LtError> {
    let header = match pdf::der_sequence_len(token_der) {
        Ok(n) if n == token_der.len() => n - content_len(token_der),
        Ok(n) => {
            return Err(LtError::NotTimestampToken(format!(
                "{} bytes after the {n}-byte DER object",
                token_der.len() - n
            )));
        }
        Err(problem) => return Err(LtError::NotTimestampToken(problem)),
    };
    if !token_der[header..].starts_with(OID_SIGNED_DATA) {
        return Err(LtError::NotTimestampToken(
            "not a ContentInfo of type signedData".into(),
        ));
    }
    if pdf::find(token_der, OID_TST_INFO).is_none() {
        return Err(LtError::NotTimestampToken(
            "the SignedData does not hold a TSTInfo".into(),
        ));
    }
    let sub_filter = pdf::rfind(prepared, b"/SubFilter")
        .map(|i| skip_ws(&prepared[i + b"/SubFilter".len()..]))
        .ok_or(LtError::NotDocTimeStamp)?;
    if !sub_filter.starts_with(b"/ETSI.RFC3161") {
        return Err(LtError::NotDocTimeStamp);
    }
    Ok(pdf::embed(prepared, token_der)?)
}

/// The length of the contents of the DER object at the start of `der` (its header excluded).
fn content_len(der: &[u8]) -> usize {
    match der.get(1) {
        Some(&l) if l & 0x80 == 0 => usize::from(l),
        Some(&l) => der
            .iter()
            .skip(2)
            .take(usize::from(l & 0x7f))
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
        None => 0,
    }
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0'))
        .count();
    &s[n..]
}

/// The signatures and document time-stamps of `pdf`: every signature dictionary that a field
/// of the `/AcroForm` points to (`/FT /Sig` with a `/V`), in field order.
pub fn signatures(pdf: &[u8]) -> Result<Vec<EmbeddedSignature>, LtError> {
    let doc = Document::load_mem(pdf).map_err(|e| Error::Parse(e.to_string()))?;
    let root_id = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|e| pdf::structure("trailer /Root", e))?;
    let deref = |o: &Object| doc.dereference(o).ok().map(|(id, o)| (id, o.clone()));
    let mut out = Vec::new();
    let Some(acroform) = doc
        .get_dictionary(root_id)
        .ok()
        .and_then(|c| c.get(b"AcroForm").ok())
        .and_then(&deref)
    else {
        return Ok(out);
    };
    let Some((_, Object::Array(fields))) = acroform
        .1
        .as_dict()
        .ok()
        .and_then(|a| a.get(b"Fields").ok())
        .and_then(&deref)
    else {
        return Ok(out);
    };
    // Fields and their kids, depth first, without visiting an object twice.
    let mut stack: Vec<Object> = fields.into_iter().rev().collect();
    let mut visited = BTreeSet::new();
    while let Some(field) = stack.pop() {
        if let Object::Reference(id) = field
            && !visited.insert(id)
        {
            continue;
        }
        let Some((_, Object::Dictionary(field))) = deref(&field) else {
            continue;
        };
        if let Ok(Object::Array(kids)) = field.get(b"Kids") {
            stack.extend(kids.iter().rev().cloned());
        }
        if !matches!(field.get(b"FT"), Ok(Object::Name(n)) if n == b"Sig") {
            continue;
        }
        let Some((id, Object::Dictionary(sig))) = field.get(b"V").ok().and_then(&deref) else {
            continue;
        };
        let name = |key: &[u8]| match sig.get(key) {
            Ok(Object::Name(n)) => String::from_utf8_lossy(n).into_owned(),
            _ => String::new(),
        };
        let contents = match sig.get(b"Contents") {
            Ok(Object::String(c, _)) => match pdf::der_sequence_len(c) {
                Ok(n) => c[..n].to_vec(),
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        out.push(EmbeddedSignature {
            id: id.unwrap_or((0, 0)),
            kind: name(b"Type"),
            sub_filter: name(b"SubFilter"),
            contents,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdf::{MIN_RESERVE, PrepareOptions};
    use sha2::{Digest, Sha256};

    fn minimal_pdf() -> Vec<u8> {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        ];
        let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(b"xref\n0 4\n0000000000 65535 f \n");
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
        );
        out
    }

    /// A DER SEQUENCE holding `tag` bytes.
    fn der(tag: &[u8]) -> Vec<u8> {
        let mut v = vec![0x30, tag.len() as u8 + 2, 0x04, tag.len() as u8];
        v.extend_from_slice(tag);
        v
    }

    /// A fake token: ContentInfo(signedData) with the TSTInfo OID and the imprint.
    fn fake_token(digest: &[u8; 32]) -> Vec<u8> {
        let mut body = OID_SIGNED_DATA.to_vec();
        body.extend_from_slice(OID_TST_INFO);
        body.extend_from_slice(&[0x04, 0x20]);
        body.extend_from_slice(digest);
        let mut v = vec![0x30, 0x81, body.len() as u8];
        v.extend_from_slice(&body);
        v
    }

    #[test]
    fn dss_is_created_then_extended() {
        let original = minimal_pdf();
        let data = ValidationData {
            certs: vec![der(b"cert1"), der(b"cert2"), der(b"cert1")],
            crls: vec![der(b"crl")],
            ocsps: vec![],
        };
        let lt = add_dss(&original, &data).unwrap();
        assert!(lt.starts_with(&original));
        let read = read_dss(&lt).unwrap();
        assert_eq!(read.certs, vec![der(b"cert1"), der(b"cert2")]);
        assert_eq!(read.crls, vec![der(b"crl")]);
        assert!(read.ocsps.is_empty());
        let text = String::from_utf8_lossy(&lt[original.len()..]);
        assert!(text.contains("/Type/DSS"), "{text}");
        assert!(text.contains("/DSS "), "{text}");

        // Nothing new: unchanged.
        assert_eq!(add_dss(&lt, &data).unwrap(), lt);
        // Something new: one more update, the old entries stay.
        let more = ValidationData {
            certs: vec![der(b"cert3"), der(b"cert2")],
            ocsps: vec![der(b"ocsp")],
            ..ValidationData::default()
        };
        let lt2 = add_dss(&lt, &more).unwrap();
        assert!(lt2.starts_with(&lt));
        let read = read_dss(&lt2).unwrap();
        assert_eq!(
            read.certs,
            vec![der(b"cert1"), der(b"cert2"), der(b"cert3")]
        );
        assert_eq!(read.crls, vec![der(b"crl")]);
        assert_eq!(read.ocsps, vec![der(b"ocsp")]);
    }

    #[test]
    fn dss_refusals() {
        let bad = ValidationData {
            crls: vec![b"PEM?".to_vec()],
            ..ValidationData::default()
        };
        assert!(matches!(
            add_dss(&minimal_pdf(), &bad),
            Err(LtError::NotDer {
                kind: "CRL",
                index: 0,
                ..
            })
        ));
        let trailing = ValidationData {
            certs: vec![[der(b"x"), vec![0]].concat()],
            ..ValidationData::default()
        };
        assert!(matches!(
            add_dss(&minimal_pdf(), &trailing),
            Err(LtError::NotDer { .. })
        ));
        let good = ValidationData {
            certs: vec![der(b"c")],
            ..ValidationData::default()
        };
        let opts = PrepareOptions {
            reserve: MIN_RESERVE,
            ..PrepareOptions::default()
        };
        let prepared = pdf::prepare(&minimal_pdf(), &opts).unwrap();
        assert!(matches!(
            add_dss(&prepared.bytes, &good),
            Err(LtError::Pdf(Error::UnfilledSignature(_)))
        ));
        assert!(matches!(
            add_dss(b"not a pdf", &good),
            Err(LtError::Pdf(Error::NotPdf))
        ));
    }

    #[test]
    fn document_timestamp_round_trip() {
        let lt = add_dss(
            &minimal_pdf(),
            &ValidationData {
                certs: vec![der(b"c")],
                ..ValidationData::default()
            },
        )
        .unwrap();
        let p = add_document_timestamp(&lt, MIN_RESERVE).unwrap();
        assert!(p.bytes.starts_with(&lt));
        assert_eq!(p.field_name, "DocTimeStamp1");
        let text = String::from_utf8_lossy(&p.bytes[lt.len()..]);
        assert!(
            text.contains("/Type/DocTimeStamp") && text.contains("/SubFilter/ETSI.RFC3161"),
            "{text}"
        );
        assert!(!text.contains("/M("), "{text}");
        let [_, a, b, _] = p.byte_range;
        let mut h = Sha256::new();
        h.update(&p.bytes[..a]);
        h.update(&p.bytes[b..]);
        assert_eq!(p.digest, <[u8; 32]>::from(h.finalize()));

        // A TimeStampResp-like object, or a token for something else, is refused.
        assert!(matches!(
            embed_document_timestamp(&p.bytes, &der(&p.digest)),
            Err(LtError::NotTimestampToken(_))
        ));
        assert!(matches!(
            embed_document_timestamp(&p.bytes, &fake_token(&[7; 32])),
            Err(LtError::Pdf(Error::WrongDigest))
        ));
        let done = embed_document_timestamp(&p.bytes, &fake_token(&p.digest)).unwrap();
        assert_eq!(done.len(), p.bytes.len());
        let sigs = signatures(&done).unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].kind, "DocTimeStamp");
        assert_eq!(sigs[0].sub_filter, "ETSI.RFC3161");
        assert_eq!(sigs[0].contents, fake_token(&p.digest));
        // A second archive time-stamp goes into its own field.
        let p2 = add_document_timestamp(&done, MIN_RESERVE).unwrap();
        assert_eq!(p2.field_name, "DocTimeStamp2");
    }

    #[test]
    fn a_signature_placeholder_is_not_a_timestamp_placeholder() {
        let opts = PrepareOptions {
            reserve: MIN_RESERVE,
            ..PrepareOptions::default()
        };
        let p = pdf::prepare(&minimal_pdf(), &opts).unwrap();
        assert!(matches!(
            embed_document_timestamp(&p.bytes, &fake_token(&p.digest)),
            Err(LtError::NotDocTimeStamp)
        ));
    }
}
