//! esig's PAdES client ([`esig::pdf`]) for browsers, through `wasm-bindgen`: a web page prepares
//! the PDF's signature placeholder and embeds the CMS that esigd returns without sending the
//! document anywhere; only the digest goes to esigd.
//!
//! The JavaScript API (an ES module made by `scripts/build-wasm.sh`; `web/assets/esig-pdf.js`
//! wraps it):
//!
//! ```text
//! pdfPrepare(pdf: Uint8Array, options: {
//!     signingTime: number,   // ms since 1970-01-01 UTC, written as /M (required: there is no clock
//!                            // in wasm32-unknown-unknown, and the caller decides what it claims)
//!     fieldName?: string, reason?: string, location?: string,
//!     reserve?: number,      // bytes for the CMS, default 16384
//! }) -> { prepared: Uint8Array, digest: string /* base64 SHA-256 */, byteRange: number[4],
//!         fieldName: string }
//! pdfEmbed(prepared: Uint8Array, cms: Uint8Array /* DER */) -> Uint8Array
//! asiceBuild(signaturesXml: Uint8Array, files: [{name, mediaType?, bytes: Uint8Array}],
//!            time: number /* ms */) -> Uint8Array   // the .asice (esig::asice, zip crate)
//! ```
//!
//! Both throw a JavaScript `Error` whose message is the Rust error's (e.g. "the PDF is
//! encrypted; …"). The same code runs natively (`rlib`): [`prepare`] and [`embed`] are the
//! functions behind the bindings, without JavaScript types.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esig::pdf::{DEFAULT_RESERVE, PrepareOptions, PreparedPdf};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// The largest `signingTime` accepted, in ms: the end of year 9999 (`/M` has four year digits).
const MAX_SIGNING_TIME_MS: f64 = 253_402_300_799_999.0;

/// The options of [`pdfPrepare`](pdf_prepare) as plain Rust values, before they are checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `fieldName`.
    pub field_name: Option<String>,
    /// `reason`.
    pub reason: Option<String>,
    /// `location`.
    pub location: Option<String>,
    /// `signingTime`, in ms since the Unix epoch.
    pub signing_time_ms: Option<f64>,
    /// `reserve`, in bytes.
    pub reserve: Option<f64>,
}

impl Options {
    /// Checks the values and turns them into [`PrepareOptions`]. The message names the option.
    pub fn to_prepare_options(&self) -> Result<PrepareOptions, String> {
        let ms = self
            .signing_time_ms
            .ok_or("options.signingTime (ms since 1970-01-01 UTC, e.g. Date.now()) is required")?;
        if !ms.is_finite() || !(0.0..=MAX_SIGNING_TIME_MS).contains(&ms) {
            return Err(format!(
                "options.signingTime must be ms since 1970-01-01 UTC up to year 9999, not {ms}"
            ));
        }
        let reserve = match self.reserve {
            None => DEFAULT_RESERVE,
            Some(r)
                if r.is_finite() && r.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&r) =>
            {
                r as usize
            }
            Some(r) => {
                return Err(format!(
                    "options.reserve must be a whole number of bytes, not {r}"
                ));
            }
        };
        Ok(PrepareOptions {
            field_name: self.field_name.clone(),
            reason: self.reason.clone(),
            location: self.location.clone(),
            // Whole milliseconds: /M has seconds only.
            signing_time: UNIX_EPOCH + Duration::from_millis(ms as u64),
            reserve,
        })
    }
}

/// [`esig::pdf::prepare`] with [`Options`]: what `pdfPrepare` runs.
pub fn prepare(pdf: &[u8], options: &Options) -> Result<PreparedPdf, String> {
    let options = options.to_prepare_options()?;
    esig::pdf::prepare(pdf, &options).map_err(|e| e.to_string())
}

/// [`esig::pdf::embed`]: what `pdfEmbed` runs.
pub fn embed(prepared: &[u8], cms_der: &[u8]) -> Result<Vec<u8>, String> {
    esig::pdf::embed(prepared, cms_der).map_err(|e| e.to_string())
}

/// [`esig::asice::build_xades`]: what `asiceBuild` runs. `files` are (name, media type, bytes);
/// an empty media type is guessed from the name.
pub fn asice(
    signatures_xml: &[u8],
    files: Vec<(String, String, Vec<u8>)>,
    time_ms: f64,
) -> Result<Vec<u8>, String> {
    if !time_ms.is_finite() || !(0.0..=MAX_SIGNING_TIME_MS).contains(&time_ms) {
        return Err(format!(
            "time must be ms since 1970-01-01 UTC up to year 9999, not {time_ms}"
        ));
    }
    let files: Vec<esig::asice::DataFile> = files
        .into_iter()
        .map(|(name, media_type, bytes)| esig::asice::DataFile {
            media_type: if media_type.is_empty() {
                esig::asice::media_type_of(&name).to_owned()
            } else {
                media_type
            },
            name,
            bytes,
        })
        .collect();
    esig::asice::build_xades(
        signatures_xml,
        &files,
        UNIX_EPOCH + Duration::from_millis(time_ms as u64),
    )
    .map_err(|e| e.to_string())
}

/// `asiceBuild(signaturesXml, files, time)`: the ASiC-E container (EN 319 162-1; the zip crate:
/// `mimetype` first and stored, data files deflated, `META-INF/manifest.xml`) of `files`
/// (`[{name, mediaType?, bytes: Uint8Array}]`) and the `META-INF/signatures0.xml` esigd returned
/// for format `ASIC`, after checking that the files are exactly the ones it references (names
/// and digests). `time` (ms since 1970) is the entries' modification time.
#[wasm_bindgen(js_name = asiceBuild)]
pub fn asice_build(signatures_xml: &[u8], files: JsValue, time: f64) -> Result<Vec<u8>, JsError> {
    let list = Array::from(&files);
    if !Array::is_array(&files) {
        return Err(JsError::new(
            "files must be an array of {name, mediaType, bytes}",
        ));
    }
    let mut read = Vec::with_capacity(list.length() as usize);
    for (i, f) in list.iter().enumerate() {
        let get = |key: &str| Reflect::get(&f, &JsValue::from_str(key)).ok();
        let name = get("name")
            .and_then(|v| v.as_string())
            .ok_or_else(|| JsError::new(&format!("files[{i}].name must be a string")))?;
        let media_type = get("mediaType")
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        let bytes = get("bytes")
            .filter(|v| v.is_instance_of::<Uint8Array>())
            .map(|v| Uint8Array::from(v).to_vec())
            .ok_or_else(|| JsError::new(&format!("files[{i}].bytes must be a Uint8Array")))?;
        read.push((name, media_type, bytes));
    }
    asice(signatures_xml, read, time).map_err(|e| JsError::new(&e))
}

/// `pdfPrepare(pdf, options)`: appends an empty PAdES signature to `pdf` as an incremental
/// update and returns `{prepared, digest, byteRange, fieldName}` (see the crate documentation).
/// Send `digest` to esigd (hashType `SHA2-256`, format `PAdES`) and keep `prepared` unchanged
/// until [`pdfEmbed`](pdf_embed).
#[wasm_bindgen(js_name = pdfPrepare)]
pub fn pdf_prepare(pdf: &[u8], options: JsValue) -> Result<JsValue, JsError> {
    let options = read_options(&options).map_err(|e| JsError::new(&e))?;
    let p = prepare(pdf, &options).map_err(|e| JsError::new(&e))?;
    let out = Object::new();
    let byte_range: Array = p
        .byte_range
        .iter()
        .map(|&n| JsValue::from_f64(n as f64))
        .collect();
    for (key, value) in [
        ("prepared", Uint8Array::from(p.bytes.as_slice()).into()),
        ("digest", JsValue::from_str(&STANDARD.encode(p.digest))),
        ("byteRange", byte_range.into()),
        ("fieldName", JsValue::from_str(&p.field_name)),
    ] {
        Reflect::set(&out, &JsValue::from_str(key), &value)
            .map_err(|_| JsError::new("cannot build the result object"))?;
    }
    Ok(out.into())
}

/// `pdfEmbed(prepared, cms)`: puts the DER CMS into the `/Contents` placeholder of the bytes
/// `pdfPrepare` returned and returns the signed PDF (same length).
#[wasm_bindgen(js_name = pdfEmbed)]
pub fn pdf_embed(prepared: &[u8], cms: &[u8]) -> Result<Vec<u8>, JsError> {
    embed(prepared, cms).map_err(|e| JsError::new(&e))
}

/// Reads the options object (`undefined`/`null` count as `{}`); a value of the wrong type is an
/// error that names the option.
fn read_options(options: &JsValue) -> Result<Options, String> {
    if options.is_undefined() || options.is_null() {
        return Ok(Options::default());
    }
    if !options.is_object() {
        return Err("options must be an object".into());
    }
    let get = |key: &str| -> Result<Option<JsValue>, String> {
        let v = Reflect::get(options, &JsValue::from_str(key))
            .map_err(|_| format!("options.{key} cannot be read"))?;
        Ok((!v.is_undefined() && !v.is_null()).then_some(v))
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        get(key)?
            .map(|v| {
                v.as_string()
                    .ok_or_else(|| format!("options.{key} must be a string"))
            })
            .transpose()
    };
    let number = |key: &str| -> Result<Option<f64>, String> {
        get(key)?
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| format!("options.{key} must be a number"))
            })
            .transpose()
    };
    Ok(Options {
        field_name: string("fieldName")?,
        reason: string("reason")?,
        location: string("location")?,
        signing_time_ms: number("signingTime")?,
        reserve: number("reserve")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: f64) -> Options {
        Options {
            signing_time_ms: Some(ms),
            ..Options::default()
        }
    }

    #[test]
    fn options_are_checked() {
        let o = at(1_700_000_000_999.0).to_prepare_options().unwrap();
        assert_eq!(esig::pdf::pdf_date(o.signing_time), "D:20231114221320Z");
        assert_eq!(o.reserve, DEFAULT_RESERVE);
        assert!(
            Options::default()
                .to_prepare_options()
                .unwrap_err()
                .contains("signingTime")
        );
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            assert!(at(bad).to_prepare_options().is_err(), "{bad}");
        }
        for bad in [1.5, -2.0, f64::NAN] {
            let o = Options {
                reserve: Some(bad),
                ..at(0.0)
            };
            assert!(o.to_prepare_options().unwrap_err().contains("reserve"));
        }
        // The range itself is esig's to check.
        let small = Options {
            reserve: Some(10.0),
            ..at(0.0)
        };
        assert!(
            prepare(b"%PDF-1.7\n", &small)
                .unwrap_err()
                .contains("reserve")
        );
        assert!(
            prepare(b"hello", &at(0.0))
                .unwrap_err()
                .contains("not a PDF")
        );
    }
}
