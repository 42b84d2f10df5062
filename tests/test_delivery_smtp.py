"""The SMTP backend against a real aiosmtpd server on loopback, with faults injected."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from newsletter.config import SenderSettings
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.smtp import SmtpBackend
from newsletter.errors import AuthError, LedgerError
from newsletter.ledger import Ledger
from newsletter.message import DkimSigner, build_template
from newsletter.models import SendResult, SendStatus, Subscriber
from newsletter.render import RenderedDigest
from newsletter.send import RunReport
from tests.doubles import (
    deliver,
    dkim_key,
    free_port,
    plain_smtp_backend,
    sample_rendered,
    smtp_server,
)

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = SenderSettings(
    from_="Daily Papers <digest@papers.example>", list_id="Daily <daily.papers.example>"
)
USER = "mailer"
PASSWORD = "s3cr3t-Pa55word!"


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Cert:
    cert_file: Path
    key_file: Path
    pem: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.pem)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Cert(folder / "cert.pem", folder / "key.pem", pem.decode())


# --------------------------------------------------------------------------- the server


@dataclass
class FaultyHandler:
    """Stores every accepted message; injects the faults the test asks for."""

    temp_fail_once: set[str] = field(default_factory=set)
    """RCPT answered 451 the first time."""
    reject: set[str] = field(default_factory=set)
    """RCPT answered 550 always."""
    drop_in_data_once: set[str] = field(default_factory=set)
    """Connection dropped during DATA (before the reply), first time only."""
    close_421_at_mail: int | None = None
    """The n-th MAIL command (1-based, over all connections) gets 421 and a closed connection."""
    received: list[tuple[str, bytes]] = field(default_factory=list)
    mails: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.mails += 1
            n = self.mails
        if self.close_421_at_mail is not None and n == self.close_421_at_mail:
            server.transport.close()
            return "421 4.3.2 Service shutting down"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such user here"
        if address in self.temp_fail_once:
            self.temp_fail_once.discard(address)
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt in self.drop_in_data_once:
            self.drop_in_data_once.discard(rcpt)
            server.transport.abort()
            return "250 OK (never seen: the connection is gone)"
        with self.lock:
            self.received.append((rcpt, bytes(envelope.content)))
        return "250 2.0.0 Ok: queued as X"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def server_factory(cert: Cert) -> Iterator[Any]:
    def start(handler: FaultyHandler, *, implicit_tls: bool = False, **smtp_kwargs: Any) -> int:
        kwargs: dict[str, Any] = {}
        if implicit_tls:
            kwargs["ssl_context"] = cert.server_context()
        else:
            kwargs.update(
                tls_context=cert.server_context(),
                require_starttls=True,
                authenticator=_authenticator,
                auth_required=True,
            )
        kwargs.update(smtp_kwargs)
        return servers.enter_context(smtp_server(handler, **kwargs))

    with ExitStack() as servers:
        yield start


def make_backend(
    port: int, cert: Cert, *, sleeps: list[float] | None = None, **kwargs: Any
) -> SmtpBackend:
    record = sleeps if sleeps is not None else []
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "envelope_from": "digest@papers.example",
        "security": "starttls",
        "username": USER,
        "password": PASSWORD,
        "timeout": 5.0,
        "connections": 2,
        "ssl_context": cert.client_context(),
        "options": BackendOptions(
            retry=RetryPolicy(max_attempts=4, deadline=60.0), sleep=record.append
        ),
    }
    defaults.update(kwargs)
    return SmtpBackend(**defaults)


@dataclass(frozen=True)
class Variant:
    rendered: RenderedDigest
    subscribers: tuple[Subscriber, ...]


def values_for(s: Subscriber) -> dict[str, str]:
    return {
        "name": s.name,
        "email": s.email,
        "unsubscribe_url": f"https://papers.example/unsubscribe?token={s.email}",
        "preferences_url": f"https://papers.example/preferences?token={s.email}",
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }


def _deliver(
    backend: SmtpBackend, people: Iterable[Subscriber]
) -> tuple[RunReport, list[SendResult]]:
    """One variant (``sample_rendered()``) to ``people`` on DATE, with no ledger."""
    return deliver(
        [Variant(sample_rendered(), tuple(people))],
        date=DATE,
        backend=backend,
        sender=SENDER,
        values_for=values_for,
        now=lambda: NOW,
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_faults_end_in_the_right_state_and_nobody_gets_two_copies(
    server_factory: Any, cert: Cert, tmp_path: Path, pipelining: bool
) -> None:
    people = [Subscriber(email=f"user{i}@example.org", name=f"User {i}") for i in range(16)]
    people += [
        Subscriber(email="temp@example.org", name="Temporary"),
        Subscriber(email="bad@example.org", name="Bad"),
        Subscriber(email="drop@example.org", name="Dropped"),
        Subscriber(email="josé@example.org", name="Invalid"),
    ]
    handler = FaultyHandler(
        temp_fail_once={"temp@example.org"},
        reject={"bad@example.org"},
        drop_in_data_once={"drop@example.org"},
        close_421_at_mail=7,
    )
    port = server_factory(handler)
    sleeps: list[float] = []
    variants = [
        Variant(sample_rendered(), tuple(people[:10])),
        Variant(sample_rendered("Second variant"), tuple(people[10:])),
    ]
    with (
        Ledger(f"sqlite:///{tmp_path / 'state.db'}") as ledger,
        make_backend(port, cert, sleeps=sleeps, pipelining=pipelining) as backend,
    ):
        report, results = deliver(
            variants,
            date=DATE,
            backend=backend,
            sender=SENDER,
            values_for=values_for,
            now=lambda: NOW,
            ledger=ledger,
        )
        rows = ledger.deliveries(DATE)

    copies = Counter(rcpt for rcpt, _ in handler.received)
    expected_sent = {p.email for p in people} - {"bad@example.org", "josé@example.org"}
    assert set(copies) == expected_sent
    assert all(n == 1 for n in copies.values()), copies
    by_email = {r.email: r for r in results}
    assert len(by_email) == len(people) == len(results)
    assert by_email["bad@example.org"].status == SendStatus.REJECTED
    assert "550" in (by_email["bad@example.org"].error or "")
    assert by_email["josé@example.org"].status == SendStatus.INVALID
    for address in ("temp@example.org", "drop@example.org"):
        assert by_email[address].status == SendStatus.SENT
        assert by_email[address].attempts == 2
    assert {e: r.status for e, r in rows.items() if r.status != "sent"} == {
        "bad@example.org": "failed",
        "josé@example.org": "failed",
    }
    assert rows["bad@example.org"].permanent
    # temp (451), drop (dropped in DATA) and whoever got the 421 needed a second attempt
    assert sum(1 for r in results if r.attempts == 2) == 3
    assert rows["temp@example.org"].attempts == 2
    assert report.failed_permanently == 2
    assert sleeps and all(s >= 1.0 for s in sleeps)  # backoff happened, through the injected sleep
    assert (
        backend.connects >= 3
    )  # the two first connections, plus reconnects after 421 and the drop
    # each message is what a mail client needs
    for rcpt, raw in handler.received:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"token={rcpt}" in msg["List-Unsubscribe"]
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_many_messages_per_connection(server_factory: Any, cert: Cert) -> None:
    handler = FaultyHandler()
    port = server_factory(handler)
    people = [Subscriber(email=f"u{i}@example.org") for i in range(30)]
    with make_backend(port, cert, connections=3) as backend:
        report, _results = _deliver(backend, people)
        assert backend.connects == 3
    assert report.delivered == 30
    assert sorted(r for r, _ in handler.received) == sorted(p.email for p in people)


def test_lines_that_start_with_a_dot_arrive_as_written(server_factory: Any, cert: Cert) -> None:
    """DATA content doubles a line's leading dot and the server takes it off again (RFC
    5321 4.5.2): the digest's own dotted lines and a reader's name that starts with a dot
    arrive as the message holds them, over both connections and pipelined or not."""
    handler = FaultyHandler()
    port = server_factory(handler)
    people = [Subscriber(email=f"u{i}@example.org", name=f".Reader{i}.") for i in range(6)]
    with make_backend(port, cert) as backend:
        report, _results = _deliver(backend, people)
    assert report.delivered == 6
    for rcpt, raw in handler.received:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["To"].addresses[0].display_name == f".Reader{rcpt[1]}."
        text, html = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
        assert "\n.leading dot\n" in text  # the text part's own line
        assert text.startswith(f"Hello .Reader{rcpt[1]}.,\n")
        assert f"<p>Hello .Reader{rcpt[1]}.,</p>" in html
        assert b"\r\n..leading" not in raw


def test_transient_failures_give_up_after_max_attempts(server_factory: Any, cert: Cert) -> None:
    class Always451(FaultyHandler):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            return "452 4.2.2 Mailbox full"

    port = server_factory(Always451())
    sleeps: list[float] = []
    with make_backend(port, cert, sleeps=sleeps, connections=1) as backend:
        report, results = _deliver(backend, [Subscriber(email="full@example.org")])
    (result,) = results
    assert result.status == SendStatus.FAILED and result.transient and result.attempts == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]
    assert report.failed_permanently == 0


def test_bad_password_stops_the_run_without_leaking_it(
    server_factory: Any, cert: Cert, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    handler = FaultyHandler()
    port = server_factory(handler)
    people = [Subscriber(email=f"u{i}@example.org") for i in range(5)]
    with (
        make_backend(port, cert, password="wrong-Pa55word-xyz") as backend,
        pytest.raises(AuthError) as info,
    ):
        _deliver(backend, people)
    assert "535" in str(info.value) and USER in str(info.value)
    assert "wrong-Pa55word-xyz" not in str(info.value)
    assert "wrong-Pa55word-xyz" not in repr(backend)
    assert handler.received == []
    assert "wrong-Pa55word-xyz" not in caplog.text


def test_auth_login_mechanism(server_factory: Any, cert: Cert) -> None:
    handler = FaultyHandler()
    port = server_factory(handler, auth_exclude_mechanism=["PLAIN"])
    with make_backend(port, cert, connections=1) as backend:
        report, _results = _deliver(backend, [Subscriber(email="a@example.org")])
    assert report.delivered == 1 and len(handler.received) == 1


def test_implicit_tls(server_factory: Any, cert: Cert) -> None:
    handler = FaultyHandler()
    port = server_factory(handler, implicit_tls=True)
    with make_backend(port, cert, security="tls", username=None, password=None) as backend:
        report, _results = _deliver(backend, [Subscriber(email="a@example.org")])
    assert report.delivered == 1 and len(handler.received) == 1


def test_connection_refused_is_transient(cert: Cert) -> None:
    port = free_port()  # nobody listens
    sleeps: list[float] = []
    with make_backend(port, cert, sleeps=sleeps, connections=1) as backend:
        _report, results = _deliver(backend, [Subscriber(email="a@example.org")])
    (result,) = results
    assert result.status == SendStatus.FAILED and result.transient
    assert "ConnectionRefusedError" in (result.error or "")
    assert PASSWORD not in (result.error or "")


def test_rate_limit_spaces_messages(server_factory: Any, cert: Cert) -> None:
    handler = FaultyHandler()
    port = server_factory(handler)
    waits: list[float] = []
    fake_now = [100.0]
    options = BackendOptions(rate=10.0, clock=lambda: fake_now[0], sleep=waits.append)
    with make_backend(port, cert, connections=1, options=options) as backend:
        _deliver(backend, [Subscriber(email=f"u{i}@example.org") for i in range(5)])
    # the clock stands still, so each message waits 0.1 s longer than the one before
    assert [round(w, 3) for w in waits] == [0.1, 0.2, 0.3, 0.4]


def test_a_dead_server_fails_the_run_fast(cert: Cert) -> None:
    port = free_port()  # nobody listens: every connect is refused
    sleeps: list[float] = []
    people = [Subscriber(email=f"u{i}@example.org") for i in range(8)]
    with make_backend(port, cert, sleeps=sleeps, connections=2) as backend:
        report, results = _deliver(backend, people)
        assert backend.down is not None and "3 connection attempts in a row" in backend.down
    assert sleeps == []  # no backoff: nobody is retried against a server that is down
    assert len(results) == 8
    assert all(r.status == SendStatus.FAILED and r.transient for r in results)
    assert report.failed_permanently == 0


def test_one_failed_connect_among_good_ones_does_not_stop_the_run(
    server_factory: Any, cert: Cert
) -> None:
    handler = FaultyHandler(close_421_at_mail=2)
    port = server_factory(handler)
    people = [Subscriber(email=f"u{i}@example.org") for i in range(6)]
    with make_backend(port, cert, connections=1) as backend:
        report, _results = _deliver(backend, people)
        assert backend.down is None
    assert report.delivered == 6


def test_552_at_rcpt_is_transient(server_factory: Any, cert: Cert) -> None:
    class TooMany(FaultyHandler):
        calls = 0

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            TooMany.calls += 1
            if TooMany.calls == 1:
                return "552 5.5.3 Too many recipients"  # RFC 5321 4.5.3.1.10: temporary
            envelope.rcpt_tos.append(address)
            return "250 OK"

    handler = TooMany()
    port = server_factory(handler)
    sleeps: list[float] = []
    with make_backend(port, cert, sleeps=sleeps, connections=1) as backend:
        _report, results = _deliver(backend, [Subscriber(email="a@example.org")])
    (result,) = results
    assert result.status == SendStatus.SENT and result.attempts == 2 and len(sleeps) == 1


class GroupWatchingServer:
    """A scripted SMTP server on a raw socket (one connection) that notes, for each
    message's final ".", whether the client's next MAIL/RCPT/DATA came with it: after the
    "." it waits up to ``patience`` seconds for more bytes before it replies 250 (a client
    that waits for the reply first sends nothing). ``reject_rcpt``: RCPT answered 550;
    ``slowness``: seconds it takes over each message before its 250."""

    def __init__(
        self,
        *,
        reject_rcpt: frozenset[str] = frozenset(),
        patience: float = 1.0,
        events: list[tuple[str, str]] | None = None,
        slowness: float = 0.0,
    ):
        self.reject_rcpt = reject_rcpt
        self.patience = patience
        self.slowness = slowness
        self.events = events if events is not None else []
        """("content", rcpt) when a message's first content line arrives, ("end", rcpt)
        when its final "." does, in the order the server reads them."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.grouped: list[bool] = []
        self.delivered: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buf = b""

            def line() -> bytes:
                nonlocal buf
                while b"\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        raise EOFError
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n")
                return head

            conn.sendall(b"220 watcher\r\n")
            rcpt = ""
            try:
                while True:
                    command = line()
                    verb = command[:4].upper()
                    if verb == b"EHLO":
                        conn.sendall(b"250-watcher\r\n250 PIPELINING\r\n")
                    elif verb == b"MAIL":
                        conn.sendall(b"250 ok\r\n")
                    elif verb == b"RCPT":
                        rcpt = command.decode().split("<", 1)[1].rstrip(">")
                        refused = rcpt in self.reject_rcpt
                        conn.sendall(b"550 no such user\r\n" if refused else b"250 ok\r\n")
                    elif verb == b"DATA":
                        if rcpt in self.reject_rcpt:
                            conn.sendall(b"554 no valid recipients\r\n")
                            continue
                        conn.sendall(b"354 go on\r\n")
                        if line() != b".":
                            self.events.append(("content", rcpt))
                            while line() != b".":
                                pass
                        self.events.append(("end", rcpt))
                        if not buf and select.select([conn], [], [], self.patience)[0]:
                            buf += conn.recv(65536)
                        self.grouped.append(buf.startswith(b"MAIL FROM:"))
                        self.delivered.append(rcpt)
                        time.sleep(self.slowness)
                        conn.sendall(b"250 queued\r\n")
                    elif verb == b"RSET":
                        conn.sendall(b"250 ok\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    else:
                        conn.sendall(b"502 what\r\n")
            except (EOFError, OSError):
                return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def test_each_end_of_data_travels_with_the_next_messages_envelope() -> None:
    """One round trip a message (RFC 2920 3.1): a message's final "." goes out in one write
    with the next message's MAIL, RCPT and DATA; a refused recipient in between (its
    envelope pipelined after a "." too) costs no message and no copy."""
    people = [Subscriber(email=f"u{i}@example.org") for i in range(6)]
    server = GroupWatchingServer(reject_rcpt=frozenset({"u2@example.org"}))
    backend = plain_smtp_backend(server.port)
    with backend:
        _, results = _deliver(backend, people)
    server.close()
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.SENT,
        SendStatus.REJECTED,
        SendStatus.SENT,
        SendStatus.SENT,
        SendStatus.SENT,
    ]
    assert server.delivered == [p.email for p in people if p.email != "u2@example.org"]
    # u1's "." carried u2's envelope (refused: RSET, then u3's envelope goes alone); the
    # last message has no next one
    assert server.grouped == [True, True, True, True, False]


def _recipients(n: int) -> tuple[Any, list[Any]]:
    template = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW)
    people = [Subscriber(email=f"u{i}@example.org") for i in range(n)]
    return template, [template.recipient(p.email, p.name, values_for(p)) for p in people]


def test_an_accepted_message_is_recorded_before_the_next_one_ends() -> None:
    """The ledger has each accepted message before the server sees the next message's
    final "." (so a crash leaves at most one accepted message unrecorded per connection),
    and it records it while that next message's content travels, not in the round trip."""
    events: list[tuple[str, str]] = []
    server = GroupWatchingServer(events=events)
    template, recipients = _recipients(5)

    overlapped: list[bool] = []

    def recorded(result: SendResult) -> None:
        if result.email == "u0@example.org":  # u1's content is on its way already
            give_up = time.monotonic() + 2.0
            while ("content", "u1@example.org") not in events and time.monotonic() < give_up:
                time.sleep(0.005)
            overlapped.append(("content", "u1@example.org") in events)
        events.append(("recorded", result.email))

    with plain_smtp_backend(server.port) as backend:
        results = backend.send(template, recipients, on_accepted=recorded)
    server.close()
    assert [r.status for r in results] == [SendStatus.SENT] * 5
    for i in range(4):
        this, following = f"u{i}@example.org", f"u{i + 1}@example.org"
        assert events.index(("end", this)) < events.index(("recorded", this))
        assert events.index(("recorded", this)) < events.index(("end", following))
    assert overlapped == [True]  # the next message's content went out before the record


def test_results_reach_the_run_while_a_slow_batch_goes_on() -> None:
    """The connections hand their results over in groups, but none waits longer than
    HANDOVER_SECONDS: from a server taking 0.3 s a message, the first result is reported
    (progress, the summary) while the batch goes on, before the last message has ended."""
    events: list[tuple[str, str]] = []
    server = GroupWatchingServer(events=events, slowness=0.3)
    template, recipients = _recipients(6)

    def reported(result: SendResult) -> None:
        events.append(("reported", result.email))

    with plain_smtp_backend(server.port) as backend:
        results = backend.send(template, recipients, on_result=reported)
    server.close()
    assert [r.status for r in results] == [SendStatus.SENT] * 6
    assert [e for kind, e in events if kind == "reported"] == [r.email for r in recipients]
    assert events.index(("reported", "u0@example.org")) < events.index(("end", "u5@example.org"))


def test_a_failing_ledger_leaves_one_message_accepted_and_unrecorded() -> None:
    """The ledger fails at the third acceptance: the run stops with the fourth message's
    content out but never its final ".", so the server delivered three messages, two of
    them recorded: the crash window is one message."""
    server = GroupWatchingServer()
    template, recipients = _recipients(6)
    recorded: list[str] = []

    def record(result: SendResult) -> None:
        if len(recorded) == 2:
            raise LedgerError("state database is gone")
        recorded.append(result.email)

    with plain_smtp_backend(server.port) as backend, pytest.raises(LedgerError):
        backend.send(template, recipients, on_accepted=record)
    server.close()
    assert recorded == ["u0@example.org", "u1@example.org"]
    assert server.delivered == ["u0@example.org", "u1@example.org", "u2@example.org"]


def test_a_dkim_signed_message_arrives_verifiable() -> None:
    """The DATA form keeps the signature of the message itself: what the server stores
    (its dots taken off again) verifies, a dotted name and the digest's dotted line too."""
    private, public = dkim_key()
    signer = DkimSigner(private_key=private, selector="s1", domain="papers.example")
    template = build_template(sample_rendered(), sender=SENDER, date=DATE, now=NOW, dkim=signer)
    people = [Subscriber(email=f"u{i}@example.org", name=f".Dot {i}") for i in range(3)]
    recipients = [template.recipient(p.email, p.name, values_for(p)) for p in people]
    handler = FaultyHandler()
    with smtp_server(handler) as port, plain_smtp_backend(port) as backend:
        results = backend.send(template, recipients)
    assert [r.status for r in results] == [SendStatus.SENT] * 3

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.papers.example."
        return b"v=DKIM1; k=rsa; p=" + public

    for _rcpt, raw in handler.received:
        assert b"\r\n.leading dot" in raw
        assert dkim.verify(raw, dnsfunc=dnsfunc)
        assert not dkim.verify(raw.replace(b".leading dot", b"..leading dot"), dnsfunc=dnsfunc)
