"""Signed link tokens."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.headers import message_id_for
from newsletter.tokens import (
    CONFIRM,
    FEEDBACK_TOKEN_CHARS,
    PREFERENCES,
    RESUBSCRIBE,
    UNSUBSCRIBE,
    SigningKeys,
    feedback_mac_matches,
    feedback_token,
    make_confirmation,
    make_token,
    read_confirmation,
    read_feedback_token,
    read_token,
    secret_from,
    signing_keys,
    subscriber_links,
    verify_token,
)

SECRET = b"test-secret-0123456789-0123456789ab"
LIST_ID = "Daily Papers <daily.papers.example>"
DAY = dt.date(2026, 1, 5)


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
    assert secret_from(Settings(secret_key="k" * 32)) == b"k" * 32


@pytest.mark.parametrize("key", ["k", "x" * 31, "é" * 15])
def test_a_short_signing_key_is_refused_naming_the_variable(key: str) -> None:
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SECRET_KEY is too short .* at least 32"):
        secret_from(Settings(secret_key=key))
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY_OLD is too short"):
        signing_keys(Settings(secret_key="n" * 32, secret_key_old=key))


def _last_char_twins(token: str) -> list[str]:
    """Spellings of ``token`` whose last character differs only in base64's unused bits."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    twins = []
    for ch in alphabet:
        other = token[:-1] + ch
        if other != token:
            sig = other.split(".")[1]
            padded = sig + "=" * (-len(sig) % 4)
            if base64.urlsafe_b64decode(padded) == base64.urlsafe_b64decode(
                token.split(".")[1] + "=" * (-len(sig) % 4)
            ):
                twins.append(other)
    return twins


def test_a_token_verifies_in_exactly_one_spelling() -> None:
    token = make_token(SECRET, "ada@example.org", UNSUBSCRIBE)
    twins = _last_char_twins(token)
    assert twins, "a 32-byte signature leaves unused bits in its last base64 character"
    body, sig = token.split(".")
    others = [
        *twins,
        token + "=",
        token + "==",
        f"{body}==.{sig}",
        f"{body}.{sig}\n",
        f"{body[:4]}\n{body[4:]}.{sig}",
        f"{body}.{sig[:4]}!{sig[4:]}",
        f"{body.replace('-', '+').replace('_', '/')}.{sig.replace('-', '+').replace('_', '/')}",
    ]
    assert verify_token(SECRET, token, UNSUBSCRIBE) == "ada@example.org"
    for other in others:
        if other != token:
            assert verify_token(SECRET, other, UNSUBSCRIBE) is None, other


def test_key_rotation_old_links_verify_new_links_use_the_new_key() -> None:
    old_key, new_key = "o" * 32, "n" * 40
    old_link = make_token(old_key.encode(), "ada@example.org", UNSUBSCRIBE)
    keys = signing_keys(Settings(secret_key=new_key, secret_key_old=f" {old_key} ,{'p' * 32}"))
    assert keys.current == new_key.encode() and keys.old == (old_key.encode(), b"p" * 32)
    assert verify_token(keys, old_link, UNSUBSCRIBE) == "ada@example.org"
    new_link = subscriber_links(
        "https://x.example", keys.current, "ada@example.org", list_id=LIST_ID, date=DAY
    )
    token = new_link["unsubscribe_url"].split("token=")[1]
    assert verify_token(new_key.encode(), token, UNSUBSCRIBE) == "ada@example.org"
    assert verify_token(old_key.encode(), token, UNSUBSCRIBE) is None
    # once the old key is dropped from the list, its links stop verifying
    assert verify_token(signing_keys(Settings(secret_key=new_key)), old_link, UNSUBSCRIBE) is None


def _signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[1] + "==")


def _payload(token: str) -> bytes:
    body = token.split(".")[0]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


@given(
    secret=st.binary(min_size=1, max_size=200),  # shorter, as long as and longer than a block
    address=st.text(
        st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    ),
)
def test_every_signature_is_the_stdlib_hmac_of_its_payload(secret: bytes, address: str) -> None:
    """The tokens of a send and the single ones are HMAC-SHA256 (RFC 2104) of the version
    tag and the payload, as the stdlib's hmac makes it, whatever the key's length."""

    def stdlib(payload: bytes) -> bytes:
        return hmac.new(secret, b"newsletter-token-v1\0" + payload, hashlib.sha256).digest()

    links = subscriber_links("https://x.example", secret, address, list_id=LIST_ID, date=DAY)
    for url in (links["unsubscribe_url"], links["preferences_url"]):
        token = url.split("token=")[1]
        assert _signature(token) == stdlib(_payload(token))
    feedback = read_feedback_token(links["feedback_url"].removeprefix("https://x.example/f/"))
    assert feedback is not None
    preferences = f"{PREFERENCES}\n{address}\n".encode()
    assert stdlib(preferences).startswith(feedback[1])
    token = make_token(secret, address, RESUBSCRIBE, issued=DAY)
    assert _signature(token) == stdlib(_payload(token))
    token = make_confirmation(secret, address, "nonce-1", issued=DAY)
    assert _signature(token) == stdlib(_payload(token))


def test_subscriber_links() -> None:
    links = subscriber_links(
        "http://news.example.org/", SECRET, "a@example.org", list_id=LIST_ID, date=DAY
    )
    assert links["unsubscribe_url"].startswith("http://news.example.org/unsubscribe?token=")
    assert links["preferences_url"].startswith("http://news.example.org/preferences?token=")
    assert links["feedback_url"].startswith("http://news.example.org/f/")
    token = links["unsubscribe_url"].split("token=")[1]
    assert verify_token(SECRET, token, UNSUBSCRIBE) == "a@example.org"
    preferences = links["preferences_url"].split("token=")[1]
    assert verify_token(SECRET, preferences, PREFERENCES) == "a@example.org"


@pytest.mark.parametrize(
    "address", ["a@example.org", "Very.Long+Tag.Of.Someone@mail.example.co.uk"]
)
def test_feedback_token_names_the_delivery_and_the_reader(address: str) -> None:
    links = subscriber_links("https://x.example", SECRET, address, list_id=LIST_ID, date=DAY)
    token = links["feedback_url"].removeprefix("https://x.example/f/")
    assert len(token) == FEEDBACK_TOKEN_CHARS  # whatever the address
    found = read_feedback_token(token)
    assert found is not None
    message_hex, mac = found
    # the delivery row's Message-ID, as the message module makes it for this email
    assert message_id_for(LIST_ID, DAY, address, "d.example") == f"<{message_hex}@d.example>"
    assert feedback_mac_matches(SECRET, address, mac)
    assert not feedback_mac_matches(SECRET, "b@example.org", mac)
    assert not feedback_mac_matches(b"another key of 32 bytes at least!", address, mac)
    # key rotation: a token made with the old key verifies while that key is listed
    keys = SigningKeys(b"n" * 32, (SECRET,))
    assert feedback_mac_matches(keys, address, mac)
    assert not feedback_mac_matches(SigningKeys(b"n" * 32), address, mac)


def test_feedback_tokens_are_refused_unless_well_formed() -> None:
    token = feedback_token(SECRET, "a@example.org", list_id=LIST_ID, date=DAY)
    assert read_feedback_token(token) is not None
    for bad in (
        "",
        token[:-1],
        token + "A",
        token[:-1] + "=",
        token[:10] + "." + token[11:],
        token[:-1] + "!",
        "A" * 2048,
    ):
        assert read_feedback_token(bad) is None, bad
    assert base64.urlsafe_b64encode(base64.urlsafe_b64decode(token)).decode() == token
    # whole base64 groups: every other last character is other bytes (no unused bits)
    decoded = base64.urlsafe_b64decode(token)
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if c != token[-1]:
            assert base64.urlsafe_b64decode(token[:-1] + c) != decoded


def test_resubscribe_and_sign_up_confirmation_tokens_do_not_stand_for_each_other() -> None:
    day = dt.date(2026, 1, 5)
    resubscribe = make_token(SECRET, "a@example.org", RESUBSCRIBE, issued=day)
    confirm = make_confirmation(SECRET, "a@example.org", "nonce", issued=day)
    assert read_token(SECRET, resubscribe, RESUBSCRIBE) == ("a@example.org", day)
    assert read_token(SECRET, resubscribe, CONFIRM) is None
    assert read_confirmation(SECRET, resubscribe, max_age=dt.timedelta(days=7), today=day) is None
    assert read_token(SECRET, confirm, RESUBSCRIBE) is None
    # a dated sign-up token of the three-field form is no resubscribe token either
    assert (
        read_token(SECRET, make_token(SECRET, "a@example.org", CONFIRM, issued=day), RESUBSCRIBE)
        is None
    )
