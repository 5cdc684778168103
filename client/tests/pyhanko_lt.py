"""pyHanko's validation of every signature in a PDF with the revocation data of the file only
(nothing is fetched; used by pades_lt.rs), two ways:

- `lt`: EN 319 102-1 §5.5, validation of a signature with time and long-term validation
  material: `ades_with_time_validation` with the DSS's certificates, CRLs and OCSP responses as
  the local knowledge (what PAdES B-LT provides);
- `lta`: EN 319 102-1 §5.6.3, `ades_lta_validation` (the document time-stamps of B-LTA are the
  evidence records; without one, pyHanko's past-signature validation has no proof of existence
  and ends in INDETERMINATE/NO_POE).

usage: python pyhanko_lt.py CA.pem FILE.pdf SIGNER_RULE

SIGNER_RULE is the revocation rule for the *signer's* end-entity certificate:
  - `required`: CRL or OCSP data must be in the file (an ordinary certificate);
  - `none`: no revocation check for it (esigd's one-time certificates carry RFC 9608
    `noRevAvail`, which pyhanko-certvalidator 0.33 honours only for attribute certificates).
Every other certificate (the CA path, the TSA certificates of the signature time-stamp and of
the document time-stamps) always needs CRL or OCSP data.

Prints, per signature:
`<field>: lt=<STATUS>/<SUBINDICATION> lta=<STATUS>/<SUBINDICATION> bottom_line=<bool>
doc_ts=<oldest document time-stamp or None> sig_ts=<signature time-stamp STATUS/SUBINDICATION>`
and, for each failure, `  lt failure: …` / `  lta failure: …`.
"""
import asyncio
import dataclasses
import logging
import sys
import warnings

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)

from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager


def status(result):
    if result is None:
        return "None"
    return f"{result.ades_subindic.status.name}/{result.ades_subindic.standard_name}"


async def main(ca_path, pdf_path, signer_rule):
    ca = load_cert_from_pemder(ca_path)
    trust = SimpleTrustManager.build(trust_roots=[ca])
    ee_rule = {
        "required": RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
        "none": RevocationCheckingRule.NO_CHECK,
    }[signer_rule]
    signer_policy = CertValidationPolicySpec(
        trust_manager=trust,
        revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(
                ee_certificate_rule=ee_rule,
                intermediate_ca_cert_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
            )
        ),
    )
    tsa_policy = CertValidationPolicySpec(
        trust_manager=trust,
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    spec = PdfSignatureValidationSpec(
        signature_validation_spec=SignatureValidationSpec(
            cert_validation_policy=signer_policy,
            ts_cert_validation_policy=tsa_policy,
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
            ),
        )
    )
    with open(pdf_path, "rb") as f:
        reader = PdfFileReader(f)
        # The DSS as local knowledge, exactly as ades_lta_validation ingests it.
        dss = ades._dss_to_local_knowledge(reader)
        lt_spec = dataclasses.replace(
            spec.signature_validation_spec, local_knowledge=dss
        )
        for sig in reader.embedded_regular_signatures:
            lt = await ades.ades_with_time_validation(
                sig.signed_data,
                lt_spec,
                timing_info=ValidationTimingInfo.now(),
                raw_digest=sig.compute_digest(),
            )
            result = await ades.ades_lta_validation(
                sig, spec, timing_info=ValidationTimingInfo.now()
            )
            bottom = result.api_status.bottom_line if result.api_status else None
            print(
                f"{sig.field_name}: lt={status(lt)} lta={status(result)} "
                f"bottom_line={bottom} "
                f"doc_ts={result.oldest_evidence_record_timestamp} "
                f"sig_ts={status(result.signature_timestamp_status)}"
            )
            if lt.failure_msg:
                print(f"  lt failure: {lt.failure_msg}")
            if result.failure_msg:
                print(f"  lta failure: {result.failure_msg}")


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
