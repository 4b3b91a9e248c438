"""Webhook secrets and signatures: HMAC-SHA256 over '<timestamp>.<body>' with the endpoint's
secret, sent as X-Mailscore-Signature: t=<timestamp>,v1=<hex digest>. docs/api.md shows a
receiver how to check one."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix that marks a secret, not one)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"
