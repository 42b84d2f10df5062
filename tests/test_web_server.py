"""The production server under the web app, attacked over real sockets on loopback.

Each test is bounded: a fixed number of connections, a timeout on every socket, and
the server shut down at the end whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from werkzeug.routing import Rule

from newsletter.prefs import PrefsStore
from newsletter.tokens import UNSUBSCRIBE, make_token
from newsletter.web import SERVER_MAX_BODY_BYTES, WebApp, _Request, _Response, raw_body
from tests.doubles import serving

SECRET = b"server-test-secret-0123456789abcdef"


@pytest.fixture
def app(tmp_path: Path) -> WebApp:
    return WebApp(store=PrefsStore(f"sqlite:///{tmp_path}/state.db"), secret=SECRET)


@pytest.fixture
def base(app: WebApp) -> Iterator[str]:
    with serving(app) as url:
        yield url


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server answers (a server
    that answers and closes before reading all of a huge request resets the rest)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # the server may answer and close before it has all
        with contextlib.suppress(OSError):  # ENOTCONN when it has closed already
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def test_500_half_open_connections_leave_a_normal_request_answering_within_a_second(
    base: str,
) -> None:
    port = _port(base)
    with ExitStack() as stack:
        for i in range(500):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(f"GET /unsubscribe?token=x{i} HTTP/1.1\r\nHost: a\r\n".encode())
        started = time.monotonic()
        response = httpx.get(f"{base}/", timeout=5)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 1.0, f"GET / took {elapsed:.2f} s behind 500 half-open connections"


UNSUBSCRIBE_COUNT = 1000


async def _post_all(port: int, paths: list[str]) -> list[bytes]:
    """Open one connection per path at once, then POST a one-click unsubscribe on each."""
    body = b"List-Unsubscribe=One-Click"

    async def post(path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    return await asyncio.wait_for(asyncio.gather(*(post(p) for p in paths)), timeout=120)


def test_1000_concurrent_unsubscribes_lose_none_and_reset_none(app: WebApp, base: str) -> None:
    addresses = [f"reader{i}@example.org" for i in range(UNSUBSCRIBE_COUNT)]
    paths = [f"/unsubscribe?token={make_token(SECRET, a, UNSUBSCRIBE)}" for a in addresses]
    answers = asyncio.run(_post_all(_port(base), paths))  # a reset raises ConnectionError
    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers]
    assert statuses == [b"HTTP/1.1 200 OK"] * UNSUBSCRIBE_COUNT
    assert app.store.suppressed_count() == UNSUBSCRIBE_COUNT
    assert {s.email for s in app.store.suppressions()} == set(addresses)


MALFORMED = [
    pytest.param(b"GET /?token=X HTTP/1.1 extra\r\nHost: a\r\n\r\n", id="extra-word"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", id="two-spaces"),
    pytest.param(b"get / HTTP/1.1\r\nHost: a\r\n\r\n", id="lowercase-method"),
    pytest.param(b"GET / HTTP/1.1\x00\r\nHost: a\r\n\r\n", id="nul-byte"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", id="tls-hello"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 20_000 + b"\r\n\r\n", id="huge-head"),
    pytest.param(b"GET / HTTP/1.1\r\n Folded: header\r\n\r\n", id="folded-first-header"),
]


@pytest.mark.parametrize("request_bytes", MALFORMED)
def test_malformed_requests_get_a_400_never_a_traceback(
    base: str, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = _raw(_port(base), request_bytes)
    status, _, rest = answer.partition(b"\r\n")
    assert status.split(b" ")[1] in (b"400", b"431"), answer[:200]
    head = rest.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\nserver:" not in b"\n" + head
    assert b"traceback" not in answer.lower()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert httpx.get(f"{base}/", timeout=5).status_code == 200  # and the server serves on


def test_no_server_banner_on_any_answer(base: str) -> None:
    for response in (
        httpx.get(f"{base}/", timeout=5),
        httpx.get(f"{base}/nothing-here", timeout=5),
        httpx.post(f"{base}/unsubscribe", content=b"x" * 100_000, timeout=5),
    ):
        assert "server" not in response.headers, response.headers
        assert "waitress" not in response.text.lower()
        assert "python" not in response.text.lower()


class EchoLength(WebApp):
    """The web app with one more route, the way a webhook is added: a Rule in routes()
    whose handler reads its own body."""

    def routes(self) -> list[Rule]:
        return [*super().routes(), Rule("/echo/<name>", methods=["POST"], endpoint=self._echo)]

    @raw_body(SERVER_MAX_BODY_BYTES)
    def _echo(self, request: _Request, name: str) -> _Response:
        body = request.http.get_data()
        return _Response("200 OK", f"{name}:{len(body)}".encode(), [])


def test_a_route_can_take_its_own_larger_body_while_forms_stay_small(tmp_path: Path) -> None:
    app = EchoLength(store=PrefsStore(f"sqlite:///{tmp_path}/state.db"), secret=SECRET)
    big = b'{"events": "' + b"x" * 200_000 + b'"}'
    with serving(app) as url:
        answer = httpx.post(f"{url}/echo/sendgrid", content=big, timeout=5)
        assert (answer.status_code, answer.text) == (200, f"sendgrid:{len(big)}")
        form = httpx.post(f"{url}/unsubscribe", content=big, timeout=5)
        assert form.status_code == 413
        over = httpx.post(f"{url}/echo/x", content=b"x" * (SERVER_MAX_BODY_BYTES + 1), timeout=5)
        assert over.status_code == 413
