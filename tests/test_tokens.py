"""Signed link tokens."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.tokens import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    make_token,
    read_token,
    secret_from,
    subscriber_links,
    verify_token,
)

SECRET = b"test-secret-0123456789"


def test_round_trip_and_purpose_binding() -> None:
    token = make_token(SECRET, "Ada@Example.org", UNSUBSCRIBE)
    assert verify_token(SECRET, token, UNSUBSCRIBE) == "Ada@Example.org"
    assert verify_token(SECRET, token, PREFERENCES) is None
    assert verify_token(b"another-secret", token, UNSUBSCRIBE) is None
    assert all(ch.isalnum() or ch in "-_." for ch in token)


def test_unicode_address_round_trips() -> None:
    token = make_token(SECRET, "josé@exämple.org", PREFERENCES)
    assert verify_token(SECRET, token, PREFERENCES) == "josé@exämple.org"


def test_forged_payload_with_a_real_signature_is_refused() -> None:
    token = make_token(SECRET, "ada@example.org", UNSUBSCRIBE)
    _body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(b"unsubscribe\nbob@example.org\n").rstrip(b"=")
    assert verify_token(SECRET, f"{forged_body.decode()}.{sig}", UNSUBSCRIBE) is None


@given(st.integers(min_value=0), st.sampled_from("ABCxyz019-_."))
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    token = make_token(SECRET, "ada@example.org", UNSUBSCRIBE)
    index = position % len(token)
    if token[index] == replacement:
        return
    altered = token[:index] + replacement + token[index + 1 :]
    assert verify_token(SECRET, altered, UNSUBSCRIBE) in (None, "ada@example.org")
    # Base64 padding bits may absorb a change in the last character only.
    if index < len(token) - 1:
        assert verify_token(SECRET, altered, UNSUBSCRIBE) is None


@pytest.mark.parametrize(
    "junk", ["", ".", "abc", "a.b.c", "!!!.???", "x" * 5000, "dW5zdWJzY3JpYmU.AAAA"]
)
def test_junk_is_refused(junk: str) -> None:
    assert verify_token(SECRET, junk, UNSUBSCRIBE) is None


def test_dated_tokens_expire() -> None:
    issued = dt.date(2026, 3, 1)
    token = make_token(SECRET, "a@example.org", CONFIRM, issued=issued)
    week = dt.timedelta(days=7)
    assert read_token(SECRET, token, CONFIRM, max_age=week, today=dt.date(2026, 3, 8)) == (
        "a@example.org",
        issued,
    )
    assert read_token(SECRET, token, CONFIRM, max_age=week, today=dt.date(2026, 3, 9)) is None
    undated = make_token(SECRET, "a@example.org", CONFIRM)
    assert read_token(SECRET, undated, CONFIRM, max_age=week, today=issued) is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, "a@example.org", "delete-everything")
    with pytest.raises(ValueError):
        make_token(b"", "a@example.org", UNSUBSCRIBE)
    assert verify_token(b"", make_token(SECRET, "a@example.org", UNSUBSCRIBE), UNSUBSCRIBE) is None


def test_secret_comes_from_settings_or_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        secret_from(Settings())
    assert secret_from(Settings(secret_key="k")) == b"k"


def test_subscriber_links() -> None:
    links = subscriber_links("http://news.example.org/", SECRET, "a@example.org")
    assert links["unsubscribe_url"].startswith("http://news.example.org/unsubscribe?token=")
    assert links["preferences_url"].startswith("http://news.example.org/preferences?token=")
    token = links["unsubscribe_url"].split("token=")[1]
    assert verify_token(SECRET, token, UNSUBSCRIBE) == "a@example.org"
