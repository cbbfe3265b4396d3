"""Standard Webhooks signing, checked against the spec's reference implementation."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from services.notify import signing
from services.notify.signing import (
    WebhookSecretError,
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

# The example from the Standard Webhooks / Svix documentation.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_example_signature() -> None:
    assert sign(SPEC_ID, SPEC_TS, SPEC_BODY, SPEC_SECRET) == SPEC_SIGNATURE
    reference = standardwebhooks.Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TS, UTC), SPEC_BODY.decode()
    )
    assert reference == SPEC_SIGNATURE


def test_generated_secret_shape() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == signing.SECRET_BYTES
    assert generate_secret() != secret


@given(body=st.binary(max_size=2000).map(lambda b: b.decode("latin-1").encode("utf-8")))
def test_reference_library_verifies_our_headers(body: bytes) -> None:
    secret = generate_secret()
    headers = signature_headers("alt_0123456789abcdef", body, [secret])
    # The reference verifier (5-minute tolerance on the real clock) accepts what we send.
    standardwebhooks.Webhook(secret).verify(body.decode("utf-8"), headers, json_parse=False)
    assert verify(headers, body, [secret]) == "alt_0123456789abcdef"


def test_rotation_sends_both_signatures_and_either_secret_verifies() -> None:
    new, old = generate_secret(), generate_secret()
    body = b'{"type":"alert.created"}'
    headers = signature_headers("alt_1", body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        standardwebhooks.Webhook(secret).verify(body.decode(), headers, json_parse=False)
        assert verify(headers, body, [secret]) == "alt_1"
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(headers, body, [generate_secret()])


def test_tampered_body_or_id_is_refused() -> None:
    secret = generate_secret()
    headers = signature_headers("alt_1", b"{}", [secret])
    with pytest.raises(WebhookVerificationError):
        verify(headers, b'{"x":1}', [secret])
    with pytest.raises(WebhookVerificationError):
        verify({**headers, "webhook-id": "alt_2"}, b"{}", [secret])


def test_timestamp_tolerance() -> None:
    secret = generate_secret()
    now = time.time()
    old = signature_headers("alt_1", b"{}", [secret], timestamp=int(now) - 301)
    new = signature_headers("alt_1", b"{}", [secret], timestamp=int(now) + 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(old, b"{}", [secret], now=now)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(new, b"{}", [secret], now=now)
    assert verify(old, b"{}", [secret], now=now, tolerance=600) == "alt_1"


def test_missing_headers_are_named() -> None:
    with pytest.raises(WebhookVerificationError, match="webhook-signature"):
        verify({"webhook-id": "a", "webhook-timestamp": "1"}, b"", [generate_secret()])


def test_unknown_signature_versions_are_skipped() -> None:
    secret = generate_secret()
    headers = signature_headers("alt_1", b"{}", [secret])
    headers["webhook-signature"] = "v1a,abc " + headers["webhook-signature"]
    assert verify(headers, b"{}", [secret]) == "alt_1"


@pytest.mark.parametrize(
    "bad",
    ["plainsecret", "whsec_!!!notbase64", "whsec_" + base64.b64encode(b"short").decode()],
)
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(WebhookSecretError):
        decode_secret(bad)


def test_signing_needs_a_secret_and_a_dotless_id() -> None:
    with pytest.raises(WebhookSecretError):
        signature_headers("alt_1", b"{}", [])
    with pytest.raises(ValueError, match=r"'\.'"):
        sign("a.b", 1, b"{}", generate_secret())
