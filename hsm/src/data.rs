//! Small data objects kept on the token (`CKO_DATA`, `CKA_TOKEN` true, `CKA_PRIVATE` true).
//!
//! The appliance keeps facts here that must survive the loss of its data directory, because the
//! HSM is what survives: e.g. the high-water marks of time-stamp serials and CRL numbers, which a
//! restore from backup must never go below. An object is found by its label (`CKA_LABEL`) and
//! application (`CKA_APPLICATION`, always `esigd`). A write creates a new object (generation number in
//! `CKA_ID`) and then destroys the older one, so a crash in between leaves the old or the new value, never
//! none; readers take the newest generation.
//!
//! The calls block on PKCS#11 like every other call of this crate: run them on blocking threads,
//! never on an async executor.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::core::OpError;
use crate::error::HsmError;
use crate::observer::HsmOp;
use crate::token::Hsm;

/// `CKA_APPLICATION` of every data object esigd writes.
const APPLICATION: &[u8] = b"esigd";

/// Largest value accepted (data objects hold small records, not files).
pub const MAX_DATA_VALUE: usize = 4096;

fn template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Application(APPLICATION.to_vec()),
    ]
}

/// One data object labelled `label`: its handle, generation and value.
///
/// The stored `CKA_VALUE` is the generation (8 bytes, big-endian) followed by the caller's value (data
/// objects have no `CKA_ID` to carry it).
struct Found {
    handle: ObjectHandle,
    generation: u64,
    value: Vec<u8>,
}

/// Every object labelled `label` (normally one; two after a crash between creating the new generation and
/// destroying the old one), newest first.
fn find_all(session: &Session, label: &str) -> Result<Vec<Found>, OpError> {
    let mut out = Vec::new();
    for handle in session.find_objects(&template(label))? {
        let attrs = session.get_attributes(handle, &[AttributeType::Value])?;
        let Some(Attribute::Value(stored)) = attrs.into_iter().next() else {
            return Err(
                HsmError::BadTokenData(format!("data object {label:?} without CKA_VALUE")).into(),
            );
        };
        let Some((generation, value)) = stored
            .split_first_chunk::<8>()
            .map(|(g, v)| (u64::from_be_bytes(*g), v.to_vec()))
        else {
            return Err(HsmError::BadTokenData(format!(
                "data object {label:?}: {} bytes, too short for an esigd data object",
                stored.len()
            ))
            .into());
        };
        out.push(Found {
            handle,
            generation,
            value,
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.generation));
    Ok(out)
}

/// Writes `value` as a new generation of `label`, then destroys the older ones. Many tokens (SoftHSM
/// among them) refuse to change `CKA_VALUE` of an existing object, and destroying first would lose the
/// value on a crash in between: the newest generation always exists.
fn replace(
    session: &Session,
    label: &str,
    existing: &[Found],
    value: &[u8],
) -> Result<(), OpError> {
    let generation = existing
        .first()
        .map_or(1, |f| f.generation.saturating_add(1));
    let mut stored = generation.to_be_bytes().to_vec();
    stored.extend_from_slice(value);
    let mut t = template(label);
    t.extend([
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Value(stored),
    ]);
    session.create_object(&t)?;
    for old in existing {
        if let Err(e) = session.destroy_object(old.handle) {
            // The new generation is written; a leftover older one is ignored by readers and destroyed
            // by the next write.
            tracing::warn!(label, error = %e, "destroying an older generation of a data object failed");
        }
    }
    Ok(())
}

fn check_size(label: &str, value: &[u8]) -> Result<(), HsmError> {
    if value.len() > MAX_DATA_VALUE {
        return Err(HsmError::Unsupported(format!(
            "data object {label:?}: {} bytes, at most {MAX_DATA_VALUE}",
            value.len()
        )));
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), HsmError> {
    if label.is_empty() {
        return Err(HsmError::Unsupported("a data object needs a label".into()));
    }
    Ok(())
}

impl Hsm {
    /// The value of the data object labelled `label` (its newest generation), or `None` when the token
    /// has none.
    pub fn read_data(&self, label: &str) -> Result<Option<Vec<u8>>, HsmError> {
        check_label(label)?;
        let inner = &self.inner;
        self.run_op(HsmOp::DataObject, true, |s| {
            let found = find_all(&s.session, label)?;
            if found.is_empty() {
                // A lost token shows no objects at all: "none" only from a token that answers.
                inner.check_token()?;
            }
            Ok(found.into_iter().next().map(|f| f.value))
        })
    }

    /// Stores `value` under `label`: a new object generation is created, then the older ones destroyed.
    /// Durable on the token when it returns (as durable as the token makes its objects).
    pub fn write_data(&self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        check_label(label)?;
        check_size(label, value)?;
        let inner = &self.inner;
        self.run_op(HsmOp::DataObject, true, |s| {
            let existing = find_all(&s.session, label)?;
            if existing.is_empty() {
                // Generation numbers continue from the newest object: not from nothing because
                // the token is lost.
                inner.check_token()?;
            }
            replace(&s.session, label, &existing, value)
        })
    }

    /// Read-modify-write of the data object labelled `label` on one session: `update` gets the current
    /// value (`None` when there is no object) and returns the new value, or `None` to leave the object as
    /// it is. Returns what `update` returned.
    ///
    /// Not atomic across processes (PKCS#11 has no compare-and-set); callers in one process serialise
    /// their updates themselves.
    pub fn update_data(
        &self,
        label: &str,
        mut update: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, HsmError> {
        check_label(label)?;
        let inner = &self.inner;
        self.run_op(HsmOp::DataObject, true, |s| {
            let existing = find_all(&s.session, label)?;
            if existing.is_empty() {
                // Never let `update` start again from nothing because the token is lost.
                inner.check_token()?;
            }
            let Some(new) = update(existing.first().map(|f| f.value.as_slice())) else {
                return Ok(None);
            };
            check_size(label, &new)?;
            replace(&s.session, label, &existing, &new)?;
            Ok(Some(new))
        })
    }

    /// Destroys the data object labelled `label` (every generation); true if there was one.
    pub fn delete_data(&self, label: &str) -> Result<bool, HsmError> {
        check_label(label)?;
        self.run_op(HsmOp::DataObject, true, |s| {
            let existing = find_all(&s.session, label)?;
            for f in &existing {
                s.session.destroy_object(f.handle)?;
            }
            Ok(!existing.is_empty())
        })
    }
}
