# Validates with pyHanko's API and prints ONE line: `PYHANKO-REPORT <json>` (see validators.rs).
#   cms <signature.p7s> <document> <trust.pem> <unix-moment|now>   detached CMS / CAdES signature
#   tst <token.der> <expected imprint hex> <trust.pem> <unix-moment|now>   RFC 3161 token (ContentInfo)
import asyncio, datetime, json, sys
from asn1crypto import cms, pem, x509
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms, validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext


def der(path):
    raw = open(path, 'rb').read()
    return pem.unarmor(raw)[2] if pem.detect(raw) else raw


def context(trust, moment):
    raw = open(trust, 'rb').read()
    roots = ([x509.Certificate.load(d) for _, _, d in pem.unarmor(raw, multiple=True)]
             if pem.detect(raw) else [x509.Certificate.load(raw)])
    kw = dict(trust_roots=roots, allow_fetching=False, revocation_mode='soft-fail')
    if moment != 'now':
        kw['moment'] = datetime.datetime.fromtimestamp(int(moment), tz=datetime.timezone.utc)
    return ValidationContext(**kw)


def status(st):
    return {
        'intact': bool(st.intact), 'valid': bool(st.valid), 'trusted': bool(st.trusted),
        'trust_problem': None if st.trust_problem_indic is None else str(st.trust_problem_indic),
        'signer_subject': st.signing_cert.subject.human_friendly, 'md_algorithm': str(st.md_algorithm),
    }


def tst_fields(signed_data):
    tst = signed_data['encap_content_info']['content'].parsed
    mi = tst['message_imprint']
    return {
        'gen_time': tst['gen_time'].native.isoformat(), 'policy': tst['policy'].dotted,
        'serial': str(tst['serial_number'].native),
        'imprint_algorithm': mi['hash_algorithm']['algorithm'].native,
        'imprint': mi['hashed_message'].native.hex(),
    }


async def main(mode, path, arg, trust, moment):
    ctx = context(trust, moment)
    if mode == 'tst':
        sd = cms.ContentInfo.load(der(path))['content']
        expected = bytes.fromhex(arg)
        kw = await validate_tst_signed_data(sd, ctx, expected_tst_imprint=lambda alg: expected)
        return {'mode': 'tst', 'status': status(TimestampSignatureStatus(**kw)), **tst_fields(sd)}
    sd = cms.ContentInfo.load(der(path))['content']
    st = await async_validate_detached_cms(open(arg, 'rb').read(), sd, signer_validation_context=ctx)
    unsigned = sd['signer_infos'][0]['unsigned_attrs']
    tokens = [v for a in (unsigned if unsigned.native else [])
              if a['type'].native == 'signature_time_stamp_token' for v in a['values']]
    ts = st.timestamp_validity
    if (ts is None) != (len(tokens) == 0):
        raise SystemExit(f'pyHanko saw {"no" if ts is None else "a"} time-stamp, the SignerInfo has {len(tokens)}')
    return {
        'mode': 'cms', 'status': status(st), 'bottom_line': bool(st.bottom_line),
        'signer_reported_time': None if st.signer_reported_dt is None else st.signer_reported_dt.isoformat(),
        'timestamp_tokens': len(tokens),
        'timestamp': None if ts is None else {
            'mode': 'tst', 'status': status(ts), **tst_fields(tokens[0]['content'])},
    }


report = asyncio.run(main(*sys.argv[1:6]))
print('PYHANKO-REPORT ' + json.dumps(report))
