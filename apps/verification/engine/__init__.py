"""The verification engine: plain Python, no Django. apps.verification wraps it."""

from apps.verification.engine.authentication import check_authentication
from apps.verification.engine.config import VerifierConfig
from apps.verification.engine.result import Reason, Verdict, VerificationResult
from apps.verification.engine.sender import SenderVerification, verify_sender
from apps.verification.engine.trust import TrustReport, assess_sender
from apps.verification.engine.verifier import Verifier

__all__ = [
    "Reason",
    "SenderVerification",
    "TrustReport",
    "Verdict",
    "VerificationResult",
    "Verifier",
    "VerifierConfig",
    "assess_sender",
    "check_authentication",
    "verify_sender",
]
