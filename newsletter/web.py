"""The small web app behind the links in each email (``newsletter serve``).

Routes (every token is a signed capability from :mod:`newsletter.tokens`)::

    GET  /unsubscribe?token=T   a confirmation page with one button
    POST /unsubscribe?token=T   unsubscribe at once: RFC 8058 one-click (the body
                                ``List-Unsubscribe=One-Click`` that Gmail and Yahoo send,
                                no cookies, no confirmation) and the page's button
    GET  /preferences?token=T   every preference, feedback, resubscribe: mounted from
    POST /preferences?token=T   newsletter.reader_web (and /resubscribe, /f/... feedback)
    GET  /subscribe             sign-up form            (only with --allow-signup)
    POST /subscribe             send a confirmation link (double opt-in)
    GET  /confirm?token=T       a page with a confirm button (link scanners only GET)
    POST /confirm?token=T       append the address to the YAML through the locked editor
    POST /webhooks/PROVIDER     bounce / complaint webhooks (:mod:`newsletter.webhooks`)

Sign-up abuse limits (the state database holds the pending sign-ups and the attempts):
at most one confirmation email per address per ``interval`` (a repeated post gets the
same page and changes nothing), ``per_client_hour`` posts per client address (429),
``max_pending`` unconfirmed sign-ups (503). A confirmation link carries the random nonce
of its pending sign-up and works once (the claim deletes it); it never changes an entry
already in the list, and lifts an unsubscribe only if the reader unsubscribed *before*
asking to sign up again.

Design: there are no cookies and no sessions, so there is nothing for cross-site request
forgery to ride on; the token in the URL is the only credential and forms post back to
the URL they came from. A bad token gets the same answer whatever address it names:
nothing is looked up before the signature checks out. Pages are escaped by Jinja's
autoescape, sent with a strict Content-Security-Policy, ``Referrer-Policy: no-referrer``
(tokens never leak to other sites) and ``Cache-Control: no-store``; request logs leave
out query strings. Replays are harmless: suppressing twice or saving the same
preferences again changes nothing.

Served by waitress (:func:`make_server`): a poll loop holds every connection and a bounded
pool of threads runs the app; read timeouts, a connection limit and a real listen backlog;
malformed requests get waitress's 400 and no ``Server`` banner is sent. Requests are
parsed by werkzeug; the routes are a werkzeug ``Map`` (:meth:`WebApp.routes`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlencode

import waitress.server
import werkzeug.wrappers
from waitress import wasyncore
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
)
from werkzeug.routing import Map, Rule

from newsletter import stores
from newsletter import subscribers as roster
from newsletter.config import SignupSettings
from newsletter.errors import NewsletterError
from newsletter.models import Subscriber, email_key
from newsletter.prefs import PrefsStore
from newsletter.reader_web import INVALID_LINK, Page, PageTemplate, ReaderPages
from newsletter.tokens import (
    PREFERENCES,
    UNSUBSCRIBE,
    SigningKeys,
    link,
    make_confirmation,
    make_token,
    read_confirmation,
    verify_token,
)
from newsletter.weekly import Weekday

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Where ``newsletter serve`` listens unless told otherwise (put a proxy in front)."""

DEFAULT_PORT = 8080
"""The port of ``newsletter serve`` (matches the default ``digest.base_url``)."""

MAX_BODY_BYTES = 64 * 1024
"""Larger form bodies are refused by the app (413)."""

SERVER_MAX_BODY_BYTES = 1024 * 1024
"""Larger request bodies are refused by the server before the app sees them (413); a
route may allow up to this much (provider webhooks post batches)."""

MAX_HEADER_BYTES = 16 * 1024
"""Larger request heads (request line and headers) are refused (431 / 400)."""

DEFAULT_THREADS = 8
"""Threads running the app; further complete requests wait in the server's queue."""

CONNECTION_LIMIT = 1000
"""Open connections held at once; beyond it new ones wait in the listen backlog."""

CHANNEL_TIMEOUT = 30
"""Seconds a connection may sit idle (a half-sent request included) before it is closed."""

BACKLOG = 1024
"""Connections the kernel queues before the server accepts them (capped by somaxconn)."""

RESERVED_FILES = 64
"""Open files kept for the database, templates and logs besides the connections."""

CONFIRM_MAX_AGE = dt.timedelta(days=SignupSettings.confirm_days)
"""How long a sign-up confirmation link stays valid."""

SIGNUP_INTERVAL = dt.timedelta(minutes=SignupSettings.interval_minutes)
"""At most one confirmation email per address in this time."""

SIGNUP_PER_CLIENT_HOUR = SignupSettings.per_client_hour
"""Sign-ups one client address may post per hour (then 429)."""

SIGNUP_MAX_PENDING = SignupSettings.max_pending
"""Unconfirmed sign-ups kept at once (then 503 until some confirm or expire)."""

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
"""Sent with every response."""

_REASONS: Mapping[int, str] = MappingProxyType(
    {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Content Too Large",
        503: "Service Unavailable",
    }
)

_INVALID_LINK = (
    "This link is not valid. It may be incomplete: copy the whole link from the email, "
    "or use the newest email you received."
)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WebhookHandler = Callable[[str, Mapping[str, str], bytes], tuple[int, bytes]]
"""(provider, headers, body) -> (status, JSON body): :func:`newsletter.webhooks.handle`."""

MAX_WEBHOOK_BYTES = 1024 * 1024
"""Larger webhook bodies are refused (413) unread."""
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SignupOptions:
    """What sign-up with double opt-in needs, and its abuse limits."""

    list_path: str
    """The subscriber YAML a confirmed address is appended to."""
    send_confirmation: Callable[[str, str], None]
    """Called with (address, confirmation URL); sends the confirmation email."""
    base_url: str
    """The public URL of this server (the confirmation link points here)."""
    max_age: dt.timedelta = CONFIRM_MAX_AGE
    interval: dt.timedelta = SIGNUP_INTERVAL
    """At most one confirmation email per address in this time."""
    per_client_hour: int = SIGNUP_PER_CLIENT_HOUR
    """Sign-ups one client address may post per hour."""
    max_pending: int = SIGNUP_MAX_PENDING
    """Unconfirmed sign-ups kept at once."""


@dataclass(frozen=True)
class ReaderOptions:
    """What the reader's own pages need beyond the app's store and secret."""

    base_url: str = "http://localhost:8080"
    """The public URL of this server (resubscribe and unsubscribe links point here)."""
    send_confirmation: Callable[[str, str], None] | None = None
    """Sends (address, URL) a resubscribe confirmation; None: not offered."""
    default_weekday: Weekday = "fri"
    """The weekly edition's day for readers who chose none (``schedule.weekly_day``)."""
    message_domain: str = ""
    """The domain of the sent Message-IDs (the sender address's): feedback links name
    their delivery by it; empty: feedback links are not answered."""


@dataclass
class _Response:
    status: str
    body: bytes
    headers: list[tuple[str, str]]


class _HttpRequest(werkzeug.wrappers.Request):
    """werkzeug's request with our body limit (a larger body is a 413, never read)."""

    max_content_length = MAX_BODY_BYTES
    max_form_memory_size = MAX_BODY_BYTES


class _Request:
    """One request: werkzeug parses the query, the form (urlencoded or multipart) and
    the headers; handlers read fields as lists of strings (``http`` is werkzeug's request,
    for the raw body and headers)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.http = _HttpRequest(environ)
        self.method = self.http.method.upper()
        self.path = self.http.path or "/"
        args = self.http.args
        self.query: dict[str, list[str]] = {key: args.getlist(key) for key in args}
        self.form: dict[str, list[str]] = {}
        self.client = str(environ.get("REMOTE_ADDR") or "")
        """The peer's address (the proxy's, behind a reverse proxy)."""

    def read_form(self) -> bool:
        """Parse the body; False when it is too large."""
        try:
            form = self.http.form
        except RequestEntityTooLarge:
            return False
        except ClientDisconnected:  # a body shorter than its Content-Length: no fields
            return True
        self.form = {key: form.getlist(key) for key in form}
        return True

    def value(self, name: str) -> str:
        """A query or form field (first value), or ""."""
        values = self.query.get(name) or self.form.get(name) or [""]
        return values[0]


def raw_body(limit: int) -> Callable[[_F], _F]:
    """Mark a route handler that reads its own body (``request.http.get_data()``, e.g. a
    webhook's JSON) of at most ``limit`` bytes (up to SERVER_MAX_BODY_BYTES): the app
    then leaves the body alone instead of parsing it as a form of at most MAX_BODY_BYTES."""

    def mark(handler: _F) -> _F:
        handler.raw_body_limit = limit  # type: ignore[attr-defined]
        return handler

    return mark


class WebApp:
    """The WSGI application. All state lives in the PrefsStore (and the YAML for sign-ups)."""

    def __init__(
        self,
        *,
        store: PrefsStore,
        secret: bytes | SigningKeys,
        topics: Sequence[str] = (),
        title: str = "Daily Papers",
        lookup: Callable[[str], Subscriber | None] | None = None,
        signup: SignupOptions | None = None,
        today: Callable[[], dt.date] = dt.date.today,
        webhooks: WebhookHandler | None = None,
        reader: ReaderOptions | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the web app needs the signing secret")
        self.store = store
        self._keys = secret if isinstance(secret, SigningKeys) else SigningKeys(secret)
        self._secret = self._keys.current
        """New links are signed with the current key; links verify with any of _keys."""
        self.topics = tuple(topics)
        self.title = title
        self._lookup = lookup
        self.signup = signup
        self._today = today
        self._urls = Map(self.routes(), strict_slashes=False, merge_slashes=False).bind("app")
        self.webhooks = webhooks
        self._pages = PageTemplate.load("web.html.j2", title=title, signup=signup is not None)
        options = reader or ReaderOptions()
        self.reader = ReaderPages(
            store=store,
            secret=self._secret,
            keys=self._keys,
            topics=self.topics,
            title=title,
            lookup=lookup,
            base_url=options.base_url,
            send_confirmation=options.send_confirmation,
            default_weekday=options.default_weekday,
            today=today,
            message_domain=options.message_domain,
        )

    # -- WSGI -------------------------------------------------------------------------

    def routes(self) -> list[Rule]:
        """The route table: one werkzeug ``Rule`` per path and methods, its endpoint the
        handler, called as ``handler(request, **path_values)``. Add new pages here, e.g.
        ``Rule("/webhooks/<provider>", methods=["POST"], endpoint=self._webhook)`` with
        the handler marked ``@raw_body(limit)`` to read its own (JSON) body."""
        rules = [
            Rule("/", methods=["GET"], endpoint=self._home),
            Rule("/unsubscribe", methods=["GET"], endpoint=self._unsubscribe_page),
            Rule("/unsubscribe", methods=["POST"], endpoint=self._unsubscribe),
            # the reader's own pages (newsletter.reader_web): preferences, feedback, resubscribe
            Rule("/preferences", methods=["GET", "POST"], endpoint=self._reader_page),
            Rule("/resubscribe", methods=["GET", "POST"], endpoint=self._reader_page),
            Rule("/f/<path:rest>", methods=["GET", "POST"], endpoint=self._reader_page),
        ]
        if self.signup is not None:
            rules += [
                Rule("/subscribe", methods=["GET"], endpoint=self._subscribe_page),
                Rule("/subscribe", methods=["POST"], endpoint=self._subscribe),
                Rule("/confirm", methods=["GET"], endpoint=self._confirm_page),
                Rule("/confirm", methods=["POST"], endpoint=self._confirm),
            ]
        return rules

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.webhooks is not None and str(environ.get("PATH_INFO", "")).startswith("/webhooks/"):
            return self._webhook(environ, start_response)
        request = _Request(environ)
        head = request.method == "HEAD"
        if head:
            request.method = "GET"
        try:
            response = self._route(request)
        except NewsletterError as exc:
            log.error("request failed: %s", exc)
            response = self._page(
                "503 Service Unavailable",
                "error",
                heading="Please try again later",
                message="Your request could not be saved just now. Nothing was changed.",
            )
        log.info("%s %s %s", "HEAD" if head else request.method, request.path, response.status[:3])
        headers = [*response.headers, ("Content-Length", str(len(response.body)))]
        start_response(response.status, headers)
        return [] if head else [response.body]

    def _webhook(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """``POST /webhooks/<provider>``: the raw body and headers to the webhook handler."""
        assert self.webhooks is not None
        provider = str(environ.get("PATH_INFO", ""))[len("/webhooks/") :].strip("/")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if str(environ.get("REQUEST_METHOD", "")).upper() != "POST":
            status, body = 405, b'{"error": "POST only"}'
        elif length < 0 or length > MAX_WEBHOOK_BYTES:
            status, body = 413, b'{"error": "too large"}'
        else:
            headers = {
                key[5:].replace("_", "-").lower(): str(value)
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            headers["content-type"] = str(environ.get("CONTENT_TYPE", ""))
            data = environ["wsgi.input"].read(length) if length else b""
            try:
                status, body = self.webhooks(provider, headers, data)
            except NewsletterError as exc:
                log.error("webhook %s failed: %s", provider, exc)
                status, body = 503, b'{"error": "try again later"}'
        reason = _REASONS.get(status, "Error")
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    def _route(self, request: _Request) -> _Response:
        try:
            handler, values = self._urls.match(request.path, request.method)
        except MethodNotAllowed as exc:
            response = self._page(
                "405 Method Not Allowed", "error", heading="Not allowed", message="Not allowed."
            )
            allowed = sorted(set(exc.valid_methods or ()) - {"HEAD"})
            response.headers.append(("Allow", ", ".join(allowed)))
            return response
        except HTTPException:  # not found, or a path werkzeug would redirect
            return self._page(
                "404 Not Found", "error", heading="Not found", message="No such page."
            )
        own_body = getattr(handler, "raw_body_limit", None)  # see raw_body()
        if own_body is not None:
            request.http.max_content_length = own_body
        too_large = (
            (request.http.content_length or 0) > own_body
            if own_body is not None
            else request.method == "POST" and not request.read_form()
        )
        if too_large:
            return self._page(
                "413 Content Too Large", "error", heading="Too large", message="Too large."
            )
        answer: _Response = handler(request, **values)
        return answer

    def _reader_page(self, request: _Request, rest: str = "") -> _Response:
        """The reader's pages; ``rest`` is the tail of a ``/f/`` feedback link, which
        :meth:`ReaderPages.handle` reads from the path itself."""
        path = request.path.rstrip("/") or "/"
        page = self.reader.handle(request.method, path, request.query, request.form)
        if page is None or page is INVALID_LINK:
            return self._invalid()
        return _html(page)

    # -- pages ------------------------------------------------------------------------

    def _page(self, status: str, page: str, *, heading: str, **values: Any) -> _Response:
        return _html(self._pages.page(status, page, heading, **values))

    def _invalid(self) -> _Response:
        return self._page(
            "400 Bad Request", "error", heading="Link not valid", message=_INVALID_LINK
        )

    def _email(self, request: _Request, purpose: str) -> str | None:
        return verify_token(self._keys, request.value("token"), purpose)

    @staticmethod
    def _action(request: _Request) -> str:
        return "?" + urlencode({"token": request.value("token")})

    def _home(self, request: _Request) -> _Response:
        return self._page("200 OK", "home", heading=self.title)

    def _unsubscribe_page(self, request: _Request) -> _Response:
        address = self._email(request, UNSUBSCRIBE)
        if address is None:
            return self._invalid()
        if self.store.is_suppressed(address):
            return self._page(
                "200 OK", "unsubscribed", heading="You are unsubscribed", email=address
            )
        prefs = "preferences?" + urlencode(
            {"token": make_token(self._secret, address, PREFERENCES)}
        )
        return self._page(
            "200 OK",
            "unsubscribe",
            heading="Unsubscribe",
            email=address,
            action=self._action(request),
            preferences_url=prefs,
        )

    def _unsubscribe(self, request: _Request) -> _Response:
        address = self._email(request, UNSUBSCRIBE)
        if address is None:
            return self._invalid()
        one_click = request.form.get("List-Unsubscribe") == ["One-Click"]
        self.store.suppress(address, source="one-click" if one_click else "web")
        return self._page("200 OK", "unsubscribed", heading="You are unsubscribed", email=address)

    # -- sign-up ----------------------------------------------------------------------

    def _subscribe_page(self, request: _Request) -> _Response:
        return self._page(
            "200 OK",
            "subscribe",
            heading="Subscribe",
            action="subscribe",
            email="",
            name="",
            topics=self.topics,
        )

    def _subscribe(self, request: _Request) -> _Response:
        assert self.signup is not None
        raw = request.value("email").strip()
        name = request.value("name").strip()[:200]
        try:
            address = roster.normalize_email(raw)
        except ValueError:
            return self._page(
                "400 Bad Request",
                "subscribe",
                heading="Subscribe",
                action="subscribe",
                email=raw,
                name=name,
                topics=self.topics,
                error="That does not look like an email address.",
            )
        chosen = [t for t in self.topics if t in request.form.get("topic", [])]
        limits = self.signup
        decision = self.store.request_signup(
            address,
            name=name,
            topics=chosen,
            client=request.client or "-",
            interval=limits.interval,
            per_client_hour=limits.per_client_hour,
            max_pending=limits.max_pending,
            max_age=limits.max_age,
        )
        if decision.outcome == "client_limit":
            response = self._page(
                "429 Too Many Requests",
                "error",
                heading="Please try again later",
                message="Too many sign-ups from your network just now.",
            )
            response.headers.append(("Retry-After", "3600"))
            return response
        if decision.outcome == "full":
            return self._try_later("Sign-ups are paused for a while.")
        if decision.nonce is not None:  # else a confirmation went out recently: not again
            token = make_confirmation(self._secret, address, decision.nonce, issued=self._today())
            try:
                limits.send_confirmation(address, link(limits.base_url, "confirm", token))
            except Exception as exc:  # the backend's own errors: report, never show details
                log.error("sign-up confirmation could not be sent: %s", type(exc).__name__)
                self.store.cancel_signup(address, decision.nonce)
                return self._try_later("The confirmation email could not be sent just now.")
        # the same page whether or not an email went out: it tells nobody who signed up
        return self._page("200 OK", "check-inbox", heading="Check your inbox", email=address)

    def _try_later(self, message: str) -> _Response:
        return self._page(
            "503 Service Unavailable", "error", heading="Please try again later", message=message
        )

    def _confirmation(self, request: _Request) -> tuple[str, str] | None:
        assert self.signup is not None
        return read_confirmation(
            self._keys, request.value("token"), max_age=self.signup.max_age, today=self._today()
        )

    def _confirm_page(self, request: _Request) -> _Response:
        found = self._confirmation(request)
        if found is None:
            return self._invalid()
        return self._page(
            "200 OK", "confirm", heading="Confirm", email=found[0], action=self._action(request)
        )

    def _confirm(self, request: _Request) -> _Response:
        """Take the pending sign-up this link names (once: the claim deletes it), then add
        the address to the list unless it is there already (an entry is never changed)."""
        assert self.signup is not None
        found = self._confirmation(request)
        if found is None:
            return self._invalid()
        address, nonce = found
        claimed = self.store.claim_signup(address, nonce)
        if claimed is None:  # used already, replaced by a newer sign-up, or expired
            return self._page(
                "400 Bad Request",
                "error",
                heading="Link already used",
                message="This confirmation link was used already or has been replaced by a "
                "newer one. Nothing was changed.",
            )
        fields: dict[str, Any] = {"email": address, "added": self._today()}
        if claimed.name:
            fields["name"] = claimed.name
        if claimed.topics:
            fields["topics"] = list(claimed.topics)
        known = self.topics or None
        try:
            with stores.open_store(self.signup.list_path, state=self.store.url).edit(known) as doc:
                if doc.find(address) is None:
                    sub, reasons = roster.check_entry(fields, known_topics=known)
                    if sub is None:
                        raise NewsletterError(f"sign-up of {address} refused: {reasons}")
                    doc.add(fields)
        except BaseException:
            self.store.unclaim_signup(claimed)  # the link works again once the list does
            raise
        return self._page("200 OK", "confirmed", heading="You are subscribed", email=address)


def _html(page: Page) -> _Response:
    """A page as the response, with the security headers every page carries."""
    headers = [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS]
    return _Response(page.status, page.body, headers)


class ListLookup:
    """Finds a subscriber in the YAML list, re-reading it only when the file changes."""

    def __init__(self, path: str | os.PathLike[str], *, known_topics: Iterable[str] | None) -> None:
        self.path = Path(path)
        self._known = known_topics
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_key: dict[str, Subscriber] = {}

    def __call__(self, address: str) -> Subscriber | None:
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                if stamp != self._stamp:
                    subs = roster.load_subscribers(self.path, known_topics=self._known)
                    self._by_key = {email_key(s.email): s for s in subs}
                    self._stamp = stamp
            except (OSError, NewsletterError) as exc:
                log.warning("subscriber list unreadable, showing defaults: %s", exc)
                self._by_key, self._stamp = {}, None
            return self._by_key.get(email_key(address))


# -- the server --------------------------------------------------------------------------


class Server:
    """The web app served by waitress: a select/poll loop owns every connection and a
    bounded pool of threads runs the app, so a client that sends half a request holds
    a buffer, never a thread, and is dropped after :data:`CHANNEL_TIMEOUT` seconds."""

    def __init__(self, inner: waitress.server.BaseWSGIServer) -> None:
        self._inner = inner

    @property
    def server_address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 asks for a free one)."""
        return str(self._inner.effective_host), int(self._inner.effective_port)

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or Ctrl-C."""
        self._inner.run()

    def shutdown(self) -> None:
        """Close the listening socket and every connection; the loop then returns."""
        self._inner.task_dispatcher.shutdown()  # running requests finish first
        channels = self._inner._map  # the loop's own map: closed from the loop's thread
        self._inner.trigger.pull_trigger(lambda: wasyncore.close_all(channels))

    def server_close(self) -> None:
        """Nothing left to release after :meth:`shutdown` (kept for callers of wsgiref)."""


def make_server(
    app: WSGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    threads: int = DEFAULT_THREADS,
    connection_limit: int = CONNECTION_LIMIT,
    channel_timeout: int = CHANNEL_TIMEOUT,
    trusted_proxy: str | None = None,
) -> Server:
    """A waitress server for ``app`` bound to (host, port); port 0 picks a free one.

    ``trusted_proxy`` is the address of a reverse proxy whose ``X-Forwarded-For`` names
    the real client (for the per-client sign-up limits); others' headers are dropped.
    """
    _raise_open_file_limit(connection_limit + RESERVED_FILES)
    proxy: dict[str, Any] = {}
    if trusted_proxy:
        proxy = {
            "trusted_proxy": trusted_proxy,
            "trusted_proxy_count": 1,
            "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"},
        }
    inner = waitress.server.create_server(
        app,
        host=host,
        port=port,
        ipv6=":" in host,
        ipv4=":" not in host,
        threads=threads,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout,
        cleanup_interval=max(1, channel_timeout // 6),
        backlog=BACKLOG,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=SERVER_MAX_BODY_BYTES,
        asyncore_use_poll=True,
        ident="",
        expose_tracebacks=False,
        clear_untrusted_proxy_headers=True,
        **proxy,
    )
    assert isinstance(inner, waitress.server.BaseWSGIServer)  # one address, never a multi
    return Server(inner)


def _raise_open_file_limit(wanted: int) -> None:
    """Let the process hold ``wanted`` open files (up to the hard limit): each connection
    is one file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
