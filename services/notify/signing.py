"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

Every webhook request carries three headers:

* ``webhook-id``: the alert id (or digest id). It is the same on every retry of the same
  message, so a receiver can de-duplicate on it.
* ``webhook-timestamp``: Unix seconds when *this attempt* was signed. A verifier refuses
  timestamps too far from its own clock, which defeats replays of captured requests.
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. Several
  space-separated signatures are sent while a subscription's secret is being rotated (the new
  secret and the old one that is still valid), so receivers can switch secrets at their pace.

Secrets are ``whsec_`` followed by the base64 of random bytes; the HMAC key is the decoded
bytes, as the spec requires (signing with the literal string would not interoperate).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"
#: Default tolerance between the sender's and the verifier's clocks (the spec's 5 minutes).
DEFAULT_TOLERANCE_SECONDS = 5 * 60
#: 24 random bytes = 192 bits, within the spec's 24..64 byte recommendation.
SECRET_BYTES = 24

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class WebhookSecretError(ValueError):
    """A secret that is not ``whsec_<base64>`` of at least 16 bytes."""


class WebhookVerificationError(ValueError):
    """A request whose headers are missing, too old/new, or carry no matching signature."""


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A fresh ``whsec_`` secret from the OS CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


@functools.lru_cache(maxsize=4096)
def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; refuses anything else with a clear message.

    Remembered per secret (a refusal raises and is not): every webhook is signed with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError("webhook secret must start with 'whsec_'")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError("webhook secret is not valid base64 after 'whsec_'") from exc
    if len(key) < 16:
        raise WebhookSecretError("webhook secret is shorter than 16 bytes")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature of ``"{msg_id}.{timestamp}.{body}"``."""
    if "." in msg_id:
        # The signed content is dot-separated; an id with a dot would make it ambiguous.
        raise ValueError("webhook message id must not contain '.'")
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(decode_secret(secret), to_sign, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per currently valid secret.

    ``secrets`` lists the new secret first and any old one still within its rotation grace
    period after it; receivers accept the request if any signature verifies.
    """
    if not secrets:
        raise WebhookSecretError("at least one webhook secret is needed to sign")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: " ".join(sign(msg_id, ts, body, secret) for secret in secrets),
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a received webhook; returns its ``webhook-id`` or raises ``WebhookVerificationError``.

    Accepts when any ``v1`` signature in the header matches any of ``secrets`` (so a receiver
    mid-rotation can pass both its secrets), compared in constant time.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get(HEADER_ID)
    raw_ts = lowered.get(HEADER_TIMESTAMP)
    raw_sigs = lowered.get(HEADER_SIGNATURE)
    if not (msg_id and raw_ts and raw_sigs):
        missing = [h for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not lowered.get(h)]
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(raw_ts)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp too new")
    expected = [sign(msg_id, timestamp, body, secret).encode() for secret in secrets]
    for candidate in raw_sigs.split():
        if not candidate.startswith(f"{SIGNATURE_VERSION},"):
            continue  # unknown versions are skipped, as the spec asks
        for want in expected:
            if hmac.compare_digest(candidate.encode(), want):
                return msg_id
    raise WebhookVerificationError("no matching signature")
