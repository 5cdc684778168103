//! The client side of esigd: what an e-Service back end, a citizen or an auditor runs next to the
//! signing service, which only ever sees digests.
//!
//! - [`digest`]: the digest of a file, as the `hash` of a GovStack sign request.
//! - [`pdf`]: PAdES. [`pdf::prepare`] appends a signature field and a signature dictionary with
//!   placeholders to a PDF as an incremental update (the original bytes stay a prefix) and returns
//!   the SHA-256 of the `/ByteRange`, which goes to esigd (format `PAdES`); [`pdf::embed`] puts the
//!   detached CMS that esigd returns into `/Contents` of exactly those prepared bytes.
//! - [`pdf_lt`]: PAdES B-LT and B-LTA: validation data in the `/DSS` ([`pdf_lt::add_dss`]) and
//!   document time-stamps ([`pdf_lt::add_document_timestamp`]), each an incremental update;
//!   `lt_fetch` (feature `cli`) collects that data from esigd's public endpoints.
//! - [`asice`]: ASiC-E containers (XAdES `signatures0.xml` form, and the CAdES form over an
//!   ASiCManifest the client writes), with the byte rules of EN 319 162-1.
//! - [`verify`]: a structural check of PAdES, CAdES, XAdES, JWS and ASiC-E signatures (digests,
//!   signature value, time-stamp imprint); not a qualified validation.
//! - [`sign`]: the request body of `POST /v1/sign/onetime` for files, and the merge of the answer
//!   into the signed file (the network part is the `esig sign` command).
//!
//! ```no_run
//! # fn send_to_esigd(_digest: &[u8]) -> Vec<u8> { Vec::new() }
//! # fn main() -> Result<(), esig::Error> {
//! let original = std::fs::read("contract.pdf").map_err(|e| esig::Error::io("contract.pdf", e))?;
//! let prepared = esig::pdf::prepare(&original, &esig::pdf::PrepareOptions::default())?;
//! // Keep `prepared.bytes` as they are until the CMS comes back.
//! let cms = send_to_esigd(&prepared.digest);
//! let signed = esig::pdf::embed(&prepared.bytes, &cms)?;
//! # let _ = signed;
//! # Ok(())
//! # }
//! ```

pub mod asice;
pub mod digest;
mod error;
#[cfg(feature = "cli")]
pub mod lt_fetch;
pub mod pdf;
pub mod pdf_lt;
pub mod sign;
pub mod verify;
mod xmldsig;

pub use error::Error;
