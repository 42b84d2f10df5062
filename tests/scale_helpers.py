"""Helpers shared by the tests and the scale benchmarks (tested in test_scale_helpers;
the benchmarks import them from here, the tests never import from benchmarks/).

* :func:`synthetic_subscribers` - N subscribers over a chosen number of distinct
  preference profiles (so as many render variants), sizes skewed like a real list;
* :func:`subscribers_yaml` - the list in ``subscribers.yaml`` form (what
  ``newsletter.subscribers.load_subscribers`` reads);
* :class:`TokenBucket` and :func:`start_fake_sendgrid` - a local HTTP server speaking
  SendGrid's v3 ``POST /v3/mail/send`` (Bearer auth, at most 1,000 personalizations,
  ``202``; ``429`` with ``Retry-After`` above its rate limit), with ``GET /_stats``;
* :class:`RecordingSink` - an aiosmtpd handler that records every message's recipients
  and ``Message-ID`` (the crash trials count copies with it).
"""

from __future__ import annotations

import http.server
import itertools
import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

from newsletter.feedback import Feedback
from newsletter.models import SUMMARY_STYLES, Paper, Subscriber, email_key

DEFAULT_VARIANTS = 60
"""Distinct preference profiles (render variants) of the synthetic list."""

SKEW = 0.8
"""Zipf exponent of the variant sizes: variant k gets a share proportional to 1/(k+1)**SKEW."""

MAX_PAPERS_CHOICES: tuple[int | None, ...] = (None, 10, 5, 20)
KEYWORD_CHOICES: tuple[tuple[str, ...], ...] = ((), ("diffusion",), ("agent", "benchmark"))

SENDGRID_MAX_PERSONALIZATIONS = 1000
"""SendGrid's documented limit of personalizations per request."""

Clock = Callable[[], float]


# --------------------------------------------------------------------------- subscribers


def synthetic_profiles(topics: Sequence[str], count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` distinct preference sets (topics, keywords, max_papers, summary).

    The first one is the default profile (no preferences), the one most readers keep.
    """
    topic_sets: list[tuple[str, ...]] = [()]
    topic_sets += [(t,) for t in topics]
    topic_sets += list(itertools.combinations(topics, 2))
    combos = list(
        itertools.product(topic_sets, KEYWORD_CHOICES, MAX_PAPERS_CHOICES, SUMMARY_STYLES)
    )
    default, rest = combos[0], combos[1:]
    random.Random(seed).shuffle(rest)
    chosen = [default, *rest][:count]
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} distinct profiles from {len(topics)} topics")
    return [{"topics": t, "keywords": k, "max_papers": m, "summary": s} for t, k, m, s in chosen]


def variant_sizes(n: int, variants: int, *, skew: float = SKEW) -> list[int]:
    """How many of ``n`` subscribers each variant gets: Zipf-like, each at least one."""
    if variants <= 0:
        raise ValueError("variants must be positive")
    variants = min(variants, n)
    if variants == 0:
        return []
    weights = [1.0 / (k + 1) ** skew for k in range(variants)]
    total = sum(weights)
    spare = n - variants
    sizes = [1 + math.floor(spare * w / total) for w in weights]
    for k in range(n - sum(sizes)):
        sizes[k % variants] += 1
    return sizes


def synthetic_subscribers(
    n: int,
    *,
    topics: Sequence[str],
    variants: int = DEFAULT_VARIANTS,
    seed: int = 0,
    domain: str = "example.org",
) -> list[Subscriber]:
    """``n`` subscribers (``reader{i}@domain``) over ``variants`` distinct profiles.

    Every seventh name is non-ASCII, so the RFC 2047 header path is exercised too.
    Subscribers of one profile are spread through the list, as in a real file.
    """
    profiles = synthetic_profiles(topics, variants, seed=seed)
    sizes = variant_sizes(n, variants)
    slots = [k for k, size in enumerate(sizes) for _ in range(size)]
    random.Random(seed + 1).shuffle(slots)
    out: list[Subscriber] = []
    for i, k in enumerate(slots):
        p = profiles[k]
        name = f"Zoë Ångström {i}" if i % 7 == 3 else f"Reader {i}"
        out.append(
            Subscriber(
                email=f"reader{i}@{domain}",
                name=name,
                topics=p["topics"],
                keywords=p["keywords"],
                max_papers=p["max_papers"],
                summary=p["summary"],
            )
        )
    return out


def synthetic_feedback(
    subscribers: Sequence[Subscriber],
    rated_from: Sequence[Paper],
    *,
    share: float,
    seed: int = 0,
) -> dict[str, Feedback]:
    """Feedback for ``share`` of ``subscribers`` (by casefolded address), spread through
    the list: each liked 1 to 3 and disliked 0 to 2 papers of ``rated_from`` (earlier
    days' papers)."""
    rng = random.Random(seed + 2)
    chosen = rng.sample(list(subscribers), round(len(subscribers) * share))
    out: dict[str, Feedback] = {}
    for sub in chosen:
        liked = tuple(rng.sample(list(rated_from), rng.randint(1, 3)))
        disliked = tuple(rng.sample(list(rated_from), rng.randint(0, 2)))
        out[email_key(sub.email)] = Feedback(liked=liked, disliked=disliked)
    return out


def _flow(items: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(x, ensure_ascii=False) for x in items) + "]"


def subscribers_yaml(subscribers: Iterable[Subscriber]) -> str:
    """The list as a ``subscribers.yaml`` document (JSON-quoted strings are valid YAML)."""
    lines = ["# synthetic subscriber list written by tests.scale_helpers", "subscribers:"]
    for s in subscribers:
        lines.append(f"  - email: {s.email}")
        if s.name:
            lines.append(f"    name: {json.dumps(s.name, ensure_ascii=False)}")
        if s.topics:
            lines.append(f"    topics: {_flow(s.topics)}")
        if s.keywords:
            lines.append(f"    keywords: {_flow(s.keywords)}")
        if s.authors:
            lines.append(f"    authors: {_flow(s.authors)}")
        if s.max_papers is not None:
            lines.append(f"    max_papers: {s.max_papers}")
        lines.append(f"    summary: {s.summary}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rate limit


class TokenBucket:
    """``rate`` requests per second with bursts of ``capacity``; thread-safe."""

    def __init__(
        self, rate: float, *, capacity: float | None = None, clock: Clock = time.monotonic
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float | None:
        """None when a request may go now, else the seconds until one token is back."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / self.rate


# --------------------------------------------------------------------------- fake SendGrid


@dataclass
class SendGridStats:
    """What the fake SendGrid server saw."""

    requests: int = 0
    accepted: int = 0
    recipients: int = 0
    throttled: int = 0
    rejected: int = 0
    unauthorized: int = 0
    max_personalizations: int = 0
    emails: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "recipients": self.recipients,
            "distinct_recipients": len(self.emails),
            "duplicates": sum(c - 1 for c in self.emails.values() if c > 1),
            "throttled": self.throttled,
            "rejected": self.rejected,
            "unauthorized": self.unauthorized,
            "max_personalizations": self.max_personalizations,
            "accept_span": (
                self.last_at - self.first_at
                if self.first_at is not None and self.last_at is not None
                else 0.0
            ),
        }


def _error(message: str, field_name: str | None = None) -> bytes:
    entry: dict[str, Any] = {"message": message, "field": field_name, "help": None}
    return json.dumps({"errors": [entry]}).encode()


def check_mail_send(body: Any) -> tuple[list[str], str | None]:
    """The recipients of a v3 mail/send body, or (..., error) for a body SendGrid refuses."""
    if not isinstance(body, dict):
        return [], "body must be a JSON object"
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return [], "personalizations is required"
    if len(personalizations) > SENDGRID_MAX_PERSONALIZATIONS:
        return [], f"at most {SENDGRID_MAX_PERSONALIZATIONS} personalizations"
    if not isinstance(body.get("from"), dict) or not body["from"].get("email"):
        return [], "from.email is required"
    if not body.get("subject") and not all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    ):
        return [], "subject is required"
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return [], "content is required"
    emails: list[str] = []
    for p in personalizations:
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            return [], "personalizations.to is required"
        for address in to:
            if not isinstance(address, dict) or "@" not in str(address.get("email", "")):
                return [], "personalizations.to.email is invalid"
            emails.append(str(address["email"]))
    return emails, None


def make_sendgrid_handler(
    *, api_key: str, bucket: TokenBucket | None, stats: SendGridStats, lock: threading.Lock
) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler class serving ``POST /v3/mail/send`` and ``GET /_stats``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/_stats":
                self._reply(404, _error("not found"))
                return
            with lock:
                self._reply(200, json.dumps(stats.summary()).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v3/mail/send":
                self._reply(404, _error("not found"))
                return
            with lock:
                stats.requests += 1
            if self.headers.get("Authorization") != f"Bearer {api_key}":
                with lock:
                    stats.unauthorized += 1
                self._reply(401, _error("The provided authorization grant is invalid"))
                return
            wait = bucket.take() if bucket is not None else None
            if wait is not None:
                with lock:
                    stats.throttled += 1
                self._reply(
                    429,
                    _error("too many requests"),
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            emails, problem = check_mail_send(body)
            if problem is not None:
                with lock:
                    stats.rejected += 1
                self._reply(400, _error(problem, "personalizations"))
                return
            now = time.monotonic()
            with lock:
                stats.accepted += 1
                stats.recipients += len(emails)
                stats.emails.update(emails)
                stats.max_personalizations = max(
                    stats.max_personalizations, len(body["personalizations"])
                )
                stats.first_at = now if stats.first_at is None else stats.first_at
                stats.last_at = now
            self._reply(202, b"", {"X-Message-Id": uuid.uuid4().hex})

    return Handler


@dataclass
class FakeSendGrid:
    """A running fake SendGrid server (in a thread of this process)."""

    server: http.server.ThreadingHTTPServer
    thread: threading.Thread
    stats: SendGridStats
    lock: threading.Lock

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return self.stats.summary()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_fake_sendgrid(
    *, api_key: str, rate: float | None, port: int = 0, host: str = "127.0.0.1"
) -> FakeSendGrid:
    """Start the fake SendGrid on ``host:port`` (0: any free port); ``rate`` req/s or None."""
    stats = SendGridStats()
    lock = threading.Lock()
    bucket = TokenBucket(rate) if rate else None
    handler = make_sendgrid_handler(api_key=api_key, bucket=bucket, stats=stats, lock=lock)
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-sendgrid", daemon=True)
    thread.start()
    return FakeSendGrid(server=server, thread=thread, stats=stats, lock=lock)


def serve_fake_sendgrid(port: int, api_key: str, rate: float | None) -> None:
    """Run the fake SendGrid until killed (the target of a separate process)."""
    fake = start_fake_sendgrid(api_key=api_key, rate=rate, port=port)
    fake.thread.join()


# --------------------------------------------------------------------------- SMTP sink


@dataclass(frozen=True, slots=True)
class Received:
    """One message the sink accepted."""

    recipients: tuple[str, ...]
    message_id: str | None
    size: int


class RecordingSink:
    """An aiosmtpd handler keeping (recipients, Message-ID, size) of every message.

    ``on_message(count)`` is called after each message is recorded, before the ``250``
    reply goes out (the crash trials kill the sender from it).
    """

    def __init__(self, *, on_message: Callable[[int], None] | None = None) -> None:
        self.received: list[Received] = []
        self.on_message = on_message
        self._lock = threading.Lock()
        self._parser = BytesHeaderParser()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        headers = self._parser.parsebytes(content)
        message_id = headers.get("Message-ID")
        item = Received(
            tuple(envelope.rcpt_tos), str(message_id).strip() if message_id else None, len(content)
        )
        with self._lock:
            self.received.append(item)
            count = len(self.received)
        if self.on_message is not None:
            self.on_message(count)
        return "250 OK"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()


def copies_per_recipient(received: Iterable[Received]) -> Counter[str]:
    """How many copies each recipient address got."""
    counts: Counter[str] = Counter()
    for item in received:
        counts.update(item.recipients)
    return counts


def subscriber_entries(subscribers: Iterable[Subscriber]) -> Iterator[dict[str, object]]:
    """The list as entries for a subscriber store's editor (the fields
    :func:`subscribers_yaml` writes)."""
    for s in subscribers:
        entry: dict[str, object] = {"email": s.email, "summary": s.summary}
        if s.name:
            entry["name"] = s.name
        for name in ("topics", "keywords", "authors"):
            if values := getattr(s, name):
                entry[name] = list(values)
        if s.max_papers is not None:
            entry["max_papers"] = s.max_papers
        yield entry
