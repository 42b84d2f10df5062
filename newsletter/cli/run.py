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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from newsletter import archive as archive_mod
from newsletter import scheduler
from newsletter.config import Settings, load_settings, secret_values
from newsletter.errors import NewsletterError
from newsletter.locking import holder, lock_path_for
from newsletter.logs import LOG_FORMATS, setup_logging
from newsletter.models import Day, Subscriber
from newsletter.pipeline import plan_page
from newsletter.render import load_templates
from newsletter.send import load_due_subscribers
from newsletter.state import State
from newsletter.topics import load_taxonomy

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


def _existing(settings: Settings) -> State | None:
    """The state database if it exists (never created here: ``status`` only reads)."""
    return State.open_existing(settings.state)


def ledger_days(settings: Settings) -> list[dt.date]:
    """Every day the ledger has a row for, oldest first."""
    state = _existing(settings)
    if state is None:
        return []
    with state:
        return state.days()


def ledger_last_run(settings: Settings) -> LastRun | None:
    """The newest day in the ledger: recipients by outcome, first and last row times, and
    the newest run record of that day (its id and times, when runs were recorded)."""
    state = _existing(settings)
    if state is None:
        return None
    with state:
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
        first, last = state.day_span(day)
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
    return LastRun(date=day, counts=counts, started_at=_stamp(first), finished_at=_stamp(last))


def _stamp(text: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def ledger_final_recipients(settings: Settings, date: dt.date) -> set[str]:
    """Addresses (casefolded) with nothing left to do for the papers of ``date``: sent,
    or failed for good."""
    state = _existing(settings)
    if state is None:
        return set()
    with state:
        return state.final_recipients(date)


def ledger_sent_days(settings: Settings) -> list[dt.date]:
    """Every date whose papers went out to someone."""
    state = _existing(settings)
    if state is None:
        return []
    with state:
        return state.sent_days()


def prefs_suppressed(settings: Settings) -> int:
    """How many addresses are suppressed (unsubscribed, bounced, complained)."""
    state = _existing(settings)
    if state is None:
        return 0
    with state:
        return state.suppressed_count()


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
    state = _existing(settings)
    if state is None:
        return None
    with state:
        stored = state.load_day(date)
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
    render_day: Callable[[Settings, dt.date, dt.datetime], archive_mod.ArchiveDay | None] = (
        render_full_day
    )
    job: scheduler.Job = scheduler.default_job
    probe: scheduler.Probe = scheduler.source_has_papers


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


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file (default: newsletter.yaml here, if present).",
)


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
            "counts": dict(found.counts),
        }
    try:
        suppressed: int | None = ops.suppressed(settings)
    except NewsletterError as exc:
        problems.append(f"preferences: {exc}")
        suppressed = None
    lock = lock_path_for(settings.state)
    return {
        "daemon_pid": holder(lock),
        "lock": str(lock),
        "schedule": {
            "time": settings.schedule.time,
            "timezone": settings.schedule.timezone,
            "days": scheduler.day_of_week(settings.schedule.days),
            "paper_day": settings.schedule.paper_day,
        },
        "next_runs": runs,
        "last_run": last,
        "suppressed": suppressed,
        "problems": problems,
    }


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
    type=click.DateTime(formats=["%Y-%m-%d"]),
    multiple=True,
    help="Archive this day (YYYY-MM-DD; repeatable). Default: sent days not archived yet.",
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
    dates: tuple[dt.datetime, ...],
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
        days = [d.date() for d in dates]
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
        f"{len(result.unchanged)} unchanged, {result.days} days in the index"
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
