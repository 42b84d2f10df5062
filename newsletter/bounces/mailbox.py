"""Where reports are read from: a ``.eml`` file, a folder of them, an mbox, a Maildir, or
an IMAP mailbox. Each yields ``(label, raw bytes)``; a message larger than
:data:`~newsletter.bounces.parse.MAX_REPORT_BYTES` yields ``(label, None)`` unread, so the
caller can say it was skipped. Nothing here deletes or moves a message: importing twice
changes nothing (the events have stable ids), so a bounce mailbox can be re-read safely.

IMAP (``imaplib`` over TLS, STARTTLS or, on loopback only, plain): the folder is opened
read-write, unseen messages are fetched with ``BODY.PEEK[]`` and flagged ``\\Seen`` only
after the caller has taken them (the callback returns), so a crash loses nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

from newsletter.bounces.parse import MAX_REPORT_BYTES
from newsletter.config import BounceMailboxSettings
from newsletter.errors import ConfigError, MailboxError

Message = tuple[str, bytes | None]

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def read_path(path: str | Path) -> Iterator[Message]:
    """The messages of a .eml file, a folder of .eml files, an mbox file or a Maildir."""
    where = Path(path)
    if where.is_dir():
        if (where / "cur").is_dir() or (where / "new").is_dir():
            yield from _read_box(mailbox.Maildir(where, factory=None, create=False), where)
            return
        for item in sorted(where.iterdir()):
            if item.is_file() and item.suffix.lower() == ".eml":
                yield str(item), _read_file(item)
        return
    if not where.is_file():
        raise MailboxError(f"{where}: no such file or folder")
    with where.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        yield from _read_box(mailbox.mbox(where, factory=None, create=False), where)
    else:
        yield str(where), _read_file(where)


def _read_file(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise MailboxError(f"{path}: {exc.strerror or exc}") from None
    return None if len(data) > MAX_REPORT_BYTES else data


def _read_box(box: mailbox.Mailbox[mailbox.Message], where: Path) -> Iterator[Message]:
    try:
        keys = list(box.iterkeys())
        for key in keys:
            with box.get_file(key) as handle:
                data = handle.read(MAX_REPORT_BYTES + 1)
            yield f"{where}#{key}", None if len(data) > MAX_REPORT_BYTES else data
    except (OSError, mailbox.Error) as exc:
        raise MailboxError(f"{where}: {exc}") from None
    finally:
        box.close()


def read_imap(
    settings: BounceMailboxSettings,
    take: Callable[[str, bytes | None], None],
    *,
    ssl_context: ssl.SSLContext | None = None,
    all_messages: bool = False,
) -> int:
    """Hand each unseen message (every message with ``all_messages``) of the folder to
    ``take``, then flag it seen; the number of messages handed over."""
    if not settings.host or not settings.username:
        raise ConfigError("bounces.host and bounces.username name the bounce mailbox")
    if not settings.password:
        raise ConfigError("bounces.password is not set: set NEWSLETTER_BOUNCES__PASSWORD")
    context = ssl_context or ssl.create_default_context()
    port = settings.port or (993 if settings.security == "tls" else 143)
    where = f"imap://{settings.host}:{port}/{settings.folder}"
    try:
        conn: imaplib.IMAP4
        if settings.security == "tls":
            conn = imaplib.IMAP4_SSL(
                settings.host, port, ssl_context=context, timeout=settings.timeout
            )
        else:
            conn = imaplib.IMAP4(settings.host, port, timeout=settings.timeout)
            if settings.security == "starttls":
                conn.starttls(ssl_context=context)
            elif settings.host not in ("127.0.0.1", "::1", "localhost"):
                raise ConfigError("bounces.security: none is for a server on this machine only")
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"{where}: cannot connect: {exc}") from None
    try:
        try:
            conn.login(settings.username, settings.password)
        except imaplib.IMAP4.error:
            raise MailboxError(f"{where}: login refused for {settings.username}") from None
        status, _ = conn.select(_quote(settings.folder))
        if status != "OK":
            raise MailboxError(f"{where}: no such folder")
        status, found = conn.uid("SEARCH", "ALL" if all_messages else "UNSEEN")
        if status != "OK":
            raise MailboxError(f"{where}: SEARCH failed")
        uids = [uid.decode() for uid in (found[0] or b"").split()]
        for uid in uids:
            label = f"{where};UID={uid}"
            status, sized = conn.uid("FETCH", uid, "(RFC822.SIZE)")
            size_match = _SIZE.search(_flatten(sized)) if status == "OK" else None
            if size_match is None:
                raise MailboxError(f"{label}: FETCH failed")
            if int(size_match.group(1)) > MAX_REPORT_BYTES:
                take(label, None)
            else:
                status, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                body = _literal(fetched) if status == "OK" else None
                if body is None:
                    raise MailboxError(f"{label}: FETCH failed")
                take(label, body)
            conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        return len(uids)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"{where}: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flatten(items: list[object]) -> bytes:
    out = b""
    for item in items:
        if isinstance(item, tuple):
            out += b" ".join(part for part in item if isinstance(part, bytes))
        elif isinstance(item, bytes):
            out += item
    return out


def _literal(items: list[object]) -> bytes | None:
    for item in items:
        if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
            return item[1]
    return None
