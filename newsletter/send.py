"""One day's send: prepare the digests, personalise, deliver, keep the ledger.

:func:`send_day` is the one function both ``newsletter send`` and the scheduler call::

    census: the list, a batch at a time     ->  how many are due, who left feedback
    fetch the day, newsletter.pipeline      ->  planners: a reader's variant (one
      day_planner / week_planner                rendered digest each), made when needed
    send pass: the list again, by batches   ->  each reader's variant; per variant a
      (Delivery)                                backend batch is claimed, filled per
                                                subscriber, sent, ledger rows
                                                pending -> sent/failed

Nothing holds a reader beyond the batch in flight (readers are streamed from the state
database, as listmonk does): memory stays flat whatever the list's length.
:func:`deliver_variants` takes the variants as input, so it can be driven without
the pipeline (tests, a resend tool).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from newsletter.archive import web_url
from newsletter.bounces.intake import REFUSED, record_submission_failures
from newsletter.config import SenderSettings, Settings
from newsletter.delivery import make_backend
from newsletter.delivery.base import Backend
from newsletter.delivery.memory import MemoryBackend
from newsletter.errors import ConfigError, DeliveryError, NewsletterError
from newsletter.feedback import Feedback
from newsletter.headers import InvalidRecipient, check_address, list_id_domain, split_mailbox
from newsletter.message import DkimSigner, MessageTemplate, Recipient, RenderedLike, build_template
from newsletter.models import DELIVERED, Day, SendResult, SendStatus, Subscriber, email_key
from newsletter.pipeline import Planner, Variant, day_planner, stage_tools, week_planner
from newsletter.prefs import next_send_subscribers_counted
from newsletter.sources import fetch_day
from newsletter.state import (
    CLAIM_BATCH,
    DEFAULT_LEASE_SECONDS,
    State,
    apply_choices,
    new_owner,
    variant_key,
)
from newsletter.tokens import LinkSigner, secret_from
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


MAX_KEPT_PROBLEMS = 100
"""Results other than delivered a report keeps (the first ones; the rest are counted)."""


@dataclass(frozen=True)
class RunReport:
    """What one send run did: the CLI, the scheduler and logs report from this.

    Counts only, whatever the list's length: each result went to ``progress`` (the
    CLI's bar, the log) as it came; ``problems`` keeps the first MAX_KEPT_PROBLEMS that
    were not delivered."""

    date: dt.date
    counts: dict[str, int] = field(default_factory=dict)
    """Results by status (``sent``, ``queued``, ``failed``, ``invalid``, ...)."""
    failed_permanently: int = 0
    """Results not delivered and not worth retrying (``invalid``, ``rejected``, ...)."""
    problems: tuple[SendResult, ...] = ()
    duration: float = 0.0
    already_sent: int = 0
    """Subscribers the ledger already had as sent (a rerun skips them)."""
    dry_run: bool = False
    skipped_reason: str | None = None
    """Why nothing was sent (empty day with ``digest.empty_day: skip``, nobody due)."""
    done_before: int = 0
    """Rows found sent (or failed for good) when claimed: another sender finished them."""
    other_sender: int = 0
    """Rows another live sender held when this run tried to claim them."""
    skipped_readers: dict[str, int] = field(default_factory=dict)
    """Readers left out, by why: ``inactive``, ``unsubscribed``, ``suppressed``, ``paused``."""

    @property
    def delivered(self) -> int:
        return sum(n for status, n in self.counts.items() if status in DELIVERED)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in _UNDELIVERED)

    @property
    def not_delivered(self) -> int:
        """Results other than delivered (failures and skips): ``problems`` lists the first."""
        return sum(n for status, n in self.counts.items() if status not in DELIVERED)

    @property
    def throughput(self) -> float:
        """Delivered messages per second."""
        return self.delivered / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        parts = [f"{status}={count}" for status, count in sorted(self.counts.items())]
        head = f"{self.date.isoformat()}{' (dry run)' if self.dry_run else ''}: "
        skipped = ", ".join(f"{why} {n}" for why, n in sorted(self.skipped_readers.items()))
        if self.skipped_reason and not self.counts:
            more = f" (skipped: {skipped})" if skipped else ""
            return head + f"nothing sent: {self.skipped_reason}{more}"
        others = self.done_before + self.other_sender
        return (
            head
            + (", ".join(parts) or "no recipients")
            + f"; already sent before: {self.already_sent}"
            + (f"; sent by another sender: {others}" if others else "")
            + (f"; skipped: {skipped}" if skipped else "")
            + f"; {self.duration:.2f}s, {self.throughput:.1f} msg/s"
        )


class Tally:
    """A run's results as they come (from the backend's threads): counts by status and
    the first MAX_KEPT_PROBLEMS not delivered; :meth:`report` makes the RunReport."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.permanent = 0
        self.problems: list[SendResult] = []
        self.lock = threading.Lock()

    def add(self, result: SendResult) -> None:
        with self.lock:
            self.counts[str(result.status)] += 1
            if result.status in DELIVERED:
                return
            if result.status in _UNDELIVERED and not result.transient:
                self.permanent += 1
            if len(self.problems) < MAX_KEPT_PROBLEMS:
                self.problems.append(result)

    def report(self, date: dt.date, **kwargs: Any) -> RunReport:
        with self.lock:
            return RunReport(
                date=date,
                counts=dict(self.counts),
                failed_permanently=self.permanent,
                problems=tuple(self.problems),
                **kwargs,
            )


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
        values = signer.links(subscriber.email)
        values["name"] = subscriber.name
        values["email"] = subscriber.email
        return values

    return values_for


# --------------------------------------------------------------------------- delivering


@dataclass(frozen=True)
class SendOptions:
    """How one run delivers, whoever it delivers to (:func:`deliver_variants`, send_day).

    With a state database every reader's row is claimed first, a backend batch at a
    time (see :meth:`newsletter.state.State.claim`): only rows this run claimed are
    sent, so concurrent runs for the same day share the list instead of sending twice.
    ``wait_for_others``: seconds, at most, to wait at the end for rows another sender
    holds, claiming those it leaves (a dead sender's once their lease ran out), so the
    day is complete when the run returns; 0 leaves them to the other sender.
    """

    date: dt.date
    backend: Backend
    sender: SenderSettings
    values_for: Callable[[Subscriber], dict[str, str]]
    now: Now
    dkim: DkimSigner | None = None
    stop: threading.Event | None = None
    progress: Progress | None = None
    """Called with each final SendResult, from the backend's threads."""
    refused: Callable[[Sequence[SendResult]], object] | None = None
    """Called (in the run's thread) with the recipients refused for good at submission,
    after each backend batch: send_day takes them as hard bounces."""
    clock: Callable[[], float] = time.perf_counter
    owner: str = ""
    """The claim owner (empty: :func:`newsletter.state.new_owner`)."""
    lease: float = DEFAULT_LEASE_SECONDS
    retry_failed: bool = False
    wait_for_others: float = 0.0


def deliver_variants(
    variants: Sequence[VariantLike], options: SendOptions, *, ledger: State | None = None
) -> RunReport:
    """Send each variant's digest to its subscribers (see :class:`SendOptions`).

    Without a ``ledger`` (dry runs, tools) everyone given is sent to; with one, rows done
    already or held by another sender are counted in the report, and so are readers
    found unsubscribed or paused at claim time.
    """
    everyone = ([(i, s) for s in v.subscribers] for i, v in enumerate(variants))
    return Delivery(variants, options, ledger).run(everyone)


def paper_keys(variant: VariantLike) -> tuple[str, ...] | None:
    """The paper keys of a variant's digest, in order (None when it carries no digest)."""
    digest = getattr(variant, "digest", None)
    if digest is None:
        return None
    return tuple(rp.paper.key for rp in digest.papers)


BUFFERED_READERS = 10_000
"""Most readers a run holds waiting for their variant's backend batch to fill: the
fullest variant goes out early beyond it (memory stays flat whatever the list)."""


class Delivery:
    """One run's sending: readers come in batches of (variant index, Subscriber); each
    variant's readers wait in a buffer until they fill a backend batch, which is then
    claimed (with the state database), sent and recorded. Only the batch in flight is tracked,
    so memory stays flat whatever the list's length; ``variants`` may grow while the
    run goes (a :class:`newsletter.pipeline.Planner`'s list)."""

    def __init__(
        self, variants: Sequence[VariantLike], options: SendOptions, state: State | None
    ) -> None:
        self.variants = variants
        self.o = options
        self.state = state
        self.owner = options.owner or new_owner()
        self.size = max(1, min(options.backend.batch_size, CLAIM_BATCH))
        self.tally = Tally()
        self.delivered: Counter[int] = Counter()
        """Delivered messages by variant index (which digests went out)."""
        self.buffers: dict[int, list[Subscriber]] = {}
        self.buffered = 0
        self.templates: dict[int, tuple[MessageTemplate, str | None]] = {}
        self.done = 0
        self.busy = 0
        self.skipped: Counter[str] = Counter()
        self.held_by_others: list[tuple[int, Subscriber]] = []
        self.lock = threading.Lock()
        self._new_batch(-1)
        self.writer: LedgerWriter | None = None

    def _new_batch(self, index: int) -> None:
        """Start tracking the backend batch of variant ``index`` (the one in flight)."""
        self.index = index
        self.claimed: set[str] = set()
        self.attempted: set[str] = set()
        self.answered: set[str] = set()
        self.recorded: set[str] = set()
        self.refusals: list[SendResult] = []

    def stopped(self) -> bool:
        return self.o.stop is not None and self.o.stop.is_set()

    def run(self, batches: Iterable[Iterable[tuple[int, Subscriber]]]) -> RunReport:
        started = self.o.clock()
        self.o.backend.start_run()
        heartbeat = None
        if self.state is not None:
            self.writer = LedgerWriter(self.state, self.o.date)
            heartbeat = Heartbeat(self.state, self.owner, self.o.lease)
        refused = False
        try:
            for batch in batches:
                if self.stopped():
                    break
                for index, subscriber in batch:
                    self._add(index, subscriber)
            while self.buffers and not self.stopped():
                self._flush(next(iter(self.buffers)))
            if self.o.wait_for_others > 0 and self.state is not None:
                self._wait_for_others()
        except DeliveryError:
            refused = True  # the backend refused the run: nothing without a result went out
            raise
        finally:
            self._close(heartbeat, refused)
        return self.tally.report(
            self.o.date,
            duration=self.o.clock() - started,
            other_sender=self.busy,
            done_before=self.done,
            skipped_readers=dict(self.skipped),
        )

    def _close(self, heartbeat: Heartbeat | None, refused: bool) -> None:
        if heartbeat is not None:
            heartbeat.close()
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            # Give back what surely did not go out; a row handed to the backend whose
            # outcome is unknown (the process is going down) keeps its claim until
            # the lease runs out: the crash window.
            with self.lock:
                never = self.claimed - self.answered - (set() if refused else self.attempted)
            if self.state is not None and never:
                with contextlib.suppress(NewsletterError):
                    self.state.release(self.o.date, sorted(never), owner=self.owner)

    def _add(self, index: int, subscriber: Subscriber) -> None:
        waiting = self.buffers.setdefault(index, [])
        waiting.append(subscriber)
        self.buffered += 1
        if len(waiting) >= self.size:
            self._flush(index)
        elif self.buffered > BUFFERED_READERS:
            self._flush(max(self.buffers, key=lambda i: len(self.buffers[i])))

    def _flush(self, index: int) -> None:
        people = self.buffers.pop(index)
        self.buffered -= len(people)
        self._send(index, people)

    def _wait_for_others(self) -> None:
        """Until no row is held by another sender: claim again what they leave (a dead
        sender's rows once its lease ran out), for at most ``wait_for_others`` seconds."""
        give_up = time.monotonic() + self.o.wait_for_others
        poll = min(2.0, max(0.1, self.o.lease / 10))
        while self.held_by_others:
            if self.stopped():
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
            by_variant: dict[int, list[Subscriber]] = {}
            for index, subscriber in again:
                by_variant.setdefault(index, []).append(subscriber)
            for index, people in by_variant.items():
                for start in range(0, len(people), self.size):
                    self._send(index, people[start : start + self.size])

    def _claim(self, index: int, people: Sequence[Subscriber]) -> list[Subscriber]:
        assert self.state is not None
        claim = self.state.claim(
            self.o.date,
            [s.email for s in people],
            owner=self.owner,
            lease=self.o.lease,
            retry_failed=self.o.retry_failed,
        )
        self.done += len(claim.done)
        self.busy += len(claim.busy)
        held = set(claim.busy)
        self.held_by_others.extend((index, s) for s in people if s.email in held)
        self.skipped.update(claim.skipped.values())
        mine = set(claim.claimed)
        self.claimed = mine
        return [s for s in people if s.email in mine]

    def _send(self, index: int, people: Sequence[Subscriber]) -> None:
        """Claim (with the state database) and send one backend batch of variant ``index``."""
        if self.stopped():
            return
        self._new_batch(index)
        if self.state is not None:
            people = self._claim(index, people)
            if not people:
                return
        template, key = self._template(index)
        recipients, refused = recipients_for(template, people, self.o.values_for)
        for invalid in refused:
            self.attempted.add(invalid.email)
            self._on_result(invalid)

        def on_attempt(batch: Sequence[Recipient]) -> None:
            assert self.state is not None
            self.attempted.update(r.email for r in batch)
            self.state.mark_attempt(
                self.o.date,
                {r.email: (r.message_id, key) for r in batch},
                owner=self.owner,
                lease=self.o.lease,
            )

        claimed = self.state is not None
        self.o.backend.send(
            template,
            recipients,
            on_attempt=on_attempt if claimed else None,
            on_result=self._on_result,
            stop=self.o.stop,
            on_accepted=self._on_accepted if claimed else None,
        )
        if self.refusals and self.o.refused is not None:
            self.o.refused(self.refusals)
        self._new_batch(-1)

    def _template(self, index: int) -> tuple[MessageTemplate, str | None]:
        made = self.templates.get(index)
        if made is None:
            variant = self.variants[index]
            template = build_template(
                variant.rendered,
                sender=self.o.sender,
                date=self.o.date,
                now=self.o.now(),
                dkim=self.o.dkim,
            )
            keys = paper_keys(variant)
            key = variant_key(keys) if keys is not None else None
            if self.state is not None and keys is not None and key is not None:
                self.state.save_variant(self.o.date, key, keys)
            made = self.templates[index] = (template, key)
        return made

    def _on_accepted(self, result: SendResult) -> None:
        # in the backend's sending thread, right after the provider took the message:
        # the at-least-once window after a crash is then one message per connection.
        assert self.state is not None
        self.state.record(self.o.date, [result])
        with self.lock:
            self.recorded.add(result.email)

    def _on_result(self, result: SendResult) -> None:
        self.tally.add(result)
        with self.lock:
            self.answered.add(result.email)
            early = result.email in self.recorded and result.status in DELIVERED
            if result.status in DELIVERED:
                self.delivered[self.index] += 1
            elif result.status in REFUSED and not result.transient:
                self.refusals.append(result)
        if self.writer is not None and not early:
            self.writer.put(result)
        if self.o.progress is not None:
            self.o.progress(result)


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
    ones dropped): who gets the next send and what each asked for (a whole list in
    memory: for tools and small lists; a send streams :class:`Readers`)."""
    return next_send_subscribers_counted(settings)[0]


@dataclass(frozen=True)
class Readers:
    """Who one send is for, read a batch at a time (memory stays flat, as listmonk does):
    the list (``subscribers``: the file or the state database; or ``given``, taken as
    due), the readers' own choices laid over it, those whose edition is due on ``date``,
    ``where`` and ``--only``."""

    settings: Settings
    date: dt.date
    given: Sequence[Subscriber] | None = None
    where: Callable[[Subscriber], bool] | None = None
    only: str | None = None
    daily: bool = True
    run_days: Sequence[str] | None = None

    retry_failed: bool = False

    def batches(self, state: State, left_out: Counter[str]) -> Iterator[list[Subscriber]]:
        """The readers in batches (none empty); those left out are counted by why into
        ``left_out`` (``inactive``, ``unsubscribed``, ``suppressed``, ``paused``,
        ``not their day``)."""
        schedule = self.settings.schedule
        weekly_day = default_weekday(schedule.weekly_day, schedule.days)
        only = self.only.lower() if self.only is not None else None
        for batch in self._listed(state, left_out):
            people = [s for s in batch if s.active and (self.where is None or self.where(s))]
            people, waiting = editions_due(
                people, self.date, weekly_day=weekly_day, daily=self.daily, run_days=self.run_days
            )
            if waiting:
                left_out["not their day"] += waiting
            if only is not None:
                people = [s for s in people if s.email.lower() == only]
            if people:
                yield people

    def due(self, state: State) -> Iterator[list[Subscriber]]:
        """The readers the ledger says are due (not sent yet), in batches."""
        for batch in self.batches(state, Counter()):
            if due := self.due_of(batch, state):
                yield due

    def due_of(self, batch: Sequence[Subscriber], state: State) -> list[Subscriber]:
        emails = [s.email for s in batch]
        due = set(state.to_send(self.date, emails, retry_failed=self.retry_failed))
        return [s for s in batch if s.email in due]

    def _listed(self, state: State, left_out: Counter[str]) -> Iterator[list[Subscriber]]:
        if self.given is not None:
            yield list(self.given)
            return
        suppressed, overlays = state.suppressed_keys(), state.overlays()
        for batch in listed_batches(self.settings):
            people, skipped = apply_choices(batch, suppressed, overlays)
            left_out.update(skipped)
            yield people


def listed_batches(settings: Settings) -> Iterator[list[Subscriber]]:
    """The admin's list (``subscribers``: a file or the state database), validated, a
    batch at a time (problems are raised after the last batch)."""
    from newsletter import stores
    from newsletter import subscribers as roster  # the send path's only use of the list

    store = stores.open_store(settings.subscribers, state=settings.state)
    return store.batches(roster.default_topic_names(settings.digest.taxonomy))


@dataclass
class Census:
    """The first pass over a send's readers: how many, who is due, who left feedback."""

    people: int = 0
    due: int = 0
    weekly: int = 0
    """Due readers of the weekly edition."""
    steered: list[Subscriber] = field(default_factory=list)
    """Due readers with feedback (their digests are bucketed before the send)."""
    left_out: Counter[str] = field(default_factory=Counter)

    @classmethod
    def take(cls, readers: Readers, state: State, feedback: Mapping[str, Feedback]) -> Census:
        census = cls()
        for batch in readers.batches(state, census.left_out):
            census.people += len(batch)
            for subscriber in readers.due_of(batch, state):
                census.due += 1
                census.weekly += subscriber.frequency == "weekly"
                if feedback and email_key(subscriber.email) in feedback:
                    census.steered.append(subscriber)
        return census

    @property
    def already(self) -> int:
        return self.people - self.due


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
    where: Callable[[Subscriber], bool] | None = None,
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

    The list is read twice, a batch at a time: a census (who is due, who left
    feedback), then the send pass (each reader's variant, claim, send), so memory stays
    flat whatever the list's length. ``subscribers`` replaces the list (taken as due);
    ``where`` keeps only the readers it accepts (the scheduler's time zone).
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
    readers = Readers(settings, date, subscribers, where, only, daily, run_days, retry_failed)
    with State(settings.state, now=clock_now) as ledger:
        feedback = ledger.feedback()
        census = Census.take(readers, ledger, feedback)
        if only is not None and not census.people:
            raise NewsletterError(f"--only {only}: no active subscriber with that address")
        if not census.due:
            waiting = census.left_out["not their day"]
            reason = (
                ("no active subscribers" if not waiting else "no reader is due today")
                if not census.people
                else "everyone was already sent this day"
            )
            log.info("%s: %s", date, reason)
            if waiting and not census.people and not dry_run and ledger.load_day(date) is None:
                # weekly readers wait for their day: keep this day's papers for their edition
                day = fetch_day(source or settings.source.default, date, settings=settings.source)
                ledger.save_day(day, prepared_at=clock_now())
            return RunReport(
                date,
                already_sent=census.already,
                dry_run=dry_run,
                skipped_reason=reason,
                skipped_readers=dict(census.left_out),
            )
        run = _DayRun(settings, date, ledger, census, feedback, dry_run=dry_run, now=clock_now)
        report = run.send(
            readers,
            source=source,
            backend=backend,
            stop=stop,
            progress=progress,
            on_start=on_start,
            retry_failed=retry_failed,
            command=command,
            wait_for_others=wait_for_others,
        )
    left_out = Counter(census.left_out)
    left_out.update(report.skipped_readers)
    return dataclasses.replace(
        report,
        duration=time.perf_counter() - started,
        already_sent=census.already,
        dry_run=dry_run,
        skipped_readers=dict(left_out),
    )


@dataclass
class _DayRun:
    """send_day once someone is due: fetch and plan the day, then the send pass."""

    settings: Settings
    date: dt.date
    ledger: State
    census: Census
    feedback: Mapping[str, Feedback]
    dry_run: bool
    now: Now

    def send(
        self,
        readers: Readers,
        *,
        source: str | None,
        backend: Backend | None,
        stop: threading.Event | None,
        progress: Progress | None,
        on_start: Callable[[int], None] | None,
        retry_failed: bool,
        command: str,
        wait_for_others: bool,
    ) -> RunReport:
        settings, ledger = self.settings, self.ledger
        # settings problems surface before any fetching: backend, secret, DKIM key
        chosen = backend or (
            MemoryBackend.from_settings(settings, keep=False)
            if self.dry_run
            else make_backend(settings)
        )
        owner = new_owner(command)
        run_id: str | None = None
        try:
            backend_name = "memory" if self.dry_run else settings.delivery.backend
            secret = link_secret(settings, offline=backend_name in OFFLINE_BACKENDS)
            dkim = chosen.dkim_signer(_dkim(settings))  # the headers this provider keeps
            if backend_name not in OFFLINE_BACKENDS:
                require_public_links(settings)
            plan = self._plan(source)
            if plan.empty_skip and not plan.weekly_papers(readers, ledger):
                reason = (
                    f"no papers for {self.date} from {plan.day.source} (digest.empty_day: skip)"
                )
                log.info("%s", reason)
                if not self.dry_run:  # status then knows the day was not forgotten
                    skipped_run = ledger.start_run(self.date, command=command, owner=owner)
                    ledger.finish_run(skipped_run, {}, outcome="empty day")
                return RunReport(self.date, skipped_reason=reason)
            total = self.census.weekly if plan.empty_skip else self.census.due
            if on_start is not None:
                on_start(total)
            log.info("sending to %d subscribers", total)
            progress_log = ProgressLog(total)
            if not self.dry_run:
                run_id = ledger.start_run(self.date, command=command, owner=owner)
            options = SendOptions(
                date=self.date,
                backend=chosen,
                sender=settings.sender,
                values_for=values_maker(
                    base_url=settings.digest.base_url,
                    secret=secret,
                    list_id=settings.sender.list_id,
                    date=self.date,
                ),
                now=self.now,
                dkim=dkim,
                stop=stop,
                progress=_chain(progress_log, progress),
                refused=None if self.dry_run else self._bounces,
                owner=owner,
                lease=settings.delivery.claim_lease,
                retry_failed=retry_failed,
                wait_for_others=settings.delivery.deadline if wait_for_others else 0.0,
            )
            delivery = Delivery(plan.variants, options, None if self.dry_run else ledger)
            report = delivery.run(plan.assigned(readers, ledger))
            progress_log.log_line()
        except BaseException:
            if run_id is not None:
                with contextlib.suppress(NewsletterError):
                    ledger.finish_run(run_id, {}, outcome="crashed")
            raise
        finally:
            if backend is None:
                chosen.close()
        if not self.dry_run:
            keys = {
                rp.paper.key
                for index, sent in delivery.delivered.items()
                if sent
                for rp in plan.variants[index].digest.papers
            }
            ledger.record_papers(self.date, keys)
        if run_id is not None:
            ledger.finish_run(run_id, report.counts, outcome=run_outcome(report))
        return report

    def _bounces(self, refused: Sequence[SendResult]) -> None:
        """Permanent failures at submission count as hard bounces (newsletter.bounces)."""
        record_submission_failures(self.ledger, self.settings, self.date, refused)

    def _plan(self, source: str | None) -> _Plan:
        """Fetch (and keep) the day; the planners of the daily and the weekly digests,
        with the readers who left feedback bucketed."""
        settings, ledger, date = self.settings, self.ledger, self.date
        day = fetch_day(source or settings.source.default, date, settings=settings.source)
        if not self.dry_run:
            ledger.save_day(day, prepared_at=self.now())
        tools = stage_tools(settings)
        exclude: Collection[str] = ()
        if settings.digest.dedupe_days > 0:
            exclude = ledger.recent_paper_keys(date, settings.digest.dedupe_days)
        _, daily = day_planner(
            day, **tools, exclude=exclude, web_url=web_url(settings, date), feedback=self.feedback
        )
        daily_sent = ledger.received_among((p.key for p in day.papers), before=date)
        steered = self.census.steered
        daily.steer((s, daily_sent.get(email_key(s.email))) for s in steered if not _weekly(s))
        weekly: Planner | None = None
        if self.census.weekly:
            start = date - dt.timedelta(days=WEEK_DAYS - 1)
            days = [s.day for s in ledger.load_days(start, date - dt.timedelta(days=1))]
            weekly = week_planner([*days, day], **tools, date=date, feedback=self.feedback)
            readers = [s for s in steered if _weekly(s)]
            sent = ledger.received_among(
                weekly.pool_keys, emails=[s.email for s in readers], before=date
            )
            weekly.steer((s, sent.get(email_key(s.email))) for s in readers)
        empty_skip = day.is_empty and settings.digest.empty_day == "skip"
        return _Plan(day, daily, daily_sent, weekly, empty_skip)


def _weekly(subscriber: Subscriber) -> bool:
    return subscriber.frequency == "weekly"


@dataclass
class _Plan:
    """A day's planners: each reader's variant, found batch by batch in the send pass."""

    day: Day
    daily: Planner
    daily_sent: Mapping[str, Collection[str]]
    """Papers of the day each reader was sent before (few rows: read once)."""
    weekly: Planner | None
    empty_skip: bool
    """The day has no papers and ``digest.empty_day`` is ``skip``: weekly editions only."""
    variants: list[Variant] = field(default_factory=list)
    """Every variant the send pass found (daily and weekly), by index."""
    _index: dict[tuple[bool, int], int] = field(default_factory=dict)

    def assigned(self, readers: Readers, state: State) -> Iterator[list[tuple[int, Subscriber]]]:
        """The send pass: each batch of readers with their variant's index."""
        for batch in readers.due(state):
            yield self._assign(batch, state)

    def weekly_papers(self, readers: Readers, state: State) -> bool:
        """Whether some weekly reader's edition has papers (the whole list is assigned)."""
        if self.weekly is None:
            return False
        for batch in readers.due(state):
            self._assign([s for s in batch if _weekly(s)], state)
        return any(v.digest.papers for v in self.weekly.variants)

    def _assign(self, batch: Sequence[Subscriber], state: State) -> list[tuple[int, Subscriber]]:
        out: list[tuple[int, Subscriber]] = []
        weekly = [s for s in batch if _weekly(s)]
        sent: Mapping[str, Collection[str]] = {}
        if weekly and self.weekly is not None:
            emails = [s.email for s in weekly]
            sent = state.received_among(self.weekly.pool_keys, emails=emails, before=self.day.date)
        for subscriber in batch:
            key = email_key(subscriber.email)
            if _weekly(subscriber) and self.weekly is not None:
                out.append((self._global(True, self.weekly, subscriber, sent.get(key)), subscriber))
            elif not _weekly(subscriber) and not self.empty_skip:
                found = self.daily_sent.get(key)
                out.append((self._global(False, self.daily, subscriber, found), subscriber))
        return out

    def _global(
        self, weekly: bool, planner: Planner, subscriber: Subscriber, sent: Collection[str] | None
    ) -> int:
        local = planner.variant_of(subscriber, sent)
        index = self._index.get((weekly, local))
        if index is None:
            index = self._index[(weekly, local)] = len(self.variants)
            self.variants.append(planner.variants[local])
        return index


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


def run_outcome(report: RunReport) -> str:
    """``ok``, ``failed`` (something failed for good) or ``transient`` (retry later)."""
    if report.failed_permanently:
        return "failed"
    if report.failed:
        return "transient"
    return "ok"
