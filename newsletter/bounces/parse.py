"""Read one delivery report: what happened to which address (pure, no state).

:func:`parse_report` takes the bytes of one email and gives a :class:`Report` per
address it reports a final failure or a complaint for, or ``[]`` for anything else
(auto-replies, out-of-office notes, delayed-delivery warnings, successful-delivery
notices, ordinary mail). Formats, tried in this order:

1. ARF complaints (RFC 5965): ``multipart/report; report-type=feedback-report``, read
   from the ``message/feedback-report`` part (``Feedback-Type: not-spam`` is no complaint).
2. DSNs (RFC 3464): every ``message/delivery-status`` part, one event per recipient
   block whose ``Action`` is ``failed``; ``delayed``, ``delivered``, ``relayed`` and
   ``expanded`` blocks are not events. Postfix, Gmail, Microsoft 365 / Exchange and
   modern Exim all send this shape, each with its own text around it.
3. Auto-replies are recognised (RFC 3834 ``Auto-Submitted: auto-replied`` from a person,
   ``X-Autoreply``, ``Precedence: auto_reply``, "Automatic reply"/"Out of Office"
   subjects) and give no event.
4. Other MTAs' own plain-text bounces (classic Exim with ``X-Failed-Recipients``, Yahoo,
   qmail, older Exchange, ...): the addresses come from flufl.bounce, the Mailman
   project's maintained detector set; its "temporary" results are warnings and give no
   event. The status code is then read from the text beside the address.

Kinds: ``hard`` (the address is gone: 5.x.x, "user unknown", "no such mailbox", and a
permanent failure without any code), ``soft`` (4.x.x, a full mailbox even when sent as
5.2.2, 5.7.x policy refusals, which say nothing about the address) and ``complaint``.

Hostile input is bounded: reports larger than :data:`MAX_REPORT_BYTES` are refused with
a :class:`ReportError` before parsing, text is scanned up to :data:`MAX_TEXT_CHARS` per
part, and a message the parsers choke on is a ReportError, never a crash.
"""

from __future__ import annotations

import datetime as dt
import email
import email.message
import email.policy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from flufl.bounce import all_failures

from newsletter.errors import ReportError

HARD = "hard"
"""The address does not exist (any more): suppressed at once."""
SOFT = "soft"
"""A temporary or policy failure: suppressed after several within a window."""
COMPLAINT = "complaint"
"""The reader reported the digest as spam: suppressed at once, for good."""
KINDS = (HARD, SOFT, COMPLAINT)

MAX_REPORT_BYTES = 4 * 1024 * 1024
"""Larger messages are not read as reports (a bounce with our digest attached is ~150 KB)."""

MAX_TEXT_CHARS = 64 * 1024
"""Characters of each text part scanned for addresses and status codes."""

MAX_DIAGNOSTIC_CHARS = 500
"""Diagnostic texts are kept to this many characters."""

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"(?<![\d.])([45])(\d\d)(?![\d.])")
_FULL = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (the )?(storage|quota)"
    r"|insufficient (system )?storage|mailbox size limit",
    re.IGNORECASE,
)
_GONE = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn'?t exist"
    r"|recipient not found|address rejected|invalid (recipient|mailbox|address)"
    r"|unknown (recipient|address)|mailbox unavailable|account (is )?disabled"
    r"|doesn'?t have an? .{0,40}account|not our customer|address not found",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response|antwort)"
    r"|autoreply|vacation|away from (my|the) (desk|office)|abwesenheit|r[ée]ponse automatique"
    r"|respuesta autom[aá]tica)",
    re.IGNORECASE,
)
_WARNING_SUBJECT = re.compile(
    r"^\s*(warning: message .{0,60} delayed|delayed mail|delivery (status notification )?"
    r"\(?delay(ed)?\)?|delivery delayed|message delayed)",
    re.IGNORECASE,
)
_WARNING_TEXT = re.compile(
    r"this is a warning only|has not yet been delivered|will (continue to )?be retried"
    r"|delivery attempts will continue|no action is required on your part",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_MESSAGE_ID_LINE = re.compile(r"^message-id:\s*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_RETURN_PATH_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "To")
"""Headers of a report that may carry the VERP address it was sent to, most direct first."""


@dataclass(frozen=True, slots=True)
class Report:
    """What one report says about one address."""

    email: str
    """The address that failed or complained ("" when the report hides it)."""
    kind: str
    """``hard``, ``soft`` or ``complaint``."""
    status: str | None
    """The enhanced status code (``5.1.1``) or SMTP code (``550``), when given."""
    diagnostic: str
    """The remote server's words (or the feedback type), one line."""
    format: str
    """``arf``, ``dsn``, ``text`` (an MTA's own shape) or a webhook provider's name."""
    event_id: str
    """Identifies this event: importing or receiving it again changes nothing."""
    message_id: str | None = None
    """The Message-ID of the message that bounced, when the report quotes it."""
    return_path: str | None = None
    """The VERP address the report was sent to (``bounces+TOKEN@…``), when seen."""
    at: dt.datetime | None = None
    """When it happened (the report's date), UTC."""


def parse_report(raw: bytes) -> list[Report]:
    """The events one email reports (see the module doc); [] for a non-report."""
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportError(f"message of {len(raw)} bytes is larger than {MAX_REPORT_BYTES}")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        return _parse(msg, raw)
    except (RecursionError, LookupError, ValueError, TypeError, AttributeError) as exc:
        raise ReportError(f"unreadable message: {type(exc).__name__}: {exc}") from None


def classify(status: str | None, text: str, *, permanent: bool = True) -> str:
    """``hard`` or ``soft`` for a failure with this status code and diagnostic text."""
    if _FULL.search(text):
        return SOFT
    if status:
        if status.startswith("4"):
            return SOFT
        if status.startswith("5."):
            return SOFT if status.startswith(("5.7.", "5.2.2")) else HARD
        if status.startswith("5"):
            return HARD
    if _GONE.search(text):
        return HARD
    return HARD if permanent else SOFT


def status_in(text: str) -> str | None:
    """The first enhanced status code in ``text``, else the first SMTP reply code."""
    found = _ENHANCED.search(text)
    if found and found.group(1) != "2":
        return found.group(0)
    basic = _BASIC.search(text)
    return basic.group(0) if basic else None


# --------------------------------------------------------------------------- internals


def _parse(msg: Message, raw: bytes) -> list[Report]:
    event_base = _event_base(msg, raw)
    at = _date(msg.get("Date"))
    original = _original(msg)
    message_id = _message_id(original, msg) or _quoted_id(msg)
    return_path = _return_path(msg, original)
    common: dict[str, Any] = {"message_id": message_id, "return_path": return_path, "at": at}

    feedback = list(_parts(msg, "message/feedback-report"))
    if feedback:
        return _arf(feedback, original, event_base, common)

    statuses = list(_parts(msg, "message/delivery-status"))
    if statuses:
        return _dsn(statuses, event_base, common)

    if _is_auto_reply(msg):
        return []

    text = _text(msg)
    if _is_warning(msg, text):
        return []
    if not parseaddr(str(msg.get("From", "")))[1]:
        return []  # every bounce names its sender; flufl's detectors assume one
    _temporary, permanent = all_failures(msg)
    if not permanent:
        return []
    reports: list[Report] = []
    for encoded in sorted(permanent):
        address = encoded.decode("ascii", "replace")
        diagnostic = _near(text, address)
        status = status_in(diagnostic)
        reports.append(
            _report(
                address,
                classify(status, diagnostic),
                status,
                diagnostic,
                "text",
                event_base,
                common,
            )
        )
    return reports


def _report(
    address: str,
    kind: str,
    status: str | None,
    diagnostic: str,
    fmt: str,
    event_base: str,
    common: dict[str, Any],
) -> Report:
    """One recipient's event of a report; its id is the report's, per address."""
    return Report(
        email=address,
        kind=kind,
        status=status,
        diagnostic=diagnostic,
        format=fmt,
        event_id=f"{event_base}:{address.lower()}",
        **common,
    )


def _arf(
    parts: list[Message], original: Message | None, event_base: str, common: dict[str, Any]
) -> list[Report]:
    reports: list[Report] = []
    for part in parts:
        fields = _fields(part)
        feedback_type = fields.get("feedback-type", "abuse").strip().lower() or "abuse"
        if feedback_type == "not-spam":
            continue
        addresses = [
            _address(value)
            for key in ("original-rcpt-to", "removal-recipient")
            for value in fields.get_all(key)
        ]
        if not any(addresses) and original is not None:
            addresses = [addr for _name, addr in getaddresses(original.get_all("To", []))]
        addresses = [a for a in dict.fromkeys(addresses) if a and "@" in a] or [""]
        agent = fields.get("user-agent", "").strip()
        diagnostic = f"feedback-type={feedback_type}" + (f" ({agent})" if agent else "")
        for address in addresses:
            reports.append(
                _report(
                    address,
                    COMPLAINT,
                    None,
                    diagnostic[:MAX_DIAGNOSTIC_CHARS],
                    "arf",
                    event_base,
                    common,
                )
            )
    return reports


def _dsn(parts: list[Message], event_base: str, common: dict[str, Any]) -> list[Report]:
    reports: list[Report] = []
    for block in _recipient_blocks(parts):
        action = block.get("action", "").strip().lower()
        if not action.startswith(("failed", "error")):
            continue  # delayed, delivered, relayed, expanded: not a bounce
        address = _address(block.get("original-recipient", "")) or _address(
            block.get("final-recipient", "")
        )
        if not address:
            continue
        diagnostic = _one_line(_typed_value(block.get("diagnostic-code", "")))
        status = _status_field(block.get("status", "")) or status_in(diagnostic)
        reports.append(
            _report(
                address, classify(status, diagnostic), status, diagnostic, "dsn", event_base, common
            )
        )
    return reports


class _Fields:
    """The ``name: value`` fields of a report part, whatever MIME shape carries them."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]


def _fields(part: Message) -> _Fields:
    """Fields of a message/feedback-report part (parsed as headers or as text)."""
    pairs: list[tuple[str, str]] = []
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    for block in blocks:
        if isinstance(block, Message):
            pairs.extend((str(k).lower(), _one_line(str(v))) for k, v in block.items())
    if not pairs:
        text = _decoded(part)
        header = email.message_from_string(text.lstrip("\r\n"), policy=email.policy.compat32)
        pairs = [(str(k).lower(), _one_line(str(v))) for k, v in header.items()]
    return _Fields(pairs)


def _recipient_blocks(parts: list[Message]) -> Iterator[Message]:
    """Per-recipient field blocks of message/delivery-status parts."""
    for part in parts:
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks = [b for b in payload if isinstance(b, Message)]
        else:  # a part sent with a transfer encoding: the parser left it as text
            text = _decoded(part).replace("\r\n", "\n")
            blocks = [
                email.message_from_string(chunk.strip("\n") + "\n", policy=email.policy.compat32)
                for chunk in re.split(r"\n[ \t]*\n", text)
                if chunk.strip()
            ]
        for block in blocks:
            if block.get("final-recipient") or block.get("original-recipient"):
                yield block


def _parts(msg: Message, content_type: str) -> Iterator[Message]:
    """Parts of this type, not looking inside attached messages (a bounce of a bounce)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        if part.get_content_type() == content_type:
            yield part
        elif part.is_multipart() and part.get_content_maintype() == "multipart":
            stack.extend(p for p in part.get_payload() if isinstance(p, Message))


def _original(msg: Message) -> Message | None:
    """The bounced message (or its headers) attached to the report."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            text = _decoded(part)
            return email.message_from_string(text.lstrip("\r\n"), policy=email.policy.compat32)
    return None


def _message_id(original: Message | None, msg: Message) -> str | None:
    if original is not None and original.get("Message-ID"):
        found = re.search(r"<[^<>\s]{1,250}>", str(original.get("Message-ID")))
        if found:
            return found.group(0)
    if original is None:  # a plain-text bounce quoting the headers in its body
        for part in _text_parts(msg):
            quoted = _MESSAGE_ID_LINE.search(_decoded(part)[:MAX_TEXT_CHARS])
            if quoted:
                return quoted.group(1)
    return None


def _quoted_id(msg: Message) -> str | None:
    """Our Message-ID as a report names it outside an attachment: Gmail's
    ``X-Original-Message-ID`` per-message field, or the report's ``In-Reply-To``."""
    for part in _parts(msg, "message/delivery-status"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            found = re.search(r"<[^<>\s]{1,250}>", str(payload[0].get("X-Original-Message-ID", "")))
            if found:
                return found.group(0)
    found = re.search(r"<[^<>\s]{1,250}>", str(msg.get("In-Reply-To", "")))
    return found.group(0) if found else None


def _return_path(msg: Message, original: Message | None) -> str | None:
    """A VERP-looking address (local part with a ``+``) the report was sent to."""
    candidates: list[str] = []
    if original is not None:
        candidates.extend(original.get_all("Return-Path", []))
    for name in _RETURN_PATH_HEADERS:
        candidates.extend(msg.get_all(name, []))
    for _name, address in getaddresses([str(c) for c in candidates]):
        if "+" in address.split("@", 1)[0]:
            return address
    return None


def _is_auto_reply(msg: Message) -> bool:
    if msg.get("X-Failed-Recipients"):
        return False
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    if _AUTO_SUBJECT.search(_one_line(str(msg.get("Subject", "")))):
        return True
    sender = parseaddr(str(msg.get("From", "")))[1]
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    return auto.startswith("auto-replied") and not _DAEMON.match(sender)


def _is_warning(msg: Message, text: str) -> bool:
    """A delayed-delivery warning in an MTA's own words (the DSN shape says ``delayed``)."""
    if msg.get("X-Failed-Recipients"):
        return False
    return bool(_WARNING_SUBJECT.search(_one_line(str(msg.get("Subject", ""))))) or bool(
        _WARNING_TEXT.search(text[:4096])
    )


def _event_base(msg: Message, raw: bytes) -> str:
    found = re.search(r"<[^<>\s]{1,250}>", str(msg.get("Message-ID", "")))
    if found:
        return found.group(0)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def _date(value: object) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _address(value: str) -> str:
    """The address of a ``rfc822; user@host`` field (or a bare/angle address)."""
    text = _typed_value(value).strip().strip("<>").strip()
    address = parseaddr(text)[1] or text
    return address if "@" in address and " " not in address else ""


def _typed_value(value: str) -> str:
    """The value of an RFC 3464 ``type; value`` field (``smtp; 550 …`` -> ``550 …``)."""
    text = str(value)
    head, sep, rest = text.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z0-9-]{1,20}\s*", head):
        return rest.strip()
    return text.strip()


def _status_field(value: str) -> str | None:
    found = _ENHANCED.search(str(value))
    return found.group(0) if found else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:MAX_DIAGNOSTIC_CHARS]


def _text_parts(msg: Message) -> Iterator[Message]:
    for part in msg.walk():
        if part.get_content_type() == "message/rfc822":
            continue
        if part.get_content_maintype() == "text" and part.get_content_subtype() != "html":
            yield part


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload[: MAX_TEXT_CHARS * 4].decode(charset, "replace")
        except LookupError:
            return payload[: MAX_TEXT_CHARS * 4].decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _text(msg: Message) -> str:
    return "\n".join(_decoded(part)[:MAX_TEXT_CHARS] for part in _text_parts(msg))


def _near(text: str, address: str) -> str:
    """The diagnostic text after the first mention of ``address`` (a few lines)."""
    at = text.lower().find(address.lower())
    if at < 0:
        return ""
    window = text[at + len(address) : at + len(address) + 400]
    lines = [line.strip(" \t:<>()") for line in window.splitlines()]
    kept: list[str] = []
    for line in lines:
        if not line and kept:
            break
        if line.startswith("---"):
            break
        if line:
            kept.append(line)
    return _one_line(" ".join(kept))
