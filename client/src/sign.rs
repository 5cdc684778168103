//! The e-Service side of `POST /v1/sign/onetime`, without the network: [`plan`] turns files into
//! the request body (digests only; a prepared PDF for PAdES), [`Plan::finish`] turns esigd's
//! answer into the signed file. The `esig sign` command sends the body over mutual TLS in
//! between.
//!
//! | format | what is sent | what is written |
//! |---|---|---|
//! | `PAdES` | `hash` = SHA-256 of the prepared PDF's `/ByteRange` | the signed PDF |
//! | `CAdES` | `hash` = digest of the one file | the detached CMS (`.p7s`, DER) |
//! | `XAdES` | `documents` = name, media type and digest of each file | the XAdES XML |
//! | `JWS` | `documents` as for XAdES | the JWS (flattened JSON) |
//! | `ASIC` | `documents` (names = container paths) | the ASiC-E container (`.asice`) |
//! | `ASIC-CAdES` | format `CAdES`, `hash` = digest of the ASiCManifest esig writes | the ASiC-E container with `META-INF/signature001.p7s` |

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::Error;
use crate::asice::{self, DataFile};
use crate::digest::HashAlgorithm;
use crate::pdf::{self, PrepareOptions, PreparedPdf};

/// The request path of a one-time signature.
pub const ONETIME_PATH: &str = "/v1/sign/onetime";
/// The path prefix of `GET /v1/sign/response/{signatureId}`.
pub const RESPONSE_PATH: &str = "/v1/sign/response/";
/// The header carrying the user's ID token.
pub const AUTH_HEADER: &str = "X-GovStack-AuthenticationToken";
/// The header carrying a Payment BB token.
pub const PAYMENT_HEADER: &str = "X-GovStack-PaymentToken";

/// A signature format of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PDF signed in place.
    Pades,
    /// A detached CMS.
    Cades,
    /// A detached XAdES signature.
    Xades,
    /// A detached JWS / JAdES.
    Jws,
    /// An ASiC-E container with XAdES.
    Asice,
    /// An ASiC-E container with a CAdES signature over an ASiCManifest the client writes (sent
    /// as format `CAdES` with the manifest's digest).
    AsiceCades,
}

impl Format {
    /// Parses a `format` (case-insensitive; `ASiC-E` and `JAdES` too).
    pub fn parse(s: &str) -> Result<Format, Error> {
        match s.to_ascii_uppercase().as_str() {
            "PADES" => Ok(Format::Pades),
            "CADES" => Ok(Format::Cades),
            "XADES" => Ok(Format::Xades),
            "JWS" | "JADES" => Ok(Format::Jws),
            "ASIC" | "ASIC-E" | "ASICE" => Ok(Format::Asice),
            "ASIC-CADES" | "ASICE-CADES" => Ok(Format::AsiceCades),
            _ => Err(Error::Request(format!(
                "format {s:?} is unknown; use PAdES, CAdES, XAdES, JWS, ASIC or ASIC-CAdES"
            ))),
        }
    }

    /// The API's name (`ASIC-CAdES` is sent as `CAdES`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Pades => "PAdES",
            Format::Cades | Format::AsiceCades => "CAdES",
            Format::Xades => "XAdES",
            Format::Jws => "JWS",
            Format::Asice => "ASIC",
        }
    }

    /// The usual file extension of the output.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pades => "pdf",
            Format::Cades => "p7s",
            Format::Xades => "xml",
            Format::Jws => "json",
            Format::Asice | Format::AsiceCades => "asice",
        }
    }
}

/// What [`plan`] needs besides the files.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// The format.
    pub format: Format,
    /// `hashType` (PAdES: SHA-256 always).
    pub hash: HashAlgorithm,
    /// `dataToBeDisplayed`.
    pub display: Option<String>,
    /// `requestTimestamp` (and the PDF's `/M`, the container's file times).
    pub time: SystemTime,
    /// PAdES: the signature dictionary's options (`signing_time` is replaced by `time`).
    pub pdf: PrepareOptions,
}

/// A request ready to send and what is needed to finish it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The options.
    pub options: SignOptions,
    /// The files (for PAdES the original PDF).
    pub files: Vec<DataFile>,
    /// PAdES: the prepared PDF, to be kept unchanged until the CMS comes back.
    pub prepared: Option<PreparedPdf>,
    /// ASiC-E with CAdES: the ASiCManifest whose digest is sent.
    pub manifest: Option<Vec<u8>>,
    /// The JSON body of `POST /v1/sign/onetime`.
    pub body: Value,
}

/// RFC 3339 UTC, whole seconds.
fn rfc3339(t: SystemTime) -> Result<String, Error> {
    let d = der::DateTime::from_system_time(t)
        .map_err(|e| Error::Request(format!("time not representable: {e}")))?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minutes(),
        d.seconds()
    ))
}

/// Builds the request body for `files` (see the module documentation).
pub fn plan(files: Vec<DataFile>, options: SignOptions) -> Result<Plan, Error> {
    let format = options.format;
    if files.is_empty() {
        return Err(Error::Request("no file to sign".into()));
    }
    let one = |files: &[DataFile]| -> Result<(), Error> {
        if files.len() != 1 {
            return Err(Error::Request(format!(
                "{} signs one file, {} were given (XAdES, JWS and ASIC sign several)",
                format.name(),
                files.len()
            )));
        }
        Ok(())
    };
    let mut body = json!({ "format": format.name(), "hashType": options.hash.name() });
    let mut prepared = None;
    let mut manifest = None;
    match format {
        Format::Pades => {
            one(&files)?;
            if options.hash != HashAlgorithm::Sha256 {
                return Err(Error::Request(
                    "PAdES signs the SHA-256 of the /ByteRange: use --hash SHA2-256".into(),
                ));
            }
            let p = pdf::prepare(
                &files[0].bytes,
                &PrepareOptions {
                    signing_time: options.time,
                    ..options.pdf.clone()
                },
            )?;
            body["hash"] = json!(B64.encode(p.digest));
            prepared = Some(p);
        }
        Format::Cades => {
            one(&files)?;
            body["hash"] = json!(B64.encode(options.hash.digest(&files[0].bytes)));
        }
        Format::AsiceCades => {
            let m = asice::asic_manifest(&files, options.hash)?;
            body["hash"] = json!(B64.encode(options.hash.digest(&m)));
            manifest = Some(m);
        }
        Format::Xades | Format::Jws | Format::Asice => {
            let mut seen = std::collections::BTreeSet::new();
            for f in &files {
                if !seen.insert(f.name.as_str()) {
                    return Err(Error::Request(format!(
                        "two files are named {:?}; names must differ",
                        f.name
                    )));
                }
                if format == Format::Asice {
                    asice::check_name(&f.name)?;
                }
            }
            body["documents"] = files
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name,
                        "mediaType": f.media_type,
                        "hash": B64.encode(options.hash.digest(&f.bytes)),
                    })
                })
                .collect();
        }
    }
    if let Some(d) = &options.display {
        body["dataToBeDisplayed"] = json!(d);
    }
    body["requestTimestamp"] = json!(rfc3339(options.time)?);
    Ok(Plan {
        options,
        files,
        prepared,
        manifest,
        body,
    })
}

/// The useful fields of esigd's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignResponse {
    /// `signatureId` (for `GET /v1/sign/response/{id}`).
    pub signature_id: Option<String>,
    /// The decoded `signature`.
    pub signature: Vec<u8>,
    /// `certificate` (PEM).
    pub certificate: Option<String>,
    /// `signatureTimestamp` (base64 DER token).
    pub signature_timestamp: Option<String>,
}

/// Parses an answer body: `{"signature": base64, …}` with `status.code` `OK`, or the error's
/// `status.message`.
pub fn parse_response(body: &[u8]) -> Result<SignResponse, Error> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::Response(format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    let code = v.pointer("/status/code").and_then(Value::as_str);
    if code.is_some_and(|c| c != "OK") {
        return Err(Error::Response(format!(
            "{}: {}",
            code.unwrap_or_default(),
            v.pointer("/status/message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        )));
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let signature =
        s("signature").ok_or_else(|| Error::Response("no signature in the answer".into()))?;
    let signature = B64
        .decode(signature.as_bytes())
        .map_err(|e| Error::Response(format!("signature is not base64: {e}")))?;
    Ok(SignResponse {
        signature_id: s("signatureId"),
        signature,
        certificate: s("certificate"),
        signature_timestamp: s("signatureTimestamp"),
    })
}

impl Plan {
    /// The body as JSON text.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    /// Merges the signature from esigd's answer into the output file: the signed PDF, the CMS,
    /// the XAdES XML, the JWS or the ASiC-E container. The result is checked with
    /// [`crate::verify::verify`] against the files before it is returned.
    pub fn finish(&self, response: &SignResponse) -> Result<Vec<u8>, Error> {
        let sig = &response.signature;
        let out = match self.options.format {
            Format::Pades => {
                let p = self
                    .prepared
                    .as_ref()
                    .ok_or_else(|| Error::Request("the PDF was not prepared".into()))?;
                pdf::embed(&p.bytes, sig)?
            }
            Format::Cades | Format::Xades | Format::Jws => sig.clone(),
            Format::Asice => asice::build_xades(sig, &self.files, self.options.time)?,
            Format::AsiceCades => {
                let m = self
                    .manifest
                    .as_ref()
                    .ok_or_else(|| Error::Request("no ASiCManifest was written".into()))?;
                asice::build_cades(sig, m, &self.files, self.options.time)?
            }
        };
        let report = crate::verify::verify(&out, &self.files, self.options.format == Format::Pades);
        if !report.passed() {
            let fails: Vec<String> = report
                .failures()
                .map(|c| format!("{}: {}", c.what, c.detail))
                .collect();
            return Err(Error::Response(format!(
                "the returned signature does not check out: {}",
                fails.join("; ")
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn opts(format: Format) -> SignOptions {
        SignOptions {
            format,
            hash: HashAlgorithm::Sha256,
            display: Some("Contract 7".into()),
            time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            pdf: PrepareOptions::default(),
        }
    }

    fn file(name: &str, bytes: &[u8]) -> DataFile {
        DataFile {
            name: name.into(),
            media_type: asice::media_type_of(name).into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn bodies() {
        let p = plan(vec![file("a.txt", b"abc")], opts(Format::Cades)).unwrap();
        assert_eq!(
            p.body,
            json!({"format": "CAdES", "hashType": "SHA2-256",
                   "hash": "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
                   "dataToBeDisplayed": "Contract 7",
                   "requestTimestamp": "2023-11-14T22:13:20Z"})
        );
        let p = plan(
            vec![file("a b.txt", b"abc"), file("d.pdf", b"x")],
            opts(Format::Asice),
        )
        .unwrap();
        assert_eq!(p.body["format"], "ASIC");
        assert_eq!(p.body["documents"][0]["name"], "a b.txt");
        assert_eq!(p.body["documents"][0]["mediaType"], "text/plain");
        assert_eq!(p.body["documents"][1]["mediaType"], "application/pdf");
        assert!(p.body.get("hash").is_none());
        let e = plan(vec![file("a", b"1"), file("b", b"2")], opts(Format::Cades)).unwrap_err();
        assert!(e.to_string().contains("one file"), "{e}");
        let e = plan(vec![file("a", b"1"), file("a", b"2")], opts(Format::Jws)).unwrap_err();
        assert!(e.to_string().contains("names must differ"), "{e}");
        let mut o = opts(Format::Pades);
        o.hash = HashAlgorithm::Sha512;
        assert!(plan(vec![file("a.pdf", b"%PDF-1.7")], o).is_err());
        assert!(Format::parse("asic-e").is_ok() && Format::parse("x").is_err());
        // ASiC-E with CAdES: the manifest's digest goes as format CAdES.
        let p = plan(
            vec![file("a.txt", b"abc"), file("b.pdf", b"x")],
            opts(Format::parse("ASIC-CAdES").unwrap()),
        )
        .unwrap();
        let m = p.manifest.as_ref().unwrap();
        assert_eq!(p.body["format"], "CAdES");
        assert_eq!(p.body["hash"], B64.encode(HashAlgorithm::Sha256.digest(m)));
        assert!(p.body.get("documents").is_none());
    }

    #[test]
    fn responses() {
        let ok =
            parse_response(br#"{"signatureId":"ab","signature":"AQI=","status":{"code":"OK"}}"#)
                .unwrap();
        assert_eq!(ok.signature, vec![1, 2]);
        assert_eq!(ok.signature_id.as_deref(), Some("ab"));
        let e =
            parse_response(br#"{"status":{"code":"ERROR","message":"hash is not valid base64"}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("hash is not valid base64"), "{e}");
        assert!(parse_response(b"<html>").is_err());
        assert!(parse_response(br#"{"signature":"***"}"#).is_err());
    }
}
