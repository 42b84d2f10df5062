"""``newsletter run``, ``newsletter status`` and ``newsletter archive``.

The commands reach the rest of the system (the ledger, the preference store, the subscriber
list, the send, the renderer) through one :class:`Ops` value. The defaults import those
modules when first used; tests hand the commands their own ``Ops`` as click's ``obj``
(``CliRunner().invoke(cli, [...], obj=Ops(...))``).

The defaults: the subscriber list through ``newsletter.send.load_due_subscribers`` (file
plus preference overlay), the delivery ledger (``newsletter.ledger``: the newest day's
counts for ``status``; a zone's day is done when each of its subscribers' rows is sent or
failed for good; ``archive`` takes the days with a sent row), ``newsletter.prefs`` for the
suppressed count; archive pages are ``newsletter.pipeline.plan_page`` of the day's papers as
the state database kept them when the day was prepared for sending.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter import archive as archive_mod
from newsletter import scheduler
from newsletter.bounces import rates as bounce_rates
from newsletter.cli.options import DATE, config_option, count
from newsletter.config import Settings, config_folder, load_settings, secret_values
from newsletter.errors import NewsletterError
from newsletter.locking import holder, lock_path_for
from newsletter.logs import LOG_FORMATS, setup_logging
from newsletter.models import Day, Subscriber, email_key
from newsletter.pipeline import plan_page
from newsletter.send import load_due_subscribers
from newsletter.state import RunRecord, State
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy
from newsletter.weekly import WEEKDAYS, default_weekday

T = TypeVar("T")

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class LastRun:
    """The newest run the ledger knows of, as ``status`` shows it."""

    date: dt.date
    """The date of the papers it sent."""
    run_id: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    """The day's recipients by outcome: sent, failed_permanent, failed_transient, pending."""
    outcome: str | None = None
    """The run record's outcome: ok, transient, failed, crashed (None: still running)."""
    run_counts: Mapping[str, int] = field(default_factory=dict)
    """What the run itself reported, by SendStatus."""


def _read(settings: Settings, read: Callable[[State], T], default: T) -> T:
    """``read(state)`` of the state database, or ``default`` when there is none (it is
    never created here: ``status`` only reads)."""
    state = State.open_existing(settings.state)
    if state is None:
        return default
    with state:
        return read(state)


def ledger_days(settings: Settings) -> list[dt.date]:
    """Every day the ledger has a row for, oldest first."""
    return _read(settings, State.days, [])


def ledger_last_run(settings: Settings) -> LastRun | None:
    """The newest day in the ledger: recipients by outcome, first and last row times, and
    the newest run record of that day (its id and times, when runs were recorded)."""
    return _read(settings, _last_run, None)


def _last_run(state: State) -> LastRun | None:
    days = state.days()
    record = state.last_run()
    if record is not None and (not days or record.day >= days[-1]):
        day = record.day
    elif days:
        day = days[-1]
        record = None
    else:
        return None
    counts = state.detailed_counts(day)
    if record is not None:
        return LastRun(
            date=day,
            run_id=record.id,
            counts=counts,
            started_at=_stamp(record.started_at),
            finished_at=_stamp(record.finished_at) if record.finished_at else None,
            outcome=record.outcome,
            run_counts=dict(record.counts),
        )
    first, last = state.day_span(day)
    return LastRun(date=day, counts=counts, started_at=_stamp(first), finished_at=_stamp(last))


def _stamp(text: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def ledger_final_recipients(settings: Settings, date: dt.date) -> set[str]:
    """Addresses (casefolded) with nothing left to do for the papers of ``date``: sent,
    or failed for good."""
    return _read(settings, lambda state: state.final_recipients(date), set())


def ledger_sent_days(settings: Settings) -> list[dt.date]:
    """Every date whose papers went out to someone."""
    return _read(settings, State.sent_days, [])


def prefs_suppressed(settings: Settings) -> int:
    """How many addresses are suppressed (unsubscribed, bounced, complained)."""
    return _read(settings, State.suppressed_count, 0)


DAEMON_KEY = "daemon"
"""state_meta key of the daemon's liveness record (JSON: host, pid, times)."""

FIRST_START_KEY = "daemon.first_started"
"""state_meta key: when a daemon first started against this database (never replaced)."""

DAEMON_STALE_SECONDS = 3 * scheduler.DAEMON_BEAT_SECONDS
"""A daemon on another host whose record is older than this is taken for dead."""

DUE_SLACK = dt.timedelta(minutes=15)
"""A scheduled run counts as due-but-unsent only this long after its time."""

LOOKBACK = dt.timedelta(days=7)
"""How far back ``status`` looks for a scheduled day that was not sent."""


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    """What the daemon last recorded about itself in the state database."""

    host: str
    pid: int
    started_at: dt.datetime
    beat_at: dt.datetime
    stopped_at: dt.datetime | None
    first_started: dt.datetime | None


def daemon_record(settings: Settings) -> DaemonRecord | None:
    """The daemon's liveness record, or None when no daemon ever started here."""

    def read(state: State) -> tuple[str | None, str | None]:
        return state.meta(DAEMON_KEY), state.meta(FIRST_START_KEY)

    unknown: tuple[str | None, str | None] = (None, None)
    raw, first = _read(settings, read, unknown)
    if raw is None:
        return None
    data = json.loads(raw)
    return DaemonRecord(
        host=str(data["host"]),
        pid=int(data["pid"]),
        started_at=dt.datetime.fromisoformat(data["started_at"]),
        beat_at=dt.datetime.fromisoformat(data["beat_at"]),
        stopped_at=dt.datetime.fromisoformat(data["stopped_at"]) if data["stopped_at"] else None,
        first_started=dt.datetime.fromisoformat(first) if first else None,
    )


def record_daemon(settings: Settings, event: str, now: dt.datetime) -> dt.datetime | None:
    """Record the daemon's ``start``, ``beat`` or ``stop``; returns its first start."""
    stamp = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    with State(settings.state) as state:
        first = state.set_meta(FIRST_START_KEY, stamp, replace=False)
        raw = state.meta(DAEMON_KEY)
        data = json.loads(raw) if raw and event != "start" else {}
        if event == "start" or not data:
            data = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": stamp,
                "stopped_at": None,
            }
        data["beat_at"] = stamp
        if event == "stop":
            data["stopped_at"] = stamp
        state.set_meta(DAEMON_KEY, json.dumps(data, sort_keys=True))
    return dt.datetime.fromisoformat(first)


def runs_for(settings: Settings, date: dt.date) -> list[RunRecord]:
    """The run records of ``date``'s papers."""
    return _read(settings, lambda state: state.runs_for(date), [])


def deliverability(settings: Settings, now: dt.datetime) -> dict[str, Any] | None:
    """Bounce and complaint rates of the last 7 and 30 days (:mod:`newsletter.bounces.rates`)."""
    return _read(settings, lambda state: bounce_rates.rates(state, now), None)


def render_full_day(
    settings: Settings, date: dt.date, now: dt.datetime
) -> archive_mod.ArchiveDay | None:
    """The day's page as it was sent, or None for a day without papers.

    The papers are the ones kept when the day was prepared for sending, ranked and
    grouped as that send did (as of its send time), never fetched again.
    """
    day = sent_day(settings, date)
    if day is None or day.is_empty:
        return None
    variant = plan_page(
        day,
        settings=settings,
        taxonomy=load_taxonomy(settings.digest.taxonomy),
        templates=load_templates(settings.digest.templates),
    )
    return archive_mod.archive_day(variant)


def sent_day(settings: Settings, date: dt.date) -> Day | None:
    """The papers of ``date`` as the state database kept them when the day was prepared
    for sending (None: never prepared, or no database yet)."""
    stored = _read(settings, lambda state: state.load_day(date), None)
    return stored.day if stored is not None else None


@dataclass(frozen=True)
class Ops:
    """Everything the commands call outside this module; replace parts in tests."""

    clock: scheduler.Clock = scheduler.utc_now
    load_subscribers: Callable[[Settings], Sequence[Subscriber]] = load_due_subscribers
    last_run: Callable[[Settings], LastRun | None] = ledger_last_run
    final_recipients: Callable[[Settings, dt.date], set[str]] = ledger_final_recipients
    sent_days: Callable[[Settings], list[dt.date]] = ledger_sent_days
    suppressed: Callable[[Settings], int] = prefs_suppressed
    deliverability: Callable[[Settings, dt.datetime], dict[str, Any] | None] = deliverability
    render_day: Callable[[Settings, dt.date, dt.datetime], archive_mod.ArchiveDay | None] = (
        render_full_day
    )
    job: scheduler.Job = scheduler.default_job
    probe: scheduler.Probe = scheduler.source_has_papers
    daemon: Callable[[Settings], DaemonRecord | None] = daemon_record
    record_daemon: Callable[[Settings, str, dt.datetime], dt.datetime | None] = record_daemon
    runs_for: Callable[[Settings, dt.date], list[RunRecord]] = runs_for


def zone_done_check(
    settings: Settings, subscribers: Sequence[Subscriber], ops: Ops
) -> scheduler.DoneCheck:
    """A DoneCheck from the ledger: done when every subscriber of the zone is final for the date.

    The subscriber list is read again at each check, so a subscriber added since the
    daemon started counts. When the ledger cannot be asked, the answer is "not done" and
    the send (whose ledger is the final guard) decides.
    """

    def done(date: dt.date, zone: str) -> bool:
        try:
            current = ops.load_subscribers(settings)
        except NewsletterError:
            current = subscribers
        emails = {
            s.email.lower()
            for s in scheduler.in_zone(current, zone, default=settings.schedule.timezone)
        }
        try:
            final = ops.final_recipients(settings, date)
        except NewsletterError as exc:
            log.warning("cannot ask the ledger whether %s is done: %s", date, exc)
            return False
        return emails <= final  # a zone nobody is left in has nothing to do

    return done


def archive_refresher(ops: Ops) -> scheduler.AfterRun:
    """After each run: add the day's page to the archive (when the day had papers)."""

    def refresh(settings: Settings, date: dt.date) -> None:
        now = ops.clock()
        page = ops.render_day(settings, date, now)
        if page is None:
            return
        result = archive_mod.write_archive(
            settings.archive,
            [page],
            title=settings.digest.title,
            now=now,
            base_url=settings.digest.archive_url,
        )
        log.info(
            "archive: %s",
            "page written" if result.written else "page unchanged",
            extra={"data": {"folder": str(result.folder), "date": date.isoformat()}},
        )

    return refresh


def _ops(ctx: click.Context) -> Ops:
    return ctx.obj if isinstance(ctx.obj, Ops) else Ops()


@click.command("run")
@config_option
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="human",
    show_default=True,
    help="human: one readable line per event; json: one JSON object per line.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="The least important events logged.",
)
@click.option(
    "--archive/--no-archive",
    default=True,
    show_default=True,
    help="After each run, add the day's page to the static archive (the 'archive' folder).",
)
@click.pass_context
def run_command(
    ctx: click.Context, config_path: str | None, log_format: str, log_level: str, archive: bool
) -> None:
    """Run the daily schedule until SIGTERM or Ctrl-C (the daemon).

    Sends each scheduled day's digest at schedule.time in schedule.timezone, and at the
    same local time in every subscriber's own time zone. Only one daemon runs per state
    database; a second one is refused. SIGHUP re-reads the subscriber list's time zones
    (so does a check every 15 minutes). On SIGTERM/SIGINT the message in flight is
    finished and the command exits 0.
    """
    ops = _ops(ctx)
    settings = load_settings(config_path)
    setup_logging(
        fmt="json" if log_format == "json" else "human",
        level=log_level.upper(),
        secrets_=secret_values(settings),
    )
    subscribers = list(ops.load_subscribers(settings))
    code = scheduler.run_daemon(
        settings,
        job=ops.job,
        clock=ops.clock,
        subscribers=subscribers,
        reload=lambda: ops.load_subscribers(settings),
        probe=ops.probe,
        is_done=zone_done_check(settings, subscribers, ops),
        after=archive_refresher(ops) if archive else None,
        started=lambda: ops.record_daemon(settings, "start", ops.clock()),
        beat=lambda: ops.record_daemon(settings, "beat", ops.clock()),
        stopped=lambda: ops.record_daemon(settings, "stop", ops.clock()),
    )
    ctx.exit(code)


def status_report(settings: Settings, ops: Ops) -> dict[str, Any]:
    """What ``status`` shows, as data (the ``--json`` output)."""
    now = ops.clock()
    problems: list[str] = []
    try:
        subscribers: Sequence[Subscriber] = ops.load_subscribers(settings)
    except NewsletterError as exc:
        problems.append(f"subscribers: {exc}")
        subscribers = ()
    zones = scheduler.zones_for(subscribers, settings.schedule.timezone)
    counts = {
        zone: len(scheduler.in_zone(subscribers, zone, default=settings.schedule.timezone))
        for zone in zones
    }
    runs = [
        {
            "zone": run.zone,
            "at": run.at.isoformat(),
            "when": scheduler.format_when(run.at),
            "paper_date": run.paper_date.isoformat(),
            "subscribers": counts.get(run.zone, 0),
        }
        for run in scheduler.next_runs(settings, zones, now=now)
    ]
    last: dict[str, Any] | None = None
    try:
        found = ops.last_run(settings)
    except NewsletterError as exc:
        problems.append(f"ledger: {exc}")
        found = None
    if found is not None:
        last = {
            "run_id": found.run_id,
            "date": found.date.isoformat(),
            "started_at": found.started_at.isoformat() if found.started_at else None,
            "finished_at": found.finished_at.isoformat() if found.finished_at else None,
            "outcome": found.outcome,
            "counts": dict(found.counts),
            "run_counts": dict(found.run_counts),
        }
        problems.extend(last_run_problems(found))
    try:
        suppressed: int | None = ops.suppressed(settings)
    except NewsletterError as exc:
        problems.append(f"preferences: {exc}")
        suppressed = None
    try:
        rates = ops.deliverability(settings, now)
    except NewsletterError as exc:
        problems.append(f"deliverability: {exc}")
        rates = None
    weekly_day = default_weekday(settings.schedule.weekly_day, settings.schedule.days)
    weekly = Counter(s.weekday or weekly_day for s in subscribers if s.frequency == "weekly")
    lock = lock_path_for(settings.state, base=config_folder(settings))
    pid = holder(lock)
    try:
        daemon = ops.daemon(settings)
    except NewsletterError as exc:
        problems.append(f"daemon record: {exc}")
        daemon = None
    problems.extend(daemon_problems(daemon, pid, now))
    catch_up: list[dict[str, Any]] = []
    try:
        catch_up, unsent = due_runs(settings, subscribers, zones, daemon, ops, now)
    except NewsletterError as exc:
        problems.append(f"ledger: {exc}")
        unsent = []
    problems.extend(unsent)
    return {
        "daemon_pid": pid,
        "daemon": _daemon_json(daemon),
        "lock": str(lock),
        "schedule": {
            "time": settings.schedule.time,
            "timezone": settings.schedule.timezone,
            "days": scheduler.day_of_week(settings.schedule.days),
            "paper_day": settings.schedule.paper_day,
            "weekly_day": weekly_day,
        },
        "weekly": {
            "readers": sum(weekly.values()),
            "by_weekday": {day: weekly[day] for day in WEEKDAYS if weekly[day]},
        },
        "next_runs": runs,
        "catch_up": catch_up,
        "last_run": last,
        "suppressed": suppressed,
        "deliverability": rates,
        "problems": problems,
    }


def last_run_problems(last: LastRun) -> list[str]:
    """The latest day's failures and leftovers, as ``problems`` lines."""
    out: list[str] = []
    counts = last.counts
    failed = int(counts.get("failed", 0))
    if failed:
        permanent = int(counts.get("failed_permanent", 0))
        out.append(
            f"papers of {last.date}: {failed} deliveries failed ({permanent} permanent, "
            f"{failed - permanent} transient: `newsletter send --date {last.date}` retries "
            "the transient ones)"
        )
    if last.outcome == "crashed":
        out.append(f"papers of {last.date}: the run {last.run_id} crashed")
    pending = int(counts.get("pending", 0))
    if pending and (last.outcome is not None or last.run_id is None):
        out.append(
            f"papers of {last.date}: {pending} deliveries pending after the run ended "
            "(a killed sender; a rerun sends them once their claims expire)"
        )
    return out


def daemon_problems(record: DaemonRecord | None, pid: int | None, now: dt.datetime) -> list[str]:
    """A daemon that stopped without saying so (killed, crashed, host gone)."""
    if record is None or record.stopped_at is not None or pid is not None:
        return []
    if record.host == socket.gethostname():
        alive = False  # on this host the lock says it all: nobody holds it
    else:
        alive = (now - record.beat_at).total_seconds() < DAEMON_STALE_SECONDS
    if alive:
        return []
    return [
        f"the daemon (pid {record.pid} on {record.host}, started "
        f"{record.started_at.isoformat()}) died: last seen {record.beat_at.isoformat()}"
    ]


def _daemon_json(record: DaemonRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "host": record.host,
        "pid": record.pid,
        "started_at": record.started_at.isoformat(),
        "last_seen": record.beat_at.isoformat(),
        "stopped_at": record.stopped_at.isoformat() if record.stopped_at else None,
        "first_started": record.first_started.isoformat() if record.first_started else None,
    }


def due_runs(
    settings: Settings,
    subscribers: Sequence[Subscriber],
    zones: Sequence[str],
    daemon: DaemonRecord | None,
    ops: Ops,
    now: dt.datetime,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs a daemon start would catch up now, and the scheduled days not sent.

    Per zone, the last scheduled run in LOOKBACK (and DUE_SLACK ago or more): when its
    papers have no run record and some of the zone's subscribers have not got them, it is
    a problem; when it is also within the misfire grace and after the daemon's first
    start, the daemon catches it up at its next start (a ``catch_up`` entry).
    """
    catch_up: list[dict[str, Any]] = []
    unsent: list[str] = []
    first = daemon.first_started if daemon is not None else None
    grace = max(1, settings.schedule.misfire_grace_seconds)
    for zone in zones:
        trigger = scheduler.build_trigger(settings.schedule, zone)
        at = scheduler.last_fire_time(trigger, now, within=LOOKBACK)
        if at is None or now - at < DUE_SLACK:
            continue
        day = scheduler.paper_date(
            at.astimezone(scheduler.zone_info(zone)).date(), settings.schedule.paper_day
        )
        emails = {
            email_key(s.email)
            for s in scheduler.in_zone(subscribers, zone, default=settings.schedule.timezone)
            if s.active
        }
        if not emails or ops.runs_for(settings, day):
            continue
        missing = emails - ops.final_recipients(settings, day)
        if not missing:
            continue
        entry = {
            "zone": zone,
            "due_at": at.isoformat(),
            "paper_date": day.isoformat(),
            "subscribers": len(missing),
        }
        catchable = scheduler.missed_runs(trigger, now, grace=grace, since=first)
        if first is not None and catchable:
            catch_up.append(entry)
            why = "the daemon catches it up when it starts"
        else:
            why = "`newsletter send --date " + day.isoformat() + "` sends it"
        unsent.append(
            f"papers of {day} were due {scheduler.format_when(at)} ({zone}) and "
            f"{len(missing)} subscribers have not got them; {why}"
        )
    return catch_up, unsent


def format_status(report: Mapping[str, Any]) -> str:
    """The human form of :func:`status_report`."""
    lines = []
    pid = report["daemon_pid"]
    lines.append(f"daemon: running (pid {pid})" if pid else "daemon: not running")
    sched = report["schedule"]
    lines.append(
        f"schedule: {sched['time']} {sched['timezone']} on {sched['days']}, "
        f"papers of {sched['paper_day'].replace('_', ' ')}"
    )
    lines.append("next runs:")
    width = max((len(r["zone"]) for r in report["next_runs"]), default=0)
    for run in report["next_runs"]:
        lines.append(
            f"  {run['zone']:<{width}}  {run['when']}  papers of {run['paper_date']}"
            f"  ({run['subscribers']} subscribers)"
        )
    for entry in report.get("catch_up", []):
        lines.append(
            f"catch-up pending: papers of {entry['paper_date']} ({entry['zone']}, due "
            f"{entry['due_at'].replace('T', ' ')}), {entry['subscribers']} subscribers"
        )
    weekly = report["weekly"]
    if weekly["readers"]:
        days = ", ".join(f"{day} {count}" for day, count in weekly["by_weekday"].items())
        lines.append(
            f"weekly edition: {weekly['readers']} readers ({days}); "
            f"default day {sched['weekly_day']}"
        )
    else:
        lines.append(f"weekly edition: no readers (default day {sched['weekly_day']})")
    last = report["last_run"]
    if last is None:
        lines.append("last run: none")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in last["counts"].items()) or "nothing sent"
        extra = []
        for key in ("started_at", "finished_at"):
            if last[key]:
                extra.append(f"{key.split('_')[0]} " + last[key].replace("T", " "))
        if last["run_id"]:
            extra.append(f"run {last['run_id']}")
        more = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"last run: papers of {last['date']}{more}")
        lines.append(f"  {counts}")
    suppressed = report["suppressed"]
    lines.append(f"suppressed: {suppressed if suppressed is not None else 'unknown'}")
    rates = report.get("deliverability")
    if rates is not None:
        lines.append("deliverability:")
        lines.extend(bounce_rates.format_rates(rates))
        lines.extend(f"warning: {warning}" for warning in rates["warnings"])
    lines.extend(f"warning: {problem}" for problem in report["problems"])
    return "\n".join(lines)


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
def status_command(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Show the next run times (per time zone), the last run's report and suppressed counts."""
    settings = load_settings(config_path)
    report = status_report(settings, _ops(ctx))
    click.echo(json.dumps(report, indent=1) if as_json else format_status(report))


@click.command("archive")
@config_option
@click.option(
    "--date",
    "dates",
    type=DATE,
    multiple=True,
    help="Archive this day (repeatable). Default: sent days not archived yet.",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    default=None,
    help="Write here instead of the 'archive' setting.",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Render every sent day again (default: only the sent days the archive lacks).",
)
@click.pass_context
def archive_command(
    ctx: click.Context,
    config_path: str | None,
    dates: tuple[dt.date, ...],
    folder: str | None,
    everything: bool,
) -> None:
    """Write or refresh the static web archive: a page per sent day, index.html, feed.xml.

    Any web server can serve the folder; the emails link to digest.archive_url/YYYY-MM-DD.html.
    """
    ops = _ops(ctx)
    settings = load_settings(config_path)
    now = ops.clock()
    target = folder or settings.archive
    if dates:
        days = list(dates)
    else:
        days = ops.sent_days(settings)
        if not everything:
            present = archive_mod.read_manifest(Path(target))
            days = [d for d in days if d not in present]
    pages = []
    for date in days:
        page = ops.render_day(settings, date, now)
        if page is None:
            click.echo(f"{date}: no papers, no page", err=True)
            continue
        pages.append(page)
    result = archive_mod.write_archive(
        target,
        pages,
        title=settings.digest.title,
        now=now,
        base_url=settings.digest.archive_url,
    )
    click.echo(
        f"archive {result.folder}: {len(result.written)} written, "
        f"{len(result.unchanged)} unchanged, {count(result.days, 'day')} in the index"
    )


def register(group: click.Group) -> None:
    """Add run, status and archive to the ``newsletter`` group."""
    group.add_command(run_command)
    group.add_command(status_command)
    group.add_command(archive_command)


__all__ = [
    "LastRun",
    "Ops",
    "archive_command",
    "format_status",
    "register",
    "run_command",
    "status_command",
    "status_report",
]
