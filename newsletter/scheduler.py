"""The daily run: APScheduler (3.x) wired to the one function ``newsletter send`` calls.

This module only wires. What a run does lives in ``newsletter.send.send_day``; what was
sent lives in the delivery ledger, which is the final guard against sending twice. Here:

- **When.** One :class:`DailyTrigger` (a ``CronTrigger`` from ``schedule.time`` and
  ``schedule.days``, in an explicit ``ZoneInfo``) per time zone present in the subscriber
  list: subscribers without a ``timezone`` are in ``schedule.timezone``. The daemon
  re-reads the list every ZONE_SYNC_SECONDS and on SIGHUP, adding and removing zone jobs
  (a new zone starts at its next run). Days are passed
  to APScheduler as *names* ("mon,tue,..."): APScheduler 3 numbers Monday 0 where cron
  numbers Sunday 0, so numbers are refused.
- **DST.** 08:00 local stays 08:00 local across the changes. A time that does not exist
  on the spring-forward day (02:30 in Europe/Berlin on 2026-03-29) fires once, one hour
  later by the wall clock (03:30 CEST, the instant 02:30 CET would have been). A time that
  happens twice on the fall-back day (02:30 in Berlin on 2026-10-25) fires once, at its
  first occurrence: :class:`DailyTrigger` never fires twice on one local date.
- **Misfires.** Jobs have ``misfire_grace_time = schedule.misfire_grace_seconds``,
  ``coalesce=True`` and ``max_instances=1``. A daemon that was down at the run time and
  comes back within the grace window schedules the missed run at once (unless the ledger
  says that day is done for that zone), and coalescing makes several missed runs one.
  Only runs due after a daemon *first* started against the state database are caught
  up: the first start of a new install sends nothing that was due before it
  (``newsletter status`` shows a pending catch-up before it is sent).
- **Which papers.** :func:`paper_date`: the run's local date ("today") or the weekday
  before it ("previous_weekday").
- **A late source.** Before sending, the source is asked whether the day's list is out;
  if not, it is asked again with exponential backoff until ``schedule.poll_until`` local
  time. Then the send goes ahead and ``digest.empty_day`` decides (skip, or a short note);
  the log says why nothing went out (a weekend, a holiday, a source that never published).
- **Stopping.** :func:`run_daemon` takes the single-instance lock, blocks SIGTERM/SIGINT
  and waits for them; on one it sets the ``stop`` event handed to ``send_day`` (which
  finishes the message in flight and returns), lets the running job end, and returns 0.

The job is called as ``job(settings, paper_date, only_timezone=zone, stop=stop, now=clock)``;
the default, :func:`default_job`, hands ``send_day`` the due subscribers of that zone
(:func:`in_zone`), so each zone's run sends only to its own subscribers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter.config import ScheduleSettings, Settings, config_folder
from newsletter.errors import ConfigError, NewsletterError, SourceError
from newsletter.locking import InstanceLock, lock_path_for
from newsletter.logs import run_context
from newsletter.models import Subscriber
from newsletter.send import RunReport, load_due_subscribers, send_day
from newsletter.sources import fetch_day
from newsletter.weekly import default_weekday

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in APScheduler's order (Monday is 0 there, Sunday 6)."""

FULL_DAY_NAMES: tuple[str, ...] = tuple(
    f"{name}day" for name in ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")
)

POLL_FIRST_SECONDS = 120.0
"""First pause before asking a late source again."""

POLL_FACTOR = 2.0
"""Each pause is this many times the one before..."""

POLL_MAX_SECONDS = 1800.0
"""...up to this many seconds."""

SIGNAL_POLL_SECONDS = 0.5
"""How often the daemon's main loop looks at its stop event between signals."""

STOP_SIGNALS: frozenset[signal.Signals] = frozenset({signal.SIGTERM, signal.SIGINT})
"""Signals that stop the daemon cleanly."""

RELOAD_SIGNAL = signal.SIGHUP
"""The signal that makes the daemon re-read the subscriber list's time zones."""

DAEMON_SIGNALS: frozenset[signal.Signals] = STOP_SIGNALS | {RELOAD_SIGNAL}
"""Every signal the daemon waits for."""

WORKERS_MIN = 4
"""Threads running jobs, at least (a job waiting for a late source holds one)."""

DAEMON_BEAT_SECONDS = 60.0
"""How often the daemon records that it is alive (``status`` reports one that stopped)."""

ZONE_SYNC_SECONDS = 900.0
"""How often the daemon re-reads the subscriber list for time zones come or gone."""

JOB_ID_PREFIX = "daily:"
"""APScheduler job ids are this plus the zone name."""

PAPER_DAYS = ("today", "previous_weekday")

Clock = Callable[[], dt.datetime]
"""Returns the current time as an aware datetime."""

Job = Callable[..., object]
"""``send_day`` or a stand-in: ``job(settings, date, *, only_timezone, stop, now)``."""

Probe = Callable[[Settings, dt.date], bool]
"""Has the source published the papers of this date? (False when not yet, or failing.)"""

DoneCheck = Callable[[dt.date, str], bool]
"""Does the ledger say the papers of this date went out to this zone already?"""

Wait = Callable[[float], bool]
"""Pause for so many seconds; True when asked to stop meanwhile."""

AfterRun = Callable[[Settings, dt.date], object]
"""Called with the paper date after a run's send returned (the archive refresh)."""

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    """The default clock."""
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- settings


def parse_time(text: str, *, what: str = "schedule.time") -> dt.time:
    """``"08:00"`` -> ``time(8, 0)``; anything else is a ConfigError naming the setting."""
    try:
        hours, minutes = text.strip().split(":")
        value = dt.time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a time of day as HH:MM") from None
    return value


def zone_info(name: str, *, what: str = "schedule.timezone") -> ZoneInfo:
    """The IANA zone ``name`` or a ConfigError naming the setting."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{what}: {name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None


def day_of_week(days: Iterable[str]) -> str:
    """The APScheduler ``day_of_week`` expression for ``days``, by name only.

    Items are day names ("mon", "Tuesday") or ranges of names ("mon-fri"). Numbers are
    refused: APScheduler 3 counts Monday as 0, cron counts Sunday as 0, and a "1-5"
    meant for cron would silently move every run by a day.
    """
    chosen: set[int] = set()
    for item in days:
        text = str(item).strip().lower()
        if not text:
            continue
        ends = [part.strip() for part in text.split("-")]
        if len(ends) > 2:
            raise ConfigError(f"schedule.days: {item!r} is not a day name or a range like mon-fri")
        numbers = [_day_number(part, item) for part in ends]
        first, last = numbers[0], numbers[-1]
        span = range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
        chosen.update(span)
    if not chosen:
        raise ConfigError("schedule.days: no day given (e.g. mon-fri)")
    return ",".join(DAY_NAMES[n] for n in sorted(chosen))


def _day_number(part: str, item: str) -> int:
    if part.isdigit():
        raise ConfigError(
            f"schedule.days: {item!r}: use day names (mon..sun), not numbers "
            "(APScheduler counts Monday as 0, cron counts Sunday as 0)"
        )
    for number, full in enumerate(FULL_DAY_NAMES):
        if len(part) >= 3 and full.startswith(part):
            return number
    raise ConfigError(f"schedule.days: {item!r}: {part!r} is not a day name (mon..sun)")


def paper_date(run_date: dt.date, paper_day: str) -> dt.date:
    """Which day's papers a run on ``run_date`` (local) sends.

    ``"today"``: the run's own date. ``"previous_weekday"``: the last Monday-to-Friday
    date before it (a Monday run sends Friday's papers, so does a Sunday run).
    """
    if paper_day == "today":
        return run_date
    if paper_day == "previous_weekday":
        day = run_date - dt.timedelta(days=1)
        while day.weekday() >= 5:
            day -= dt.timedelta(days=1)
        return day
    raise ConfigError(f"schedule.paper_day: {paper_day!r} is not one of {' | '.join(PAPER_DAYS)}")


# --------------------------------------------------------------------------- zones


def subscriber_zone(subscriber: Subscriber, default: str) -> str:
    """The zone whose job sends to ``subscriber``: their own, else the schedule's."""
    return subscriber.timezone or default


def zones_for(subscribers: Sequence[Subscriber], default: str) -> tuple[str, ...]:
    """One entry per time zone present in the list (the schedule's zone first).

    With no subscribers known, the schedule's zone alone. Every zone is checked, so a
    misspelt one fails at start-up rather than at 08:00.
    """
    zone_info(default)
    found = {subscriber_zone(s, default) for s in subscribers if s.active}
    for name in found:
        zone_info(name, what="subscriber timezone")
    if not found:
        return (default,)
    rest = sorted(found - {default})
    return (default, *rest) if default in found else tuple(rest)


def in_zone(subscribers: Iterable[Subscriber], zone: str, *, default: str) -> list[Subscriber]:
    """The subscribers the ``zone`` job sends to (what ``send_day(only_timezone=zone)`` uses)."""
    return [s for s in subscribers if subscriber_zone(s, default) == zone]


# --------------------------------------------------------------------------- triggers


class DailyTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler ships no type hints
    """A ``CronTrigger`` that fires at most once per local date.

    Plain ``CronTrigger`` fires twice when the run time falls in the hour a fall-back
    repeats (02:30 on 2026-10-25 in Europe/Berlin); a daily digest must not.
    """

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        nxt: dt.datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if previous_fire_time is None:
            return nxt
        last_day = previous_fire_time.astimezone(self.timezone).date()
        if nxt is not None and nxt.astimezone(self.timezone).date() == last_day:
            next_midnight = dt.datetime.combine(
                last_day + dt.timedelta(days=1), dt.time(), self.timezone
            )
            nxt = super().get_next_fire_time(None, next_midnight)
        return nxt


def run_days(schedule: ScheduleSettings) -> tuple[str, ...]:
    """The days the daemon runs: ``schedule.days`` and ``schedule.weekly_day`` (weekly
    editions); a weekly reader's other weekday is served on the next of these days."""
    weekly = default_weekday(schedule.weekly_day, schedule.days)
    names = day_of_week([*schedule.days, weekly]).split(",")
    return tuple(names)


def build_trigger(schedule: ScheduleSettings, zone: str) -> DailyTrigger:
    """The trigger of the ``zone`` job: ``schedule.time`` on :func:`run_days` in ``zone``."""
    at = parse_time(schedule.time)
    return DailyTrigger(
        hour=at.hour,
        minute=at.minute,
        second=0,
        day_of_week=",".join(run_days(schedule)),
        timezone=zone_info(zone),
    )


def fire_times(trigger: DailyTrigger, *, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every fire time in ``[start, end]``, oldest first."""
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, fold ignored.
    out: list[dt.datetime] = []
    end = end.astimezone(dt.UTC)
    nxt = trigger.get_next_fire_time(None, start.astimezone(dt.UTC))
    while nxt is not None and nxt.astimezone(dt.UTC) <= end:
        out.append(nxt)
        nxt = trigger.get_next_fire_time(nxt, nxt)
    return out


def last_fire_time(
    trigger: DailyTrigger, now: dt.datetime, *, within: dt.timedelta
) -> dt.datetime | None:
    """The latest fire time in ``[now - within, now]``, if any."""
    now = now.astimezone(dt.UTC)
    times = fire_times(trigger, start=now - within, end=now)
    return times[-1] if times else None


def missed_runs(
    trigger: DailyTrigger, now: dt.datetime, *, grace: float, since: dt.datetime | None
) -> list[dt.datetime]:
    """Fire times within ``grace`` seconds before ``now``, and not before ``since`` (the
    daemon's first start against this state database): the runs a start catches up."""
    start = now - dt.timedelta(seconds=grace)
    if since is not None:
        start = max(start, since.astimezone(dt.UTC))
    return fire_times(trigger, start=start, end=now)


@dataclass(frozen=True, slots=True)
class NextRun:
    """When a zone's job runs next, and which day's papers it will send."""

    zone: str
    at: dt.datetime
    paper_date: dt.date


def next_runs(settings: Settings, zones: Sequence[str], *, now: dt.datetime) -> tuple[NextRun, ...]:
    """The next run of every zone's job after ``now``, soonest first."""
    out = []
    for zone in zones:
        at = build_trigger(settings.schedule, zone).get_next_fire_time(None, now)
        if at is not None:
            out.append(NextRun(zone, at, paper_date(at.date(), settings.schedule.paper_day)))
    return tuple(sorted(out, key=lambda run: (run.at, run.zone)))


def skipped_days(after: dt.date, before: dt.date) -> list[str]:
    """Names of the days strictly between two run dates (the days nothing goes out)."""
    out: list[str] = []
    day = after + dt.timedelta(days=1)
    while day < before and len(out) < len(DAY_NAMES):
        out.append(DAY_NAMES[day.weekday()])
        day += dt.timedelta(days=1)
    return out


# --------------------------------------------------------------------------- the job


def source_has_papers(settings: Settings, date: dt.date) -> bool:
    """The default probe: ask the configured source for ``date``'s papers."""
    return not fetch_day(settings.source.default, date, settings=settings.source).is_empty


def default_job(
    settings: Settings, date: dt.date, *, only_timezone: str | None = None, **options: Any
) -> RunReport:
    """``newsletter.send.send_day`` (what ``newsletter send`` calls), for one zone.

    With ``only_timezone``, the subscribers are the due ones (file + preference overlay)
    that :func:`subscriber_zone` puts in that zone; the ledger inside ``send_day`` then
    skips whoever has the day already.
    """
    if only_timezone is not None and "subscribers" not in options:
        due = load_due_subscribers(settings)
        options["subscribers"] = in_zone(due, only_timezone, default=settings.schedule.timezone)
    options.setdefault("command", "run")
    options.setdefault("wait_for_others", True)
    # on schedule.weekly_day outside schedule.days only the weekly editions go out
    daily_days = day_of_week(settings.schedule.days).split(",")
    options.setdefault("daily", DAY_NAMES[date.weekday()] in daily_days)
    options.setdefault("run_days", run_days(settings.schedule))
    return send_day(settings, date, **options)


def never_done(date: dt.date, zone: str) -> bool:
    """A DoneCheck for when there is no ledger to ask: send_day's ledger still guards."""
    return False


@dataclass
class DailyRun:
    """What APScheduler calls for one zone: pick the date, wait for the source, send."""

    settings: Settings
    zone: str
    trigger: DailyTrigger
    job: Job
    clock: Clock
    probe: Probe
    is_done: DoneCheck
    stop: threading.Event
    wait: Wait
    after: AfterRun | None = None

    def __call__(self) -> None:
        with run_context():
            try:
                self.run()
            except NewsletterError as exc:
                log.error("run failed: %s", exc, extra={"data": {"zone": self.zone}})
            except Exception:
                log.exception("run crashed", extra={"data": {"zone": self.zone}})

    def run(self) -> object | None:
        """One run; returns the job's report, or None when nothing was sent."""
        schedule = self.settings.schedule
        tz = zone_info(self.zone)
        now = self.clock().astimezone(tz)
        grace = dt.timedelta(seconds=schedule.misfire_grace_seconds)
        fired = last_fire_time(self.trigger, now, within=grace) or now
        run_date = fired.astimezone(tz).date()
        day = paper_date(run_date, schedule.paper_day)
        data = {"zone": self.zone, "paper_date": day.isoformat()}
        if self.is_done(day, self.zone):
            log.info(
                "papers of %s already went out to this zone: nothing to do",
                day,
                extra={"data": data},
            )
            return None
        self.wait_for_source(day, run_date, tz, data)
        if self.stop.is_set():
            log.info("stopping: no send started", extra={"data": data})
            return None
        log.info("sending the papers of %s", day, extra={"data": data})
        report = self.job(
            self.settings, day, only_timezone=self.zone, stop=self.stop, now=self.clock
        )
        log.info("run finished: %s", describe_report(report), extra={"data": data})
        if self.after is not None and not self.stop.is_set():
            try:
                self.after(self.settings, day)
            except Exception:  # the send went out; a failing follow-up must not hide that
                log.exception("after the run: follow-up failed", extra={"data": data})
        self.log_next(fired)
        return report

    def wait_for_source(
        self, day: dt.date, run_date: dt.date, tz: ZoneInfo, data: dict[str, str]
    ) -> bool:
        """Ask the source until it has ``day``'s papers or ``poll_until`` passes.

        True when the papers are there. False when they are not (the log says why, and
        the empty-day policy applies in the send) or when asked to stop.
        """
        deadline = dt.datetime.combine(
            run_date, parse_time(self.settings.schedule.poll_until, what="schedule.poll_until"), tz
        )
        policy = self.settings.digest.empty_day
        outcome = "nothing goes out" if policy == "skip" else "a short note goes out"
        source = self.settings.source.default
        pause = POLL_FIRST_SECONDS
        checks = 0
        while True:
            checks += 1
            if self._probe(day, data):
                if checks > 1:
                    log.info(
                        "the source published %s's papers (check %d)",
                        day,
                        checks,
                        extra={"data": data},
                    )
                return True
            if day.weekday() >= 5:
                log.info(
                    "%s is a %s: %s publishes no list on weekends; empty-day policy %r: %s",
                    day,
                    day.strftime("%A"),
                    source,
                    policy,
                    outcome,
                    extra={"data": data},
                )
                return False
            left = (deadline.astimezone(dt.UTC) - self.clock().astimezone(dt.UTC)).total_seconds()
            if left <= 0:
                log.warning(
                    "%s had no papers for %s by %s %s (a holiday, or a late list); "
                    "empty-day policy %r: %s",
                    source,
                    day,
                    deadline.strftime("%H:%M"),
                    self.zone,
                    policy,
                    outcome,
                    extra={"data": data},
                )
                return False
            step = min(pause, left)
            log.info(
                "%s has no papers for %s yet; asking again in %.0f s",
                source,
                day,
                step,
                extra={"data": data},
            )
            if self.wait(step):
                return False
            pause = min(pause * POLL_FACTOR, POLL_MAX_SECONDS)

    def _probe(self, day: dt.date, data: dict[str, str]) -> bool:
        try:
            return self.probe(self.settings, day)
        except SourceError as exc:
            log.warning("source check failed: %s", exc, extra={"data": data})
            return False

    def log_next(self, fired: dt.datetime) -> None:
        nxt = self.trigger.get_next_fire_time(fired, self.clock())
        if nxt is None:
            return
        skipped = skipped_days(fired.date(), nxt.date())
        why = f" (nothing on {', '.join(skipped)}: not in schedule.days)" if skipped else ""
        log.info("next run %s%s", format_when(nxt), why, extra={"data": {"zone": self.zone}})


def describe_report(report: object) -> str:
    """A one-line summary of whatever the job returned."""
    if report is None:
        return "nothing sent"
    summary = getattr(report, "summary", None)
    if callable(summary):
        return str(summary())
    counts = getattr(report, "counts", None)
    if isinstance(counts, dict):
        return " ".join(f"{key}={value}" for key, value in counts.items())
    return str(report)


def format_when(at: dt.datetime) -> str:
    """``Mon 2026-03-30 08:00 CEST``."""
    return at.strftime("%a %Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------- wiring


@dataclass
class Wiring:
    """What every zone's job shares; adds, removes and catches up the zone jobs."""

    settings: Settings
    job: Job = default_job
    clock: Clock = utc_now
    probe: Probe = source_has_papers
    is_done: DoneCheck = never_done
    stop: threading.Event = field(default_factory=threading.Event)
    wait: Wait | None = None
    after: AfterRun | None = None
    first_started: dt.datetime | None = None
    """When a daemon first started against this state database: no catch-up of runs
    that were due before it (None: no limit)."""

    @property
    def grace(self) -> int:
        return max(1, self.settings.schedule.misfire_grace_seconds)

    def new_scheduler(self, zones: Sequence[str]) -> BackgroundScheduler:
        workers = max(WORKERS_MIN, len(zones) + 1)
        return BackgroundScheduler(
            timezone=zone_info(self.settings.schedule.timezone),
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.grace},
        )

    def build(self, subscribers: Sequence[Subscriber] = ()) -> BackgroundScheduler:
        """A scheduler (not started) with one job per zone of ``subscribers``, catching up
        a run missed within grace (and not before ``first_started``)."""
        # checked now, not at the first run's source poll hours later
        parse_time(self.settings.schedule.poll_until, what="schedule.poll_until")
        zones = zones_for(subscribers, self.settings.schedule.timezone)
        scheduler = self.new_scheduler(zones)
        for zone in zones:
            self.add_zone(scheduler, zone, catch_up=True)
        return scheduler

    def daily_run(self, zone: str) -> DailyRun:
        return DailyRun(
            settings=self.settings,
            zone=zone,
            trigger=build_trigger(self.settings.schedule, zone),
            job=self.job,
            clock=self.clock,
            probe=self.probe,
            is_done=self.is_done,
            stop=self.stop,
            wait=self.wait if self.wait is not None else self.stop.wait,
            after=self.after,
        )

    def add_zone(self, scheduler: BackgroundScheduler, zone: str, *, catch_up: bool) -> None:
        """Add the zone's job; with ``catch_up``, start at a run missed within the grace.

        The job then starts at the *oldest* missed run: APScheduler coalesces all of them
        into one call, and checks that call against the grace itself.
        """
        run = self.daily_run(zone)
        options: dict[str, Any] = {}
        now = self.clock().astimezone(dt.UTC)
        missed = missed_runs(run.trigger, now, grace=self.grace, since=self.first_started)
        data = {"data": {"zone": zone}}
        if catch_up and missed:
            day = paper_date(missed[-1].date(), self.settings.schedule.paper_day)
            if self.is_done(day, zone):
                log.info("the run of %s went out already", format_when(missed[-1]), extra=data)
            else:
                log.info(
                    "missed the run of %s (not running then): catching up now",
                    format_when(missed[-1]),
                    extra=data,
                )
                options["next_run_time"] = missed[0]
        scheduler.add_job(
            run,
            run.trigger,
            id=JOB_ID_PREFIX + zone,
            name=f"daily digest ({zone})",
            misfire_grace_time=self.grace,
            coalesce=True,
            max_instances=1,
            **options,
        )

    def sync(
        self, scheduler: BackgroundScheduler, subscribers: Sequence[Subscriber]
    ) -> tuple[list[str], list[str]]:
        """One job per zone of the current list: returns the zones (added, removed).

        A zone new to the list starts with its next run, not with a catch-up.
        """
        wanted = zones_for(subscribers, self.settings.schedule.timezone)
        have = {
            job.id[len(JOB_ID_PREFIX) :]
            for job in scheduler.get_jobs()
            if job.id.startswith(JOB_ID_PREFIX)
        }
        added = [zone for zone in wanted if zone not in have]
        removed = sorted(have - set(wanted))
        for zone in added:
            self.add_zone(scheduler, zone, catch_up=False)
        for zone in removed:
            scheduler.remove_job(JOB_ID_PREFIX + zone)
        if added or removed:
            log.info(
                "time zones: %s",
                ", ".join([*(f"+{z}" for z in added), *(f"-{z}" for z in removed)]),
            )
        return added, removed


def run_daemon(
    settings: Settings,
    *,
    job: Job = default_job,
    clock: Clock = utc_now,
    subscribers: Sequence[Subscriber] = (),
    reload: Callable[[], Sequence[Subscriber]] | None = None,
    probe: Probe = source_has_papers,
    is_done: DoneCheck = never_done,
    stop: threading.Event | None = None,
    lock_path: str | os.PathLike[str] | None = None,
    signals: Iterable[signal.Signals] = DAEMON_SIGNALS,
    after: AfterRun | None = None,
    started: Callable[[], dt.datetime | None] | None = None,
    beat: Callable[[], object] | None = None,
    stopped: Callable[[], object] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code, 0.

    With ``reload`` (a fresh subscriber list), the zone jobs follow the list: every
    ZONE_SYNC_SECONDS and on SIGHUP. Raises :class:`~newsletter.locking.AlreadyRunning`
    when another daemon holds the lock. Call it from the main thread when ``signals`` is
    not empty.

    Once the lock is held, ``started()`` records the start in the state database and
    returns when a daemon *first* started against it (runs due before that are not
    caught up); ``beat()`` runs every DAEMON_BEAT_SECONDS (the liveness ``status``
    checks) and ``stopped()`` after a clean stop.
    """
    wiring = Wiring(
        settings,
        job=job,
        clock=clock,
        probe=probe,
        is_done=is_done,
        stop=stop if stop is not None else threading.Event(),
        after=after,
    )
    wanted = set(signals)
    lock = InstanceLock(
        lock_path
        if lock_path is not None
        else lock_path_for(settings.state, base=config_folder(settings))
    )
    # Block the signals before taking the lock and before any thread exists: every thread
    # inherits the mask, so the signals wait for sigtimedwait() below instead of
    # interrupting a send, and whoever sees the lock taken may signal us safely.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, wanted) if wanted else None
    try:
        with lock:
            if started is not None:
                wiring.first_started = started()
            scheduler = wiring.build(subscribers)
            scheduler.start()
            log.info("daemon started", extra={"data": {"pid": os.getpid(), "lock": str(lock.path)}})
            _log_next_runs(settings, subscribers, clock())

            def resync() -> None:
                if reload is None:
                    return
                try:
                    current = reload()
                    wiring.sync(scheduler, current)
                except NewsletterError as exc:
                    log.warning("subscriber list not reloaded, keeping the jobs: %s", exc)

            if reload is not None:
                scheduler.add_job(
                    resync, "interval", seconds=ZONE_SYNC_SECONDS, id="zones", name="zone sync"
                )
            if beat is not None:
                scheduler.add_job(
                    _quietly(beat),
                    "interval",
                    seconds=DAEMON_BEAT_SECONDS,
                    id="beat",
                    name="liveness",
                )
            while not wiring.stop.is_set():
                if not wanted:
                    wiring.stop.wait(SIGNAL_POLL_SECONDS)
                    continue
                got = signal.sigtimedwait(wanted, SIGNAL_POLL_SECONDS)
                if got is None:
                    continue
                if got.si_signo == RELOAD_SIGNAL:
                    log.info("SIGHUP: reloading the subscriber list's time zones")
                    resync()
                    continue
                name = signal.Signals(got.si_signo).name
                log.info("%s: taking no new work; finishing the message in flight", name)
                wiring.stop.set()
            scheduler.pause()
            scheduler.shutdown(wait=True)
            if stopped is not None:
                _quietly(stopped)()
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    log.info("daemon stopped")
    return 0


def _quietly(action: Callable[[], object]) -> Callable[[], None]:
    """``action``, logging a NewsletterError instead of raising it (a liveness record
    that cannot be written must not stop the daemon)."""

    def run() -> None:
        try:
            action()
        except NewsletterError as exc:
            log.warning("state database: %s", exc)

    return run


def _log_next_runs(settings: Settings, subscribers: Sequence[Subscriber], now: dt.datetime) -> None:
    zones = zones_for(subscribers, settings.schedule.timezone)
    for upcoming in next_runs(settings, zones, now=now):
        log.info(
            "next run %s, papers of %s",
            format_when(upcoming.at),
            upcoming.paper_date,
            extra={"data": {"zone": upcoming.zone}},
        )
