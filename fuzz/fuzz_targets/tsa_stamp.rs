//! RFC 3161 TimeStampReq → `esigd_tsa::Tsa::stamp`, the whole request path the appliance's `/tsa`
//! route runs (strict DER decode, request rules, TSTInfo, CMS signing, response encoding), with a
//! software P-256 signer instead of the HSM key.
//!
//! Asserts: `stamp` always yields an encodable TimeStampResp; granted ⇔ no rejection and a record;
//! a granted response only for strict-DER input; the token verifies and its TSTInfo carries the
//! request's imprint, nonce and policy, and the certificate only when certReq; a rejection carries the
//! failure bit of its reason; a decodable request round-trips (decode → encode → decode).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use der::{Decode, Encode};
use esigd_fuzz::{Key, OTHER_POLICY, POLICY, Sig, cert, key};
use esigd_pki::tsp::{self, PkiStatus, TimeStampReq, TimeStampResp};
use esigd_tsa::{FixedClock, InMemorySerials, Tsa, TsaConfig};
use libfuzzer_sys::fuzz_target;

type FuzzTsa = Tsa<Key, Sig, InMemorySerials, FixedClock>;

fn tsa() -> &'static FuzzTsa {
    static TSA: OnceLock<FuzzTsa> = OnceLock::new();
    TSA.get_or_init(|| {
        let mut cfg = TsaConfig::new(POLICY);
        cfg.accepted_policies = vec![OTHER_POLICY];
        cfg.accuracy = Duration::from_millis(500);
        // Below libFuzzer's default -max_len (4096) so the size rejection is reachable too.
        cfg.max_request_bytes = 1024;
        Tsa::new(
            cfg,
            cert().clone(),
            key(1),
            InMemorySerials::starting_at(1),
            FixedClock::synchronized(Duration::from_millis(20)),
        )
        .expect("fuzz TSA")
    })
}

/// The token with the TSA certificate added to `certificates`.
fn with_certificate(mut sd: cms::signed_data::SignedData) -> Vec<u8> {
    use cms::cert::CertificateChoices;
    use cms::signed_data::CertificateSet;
    let set = der::asn1::SetOfVec::try_from(vec![CertificateChoices::Certificate(cert().clone())])
        .expect("certificate set");
    sd.certificates = Some(CertificateSet(set));
    cms::content_info::ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: der::Any::encode_from(&sd).expect("SignedData encodes"),
    }
    .to_der()
    .expect("ContentInfo encodes")
}

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let strict = tsp::decode_request(data);
    if let Ok(req) = &strict {
        let again = tsp::decode_request(&req.to_der().expect("re-encode a decoded request"))
            .expect("a re-encoded request decodes");
        assert_eq!(&again, req, "TimeStampReq round trip");
    }

    let outcome = tsa()
        .stamp(data, now)
        .expect("stamp always yields a response");
    let resp = TimeStampResp::from_der(&outcome.response_der).expect("response is DER");
    assert_eq!(
        resp.to_der().unwrap(),
        outcome.response_der,
        "response re-encodes identically"
    );
    match (&outcome.record, &outcome.rejection) {
        (Some(record), None) => {
            let req: TimeStampReq = match strict {
                Ok(r) => r,
                Err(e) => panic!("granted a request that is not strict DER: {e}"),
            };
            assert!(data.len() <= tsa().config().max_request_bytes);
            assert_eq!(resp.status.status, PkiStatus::Granted);
            let token = resp
                .token_der()
                .unwrap()
                .expect("granted response carries a token");
            let sd = esigd_pki::cms::decode_signed_data(&token).expect("token is SignedData");
            assert_eq!(
                sd.certificates.is_some(),
                req.cert_req,
                "certificate included iff certReq"
            );
            // verify_token needs the certificate in the token: add it when certReq was false
            // (`certificates` is not covered by the signature).
            let verifiable = if req.cert_req {
                token.clone()
            } else {
                with_certificate(sd)
            };
            let (tst, signer_cert) = tsp::verify_token(&verifiable).expect("issued token verifies");
            assert_eq!(&signer_cert, cert());
            assert_eq!(tst.message_imprint, req.message_imprint);
            assert_eq!(tst.nonce, req.nonce);
            assert_eq!(tst.policy, req.req_policy.unwrap_or(POLICY));
            assert!(tst.policy == POLICY || tst.policy == OTHER_POLICY);
            assert_eq!(
                record.imprint,
                req.message_imprint.hashed_message.as_bytes()
            );
            assert_eq!(
                record.nonce.as_deref(),
                req.nonce.as_ref().map(|n| n.as_bytes())
            );
            assert_eq!(
                tst.serial_number.as_bytes().last().copied(),
                Some(record.serial.to_be_bytes()[7])
            );
            assert_eq!(tst.gen_time.to_system_time(), record.gen_time);
            let behind = now
                .duration_since(record.gen_time)
                .expect("genTime not after now");
            assert!(
                behind < Duration::from_millis(1),
                "genTime {behind:?} behind now"
            );
            assert!(req.extensions.is_none(), "extensions are never granted");
        }
        (None, Some(rejection)) => {
            assert_eq!(resp.status.status, PkiStatus::Rejection);
            assert!(resp.time_stamp_token.is_none());
            assert_eq!(
                resp.failure_info().unwrap(),
                Some(rejection.failure_info()),
                "failInfo matches the reason ({})",
                rejection.kind()
            );
            if strict.is_err() {
                assert!(
                    matches!(
                        rejection.kind(),
                        "malformed" | "unsupported_version" | "too_large"
                    ),
                    "non-DER request rejected as {}",
                    rejection.kind()
                );
            }
        }
        other => panic!("inconsistent outcome: {other:?}"),
    }
});
