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
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from newsletter.bounces import verp
from newsletter.config import Settings
from newsletter.delivery.base import Backend, BackendOptions
from newsletter.errors import AuthError, ConfigError, DeliveryError
from newsletter.headers import split_mailbox
from newsletter.message import MessageTemplate, Recipient
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
            # request and reply, one write each way: Nagle's algorithm would hold a
            # write's last partial segment until the server's delayed ACK (up to 40 ms)
            if conn.sock is not None:  # connected by the constructor
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        template = template.smtp_data  # each message filled as DATA content, dots doubled
        todo: queue.SimpleQueue[Recipient] = queue.SimpleQueue()
        for recipient in batch:
            todo.put(recipient)
        out = _Results()
        abort = threading.Event()

        def take() -> Recipient | None:
            if abort.is_set():
                return None
            try:
                return todo.get_nowait()
            except queue.Empty:
                return None

        def worker(slot: int) -> None:
            try:
                _Stream(self, slot, template, take, out.put).run()
            except BaseException as exc:  # AuthError, DeliveryError, LedgerError: stop everyone
                abort.set()
                out.put(exc, wake=True)
            finally:
                out.put(_DONE, wake=True)

        workers = min(self.connections, len(batch))
        for slot in range(workers):
            self._pool.submit(worker, slot)
        done = 0
        error: BaseException | None = None
        while done < workers:
            for item in out.take():
                if item is _DONE:
                    done += 1
                elif isinstance(item, BaseException):
                    error = error or item
                else:
                    assert isinstance(item, SendResult)
                    yield item
        if error is not None:
            raise error

    def _uses_pipelining(self, conn: smtplib.SMTP) -> bool:
        return self.pipelining if self.pipelining is not None else conn.has_extn("pipelining")

    def _envelope_sender(self, email: str, date: dt.date) -> str:
        return self.envelope_from if self.return_path is None else self.return_path(email, date)

    def _envelope(
        self, conn: smtplib.SMTP, email: str, date: dt.date, *, pipelining: bool
    ) -> tuple[str, int, bytes]:
        """MAIL, RCPT, DATA for one message: (failed stage or "", last code, last reply).

        With PIPELINING (RFC 2920) the three commands go out in one write and the
        replies are read in order.
        """
        if pipelining:
            conn.send(self._commands(email, date))
            return _envelope_replies(conn)
        code, reply = conn.mail(self._envelope_sender(email, date))
        if code != 250:
            return "MAIL FROM", code, reply
        code, reply = conn.rcpt(email)
        if code not in (250, 251):
            return "RCPT TO", code, reply
        conn.putcmd("data")
        code, reply = conn.getreply()
        if code != 354:
            return "DATA", code, reply
        return "", code, reply

    def _commands(self, email: str, date: dt.date) -> bytes:
        """A message's MAIL, RCPT and DATA as one pipelined write."""
        sender = self._envelope_sender(email, date)
        return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{email}>\r\nDATA\r\n".encode()

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


HANDOVER_RESULTS = 32
HANDOVER_SECONDS = 0.2
"""The run's thread takes the connections' results in groups: when HANDOVER_RESULTS are
waiting, or HANDOVER_SECONDS after it last looked, whichever comes first (so progress
stays current on a slow or rate-limited server), and at once for an error or the end of
a connection's share. Waking it for each result cost a context switch on each side per
message, on a host whose cores the server shares: ``bench_scale`` at 20,000 readers,
alternating, 1,990 / 1,861 / 2,087 msg/s woken for each result against 2,301 / 2,359 /
2,316 in groups of 32 (ratio to smtp-source 0.71-0.75 -> 0.81-0.83). The ledger does
not wait for this: each acceptance is recorded by its connection (:class:`_Stream`)."""


class _Results:
    """What a batch's connections report (results, an error, their end), for the run's
    thread; see HANDOVER_RESULTS."""

    __slots__ = ("_changed", "_items", "_wake")

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._items: list[object] = []
        self._wake = False

    def put(self, item: object, *, wake: bool = False) -> None:
        with self._changed:
            self._items.append(item)
            self._wake = self._wake or wake
            if self._ready():
                self._changed.notify()

    def take(self) -> list[object]:
        """What has come so far, once it is time to look (see HANDOVER_RESULTS)."""
        with self._changed:
            self._changed.wait_for(self._ready, HANDOVER_SECONDS)
            items, self._items, self._wake = self._items, [], False
        return items

    def _ready(self) -> bool:
        return self._wake or len(self._items) >= HANDOVER_RESULTS


Message = tuple[Recipient, bytes]
"""A recipient and its filled message."""


@dataclass(frozen=True, slots=True)
class _Stream:
    """One worker's share of a batch over its connection (``slot``), one round trip a
    message when the server pipelines.

    A message goes out in two writes: its content, then its final ``.`` with the next
    message's MAIL, RCPT and DATA (RFC 2920 3.1: message content may open a group); the
    replies are read in order: this message's end-of-data reply, then the next one's
    three. An accepted message is handed to :meth:`Backend.accepted` (the ledger records
    it) while the server reads the next message's content, and before that message's
    final ``.``: a message the server has not seen end is not delivered (a dropped
    connection discards it, RFC 5321 4.1.1.4), so at most one message per connection is
    ever accepted but not recorded: the crash window. Recording while the content
    travels keeps the ledger's commit off the connection's round trip (gain quoted in
    the README's Performance section).
    """

    backend: SmtpBackend
    slot: int
    template: MessageTemplate
    take: Callable[[], Recipient | None]
    """The next recipient of the batch, None when none is left (or the run aborts)."""
    emit: Callable[[SendResult], None]

    def run(self) -> None:
        message = self._next()
        opened = False
        accepted: SendResult | None = None
        try:
            while message is not None:
                message, opened, accepted = self._one(message, opened, accepted)
        except BaseException:
            self.backend._drop(self.slot)  # nothing more goes out before it is recorded
            raise
        self._record(accepted)

    def _record(self, accepted: SendResult | None) -> None:
        """Record an accepted message (the ledger first), then report it."""
        if accepted is not None:
            self.backend.accepted(accepted)
            self.emit(accepted)

    def _next(self) -> Message | None:
        """The next recipient with its message; those that cannot have one get their
        ``invalid`` result on the way."""
        while (recipient := self.take()) is not None:
            raw = self.backend.fill(self.template, recipient)
            if not isinstance(raw, SendResult):
                return recipient, raw
            self.emit(raw)
        return None

    def _one(
        self, message: Message, opened: bool, accepted: SendResult | None
    ) -> tuple[Message | None, bool, SendResult | None]:
        """Send ``message`` (its MAIL/RCPT/DATA already out when ``opened``), recording
        ``accepted`` (the message before it, accepted) on the way: the next message,
        whether its MAIL/RCPT/DATA went out with this one's end, and this one's result
        when the server accepted it (still to record)."""
        backend, slot = self.backend, self.slot
        recipient, raw = message
        email = recipient.email
        if backend.down is not None:  # never opened: the server went down at a connect
            self._record(accepted)
            self.emit(
                SendResult(
                    email, SendStatus.FAILED, error=f"not attempted: {backend.down}", transient=True
                )
            )
            return self._next(), False, None
        backend.limiter.acquire()
        following: Message | None = None
        try:
            conn = backend._conns[slot]
            if conn is None:
                conn = backend._conns[slot] = backend._connect_counted()
                opened = False
            pipelining = backend._uses_pipelining(conn)
            if opened:
                stage, code, reply = _envelope_replies(conn)
            else:
                stage, code, reply = backend._envelope(
                    conn, email, self.template.date, pipelining=pipelining
                )
            if stage:
                self._record(accepted)
                self.emit(backend._refused(slot, conn, email, stage, code, reply))
                return self._next(), False, None
            conn.send(raw)
            self._record(accepted)  # while the server reads this message's content
            accepted = None
            following = self._next()
            end = b".\r\n"
            if following is not None and pipelining:
                end += backend._commands(following[0].email, self.template.date)
            conn.send(end)
            code, reply = conn.getreply()
        except smtplib.SMTPResponseException as exc:  # e.g. 4xx on AUTH, 421 on connect
            backend._drop(slot)
            self._record(accepted)
            self.emit(_result(email, "connect", exc.smtp_code, exc.smtp_error))
            return following or self._next(), False, None
        except (smtplib.SMTPException, OSError) as exc:
            backend._drop(slot)
            self._record(accepted)
            self.emit(
                SendResult(
                    email,
                    SendStatus.FAILED,
                    error=f"connection to {backend.host}:{backend.port} failed: "
                    f"{type(exc).__name__}: {exc}",
                    transient=True,
                )
            )
            return following or self._next(), False, None
        opened = following is not None and pipelining
        if code != 250:
            self.emit(backend._refused(slot, conn, email, "end of DATA", code, reply, rset=False))
            return following, opened and backend._conns[slot] is conn, None
        result = SendResult(
            email,
            SendStatus.SENT,
            message_id=recipient.message_id,
            extra={"reply": _reply_text(reply)},
        )
        return following, opened, result


def _envelope_replies(conn: smtplib.SMTP) -> tuple[str, int, bytes]:
    """The replies to a pipelined MAIL, RCPT, DATA: (failed stage or "", code, reply)."""
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
    if failure is None:
        return "", data_code, data_reply
    if data_code == 354:  # a server that took DATA anyway: end it empty
        conn.send(b".\r\n")
        conn.getreply()
    return failure
