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

import contextlib
import dataclasses
import datetime as dt
import gc
import ipaddress
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from newsletter.archive import web_url
from newsletter.bounces.intake import record_submission_failures
from newsletter.config import SenderSettings, Settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import Backend
from newsletter.delivery.memory import MemoryBackend
from newsletter.errors import ConfigError, DeliveryError, NewsletterError
from newsletter.feedback import Feedback
from newsletter.message import (
    DkimSigner,
    InvalidRecipient,
    MessageTemplate,
    Recipient,
    RenderedLike,
    build_template,
    check_address,
    list_id_domain,
    split_mailbox,
)
from newsletter.models import DELIVERED, Day, Paper, SendResult, SendStatus, Subscriber
from newsletter.pipeline import Steering, Variant, plan_week, prepare_day
from newsletter.prefs import next_send_subscribers_counted
from newsletter.render import load_templates
from newsletter.sources import fetch_day
from newsletter.state import CLAIM_BATCH, DEFAULT_LEASE_SECONDS, State, new_owner, variant_key
from newsletter.tokens import LinkSigner, secret_from
from newsletter.topics import load_taxonomy
from newsletter.weekly import WEEK_DAYS, WEEKDAYS, default_weekday, weekday_of

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
    done_before: int = 0
    """Rows found sent (or failed for good) when claimed: another sender finished them."""
    other_sender: int = 0
    """Rows another live sender held when this run tried to claim them."""
    skipped_readers: dict[str, int] = field(default_factory=dict)
    """Readers left out, by why: ``inactive``, ``unsubscribed``, ``suppressed``, ``paused``."""

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
            skipped = ", ".join(f"{why} {n}" for why, n in sorted(self.skipped_readers.items()))
            more = f" (skipped: {skipped})" if skipped else ""
            return head + f"nothing sent: {self.skipped_reason}{more}"
        skipped = ", ".join(f"{why} {n}" for why, n in sorted(self.skipped_readers.items()))
        others = self.done_before + self.other_sender
        return (
            head
            + (", ".join(parts) or "no recipients")
            + f"; already sent before: {self.already_sent}"
            + (f"; sent by another sender: {others}" if others else "")
            + (f"; skipped: {skipped}" if skipped else "")
            + f"; {self.duration:.2f}s, {self.throughput:.1f} msg/s"
        )


def _report(date: dt.date, results: Sequence[SendResult], **kwargs: Any) -> RunReport:
    counts = Counter(str(r.status) for r in results)
    return RunReport(date=date, results=tuple(results), counts=dict(counts), **kwargs)


# --------------------------------------------------------------------------- links


def link_secret(settings: Settings, *, offline: bool) -> bytes:
    """The HMAC key of the links; ConfigError when missing for a real backend."""
    if settings.secret_key:
        return secret_from(settings)
    if offline:
        log.warning("NEWSLETTER_SECRET_KEY is not set: links use an offline development key")
        return DEV_SECRET
    raise ConfigError("secret_key is not set: set the environment variable NEWSLETTER_SECRET_KEY")


LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".invalid", ".test", ".internal", ".lan")
"""Host names that no reader's mail client can reach."""


def require_public_links(settings: Settings) -> None:
    """ConfigError (naming the key) unless the links and List-Id of a real send work.

    One-click unsubscribe (RFC 8058) needs an https ``digest.base_url`` that readers'
    mail providers can reach, and the List-Id must name a real domain; a send through a
    real backend without them would go out with dead links.
    """
    backend = settings.delivery.backend
    url = settings.digest.base_url
    parts = urlsplit(url)
    if parts.scheme != "https" or not _public_host(parts.hostname or ""):
        raise ConfigError(
            f"digest.base_url: {url!r} is not a public https URL; delivery.backend {backend!r} "
            "sends real mail, whose one-click unsubscribe links must work (set "
            "NEWSLETTER_DIGEST__BASE_URL=https://…)"
        )
    list_domain = list_id_domain(settings.sender.list_id)
    if not _public_host(list_domain):
        raise ConfigError(
            f"sender.list_id: {settings.sender.list_id!r} names no real domain; delivery.backend "
            f"{backend!r} sends real mail (use e.g. 'Daily Papers <daily-papers.example.org>')"
        )


def _public_host(host: str) -> bool:
    host = host.strip().rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host and host != "localhost" and not host.endswith(LOCAL_SUFFIXES)
    return address.is_global


def subscriber_values(
    subscriber: Subscriber, *, base_url: str, secret: bytes, list_id: str, date: dt.date
) -> dict[str, str]:
    """The slot values of one subscriber: name, email and the three signed links (the
    feedback link names the email of ``list_id`` on ``date``)."""
    return values_maker(base_url=base_url, secret=secret, list_id=list_id, date=date)(subscriber)


def values_maker(
    *, base_url: str, secret: bytes, list_id: str, date: dt.date
) -> Callable[[Subscriber], dict[str, str]]:
    """:func:`subscriber_values` for many subscribers, the signing key set up once."""
    signer = LinkSigner(base_url, secret, list_id=list_id, date=date)

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
    ledger: State | None = None,
    dkim: DkimSigner | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
    owner: str | None = None,
    lease: float = DEFAULT_LEASE_SECONDS,
    retry_failed: bool = False,
    wait_for_others: float = 0.0,
) -> RunReport:
    """Send each variant's digest to its subscribers.

    With a ``ledger`` (the state database) every subscriber's row is claimed first, a
    batch at a time (see :meth:`newsletter.state.State.claim`): only rows this run
    claimed are sent, so concurrent runs for the same day share the list instead of
    sending twice. Rows done already or held by another sender are counted in the report,
    and so are readers found unsubscribed or paused at claim time. Without a ledger
    (dry runs, tools) everyone given is sent to.

    ``wait_for_others``: seconds, at most, to wait at the end for rows another sender
    holds, claiming those it leaves (a dead sender's once their lease ran out), so the
    day is complete when this returns; 0 leaves them to the other sender.
    """
    started = clock()
    results: list[SendResult] = []
    lock = threading.Lock()
    if ledger is None:
        backend.start_run()
        with long_lived_frozen():
            for variant in variants:
                if stop is not None and stop.is_set():
                    break
                template = build_template(
                    variant.rendered, sender=sender, date=date, now=now(), dkim=dkim
                )
                recipients, refused = recipients_for(template, variant.subscribers, values_for)
                for invalid in refused:
                    results.append(invalid)
                    if progress is not None:
                        progress(invalid)
                backend.send(
                    template, recipients, on_result=_collect(results, lock, progress), stop=stop
                )
        return _report(date, results, duration=clock() - started)
    return _ClaimedDelivery(
        variants,
        date=date,
        backend=backend,
        sender=sender,
        values_for=values_for,
        now=now,
        state=ledger,
        dkim=dkim,
        stop=stop,
        progress=progress,
        owner=owner or new_owner(),
        lease=lease,
        retry_failed=retry_failed,
        wait_for_others=wait_for_others,
    ).run(started, clock)


def _collect(
    results: list[SendResult], lock: threading.Lock, progress: Progress | None
) -> Callable[[SendResult], None]:
    def on_result(result: SendResult) -> None:
        with lock:
            results.append(result)
        if progress is not None:
            progress(result)

    return on_result


def paper_keys(variant: VariantLike) -> tuple[str, ...] | None:
    """The paper keys of a variant's digest, in order (None when it carries no digest)."""
    digest = getattr(variant, "digest", None)
    if digest is None:
        return None
    return tuple(rp.paper.key for rp in digest.papers)


class _ClaimedDelivery:
    """One run of :func:`deliver_variants` with the state database: claim, send, record."""

    def __init__(
        self,
        variants: Sequence[VariantLike],
        *,
        date: dt.date,
        backend: Backend,
        sender: SenderSettings,
        values_for: Callable[[Subscriber], dict[str, str]],
        now: Now,
        state: State,
        dkim: DkimSigner | None,
        stop: threading.Event | None,
        progress: Progress | None,
        owner: str,
        lease: float,
        retry_failed: bool,
        wait_for_others: float,
    ) -> None:
        self.variants = variants
        self.date = date
        self.backend = backend
        self.sender = sender
        self.values_for = values_for
        self.now = now
        self.state = state
        self.dkim = dkim
        self.stop = stop
        self.progress = progress
        self.owner = owner
        self.lease = lease
        self.retry_failed = retry_failed
        self.results: list[SendResult] = []
        self.lock = threading.Lock()
        self.recorded: set[str] = set()
        self.attempted: set[str] = set()
        self.claimed: set[str] = set()
        self.done = 0
        self.busy = 0
        self.skipped: Counter[str] = Counter()
        self.wait_for_others = wait_for_others
        self.held_by_others: list[tuple[int, Subscriber]] = []
        self.templates: dict[int, MessageTemplate] = {}
        self.variant_keys: dict[int, str | None] = {}

    def run(self, started: float, clock: Callable[[], float]) -> RunReport:
        writer = LedgerWriter(self.state, self.date)
        heartbeat = Heartbeat(self.state, self.owner, self.lease)
        self.writer = writer
        self.backend.start_run()
        refused = False
        try:
            with long_lived_frozen():
                batch_size = max(1, min(self.backend.batch_size, CLAIM_BATCH))
                for chunk in _chunks(self._everyone(), batch_size):
                    if self.stop is not None and self.stop.is_set():
                        break
                    self._claim_and_send(chunk)
                if self.wait_for_others > 0:
                    self._wait_for_others(batch_size)
        except DeliveryError:
            refused = True  # the backend refused the run: nothing without a result went out
            raise
        finally:
            heartbeat.close()
            try:
                writer.close()
            finally:
                # Give back what surely did not go out; a row handed to the backend whose
                # outcome is unknown (the process is going down) keeps its claim until
                # the lease runs out: the crash window.
                with self.lock:
                    answered = {r.email for r in self.results}
                never = self.claimed - answered - (set() if refused else self.attempted)
                with contextlib.suppress(NewsletterError):
                    self.state.release(self.date, sorted(never), owner=self.owner)
        report = _report(self.date, self.results, duration=clock() - started)
        return dataclasses.replace(
            report,
            other_sender=self.busy,
            done_before=self.done,
            skipped_readers=dict(self.skipped),
        )

    def _wait_for_others(self, batch_size: int) -> None:
        """Until no row is held by another sender: claim again what they leave (a dead
        sender's rows once its lease ran out), for at most ``wait_for_others`` seconds."""
        give_up = time.monotonic() + self.wait_for_others
        poll = min(2.0, max(0.1, self.lease / 10))
        while self.held_by_others:
            if self.stop is not None and self.stop.is_set():
                return
            if time.monotonic() >= give_up:
                log.warning(
                    "%d subscribers are still held by another sender; leaving them to it",
                    len(self.held_by_others),
                )
                return
            time.sleep(poll)
            again, self.held_by_others = self.held_by_others, []
            self.busy -= len(again)
            for chunk in _chunks(again, batch_size):
                self._claim_and_send(chunk)

    def _everyone(self) -> list[tuple[int, Subscriber]]:
        return [(i, s) for i, v in enumerate(self.variants) for s in v.subscribers]

    def _claim_and_send(self, chunk: Sequence[tuple[int, Subscriber]]) -> None:
        claim = self.state.claim(
            self.date,
            [s.email for _, s in chunk],
            owner=self.owner,
            lease=self.lease,
            retry_failed=self.retry_failed,
        )
        self.done += len(claim.done)
        self.busy += len(claim.busy)
        held = set(claim.busy)
        self.held_by_others.extend(item for item in chunk if item[1].email in held)
        self.skipped.update(claim.skipped.values())
        mine = set(claim.claimed)
        self.claimed |= mine
        groups: dict[int, list[Subscriber]] = {}
        for index, subscriber in chunk:
            if subscriber.email in mine:
                groups.setdefault(index, []).append(subscriber)
        lowest = min((i for i, _ in chunk), default=0)
        for index in [i for i in self.templates if i < lowest]:
            del self.templates[index]  # variants are in order: this one is finished
        for index, people in groups.items():
            if self.stop is not None and self.stop.is_set():
                return
            self._send_group(index, people)

    def _template(self, index: int) -> MessageTemplate:
        template = self.templates.get(index)
        if template is None:
            variant = self.variants[index]
            template = build_template(
                variant.rendered, sender=self.sender, date=self.date, now=self.now(), dkim=self.dkim
            )
            self.templates[index] = template
            keys = paper_keys(variant)
            key = variant_key(keys) if keys is not None else None
            if keys is not None and key is not None:
                self.state.save_variant(self.date, key, keys)
            self.variant_keys[index] = key
        return template

    def _send_group(self, index: int, people: Sequence[Subscriber]) -> None:
        template = self._template(index)
        key = self.variant_keys.get(index)
        recipients, refused = recipients_for(template, people, self.values_for)
        for invalid in refused:
            self.attempted.add(invalid.email)
            self._on_result(invalid)

        def on_attempt(batch: Sequence[Recipient]) -> None:
            self.attempted.update(r.email for r in batch)
            self.state.mark_attempt(
                self.date,
                {r.email: (r.message_id, key) for r in batch},
                owner=self.owner,
                lease=self.lease,
            )

        self.backend.send(
            template,
            recipients,
            on_attempt=on_attempt,
            on_result=self._on_result,
            stop=self.stop,
            on_accepted=self._on_accepted,
        )

    def _on_accepted(self, result: SendResult) -> None:
        # in the backend's sending thread, right after the provider took the message:
        # the at-least-once window after a crash is then one message per connection.
        self.state.record(self.date, [result])
        with self.lock:
            self.recorded.add(result.email)

    def _on_result(self, result: SendResult) -> None:
        with self.lock:
            self.results.append(result)
            early = result.email in self.recorded and result.status in DELIVERED
        if not early:
            self.writer.put(result)
        if self.progress is not None:
            self.progress(result)


def _chunks(
    items: Sequence[tuple[int, Subscriber]], size: int
) -> Iterator[Sequence[tuple[int, Subscriber]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Heartbeat:
    """Renews a sender's claims every third of the lease, from a thread of its own, so
    a live sender never loses its rows however long a batch's retries take."""

    def __init__(self, state: State, owner: str, lease: float) -> None:
        self._state = state
        self._owner = owner
        self._lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(max(0.05, self._lease / 3)):
            try:
                self._state.renew(self._owner, lease=self._lease)
            except NewsletterError as exc:
                log.warning("could not renew the claims of this run: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


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

    def __init__(self, ledger: State, date: dt.date) -> None:
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


# --------------------------------------------------------------------------- progress


PROGRESS_LOG_SECONDS = 5.0
"""How often a running send logs one INFO line of progress."""


class ProgressLog:
    """The log side of a send's progress: each address at DEBUG (failures at WARNING),
    and one INFO line every PROGRESS_LOG_SECONDS with sent / failed / remaining and the
    rate, instead of one INFO line per address."""

    def __init__(
        self,
        total: int,
        *,
        every: float = PROGRESS_LOG_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.every = every
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.sent = 0
        self.failed = 0
        self.lock = threading.Lock()

    def __call__(self, result: SendResult) -> None:
        if result.status in DELIVERED:
            log.debug("%s %s", result.status, result.email)
        elif result.status == SendStatus.SKIPPED:
            log.debug("skipped %s: %s", result.email, result.error)
        else:
            kind = "retry later" if result.transient else "permanent"
            log.warning("%s %s (%s): %s", result.status, result.email, kind, result.error)
        with self.lock:
            if result.status in DELIVERED:
                self.sent += 1
            elif result.status != SendStatus.SKIPPED:
                self.failed += 1
            now = self.clock()
            due = now - self.last >= self.every
            if due:
                self.last = now
        if due:
            self.log_line(now)

    def log_line(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        done = self.sent + self.failed
        log.info(
            "progress: sent %d, failed %d, remaining %d of %d, %.1f msg/s",
            self.sent,
            self.failed,
            max(self.total - done, 0),
            self.total,
            self.sent / elapsed,
        )


def _chain(*callbacks: Progress | None) -> Progress:
    chosen = [c for c in callbacks if c is not None]

    def progress(result: SendResult) -> None:
        for callback in chosen:
            callback(result)

    return progress


# --------------------------------------------------------------------------- the day


def load_due_subscribers(settings: Settings) -> list[Subscriber]:
    """The admin's list, validated, with the readers' own choices applied (suppressed
    ones dropped): who gets the next send and what each asked for."""
    return load_due_counted(settings)[0]


def load_due_counted(settings: Settings) -> tuple[list[Subscriber], dict[str, int]]:
    """:func:`load_due_subscribers`, and how many were left out why (``inactive``,
    ``unsubscribed``, ``suppressed``, ``paused``)."""
    return next_send_subscribers_counted(settings)


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
    command: str = "send",
    wait_for_others: bool = False,
    daily: bool = True,
    run_days: Sequence[str] | None = None,
) -> RunReport:
    """Send ``date``'s digest to every active subscriber not yet sent to (see module doc).

    ``progress`` is called with each final SendResult, ``on_start`` once with the number
    of subscribers about to be sent to; ``retry_failed`` also retries permanent failures.
    ``command`` names the run in the state database's run records (``send``, ``run``).
    ``wait_for_others``: at the end, wait for rows another sender holds (up to
    ``delivery.deadline`` seconds) and send those it leaves (the CLI and the daemon do).
    Weekly readers get their weekly edition on their weekday and nothing on other days;
    ``daily=False`` sends only those (the scheduler on a day outside ``schedule.days``);
    ``run_days`` (the daemon's days): a weekly reader whose weekday is not one of them is
    served on the next one.
    """
    clock_now: Now = now or (lambda: dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    left_out: dict[str, int] = {}
    if subscribers is not None:
        people = list(subscribers)
    else:
        people, left_out = load_due_counted(settings)
    people, not_today = editions_due(
        [s for s in people if s.active],
        date,
        weekly_day=default_weekday(settings.schedule.weekly_day, settings.schedule.days),
        daily=daily,
        run_days=run_days,
    )
    if not_today:
        left_out = {**left_out, "not their day": not_today}
    if only is not None:
        people = [s for s in people if s.email.lower() == only.lower()]
        if not people:
            raise NewsletterError(f"--only {only}: no active subscriber with that address")

    with State(settings.state, now=clock_now) as ledger:
        due_emails = set(ledger.to_send(date, [s.email for s in people], retry_failed=retry_failed))
        due = [s for s in people if s.email in due_emails]
        already = len(people) - len(due)
        if not due:
            reason = (
                ("no active subscribers" if not not_today else "no reader is due today")
                if not people
                else "everyone was already sent this day"
            )
            log.info("%s: %s", date, reason)
            if not_today and not people and not dry_run and ledger.load_day(date) is None:
                # weekly readers wait for their day: keep this day's papers for their edition
                day = fetch_day(source or settings.source.default, date, settings=settings.source)
                ledger.save_day(day, prepared_at=clock_now())
            return _report(
                date,
                [],
                already_sent=already,
                dry_run=dry_run,
                skipped_reason=reason,
                skipped_readers=left_out,
            )

        # settings problems surface before any fetching: backend, secret, DKIM key
        own_backend = backend is None
        chosen = backend or (
            MemoryBackend.from_settings(settings) if dry_run else make_backend(settings)
        )
        owner = new_owner(command)
        run_id: str | None = None
        try:
            backend_name = "memory" if dry_run else settings.delivery.backend
            secret = link_secret(settings, offline=backend_name in OFFLINE_BACKENDS)
            dkim = chosen.dkim_signer(_dkim(settings))  # the headers this provider keeps
            if backend_name not in OFFLINE_BACKENDS:
                require_public_links(settings)

            values_for = values_maker(
                base_url=settings.digest.base_url,
                secret=secret,
                list_id=settings.sender.list_id,
                date=date,
            )

            extra: dict[str, Any] = {}
            if settings.digest.dedupe_days > 0:
                extra["exclude"] = ledger.recent_paper_keys(date, settings.digest.dedupe_days)
            daily_due = [s for s in due if s.frequency != "weekly"]
            weekly_due = [s for s in due if s.frequency == "weekly"]
            feedback = ledger.feedback()

            def steer(papers: Sequence[Paper]) -> Steering:
                sent = ledger.received_among((p.key for p in papers), before=date)
                return Steering(sent=sent, feedback=feedback)

            prepared = prepare_day(
                settings,
                date,
                source=source,
                subscribers=daily_due,
                web_url=web_url(settings, date),
                steer=steer,
                **extra,
            )
            if not dry_run:
                ledger.save_day(prepared.day, prepared_at=clock_now())
            weekly = _weekly_variants(settings, ledger, prepared.day, weekly_due, feedback)
            variants: list[Variant] = [*weekly]
            if (
                prepared.day.is_empty
                and settings.digest.empty_day == "skip"
                and not any(v.digest.papers for v in weekly)
            ):
                reason = f"no papers for {date} from {prepared.day.source} (digest.empty_day: skip)"
                log.info("%s", reason)
                if not dry_run:  # status then knows the day was not forgotten
                    skipped_run = ledger.start_run(date, command=command, owner=owner)
                    ledger.finish_run(skipped_run, {}, outcome="empty day")
                return _report(
                    date,
                    [],
                    already_sent=already,
                    dry_run=dry_run,
                    skipped_reason=reason,
                    skipped_readers=left_out,
                )
            if not (prepared.day.is_empty and settings.digest.empty_day == "skip"):
                variants[:0] = prepared.variants
            total = sum(len(v.subscribers) for v in variants)
            if on_start is not None:
                on_start(total)
            log.info("sending to %d subscribers", total)
            progress_log = ProgressLog(total)
            if not dry_run:
                run_id = ledger.start_run(date, command=command, owner=owner)
            report = deliver_variants(
                variants,
                date=date,
                backend=chosen,
                sender=settings.sender,
                values_for=values_for,
                now=clock_now,
                ledger=None if dry_run else ledger,
                dkim=dkim,
                stop=stop,
                progress=_chain(progress_log, progress),
                owner=owner,
                lease=settings.delivery.claim_lease,
                retry_failed=retry_failed,
                wait_for_others=settings.delivery.deadline if wait_for_others else 0.0,
            )
            progress_log.log_line()
        except BaseException:
            if run_id is not None:
                with contextlib.suppress(NewsletterError):
                    ledger.finish_run(run_id, {}, outcome="crashed")
            raise
        finally:
            if own_backend:
                chosen.close()
        if not dry_run:
            delivered = {r.email for r in report.results if r.status in DELIVERED}
            keys = {
                rp.paper.key
                for variant in variants
                if any(s.email in delivered for s in variant.subscribers)
                for rp in variant.digest.papers
            }
            ledger.record_papers(date, keys)
            # permanent failures at submission count as hard bounces (newsletter.bounces)
            record_submission_failures(ledger, settings, date, report.results)
        skipped = Counter(left_out)
        skipped.update(report.skipped_readers)
        final = dataclasses.replace(
            report,
            duration=time.perf_counter() - started,
            already_sent=already,
            dry_run=dry_run,
            skipped_readers=dict(skipped),
        )
        if run_id is not None:
            ledger.finish_run(run_id, final.counts, outcome=run_outcome(final))
    return final


def editions_due(
    people: Sequence[Subscriber],
    date: dt.date,
    *,
    weekly_day: str,
    daily: bool = True,
    run_days: Sequence[str] | None = None,
) -> tuple[list[Subscriber], int]:
    """Who gets something on ``date``: daily readers (when ``daily``) and weekly readers
    whose weekday (else ``weekly_day``) it is, or whose weekday is not a run day and
    ``date`` is the first run day after it; and how many weekly readers wait."""
    today = weekday_of(date)
    served = {today}
    if run_days:
        back = date - dt.timedelta(days=1)
        while weekday_of(back) not in run_days and len(served) < len(WEEKDAYS):
            served.add(weekday_of(back))
            back -= dt.timedelta(days=1)
    out: list[Subscriber] = []
    waiting = 0
    for subscriber in people:
        if subscriber.frequency == "weekly":
            if (subscriber.weekday or weekly_day) in served:
                out.append(subscriber)
            else:
                waiting += 1
        elif daily:
            out.append(subscriber)
    return out, waiting


def _weekly_variants(
    settings: Settings,
    state: State,
    today: Day,
    readers: Sequence[Subscriber],
    feedback: Mapping[str, Feedback],
) -> tuple[Variant, ...]:
    """The weekly edition for ``readers``: the stored days of the week and ``today``."""
    if not readers:
        return ()
    start = today.date - dt.timedelta(days=WEEK_DAYS - 1)
    days = [s.day for s in state.load_days(start, today.date - dt.timedelta(days=1))]
    days.append(today)
    pool = {p.key for d in days for p in d.papers}
    sent = state.received_among(pool, emails=[s.email for s in readers], before=today.date)
    return plan_week(
        days,
        readers,
        settings=settings,
        taxonomy=load_taxonomy(settings.digest.taxonomy),
        templates=load_templates(settings.digest.templates),
        date=today.date,
        steering=Steering(sent=sent, feedback=feedback),
    )


def run_outcome(report: RunReport) -> str:
    """``ok``, ``failed`` (something failed for good) or ``transient`` (retry later)."""
    if report.failed_permanently:
        return "failed"
    if report.failed:
        return "transient"
    return "ok"
