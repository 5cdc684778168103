//! ASiC-E containers (ETSI EN 319 162-1): the ZIP the client builds around the data files and
//! the signature esigd returns.
//!
//! Two forms:
//!
//! - **XAdES** ([`build_xades`]): esigd signs the data files' digests with format `ASIC` and
//!   returns `META-INF/signatures0.xml` (`asic:XAdESSignatures`), one `ds:Reference` per file
//!   whose URI is the file's path in the container.
//! - **CAdES** ([`asic_manifest`], [`build_cades`]): the client writes
//!   `META-INF/ASiCManifest001.xml` with the files' digests, esigd signs the manifest's digest
//!   with format `CAdES`, and the detached CMS becomes `META-INF/signature001.p7s`.
//!
//! Layout rules (both forms): `mimetype` is the first entry, STORED, without extra field or data
//! descriptor, holding `application/vnd.etsi.asic-e+zip` (so the name sits at byte 30 and the
//! value at byte 38); the data files are deflated at the root under their names;
//! `META-INF/manifest.xml` (OpenDocument manifest) lists every data file with its media type;
//! every entry carries the given modification time (ZIP has no time zone: UTC is written).
//!
//! Before writing anything, the builders check that the files are exactly the ones the signature
//! (or the manifest) references, by name and digest.

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::Error;
use crate::digest::HashAlgorithm;
use crate::xmldsig::{self, escape_attr};

/// The content of the `mimetype` entry.
pub const MIMETYPE: &str = "application/vnd.etsi.asic-e+zip";
/// The XAdES signature file esigd's `ASIC` format is written as.
pub const XADES_SIGNATURE_PATH: &str = "META-INF/signatures0.xml";
/// The CAdES signature of the CAdES form.
pub const CADES_SIGNATURE_PATH: &str = "META-INF/signature001.p7s";
/// The ASiCManifest the CAdES signature covers.
pub const ASIC_MANIFEST_PATH: &str = "META-INF/ASiCManifest001.xml";
/// The OpenDocument manifest.
pub const MANIFEST_PATH: &str = "META-INF/manifest.xml";
/// The ASiC namespace.
pub const NS_ASIC: &str = "http://uri.etsi.org/02918/v1.2.1#";
/// The OpenDocument manifest namespace.
pub const NS_MANIFEST: &str = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0";
/// Largest container entry [`read`] inflates, in bytes.
pub const MAX_ENTRY: u64 = 1 << 31;

/// One data file of a container: its path in the container, media type and content.
#[derive(Clone, PartialEq, Eq)]
pub struct DataFile {
    /// The path in the container (and the signature's reference name).
    pub name: String,
    /// Its media type (`META-INF/manifest.xml`, XAdES `DataObjectFormat`, JWS `ctys`).
    pub media_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFile")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .finish()
    }
}

impl DataFile {
    /// Reads `path`; the name is its file name, the media type is guessed from the extension
    /// ([`media_type_of`]).
    pub fn from_path(path: impl AsRef<Path>) -> Result<DataFile, Error> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Request(format!("{}: no UTF-8 file name", path.display())))?
            .to_owned();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(DataFile {
            media_type: media_type_of(&name).to_owned(),
            name,
            bytes,
        })
    }
}

/// A media type for a file name's extension (`application/octet-stream` when unknown).
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "xml" => "application/xml",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "p7s" => "application/pkcs7-signature",
        _ => "application/octet-stream",
    }
}

/// Checks that `name` can be a data file's path: relative, `/`-separated, no empty, `.` or
/// `..` segment, no control character or `\`, not `mimetype` nor under `META-INF/`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |p: &str| Err(Error::Request(format!("data file name {name:?}: {p}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.chars().any(char::is_control) || name.contains('\\') {
        return bad("contains a control character or '\\'");
    }
    if name.starts_with('/') {
        return bad("an absolute path");
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("has an empty, '.' or '..' path segment");
    }
    let first = name.split('/').next().unwrap_or_default();
    if name == "mimetype" || first.eq_ignore_ascii_case("META-INF") {
        return bad("reserved in an ASiC-E container (mimetype, META-INF/)");
    }
    Ok(())
}

fn check_names(files: &[DataFile]) -> Result<(), Error> {
    if files.is_empty() {
        return Err(Error::Request("at least one data file is needed".into()));
    }
    let mut seen = BTreeSet::new();
    for f in files {
        check_name(&f.name)?;
        if !seen.insert(f.name.as_str()) {
            return Err(Error::Request(format!(
                "data file name {:?} appears twice",
                f.name
            )));
        }
    }
    Ok(())
}

/// The OpenDocument `META-INF/manifest.xml`: the container's root (media type
/// [`MIMETYPE`]) and every data file with its media type.
pub fn odf_manifest(files: &[DataFile]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <manifest:manifest xmlns:manifest=\"{NS_MANIFEST}\" manifest:version=\"1.2\">\n \
         <manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{MIMETYPE}\"/>\n"
    );
    for f in files {
        s.push_str(&format!(
            " <manifest:file-entry manifest:full-path=\"{}\" manifest:media-type=\"{}\"/>\n",
            escape_attr(&f.name),
            escape_attr(&f.media_type)
        ));
    }
    s.push_str("</manifest:manifest>\n");
    s
}

fn digest_uri(alg: HashAlgorithm) -> &'static str {
    match alg {
        HashAlgorithm::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
        HashAlgorithm::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
        HashAlgorithm::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
    }
}

/// The `META-INF/ASiCManifest001.xml` of the CAdES form: a `SigReference` to
/// [`CADES_SIGNATURE_PATH`] and one `DataObjectReference` (URI, digest) per data file. Its
/// digest (`hashType` `alg`) is what esigd signs with format `CAdES`.
pub fn asic_manifest(files: &[DataFile], alg: HashAlgorithm) -> Result<Vec<u8>, Error> {
    check_names(files)?;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n\
         <asic:ASiCManifest xmlns:asic=\"{NS_ASIC}\" xmlns:ds=\"{ns_ds}\">\n \
         <asic:SigReference MimeType=\"application/pkcs7-signature\" URI=\"{CADES_SIGNATURE_PATH}\"/>\n",
        ns_ds = xmldsig::NS_DS,
    );
    for f in files {
        s.push_str(&format!(
            " <asic:DataObjectReference MimeType=\"{mime}\" URI=\"{uri}\">\
             <ds:DigestMethod Algorithm=\"{method}\"/>\
             <ds:DigestValue>{value}</ds:DigestValue>\
             </asic:DataObjectReference>\n",
            mime = escape_attr(&f.media_type),
            uri = escape_attr(&percent_encode(&f.name)),
            method = digest_uri(alg),
            value = B64.encode(alg.digest(&f.bytes)),
        ));
    }
    s.push_str("</asic:ASiCManifest>\n");
    Ok(s.into_bytes())
}

/// Percent-encodes a path as esigd writes reference URIs (RFC 3986 unreserved and `/` stay).
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One `asic:DataObjectReference` of an ASiCManifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestReference {
    /// The container path (URI percent-decoded).
    pub name: String,
    /// The digest algorithm.
    pub algorithm: HashAlgorithm,
    /// The digest.
    pub digest: Vec<u8>,
}

/// A parsed ASiCManifest: the signature it belongs to and its data object references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsicManifest {
    /// `asic:SigReference/@URI`.
    pub signature: String,
    /// The data objects.
    pub references: Vec<ManifestReference>,
}

/// Parses an ASiCManifest.
pub fn parse_asic_manifest(xml: &[u8]) -> Result<AsicManifest, Error> {
    let bad = |m: String| Error::SignatureFile(format!("ASiCManifest: {m}"));
    let text = std::str::from_utf8(xml).map_err(|_| bad("not UTF-8".into()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| bad(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "ASiCManifest" || root.tag_name().namespace() != Some(NS_ASIC) {
        return Err(bad("the root is not asic:ASiCManifest".into()));
    }
    let el = |n: &roxmltree::Node<'_, '_>, ns: &str, name: &str| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
    };
    let signature = root
        .children()
        .find(|c| el(c, NS_ASIC, "SigReference"))
        .and_then(|c| c.attribute("URI"))
        .ok_or_else(|| bad("no asic:SigReference URI".into()))?;
    let signature = xmldsig::percent_decode(signature).map_err(bad)?;
    let mut references = Vec::new();
    for r in root
        .children()
        .filter(|c| el(c, NS_ASIC, "DataObjectReference"))
    {
        let uri = r
            .attribute("URI")
            .ok_or_else(|| bad("a DataObjectReference without URI".into()))?;
        let method = r
            .children()
            .find(|c| el(c, xmldsig::NS_DS, "DigestMethod"))
            .and_then(|c| c.attribute("Algorithm"))
            .ok_or_else(|| bad(format!("{uri}: no ds:DigestMethod")))?;
        let algorithm = xmldsig::digest_method(method)
            .ok_or_else(|| bad(format!("{uri}: digest method {method} is not supported")))?;
        let value: String = r
            .children()
            .find(|c| el(c, xmldsig::NS_DS, "DigestValue"))
            .and_then(|c| c.text())
            .ok_or_else(|| bad(format!("{uri}: no ds:DigestValue")))?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        references.push(ManifestReference {
            name: xmldsig::percent_decode(uri).map_err(bad)?,
            algorithm,
            digest: B64
                .decode(value.as_bytes())
                .map_err(|e| bad(format!("{uri}: DigestValue: {e}")))?,
        });
    }
    if references.is_empty() {
        return Err(bad("no asic:DataObjectReference".into()));
    }
    Ok(AsicManifest {
        signature,
        references,
    })
}

/// Checks that `files` are exactly the referenced `(name, algorithm, digest)` triples.
fn match_files(
    what: &str,
    refs: &[(String, HashAlgorithm, Vec<u8>)],
    files: &[DataFile],
) -> Result<(), Error> {
    let wanted: BTreeSet<&str> = refs.iter().map(|r| r.0.as_str()).collect();
    let given: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let missing: Vec<&str> = wanted.difference(&given).copied().collect();
    let extra: Vec<&str> = given.difference(&wanted).copied().collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::FilesMismatch(format!(
            "{what} references {wanted:?}; files given {given:?} (missing: {missing:?}, not \
             referenced: {extra:?}). A data file's name in the container must equal its \
             reference URI (percent-decoded)"
        )));
    }
    for (name, alg, digest) in refs {
        if let Some(f) = files.iter().find(|f| &f.name == name)
            && &alg.digest(&f.bytes) != digest
        {
            return Err(Error::FilesMismatch(format!(
                "{name}: its {alg} digest differs from the one {what} signs (a changed or \
                 different file)"
            )));
        }
    }
    Ok(())
}

/// Builds an ASiC-E container with the XAdES `signatures0.xml` esigd returned for format `ASIC`
/// (B-B or B-T) and the data files it references, after checking that the files are exactly
/// the referenced ones (names and digests).
pub fn build_xades(
    signature_xml: &[u8],
    files: &[DataFile],
    time: SystemTime,
) -> Result<Vec<u8>, Error> {
    check_names(files)?;
    let text = std::str::from_utf8(signature_xml)
        .map_err(|_| Error::SignatureFile("the XAdES signature is not UTF-8".into()))?;
    let sigs = xmldsig::parse(text).map_err(Error::SignatureFile)?;
    let mut refs = Vec::new();
    for sig in &sigs {
        for r in sig.references.iter().filter(|r| !r.is_internal()) {
            let alg = xmldsig::digest_method(&r.digest_method).ok_or_else(|| {
                Error::SignatureFile(format!(
                    "reference {}: digest method {} is not supported",
                    r.uri, r.digest_method
                ))
            })?;
            let name = r.path().map_err(Error::SignatureFile)?;
            refs.push((name, alg, r.digest_value.clone()));
        }
    }
    match_files("the signature", &refs, files)?;
    write_container(files, &[(XADES_SIGNATURE_PATH, signature_xml)], time)
}

/// Builds an ASiC-E container of the CAdES form: the data files, the ASiCManifest
/// ([`asic_manifest`]) and the detached CMS over it (DER). Checks the files against the
/// manifest (names and digests) and that the CMS's message digest is the manifest's digest.
pub fn build_cades(
    p7s_der: &[u8],
    manifest: &[u8],
    files: &[DataFile],
    time: SystemTime,
) -> Result<Vec<u8>, Error> {
    check_names(files)?;
    let m = parse_asic_manifest(manifest)?;
    if m.signature != CADES_SIGNATURE_PATH {
        return Err(Error::SignatureFile(format!(
            "the ASiCManifest names the signature {:?}, esig writes {CADES_SIGNATURE_PATH:?}",
            m.signature
        )));
    }
    let refs: Vec<_> = m
        .references
        .iter()
        .map(|r| (r.name.clone(), r.algorithm, r.digest.clone()))
        .collect();
    match_files("the ASiCManifest", &refs, files)?;
    let v = esigd_pki::cms::verify_detached_digest(p7s_der, None)
        .map_err(|e| Error::SignatureFile(format!("the CMS: {e}")))?;
    esigd_pki::cms::verify_detached_digest(p7s_der, Some(&v.digest_algorithm.digest(manifest)))
        .map_err(|_| {
            Error::FilesMismatch(
                "the CMS's message digest is not the digest of this ASiCManifest".into(),
            )
        })?;
    write_container(
        files,
        &[
            (ASIC_MANIFEST_PATH, manifest),
            (CADES_SIGNATURE_PATH, p7s_der),
        ],
        time,
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `time` (UTC) as a ZIP time; ZIP times run 1980..=2107 and have 2-second steps.
fn zip_time(time: SystemTime) -> Result<zip::DateTime, Error> {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Container("the file time is before 1970".into()))?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| Error::Container("file time too large".into()))?;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let year = u16::try_from(y).map_err(|_| Error::Container("file time out of range".into()))?;
    zip::DateTime::from_date_and_time(
        year,
        mo,
        d,
        (rem / 3600) as u8,
        (rem / 60 % 60) as u8,
        (rem % 60) as u8,
    )
    .map_err(|_| Error::Container(format!("year {year} cannot be a ZIP time (1980..=2107)")))
}

/// Writes the container: `mimetype` (stored), the data files (deflated), `META-INF/manifest.xml`
/// and the `meta` entries (deflated), all with `time`, then checks the layout.
fn write_container(
    files: &[DataFile],
    meta: &[(&str, &[u8])],
    time: SystemTime,
) -> Result<Vec<u8>, Error> {
    let t = zip_time(time)?;
    let zerr = |e: zip::result::ZipError| Error::Container(format!("writing the ZIP: {e}"));
    let ioerr = |e: std::io::Error| Error::Container(format!("writing the ZIP: {e}"));
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(t)
        .unix_permissions(0o644);
    let deflated = stored.compression_method(CompressionMethod::Deflated);
    w.start_file("mimetype", stored).map_err(zerr)?;
    w.write_all(MIMETYPE.as_bytes()).map_err(ioerr)?;
    for f in files {
        w.start_file(f.name.as_str(), deflated).map_err(zerr)?;
        w.write_all(&f.bytes).map_err(ioerr)?;
    }
    w.start_file(MANIFEST_PATH, deflated).map_err(zerr)?;
    w.write_all(odf_manifest(files).as_bytes()).map_err(ioerr)?;
    for (name, bytes) in meta {
        w.start_file(*name, deflated).map_err(zerr)?;
        w.write_all(bytes).map_err(ioerr)?;
    }
    let bytes = w.finish().map_err(zerr)?.into_inner();
    check_layout(&bytes)?;
    Ok(bytes)
}

/// Checks the byte rules of the first entry: a local file header at offset 0 (`PK\x03\x04`),
/// method 0 (stored), general purpose flags 0 (no data descriptor, no encryption), no extra
/// field, name `mimetype` at offset 30, and the uncompressed value
/// `application/vnd.etsi.asic-e+zip` at offset 38 with matching sizes.
pub fn check_layout(container: &[u8]) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Container(m));
    if container.len() < 38 + MIMETYPE.len() || !container.starts_with(b"PK\x03\x04") {
        return bad("not a ZIP file starting with a local file header".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([container[o], container[o + 1]]);
    let u32_at = |o: usize| {
        u32::from_le_bytes([
            container[o],
            container[o + 1],
            container[o + 2],
            container[o + 3],
        ])
    };
    let (flags, method) = (u16_at(6), u16_at(8));
    let (csize, usize_, name_len, extra_len) = (u32_at(18), u32_at(22), u16_at(26), u16_at(28));
    if &container[30..30 + name_len.min(64) as usize] != b"mimetype" {
        return bad(format!(
            "the first entry is {:?}, not mimetype",
            String::from_utf8_lossy(&container[30..30 + usize::from(name_len.min(64))])
        ));
    }
    if method != 0 {
        return bad(format!(
            "mimetype is compressed (method {method}); it must be STORED"
        ));
    }
    if flags != 0 {
        return bad(format!(
            "mimetype's general purpose flags are 0x{flags:04x} (data descriptor or \
             encryption); they must be 0"
        ));
    }
    if extra_len != 0 {
        return bad(format!(
            "mimetype has a {extra_len}-byte extra field; it must have none"
        ));
    }
    if csize as usize != MIMETYPE.len() || usize_ as usize != MIMETYPE.len() {
        return bad(format!(
            "mimetype's sizes are {csize}/{usize_}, not {}",
            MIMETYPE.len()
        ));
    }
    if &container[38..38 + MIMETYPE.len()] != MIMETYPE.as_bytes() {
        return bad(format!(
            "mimetype holds {:?}, not {MIMETYPE:?}",
            String::from_utf8_lossy(&container[38..38 + MIMETYPE.len()])
        ));
    }
    Ok(())
}

/// The entries of a container, in ZIP order (directories left out).
#[derive(Debug, Clone)]
pub struct Container {
    /// `(path, content)` of each entry.
    pub entries: Vec<(String, Vec<u8>)>,
}

impl Container {
    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == path)
            .map(|(_, b)| b.as_slice())
    }

    /// The data files: every entry but `mimetype` and `META-INF/…`, with media types from
    /// `META-INF/manifest.xml` where it lists them.
    pub fn data_files(&self) -> Vec<DataFile> {
        let types = self
            .get(MANIFEST_PATH)
            .and_then(|m| parse_odf_manifest(m).ok())
            .unwrap_or_default();
        self.entries
            .iter()
            .filter(|(n, _)| n != "mimetype" && !n.starts_with("META-INF/"))
            .map(|(n, b)| DataFile {
                name: n.clone(),
                media_type: types
                    .iter()
                    .find(|(p, _)| p == n)
                    .map_or_else(|| media_type_of(n).to_owned(), |(_, t)| t.clone()),
                bytes: b.clone(),
            })
            .collect()
    }
}

/// The `(full-path, media-type)` entries of an OpenDocument manifest.
pub fn parse_odf_manifest(xml: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let bad = |m: String| Error::Container(format!("{MANIFEST_PATH}: {m}"));
    let text = std::str::from_utf8(xml).map_err(|_| bad("not UTF-8".into()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| bad(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "manifest" || root.tag_name().namespace() != Some(NS_MANIFEST) {
        return Err(bad("the root is not manifest:manifest".into()));
    }
    Ok(root
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "file-entry")
        .filter_map(|c| {
            Some((
                c.attribute((NS_MANIFEST, "full-path"))?.to_owned(),
                c.attribute((NS_MANIFEST, "media-type"))
                    .unwrap_or_default()
                    .to_owned(),
            ))
        })
        .collect())
}

/// Reads a container's entries (in memory; each at most [`MAX_ENTRY`] bytes inflated).
pub fn read(container: &[u8]) -> Result<Container, Error> {
    let zerr = |e: zip::result::ZipError| Error::Container(format!("reading the ZIP: {e}"));
    let mut z = ZipArchive::new(Cursor::new(container)).map_err(zerr)?;
    let mut entries = Vec::with_capacity(z.len());
    for i in 0..z.len() {
        let f = z.by_index(i).map_err(zerr)?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().map_err(zerr)?.into_owned();
        if entries.iter().any(|(n, _): &(String, Vec<u8>)| n == &name) {
            return Err(Error::Container(format!("entry {name:?} appears twice")));
        }
        let mut bytes = Vec::new();
        f.take(MAX_ENTRY + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Container(format!("{name}: {e}")))?;
        if bytes.len() as u64 > MAX_ENTRY {
            return Err(Error::Container(format!(
                "{name} is larger than {MAX_ENTRY} bytes"
            )));
        }
        entries.push((name, bytes));
    }
    Ok(Container { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<DataFile> {
        vec![
            DataFile {
                name: "a b.txt".into(),
                media_type: "text/plain".into(),
                bytes: b"hello".to_vec(),
            },
            DataFile {
                name: "doc.pdf".into(),
                media_type: "application/pdf".into(),
                bytes: b"%PDF-1.7".to_vec(),
            },
        ]
    }

    #[test]
    fn zip_times() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        let t = zip_time(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)).unwrap();
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        assert!(zip_time(UNIX_EPOCH).is_err());
    }

    #[test]
    fn manifest_round_trip() {
        let m = asic_manifest(&files(), HashAlgorithm::Sha256).unwrap();
        let p = parse_asic_manifest(&m).unwrap();
        assert_eq!(p.signature, CADES_SIGNATURE_PATH);
        assert_eq!(p.references[0].name, "a b.txt");
        assert_eq!(
            p.references[0].digest,
            HashAlgorithm::Sha256.digest(b"hello")
        );
        assert!(String::from_utf8(m).unwrap().contains("URI=\"a%20b.txt\""));
        let odf = odf_manifest(&files());
        let entries = parse_odf_manifest(odf.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2], ("doc.pdf".into(), "application/pdf".into()));
    }

    #[test]
    fn layout_rules() {
        let bytes = write_container(&files(), &[], SystemTime::now()).unwrap();
        check_layout(&bytes).unwrap();
        let c = read(&bytes).unwrap();
        assert_eq!(c.entries[0].0, "mimetype");
        assert_eq!(c.data_files(), files());
        // A compressed mimetype, an extra field, another first entry: refused.
        for (offset, value, wanted) in [(8, 8u8, "STORED"), (28, 4, "extra"), (6, 8, "flags")] {
            let mut b = bytes.clone();
            b[offset] = value;
            let e = check_layout(&b).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e}");
        }
        let mut b = bytes.clone();
        b[30] = b'M';
        assert!(
            check_layout(&b)
                .unwrap_err()
                .to_string()
                .contains("not mimetype")
        );
    }

    #[test]
    fn names() {
        for bad in ["", "/a", "a/../b", "META-INF/x", "mimetype", "a\\b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("dir/a b.txt").unwrap();
        let mut dup = files();
        dup[1].name = "a b.txt".into();
        assert!(asic_manifest(&dup, HashAlgorithm::Sha256).is_err());
        assert_eq!(media_type_of("X.PDF"), "application/pdf");
        assert_eq!(media_type_of("noext"), "application/octet-stream");
    }
}
