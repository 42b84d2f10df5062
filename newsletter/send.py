"""One day's send: prepare the digests, personalise, deliver, keep the ledger.

:func:`send_day` is the one function both ``newsletter send`` and the scheduler call::

    subscribers (file + preference overlay)  ->  only those the ledger says are due
    newsletter.pipeline.prepare_day          ->  variants (one rendered digest each)
    deliver_variants                         ->  build each variant's message once,
                                                 fill per subscriber, backend.send,
                                                 ledger rows pending -> sent/failed

:func:`deliver_variants` takes the variants as input, so it can be driven without
the pipeline (tests, a resend tool).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from newsletter.archive import web_url
from newsletter.config import SenderSettings, Settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import Backend
from newsletter.delivery.memory import MemoryBackend
from newsletter.errors import ConfigError, NewsletterError
from newsletter.ledger import Ledger
from newsletter.message import (
    DkimSigner,
    InvalidRecipient,
    MessageTemplate,
    Recipient,
    RenderedLike,
    build_template,
    check_address,
    split_mailbox,
)
from newsletter.models import DELIVERED, SendResult, SendStatus, Subscriber
from newsletter.pipeline import prepare_day
from newsletter.prefs import next_send_subscribers
from newsletter.tokens import LinkSigner

log = logging.getLogger(__name__)

_UNDELIVERED = frozenset({SendStatus.FAILED, SendStatus.INVALID, SendStatus.REJECTED})
"""Statuses that count as failed in a report (transient or not)."""

OFFLINE_BACKENDS = frozenset({"outbox", "memory"})
"""Backends for which a missing secret_key is tolerated (links are then not forgeable-safe)."""

DEV_SECRET = b"newsletter-offline-dev-key"
"""Token key used by the offline backends when NEWSLETTER_SECRET_KEY is not set."""

Now = Callable[[], dt.datetime]
Progress = Callable[[SendResult], None]


class VariantLike(Protocol):
    """What delivery needs of ``newsletter.pipeline.Variant``."""

    @property
    def rendered(self) -> RenderedLike: ...

    @property
    def subscribers(self) -> tuple[Subscriber, ...]: ...


@dataclass(frozen=True)
class RunReport:
    """What one send run did: the CLI, the scheduler and logs report from this."""

    date: dt.date
    results: tuple[SendResult, ...] = ()
    duration: float = 0.0
    already_sent: int = 0
    """Subscribers the ledger already had as sent (a rerun skips them)."""
    dry_run: bool = False
    skipped_reason: str | None = None
    """Why nothing was sent (empty day with ``digest.empty_day: skip``, nobody due)."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return sum(1 for r in self.results if r.status in DELIVERED)

    @property
    def failed_permanently(self) -> int:
        return sum(1 for r in self.results if r.status in _UNDELIVERED and not r.transient)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.status in _UNDELIVERED)

    @property
    def throughput(self) -> float:
        """Delivered messages per second."""
        return self.delivered / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        parts = [f"{status}={count}" for status, count in sorted(self.counts.items())]
        head = f"{self.date.isoformat()}{' (dry run)' if self.dry_run else ''}: "
        if self.skipped_reason and not self.results:
            return head + f"nothing sent: {self.skipped_reason}"
        return (
            head
            + (", ".join(parts) or "no recipients")
            + f"; already sent before: {self.already_sent}"
            + f"; {self.duration:.2f}s, {self.throughput:.1f} msg/s"
        )


def _report(date: dt.date, results: Sequence[SendResult], **kwargs: Any) -> RunReport:
    counts = Counter(str(r.status) for r in results)
    return RunReport(date=date, results=tuple(results), counts=dict(counts), **kwargs)


# --------------------------------------------------------------------------- links


def link_secret(settings: Settings, *, offline: bool) -> bytes:
    """The HMAC key of the links; ConfigError when missing for a real backend."""
    if settings.secret_key:
        return settings.secret_key.encode("utf-8")
    if offline:
        log.warning("NEWSLETTER_SECRET_KEY is not set: links use an offline development key")
        return DEV_SECRET
    raise ConfigError("secret_key is not set: set the environment variable NEWSLETTER_SECRET_KEY")


def subscriber_values(subscriber: Subscriber, *, base_url: str, secret: bytes) -> dict[str, str]:
    """The slot values of one subscriber: name, email and the two signed links."""
    return values_maker(base_url=base_url, secret=secret)(subscriber)


def values_maker(*, base_url: str, secret: bytes) -> Callable[[Subscriber], dict[str, str]]:
    """:func:`subscriber_values` for many subscribers, the signing key set up once."""
    signer = LinkSigner(base_url, secret)

    def values_for(subscriber: Subscriber) -> dict[str, str]:
        return {
            "name": subscriber.name,
            "email": subscriber.email,
            **signer.links(subscriber.email),
        }

    return values_for


# --------------------------------------------------------------------------- delivering


def deliver_variants(
    variants: Sequence[VariantLike],
    *,
    date: dt.date,
    backend: Backend,
    sender: SenderSettings,
    values_for: Callable[[Subscriber], dict[str, str]],
    now: Now,
    ledger: Ledger | None = None,
    dkim: DkimSigner | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> RunReport:
    """Send each variant's digest to its subscribers; the ledger (if any) is kept as we go."""
    started = clock()
    results: list[SendResult] = []
    lock = threading.Lock()

    writer = LedgerWriter(ledger, date) if ledger is not None else None
    recorded: set[str] = set()

    def on_accepted(result: SendResult) -> None:
        # in the backend's sending thread, right after the provider took the message:
        # the at-least-once window after a crash is then one message per connection.
        assert ledger is not None
        ledger.record(date, [result])
        with lock:
            recorded.add(result.email)

    def on_result(result: SendResult) -> None:
        with lock:
            results.append(result)
            early = result.email in recorded and result.status in DELIVERED
        if writer is not None and not early:
            writer.put(result)
        if progress is not None:
            progress(result)

    def mark_pending(batch: Sequence[Recipient]) -> None:
        if ledger is not None:
            ledger.mark_pending(date, {r.email: r.message_id for r in batch})

    on_attempt = mark_pending if ledger is not None else None
    backend.start_run()
    try:
        with long_lived_frozen():
            for variant in variants:
                if stop is not None and stop.is_set():
                    break
                template: MessageTemplate = build_template(
                    variant.rendered, sender=sender, date=date, now=now(), dkim=dkim
                )
                recipients, refused = recipients_for(template, variant.subscribers, values_for)
                for invalid in refused:
                    if ledger is not None:
                        ledger.mark_pending(date, {invalid.email: None})
                    on_result(invalid)
                backend.send(
                    template,
                    recipients,
                    on_attempt=on_attempt,
                    on_result=on_result,
                    stop=stop,
                    on_accepted=on_accepted if ledger is not None else None,
                )
    finally:
        if writer is not None:
            writer.close()
    return _report(date, results, duration=clock() - started)


@contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off what exists now, for the block.

    A send keeps the subscriber list and the rendered variants for its whole length and
    makes a few objects per recipient; without this, each full collection on the way
    walks every subscriber again (about a twentieth of the time of making 100k messages).
    Objects still go when their last reference does; cycles among the frozen ones wait
    for the end of the block (``gc.unfreeze`` hands them back to the collector).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def recipients_for(
    template: MessageTemplate,
    subscribers: Sequence[Subscriber],
    values_for: Callable[[Subscriber], dict[str, str]],
) -> tuple[list[Recipient], list[SendResult]]:
    """One variant's recipients, in list order, and the ``invalid`` result of each
    subscriber who cannot be one (the reason in ``error``)."""
    recipients: list[Recipient] = []
    refused: list[SendResult] = []
    recipient = template.recipient
    for subscriber in subscribers:
        email = subscriber.email
        try:
            try:
                values = values_for(subscriber)
            except ValueError:  # the links cannot sign it (a line break, a lone surrogate)
                check_address(email)  # which says why (recipient() checks every address)
                raise
            recipients.append(recipient(email, subscriber.name, values))
        except InvalidRecipient as exc:
            refused.append(SendResult(email, SendStatus.INVALID, error=str(exc)))
    return recipients, refused


class LedgerWriter:
    """Records final results in the ledger from a thread of its own, as they come.

    Each result is queued the moment the backend reports it, and the writer commits
    everything queued so far in one transaction: results arriving one at a time (SMTP)
    are each committed at once, a burst (an HTTP batch of 1,000) goes in one
    transaction instead of 1,000. :meth:`close` writes what is left and re-raises a
    ledger error, if any.
    """

    def __init__(self, ledger: Ledger, date: dt.date) -> None:
        self._ledger = ledger
        self._date = date
        self._queue: queue.SimpleQueue[SendResult | None] = queue.SimpleQueue()
        self._error: NewsletterError | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def put(self, result: SendResult) -> None:
        self._queue.put(result)

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[SendResult] = []
            item = self._queue.get()
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._ledger.record(self._date, batch)
                except NewsletterError as exc:
                    self._error = self._error or exc

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


# --------------------------------------------------------------------------- the day


def load_due_subscribers(settings: Settings) -> list[Subscriber]:
    """The admin's list, validated, with the readers' own choices applied (suppressed
    ones dropped): who gets the next send and what each asked for."""
    return next_send_subscribers(settings)


def _dkim(settings: Settings) -> DkimSigner | None:
    d = settings.delivery
    if not d.dkim_key:
        return None
    domain = d.dkim_domain or split_mailbox(settings.sender.from_)[1].rsplit("@", 1)[1]
    if not d.dkim_selector:
        raise ConfigError("delivery.dkim_selector is required when delivery.dkim_key is set")
    return DkimSigner.from_files(d.dkim_key, selector=d.dkim_selector, domain=domain)


def send_day(
    settings: Settings,
    date: dt.date,
    *,
    source: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
    now: Now | None = None,
    backend: Backend | None = None,
    subscribers: Sequence[Subscriber] | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
    retry_failed: bool = False,
) -> RunReport:
    """Send ``date``'s digest to every active subscriber not yet sent to (see module doc).

    ``progress`` is called with each final SendResult, ``on_start`` once with the number
    of subscribers about to be sent to; ``retry_failed`` also retries permanent failures.
    """
    clock_now: Now = now or (lambda: dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    people = list(subscribers) if subscribers is not None else load_due_subscribers(settings)
    people = [s for s in people if s.active]
    if only is not None:
        people = [s for s in people if s.email.lower() == only.lower()]
        if not people:
            raise NewsletterError(f"--only {only}: no active subscriber with that address")

    with Ledger(settings.state) as ledger:
        due_emails = set(ledger.to_send(date, [s.email for s in people], retry_failed=retry_failed))
        due = [s for s in people if s.email in due_emails]
        already = len(people) - len(due)
        if not due:
            reason = "no active subscribers" if not people else "everyone was already sent this day"
            log.info("%s: %s", date, reason)
            return _report(date, [], already_sent=already, dry_run=dry_run, skipped_reason=reason)

        # settings problems surface before any fetching: backend, secret, DKIM key
        own_backend = backend is None
        chosen = backend or (
            MemoryBackend.from_settings(settings) if dry_run else make_backend(settings)
        )
        try:
            backend_name = "memory" if dry_run else settings.delivery.backend
            secret = link_secret(settings, offline=backend_name in OFFLINE_BACKENDS)
            dkim = chosen.dkim_signer(_dkim(settings))  # the headers this provider keeps

            values_for = values_maker(base_url=settings.digest.base_url, secret=secret)

            extra: dict[str, Any] = {}
            if settings.digest.dedupe_days > 0:
                extra["exclude"] = ledger.recent_paper_keys(date, settings.digest.dedupe_days)
            prepared = prepare_day(
                settings,
                date,
                source=source,
                subscribers=due,
                now=clock_now(),
                web_url=web_url(settings, date),
                **extra,
            )
            if prepared.day.is_empty and settings.digest.empty_day == "skip":
                reason = f"no papers for {date} from {prepared.day.source} (digest.empty_day: skip)"
                log.info("%s", reason)
                return _report(
                    date, [], already_sent=already, dry_run=dry_run, skipped_reason=reason
                )
            if on_start is not None:
                on_start(sum(len(v.subscribers) for v in prepared.variants))
            report = deliver_variants(
                prepared.variants,
                date=date,
                backend=chosen,
                sender=settings.sender,
                values_for=values_for,
                now=clock_now,
                ledger=None if dry_run else ledger,
                dkim=dkim,
                stop=stop,
                progress=progress,
            )
        finally:
            if own_backend:
                chosen.close()
        if not dry_run:
            delivered = {r.email for r in report.results if r.status in DELIVERED}
            keys = {
                rp.paper.key
                for variant in prepared.variants
                if any(s.email in delivered for s in variant.subscribers)
                for rp in variant.digest.papers
            }
            ledger.record_papers(date, keys)
    return RunReport(
        date=date,
        results=report.results,
        duration=time.perf_counter() - started,
        already_sent=already,
        dry_run=dry_run,
        counts=report.counts,
    )
