"""Header values of the digest's mail: addresses and mailboxes, encoded headers,
Message-IDs, and the quoted-printable of a slot value.

The stdlib does the encoding (``email.header.Header``, ``email.utils.formataddr``,
``binascii.b2a_qp``); what is here keeps a subscriber's values to one line and a plain
address, so nothing a subscriber file says can add a header (:class:`InvalidRecipient`).
:mod:`newsletter.message` builds the messages from these.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from email.charset import Charset
from email.header import Header
from email.utils import formataddr, parseaddr

from newsletter.config import SenderSettings
from newsletter.errors import ConfigError
from newsletter.slots import MAX_NAME_CHARS

QP_LINE_CHARS = 76
"""RFC 2045 limit on an encoded quoted-printable line, without CRLF."""

_ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_WS_RE = re.compile(r"\s+")
_MAILBOX_SPECIALS_RE = re.compile(r'[][\\()<>@,:;".]')
"""``email.utils.specialsre``: a name holding one of these is quoted by ``formataddr``."""
_UTF8 = Charset("utf-8")
_TO_WORD_CHARS = 78 - len("To: ")
"""The longest single encoded word ``Header`` leaves unfolded in a To header."""


class InvalidRecipient(ValueError):
    """An address or URL that cannot go into a header (controls, line breaks, bad syntax)."""


def clean_text(value: str) -> str:
    """One line of text: CR, LF, tabs and other controls become spaces, runs collapse."""
    if value.isprintable():  # no controls, and no whitespace but the plain space
        return " ".join(value.split())
    return _WS_RE.sub(" ", _CONTROL_RE.sub(" ", value)).strip()


def check_address(address: str) -> str:
    """``address`` if it is a plain ASCII ``local@domain``; InvalidRecipient otherwise."""
    if not _ADDRESS_RE.fullmatch(address) or ".." in address or len(address) > 254:
        raise InvalidRecipient(f"not a deliverable address: {address!r}")
    return address


def check_url(url: str) -> str:
    """``url`` if it has no whitespace, controls or angle brackets (it goes inside <...>)."""
    if not (url.isascii() and url.isprintable()) or " " in url or "<" in url or ">" in url:
        raise InvalidRecipient(f"not a usable URL: {url!r}")
    return url


def _plain_ascii(value: str) -> bool:
    """ASCII that a reader shows as written: no ``=?`` that a mail client would decode as
    an RFC 2047 encoded word (such text is encoded itself, so it reads back unchanged)."""
    return value.isascii() and "=?" not in value


def header(name: str, value: str) -> Header:
    """``value`` on one line as ``Header`` encodes it for ``name`` (RFC 2047 if need be)."""
    value = clean_text(value)
    return Header(value, "us-ascii" if _plain_ascii(value) else "utf-8", header_name=name)


def format_mailbox(name: str, address: str) -> str:
    """``Name <address>``: ``formataddr`` for a plain ASCII name, else the name as
    ``Header(name, "utf-8")`` encodes it in a To header; at most MAX_NAME_CHARS of it."""
    return encoded_mailbox(clean_text(name)[:MAX_NAME_CHARS], check_address(address))


def encoded_mailbox(name: str, address: str) -> str:
    """:func:`format_mailbox` of a clean, short name and a checked address."""
    if _plain_ascii(name):  # formataddr's result; without its escaping pass when nothing to quote
        quiet = name and not _MAILBOX_SPECIALS_RE.search(name)
        return f"{name} <{address}>" if quiet else formataddr((name, address))
    word = _UTF8.header_encode(name)  # what Header makes when one word fits the line
    if len(word) > _TO_WORD_CHARS:
        word = Header(name, "utf-8", header_name="To").encode(linesep="\r\n")
    return f"{word} <{address}>"


def display_mailbox(name: str, address: str) -> str:
    """``Name <address>`` with the name left in Unicode (for JSON / form APIs that encode)."""
    check_address(address)
    name = clean_text(name)[:MAX_NAME_CHARS]
    if not name:
        return address
    if _MAILBOX_SPECIALS_RE.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        name = f'"{escaped}"'
    return f"{name} <{address}>"


def split_mailbox(value: str) -> tuple[str, str]:
    """(name, address) of a ``Name <address>`` setting; ConfigError when there is no address."""
    name, address = parseaddr(value)
    try:
        check_address(address)
    except InvalidRecipient:
        raise ConfigError(f"sender address {value!r} has no valid email address") from None
    return clean_text(name), address


def message_id_for(list_id: str, date: dt.date, email: str, domain: str) -> str:
    """The Message-ID of one subscriber's digest for one day: the same on every attempt.

    A retry or a rerun after a crash re-sends the identical Message-ID, so a receiving
    system that de-duplicates by it (and every mail client's threading) sees one message.
    """
    return message_ids(list_id, date, domain)(email)


def message_hash_prefix(list_id: str, date: dt.date) -> bytes:
    """What the Message-ID hash of every email of ``list_id`` on ``date`` starts with; the
    lower-cased address follows (the feedback token holds that hash too)."""
    return f"{list_id}\n{date.isoformat()}\n".encode()


def message_ids(list_id: str, date: dt.date, domain: str) -> Callable[[str], str]:
    """:func:`message_id_for` of one list, day and domain, for many addresses: the hash
    of :func:`message_hash_prefix` taken once and copied per address."""
    prefix = hashlib.sha256(message_hash_prefix(list_id, date))
    suffix = f"@{domain}>"

    def message_id(email: str) -> str:
        digest = prefix.copy()
        digest.update(email.lower().encode())
        return f"<{digest.hexdigest()[:32]}{suffix}"

    return message_id


def feedback_id(sender: SenderSettings, date: dt.date) -> str:
    """The ``Feedback-ID`` of Gmail's feedback loop: ``campaign:customer:type:SenderId``
    (the day, ``newsletter``, ``digest``, and ``sender.feedback_id`` or the List-Id domain)."""
    sender_id = sender.feedback_id or list_id_domain(sender.list_id)
    return f"{date:%Y%m%d}:newsletter:digest:{sender_id}"


def list_id_domain(list_id: str) -> str:
    """The id inside the angle brackets of a List-Id (``Name <id.domain>``), or the value."""
    inside = list_id[list_id.rfind("<") + 1 : list_id.rfind(">")] if ">" in list_id else list_id
    return inside.strip()


def qp_value(value: str) -> bytes:
    """A text slot value (one line) as its own quoted-printable lines, ending in a soft
    line break: ``binascii.b2a_qp`` of its UTF-8, the last line cut once more when it
    leaves no room for the closing ``=`` (RFC 2045: at most 76 characters a line).

    Printable ASCII not ending in a space (links, addresses, most names) is what
    ``b2a_qp`` makes of it worked out here, which is cheaper than the encoder and the cut
    (gain quoted in ``benchmarks/bench_tricks.py``): each ``=`` becomes ``=3D`` and
    nothing else changes, so only the line breaks are left to place.
    """
    if value.isascii() and value.isprintable() and value[-1:] != " " and value != ".":
        return qp_link(value)
    return qp_encoded(value)


def qp_link(url: str) -> bytes:
    """:func:`qp_value`'s shortcut without its checks, for printable ASCII that neither
    ends in a space nor is a lone ``.``: every link :func:`newsletter.slots.normalize`
    lets through (it matches a plain-URL pattern, or ``safe_url`` leaves it as it is).
    The text part's links skip the checks (part of the shortcut's gain in
    ``bench_tricks``: the checks scan each link)."""
    return _qp_lines(url.replace("=", "=3D"))


def qp_encoded(value: str) -> bytes:
    """:func:`qp_value` by ``binascii.b2a_qp`` itself, for any value."""
    encoded = binascii.b2a_qp(value.encode("utf-8"), istext=True)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start >= QP_LINE_CHARS:  # cut before column 75, never inside =XX
        cut = start + QP_LINE_CHARS - 2
        cut -= 1 if encoded[cut - 1] == 61 else 2 if encoded[cut - 2] == 61 else 0  # "="
        encoded = encoded[:cut] + b"=\n" + encoded[cut:]
    return encoded.replace(b"\n", b"\r\n") + b"=\r\n"


def _qp_lines(encoded: str) -> bytes:
    """``encoded`` (ASCII whose only escapes are ``=3D``) in b2a_qp's lines and
    :func:`qp_value`'s cut: soft breaks after 75 characters, before an ``=3D`` that
    would pass them; a last line of 76 cut before column 75 (74 or less), or before
    its ``=3D`` when that ends it (b2a_qp breaks there)."""
    end = len(encoded)
    if end < QP_LINE_CHARS:
        return encoded.encode("ascii") + b"=\r\n"
    lines = []
    start = 0
    while end - start >= QP_LINE_CHARS:
        last = end - start == QP_LINE_CHARS and encoded[end - 3] != "="
        cut = start + QP_LINE_CHARS - (2 if last else 1)
        cut -= 1 if encoded[cut - 1] == "=" else 2 if encoded[cut - 2] == "=" else 0
        lines.append(encoded[start:cut])
        start = cut
    lines += (encoded[start:], "")
    return "=\r\n".join(lines).encode("ascii")
