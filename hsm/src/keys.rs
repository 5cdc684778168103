//! Key lookup, key generation and public-key export on one session.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::Decode;
use der::asn1::OctetString;
use sha2::Digest;
use spki::EncodePublicKey;

use crate::core::{CachedKey, OpError, PooledSession};
use crate::error::HsmError;
use crate::keyref::KeyRef;
use crate::mech::{KeyKind, SignatureScheme};
use crate::signer::PublicKey;

fn match_template(key: &KeyRef, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class)];
    if let Some(l) = key.object_label() {
        t.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = key.object_id() {
        t.push(Attribute::Id(id.to_vec()));
    }
    t
}

/// Finds exactly one object of `class` matching `key`; `setting` names the configuration key.
pub(crate) fn find_one(
    session: &Session,
    key: &KeyRef,
    class: ObjectClass,
    setting: &str,
) -> Result<Option<ObjectHandle>, OpError> {
    let found = session.find_objects(&match_template(key, class))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(HsmError::Config {
            setting: setting.to_string(),
            message: format!("{key} matches {n} objects; add id= to make it unique"),
        }
        .into()),
    }
}

/// Reads the key kind of a private or public key object.
pub(crate) fn kind_of(session: &Session, h: ObjectHandle) -> Result<KeyKind, OpError> {
    key_kind(session, h)
}

fn key_kind(session: &Session, h: ObjectHandle) -> Result<KeyKind, OpError> {
    let attrs = session.get_attributes(
        h,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::Modulus,
        ],
    )?;
    let mut kt = None;
    let mut params = None;
    let mut modulus_len = None;
    for a in attrs {
        match a {
            Attribute::KeyType(t) => kt = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::Modulus(m) => modulus_len = Some(m.len()),
            _ => {}
        }
    }
    match kt {
        Some(t) if t == KeyType::EC => {
            let p = params
                .ok_or_else(|| HsmError::BadTokenData("EC key without CKA_EC_PARAMS".into()))?;
            if Some(p.clone()) == KeyKind::EcP256.ec_params() {
                Ok(KeyKind::EcP256)
            } else if Some(p) == KeyKind::EcP384.ec_params() {
                Ok(KeyKind::EcP384)
            } else {
                Err(HsmError::Unsupported("EC curve other than P-256/P-384".into()).into())
            }
        }
        Some(t) if t == KeyType::RSA => {
            let bytes = modulus_len
                .ok_or_else(|| HsmError::BadTokenData("RSA key without CKA_MODULUS".into()))?;
            Ok(KeyKind::Rsa((bytes * 8) as u32))
        }
        Some(t) => Err(HsmError::Unsupported(format!("key type {t}")).into()),
        None => Err(HsmError::BadTokenData("key without CKA_KEY_TYPE".into()).into()),
    }
}

/// The private key handle and kind for `key`, cached on the session.
pub(crate) fn private_key(
    s: &mut PooledSession,
    key: &KeyRef,
    setting: &str,
) -> Result<CachedKey, OpError> {
    if let Some(k) = s.keys.get(key) {
        return Ok(*k);
    }
    let h = find_one(&s.session, key, ObjectClass::PRIVATE_KEY, setting)?.ok_or_else(|| {
        HsmError::KeyNotFound {
            setting: setting.to_string(),
            key: key.to_string(),
            class: "private",
        }
    })?;
    let kind = key_kind(&s.session, h)?;
    let cached = CachedKey { handle: h, kind };
    s.keys.insert(key.clone(), cached);
    Ok(cached)
}

/// Exports the public key of `key` (from its public-key object) as SPKI.
pub(crate) fn public_key(
    s: &PooledSession,
    key: &KeyRef,
    setting: &str,
) -> Result<PublicKey, OpError> {
    let h = find_one(&s.session, key, ObjectClass::PUBLIC_KEY, setting)?.ok_or_else(|| {
        HsmError::KeyNotFound {
            setting: setting.to_string(),
            key: key.to_string(),
            class: "public",
        }
    })?;
    public_key_of(&s.session, h)
}

/// Builds the SPKI of a public-key object.
pub(crate) fn public_key_of(session: &Session, h: ObjectHandle) -> Result<PublicKey, OpError> {
    let kind = key_kind(session, h)?;
    public_key_of_kind(session, h, kind)
}

/// Builds the SPKI of a public-key object whose kind is known (saves a round trip).
fn public_key_of_kind(
    session: &Session,
    h: ObjectHandle,
    kind: KeyKind,
) -> Result<PublicKey, OpError> {
    match kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let attrs = session.get_attributes(h, &[AttributeType::EcPoint])?;
            let Some(Attribute::EcPoint(point)) = attrs.into_iter().next() else {
                return Err(
                    HsmError::BadTokenData("EC public key without CKA_EC_POINT".into()).into(),
                );
            };
            Ok(PublicKey::from_ec_point(kind, &unwrap_ec_point(&point))?)
        }
        KeyKind::Rsa(_) => {
            let attrs = session
                .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            let (Some(n), Some(e)) = (n, e) else {
                return Err(HsmError::BadTokenData(
                    "RSA public key without modulus/exponent".into(),
                )
                .into());
            };
            let pk = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| HsmError::BadTokenData(format!("RSA public key: {e}")))?;
            let der = pk
                .to_public_key_der()
                .map_err(|e| HsmError::BadTokenData(format!("RSA SPKI: {e}")))?;
            Ok(PublicKey::new(kind, der.as_bytes().to_vec()))
        }
    }
}

/// `CKA_EC_POINT` is normally a DER OCTET STRING around the SEC1 point; some modules return it raw.
fn unwrap_ec_point(v: &[u8]) -> Vec<u8> {
    match OctetString::from_der(v) {
        Ok(os) if matches!(os.as_bytes().first(), Some(0x04)) => os.as_bytes().to_vec(),
        _ => v.to_vec(),
    }
}

pub(crate) fn gen_templates(
    kind: KeyKind,
    token: bool,
    label: Option<&str>,
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), HsmError> {
    let mut public = vec![
        Attribute::Token(token),
        Attribute::Verify(true),
        Attribute::Private(false),
    ];
    let mut private = vec![
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    let mech = match kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let params = kind
                .ec_params()
                .ok_or_else(|| HsmError::Unsupported("curve".into()))?;
            public.push(Attribute::EcParams(params));
            Mechanism::EccKeyPairGen
        }
        KeyKind::Rsa(bits) => {
            if !(2048..=8192).contains(&bits) || bits % 8 != 0 {
                return Err(HsmError::Unsupported(format!(
                    "RSA key size {bits}: use 2048 to 8192 bits"
                )));
            }
            public.push(Attribute::ModulusBits(u64::from(bits).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    if let Some(label) = label {
        let id = sha2::Sha256::digest(label.as_bytes())[..8].to_vec();
        for t in [&mut public, &mut private] {
            t.push(Attribute::Label(label.as_bytes().to_vec()));
            t.push(Attribute::Id(id.clone()));
        }
    }
    Ok((mech, public, private))
}

/// Generates a persistent (token) key pair labelled `label`; refuses to replace an existing key.
pub(crate) fn generate_persistent(
    s: &PooledSession,
    label: &str,
    kind: KeyKind,
) -> Result<PublicKey, OpError> {
    let key = KeyRef::label(label);
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if !s
            .session
            .find_objects(&match_template(&key, class))?
            .is_empty()
        {
            return Err(HsmError::KeyExists {
                label: label.to_string(),
            }
            .into());
        }
    }
    let (mech, public, private) = gen_templates(kind, true, Some(label))?;
    let (pub_h, _priv_h) = s.session.generate_key_pair(&mech, &public, &private)?;
    public_key_of(&s.session, pub_h)
}

/// Generates an ephemeral session key pair (CKA_TOKEN=false, sensitive, not extractable).
/// Returns the private handle and the public key; the public-key object is destroyed at once
/// because only its value is needed.
pub(crate) fn generate_ephemeral(
    session: &Session,
    kind: KeyKind,
) -> Result<(ObjectHandle, PublicKey), OpError> {
    let (mech, public, private) = gen_templates(kind, false, None)?;
    let (pub_h, priv_h) = session.generate_key_pair(&mech, &public, &private)?;
    let pk = match public_key_of_kind(session, pub_h, kind) {
        Ok(pk) => pk,
        Err(e) => {
            let _ = session.destroy_object(priv_h);
            let _ = session.destroy_object(pub_h);
            return Err(e);
        }
    };
    session.destroy_object(pub_h)?;
    Ok((priv_h, pk))
}

/// Signs `digest` (already hashed with `scheme`'s hash) with the private key `h` of `kind`.
pub(crate) fn sign_digest(
    session: &Session,
    h: ObjectHandle,
    kind: KeyKind,
    scheme: SignatureScheme,
    digest: &[u8],
) -> Result<Vec<u8>, OpError> {
    if !scheme.fits(kind) {
        return Err(HsmError::Unsupported(format!("{scheme:?} with a {kind:?} key")).into());
    }
    let input = scheme.hsm_input(digest)?;
    let raw = session.sign(&scheme.mechanism(), h, &input)?;
    Ok(scheme.encode_signature(kind, raw)?)
}
