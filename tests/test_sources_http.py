"""The shared HTTP path: User-Agent, retries, backoff, Retry-After, error mapping."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from newsletter import __version__
from newsletter.config import SourceSettings
from newsletter.errors import SourceUnavailable
from newsletter.sources.http import (
    USER_AGENT,
    RetryPolicy,
    check_redirect,
    get,
    make_client,
    parse_retry_after,
)
from newsletter.web import StartResponse, WSGIApp
from tests.doubles import serving

URL = "https://api.example.test/data"
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests say which proxy, if any: none from the machine running them."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _policy(sleeps: list[float], *, retries: int = 4) -> RetryPolicy:
    return RetryPolicy(retries=retries, sleep=sleeps.append, now=lambda: NOW, rng=random.Random(1))


def _client(responses: list[httpx.Response | Exception], seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_user_agent_names_the_project_and_version() -> None:
    assert USER_AGENT.startswith(f"newsletter/{__version__} (+https://")
    client = make_client(SourceSettings(timeout=7.5))
    assert client.headers["User-Agent"] == USER_AGENT
    assert client.timeout.read == 7.5
    client.close()


def test_every_request_carries_the_user_agent_even_on_a_foreign_client() -> None:
    seen: list[httpx.Request] = []
    with _client([httpx.Response(200, text="ok")], seen) as client:
        get(client, URL, params={"a": 1}, timeout=3.0, policy=_policy([]))
    assert seen[0].headers["User-Agent"] == USER_AGENT
    assert seen[0].url.params["a"] == "1"
    assert seen[0].extensions["timeout"]["read"] == 3.0


def test_429_with_retry_after_seconds_waits_that_long_then_succeeds() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, text="fine"),
    ]
    with _client(responses, seen) as client:
        response = get(client, URL, timeout=1.0, policy=_policy(sleeps))
    assert response.text == "fine"
    assert sleeps == [7.0]
    assert len(seen) == 2


def test_retry_after_as_http_date_is_measured_from_the_injected_clock() -> None:
    when = email.utils.format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True)
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [
        httpx.Response(503, headers={"Retry-After": when}),
        httpx.Response(200, text="fine"),
    ]
    with _client(responses, []) as client:
        get(client, URL, timeout=1.0, policy=_policy(sleeps))
    assert sleeps == [30.0]


def test_5xx_until_retries_run_out_raises_source_unavailable() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [httpx.Response(500) for _ in range(4)]
    with _client(responses, seen) as client, pytest.raises(SourceUnavailable) as info:
        get(client, URL, timeout=1.0, policy=_policy(sleeps, retries=3))
    assert len(seen) == 4
    assert len(sleeps) == 3
    # exponential backoff with full jitter: each wait is within base * 2**n
    assert all(0.0 <= s <= 2.0**n for n, s in enumerate(sleeps))
    message = str(info.value)
    assert URL in message and "HTTP 500" in message and "4 attempts" in message
    assert "\n" not in message


def test_timeouts_are_retried_then_reported_in_one_line() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [httpx.ReadTimeout("timed out") for _ in range(3)]
    with _client(responses, seen) as client, pytest.raises(SourceUnavailable) as info:
        get(client, URL, timeout=1.0, policy=_policy(sleeps, retries=2))
    assert len(seen) == 3 and len(sleeps) == 2
    assert "ReadTimeout" in str(info.value) and URL in str(info.value)


def test_a_transport_error_then_success_returns_the_response() -> None:
    responses: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"),
        httpx.Response(200, text="ok"),
    ]
    sleeps: list[float] = []
    with _client(responses, []) as client:
        assert get(client, URL, timeout=1.0, policy=_policy(sleeps)).text == "ok"
    assert len(sleeps) == 1


def test_other_4xx_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    with _client([httpx.Response(404)], seen) as client, pytest.raises(SourceUnavailable) as info:
        get(client, URL, timeout=1.0, policy=_policy(sleeps))
    assert len(seen) == 1 and sleeps == []
    assert "HTTP 404" in str(info.value)


def test_an_unreasonable_retry_after_gives_up_at_once() -> None:
    sleeps: list[float] = []
    responses: list[httpx.Response | Exception] = [
        httpx.Response(429, headers={"Retry-After": "86400"})
    ]
    with _client(responses, []) as client, pytest.raises(SourceUnavailable) as info:
        get(client, URL, timeout=1.0, policy=_policy(sleeps))
    assert sleeps == []
    assert "86400" in str(info.value)


def test_zero_retries_means_one_attempt() -> None:
    seen: list[httpx.Request] = []
    responses: list[httpx.Response | Exception] = [httpx.Response(502)]
    with _client(responses, seen) as client, pytest.raises(SourceUnavailable):
        get(client, URL, timeout=1.0, policy=_policy([], retries=0))
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Wed, 25 Nov 2026 08:01:00 GMT", 60.0),
        ("Wed, 25 Nov 2026 07:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-3", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, rng=random.Random(0))
    for retry in range(8):
        assert 0.0 <= policy.backoff(retry) <= min(10.0, 2.0**retry)


def _resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    return lambda host, port: table.get(host, [])


REDIRECTS = [
    # (configured source, redirecting URL, target, resolves to, refusal or None)
    ("http://127.0.0.1:8/a", "http://127.0.0.1:8/a", "http://127.0.0.1:8/b", [], None),
    ("https://src.example/a", "https://src.example/a", "https://src.example/b", [], None),
    ("https://src.example/a", "https://src.example/a", "https://cdn.example/x", ["1.1.1.1"], None),
    ("https://src.example/a", "https://src.example/a", "http://src.example/b", [], "https to http"),
    (
        "https://src.example/a",
        "https://src.example/a",
        "http://cdn.example/x",
        ["1.1.1.1"],
        "https to http",
    ),
    (
        "http://src.example/a",
        "http://src.example/a",
        "http://cdn.example/x",
        ["1.1.1.1"],
        "another host over plain http",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://intra.example/x",
        ["10.0.0.5"],
        "private or local address (10.0.0.5)",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://mixed.example/x",
        ["1.1.1.1", "127.0.0.1"],
        "private or local address (127.0.0.1)",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://169.254.169.254/meta",
        ["169.254.169.254"],
        "private or local address",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://[::1]/x",
        ["::1"],
        "private or local address (::1)",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://mapped.example/x",
        ["::ffff:192.168.1.1"],
        "private or local address",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "https://gone.example/x",
        [],
        "does not resolve",
    ),
    (
        "https://src.example/a",
        "https://src.example/a",
        "ftp://src.example/x",
        [],
        "not an http(s) URL",
    ),
    (
        "http://127.0.0.1:8/a",
        "http://127.0.0.1:8/a",
        "http://127.0.0.1:9/b",
        [],
        "another host over plain http",
    ),
]


@pytest.mark.parametrize(("origin", "current", "target", "addresses", "refusal"), REDIRECTS)
def test_redirect_policy(
    origin: str, current: str, target: str, addresses: list[str], refusal: str | None
) -> None:
    host = httpx.URL(target).host
    why = check_redirect(
        httpx.URL(origin),
        httpx.URL(current),
        httpx.URL(target),
        resolver=_resolver({host: addresses}),
    )
    if refusal is None:
        assert why is None
    else:
        assert why is not None and refusal in why


def test_a_redirect_to_a_public_https_host_is_followed_and_the_body_bounded() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "src.example":
            return httpx.Response(302, headers={"Location": "https://1.1.1.1/day.json"})
        return httpx.Response(200, content=b"x" * 2000)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    response = get(client, "https://src.example/day.json", timeout=5, policy=_policy([]))
    assert response.content == b"x" * 2000
    assert seen == ["https://src.example/day.json", "https://1.1.1.1/day.json"]
    with pytest.raises(SourceUnavailable, match=r"larger than source.max_bytes \(1000 bytes"):
        get(client, "https://src.example/day.json", timeout=5, policy=_policy([]), max_bytes=1000)


PUBLIC = "93.184.216.34"
"""A public address the hostile resolver gives first (never connected to in the tests)."""


def _redirecting_to(location: str) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("302 Found", [("Location", location), ("Content-Length", "0")])
        return []

    return app


def _hostile_getaddrinfo(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]
) -> list[str]:
    """socket.getaddrinfo answering ``host`` with the next address in its list (the last
    one from then on); other hosts as usual. Returns the hosts looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        queue = answers[host]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _fetch_through_redirect(target: str) -> str:
    """The one-line refusal from fetching a loopback source that redirects to ``target``."""
    with (
        serving(_redirecting_to(target)) as base,
        make_client(SourceSettings(timeout=5)) as client,
        pytest.raises(SourceUnavailable) as info,
    ):
        get(client, f"{base}/day.json", timeout=5, policy=_policy([]))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{base}/day.json: redirect to {target} refused: ")
    return message


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_connected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as victim:
        target = f"https://rebind.example:{victim.getsockname()[1]}/day.json"
        asked = _hostile_getaddrinfo(monkeypatch, {"rebind.example": [PUBLIC, "127.0.0.1"]})
        message = _fetch_through_redirect(target)
        assert message.endswith("rebind.example is a private or local address (127.0.0.1)")
        assert asked == ["rebind.example", "rebind.example"]  # the check, then the connection
        victim.settimeout(0.2)
        with pytest.raises(TimeoutError):  # no connection is waiting: never contacted
            victim.accept()


def test_the_address_actually_connected_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as victim:
        target = f"https://rebind.example:{victim.getsockname()[1]}/day.json"
        # the name is public every time, but connecting to that address reaches loopback
        _hostile_getaddrinfo(monkeypatch, {"rebind.example": [PUBLIC], PUBLIC: ["127.0.0.1"]})
        message = _fetch_through_redirect(target)
        assert message.endswith(
            "rebind.example connected to a private or local address (127.0.0.1)"
        )
        victim.settimeout(2)
        connection, _peer = victim.accept()
        with connection:
            assert connection.recv(1024) == b""  # closed before a byte (no TLS hello) was sent


def test_the_configured_source_may_be_local_and_redirect_to_itself() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/old":
            start_response("301 Moved", [("Location", "/new"), ("Content-Length", "0")])
            return []
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"[]"]

    with serving(app) as base, make_client(SourceSettings(timeout=5)) as client:
        response = get(client, f"{base}/old", timeout=5, policy=_policy([]))
    assert (response.status_code, response.content) == (200, b"[]")
    assert str(response.request.url) == f"{base}/new"


def test_a_proxy_from_the_environment_carries_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator behind a proxy: ``HTTP_PROXY`` is honoured, the proxy gets the request
    in absolute form (RFC 9112 3.2.2) and its answer is the source's."""
    asked: list[str] = []

    def proxy(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        asked.append(environ["REQUEST_URI"] if "REQUEST_URI" in environ else environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"[]"]

    with serving(proxy) as base:
        monkeypatch.setenv("HTTP_PROXY", base)
        with make_client(SourceSettings(timeout=5)) as client:
            response = get(client, "http://papers.invalid/day.json", timeout=5, policy=_policy([]))
    assert (response.status_code, response.content) == (200, b"[]")
    assert len(asked) == 1 and asked[0].endswith("papers.invalid/day.json")
