"""The SMTP backend: smtplib over a small pool of persistent connections.

Each of ``delivery.connections`` worker threads owns one connection and sends many
messages over it (one MAIL/RCPT/DATA transaction per subscriber). A dropped
connection or a ``421`` is reconnected lazily for the next message. Replies map to
results like this:

=====================================  ==========================================
2xx after DATA                         ``sent`` (the server's reply kept as the id)
4xx on MAIL/RCPT/DATA, 421, a drop,    transient: retried by the base flow
a timeout, a refused connection,
552 at RCPT (RFC 5321 4.5.3.1.10)
FAIL_FAST_AFTER connects failed in a   the server is down for this run: everyone
row                                    left is a transient failure at once
5xx for the recipient or the data      ``rejected``: recorded, not retried
535 (or any 5xx) on AUTH               :class:`AuthError`: the run stops
=====================================  ==========================================

The password is passed to smtplib only; it never appears in an error or a log line: a
server that echoes it back (in a 535 reply, as base64 of ``AUTH PLAIN``...) is redacted
by the base class (:attr:`Backend.redact`, which knows the password).

With ``delivery.return_path`` (``bounces+{token}@example.org``) each message's envelope
sender (``MAIL FROM``, the Return-Path the receiver records) carries the VERP token of
its subscriber and day (:mod:`newsletter.bounces.verp`), so a late bounce maps back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import functools
import logging
import queue
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from newsletter.bounces import verp
from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import AuthError, ConfigError, DeliveryError
from newsletter.message import MessageTemplate, Recipient, split_mailbox
from newsletter.models import SendResult, SendStatus

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds for connecting and for each SMTP reply."""

DEFAULT_CONNECTIONS = 2
"""Parallel connections (worker threads)."""

FAIL_FAST_AFTER = 3
"""Consecutive failed connection attempts (refused, timed out, dropped before EHLO)
after which the run gives up on the server: the rest are recorded as transient
failures at once instead of each being retried with backoff."""

_DONE = object()


class SmtpBackend(Backend):
    """Delivers each message in its own SMTP transaction over pooled connections."""

    name = "smtp"
    batch_size = 200

    def __init__(
        self,
        *,
        host: str,
        port: int,
        envelope_from: str,
        security: Literal["starttls", "tls", "none"] = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connections: int = DEFAULT_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        pipelining: bool | None = None,
        options: BackendOptions | None = None,
        return_path: Callable[[str, dt.date], str] | None = None,
    ) -> None:
        super().__init__(options=options)
        self.return_path = return_path
        """(recipient, day) -> envelope sender (VERP); None: always ``envelope_from``."""
        if username and not password:
            raise DeliveryError(
                "delivery.username is set but no password: set NEWSLETTER_DELIVERY__PASSWORD"
            )
        self.redact = self.redact.adding(password)
        self.host = host
        self.port = port
        self.envelope_from = envelope_from
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.connections = max(1, connections)
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self.pipelining = pipelining
        """Pipeline MAIL/RCPT/DATA: None follows the server's EHLO, True/False forces it."""
        self._conns: list[smtplib.SMTP | None] = [None] * self.connections
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.connections, thread_name_prefix="smtp"
        )
        self._auth_error: AuthError | None = None
        self._auth_lock = threading.Lock()
        self.connects = 0
        """How many connections were opened (reconnects included)."""
        self.fail_fast_after = FAIL_FAST_AFTER
        self._connect_failures = 0
        self._connect_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, options: BackendOptions | None = None
    ) -> SmtpBackend:
        d = settings.delivery
        return cls(
            host=d.host,
            port=d.port,
            envelope_from=split_mailbox(settings.sender.from_)[1],
            security=d.security,
            username=d.username,
            password=d.password,
            timeout=d.timeout,
            connections=d.connections,
            options=options or BackendOptions.from_settings(settings),
            return_path=_verp(settings),
        )

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"SmtpBackend({where}, security={self.security}, user={self.username!r})"

    # -- connections -------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        if self._auth_error is not None:
            raise self._auth_error
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
                context=self._context(),
            )
        else:
            conn = smtplib.SMTP(
                self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
            )
        try:
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise DeliveryError(
                        f"SMTP server {self.host}:{self.port} does not offer STARTTLS "
                        "(set delivery.security to tls or none)"
                    )
                conn.starttls(context=self._context())
                conn.ehlo()
            if self.username:
                self._login(conn)
        except BaseException:
            _quietly_close(conn)
            raise
        self.connects += 1
        return conn

    def _connect_counted(self) -> smtplib.SMTP:
        """:meth:`_connect`, counting consecutive failures: after ``fail_fast_after`` of
        them the server is taken for down for the rest of the run (:meth:`mark_down`)."""
        try:
            conn = self._connect()
        except (AuthError, DeliveryError):
            raise
        except (smtplib.SMTPException, OSError) as exc:
            with self._connect_lock:
                self._connect_failures += 1
                failures = self._connect_failures
            if failures >= self.fail_fast_after:
                self.mark_down(
                    f"SMTP server {self.host}:{self.port} unreachable: {failures} connection "
                    f"attempts in a row failed (last: {type(exc).__name__}: {exc})"
                )
            raise
        with self._connect_lock:
            self._connect_failures = 0
        return conn

    def _login(self, conn: smtplib.SMTP) -> None:
        assert self.username is not None and self._password is not None
        try:
            conn.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = _reply_text(exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise smtplib.SMTPResponseException(exc.smtp_code, exc.smtp_error) from None
            error = AuthError(
                f"SMTP server {self.host}:{self.port} refused the login for user "
                f"{self.username!r}: {exc.smtp_code} {reply}"
            )
            with self._auth_lock:
                self._auth_error = error
            raise error from None
        except smtplib.SMTPNotSupportedError:
            raise AuthError(
                f"SMTP server {self.host}:{self.port} does not offer AUTH "
                "(unset delivery.username or use STARTTLS/TLS)"
            ) from None

    def _drop(self, slot: int) -> None:
        conn, self._conns[slot] = self._conns[slot], None
        if conn is not None:
            _quietly_close(conn)

    def close(self) -> None:
        for slot in range(len(self._conns)):
            conn = self._conns[slot]
            self._conns[slot] = None
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    _quietly_close(conn)
        self._pool.shutdown(wait=True)

    # -- sending -----------------------------------------------------------------

    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterator[SendResult]:
        todo: queue.SimpleQueue[Recipient] = queue.SimpleQueue()
        for recipient in batch:
            todo.put(recipient)
        out: queue.SimpleQueue[object] = queue.SimpleQueue()
        abort = threading.Event()

        def worker(slot: int) -> None:
            try:
                while not abort.is_set():
                    try:
                        recipient = todo.get_nowait()
                    except queue.Empty:
                        break
                    result = self._send_one(slot, template, recipient)
                    if result.status == SendStatus.SENT:
                        self.accepted(result)
                    out.put(result)
            except BaseException as exc:  # AuthError, DeliveryError: stop everyone
                abort.set()
                out.put(exc)
            finally:
                out.put(_DONE)

        workers = min(self.connections, len(batch))
        for slot in range(workers):
            self._pool.submit(worker, slot)
        done = 0
        error: BaseException | None = None
        while done < workers:
            item = out.get()
            if item is _DONE:
                done += 1
            elif isinstance(item, BaseException):
                error = error or item
            else:
                assert isinstance(item, SendResult)
                yield item
        if error is not None:
            raise error

    def _send_one(self, slot: int, template: MessageTemplate, recipient: Recipient) -> SendResult:
        email = recipient.email
        raw = self.fill(template, recipient)
        if isinstance(raw, SendResult):
            return raw
        if self.down is not None:
            return SendResult(
                email, SendStatus.FAILED, error=f"not attempted: {self.down}", transient=True
            )
        self.limiter.acquire()
        try:
            conn = self._conns[slot]
            if conn is None:
                conn = self._conns[slot] = self._connect_counted()
            sender = self.envelope_from
            if self.return_path is not None:
                sender = self.return_path(email, template.date)
            stage, code, reply = self._transaction(conn, email, raw, sender)
            if stage:
                return self._refused(
                    slot, conn, email, stage, code, reply, rset=stage != "end of DATA"
                )
        except (AuthError, DeliveryError):
            self._drop(slot)
            raise
        except smtplib.SMTPResponseException as exc:  # e.g. 4xx on AUTH, 421 on connect
            self._drop(slot)
            return _result(email, "connect", exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(slot)
            return SendResult(
                email,
                SendStatus.FAILED,
                error=f"connection to {self.host}:{self.port} failed: {type(exc).__name__}: {exc}",
                transient=True,
            )
        return SendResult(
            email,
            SendStatus.SENT,
            message_id=recipient.message_id,
            extra={"reply": _reply_text(reply)},
        )

    def _transaction(
        self, conn: smtplib.SMTP, email: str, raw: bytes, sender: str
    ) -> tuple[str, int, bytes]:
        """MAIL, RCPT, DATA for one message: (failed stage or "", last code, last reply).

        With PIPELINING (RFC 2920) the three commands go out in one write and the
        replies are read in order, saving two round trips per message.
        """
        pipelining = self.pipelining if self.pipelining is not None else conn.has_extn("pipelining")
        if pipelining:
            conn.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{email}>\r\nDATA\r\n".encode())
            replies: list[tuple[int, bytes]] = []
            for _ in range(3):
                code, reply = conn.getreply()
                replies.append((code, reply))
                if code == 421:
                    return ("MAIL FROM", "RCPT TO", "DATA")[len(replies) - 1], code, reply
            (mail_code, mail_reply), (rcpt_code, rcpt_reply), (data_code, data_reply) = replies
            failure: tuple[str, int, bytes] | None = None
            if mail_code != 250:
                failure = ("MAIL FROM", mail_code, mail_reply)
            elif rcpt_code not in (250, 251):
                failure = ("RCPT TO", rcpt_code, rcpt_reply)
            elif data_code != 354:
                failure = ("DATA", data_code, data_reply)
            if failure is not None:
                if data_code == 354:  # a server that took DATA anyway: end it empty
                    conn.send(b".\r\n")
                    conn.getreply()
                return failure
        else:
            code, reply = conn.mail(sender)
            if code != 250:
                return "MAIL FROM", code, reply
            code, reply = conn.rcpt(email)
            if code not in (250, 251):
                return "RCPT TO", code, reply
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                return "DATA", code, reply
        conn.send(dot_stuff(raw) + b".\r\n")
        code, reply = conn.getreply()
        return ("end of DATA" if code != 250 else ""), code, reply

    def _refused(
        self,
        slot: int,
        conn: smtplib.SMTP | None,
        email: str,
        stage: str,
        code: int,
        reply: bytes | str,
        *,
        rset: bool = True,
    ) -> SendResult:
        if code == 421 or code < 0 or conn is None or conn.sock is None:
            self._drop(slot)
        elif rset:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop(slot)
        return _result(email, stage, code, reply)


def dot_stuff(raw: bytes) -> bytes:
    """The message as DATA content: leading dots doubled, ending in CRLF (RFC 5321 4.5.2)."""
    if raw.startswith(b"."):
        raw = b"." + raw
    raw = raw.replace(b"\n.", b"\n..")  # a copy only when there is a dot to double
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def _result(email: str, stage: str, code: int, reply: bytes | str) -> SendResult:
    text = f"{stage}: {code} {_reply_text(reply)}"
    # RFC 5321 4.5.3.1.10: a 552 to RCPT ("too many recipients") is to be taken as
    # temporary, however its first digit reads.
    if 400 <= code < 500 or code < 0 or (stage == "RCPT TO" and code == 552):
        return SendResult(email, SendStatus.FAILED, error=text, transient=True)
    return SendResult(email, SendStatus.REJECTED, error=text)


def _reply_text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _verp(settings: Settings) -> Callable[[str, dt.date], str] | None:
    """The VERP envelope sender of ``delivery.return_path``, or None when unset."""
    template = settings.delivery.return_path
    if not template:
        return None
    verp.check_template(template)
    if not settings.secret_key:
        raise ConfigError(
            "delivery.return_path signs its tokens with secret_key: "
            "set the environment variable NEWSLETTER_SECRET_KEY"
        )
    secret = settings.secret_key.encode("utf-8")
    return functools.partial(verp.return_path, template, secret)
