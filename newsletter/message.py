"""The digest as an email: built once per variant, filled per subscriber.

Building a MIME message from scratch per recipient costs more than sending it, so
:func:`build_template` does the work once per render variant: it fills the rendered
digest with placeholder tokens, encodes every header and both parts, and keeps the
message as a list of byte segments with a hole per slot. :meth:`MessageTemplate.fill`
then makes one subscriber's message by joining bytes:

* the HTML part is pure ASCII with lines of at most 900 bytes (render's promise), so
  it goes out as ``7bit``; a slot value is HTML-escaped with non-ASCII as numeric
  character references, so it stays ASCII. A fill that would push a line past the
  SMTP limit of 998 bytes falls back to a from-scratch build for that subscriber.
* the text part may be non-ASCII: it is quoted-printable, and every slot value sits on
  its own encoded line between soft line breaks (``=\\r\\n``), so the QP encoding of a
  value never interacts with the text around it and the part stays valid.
* the per-subscriber headers (``To``, ``Message-ID``, ``List-Unsubscribe``) are
  encoded per subscriber (RFC 2047 for non-ASCII names).

Header values never carry CR or LF: names and subjects are flattened to one line,
and an address or URL containing a line break or other control is refused
(:class:`InvalidRecipient`), so nothing a subscriber file says can add a header.

The result parses with the stdlib email parser to the same headers and parts as
:func:`build_message` (the slow, from-scratch path the tests compare against).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import html as html_lib
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Literal, Protocol

from newsletter.config import SenderSettings
from newsletter.errors import ConfigError

SLOTS: tuple[str, ...] = ("name", "email", "unsubscribe_url", "preferences_url")
"""The per-subscriber slots of a rendered digest (same as ``newsletter.render.SLOTS``)."""
_SLOT_KEYS = frozenset(SLOTS)

MAX_LINE_BYTES = 998
"""RFC 5321/5322 limit on a line, without CRLF."""

QP_LINE_CHARS = 76
"""RFC 2045 limit on an encoded quoted-printable line, without CRLF."""

MAX_NAME_CHARS = 200
"""Display names longer than this are cut (nobody's name is that long; a header is)."""

DKIM_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)
"""Headers covered by the DKIM signature (``h=``); RFC 8058 asks for both List-Unsubscribe ones."""

ONE_CLICK = "List-Unsubscribe=One-Click"
"""The List-Unsubscribe-Post value of RFC 8058."""

CRLF = b"\r\n"

_ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WS_RE = re.compile(r"\s+")
_URL_UNSAFE_RE = re.compile(r"[\x00-\x20<>\x7f]")
"""In ASCII (check_url refuses the rest first): whitespace, controls, angle brackets."""
_MAILBOX_SPECIALS_RE = re.compile(r'[][\\()<>@,:;".]')
"""``email.utils.specialsre``: a name holding one of these is quoted by ``formataddr``."""
_QUIET_NAME_RE = re.compile(r"[!#-'*+/-9?A-Z^-~]++(?: [!#-'*+/-9?A-Z^-~]++)*+")
"""Single-spaced printable ASCII words without specials or ``=``: a display name that
:func:`format_mailbox` writes as it is (the fast path of the To header)."""


class RenderedLike(Protocol):
    """What the message needs of ``newsletter.render.RenderedDigest``."""

    @property
    def subject(self) -> str: ...

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]: ...


class InvalidRecipient(ValueError):
    """An address or URL that cannot go into a header (controls, line breaks, bad syntax)."""


# --------------------------------------------------------------------------- headers


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
    if not url.isascii() or _URL_UNSAFE_RE.search(url):
        raise InvalidRecipient(f"not a usable URL: {url!r}")
    return url


def _plain_ascii(value: str) -> bool:
    """ASCII that a reader shows as written: no ``=?`` that a mail client would decode as
    an RFC 2047 encoded word (such text is encoded itself, so it reads back unchanged)."""
    return value.isascii() and "=?" not in value


def encode_header(name: str, value: str) -> bytes:
    """``Name: value`` CRLF-terminated, RFC 2047-encoded when not ASCII, folded to 78 columns."""
    value = clean_text(value)
    if _plain_ascii(value):
        folded = Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
    else:
        folded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}".encode("ascii") + CRLF


def format_mailbox(name: str, address: str) -> str:
    """``Name <address>`` with the name quoted or RFC 2047-encoded as needed (one line)."""
    check_address(address)
    name = clean_text(name)[:MAX_NAME_CHARS]
    if not name:
        return address
    if _plain_ascii(name):
        if not _MAILBOX_SPECIALS_RE.search(name):  # formataddr neither quotes nor escapes it
            return f"{name} <{address}>"
        return formataddr((name, address))
    return f"{_to_words(name)} <{address}>"


def _to_header(name: str, address: str) -> bytes:
    """The ``To`` header line of ``format_mailbox(name, address)``."""
    if len(name) <= MAX_NAME_CHARS and _QUIET_NAME_RE.fullmatch(name):  # what it gives then
        check_address(address)
        return f"To: {name} <{address}>\r\n".encode("ascii")
    return b"To: " + format_mailbox(name, address).encode("ascii") + CRLF


def _to_words(name: str) -> str:
    """``Header(name, "utf-8", header_name="To").encode(linesep="\\r\\n")``, cheaply when the
    name fits one encoded word (the stdlib tries every prefix of the name to fold it)."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raw = b""
    if raw and len(name.splitlines()) == 1:
        qp_len = sum(_QP_HEADER_LENGTHS[octet] for octet in raw)
        b64_len = (len(raw) + 2) // 3 * 4
        if min(qp_len, b64_len) <= _ONE_WORD_PAYLOAD:
            if b64_len < qp_len:  # the stdlib's choice (SHORTEST: base64 only when shorter)
                return f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
            return f"=?utf-8?q?{raw.decode('latin-1').translate(_QP_HEADER_MAP)}?="
    return Header(name, "utf-8", header_name="To").encode(linesep="\r\n")


_QP_HEADER_SAFE = frozenset(b"-!*+/" + string.ascii_letters.encode() + string.digits.encode())
_QP_HEADER_MAP = {
    octet: "_" if octet == 0x20 else chr(octet) if octet in _QP_HEADER_SAFE else f"={octet:02X}"
    for octet in range(256)
}
"""RFC 2047 "Q" encoding of each octet, as ``email.quoprimime`` writes it in a header."""
_QP_HEADER_LENGTHS = tuple(len(_QP_HEADER_MAP[octet]) for octet in range(256))
_ONE_WORD_PAYLOAD = 78 - len("To: ") - len("=?utf-8?q??=")
"""The longest encoded text of a To name that the stdlib leaves as one encoded word."""


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
    return _hashed_message_id(_message_id_prefix(list_id, date), email, domain)


def _message_id_prefix(list_id: str, date: dt.date) -> str:
    return f"{list_id}\n{date.isoformat()}\n"


def _hashed_message_id(prefix: str, email: str, domain: str) -> str:
    digest = hashlib.sha256((prefix + email.lower()).encode()).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def list_unsubscribe(url: str, mailto: str) -> str:
    """The List-Unsubscribe value: the https one-click URL, then a mailto fallback."""
    return f"<{check_url(url)}>, <mailto:{mailto}?subject=unsubscribe>"


# --------------------------------------------------------------------------- encodings


def _qp_char(ch: str) -> str:
    code = ord(ch)
    if ch == "=" or code > 126 or (code < 32 and ch != "\t"):
        return "".join(f"={b:02X}" for b in ch.encode("utf-8"))
    return ch


def qp_encode(text: str, *, start_column: int = 0) -> tuple[str, int]:
    """Quoted-printable of ``text`` (``\\n`` = hard line break), and the final column.

    Lines are wrapped with soft breaks at 76 columns counting from ``start_column``;
    whitespace before a hard break is encoded so no transport can strip it. Runs of
    characters that need no encoding are copied in slices, not one by one.
    """
    out: list[str] = []
    col = start_column
    limit = QP_LINE_CHARS - 1
    lines = text.split("\n")
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        end = len(line)
        for match in _QP_RUN.finditer(line):
            run = match.group()
            if match.lastindex == 1:  # literal run; its trailing blank at the line end is encoded
                tail = ""
                if match.end() == end and run[-1] in " \t":
                    run, tail = run[:-1], run[-1]
                pos = 0
                while len(run) - pos > limit - col:
                    take = max(0, limit - col)
                    out.append(run[pos : pos + take])
                    out.append("=\r\n")
                    pos += take
                    col = 0
                out.append(run[pos:])
                col += len(run) - pos
                if not tail:
                    continue
                enc = f"={ord(tail):02X}"
            else:
                enc = _qp_char(run)
            if col + len(enc) > limit:
                out.append("=\r\n")
                col = 0
            out.append(enc)
            col += len(enc)
        if not last:
            out.append("\r\n")
            col = 0
    return "".join(out), col


_QP_BODY_MAP = {
    octet: chr(octet) if octet == 9 or (32 <= octet <= 126 and octet != 61) else f"={octet:02X}"
    for octet in range(256)
}
"""Quoted-printable of each octet of a body line (``qp_encode``'s rule: tab and printable
ASCII but ``=`` as they are)."""

_QP_RUN = re.compile(r"([\t\x20-\x3c\x3e-\x7e]+)|(.)", re.DOTALL)
"""A run of characters quoted-printable leaves as they are, or one character to encode."""


def _qp_slot_value(value: str) -> bytes:
    """A slot value as its own QP lines, ending with a soft break (empty for "")."""
    if not value:
        return b""
    if value.isascii() and value.isprintable():  # the common case (names, URLs): no loop per char
        return _qp_quiet(value)
    one_line = value.replace("\r", " ").replace("\n", " ")
    try:
        short = one_line.encode("utf-8").decode("latin-1").translate(_QP_BODY_MAP)
    except UnicodeEncodeError:  # a lone surrogate: qp_encode says so
        short = ""
    if short[-1:] in (" ", "\t"):  # a blank at the end of a line is encoded, as qp_encode does
        short = short[:-1] + f"={ord(short[-1]):02X}"
    if 0 < len(short) <= QP_LINE_CHARS - 1:  # one line (a short name): what qp_encode gives
        return short.encode("ascii") + b"=\r\n"
    encoded, _ = qp_encode(one_line)
    # trailing whitespace right before the soft break is fine: the '=' follows it.
    return encoded.encode("ascii") + b"=\r\n"


def _qp_quiet(value: str) -> bytes:
    """:func:`_qp_slot_value` of a non-empty printable ASCII value (a quiet one)."""
    if len(value) < QP_LINE_CHARS and "=" not in value:  # one line as it is (a name)
        return value.encode("ascii") + b"=\r\n"
    return _qp_printable(value.replace("=", "=3D")).encode("ascii") + b"=\r\n"


def _qp_printable(encoded: str) -> str:
    """Wrap already-escaped printable ASCII at 75 columns with soft breaks, never inside =XX."""
    limit = QP_LINE_CHARS - 1
    if len(encoded) <= limit:
        return encoded
    end = limit
    cut = encoded.rfind("=", end - 2, end)
    if cut != -1:
        end = cut
    if len(encoded) - end <= limit:  # two lines (a link): the loop below, once
        return encoded[:end] + "=\r\n" + encoded[end:]
    lines: list[str] = []
    start = 0
    while len(encoded) - start > limit:
        end = start + limit
        cut = encoded.rfind("=", end - 2, end)
        if cut != -1:
            end = cut
        lines.append(encoded[start:end])
        start = end
    lines.append(encoded[start:])
    return "=\r\n".join(lines)


def html_value(value: str) -> bytes:
    """A slot value as it goes into the HTML part: escaped, ASCII, one line."""
    one_line = value.replace("\r", " ").replace("\n", " ")
    return html_lib.escape(one_line, quote=True).encode("ascii", "xmlcharrefreplace")


# --------------------------------------------------------------------------- template

Normalizer = Callable[[Mapping[str, str]], tuple[dict[str, str], dict[str, str]]]


def plain_normalize(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Slot values for a renderer that substitutes them as given (one line each)."""
    text = {k: v.replace("\r", " ").replace("\n", " ") for k, v in values.items()}
    return text, {k: html_value(v).decode("ascii") for k, v in text.items()}


def render_normalizer(rendered: RenderedLike, tokens: Mapping[str, str]) -> Normalizer | None:
    """A normaliser that asks the renderer itself how it cleans and escapes slot values.

    ``newsletter.render.RenderedDigest`` exposes that as ``normalize`` (the very function
    its ``fill`` uses). For another renderer that is a dataclass, its ``fill`` is run on a
    copy holding only the placeholders, one per line, which gives the same values.
    """
    direct = getattr(rendered, "normalize", None)
    if callable(direct):

        def normalize_direct(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
            try:
                normalized: tuple[dict[str, str], dict[str, str]] = direct(values)
            except ValueError as exc:
                raise InvalidRecipient(str(exc)) from None
            return normalized

        return normalize_direct
    if not dataclasses.is_dataclass(rendered) or isinstance(rendered, type):
        return None
    skeleton = "\n".join(tokens[slot] for slot in SLOTS)
    try:
        tiny = dataclasses.replace(rendered, html=skeleton, text=skeleton)
    except TypeError:
        return None

    def normalize(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        try:
            html, text = tiny.fill(values)
        except ValueError as exc:
            raise InvalidRecipient(str(exc)) from None
        return dict(zip(SLOTS, text.split("\n"), strict=True)), dict(
            zip(SLOTS, html.split("\n"), strict=True)
        )

    return normalize


_Segment = bytes | tuple[Literal["html", "text", "header"], str]

_PIECES: tuple[tuple[str, str], ...] = (
    ("header", "To"),
    ("header", "Message-ID"),
    ("header", "List-Unsubscribe"),
    *(("text", slot) for slot in SLOTS),
    *(("html", slot) for slot in SLOTS),
)
"""Every kind of hole, in the order :meth:`MessageTemplate.fill` makes their bytes."""
assert SLOTS == ("name", "email", "unsubscribe_url", "preferences_url")  # fill spells them out


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber as the message sees them: the address, the name, the slot values."""

    email: str
    name: str
    values: Mapping[str, str]
    """Slot values as they go into the text part (normalised like the renderer's fill)."""
    html_values: Mapping[str, str]
    """Slot values as they go into the HTML part: escaped, ASCII."""
    message_id: str
    prefilled: tuple[MessageTemplate, tuple[bytes, ...]] | None = field(
        default=None, compare=False, repr=False
    )
    """The bytes of every hole, made by this template's :meth:`MessageTemplate.recipient`
    when the renderer takes the values as they are (fill then only joins)."""


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """DKIM signing with dkimpy (``delivery.dkim_key`` and friends)."""

    private_key: bytes
    selector: str
    domain: str
    headers: tuple[str, ...] = DKIM_HEADERS

    @classmethod
    def from_files(cls, key_path: str, *, selector: str, domain: str) -> DkimSigner:
        try:
            key = Path(key_path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"delivery.dkim_key: cannot read {key_path}: {exc.strerror}"
            ) from None
        return cls(private_key=key, selector=selector, domain=domain)

    def sign(self, message: bytes) -> bytes:
        """The message with a ``DKIM-Signature`` header in front."""
        import dkim

        signature: bytes = dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.encode("ascii") for h in self.headers],
        )
        return signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + message


@dataclass(frozen=True)
class MessageTemplate:
    """One variant's message with holes for the per-subscriber parts.

    ``fill(recipient)`` gives the RFC 5322 bytes (CRLF line ends) for one subscriber;
    ``parts(recipient)`` and ``parts_with_tags(tag)`` give the (html, text) bodies to
    HTTP APIs that take parts instead of MIME.
    """

    subject: str
    sender_name: str
    sender_address: str
    reply_to: str | None
    list_id: str
    date: dt.date
    date_header: str
    domain: str
    mailto: str
    segments: tuple[_Segment, ...]
    html_segments: tuple[str, ...]
    """html split on slots: literal, slot, literal, slot, ... literal (odd indexes are slots)."""
    text_segments: tuple[str, ...]
    html_line_checks: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """Each html line holding slots: (its bytes besides the values, the slots on it)."""
    always_slow: bool = False
    """The html has a line over 998 bytes anyway: every fill is built from scratch (QP)."""
    rendered: RenderedLike | None = None
    dkim: DkimSigner | None = None
    normalize: Normalizer | None = None
    """Turns raw slot values into (text values, html values) exactly as the renderer would."""
    quiet: Callable[[str, str, str, str], bool] | None = None
    """The renderer's word on four slot values (SLOTS order): True when ``normalize``
    would take them as they are, the same in both parts (then :meth:`recipient` makes
    the holes' bytes right away, skipping the general path)."""
    _fixed: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    """``segments`` with an empty bytes for every hole (copied and filled per message)."""
    _holes: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    """(index in ``_fixed``, index in the pieces :meth:`fill` makes) of every hole."""
    _text_slots: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    """For each of SLOTS, whether the text part holds it (encoded once per message)."""
    _line_fixed: int = field(init=False, repr=False, compare=False)
    """The most fixed bytes of an html line holding slots."""
    _message_id_prefix: str = field(init=False, repr=False, compare=False)
    """What :func:`message_id_for` hashes before the address."""
    _line_slots: int = field(init=False, repr=False, compare=False)
    """The most slots on one html line: no line can be longer than
    ``_line_fixed + _line_slots * (longest html value)``."""
    _unsubscribe_tail: bytes = field(init=False, repr=False, compare=False)
    """The List-Unsubscribe header after the URL (the mailto fallback, the line end)."""

    @property
    def from_header(self) -> str:
        return format_mailbox(self.sender_name, self.sender_address)

    def recipient(self, email: str, name: str, values: Mapping[str, str]) -> Recipient:
        """A Recipient with its stable Message-ID; InvalidRecipient for an unusable address
        or slot value (a link that is not a plain URL, a value the renderer refuses)."""
        check_address(email)
        if self.quiet is not None and type(values) is dict and values.keys() == _SLOT_KEYS:
            quiet = self._quiet_recipient(email, name, values)
            if quiet is not None:
                return quiet
        normalize = self.normalize or plain_normalize
        if type(values) is not dict or values.keys() != _SLOT_KEYS:
            values = {slot: values.get(slot, "") for slot in SLOTS}
        text_values, html_values = normalize(values)
        check_url(text_values.get("unsubscribe_url", "") or "https://invalid")
        if html_values is not text_values and html_values.keys() != _SLOT_KEYS:
            html_values = {slot: html_values[slot] for slot in SLOTS}
        return Recipient(email, clean_text(name), text_values, html_values, self._message_id(email))

    def _message_id(self, email: str) -> str:
        """:func:`message_id_for` this template's list and day, its prefix made once."""
        return _hashed_message_id(self._message_id_prefix, email, self.domain)

    def _quiet_recipient(self, email: str, name: str, values: dict[str, str]) -> Recipient | None:
        """The Recipient of a checked ``email`` when the renderer takes the slot values as
        they are (see ``quiet``), its holes' bytes made now (what :meth:`fill` would make
        of them); None otherwise, and for the general path to decide.

        The values are then printable ASCII with nothing to escape, so each is encoded
        once for both parts, and the unsubscribe link is a plain URL (no header check).
        """
        name_value, email_value = values["name"], values["email"]
        unsubscribe, preferences = values["unsubscribe_url"], values["preferences_url"]
        assert self.quiet is not None
        if self.always_slow or not self.quiet(name_value, email_value, unsubscribe, preferences):
            return None
        name_html = name_value.encode("ascii")
        email_html = email_value.encode("ascii")
        unsubscribe_html = unsubscribe.encode("ascii")
        preferences_html = preferences.encode("ascii")
        longest = max(len(name_html), len(email_html), len(unsubscribe_html), len(preferences_html))
        if self._line_fixed + self._line_slots * longest > MAX_LINE_BYTES:
            return None  # fill checks each line
        message_id = self._message_id(email)
        if len(name) <= MAX_NAME_CHARS and _QUIET_NAME_RE.fullmatch(name):  # clean as it is
            to_header = f"To: {name} <{email}>\r\n".encode("ascii")
        else:
            name = clean_text(name)
            to_header = _to_header(name, email)
        text = self._text_slots
        pieces = (  # in the order of _PIECES, as fill makes them
            to_header,
            f"Message-ID: {message_id}\r\n".encode("ascii"),
            b"List-Unsubscribe: <" + unsubscribe_html + self._unsubscribe_tail,
            _qp_quiet(name_value) if text[0] else b"",
            _qp_quiet(email_value) if text[1] else b"",
            _qp_quiet(unsubscribe) if text[2] else b"",
            _qp_quiet(preferences) if text[3] else b"",
            name_html,
            email_html,
            unsubscribe_html,
            preferences_html,
        )
        same = dict(values)  # one dict for both parts, as the renderer's normaliser gives
        return Recipient(email, name, same, same, message_id, (self, pieces))

    def headers(self, recipient: Recipient) -> dict[str, str]:
        """The per-list and per-subscriber headers an HTTP API should add."""
        out = {
            "Message-ID": recipient.message_id,
            "List-Id": clean_text(self.list_id),
            "List-Unsubscribe": list_unsubscribe(
                recipient.values.get("unsubscribe_url", ""), self.mailto
            ),
            "List-Unsubscribe-Post": ONE_CLICK,
        }
        return out

    def _header_bytes(self, name: str, recipient: Recipient) -> bytes:
        if name == "To":
            return _to_header(recipient.name, recipient.email)
        if name == "Message-ID":
            return f"Message-ID: {recipient.message_id}".encode("ascii") + CRLF
        return self._list_unsubscribe(recipient.values.get("unsubscribe_url", ""))

    def _list_unsubscribe(self, url: str) -> bytes:
        return b"List-Unsubscribe: <" + check_url(url).encode("ascii") + self._unsubscribe_tail

    def __post_init__(self) -> None:
        # The segments as a list to copy per fill, holes left empty, and where the holes are.
        fixed: list[bytes] = []
        holes: list[tuple[int, int]] = []
        for index, seg in enumerate(self.segments):
            if isinstance(seg, bytes):
                fixed.append(seg)
            else:
                fixed.append(b"")
                holes.append((index, _PIECES.index(seg)))
        text_slots = tuple(("text", slot) in self.segments for slot in SLOTS)
        object.__setattr__(self, "_fixed", tuple(fixed))
        object.__setattr__(self, "_holes", tuple(holes))
        object.__setattr__(self, "_text_slots", text_slots)
        object.__setattr__(self, "_message_id_prefix", _message_id_prefix(self.list_id, self.date))
        tail = f">,\r\n <mailto:{self.mailto}?subject=unsubscribe>\r\n".encode("ascii")
        object.__setattr__(self, "_unsubscribe_tail", tail)
        checks = self.html_line_checks
        object.__setattr__(self, "_line_fixed", max((fixed for fixed, _ in checks), default=0))
        object.__setattr__(self, "_line_slots", max((len(slots) for _, slots in checks), default=0))

    def fill(self, recipient: Recipient) -> bytes:
        """The complete message for one subscriber (signed when DKIM is configured)."""
        prefilled = recipient.prefilled
        if prefilled is not None and prefilled[0] is self:
            out = list(self._fixed)
            made = prefilled[1]
            for index, piece in self._holes:
                out[index] = made[piece]
            raw = b"".join(out)
            return self.dkim.sign(raw) if self.dkim else raw
        html = recipient.html_values
        name_html = html["name"].encode("ascii")
        email_html = html["email"].encode("ascii")
        unsubscribe_html = html["unsubscribe_url"].encode("ascii")
        preferences_html = html["preferences_url"].encode("ascii")
        if self.always_slow:
            return self._slow_fill(recipient)
        longest = max(len(name_html), len(email_html), len(unsubscribe_html), len(preferences_html))
        if self._line_fixed + self._line_slots * longest > MAX_LINE_BYTES:  # check each line
            html_bytes = dict(
                zip(SLOTS, (name_html, email_html, unsubscribe_html, preferences_html), strict=True)
            )
            for fixed, slots in self.html_line_checks:
                if fixed + sum(len(html_bytes[slot]) for slot in slots) > MAX_LINE_BYTES:
                    return self._slow_fill(recipient)
        values = recipient.values
        text = self._text_slots
        pieces = (  # in the order of _PIECES: the headers, the text values, the html values
            _to_header(recipient.name, recipient.email),
            f"Message-ID: {recipient.message_id}\r\n".encode("ascii"),
            self._list_unsubscribe(values.get("unsubscribe_url", "")),
            _qp_slot_value(values.get("name", "")) if text[0] else b"",
            _qp_slot_value(values.get("email", "")) if text[1] else b"",
            _qp_slot_value(values.get("unsubscribe_url", "")) if text[2] else b"",
            _qp_slot_value(values.get("preferences_url", "")) if text[3] else b"",
            name_html,
            email_html,
            unsubscribe_html,
            preferences_html,
        )
        out = list(self._fixed)
        for index, piece in self._holes:
            out[index] = pieces[piece]
        raw = b"".join(out)
        return self.dkim.sign(raw) if self.dkim else raw

    def _slow_fill(self, recipient: Recipient) -> bytes:
        if self.rendered is None:  # pragma: no cover - templates always keep it
            raise InvalidRecipient("message line too long and no renderer to rebuild it")
        html, text = self.rendered.fill(recipient.values)
        raw = _scratch_bytes(self, recipient, html, text)
        return self.dkim.sign(raw) if self.dkim else raw

    def parts(self, recipient: Recipient) -> tuple[str, str]:
        """(html, text) filled for one subscriber, as strings."""
        return self.parts_with_tags(
            lambda kind, slot: (
                recipient.html_values[slot] if kind == "html" else recipient.values[slot]
            )
        )

    def parts_with_tags(self, tag: Callable[[str, str], str]) -> tuple[str, str]:
        """(html, text) with each slot replaced by ``tag(kind, slot)`` (kind: html/text).

        For APIs that substitute per recipient themselves (SendGrid substitutions,
        Mailgun recipient variables).
        """
        html = "".join(
            seg if i % 2 == 0 else tag("html", seg) for i, seg in enumerate(self.html_segments)
        )
        text = "".join(
            seg if i % 2 == 0 else tag("text", seg) for i, seg in enumerate(self.text_segments)
        )
        return html, text


def _placeholders() -> dict[str, str]:
    nonce = secrets.token_hex(6)
    return {slot: f"zzslot{nonce}n{i}zz" for i, slot in enumerate(SLOTS)}


def _split(text: str, placeholders: Mapping[str, str]) -> tuple[str, ...]:
    by_token = {token: slot for slot, token in placeholders.items()}
    pattern = re.compile("|".join(re.escape(t) for t in by_token))
    parts: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        parts.append(text[pos : match.start()])
        parts.append(by_token[match.group(0)])
        pos = match.end()
    parts.append(text[pos:])
    return tuple(parts)


def _sender_parts(sender: SenderSettings) -> tuple[str, str, str]:
    name, address = split_mailbox(sender.from_)
    domain = address.rsplit("@", 1)[1]
    return name, address, domain


def build_template(
    rendered: RenderedLike,
    *,
    sender: SenderSettings,
    date: dt.date,
    now: dt.datetime,
    dkim: DkimSigner | None = None,
) -> MessageTemplate:
    """Build one variant's message once; see the module doc for the encodings."""
    name, address, domain = _sender_parts(sender)
    reply_to = None
    mailto = address
    if sender.reply_to:
        reply_name, mailto = split_mailbox(sender.reply_to)
        reply_to = format_mailbox(reply_name, mailto)
    placeholder = getattr(rendered, "placeholder", None)
    normalize: Normalizer | None = None
    quiet: object = None
    if callable(placeholder):  # newsletter.render.RenderedDigest: split on its own tokens
        placeholders = {slot: str(placeholder(slot)) for slot in SLOTS}
        html, text = rendered.html, rendered.text
        normalize = render_normalizer(rendered, placeholders)
        quiet = getattr(rendered, "quiet", None)
    else:
        placeholders = _placeholders()
        html, text = rendered.fill(placeholders)
    html_segments = _split(html.replace("\r\n", "\n"), placeholders)
    text_segments = _split(text.replace("\r\n", "\n"), placeholders)

    boundary = "==nl-" + secrets.token_hex(12) + "=="
    date_header = format_datetime(now if now.tzinfo else now.replace(tzinfo=dt.UTC))
    segments: list[_Segment] = [
        b"From: " + format_mailbox(name, address).encode("ascii") + CRLF,
        ("header", "To"),
    ]
    fixed = b""
    if reply_to:
        fixed += b"Reply-To: " + reply_to.encode("ascii") + CRLF
    fixed += encode_header("Subject", rendered.subject)
    fixed += f"Date: {date_header}".encode("ascii") + CRLF
    segments.append(fixed)
    segments.append(("header", "Message-ID"))
    segments.append(encode_header("List-Id", sender.list_id))
    segments.append(("header", "List-Unsubscribe"))
    segments.append(
        f"List-Unsubscribe-Post: {ONE_CLICK}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n".encode("ascii")
    )
    # text part: quoted-printable, every slot on its own soft-broken lines
    col = 0
    for i, seg in enumerate(text_segments):
        if i % 2:
            if col:
                segments.append(b"=\r\n")
            segments.append(("text", seg))  # the value ends with a soft break
            col = 0
        else:
            encoded, col = qp_encode(seg)
            segments.append(encoded.encode("ascii"))
    segments.append(
        f"\r\n--{boundary}\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n".encode("ascii")
    )
    # html part: 7bit, slots escaped to ASCII; note each slot's line length
    html_ascii = [
        seg if i % 2 else seg.encode("ascii", "xmlcharrefreplace").decode("ascii")
        for i, seg in enumerate(html_segments)
    ]
    whole = "".join(seg if i % 2 == 0 else "" for i, seg in enumerate(html_ascii))
    if boundary in whole or boundary in text:
        return build_template(rendered, sender=sender, date=date, now=now, dkim=dkim)
    for i, seg in enumerate(html_ascii):
        if i % 2:
            segments.append(("html", seg))
        else:
            segments.append(seg.replace("\n", "\r\n").encode("ascii"))
    line_checks, too_long = _html_line_checks(html_ascii)
    segments.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return MessageTemplate(
        subject=clean_text(rendered.subject),
        sender_name=name,
        sender_address=address,
        reply_to=reply_to,
        list_id=sender.list_id,
        date=date,
        date_header=date_header,
        domain=domain,
        mailto=mailto,
        segments=_merge(segments),
        html_segments=tuple(html_ascii),
        text_segments=text_segments,
        html_line_checks=line_checks,
        always_slow=too_long,
        rendered=rendered,
        dkim=dkim,
        normalize=normalize,
        quiet=quiet if callable(quiet) and normalize is not None else None,
    )


def _html_line_checks(
    segments: Sequence[str],
) -> tuple[tuple[tuple[int, tuple[str, ...]], ...], bool]:
    """Per html line with slots: (fixed bytes, slots); and whether a fixed line is too long."""
    checks: list[tuple[int, tuple[str, ...]]] = []
    too_long = False
    fixed = 0
    slots: list[str] = []

    def end_line() -> None:
        nonlocal fixed, slots, too_long
        if slots:
            checks.append((fixed, tuple(slots)))
        elif fixed > MAX_LINE_BYTES:
            too_long = True
        fixed, slots = 0, []

    for i, seg in enumerate(segments):
        if i % 2:
            slots.append(seg)
            continue
        lines = seg.split("\n")
        for k, line in enumerate(lines):
            fixed += len(line)
            if k < len(lines) - 1:
                end_line()
    end_line()
    return tuple(checks), too_long


def _merge(segments: Sequence[_Segment]) -> tuple[_Segment, ...]:
    out: list[_Segment] = []
    for seg in segments:
        if isinstance(seg, bytes) and out and isinstance(out[-1], bytes):
            out[-1] = out[-1] + seg
        else:
            out.append(seg)
    return tuple(out)


# --------------------------------------------------------------------------- from scratch


def _scratch_bytes(template: MessageTemplate, recipient: Recipient, html: str, text: str) -> bytes:
    # The headers are encoded exactly as on the fast path: the stdlib would decode
    # look-alike encoded words on assignment and leave a long unbroken name unfolded
    # (a header line over 998 bytes). The stdlib builds the MIME body only.
    head = b"From: " + template.from_header.encode("ascii") + CRLF
    head += template._header_bytes("To", recipient)
    if template.reply_to:
        head += b"Reply-To: " + template.reply_to.encode("ascii") + CRLF
    head += encode_header("Subject", template.subject)
    head += f"Date: {template.date_header}".encode("ascii") + CRLF
    head += template._header_bytes("Message-ID", recipient)
    head += encode_header("List-Id", template.list_id)
    head += template._header_bytes("List-Unsubscribe", recipient)
    head += f"List-Unsubscribe-Post: {ONE_CLICK}".encode("ascii") + CRLF
    msg = EmailMessage(policy=SMTP)
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return head + msg.as_bytes()


def build_message(
    rendered: RenderedLike,
    recipient: Recipient,
    *,
    sender: SenderSettings,
    date: dt.date,
    now: dt.datetime,
) -> bytes:
    """The same message built from scratch with the stdlib (slow; the reference)."""
    template = build_template(rendered, sender=sender, date=date, now=now)
    html, text = rendered.fill(recipient.values)
    return _scratch_bytes(template, recipient, html, text)


PREVIEW_VALUES: Mapping[str, str] = {
    "name": "",
    "unsubscribe_url": "https://example.invalid/unsubscribe",
    "preferences_url": "https://example.invalid/preferences",
}
"""Slot values of a preview message (besides ``email``)."""


def build_preview_eml(
    rendered: RenderedLike,
    *,
    sender: SenderSettings,
    to: str,
    date: dt.date,
    values: Mapping[str, str] | None = None,
) -> bytes:
    """One message as an ``.eml`` file for the preview command (dated 08:00 UTC that day)."""
    now = dt.datetime.combine(date, dt.time(8, 0), tzinfo=dt.UTC)
    template = build_template(rendered, sender=sender, date=date, now=now)
    slot_values = {**PREVIEW_VALUES, "email": to, **(values or {})}
    recipient = template.recipient(to, slot_values.get("name", ""), slot_values)
    return template.fill(recipient)
