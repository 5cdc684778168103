//! XAdES (placeholder until the implementation lands).
use crate::{Format, FormatError, Prepared, SignRequest, SignatureFormat};
/// XAdES.
#[derive(Debug)]
pub struct XadesFormat { format: Format }
/// XAdES.
pub static XADES: XadesFormat = XadesFormat { format: Format::Xades };
/// ASiC-E.
pub static ASICE: XadesFormat = XadesFormat { format: Format::Asice };
impl SignatureFormat for XadesFormat {
    fn format(&self) -> Format { self.format }
    fn prepare(&self, _: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError> {
        Err(FormatError::request("format", "XAdES is not implemented yet"))
    }
}
