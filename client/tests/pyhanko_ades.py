"""pyHanko's ETSI EN 319 102-1 validation of every signature in a PDF (used by pades.rs).

usage: python pyhanko_ades.py CA.pem FILE.pdf
Prints, per signature: `<field>: basic=<STATUS>/<SUBINDICATION> with_time=<STATUS>/<SUBINDICATION>`.
Trust: CA.pem only; no revocation checking (the test PKI has no CRL/OCSP).
"""
import asyncio
import sys
import warnings

warnings.filterwarnings("ignore")

from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import NO_REVOCATION, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager


async def main(ca_path, pdf_path):
    ca = load_cert_from_pemder(ca_path)
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[ca]),
        revinfo_policy=CertRevTrustPolicy(NO_REVOCATION),
    )
    spec = SignatureValidationSpec(cert_validation_policy=policy)
    with open(pdf_path, "rb") as f:
        reader = PdfFileReader(f)
        for sig in reader.embedded_signatures:
            digest = sig.compute_digest()
            basic = await ades.ades_basic_validation(
                sig.signed_data, spec, raw_digest=digest
            )
            timed = await ades.ades_with_time_validation(
                sig.signed_data, spec, raw_digest=digest
            )
            print(
                f"{sig.field_name}: "
                f"basic={basic.ades_subindic.status.name}/{basic.ades_subindic.standard_name} "
                f"with_time={timed.ades_subindic.status.name}/{timed.ades_subindic.standard_name} "
                f"best_signature_time={timed.best_signature_time.isoformat()}"
            )


asyncio.run(main(sys.argv[1], sys.argv[2]))
