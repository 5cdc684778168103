//! JWS / JAdES (placeholder until the implementation lands).
use crate::{Format, FormatError, Prepared, SignRequest, SignatureFormat};
/// JWS.
#[derive(Debug)]
pub struct JwsFormat;
/// JWS.
pub static JWS: JwsFormat = JwsFormat;
impl SignatureFormat for JwsFormat {
    fn format(&self) -> Format { Format::Jws }
    fn prepare(&self, _: &SignRequest<'_>) -> Result<Box<dyn Prepared>, FormatError> {
        Err(FormatError::request("format", "JWS is not implemented yet"))
    }
}
