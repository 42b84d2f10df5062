"""The backend base class: one fixed flow, small hooks per provider.

:meth:`Backend.send` owns the flow for one variant's recipients::

    for each batch of at most ``batch_size`` recipients:
        on_attempt(batch)                      # the ledger writes 'pending' rows
        results = send_batch(template, batch)  # the provider hook, yields SendResult
        final results  -> on_result(result)    # sent / queued / invalid / rejected / failed
        transient ones -> wait (exponential backoff + jitter, Retry-After honoured)
                          and try again, until max_attempts or the deadline

Errors a hook may raise:

* :class:`~newsletter.errors.TransientError` - the whole batch may succeed later;
* :class:`~newsletter.errors.AuthError` - bad credentials: :meth:`send` stops at once;
* :class:`~newsletter.errors.DeliveryError` - the backend cannot be used: stops too;
* :class:`BatchTooLarge` - the provider refused the batch for its size (HTTP 413, or
  a request over the provider's byte limit, found before sending): the flow splits
  the batch in two and sends each half; a single message that is too large fails
  permanently. Every backend that batches gets this from the base.

A provider returns per-recipient :class:`~newsletter.models.SendResult` values; a
per-recipient transient failure (SMTP 451 for one address, a provider's per-message
throttling code) has ``transient=True`` and is retried on its own.

Secrets: every result's error text and extras, and every error :meth:`send` raises, pass
through :attr:`Backend.redact` (:mod:`newsletter.redact`) on their way out, so a server
that echoes the password or API key (plain, base64 or URL-encoded) in its reply leaves
no trace in the summary, the logs or the ledger.
"""

from __future__ import annotations

import abc
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from newsletter.closing import Closing
from newsletter.config import Settings, secret_values
from newsletter.errors import DeliveryError, NewsletterError, TransientError
from newsletter.headers import InvalidRecipient
from newsletter.message import DkimSigner, MessageTemplate, Recipient
from newsletter.models import DELIVERED, SendResult, SendStatus
from newsletter.redact import Redactor

DEFAULT_BASE_DELAY = 1.0
"""Seconds before the first retry; doubled for each further attempt."""

DEFAULT_MAX_DELAY = 120.0
"""Longest wait between two attempts (a longer Retry-After is capped to this)."""

DEFAULT_JITTER = 0.25
"""Up to this fraction of a delay is added at random, so parallel senders spread out."""

Clock = Callable[[], float]
Sleep = Callable[[float], None]
ResultCallback = Callable[[SendResult], None]
AttemptCallback = Callable[[Sequence[Recipient]], None]


def unsupported_feature(backend: str, feature: str) -> DeliveryError:
    """The error for a feature a provider cannot do (raised, never silently dropped)."""
    return DeliveryError(f"{backend} backend does not support {feature}")


class BatchTooLarge(DeliveryError):
    """The provider refuses a batch this big; :meth:`Backend.send` splits it and retries.

    ``sent`` is False when the backend found out before sending (nothing reached the
    provider, so the split halves do not count it as an attempt).
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long transient failures are retried."""

    max_attempts: int = 5
    deadline: float = 600.0
    """Seconds from the start of the run after which nothing is retried."""
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = DEFAULT_JITTER

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = float(min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1)))
        backoff += backoff * self.jitter * rng.random()
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_delay))
        return backoff


class RateLimiter:
    """At most ``rate`` messages per second across threads (0: no limit)."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> None:
        if self.rate <= 0 or n <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(self._next, now)
            self._next = start + n / self.rate
        if start > now:
            self._sleep(start - now)


@dataclass
class BackendOptions:
    """What every backend takes besides its own settings; all injectable for tests."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate: float = 0.0
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    redact: Redactor = field(default_factory=Redactor)
    """Removes the secrets from error texts (the settings' secrets, via from_settings)."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BackendOptions:
        d = settings.delivery
        options = cls(
            retry=RetryPolicy(max_attempts=d.max_attempts, deadline=d.deadline),
            rate=d.rate,
            redact=Redactor(secret_values(settings)),
        )
        return dataclasses.replace(options, **overrides)


class Backend(Closing, abc.ABC):
    """A way to deliver messages; subclasses fill :meth:`send_batch`."""

    name: ClassVar[str] = "base"
    batch_size: ClassVar[int] = 100
    """Most recipients handed to one :meth:`send_batch` call (the provider's batch limit)."""
    dkim_unsigned: ClassVar[frozenset[str]] = frozenset()
    """Headers the provider rewrites, left out of our DKIM signature (lower case)."""

    def __init__(self, *, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        self.limiter = RateLimiter(
            self.options.rate, clock=self.options.clock, sleep=self.options.sleep
        )
        self._deadline_at: float | None = None
        self._on_accepted: ResultCallback | None = None
        self._batch_cap: int | None = None
        """Most recipients per batch learned from a BatchTooLarge in this run."""
        self._down: str | None = None
        self.redact = self.options.redact
        """Applied to every error text leaving the backend; subclasses add their secrets."""

    @property
    def down(self) -> str | None:
        """Why the backend gave up on the server for this run (None while it has not)."""
        return self._down

    def mark_down(self, reason: str) -> None:
        """Give up on the server for this run: nothing more is attempted or retried, and
        every recipient left gets a transient ``failed`` result saying ``reason``."""
        self._down = self._down or reason

    # -- the hooks --------------------------------------------------------------

    @abc.abstractmethod
    def send_batch(
        self, template: MessageTemplate, batch: Sequence[Recipient]
    ) -> Iterable[SendResult]:
        """Hand ``batch`` to the provider; one SendResult per recipient (yielded as known)."""

    def close(self) -> None:  # an optional hook: most backends hold nothing
        """Release connections; the backend may not be used afterwards."""

    def dkim_signer(self, signer: DkimSigner | None) -> DkimSigner | None:
        """The signer for this backend's messages: ``delivery.dkim_key``'s signer without
        the headers the provider rewrites (a signature over them would fail), or a
        ConfigError when the backend cannot carry our signature at all."""
        if signer is None or not self.dkim_unsigned:
            return signer
        kept = tuple(h for h in signer.headers if h.lower() not in self.dkim_unsigned)
        return dataclasses.replace(signer, headers=kept)

    @staticmethod
    def fill(template: MessageTemplate, recipient: Recipient) -> bytes | SendResult:
        """The recipient's message, or the ``invalid`` result saying why it cannot be made."""
        try:
            return template.fill(recipient)
        except InvalidRecipient as exc:
            return SendResult(recipient.email, SendStatus.INVALID, error=str(exc))

    @classmethod
    def send_each(
        cls,
        template: MessageTemplate,
        batch: Sequence[Recipient],
        send_one: Callable[[Recipient, bytes], SendResult],
    ) -> Iterator[SendResult]:
        """For backends that take one message at a time: ``send_one(recipient, raw)`` for
        each recipient whose message can be made, the ``invalid`` result for the others."""
        for recipient in batch:
            raw = cls.fill(template, recipient)
            yield raw if isinstance(raw, SendResult) else send_one(recipient, raw)

    # -- the flow ----------------------------------------------------------------

    def start_run(self) -> None:
        """Start the deadline clock (done by the first :meth:`send` otherwise)."""
        self._deadline_at = self.options.clock() + self.options.retry.deadline

    def send(
        self,
        template: MessageTemplate,
        recipients: Sequence[Recipient],
        *,
        on_attempt: AttemptCallback | None = None,
        on_result: ResultCallback | None = None,
        stop: threading.Event | None = None,
        on_accepted: ResultCallback | None = None,
    ) -> list[SendResult]:
        """Deliver ``template`` to every recipient; a final SendResult for each one.

        ``on_accepted`` is called with each delivered result from the thread that got
        the provider's acceptance, at once, by backends that can (SMTP: each worker
        right after the server's 250), so the ledger can record it before that thread
        sends anything else; ``on_result`` still follows for every result.
        """
        if self._deadline_at is None:
            self.start_run()
        self._on_accepted = on_accepted

        cleaned: list[SendResult] = []  # in the order _send reports them

        def clean_result(result: SendResult) -> None:
            clean = self._clean(result)
            cleaned.append(clean)
            if on_result is not None:
                on_result(clean)

        try:
            self._send(template, recipients, on_attempt, clean_result, stop)
        except NewsletterError as exc:  # AuthError, DeliveryError: their text is shown
            exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
            raise
        finally:
            self._on_accepted = None
        return cleaned

    def _clean(self, result: SendResult) -> SendResult:
        """``result`` with the secrets redacted from its error text and extras."""
        if not self.redact:
            return result
        error = self.redact(result.error) if result.error else result.error
        extra = {k: self.redact(v) for k, v in result.extra.items()}
        if error == result.error and extra == result.extra:
            return result
        return dataclasses.replace(result, error=error, extra=extra)

    def accepted(self, result: SendResult) -> None:
        """For backends: report a delivered result as early as it is known."""
        if self._on_accepted is not None:
            self._on_accepted(self._clean(result))

    def _send(
        self,
        template: MessageTemplate,
        recipients: Sequence[Recipient],
        on_attempt: AttemptCallback | None,
        report: ResultCallback,
        stop: threading.Event | None,
    ) -> None:
        """Each batch of ``recipients`` with its retries, every final result to ``report``."""
        start = 0
        while start < len(recipients):
            # a batch the provider found too large lowers the size of the following ones
            size = min(self.batch_size, self._batch_cap or self.batch_size)
            batch = recipients[start : start + size]
            start += size
            if stop is not None and stop.is_set():
                for r in batch:
                    report(SendResult(r.email, SendStatus.SKIPPED, error="run stopped", attempts=0))
                continue
            if self._down is not None:
                for r in batch:
                    report(
                        SendResult(
                            r.email,
                            SendStatus.FAILED,
                            error=f"not attempted: {self._down}",
                            transient=True,
                            attempts=0,
                        )
                    )
                continue
            self._send_with_retries(template, batch, report, on_attempt, stop)

    def _send_with_retries(
        self,
        template: MessageTemplate,
        batch: Sequence[Recipient],
        report: ResultCallback,
        on_attempt: AttemptCallback | None,
        stop: threading.Event | None,
        first_attempt: int = 0,
    ) -> None:
        policy = self.options.retry
        todo = list(batch)
        attempt = first_attempt
        while todo:
            attempt += 1
            if on_attempt is not None:
                on_attempt(todo)
            retry_after: float | None = None
            retry: list[SendResult] = []
            by_email = {r.email: r for r in todo}
            seen: set[str] = set()
            try:
                for result in self.send_batch(template, todo):
                    seen.add(result.email)
                    if result.transient and result.status not in DELIVERED:
                        retry.append(result)
                        retry_after = _max(retry_after, _float(result.extra.get("retry_after")))
                    else:
                        report(dataclasses.replace(result, attempts=attempt))
            except TransientError as exc:
                retry_after = _max(retry_after, exc.retry_after)
                error = str(exc)
            except BatchTooLarge as exc:
                again = {r.email for r in retry}
                rest = [r for r in todo if r.email not in seen or r.email in again]
                self._split(template, rest, report, on_attempt, stop, exc, attempt)
                return
            else:
                error = "no result from backend"
            retry.extend(  # everyone the batch gave no result for
                SendResult(r.email, SendStatus.FAILED, error=error, transient=True)
                for r in todo
                if r.email not in seen
            )
            if not retry:
                return
            delay = policy.delay(attempt, retry_after, self.options.rng)
            deadline_at = self._deadline_at if self._deadline_at is not None else float("inf")
            stopped = stop is not None and stop.is_set()
            if (
                attempt >= policy.max_attempts
                or stopped
                or self._down is not None
                or self.options.clock() + delay > deadline_at
            ):
                why = (
                    "stopped"
                    if stopped
                    else "server down"
                    if self._down is not None
                    else f"gave up after {attempt} attempt(s)"
                )
                for result in retry:
                    report(
                        dataclasses.replace(
                            result,
                            status=SendStatus.FAILED,
                            attempts=attempt,
                            error=f"{result.error} ({why})",
                        )
                    )
                return
            self.options.sleep(delay)
            todo = [by_email[r.email] for r in retry if r.email in by_email]

    def _split(
        self,
        template: MessageTemplate,
        rest: Sequence[Recipient],
        report: ResultCallback,
        on_attempt: AttemptCallback | None,
        stop: threading.Event | None,
        exc: BatchTooLarge,
        attempt: int,
    ) -> None:
        """Send the two halves of a batch the provider found too large (see BatchTooLarge)."""
        done = attempt if exc.sent else attempt - 1
        if len(rest) <= 1:
            for r in rest:
                report(SendResult(r.email, SendStatus.FAILED, error=str(exc), attempts=attempt))
            return
        half = (len(rest) + 1) // 2
        self._batch_cap = min(self._batch_cap or half, half)
        for part in (rest[:half], rest[half:]):
            self._send_with_retries(template, part, report, on_attempt, stop, done)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
