"""Signed tokens for the links in each email: unsubscribe, preferences, feedback, sign-up
and resubscribe confirmation.

A token is ``<payload>.<signature>``, both base64url without padding, so it can stand in
a URL as is. The payload is ``purpose``, ``email`` and an optional issue date joined by
newlines; the signature is HMAC-SHA256 over a version tag and the payload, with the
secret from the environment (``NEWSLETTER_SECRET_KEY``). Verification recomputes the
signature and compares in constant time; any forged, altered, truncated or wrong-purpose
token gives ``None``, whether or not the address is on the list (nothing is looked up).

Each token has exactly one spelling: base64 that is not exactly what we would have made
(padding added, a last character whose unused bits differ, stray characters) is refused.

Keys: the signing key is at least :data:`MIN_KEY_BYTES` long. To rotate it, put the new key
in ``NEWSLETTER_SECRET_KEY`` and the old one(s) in ``NEWSLETTER_SECRET_KEY_OLD``
(comma-separated): new links are signed with the new key, links already sent keep
verifying with the old ones until those are removed (:class:`SigningKeys`).

Feedback links ("more / less like this", "fewer of this topic") stand two or three times
per paper in an email, so their token is short and the same length for every address
(:data:`FEEDBACK_TOKEN_CHARS`, :func:`feedback_token`): the first 16 bytes of the
delivery's Message-ID hash (``newsletter.headers.message_id_for``: which delivery row,
so which reader and day) and the first 11 bytes (88 bits) of the reader's preferences
signature (the MAC that the preferences link carries in full), as 36 base64url
characters (27 bytes: whole base64 groups, so no padding and one spelling). The MAC is
the one the preferences link needs anyway (computed once for both links); the reference
costs one SHA-256 per reader. :func:`read_feedback_token` splits a token; the
server finds the delivery by its Message-ID and :func:`feedback_mac_matches` checks the
MAC against that reader's address with every key. Whoever holds a preferences link can
give feedback anyway; a feedback link gives nothing else.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from newsletter.config import Settings, env_var, require_secret
from newsletter.errors import ConfigError
from newsletter.headers import message_hash_prefix

UNSUBSCRIBE = "unsubscribe"
"""Purpose of the unsubscribe link (and the List-Unsubscribe header)."""

PREFERENCES = "preferences"
"""Purpose of the preferences link."""

CONFIRM = "confirm"
"""Purpose of the sign-up confirmation link (double opt-in)."""

RESUBSCRIBE = "resubscribe"
"""Purpose of the resubscribe confirmation link (from the preferences page)."""

PURPOSES = frozenset({UNSUBSCRIBE, PREFERENCES, CONFIRM, RESUBSCRIBE})
"""Every purpose a token may have."""

TOKEN_VERSION = b"newsletter-token-v1"
"""Mixed into every signature, so a change of format can never verify old tokens."""

MAX_TOKEN_CHARS = 2048
"""Longer tokens are refused before any work is done."""

MIN_KEY_BYTES = 32
"""Shortest signing key accepted (256 bits, the size of the HMAC-SHA256 output)."""

FEEDBACK_PATH = "f"
"""Feedback links are ``<base_url>/f/<token>/<more|less|fewer>/<paper or topic>``."""

FEEDBACK_REF_BYTES = 16
"""Bytes of the delivery's Message-ID hash in a feedback token (all the Message-ID has)."""

FEEDBACK_MAC_BYTES = 11
"""Bytes (88 bits) of the preferences signature in a feedback token: with the reference,
27 bytes, whole base64 groups."""

FEEDBACK_TOKEN_CHARS = (FEEDBACK_REF_BYTES + FEEDBACK_MAC_BYTES) * 4 // 3
"""Length of every feedback token (36): the feedback slot's exact size beyond the base URL."""
assert (FEEDBACK_REF_BYTES + FEEDBACK_MAC_BYTES) % 3 == 0  # no padding (see links())


_URLSAFE = bytes.maketrans(b"+/", b"-_")
"""Standard to url-safe base64 alphabet (what ``base64.urlsafe_b64encode`` applies)."""


def _b64(data: bytes) -> str:
    """``base64.urlsafe_b64encode`` without the padding, in one C call and a translate."""
    return _b64_bytes(data).decode("ascii")


def _b64_bytes(data: bytes) -> bytes:
    """:func:`_b64` as bytes."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _b64_whole(data: bytes) -> str:
    """:func:`_b64` of whole base64 groups (a multiple of 3 bytes): nothing to strip."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode("ascii")


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``, if ``text`` is their one canonical spelling.

    ``urlsafe_b64decode`` skips stray characters and ignores the unused low bits of the
    last character, so several spellings decode alike; re-encoding tells them apart.
    """
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


def _sign(secret: bytes, payload: bytes) -> bytes:
    """The signature of ``payload`` by the stdlib's HMAC, to check a token against: the
    tokens are made by :class:`_Mac`, so every token that comes back checks it too."""
    return hmac.digest(secret, TOKEN_VERSION + b"\0" + payload, "sha256")


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
"""RFC 2104's inner and outer pads, as ``bytes.translate`` tables over the key."""


class _Mac:
    """HMAC-SHA256 (RFC 2104) under one key of messages that all begin with ``start``:
    the two hashlib states are set up once and copied per message, so
    ``_Mac(key, start).digest(rest) == hmac.digest(key, start + rest, "sha256")``
    (property-tested against the stdlib, which also checks every token that comes back).

    ``hmac.HMAC.copy`` does the same with a Python object per copy; the link tokens of a
    send (two per subscriber) cost more of ``bench_scale``'s MIME stage that way:
    ``python3 -m benchmarks.bench_tricks`` at 100k, CPU medians of 5 alternating runs,
    2.422 s against 2.294 s with this (5.3 %; 7.3 % and 10.4 % in two other runs).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, start: bytes) -> None:
        if not key:
            raise ValueError("an empty secret signs nothing")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._inner.update(start)
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, rest: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(rest)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_BLOCK = hashlib.sha256().block_size


def make_token(secret: bytes, email: str, purpose: str, *, issued: dt.date | None = None) -> str:
    """A url-safe token naming ``email`` for ``purpose`` (optionally dated ``issued``)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return Signer(secret).token(email, purpose, issued=issued)


class Signer:
    """Makes tokens with one secret, the HMAC key set up once and copied per token.

    Many tokens per run (two per subscriber) cost less this way than with
    :func:`make_token`, which builds a Signer per call; the tokens are the same.
    """

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes) -> None:
        self._mac = _Mac(secret, TOKEN_VERSION + b"\0")

    def token(self, email: str, purpose: str, *, issued: dt.date | None = None) -> str:
        """A url-safe token naming ``email`` for ``purpose`` (optionally dated ``issued``)."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        if "\n" in email:
            raise ValueError("an address has no line breaks")
        return self.signed(f"{purpose}\n{email}\n{issued.isoformat() if issued else ''}".encode())

    def signed(self, payload: bytes) -> str:
        """``payload`` as a token: its base64url, a dot, its signature's base64url."""
        return f"{_b64(payload)}.{_b64(self._mac.digest(payload))}"


def _verified_fields(secret: bytes | SigningKeys, token: str) -> list[str] | None:
    """The payload lines of a token signed with one of the keys, else None."""
    keys = secret.verifying if isinstance(secret, SigningKeys) else (secret,)
    if not all(keys) or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    body, signature = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    genuine = False
    for key in keys:  # every key is tried, so timing says nothing about which one matched
        genuine |= hmac.compare_digest(_sign(key, payload), given)
    if not genuine:
        return None
    try:
        return payload.decode("utf-8").split("\n")
    except ValueError:
        return None


def _issued_within(
    issued_text: str, max_age: dt.timedelta | None, today: dt.date | None
) -> tuple[bool, dt.date | None]:
    """(acceptable, issue date) of a token's date line under ``max_age``."""
    try:
        issued = dt.date.fromisoformat(issued_text) if issued_text else None
    except ValueError:
        return False, None
    if max_age is not None and (
        issued is None or today is None or today - issued > max_age or issued > today
    ):
        return False, issued
    return True, issued


def read_token(
    secret: bytes | SigningKeys,
    token: str,
    purpose: str,
    *,
    max_age: dt.timedelta | None = None,
    today: dt.date | None = None,
) -> tuple[str, dt.date | None] | None:
    """(email, issue date) of a genuine token for ``purpose``, else None.

    ``secret`` is one key or :class:`SigningKeys` (the current key, then the old ones).
    With ``max_age`` a token must carry an issue date no older than that (by ``today``).
    """
    fields = _verified_fields(secret, token)
    if fields is None or len(fields) != 3:
        return None
    kind, email, issued_text = fields
    if kind != purpose or not email:
        return None
    fresh, issued = _issued_within(issued_text, max_age, today)
    return (email, issued) if fresh else None


def make_confirmation(secret: bytes, email: str, nonce: str, *, issued: dt.date) -> str:
    """The sign-up confirmation token: ``email``, the issue date and the ``nonce`` of the
    pending sign-up it confirms (so it confirms that sign-up only, and only once)."""
    if "\n" in email or "\n" in nonce or not nonce:
        raise ValueError("an address or nonce has no line breaks")
    payload = f"{CONFIRM}\n{email}\n{issued.isoformat()}\n{nonce}".encode()
    return Signer(secret).signed(payload)


def read_confirmation(
    secret: bytes | SigningKeys, token: str, *, max_age: dt.timedelta, today: dt.date
) -> tuple[str, str] | None:
    """(email, nonce) of a genuine, unexpired confirmation token, else None."""
    fields = _verified_fields(secret, token)
    if fields is None or len(fields) != 4:
        return None
    kind, email, issued_text, nonce = fields
    if kind != CONFIRM or not email or not nonce:
        return None
    fresh, _issued = _issued_within(issued_text, max_age, today)
    return (email, nonce) if fresh else None


def verify_token(secret: bytes | SigningKeys, token: str, purpose: str) -> str | None:
    """The address of a genuine token for ``purpose``, or None for anything else."""
    found = read_token(secret, token, purpose)
    return found[0] if found else None


@dataclass(frozen=True)
class SigningKeys:
    """The key new links are signed with, and older keys that still verify links."""

    current: bytes
    old: tuple[bytes, ...] = ()

    @property
    def verifying(self) -> tuple[bytes, ...]:
        """Every key a token may be signed with, the current one first."""
        return (self.current, *self.old)


def check_key(key: bytes, variable: str) -> bytes:
    """``key`` if it is long enough to sign links, else ConfigError naming ``variable``."""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{variable} is too short ({len(key)} bytes): use at least {MIN_KEY_BYTES} "
            'random bytes, e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return key


def secret_from(settings: Settings) -> bytes:
    """The signing key from the settings (environment only, at least MIN_KEY_BYTES long),
    or ConfigError naming the variable."""
    key = require_secret(settings, "secret_key").encode("utf-8")
    return check_key(key, env_var("secret_key"))


def signing_keys(settings: Settings) -> SigningKeys:
    """The current signing key and the old ones from ``NEWSLETTER_SECRET_KEY_OLD``."""
    old_text = settings.secret_key_old or ""
    old = tuple(
        check_key(part.strip().encode("utf-8"), env_var("secret_key_old"))
        for part in old_text.split(",")
        if part.strip()
    )
    return SigningKeys(secret_from(settings), old)


def link(base_url: str, path: str, token: str) -> str:
    """``<base_url>/<path>?token=...``."""
    if _URL_SAFE.fullmatch(token):  # every token we make: urlencode would leave it as is
        return f"{base_url.rstrip('/')}/{path}?token={token}"
    return f"{base_url.rstrip('/')}/{path}?{urlencode({'token': token})}"


_URL_SAFE = re.compile(r"[A-Za-z0-9_.-]*")
"""Characters ``urlencode`` never quotes (a token is base64url and one dot)."""


class LinkSigner:
    """The per-subscriber URL slots of one send: one base URL, secret, List-Id and date
    (see :func:`subscriber_links`)."""

    __slots__ = (
        "_feedback",
        "_message_hash",
        "_preferences",
        "_preferences_mac",
        "_unsubscribe",
        "_unsubscribe_mac",
    )

    def __init__(self, base_url: str, secret: bytes, *, list_id: str, date: dt.date) -> None:
        self._unsubscribe_mac = _Mac(secret, TOKEN_VERSION + b"\0" + _UNSUBSCRIBE_PREFIX)
        self._preferences_mac = _Mac(secret, TOKEN_VERSION + b"\0" + _PREFERENCES_PREFIX)
        self._message_hash = hashlib.sha256(message_hash_prefix(list_id, date))
        root = base_url.rstrip("/")
        self._unsubscribe = f"{root}/{UNSUBSCRIBE}?token="
        self._preferences = f"{root}/{PREFERENCES}?token="
        self._feedback = feedback_base(base_url)

    def links(self, email: str) -> dict[str, str]:
        """``unsubscribe_url``, ``preferences_url`` and ``feedback_url`` of ``email``: the
        tokens of :meth:`Signer.token` (no issue date) and :func:`feedback_token`, made
        in bytes and decoded once each.

        Both payloads are a 12-byte purpose line and the same ``email`` line, so the
        base64 of the address line is made once (12 bytes are whole base64 groups), and
        each signature goes on from a MAC that has already taken the purpose line; the
        feedback token reuses the preferences signature.
        """
        if "\n" in email:
            raise ValueError("an address has no line breaks")
        line = email.encode() + b"\n"
        encoded = _b64_bytes(line)
        mac = self._preferences_mac.digest(line)
        message = self._message_hash.copy()
        message.update(email.lower().encode())
        feedback = message.digest()[:FEEDBACK_REF_BYTES] + mac[:FEEDBACK_MAC_BYTES]
        unsubscribe = (
            _UNSUBSCRIBE_B64 + encoded + b"." + _b64_bytes(self._unsubscribe_mac.digest(line))
        )
        preferences = _PREFERENCES_B64 + encoded + b"." + _b64_bytes(mac)
        return {
            "unsubscribe_url": self._unsubscribe + unsubscribe.decode("ascii"),
            "preferences_url": self._preferences + preferences.decode("ascii"),
            "feedback_url": self._feedback + _b64_whole(feedback),
        }


_UNSUBSCRIBE_PREFIX = f"{UNSUBSCRIBE}\n".encode()
_PREFERENCES_PREFIX = f"{PREFERENCES}\n".encode()
assert len(_UNSUBSCRIBE_PREFIX) % 3 == 0 and len(_PREFERENCES_PREFIX) % 3 == 0  # see links()
_UNSUBSCRIBE_B64 = _b64_bytes(_UNSUBSCRIBE_PREFIX)
_PREFERENCES_B64 = _b64_bytes(_PREFERENCES_PREFIX)


def subscriber_links(
    base_url: str, secret: bytes, email: str, *, list_id: str, date: dt.date
) -> dict[str, str]:
    """The per-subscriber URL slots of a rendered digest: unsubscribe, preferences and
    feedback (for the email to ``email`` of the list ``list_id`` on ``date``)."""
    return LinkSigner(base_url, secret, list_id=list_id, date=date).links(email)


# --------------------------------------------------------------------------- feedback


def feedback_base(base_url: str) -> str:
    """What every feedback URL starts with: ``<base_url>/f/`` (the token follows)."""
    return f"{base_url.rstrip('/')}/{FEEDBACK_PATH}/"


def feedback_token(secret: bytes, email: str, *, list_id: str, date: dt.date) -> str:
    """The feedback token of ``email``'s email of ``list_id`` on ``date`` (one reader;
    :class:`LinkSigner` makes them for a send)."""
    url = LinkSigner("http://x", secret, list_id=list_id, date=date).links(email)["feedback_url"]
    return url.rsplit("/", 1)[1]


def read_feedback_token(token: str) -> tuple[str, bytes] | None:
    """(the Message-ID's hex digits, the MAC) of a well-formed feedback token, else None.
    Nothing is verified here: the MAC is checked against the address the Message-ID
    leads to (:func:`feedback_mac_matches`)."""
    if len(token) != FEEDBACK_TOKEN_CHARS or not _URL_SAFE.fullmatch(token) or "." in token:
        return None
    try:
        data = _unb64(token)
    except (binascii.Error, ValueError):
        return None
    return data[:FEEDBACK_REF_BYTES].hex(), data[FEEDBACK_REF_BYTES:]


def feedback_mac_matches(secret: bytes | SigningKeys, email: str, mac: bytes) -> bool:
    """True if ``mac`` is the start of ``email``'s preferences signature under one of the
    keys (every key is tried, in constant time each)."""
    keys = secret.verifying if isinstance(secret, SigningKeys) else (secret,)
    if "\n" in email or len(mac) != FEEDBACK_MAC_BYTES or not all(keys):
        return False
    payload = f"{PREFERENCES}\n{email}\n".encode()
    genuine = False
    for key in keys:
        genuine |= hmac.compare_digest(_sign(key, payload)[:FEEDBACK_MAC_BYTES], mac)
    return genuine
