//! RFC 3161 (+ RFC 5816) Time-Stamp Protocol messages on `x509-tsp` 0.1.0 and [`crate::cms`] (this
//! module builds on `cms`, never the reverse; attaching a token to a signature is in `cades`).
//!
//! `x509-tsp` provides `TimeStampReq`, `MessageImprint` and `Accuracy`, which are used as they are. Three
//! things are defined here instead:
//! * [`TstInfo`]: x509-tsp's `genTime` is der 0.7's `GeneralizedTime`, which cannot carry fractional
//!   seconds; [`GenTime`] can (RFC 3161 §2.4.2: fraction without trailing zeros, always `Z`).
//! * [`PkiStatusInfo`] / [`TimeStampResp`]: `cmpv2` 0.2.0's `PkiFailureInfo` flag values are wrong
//!   (bit *values* instead of bit *positions*, `badTime` = 2 duplicates `badRequest`, a `u16` cannot hold
//!   bit 16+), so `failInfo` is encoded here as a DER named-bit-list BIT STRING ([`FailureInfo`]).

use crate::cms::{self, CmsError, ContentType, DigestAlgorithm, oids};
use ::cms::content_info::ContentInfo;
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, Int};
use der::{
    DateTime, Decode, DecodeValue, Encode, EncodeValue, Enumerated, FixedTag, Header, Length,
    Reader, Sequence, Tag, Tagged, Writer,
};
use signature::{Keypair, Signer};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::name::GeneralName;

pub use x509_tsp::{Accuracy, MessageImprint, TimeStampReq, TspVersion};

/// Errors of the TSP module.
#[derive(Debug, thiserror::Error)]
pub enum TspError {
    /// DER encoding/decoding failed.
    #[error("ASN.1 DER: {0}")]
    Asn1(#[from] der::Error),
    /// Building or parsing the CMS token failed (signer failures are kept as the source).
    #[error("time-stamp token CMS")]
    Cms(#[from] CmsError),
    /// A value is out of range or a structure is not as required.
    #[error("invalid TSP message: {0}")]
    Invalid(&'static str),
}

/// `GeneralizedTime` with optional fractional seconds, as RFC 3161 §2.4.2 requires for `genTime`:
/// `YYYYMMDDhhmmss[.s...]Z`, no trailing zeros in the fraction, no `.` without digits. Resolution: 1 ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GenTime {
    since_epoch: Duration,
}

impl GenTime {
    /// `time` truncated to `fraction_digits` (0..=9) decimal digits of a second.
    pub fn from_system_time(time: SystemTime, fraction_digits: u8) -> Result<Self, TspError> {
        if fraction_digits > 9 {
            return Err(TspError::Invalid("genTime fraction digits must be 0..=9"));
        }
        let d = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TspError::Invalid("genTime before 1970"))?;
        let unit = 10u32.pow(9 - u32::from(fraction_digits));
        let nanos = d.subsec_nanos() / unit * unit;
        // Check representability (year <= 9999) up front so encoding cannot fail later.
        DateTime::from_unix_duration(Duration::from_secs(d.as_secs()))?;
        Ok(Self {
            since_epoch: Duration::new(d.as_secs(), nanos),
        })
    }

    /// The time as `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + self.since_epoch
    }

    /// Time since the Unix epoch.
    pub fn to_unix_duration(self) -> Duration {
        self.since_epoch
    }

    /// `YYYYMMDDhhmmss[.f…]Z` into `buf` (no allocation: genTime is encoded several times per
    /// token, for lengths and for the bytes); returns the length used.
    fn render(&self, buf: &mut [u8; 25]) -> der::Result<usize> {
        let dt = DateTime::from_unix_duration(Duration::from_secs(self.since_epoch.as_secs()))?;
        let mut n = 0;
        let mut put = |value: u32, digits: u32| {
            for i in (0..digits).rev() {
                buf[n] = b'0' + (value / 10u32.pow(i) % 10) as u8;
                n += 1;
            }
        };
        put(u32::from(dt.year()), 4);
        for v in [dt.month(), dt.day(), dt.hour(), dt.minutes(), dt.seconds()] {
            put(u32::from(v), 2);
        }
        let mut nanos = self.since_epoch.subsec_nanos();
        if nanos != 0 {
            let mut digits = 9;
            while nanos.is_multiple_of(10) {
                nanos /= 10;
                digits -= 1;
            }
            buf[n] = b'.';
            n += 1;
            for i in (0..digits).rev() {
                buf[n] = b'0' + (nanos / 10u32.pow(i) % 10) as u8;
                n += 1;
            }
        }
        buf[n] = b'Z';
        Ok(n + 1)
    }
}

impl FixedTag for GenTime {
    const TAG: Tag = Tag::GeneralizedTime;
}

impl EncodeValue for GenTime {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.render(&mut [0; 25])?)
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let mut buf = [0; 25];
        let n = self.render(&mut buf)?;
        writer.write(&buf[..n])
    }
}

impl<'a> DecodeValue<'a> for GenTime {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        parse_gen_time(&bytes).ok_or_else(|| Tag::GeneralizedTime.value_error())
    }
}

fn parse_gen_time(b: &[u8]) -> Option<GenTime> {
    // YYYYMMDDhhmmss + 'Z' at least; fraction of 1..=9 digits, last digit not '0'.
    if b.len() < 15 || *b.last()? != b'Z' {
        return None;
    }
    let digits = |r: core::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let dt = DateTime::new(
        u16::try_from(digits(0..4)?).ok()?,
        u8::try_from(digits(4..6)?).ok()?,
        u8::try_from(digits(6..8)?).ok()?,
        u8::try_from(digits(8..10)?).ok()?,
        u8::try_from(digits(10..12)?).ok()?,
        u8::try_from(digits(12..14)?).ok()?,
    )
    .ok()?;
    let nanos = match &b[14..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) && frac.last() != Some(&b'0') => {
            let v = digits(15..15 + frac.len())?;
            v * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    Some(GenTime {
        since_epoch: dt.unix_duration() + Duration::from_nanos(u64::from(nanos)),
    })
}

/// RFC 3161 `TSTInfo` with a fractional-seconds `genTime` (see module docs).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TstInfo {
    /// Always v1.
    pub version: TspVersion,
    /// TSA policy under which the token was issued.
    pub policy: ObjectIdentifier,
    /// Copied from the request.
    pub message_imprint: MessageImprint,
    /// Unique serial number.
    pub serial_number: Int,
    /// Generation time.
    pub gen_time: GenTime,
    /// Accuracy of `gen_time`.
    #[asn1(optional = "true")]
    pub accuracy: Option<Accuracy>,
    /// Ordering (DEFAULT FALSE).
    #[asn1(default = "Default::default")]
    pub ordering: bool,
    /// Nonce copied from the request.
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    /// Name of the TSA.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
    /// Extensions.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// `PKIStatus` (RFC 3161 §2.4.2 / RFC 4210).
#[derive(Clone, Debug, Copy, PartialEq, Eq, Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
pub enum PkiStatus {
    /// granted
    Granted = 0,
    /// grantedWithMods
    GrantedWithMods = 1,
    /// rejection
    Rejection = 2,
    /// waiting
    Waiting = 3,
    /// revocationWarning
    RevocationWarning = 4,
    /// revocationNotification
    RevocationNotification = 5,
}

/// `PKIFailureInfo` bits as used by RFC 3161 §2.4.2, encoded as a DER named-bit-list BIT STRING.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct FailureInfo(u32);

impl FailureInfo {
    /// badAlg (0): unrecognized or unsupported algorithm identifier.
    pub const BAD_ALG: Self = Self(1 << 0);
    /// badRequest (2): transaction not permitted or supported.
    pub const BAD_REQUEST: Self = Self(1 << 2);
    /// badDataFormat (5): the data submitted has the wrong format.
    pub const BAD_DATA_FORMAT: Self = Self(1 << 5);
    /// timeNotAvailable (14): the TSA's time source is not available.
    pub const TIME_NOT_AVAILABLE: Self = Self(1 << 14);
    /// unacceptedPolicy (15): the requested TSA policy is not supported.
    pub const UNACCEPTED_POLICY: Self = Self(1 << 15);
    /// unacceptedExtension (16): the requested extension is not supported.
    pub const UNACCEPTED_EXTENSION: Self = Self(1 << 16);
    /// addInfoNotAvailable (17): the additional information requested is not available.
    pub const ADD_INFO_NOT_AVAILABLE: Self = Self(1 << 17);
    /// systemFailure (25): the request cannot be handled due to system failure.
    pub const SYSTEM_FAILURE: Self = Self(1 << 25);

    /// Bit positions set (bit 0 = badAlg).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// DER BIT STRING: bit n is the n-th bit from the MSB of the first octet; trailing zero bits are
    /// removed (X.690 §11.2.2), so the encoding ends with the highest set bit.
    pub fn to_bit_string(self) -> Result<BitString, der::Error> {
        if self.0 == 0 {
            return BitString::new(0, Vec::new());
        }
        let highest = 31 - self.0.leading_zeros() as usize;
        let mut bytes = vec![0u8; highest / 8 + 1];
        for bit in 0..=highest {
            if self.0 & (1 << bit) != 0 {
                bytes[bit / 8] |= 0x80 >> (bit % 8);
            }
        }
        BitString::new((7 - highest % 8) as u8, bytes)
    }

    /// Reads the bits back (bits above 31 are rejected).
    pub fn from_bit_string(bs: &BitString) -> Result<Self, TspError> {
        let mut v = 0u32;
        for (i, bit) in bs.bits().enumerate() {
            if bit {
                if i > 31 {
                    return Err(TspError::Invalid("failInfo bit out of range"));
                }
                v |= 1 << i;
            }
        }
        Ok(Self(v))
    }
}

impl core::ops::BitOr for FailureInfo {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// `PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL, failInfo PKIFailureInfo OPTIONAL }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct PkiStatusInfo {
    /// Status.
    pub status: PkiStatus,
    /// `PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String`.
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<String>>,
    /// Failure bits (see [`FailureInfo`]).
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken OPTIONAL }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampResp {
    /// Status.
    pub status: PkiStatusInfo,
    /// The token (ContentInfo with SignedData) when granted.
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<ContentInfo>,
}

impl TimeStampResp {
    /// Granted response around `token_der` (a TimeStampToken / ContentInfo DER); returns the DER.
    ///
    /// The token is copied as it is, not decoded and re-encoded: only its outer TLV is checked (one
    /// DER SEQUENCE spanning the whole input). Pass tokens made by [`sign_token`] or
    /// [`cms::SignerContext`].
    pub fn granted_der(token_der: &[u8]) -> Result<Vec<u8>, TspError> {
        use crate::der_write::{put_header, tlv_len};
        // PKIStatusInfo { status granted(0) }.
        const GRANTED: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x00];
        if der::asn1::AnyRef::from_der(token_der)?.tag() != Tag::Sequence {
            return Err(TspError::Invalid("time-stamp token is not a ContentInfo"));
        }
        let len = GRANTED.len() + token_der.len();
        let mut out = Vec::with_capacity(tlv_len(len));
        put_header(&mut out, 0x30, len);
        out.extend_from_slice(&GRANTED);
        out.extend_from_slice(token_der);
        Ok(out)
    }

    /// Rejection response with `fail_info` and an optional short (client-visible) text; returns the DER.
    pub fn rejection_der(fail_info: FailureInfo, text: Option<&str>) -> Result<Vec<u8>, TspError> {
        Ok(Self {
            status: PkiStatusInfo {
                status: PkiStatus::Rejection,
                status_string: text.map(|t| vec![t.to_owned()]),
                fail_info: Some(fail_info.to_bit_string()?),
            },
            time_stamp_token: None,
        }
        .to_der()?)
    }

    /// The failure bits, if any.
    pub fn failure_info(&self) -> Result<Option<FailureInfo>, TspError> {
        self.status
            .fail_info
            .as_ref()
            .map(FailureInfo::from_bit_string)
            .transpose()
    }

    /// The token as DER, if present.
    pub fn token_der(&self) -> Result<Option<Vec<u8>>, TspError> {
        Ok(self
            .time_stamp_token
            .as_ref()
            .map(|t| t.to_der())
            .transpose()?)
    }
}

/// Strict DER decoding of a `TimeStampReq`: the input must decode completely and re-encode to exactly
/// the same bytes (rejects BER forms such as an explicitly encoded `certReq FALSE`).
pub fn decode_request(der_bytes: &[u8]) -> Result<TimeStampReq, TspError> {
    let req = TimeStampReq::from_der(der_bytes)?;
    if req.to_der()? != der_bytes {
        return Err(TspError::Invalid("TimeStampReq is not DER"));
    }
    Ok(req)
}

/// Signs `tst_info` as a TimeStampToken (RFC 3161 §2.4.2 + RFC 5816): SignedData with eContentType
/// id-ct-TSTInfo, signed attributes content-type, message-digest, signing-certificate-v2 (and
/// signing-time = genTime truncated to seconds); the TSA certificate is included when `include_cert`.
/// Returns the ContentInfo DER.
pub fn sign_token<S, Sig>(
    signer: &S,
    tsa_cert: &Certificate,
    tst_info: &TstInfo,
    include_cert: bool,
) -> Result<Vec<u8>, TspError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let ctx = cms::SignerContext::new(signer, tsa_cert)?;
    sign_token_with::<S, Sig>(&ctx, signer, tst_info, include_cert)
}

/// [`sign_token`] with the TSA certificate's parts encoded once ([`cms::SignerContext::new`] with the
/// signer and the TSA certificate): what a TSA signing many tokens uses.
pub fn sign_token_with<S, Sig>(
    ctx: &cms::SignerContext,
    signer: &S,
    tst_info: &TstInfo,
    include_cert: bool,
) -> Result<Vec<u8>, TspError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: SignatureBitStringEncoding,
{
    let content = tst_info.to_der()?;
    Ok(ctx.sign_encapsulated::<S, Sig>(
        signer,
        ContentType::TstInfo,
        &content,
        Some(tst_info.gen_time.to_system_time()),
        include_cert,
    )?)
}

/// Extracts the TSTInfo of a TimeStampToken (no signature check; see [`verify_token`]).
pub fn token_tst_info(token_der: &[u8]) -> Result<TstInfo, TspError> {
    let sd = cms::decode_signed_data(token_der)?;
    if sd.encap_content_info.econtent_type != oids::ID_CT_TST_INFO {
        return Err(TspError::Invalid("eContentType is not id-ct-TSTInfo"));
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .ok_or(TspError::Invalid("TSTInfo not encapsulated"))?;
    let octets = econtent.decode_as::<der::asn1::OctetString>()?;
    Ok(TstInfo::from_der(octets.as_bytes())?)
}

/// Checks a token's CMS signature, message digest and ESS signing-certificate-v2 against the included
/// TSA certificate (no chain or EKU validation) and returns the TSTInfo and that certificate.
pub fn verify_token(token_der: &[u8]) -> Result<(TstInfo, Certificate), TspError> {
    let v = cms::verify_detached_digest(token_der, None)?;
    if v.content_type != oids::ID_CT_TST_INFO {
        return Err(TspError::Invalid("eContentType is not id-ct-TSTInfo"));
    }
    Ok((token_tst_info(token_der)?, v.signer_cert))
}

/// `Accuracy` for a duration (seconds / millis / micros; zero parts are omitted, sub-µs is rounded up).
pub fn accuracy_from_duration(d: Duration) -> Result<Accuracy, TspError> {
    let micros_total = d.as_nanos().div_ceil(1000);
    if micros_total == 0 {
        return Err(TspError::Invalid("accuracy must be greater than zero"));
    }
    let secs = u64::try_from(micros_total / 1_000_000)
        .map_err(|_| TspError::Invalid("accuracy too large"))?;
    let millis = ((micros_total / 1000) % 1000) as i16;
    let micros = (micros_total % 1000) as i16;
    Ok(Accuracy {
        seconds: (secs != 0).then_some(secs),
        millis: (millis != 0).then_some(millis),
        micros: (micros != 0).then_some(micros),
    })
}

/// The digest algorithm of a message imprint, if supported (parameters must be absent or NULL).
pub fn imprint_algorithm(imprint: &MessageImprint) -> Option<DigestAlgorithm> {
    let alg = &imprint.hash_algorithm;
    let params_ok = match &alg.parameters {
        None => true,
        Some(p) => p.tag() == Tag::Null && p.value().is_empty(),
    };
    if !params_ok {
        return None;
    }
    DigestAlgorithm::from_oid(&alg.oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_der_is_the_encoded_structure() {
        // A real-looking ContentInfo, long enough for a two-octet length.
        let token = ContentInfo {
            content_type: oids::ID_SIGNED_DATA,
            content: der::asn1::Any::new(Tag::OctetString, vec![0x5a; 300]).unwrap(),
        }
        .to_der()
        .unwrap();
        let want = TimeStampResp {
            status: PkiStatusInfo {
                status: PkiStatus::Granted,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(ContentInfo::from_der(&token).unwrap()),
        }
        .to_der()
        .unwrap();
        assert_eq!(TimeStampResp::granted_der(&token).unwrap(), want);
        // Not one SEQUENCE spanning the input: refused.
        let mut trailing = token.clone();
        trailing.push(0);
        assert!(TimeStampResp::granted_der(&trailing).is_err());
        assert!(TimeStampResp::granted_der(&[0x04, 0x00]).is_err());
        assert!(TimeStampResp::granted_der(&token[..10]).is_err());
        assert!(TimeStampResp::granted_der(&[]).is_err());
    }

    #[test]
    fn failure_info_named_bit_list_der() {
        // badAlg only: one octet, 7 unused bits, 0x80.
        let der = FailureInfo::BAD_ALG
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x02, 0x07, 0x80]);
        // badRequest (2): 0x20, 5 unused.
        let der = FailureInfo::BAD_REQUEST
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x02, 0x05, 0x20]);
        // badDataFormat (5): 0x04, 2 unused.
        let der = FailureInfo::BAD_DATA_FORMAT
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x02, 0x02, 0x04]);
        // timeNotAvailable (14): two octets, 1 unused bit, 0x00 0x02.
        let der = FailureInfo::TIME_NOT_AVAILABLE
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x03, 0x01, 0x00, 0x02]);
        // unacceptedPolicy (15): 0 unused, 0x00 0x01.
        let der = FailureInfo::UNACCEPTED_POLICY
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x03, 0x00, 0x00, 0x01]);
        // unacceptedExtension (16): three octets, 7 unused.
        let der = FailureInfo::UNACCEPTED_EXTENSION
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x04, 0x07, 0x00, 0x00, 0x80]);
        // systemFailure (25): four octets, 6 unused, bit 25 = 0x40 in the 4th octet.
        let der = FailureInfo::SYSTEM_FAILURE
            .to_bit_string()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(der, [0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40]);
        // Combination badAlg|badDataFormat.
        let both = FailureInfo::BAD_ALG | FailureInfo::BAD_DATA_FORMAT;
        let bs = both.to_bit_string().unwrap();
        assert_eq!(bs.to_der().unwrap(), [0x03, 0x02, 0x02, 0x84]);
        assert_eq!(FailureInfo::from_bit_string(&bs).unwrap(), both);
    }

    #[test]
    fn gen_time_fraction_rules() {
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        let t = |nanos: u32, digits: u8| {
            let g = GenTime::from_system_time(base + Duration::from_nanos(nanos.into()), digits)
                .unwrap();
            let der = g.to_der().unwrap();
            assert_eq!(der[0], 0x18);
            let s = String::from_utf8(der[2..].to_vec()).unwrap();
            assert_eq!(GenTime::from_der(&der).unwrap(), g, "round trip {s}");
            s
        };
        assert_eq!(t(0, 6), "20231114221320Z");
        assert_eq!(t(500_000_000, 6), "20231114221320.5Z");
        assert_eq!(t(120_000_000, 3), "20231114221320.12Z");
        assert_eq!(t(123_456_789, 3), "20231114221320.123Z");
        assert_eq!(t(123_456_789, 6), "20231114221320.123456Z");
        assert_eq!(t(123_456_789, 0), "20231114221320Z");
        assert_eq!(t(100_000, 6), "20231114221320.0001Z");
        assert_eq!(t(123_456_789, 9), "20231114221320.123456789Z");
        assert_eq!(t(1, 9), "20231114221320.000000001Z");
        assert_eq!(t(999_999_999, 9), "20231114221320.999999999Z");
        let last = UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999); // 9999-12-31T23:59:59Z
        let g = GenTime::from_system_time(last, 9).unwrap();
        assert_eq!(&g.to_der().unwrap()[2..], b"99991231235959.999999999Z");
        let early = GenTime::from_system_time(UNIX_EPOCH + Duration::from_millis(10), 3).unwrap();
        assert_eq!(&early.to_der().unwrap()[2..], b"19700101000000.01Z");
        assert!(GenTime::from_system_time(base, 10).is_err());
        let bad = |s: &str| {
            let mut v = vec![0x18, s.len() as u8];
            v.extend_from_slice(s.as_bytes());
            assert!(GenTime::from_der(&v).is_err(), "{s} must be rejected");
        };
        bad("20231114221320.50Z");
        bad("20231114221320.Z");
        bad("20231114221320");
        bad("20231114221320+0100");
        bad("20231314221320Z");
        bad("2023111422132Z");
        bad("20231114221320,5Z");
    }

    #[test]
    fn accuracy_encoding() {
        let a = accuracy_from_duration(Duration::from_millis(1500)).unwrap();
        assert_eq!((a.seconds, a.millis, a.micros), (Some(1), Some(500), None));
        let a = accuracy_from_duration(Duration::from_micros(250)).unwrap();
        assert_eq!((a.seconds, a.millis, a.micros), (None, None, Some(250)));
        assert!(accuracy_from_duration(Duration::ZERO).is_err());
    }

    #[test]
    fn rejection_response_roundtrip() {
        let der = TimeStampResp::rejection_der(FailureInfo::BAD_ALG, Some("x")).unwrap();
        let r = TimeStampResp::from_der(&der).unwrap();
        assert_eq!(r.status.status, PkiStatus::Rejection);
        assert_eq!(r.failure_info().unwrap(), Some(FailureInfo::BAD_ALG));
        assert!(r.time_stamp_token.is_none());
        assert_eq!(r.status.status_string, Some(vec!["x".to_owned()]));
    }

    #[test]
    fn request_must_be_der() {
        // openssl ts -query (x509-tsp test vector), DER.
        let good = hex::decode("30400201013031300D060960864801650304020105000420BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD0208314CFCE4E0651827").unwrap();
        let req = decode_request(&good).unwrap();
        assert_eq!(
            imprint_algorithm(&req.message_imprint),
            Some(DigestAlgorithm::Sha256)
        );
        // Same request with certReq FALSE encoded explicitly (BER, not DER).
        let mut ber = good.clone();
        ber.extend_from_slice(&[0x01, 0x01, 0x00]);
        ber[1] += 3;
        assert!(decode_request(&ber).is_err());
        // Trailing garbage.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_request(&trailing).is_err());
    }
}
