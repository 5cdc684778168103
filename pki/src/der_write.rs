//! Minimal DER writing for structures assembled from parts that are already DER (hot paths: CMS
//! signatures, certificates). Definite lengths only, which is all DER allows.

/// Octets of the tag and length of a TLV whose value has `len` octets (one-octet tags only).
pub(crate) fn header_len(len: usize) -> usize {
    if len < 0x80 { 2 } else { 2 + len_octets(len) }
}

/// Octets of a whole TLV whose value has `len` octets.
pub(crate) fn tlv_len(len: usize) -> usize {
    header_len(len) + len
}

fn len_octets(len: usize) -> usize {
    (usize::BITS - len.leading_zeros()).div_ceil(8) as usize
}

/// Appends the tag and the (minimal, definite) length octets of a TLV with `len` value octets.
pub(crate) fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let n = len_octets(len);
        out.push(0x80 | n as u8);
        out.extend_from_slice(&len.to_be_bytes()[size_of::<usize>() - n..]);
    }
}

/// Appends a whole TLV.
pub(crate) fn put_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    put_header(out, tag, value.len());
    out.extend_from_slice(value);
}

/// Sorts the encodings of the elements of a DER `SET OF` (X.690 §11.6: ascending, compared as
/// octet strings) and refuses duplicates, as `der::asn1::SetOfVec` does.
pub(crate) fn sort_set_of(elements: &mut [&[u8]]) -> Result<(), der::Error> {
    elements.sort_unstable();
    if elements.windows(2).any(|w| w[0] == w[1]) {
        return Err(der::ErrorKind::SetDuplicate.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn headers_match_the_der_crate() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 24] {
            let value = der::asn1::OctetString::new(vec![7u8; len]).unwrap();
            let want = value.to_der().unwrap();
            let mut got = Vec::new();
            put_tlv(&mut got, 0x04, &vec![7u8; len]);
            assert_eq!(got, want, "length {len}");
            assert_eq!(tlv_len(len), want.len());
        }
    }

    #[test]
    fn set_of_order_and_duplicates() {
        let (a, b, c): (&[u8], &[u8], &[u8]) =
            (&[0x30, 0x03, 1, 2, 3], &[0x30, 0x01, 9], &[2, 1, 0]);
        let mut v = vec![a, b, c];
        sort_set_of(&mut v).unwrap();
        assert_eq!(v, vec![c, b, a]);
        assert!(sort_set_of(&mut [a, b, a]).is_err());
    }
}
