//! PAdES on the client: prepare a PDF for a signature, embed the CMS esigd returns.
//!
//! [`prepare`] appends one incremental update (ISO 32000-1 §7.5.6) to the PDF, with lopdf's
//! [`IncrementalDocument`]: an invisible signature field (a merged field and widget on the first
//! page), the `/AcroForm` entry for it (created, or the existing one extended, so earlier
//! signatures stay valid), and a signature dictionary
//!
//! ```text
//! << /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached
//!    /ByteRange [0 a b c] /Contents <00…00> /M (D:YYYYMMDDHHmmSSZ) /Reason (…) /Location (…) >>
//! ```
//!
//! The original bytes are never rewritten: they are a byte prefix of the result. The update keeps
//! the file's cross-reference kind (a classic table after a table, a cross-reference stream after
//! a stream). `/ByteRange` is patched in place and the digest is the SHA-256 of the two ranges.
//! The returned bytes *are* the final file except for the `/Contents` hex: keep them unchanged
//! until [`embed`] (`/M` and the offsets make a second prepare differ).
//!
//! [`embed`] writes the DER CMS as hex into the placeholder after checking that the
//! `/ByteRange` written in the file describes the placeholder exactly, that the placeholder is
//! empty, that the CMS fits and that its message digest is the digest of the `/ByteRange`.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use lopdf::xref::XrefRecovery;
use lopdf::{Dictionary, Document, IncrementalDocument, Object, ObjectId, Stream, StringFormat};
use sha2::{Digest, Sha256};

use crate::Error;

/// The `/Contents` reserve [`PrepareOptions::default`] uses, in CMS bytes (the hex placeholder is
/// twice as long): room for an RSA-4096 chain plus a time-stamp token with its own chain.
pub const DEFAULT_RESERVE: usize = 16 * 1024;
/// The smallest `/Contents` reserve [`prepare`] accepts, in bytes.
pub const MIN_RESERVE: usize = 1024;
/// The largest `/Contents` reserve [`prepare`] accepts, in bytes.
pub const MAX_RESERVE: usize = 1024 * 1024;

/// The `/ByteRange` placeholder: four integers, the last three as wide as any offset can be.
const BYTE_RANGE_PLACEHOLDER: &[u8] = b"0 9999999999 9999999999 9999999999";
const PLACEHOLDER_OFFSET: i64 = 9_999_999_999;

/// `/F` of the widget: Print (4) and Locked (128).
const WIDGET_FLAGS: i64 = 4 | 128;
/// `/SigFlags`: SignaturesExist (1) and AppendOnly (2).
const SIG_FLAGS: i64 = 1 | 2;

/// What [`prepare`] writes besides the placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareOptions {
    /// The signature field's name (`/T`); `None` picks the first free `Signature1`,
    /// `Signature2`, … A name must not contain `.` and must not be taken.
    pub field_name: Option<String>,
    /// `/Reason`, if any.
    pub reason: Option<String>,
    /// `/Location`, if any.
    pub location: Option<String>,
    /// The claimed signing time, written as `/M` (PAdES puts it here, not in the CMS).
    pub signing_time: SystemTime,
    /// Bytes reserved for the DER CMS in `/Contents` ([`MIN_RESERVE`]..=[`MAX_RESERVE`]).
    pub reserve: usize,
}

impl Default for PrepareOptions {
    /// An automatic field name, no reason or location, signing time now, [`DEFAULT_RESERVE`].
    fn default() -> Self {
        PrepareOptions {
            field_name: None,
            reason: None,
            location: None,
            signing_time: SystemTime::now(),
            reserve: DEFAULT_RESERVE,
        }
    }
}

/// A PDF with an empty signature, waiting for its CMS.
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedPdf {
    /// The whole file: the original bytes, then the update. Only the `/Contents` hex (between
    /// `byte_range[1]` and `byte_range[2]`) changes when the CMS is embedded.
    pub bytes: Vec<u8>,
    /// `/ByteRange` as written in the file: `[0, a, b, len - b]`, where `a` is the offset of
    /// `<` of `/Contents` and `b` the offset just after its `>`.
    pub byte_range: [usize; 4],
    /// SHA-256 of `bytes[..a]` followed by `bytes[b..]`: what esigd signs (format `PAdES`).
    pub digest: [u8; 32],
    /// The signature field's name.
    pub field_name: String,
}

impl std::fmt::Debug for PreparedPdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPdf")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("byte_range", &self.byte_range)
            .field("digest", &hex::encode(self.digest))
            .field("field_name", &self.field_name)
            .finish()
    }
}

/// Appends an empty PAdES signature to `original` as an incremental update (see the module
/// documentation) and returns the prepared file with the digest to sign.
///
/// Refuses a file that is not a PDF, an encrypted PDF, a PDF whose cross-reference data had to
/// be rebuilt, a PDF certified with "no changes allowed" (DocMDP `/P 1`), a PDF that still has
/// a prepared but never filled signature, a PDF without pages, a taken field name and a reserve
/// out of range.
pub fn prepare(original: &[u8], options: &PrepareOptions) -> Result<PreparedPdf, Error> {
    prepare_placeholder(
        original,
        &SigKind::Signature(options),
        options.field_name.as_deref(),
        options.reserve,
    )
}

/// The kind of signature dictionary [`prepare_placeholder`] writes.
pub(crate) enum SigKind<'a> {
    /// A PAdES signature (`/Type /Sig`, `/SubFilter /ETSI.CAdES.detached`) with `/M` and the
    /// optional `/Reason` and `/Location` of the options.
    Signature(&'a PrepareOptions),
    /// A document time-stamp (`/Type /DocTimeStamp`, `/SubFilter /ETSI.RFC3161`; PAdES B-LTA).
    DocTimeStamp,
}

impl SigKind<'_> {
    /// The prefix of automatic field names (`Signature1`, `DocTimeStamp1`, …).
    fn field_prefix(&self) -> &'static str {
        match self {
            SigKind::Signature(_) => "Signature",
            SigKind::DocTimeStamp => "DocTimeStamp",
        }
    }
}

/// Appends a signature field whose value is an empty signature dictionary of `kind` (a
/// `/Contents` placeholder of `reserve` bytes) to `original` as an incremental update; returns
/// the prepared file with the digest of its `/ByteRange`. Shared by [`prepare`] and the
/// document time-stamp of [`crate::pdf_lt`]; the checks are those [`prepare`] documents.
pub(crate) fn prepare_placeholder(
    original: &[u8],
    kind: &SigKind<'_>,
    field_name: Option<&str>,
    reserve: usize,
) -> Result<PreparedPdf, Error> {
    if !(MIN_RESERVE..=MAX_RESERVE).contains(&reserve) {
        return Err(Error::Reserve {
            min: MIN_RESERVE,
            max: MAX_RESERVE,
            asked: reserve,
        });
    }
    let (doc, root_id) = load_for_update(original)?;
    // ISO 32000-2 §12.8.2.2: DSS and document time-stamp updates are allowed at every DocMDP
    // level; another signature is not at level 1.
    if matches!(kind, SigKind::Signature(_)) && docmdp_permission(&doc, root_id) == Some(1) {
        return Err(Error::Certified);
    }
    let page_id = doc.page_iter().next().ok_or(Error::NoPage)?;
    let taken = field_names(&doc, root_id)?;
    let field_name = match field_name {
        Some(name) => {
            check_field_name(name, &taken)?;
            name.to_owned()
        }
        None => (1u32..)
            .map(|i| format!("{}{i}", kind.field_prefix()))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| kind.field_prefix().into()),
    };

    let mut inc = start_update(original, doc);
    let widget_id = add_signature_objects(&mut inc, kind, reserve, &field_name, page_id)?;
    add_annotation(&mut inc, page_id, widget_id)?;
    add_to_acroform(&mut inc, root_id, widget_id)?;

    let mut bytes = finish_update(original, inc, 2 * reserve + 8192)?;
    let (byte_range, digest) = fill_byte_range(&mut bytes, original.len(), reserve)?;
    Ok(PreparedPdf {
        bytes,
        byte_range,
        digest,
        field_name,
    })
}

/// Embeds the DER CMS (a `ContentInfo` with detached `SignedData`) into the `/Contents`
/// placeholder of a file that [`prepare`] made, and returns the signed file (same length, only
/// the hex changed).
///
/// Checks, before writing anything: the last `/ByteRange` of the file is `[0 a b c]` with
/// `b + c` the file length and `a..b` exactly a hex string of zeros (an empty placeholder), the
/// CMS is one DER object that fits, and the CMS carries the SHA-256 (or SHA-384/512) of the
/// ranges as an OCTET STRING (its message-digest attribute).
pub fn embed(prepared: &[u8], cms_der: &[u8]) -> Result<Vec<u8>, Error> {
    let key = rfind(prepared, b"/ByteRange")
        .ok_or_else(|| Error::NoPlaceholder("the file has no /ByteRange".into()))?;
    let values = parse_int_array(&prepared[key + b"/ByteRange".len()..]).ok_or_else(|| {
        Error::NoPlaceholder("the last /ByteRange is not an integer array".into())
    })?;
    let [zero, a, b, c]: [u64; 4] = values.try_into().map_err(|v: Vec<u64>| {
        Error::ByteRangeMismatch(format!("{} integers instead of 4", v.len()))
    })?;
    if a == PLACEHOLDER_OFFSET as u64 {
        return Err(Error::ByteRangeMismatch(
            "the /ByteRange is still the unpatched placeholder".into(),
        ));
    }
    let len = prepared.len() as u64;
    if zero != 0 || a >= b || b.checked_add(c) != Some(len) {
        return Err(Error::ByteRangeMismatch(format!(
            "[{zero} {a} {b} {c}] does not cover a {len}-byte file with one gap"
        )));
    }
    let (a, b) = (a as usize, b as usize);
    if b - a < 4 || prepared[a] != b'<' || prepared[b - 1] != b'>' {
        return Err(Error::ByteRangeMismatch(format!(
            "the gap {a}..{b} is not a hex string <…>"
        )));
    }
    let hex_area = &prepared[a + 1..b - 1];
    if !hex_area.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::ByteRangeMismatch(format!(
            "the gap {a}..{b} is not a hex string <…>"
        )));
    }
    if hex_area.iter().any(|&h| h != b'0') {
        return Err(Error::AlreadySigned);
    }
    let reserve = hex_area.len() / 2;
    check_der(cms_der)?;
    if cms_der.len() > reserve {
        return Err(Error::CmsTooBig {
            cms: cms_der.len(),
            reserve,
        });
    }
    if !signs_ranges(cms_der, &prepared[..a], &prepared[b..]) {
        return Err(Error::WrongDigest);
    }
    let mut signed = prepared.to_vec();
    let hex = hex::encode_upper(cms_der);
    signed[a + 1..a + 1 + hex.len()].copy_from_slice(hex.as_bytes());
    Ok(signed)
}

/// `/M` for `time`: `D:YYYYMMDDHHmmSSZ` (UTC).
pub fn pdf_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "D:{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn structure(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Structure {
        what,
        problem: e.to_string(),
    }
}

/// Parses a PDF that is to get an incremental update and returns it with its catalog's id.
/// Refuses what is not a PDF, an encrypted PDF and a PDF whose cross-reference data had to be
/// rebuilt.
pub(crate) fn load_for_update(original: &[u8]) -> Result<(Document, ObjectId), Error> {
    let head = &original[..original.len().min(1024)];
    if find(head, b"%PDF-").is_none() {
        return Err(Error::NotPdf);
    }
    let doc = Document::load_mem(original).map_err(|e| Error::Parse(e.to_string()))?;
    if doc.trailer.has(b"Encrypt") || doc.encryption_state.is_some() {
        return Err(Error::Encrypted);
    }
    if matches!(doc.xref_recovery, Some(XrefRecovery::Reconstructed)) || doc.xref_start == 0 {
        return Err(Error::Damaged(
            "the table was rebuilt by scanning the file for objects".into(),
        ));
    }
    let root_id = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|e| structure("trailer /Root", e))?;
    Ok((doc, root_id))
}

/// An empty incremental update on top of `original` (parsed as `doc`).
pub(crate) fn start_update(original: &[u8], doc: Document) -> IncrementalDocument {
    let mut inc = IncrementalDocument::create_from(original.to_vec(), doc);
    clean_trailer(&mut inc.new_document.trailer);
    inc
}

/// Writes `original` followed by the update and checks that `original` is a byte prefix of
/// the result. `extra` is a capacity hint for the update's size.
pub(crate) fn finish_update(
    original: &[u8],
    mut inc: IncrementalDocument,
    extra: usize,
) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(original.len() + extra);
    inc.save_to(&mut bytes)
        .map_err(|e| Error::Write(e.to_string()))?;
    drop(inc);
    if !bytes.starts_with(original) {
        return Err(Error::Write(
            "the original bytes are not a prefix of the output".into(),
        ));
    }
    Ok(bytes)
}

/// The `/P` of the document's certification signature (`/Perms /DocMDP`), if it has one
/// (ISO 32000-1 §12.8.2.2; absent means 2).
fn docmdp_permission(doc: &Document, root_id: ObjectId) -> Option<i64> {
    fn deref<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
        doc.dereference(o).ok().map(|(_, o)| o)
    }
    let deref = |o| deref(doc, o);
    let catalog = doc.get_dictionary(root_id).ok()?;
    let perms = deref(catalog.get(b"Perms").ok()?)?.as_dict().ok()?;
    let sig = deref(perms.get(b"DocMDP").ok()?)?.as_dict().ok()?;
    let refs = deref(sig.get(b"Reference").ok()?)?.as_array().ok()?;
    let p = refs.iter().find_map(|r| {
        let r = deref(r)?.as_dict().ok()?;
        if !matches!(r.get(b"TransformMethod"), Ok(Object::Name(n)) if n == b"DocMDP") {
            return None;
        }
        let params = r.get(b"TransformParams").ok().and_then(&deref);
        Some(
            params
                .and_then(|p| p.as_dict().ok())
                .and_then(|p| p.get(b"P").ok())
                .and_then(|p| p.as_i64().ok())
                .unwrap_or(2),
        )
    });
    Some(p.unwrap_or(2))
}

/// The names (`/T`) of the top-level fields of the existing `/AcroForm`.
pub(crate) fn field_names(doc: &Document, root_id: ObjectId) -> Result<BTreeSet<String>, Error> {
    let mut names = BTreeSet::new();
    let catalog = doc
        .get_dictionary(root_id)
        .map_err(|e| structure("catalog (/Root)", e))?;
    let Ok(acroform) = catalog.get(b"AcroForm") else {
        return Ok(names);
    };
    let (_, acroform) = doc
        .dereference(acroform)
        .map_err(|e| structure("/AcroForm", e))?;
    let Ok(acroform) = acroform.as_dict() else {
        return Err(structure("/AcroForm", "not a dictionary"));
    };
    let Ok(fields) = acroform.get(b"Fields") else {
        return Ok(names);
    };
    let (_, fields) = doc
        .dereference(fields)
        .map_err(|e| structure("/AcroForm /Fields", e))?;
    let fields = fields
        .as_array()
        .map_err(|_| structure("/AcroForm /Fields", "not an array"))?;
    for field in fields {
        let Ok((_, Object::Dictionary(field))) = doc.dereference(field) else {
            continue;
        };
        let name = field
            .get(b"T")
            .and_then(lopdf::decode_text_string)
            .unwrap_or_default();
        if is_unfilled_signature(doc, field) {
            return Err(Error::UnfilledSignature(name));
        }
        names.insert(name);
    }
    Ok(names)
}

/// Whether `field` is a signature field whose `/V` has a `/Contents` of zeros only: a prepared
/// signature that was never embedded.
fn is_unfilled_signature(doc: &Document, field: &Dictionary) -> bool {
    let Ok(v) = field.get(b"V") else {
        return false;
    };
    let Ok((_, Object::Dictionary(sig))) = doc.dereference(v) else {
        return false;
    };
    matches!(field.get(b"FT"), Ok(Object::Name(n)) if n == b"Sig")
        && matches!(sig.get(b"Contents"), Ok(Object::String(c, _)) if c.iter().all(|&b| b == 0))
}

fn check_field_name(name: &str, taken: &BTreeSet<String>) -> Result<(), Error> {
    let problem = if name.is_empty() {
        "empty"
    } else if name.contains('.') {
        "contains '.', which separates the parts of a field's full name"
    } else if taken.contains(name) {
        "a field with this name already exists in the PDF"
    } else {
        return Ok(());
    };
    Err(Error::FieldName {
        name: name.to_owned(),
        problem,
    })
}

/// Drops trailer entries that described the previous section's cross-reference data (lopdf
/// starts the new trailer as a copy of the last one): a stream's `/DecodeParms` and `/Filter`
/// would otherwise be read as the new cross-reference stream's, and a hybrid file's `/XRefStm`
/// would point the new section at the old stream.
fn clean_trailer(trailer: &mut Dictionary) {
    for key in [
        &b"XRefStm"[..],
        b"DecodeParms",
        b"Filter",
        b"Length",
        b"Index",
        b"W",
        b"Type",
    ] {
        trailer.remove(key);
    }
}

/// Adds the empty appearance, the signature dictionary and the widget; returns the widget's id.
fn add_signature_objects(
    inc: &mut IncrementalDocument,
    kind: &SigKind<'_>,
    reserve: usize,
    field_name: &str,
    page_id: ObjectId,
) -> Result<ObjectId, Error> {
    let doc = &mut inc.new_document;
    let mut ap = Dictionary::new();
    ap.set("Type", Object::Name(b"XObject".to_vec()));
    ap.set("Subtype", Object::Name(b"Form".to_vec()));
    ap.set("BBox", zero_rect());
    let ap_id = doc
        .try_add_object(Stream::new(ap, Vec::new()))
        .map_err(|e| Error::Write(e.to_string()))?;

    let mut sig = Dictionary::new();
    match kind {
        SigKind::Signature(options) => {
            sig.set("Type", Object::Name(b"Sig".to_vec()));
            sig.set("Filter", Object::Name(b"Adobe.PPKLite".to_vec()));
            sig.set("SubFilter", Object::Name(b"ETSI.CAdES.detached".to_vec()));
            sig.set(
                "M",
                Object::String(
                    pdf_date(options.signing_time).into_bytes(),
                    StringFormat::Literal,
                ),
            );
            if let Some(reason) = &options.reason {
                sig.set("Reason", lopdf::text_string(reason));
            }
            if let Some(location) = &options.location {
                sig.set("Location", lopdf::text_string(location));
            }
        }
        SigKind::DocTimeStamp => {
            sig.set("Type", Object::Name(b"DocTimeStamp".to_vec()));
            sig.set("Filter", Object::Name(b"Adobe.PPKLite".to_vec()));
            sig.set("SubFilter", Object::Name(b"ETSI.RFC3161".to_vec()));
        }
    }
    sig.set(
        "ByteRange",
        Object::Array(vec![
            Object::Integer(0),
            Object::Integer(PLACEHOLDER_OFFSET),
            Object::Integer(PLACEHOLDER_OFFSET),
            Object::Integer(PLACEHOLDER_OFFSET),
        ]),
    );
    sig.set(
        "Contents",
        Object::String(vec![0; reserve], StringFormat::Hexadecimal),
    );
    let sig_id = doc
        .try_add_object(sig)
        .map_err(|e| Error::Write(e.to_string()))?;

    let mut appearance = Dictionary::new();
    appearance.set("N", Object::Reference(ap_id));
    let mut widget = Dictionary::new();
    widget.set("Type", Object::Name(b"Annot".to_vec()));
    widget.set("Subtype", Object::Name(b"Widget".to_vec()));
    widget.set("FT", Object::Name(b"Sig".to_vec()));
    widget.set("T", lopdf::text_string(field_name));
    widget.set("V", Object::Reference(sig_id));
    widget.set("F", Object::Integer(WIDGET_FLAGS));
    widget.set("Rect", zero_rect());
    widget.set("P", Object::Reference(page_id));
    widget.set("AP", Object::Dictionary(appearance));
    doc.try_add_object(widget)
        .map_err(|e| Error::Write(e.to_string()))
}

fn zero_rect() -> Object {
    Object::Array(vec![Object::Integer(0); 4])
}

/// Where an entry of a dictionary lives: missing, direct, or in another object.
pub(crate) enum Entry {
    /// No entry, or `null`.
    Missing,
    /// The value is in the dictionary itself.
    Direct,
    /// The value is the object with this id.
    Indirect(ObjectId),
}

pub(crate) fn entry(dict: &Dictionary, key: &[u8]) -> Entry {
    match dict.get(key) {
        Err(_) | Ok(Object::Null) => Entry::Missing,
        Ok(Object::Reference(id)) => Entry::Indirect(*id),
        Ok(_) => Entry::Direct,
    }
}

pub(crate) fn new_dict_mut<'a>(
    inc: &'a mut IncrementalDocument,
    id: ObjectId,
    what: &'static str,
) -> Result<&'a mut Dictionary, Error> {
    inc.opt_clone_object_to_new_document(id)
        .map_err(|e| structure(what, e))?;
    inc.new_document
        .get_object_mut(id)
        .and_then(Object::as_dict_mut)
        .map_err(|e| structure(what, e))
}

/// Appends `item` to the array at `key` of a dictionary, creating the array if missing. The
/// dictionary is the object `holder`, or its direct dictionary entry `inline`. Only what changes
/// is copied into the update: the array object when the array is indirect, else the holder.
pub(crate) fn push_to_array(
    inc: &mut IncrementalDocument,
    holder: ObjectId,
    inline: Option<&[u8]>,
    key: &[u8],
    item: Object,
    what: &'static str,
) -> Result<(), Error> {
    // Look before cloning: an indirect array is changed without rewriting its holder.
    let found = {
        let doc = if inc.new_document.has_object(holder) {
            &inc.new_document
        } else {
            inc.get_prev_documents()
        };
        let dict = doc.get_dictionary(holder).map_err(|e| structure(what, e))?;
        let dict = match inline {
            None => dict,
            Some(k) => dict
                .get(k)
                .and_then(Object::as_dict)
                .map_err(|_| structure(what, "not a dictionary"))?,
        };
        entry(dict, key)
    };
    match found {
        Entry::Indirect(id) => {
            inc.opt_clone_object_to_new_document(id)
                .map_err(|e| structure(what, e))?;
            inc.new_document
                .get_object_mut(id)
                .and_then(Object::as_array_mut)
                .map(|a| a.push(item))
                .map_err(|_| structure(what, "not an array"))
        }
        Entry::Missing => {
            holder_dict(inc, holder, inline, what)?.set(key, Object::Array(vec![item]));
            Ok(())
        }
        Entry::Direct => holder_dict(inc, holder, inline, what)?
            .get_mut(key)
            .and_then(Object::as_array_mut)
            .map(|a| a.push(item))
            .map_err(|_| structure(what, "not an array")),
    }
}

/// The dictionary object `holder` (cloned into the update), or its direct dictionary entry
/// `inline`.
pub(crate) fn holder_dict<'a>(
    inc: &'a mut IncrementalDocument,
    holder: ObjectId,
    inline: Option<&[u8]>,
    what: &'static str,
) -> Result<&'a mut Dictionary, Error> {
    let dict = new_dict_mut(inc, holder, what)?;
    match inline {
        None => Ok(dict),
        Some(key) => dict
            .get_mut(key)
            .and_then(Object::as_dict_mut)
            .map_err(|_| structure(what, "not a dictionary")),
    }
}

fn add_annotation(
    inc: &mut IncrementalDocument,
    page_id: ObjectId,
    widget_id: ObjectId,
) -> Result<(), Error> {
    push_to_array(
        inc,
        page_id,
        None,
        b"Annots",
        Object::Reference(widget_id),
        "first page's /Annots",
    )
}

fn add_to_acroform(
    inc: &mut IncrementalDocument,
    root_id: ObjectId,
    widget_id: ObjectId,
) -> Result<(), Error> {
    let catalog = new_dict_mut(inc, root_id, "catalog (/Root)")?;
    let (holder, inline) = match entry(catalog, b"AcroForm") {
        Entry::Missing => {
            let mut acroform = Dictionary::new();
            acroform.set("Fields", Object::Array(vec![Object::Reference(widget_id)]));
            acroform.set("SigFlags", Object::Integer(SIG_FLAGS));
            let id = inc
                .new_document
                .try_add_object(acroform)
                .map_err(|e| Error::Write(e.to_string()))?;
            new_dict_mut(inc, root_id, "catalog (/Root)")?.set("AcroForm", Object::Reference(id));
            return Ok(());
        }
        Entry::Direct => (root_id, Some(&b"AcroForm"[..])),
        Entry::Indirect(id) => (id, None),
    };
    push_to_array(
        inc,
        holder,
        inline,
        b"Fields",
        Object::Reference(widget_id),
        "/AcroForm /Fields",
    )?;
    let acroform = holder_dict(inc, holder, inline, "/AcroForm")?;
    let flags = match acroform.get(b"SigFlags") {
        Ok(Object::Integer(f)) => *f,
        _ => 0,
    };
    acroform.set("SigFlags", Object::Integer(flags | SIG_FLAGS));
    Ok(())
}

/// Finds the placeholders in the update (after `original_len`), patches `/ByteRange` and
/// returns it with the digest of the ranges.
fn fill_byte_range(
    bytes: &mut [u8],
    original_len: usize,
    reserve: usize,
) -> Result<([usize; 4], [u8; 32]), Error> {
    let update = &bytes[original_len..];
    let mut contents = Vec::with_capacity(2 * reserve + 2);
    contents.push(b'<');
    contents.resize(2 * reserve + 1, b'0');
    contents.push(b'>');
    let a = original_len
        + find(update, &contents)
            .ok_or_else(|| Error::Write("the /Contents placeholder is not in the update".into()))?;
    let b = a + contents.len();
    if find(&bytes[b..], &contents).is_some() {
        return Err(Error::Write(
            "the /Contents placeholder appears twice".into(),
        ));
    }
    let len = bytes.len();
    let c = len - b;
    let key = find(update, b"/ByteRange")
        .ok_or_else(|| Error::Write("the /ByteRange placeholder is not in the update".into()))?
        + original_len;
    let open = key
        + b"/ByteRange".len()
        + bytes[key + b"/ByteRange".len()..]
            .iter()
            .position(|&x| x == b'[')
            .ok_or_else(|| Error::Write("no [ after /ByteRange".into()))?;
    let start = open + 1;
    let end = start + BYTE_RANGE_PLACEHOLDER.len();
    if bytes.get(start..end) != Some(BYTE_RANGE_PLACEHOLDER) || bytes.get(end) != Some(&b']') {
        return Err(Error::Write(
            "the /ByteRange placeholder is not written as expected".into(),
        ));
    }
    if u64::try_from(len).map_or(true, |l| l >= PLACEHOLDER_OFFSET as u64) {
        return Err(Error::Write(
            "the file is too large for a /ByteRange".into(),
        ));
    }
    let mut text = format!("0 {a} {b} {c}").into_bytes();
    text.resize(BYTE_RANGE_PLACEHOLDER.len(), b' ');
    bytes[start..end].copy_from_slice(&text);

    let mut h = Sha256::new();
    h.update(&bytes[..a]);
    h.update(&bytes[b..]);
    Ok(([0, a, b, c], h.finalize().into()))
}

/// Parses `[ n n … ]` (PDF whitespace between tokens) at the start of `s` after whitespace.
fn parse_int_array(s: &[u8]) -> Option<Vec<u64>> {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0');
    let s = &s[s.iter().position(|c| !ws(c))?..];
    let s = s.strip_prefix(b"[")?;
    let close = s.iter().position(|&c| c == b']')?;
    let inner = std::str::from_utf8(&s[..close]).ok()?;
    inner
        .split(|c: char| c.is_ascii_whitespace() || c == '\0')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect()
}

/// Checks that `der` is exactly one DER SEQUENCE (a CMS `ContentInfo` is one).
fn check_der(der: &[u8]) -> Result<(), Error> {
    match der_sequence_len(der) {
        Ok(n) if n == der.len() => Ok(()),
        Ok(n) => Err(Error::NotCms(format!(
            "the DER object has {n} bytes but the input has {}",
            der.len()
        ))),
        Err(problem) => Err(Error::NotCms(problem)),
    }
}

/// The length (header included) of the DER SEQUENCE at the start of `der`, which may be
/// followed by other bytes (a `/Contents` value is padded with zeros).
pub(crate) fn der_sequence_len(der: &[u8]) -> Result<usize, String> {
    let [tag, first, rest @ ..] = der else {
        return Err(format!("{} bytes", der.len()));
    };
    if *tag != 0x30 {
        return Err(format!(
            "starts with 0x{tag:02x}, not a SEQUENCE (0x30); base64 or PEM must be decoded first"
        ));
    }
    let (len, header) = if first & 0x80 == 0 {
        (usize::from(*first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad DER length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let total = header + len;
    if total > der.len() {
        return Err(format!(
            "the DER object has {total} bytes but the input has {}",
            der.len()
        ));
    }
    Ok(total)
}

/// Whether `cms` carries, as an OCTET STRING, the SHA-256, SHA-384 or SHA-512 of `head ‖ tail`.
fn signs_ranges(cms: &[u8], head: &[u8], tail: &[u8]) -> bool {
    fn octets<D: Digest>(head: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        h.update(head);
        h.update(tail);
        let d = h.finalize();
        let mut v = vec![0x04, d.len() as u8];
        v.extend_from_slice(&d);
        v
    }
    find(cms, &octets::<Sha256>(head, tail)).is_some()
        || find(cms, &octets::<sha2::Sha384>(head, tail)).is_some()
        || find(cms, &octets::<sha2::Sha512>(head, tail)).is_some()
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A one-page PDF with a classic cross-reference table (offsets computed).
    pub(crate) fn minimal_pdf() -> Vec<u8> {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>".to_owned(),
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

    /// [`minimal_pdf`] certified with DocMDP `/P p` (the certification signature itself is a
    /// stub: only the permission matters here).
    fn certified_pdf(p: i64) -> Vec<u8> {
        let original = minimal_pdf();
        let at = rfind(&original, b"startxref\n").unwrap() + 10;
        let xref = String::from_utf8_lossy(&original[at..])
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let mut out = original.clone();
        let o4 = out.len();
        out.extend_from_slice(
            format!(
                "4 0 obj\n<< /Type /Sig /Reference [<< /Type /SigRef /TransformMethod /DocMDP \
                 /TransformParams << /Type /TransformParams /P {p} /V /1.2 >> >>] >>\nendobj\n"
            )
            .as_bytes(),
        );
        let o1 = out.len();
        out.extend_from_slice(
            b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /Perms << /DocMDP 4 0 R >> >>\nendobj\n",
        );
        let x = out.len();
        out.extend_from_slice(
            format!(
                "xref\n1 1\n{o1:010} 00000 n \n4 1\n{o4:010} 00000 n \ntrailer\n\
                 << /Size 5 /Root 1 0 R /Prev {xref} >>\nstartxref\n{x}\n%%EOF\n"
            )
            .as_bytes(),
        );
        out
    }

    fn opts() -> PrepareOptions {
        PrepareOptions {
            signing_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            reserve: MIN_RESERVE,
            ..PrepareOptions::default()
        }
    }

    /// A DER SEQUENCE of `n` bytes in all holding `04 20 digest`.
    fn fake_cms(digest: &[u8; 32], n: usize) -> Vec<u8> {
        let body_len = n - 4;
        let mut v = vec![
            0x30,
            0x82,
            (body_len >> 8) as u8,
            body_len as u8,
            0x04,
            0x20,
        ];
        v.extend_from_slice(digest);
        v.resize(n, 0x05);
        v
    }

    #[test]
    fn dates() {
        assert_eq!(
            pdf_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "D:20231114221320Z"
        );
        assert_eq!(pdf_date(UNIX_EPOCH), "D:19700101000000Z");
        assert_eq!(
            pdf_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "D:20000229000000Z"
        );
    }

    #[test]
    fn prepare_then_embed() {
        let original = minimal_pdf();
        let p = prepare(&original, &opts()).unwrap();
        assert!(p.bytes.starts_with(&original));
        assert_eq!(p.field_name, "Signature1");
        let [z, a, b, c] = p.byte_range;
        assert_eq!((z, b + c), (0, p.bytes.len()));
        assert_eq!(b - a, 2 * MIN_RESERVE + 2);
        let text = String::from_utf8_lossy(&p.bytes[original.len()..]);
        assert!(
            text.contains(&format!("/ByteRange[0 {a} {b} {c}")),
            "{text}"
        );
        assert!(text.contains("/M(D:20231114221320Z)"), "{text}");
        let mut h = Sha256::new();
        h.update(&p.bytes[..a]);
        h.update(&p.bytes[b..]);
        assert_eq!(p.digest, <[u8; 32]>::from(h.finalize()));

        let cms = fake_cms(&p.digest, 600);
        let signed = embed(&p.bytes, &cms).unwrap();
        assert_eq!(signed.len(), p.bytes.len());
        assert_eq!(&signed[..a], &p.bytes[..a]);
        assert_eq!(&signed[b..], &p.bytes[b..]);
        assert_eq!(&signed[a + 1..a + 1201], hex::encode_upper(&cms).as_bytes());
        assert!(signed[a + 1201..b - 1].iter().all(|&x| x == b'0'));
        // Once filled, the placeholder is not filled again.
        assert!(matches!(embed(&signed, &cms), Err(Error::AlreadySigned)));
        // A second signature goes next to the first one.
        let p2 = prepare(&signed, &opts()).unwrap();
        assert_eq!(p2.field_name, "Signature2");
        assert!(p2.bytes.starts_with(&signed));
        // Preparing the prepared file again is refused: its placeholder is still empty.
        assert!(matches!(
            prepare(&p.bytes, &opts()),
            Err(Error::UnfilledSignature(n)) if n == "Signature1"
        ));
        let taken = PrepareOptions {
            field_name: Some("Signature1".into()),
            ..opts()
        };
        assert!(matches!(
            prepare(&signed, &taken),
            Err(Error::FieldName { .. })
        ));
    }

    #[test]
    fn embed_refusals() {
        let p = prepare(&minimal_pdf(), &opts()).unwrap();
        let e = embed(&p.bytes, &fake_cms(&p.digest, MIN_RESERVE + 1)).unwrap_err();
        assert!(
            matches!(e, Error::CmsTooBig { cms, reserve } if cms == MIN_RESERVE + 1 && reserve == MIN_RESERVE),
            "{e}"
        );
        assert!(e.to_string().contains("--reserve"), "{e}");
        assert!(matches!(
            embed(&p.bytes, &fake_cms(&[9; 32], 600)),
            Err(Error::WrongDigest)
        ));
        assert!(matches!(embed(&p.bytes, b"MIIB"), Err(Error::NotCms(_))));
        let mut truncated = fake_cms(&p.digest, 600);
        truncated.pop();
        assert!(matches!(embed(&p.bytes, &truncated), Err(Error::NotCms(_))));
        // One byte more in the file: the ByteRange no longer ends at the end.
        let mut longer = p.bytes.clone();
        longer.push(b'\n');
        assert!(matches!(
            embed(&longer, &fake_cms(&p.digest, 600)),
            Err(Error::ByteRangeMismatch(_))
        ));
        // A changed byte in the signed range: the CMS no longer signs the file.
        let mut changed = p.bytes.clone();
        changed[20] ^= 1;
        assert!(matches!(
            embed(&changed, &fake_cms(&p.digest, 600)),
            Err(Error::WrongDigest)
        ));
        assert!(matches!(
            embed(&minimal_pdf(), &fake_cms(&p.digest, 600)),
            Err(Error::NoPlaceholder(_))
        ));
    }

    #[test]
    fn prepare_refusals() {
        assert!(matches!(
            prepare(b"hello world", &opts()),
            Err(Error::NotPdf)
        ));
        assert!(matches!(
            prepare(b"%PDF-1.7\ngarbage", &opts()),
            Err(Error::Parse(_) | Error::Damaged(_))
        ));
        let small = PrepareOptions {
            reserve: 10,
            ..opts()
        };
        assert!(matches!(
            prepare(&minimal_pdf(), &small),
            Err(Error::Reserve { .. })
        ));
        let dotted = PrepareOptions {
            field_name: Some("a.b".into()),
            ..opts()
        };
        assert!(matches!(
            prepare(&minimal_pdf(), &dotted),
            Err(Error::FieldName { .. })
        ));
    }

    #[test]
    fn certified_no_changes_is_refused() {
        assert!(matches!(
            prepare(&certified_pdf(1), &opts()),
            Err(Error::Certified)
        ));
        let p = prepare(&certified_pdf(2), &opts()).unwrap();
        assert!(p.bytes.starts_with(&certified_pdf(2)));
    }

    #[test]
    fn int_arrays() {
        assert_eq!(
            parse_int_array(b" [0 10  20\n30   ] >>"),
            Some(vec![0, 10, 20, 30])
        );
        assert_eq!(parse_int_array(b"[0 x]"), None);
        assert_eq!(parse_int_array(b"0 1"), None);
    }
}
