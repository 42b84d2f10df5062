"""newsletter.redact: every spelling of a secret goes, ordinary text stays."""

from __future__ import annotations

import base64
import io
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.logs import setup_logging
from newsletter.redact import REDACTED, Redactor

SECRET = "p@ss/w+rd=Sécret"


def _forms(secret: str, prefix: bytes) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        json.dumps(secret),
        repr(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(prefix + raw).decode(),
        base64.b64encode(prefix + raw + b"\0more").decode(),
        quote(base64.b64encode(prefix + raw).decode(), safe=""),
    ]


@pytest.mark.parametrize("prefix", [b"", b"\0user\0", b"api:", b"\0u\0", b"xy"])
def test_every_spelling_is_redacted(prefix: bytes) -> None:
    redact = Redactor([SECRET])
    for form in _forms(SECRET, prefix):
        line = f"535 5.7.8 said {form} back."
        clean = redact(line)
        assert clean == f"535 5.7.8 said {REDACTED} back." or (
            REDACTED in clean and form not in clean and SECRET not in clean
        ), (form, clean)


@given(st.text(min_size=8, max_size=40), st.binary(max_size=8))
def test_any_secret_at_any_offset_leaves_no_base64_of_it(secret: str, prefix: bytes) -> None:
    redact = Redactor([secret])
    blob = base64.b64encode(prefix + secret.encode()).decode()
    clean = redact(f"reply: {blob} end")
    assert blob not in clean
    assert secret not in clean


def test_ordinary_text_and_short_values_stay() -> None:
    redact = Redactor(["abc", ""])
    assert not redact
    assert redact("abc abc") == "abc abc"
    redact = Redactor([SECRET])
    text = "HTTP 400: the sender domain is not verified (see https://example.org/docs)"
    assert redact(text) == text


def test_from_environment_reads_every_secret_variable_and_each_old_key() -> None:
    env = {
        "NEWSLETTER_DELIVERY__PASSWORD": "password-1",
        "NEWSLETTER_DELIVERY__API_KEY": "api-key-22",
        "NEWSLETTER_SECRET_KEY": "s" * 32,
        "NEWSLETTER_SECRET_KEY_OLD": f"{'o' * 32}, {'p' * 32}",
        "NEWSLETTER_DELIVERY__HOST": "smtp-host-not-secret",
    }
    redact = Redactor.from_environment(env)
    text = f"password-1 api-key-22 {'s' * 32} {'o' * 32} {'p' * 32} smtp-host-not-secret"
    assert redact(text) == " ".join([REDACTED] * 5) + " smtp-host-not-secret"


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_log_lines_and_tracebacks_are_redacted(fmt: str) -> None:
    stream = io.StringIO()
    handler = setup_logging(fmt=fmt, stream=stream, secrets_=[SECRET])  # type: ignore[arg-type]
    log = logging.getLogger("newsletter.test_redact")
    blob = base64.b64encode(b"\0user\0" + SECRET.encode()).decode()
    try:
        try:
            raise ValueError(f"server said {blob} and {quote(SECRET, safe='')}")
        except ValueError:
            log.exception("failed with %s", SECRET, extra={"data": {"reply": blob}})
    finally:
        for name in ("newsletter", "apscheduler", "waitress"):
            logging.getLogger(name).removeHandler(handler)
    output = stream.getvalue()
    assert REDACTED in output
    for form in (SECRET, blob, quote(SECRET, safe=""), json.dumps(SECRET)[1:-1]):
        assert form not in output, form
