//! The client side of esigd: what an e-Service back end, a citizen or an auditor runs next to the
//! signing service, which only ever sees digests.
//!
//! - [`digest`]: the digest of a file, as the `hash` of a GovStack sign request.
//! - [`pdf`]: PAdES. [`pdf::prepare`] appends a signature field and a signature dictionary with
//!   placeholders to a PDF as an incremental update (the original bytes stay a prefix) and returns
//!   the SHA-256 of the `/ByteRange`, which goes to esigd (format `PAdES`); [`pdf::embed`] puts the
//!   detached CMS that esigd returns into `/Contents` of exactly those prepared bytes.
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

pub mod digest;
mod error;
pub mod pdf;

pub use error::Error;
