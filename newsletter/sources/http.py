"""The one HTTP path every network source goes through: client, User-Agent, retries.

``get()`` sends a GET and retries, with exponential backoff and full jitter, on 429,
5xx and transport errors (timeouts, refused connections), at most ``settings.retries``
times. A ``Retry-After`` header (delta-seconds or an HTTP-date) replaces the computed
delay. Any other 4xx, or a failure after the last retry, raises
:class:`~newsletter.errors.SourceUnavailable` with one line naming the URL.

The clock, the sleep and the random jitter are injected through :class:`RetryPolicy`,
so tests never sleep.

Every answer is bounded: its whole body must arrive within the timeout, and it may hold
at most ``source.max_bytes`` bytes *after* decompression (read chunk by chunk, so a gzip
bomb stops at the limit instead of filling memory). Redirects are followed by hand, at
most :data:`MAX_REDIRECTS`, and only to the configured source's own host, or to another
host over https whose every address is public; never from https to http, never to a
private, loopback or link-local address that was not the configured source. A refused
redirect or an oversized answer is a one-line SourceUnavailable, not retried.

The rule on addresses holds for the connection itself, not only for the name looked up
before it (DNS rebinding): :func:`make_client`'s transport connects to any host other
than the configured source's only through :class:`VettedBackend`, which resolves the
host once, refuses unless every address is public, connects to those very addresses
and checks the peer of the socket it got. (Proxies from the environment are therefore
not used for sources.)
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import logging
import random
import socket
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpcore
import httpx

from newsletter import __version__
from newsletter.config import SourceSettings
from newsletter.errors import SourceUnavailable

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/newsletter/newsletter"
"""Where operators of the APIs we call can learn who we are (sent in the User-Agent)."""

USER_AGENT = f"newsletter/{__version__} (+{PROJECT_URL})"
"""The User-Agent of every request: names the project and its version."""

BACKOFF_BASE = 1.0
"""Seconds before the first retry (before jitter); doubles on each retry."""

BACKOFF_CAP = 60.0
"""Longest computed delay between two attempts, in seconds."""

MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the source is unavailable."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (plus any other 5xx)."""

DEFAULT_MAX_BYTES = SourceSettings.max_bytes
"""Largest answer, after decompression, when the caller names no limit."""

MAX_REDIRECTS = 5
"""Redirects followed for one request before it is refused."""

SHOWN_URL_CHARS = 200
"""A redirect target is cut to this many characters in an error."""

CONNECT_ADDRESSES = 4
"""Addresses of a redirect's host tried at most when connecting (each within the timeout)."""

MAX_CONNECTIONS = 10
"""Connections one source client keeps open at most."""

KEEPALIVE_CONNECTIONS = 5
"""Idle connections one source client keeps for reuse."""

KEEPALIVE_SECONDS = 5.0
"""How long an idle connection is kept."""

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the addresses the host resolves to."""

_SOURCE: ContextVar[tuple[str, int] | None] = ContextVar("source", default=None)
"""(host, port) of the configured source being fetched: the one host whose address is
not checked (it may be local, in tests and offline runs)."""


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts; the clock and sleep are injectable."""

    retries: int = 4
    """Retries after the first attempt (``settings.retries``)."""
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    max_retry_after: float = MAX_RETRY_AFTER
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], dt.datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (0-based): full jitter over base * 2**retry."""
        return self.rng.uniform(0.0, min(self.cap, self.base * 2.0**retry))


class AddressRefused(Exception):
    """A connection the address rule does not allow (``why`` says which address)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class VettedBackend(httpcore.NetworkBackend):
    """httpcore's sockets, connecting to a host other than the configured source's only
    at addresses that are all public, resolved once here (no second lookup a hostile
    DNS server could answer differently), and only keeping a socket whose peer is one."""

    def __init__(self) -> None:
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        def connect(address: str) -> httpcore.NetworkStream:
            return self._sockets.connect_tcp(address, port, timeout, local_address, socket_options)

        if _SOURCE.get() == (host, port):
            return connect(host)
        addresses = resolve(host, port)
        why = address_refusal(host, addresses)
        if why is not None:
            raise AddressRefused(why)
        failed: httpcore.ConnectError | None = None
        for address in list(dict.fromkeys(addresses))[:CONNECT_ADDRESSES]:
            try:
                stream = connect(address)
            except httpcore.ConnectError as exc:
                failed = exc
                continue
            peer = str(stream.get_extra_info("socket").getpeername()[0])
            if not _is_public(peer):
                stream.close()
                raise AddressRefused(f"{host} connected to a private or local address ({peer})")
            return stream
        raise failed or httpcore.ConnectError(f"{host}: no address to connect to")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class VettedTransport(httpx.HTTPTransport):
    """httpx's transport over :class:`VettedBackend` (httpx takes no network backend of
    its own yet: encode/httpx#3749), verifying certificates as httpx does."""

    def __init__(self) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=VettedBackend(),
        )


PROXY_SCHEMES = ("http", "https", "all")
"""The proxy variables httpx honours (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``)."""


def make_client(settings: SourceSettings) -> httpx.Client:
    """A client with the project's User-Agent and the configured timeout, whose
    connections keep to the address rule (:class:`VettedTransport`).

    Behind a proxy named in the environment the requests go through it (httpx's own
    handling): the proxy makes the connection, so only the redirect check
    (:func:`check_redirect`, by name) applies and the connection-time check is the proxy's.
    """
    proxied = any(scheme in urllib.request.getproxies() for scheme in PROXY_SCHEMES)
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=False,  # followed by hand, see check_redirect
        transport=None if proxied else VettedTransport(),
    )


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_redirect(
    origin: httpx.URL, current: httpx.URL, target: httpx.URL, *, resolver: Resolver = resolve
) -> str | None:
    """Why following ``current`` -> ``target`` is refused (None: it may be followed).

    ``origin`` is the configured source: its own host may be reached again (whatever its
    address); any other host only over https and only if every address it has is public.
    """
    if target.scheme not in ("http", "https") or not target.host:
        return f"not an http(s) URL ({target.scheme or 'no scheme'})"
    if current.scheme == "https" and target.scheme != "https":
        return "https to http"
    if target.host == origin.host and target.port == origin.port:
        return None
    if target.scheme != "https":
        return "another host over plain http"
    return address_refusal(target.host, resolver(target.host, target.port or 443))


def address_refusal(host: str, addresses: list[str]) -> str | None:
    """Why ``host`` may not be reached at ``addresses`` (None: every one is public)."""
    if not addresses:
        return f"{host} does not resolve"
    private = [a for a in addresses if not _is_public(a)]
    if private:
        return f"{host} is a private or local address ({private[0]})"
    return None


def _shown(url: httpx.URL) -> str:
    text = str(url.copy_with(query=None, fragment=None))
    return text if len(text) <= SHOWN_URL_CHARS else text[:SHOWN_URL_CHARS] + "..."


def _get_within(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    resolver: Resolver = resolve,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """One GET (and its allowed redirects) whose whole answer must arrive within
    ``timeout`` seconds and hold at most ``max_bytes`` once decompressed.

    httpx's timeout bounds each read, so a server dripping a byte at a time would
    hold the run forever; here the body is read chunk by chunk against a deadline,
    decompressed as it comes and counted.
    """
    deadline = clock() + timeout
    origin = current = httpx.URL(url, params=dict(params) if params else None)
    for _hop in range(MAX_REDIRECTS + 1):
        with (
            _connecting(origin, current),
            client.stream(
                "GET",
                current,
                headers={"User-Agent": USER_AGENT},
                timeout=timeout,
                follow_redirects=False,
            ) as response,
        ):
            if response.is_redirect:
                target = response.url.join(response.headers["Location"])
                why = check_redirect(origin, response.url, target, resolver=resolver)
                if why is not None:
                    raise SourceUnavailable(
                        f"{_shown(origin)}: redirect to {_shown(target)} refused: {why}"
                    )
                current = target
                continue
            if response.is_stream_consumed:  # already read (a mock transport's answer)
                content = response.content
                if len(content) > max_bytes:
                    raise _too_large(origin, max_bytes)
                return response
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(origin, max_bytes)
                chunks.append(chunk)
                if clock() > deadline:
                    raise httpx.ReadTimeout(
                        f"timed out: the answer did not arrive within {timeout:g} s",
                        request=response.request,
                    )
        headers = httpx.Headers(
            [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
        )
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
            extensions=response.extensions,
        )
    raise SourceUnavailable(f"{_shown(origin)}: more than {MAX_REDIRECTS} redirects")


@contextmanager
def _connecting(origin: httpx.URL, current: httpx.URL) -> Iterator[None]:
    """Connections made meanwhile for ``current`` keep to the address rule, ``origin``
    (the configured source) excepted; a refusal is one line."""
    port = origin.port or (443 if origin.scheme == "https" else 80)
    token = _SOURCE.set((origin.raw_host.decode("ascii"), port))
    try:
        yield
    except AddressRefused as exc:
        what = "redirect to " if current != origin else ""
        raise SourceUnavailable(
            f"{_shown(origin)}: {what}{_shown(current)} refused: {exc.why}"
        ) from None
    finally:
        _SOURCE.reset(token)


def _too_large(url: httpx.URL, max_bytes: int) -> SourceUnavailable:
    return SourceUnavailable(
        f"{_shown(url)}: the answer is larger than source.max_bytes ({max_bytes} bytes "
        "after decompression)"
    )


def get(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    timeout: float,
    policy: RetryPolicy,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> httpx.Response:
    """GET ``url`` with retries; the successful (2xx) response, or SourceUnavailable.

    The answer holds at most ``max_bytes`` after decompression; redirects follow
    :func:`check_redirect`."""
    attempts = policy.retries + 1
    where = url if not params else str(httpx.URL(url, params=dict(params)))
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            response = _get_within(client, url, params=params, timeout=timeout, max_bytes=max_bytes)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if last:
                raise SourceUnavailable(
                    f"{where}: {problem} (gave up after {attempts} attempts)"
                ) from None
            delay = policy.backoff(attempt)
            log.warning("%s: %s; retrying in %.1f s", where, problem, delay)
            policy.sleep(delay)
            continue
        status = response.status_code
        if status < 400:
            return response
        retryable = status in RETRY_STATUSES or status >= 500
        if not retryable:
            raise SourceUnavailable(f"{where}: HTTP {status} {response.reason_phrase}".rstrip())
        if last:
            raise SourceUnavailable(
                f"{where}: HTTP {status} {response.reason_phrase} "
                f"(gave up after {attempts} attempts)"
            )
        wait = parse_retry_after(response.headers.get("Retry-After"), now=policy.now())
        if wait is not None and wait > policy.max_retry_after:
            raise SourceUnavailable(
                f"{where}: HTTP {status}, asked to retry after {wait:.0f} s "
                f"(more than {policy.max_retry_after:.0f} s)"
            )
        delay = wait if wait is not None else policy.backoff(attempt)
        log.warning("%s: HTTP %d; retrying in %.1f s", where, status, delay)
        policy.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def get_source(
    client: httpx.Client,
    url: str,
    *,
    settings: SourceSettings,
    policy: RetryPolicy,
    params: Mapping[str, str | int] | None = None,
) -> httpx.Response:
    """:func:`get` within the source settings' ``timeout`` and ``max_bytes`` (what every
    source asks for)."""
    return get(
        client,
        url,
        params=params,
        timeout=settings.timeout,
        policy=policy,
        max_bytes=settings.max_bytes,
    )
