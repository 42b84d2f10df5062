"""The per-subscriber slots of a digest: their names, limits, placeholders and escaping.

The one contract between :mod:`newsletter.render` (which writes a placeholder for each
slot into the rendered parts) and :mod:`newsletter.message` (which builds each variant's
MIME once and fills the slots per subscriber). Both import it from here:

* :data:`SLOTS` and the limits (:data:`MAX_NAME_CHARS`, :data:`MAX_SLOT_BYTES`);
* :func:`placeholder` / :func:`split`: ``%%<nonce>.<slot>%%``, unforgeable by a random
  nonce per render, and a part split at them (literal, slot, literal, ... literal);
* :func:`normalize`: a subscriber's raw values as they go into the text part and the
  HTML part, with the text helpers it needs (:func:`cut`, :func:`close_bidi`,
  :func:`safe_url`), which the renderer uses for paper text as well.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

SLOTS: tuple[str, ...] = ("name", "email", "unsubscribe_url", "preferences_url", "feedback_url")
"""The per-subscriber parts of a rendered digest, in this order everywhere."""

URL_SLOTS = frozenset({"unsubscribe_url", "preferences_url", "feedback_url"})
"""Slots that are links: their values must be plain http(s) URLs."""

FEEDBACK_SLOT = "feedback_url"
"""The reader's short feedback link (``<base_url>/f/<token>``, :mod:`newsletter.tokens`):
each paper's and section's feedback links go on from it. It repeats two or three times
per paper, so the renderer budgets it at its real length, not at MAX_SLOT_BYTES."""

MAX_NAME_CHARS = 60
"""A longer subscriber name is cut (with an ellipsis), in the greeting and the To header."""

MAX_SLOT_BYTES = 512
"""Longest slot value, HTML-escaped; the renderer's size budget and line wrapping assume it."""

DEFAULT_NAME = "there"
"""What the greeting says ("Hi there,") for a subscriber without a name."""

ELLIPSIS = "\u2026"

MAX_URL_CHARS = 800
"""Longer links are not made into links (they could not stay on one HTML line)."""

SAFE_URL_CHARS = "!#$%&'()*+,-./:;=?@[]~_"
"""Characters left as they are when a link is percent-encoded."""

CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)
"""Characters never shown: C0/C1 controls, line/paragraph separators, lone surrogates and
Unicode noncharacters (HTML parsers drop their character references)."""

_SLOT_SET = frozenset(SLOTS)
_SPACE = re.compile(r"\s")
"""Any character ``str.isspace`` calls whitespace (the same Unicode set)."""
_PDF = "\u202c"
_PDI = "\u2069"
_BIDI_EMBEDS = frozenset("\u202a\u202b\u202d\u202e")
"""LRE, RLE, LRO, RLO: each open until a PDF."""
_BIDI_ISOLATES = frozenset("\u2066\u2067\u2068")
"""LRI, RLI, FSI: each open until a PDI."""
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(:\d+)?([/?#][\w!#$%&'()*+,./:;=?@\[\]~-]*)?", re.A
)
"""A link value that is certainly fit for an href."""
_QUIET_URL = re.compile(
    r"https?://[A-Za-z0-9.-]++(?::[0-9]++)?+(?:[/?#][A-Za-z0-9_!#$%()*+,./:;=?@\[\]~-]*+)?+"
)
"""A plain URL with nothing HTML-escaping changes (no ``&`` or ``'``)."""
_QUIET_WORDS = re.compile(r"[!#-%(-;=?-~]++(?: [!#-%(-;=?-~]++)*+")
"""Single-spaced printable ASCII words without ``"&'<>``: the same in both parts."""


# --------------------------------------------------------------------------- placeholders


def placeholder(nonce: str, slot: str) -> str:
    """What stands for ``slot`` in a part rendered with ``nonce`` (QP- and HTML-safe ASCII)."""
    return f"%%{nonce}.{slot}%%"


def placeholder_pattern(nonce: str) -> re.Pattern[str]:
    """Matches every placeholder of ``nonce``; group 1 is the slot."""
    names = "|".join(re.escape(s) for s in SLOTS)
    return re.compile(re.escape(f"%%{nonce}.") + f"({names})" + re.escape("%%"))


def split(part: str, nonce: str) -> tuple[str, ...]:
    """``part`` split at its placeholders: literal, slot, literal, slot, ... literal."""
    return tuple(placeholder_pattern(nonce).split(part))


def join(parts: Sequence[str], values: Mapping[str, str]) -> str:
    """The inverse of :func:`split`, each slot replaced by its value."""
    out = list(parts)
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


# --------------------------------------------------------------------------- values


def normalize(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """One subscriber's slot values as they go into the parts: ``(text, html)``.

    ``values`` has every name of :data:`SLOTS` and no other. Controls are dropped and
    whitespace runs become one space; a name is cut to MAX_NAME_CHARS with open bidi
    controls closed, and an empty one greets "there"; link slots must be plain http(s)
    URLs; html values are escaped, non-ASCII as character references. A missing or
    unknown slot, a bad link or a value over MAX_SLOT_BYTES raises ValueError.
    """
    if values.keys() != _SLOT_SET:
        missing = [s for s in SLOTS if s not in values]
        unknown = [k for k in values if k not in SLOTS]
        raise ValueError(f"fill: missing slots {missing}, unknown slots {unknown}")
    name, email = values["name"], values["email"]
    unsubscribe, preferences = values["unsubscribe_url"], values["preferences_url"]
    feedback = values["feedback_url"]
    if (  # the common case, each value as _normalize_one's first test takes it as it is
        len(name) <= MAX_NAME_CHARS
        and max(len(email), len(unsubscribe), len(preferences), len(feedback)) <= MAX_SLOT_BYTES
        and _QUIET_WORDS.fullmatch(name)
        and _QUIET_WORDS.fullmatch(email)
        and _QUIET_URL.fullmatch(unsubscribe)
        and _QUIET_URL.fullmatch(preferences)
        and _QUIET_URL.fullmatch(feedback)
    ):
        same = dict(values)
        return same, same
    text: dict[str, str] = {}
    escaped: dict[str, str] = {}
    for slot in SLOTS:
        text[slot], escaped[slot] = _normalize_one(slot, values[slot])
    return text, escaped


def _normalize_one(slot: str, given: str) -> tuple[str, str]:
    """(text, html) of one slot value; see :func:`normalize`."""
    if slot in URL_SLOTS:
        if len(given) <= MAX_SLOT_BYTES and _QUIET_URL.fullmatch(given):
            return given, given  # nothing to clean or escape (the common case)
    elif len(given) <= (MAX_NAME_CHARS if slot == "name" else MAX_SLOT_BYTES) and (
        _QUIET_WORDS.fullmatch(given)
    ):
        return given, given
    value = " ".join(CONTROL.sub("", given).split())
    if slot == "name":
        value = close_bidi(cut(value, MAX_NAME_CHARS)) or DEFAULT_NAME
    if slot in URL_SLOTS and not (_PLAIN_URL.fullmatch(value) or safe_url(value) == value):
        raise ValueError(f"fill: {slot} is not a plain http(s) URL: {value!r}")
    escaped = ascii_refs(html.escape(value, quote=True))
    if len(escaped) > MAX_SLOT_BYTES:
        raise ValueError(f"fill: {slot} is longer than {MAX_SLOT_BYTES} bytes")
    return value, escaped


# --------------------------------------------------------------------------- text helpers


def ascii_refs(text: str) -> str:
    """``text`` with every non-ASCII character as a numeric character reference."""
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def close_bidi(text: str) -> str:
    """``text`` with every open LRE/RLE/LRO/RLO (closed by PDF) and LRI/RLI/FSI (closed by
    PDI) closed at its end, so it cannot reorder what a mail client shows after it."""
    if not _BIDI.search(text):
        return text
    stack: list[str] = []
    for ch in text:
        if ch in _BIDI_EMBEDS:
            stack.append(_PDF)
        elif ch in _BIDI_ISOLATES:
            stack.append(_PDI)
        elif ch == _PDF and stack and stack[-1] == _PDF:
            stack.pop()
        elif ch == _PDI and _PDI in stack:
            while stack.pop() != _PDI:
                pass
    return text + "".join(reversed(stack))


def cut(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - 1, 1)]
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return close_bidi(head.rstrip(" ,;:-") + ELLIPSIS)


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL fit for an href, else None.

    Non-ASCII and unsafe characters are percent-encoded; a URL with whitespace or
    control characters inside, another scheme (``javascript:``, ``data:``) or no
    host is refused.
    """
    if not url:
        return None
    url = url.strip()
    if not url or CONTROL.search(url) or _SPACE.search(url):
        return None
    url = quote(url, safe=SAFE_URL_CHARS)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if len(url) > MAX_URL_CHARS:
        return None
    return url


def one_line(text: str) -> str:
    """One line of text: control characters gone, runs of whitespace (CR/LF too) one space,
    bidi embeddings, overrides and isolates it leaves open closed at its end."""
    return close_bidi(" ".join(CONTROL.sub(" ", unicodedata.normalize("NFC", text)).split()))
