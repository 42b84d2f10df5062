"""``newsletter send``: deliver one day's digest to every subscriber due."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Sequence

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from newsletter.cli.options import DATE, config_option
from newsletter.config import load_settings, secret_values
from newsletter.logs import run_context, setup_logging
from newsletter.models import DELIVERED, SendResult, SendStatus
from newsletter.send import RunReport, send_day

EXIT_TEMPFAIL = 75
"""Exit code when some deliveries failed transiently and none for good: rerun later."""

MAX_LISTED_FAILURES = 20
"""Failed recipients listed under the report (the rest are counted)."""


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _print_report(report: RunReport, would_send: Sequence[SendResult] = ()) -> None:
    click.echo(report.summary())
    for result in report.problems[:MAX_LISTED_FAILURES]:
        kind = "retry later" if result.transient else "permanent"
        click.echo(f"  {result.status} {result.email} ({kind}): {result.error}")
    if report.not_delivered > MAX_LISTED_FAILURES:
        click.echo(f"  ... and {report.not_delivered - MAX_LISTED_FAILURES} more")
    for result in would_send:
        click.echo(f"  would send to {result.email} ({result.message_id})")
    if would_send and report.delivered > len(would_send):
        click.echo(f"  ... and {report.delivered - len(would_send)} more")


class ProgressBar:
    """The terminal's progress bar (rich): sent / failed / remaining and the rate."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            TextColumn(
                "sent {task.fields[sent]}  failed {task.fields[failed]}  "
                "remaining {task.fields[remaining]}"
            ),
            TextColumn("{task.fields[rate]:.1f} msg/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task: TaskID | None = None
        self._sent = 0
        self._failed = 0
        self._total = 0

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total: int) -> None:
        self._total = total
        self._task = self._progress.add_task(
            "send", total=total, sent=0, failed=0, remaining=total, rate=0.0
        )

    def advance(self, result: SendResult) -> None:
        if self._task is None:
            return
        if result.status in DELIVERED:
            self._sent += 1
        elif result.status != SendStatus.SKIPPED:
            self._failed += 1
        task = self._progress.tasks[self._task]
        elapsed = task.elapsed or 0.0
        self._progress.update(
            self._task,
            advance=1,
            sent=self._sent,
            failed=self._failed,
            remaining=max(self._total - self._sent - self._failed, 0),
            rate=self._sent / elapsed if elapsed > 0 else 0.0,
        )


@click.command("send")
@click.option("--date", "date_", type=DATE, help="The paper day (default: today, UTC).")
@click.option(
    "--source", help="Where the papers come from: sample, hf, arxiv:CATS, a file or a URL."
)
@click.option(
    "--dry-run", is_flag=True, help="Go through everything into memory; send and record nothing."
)
@click.option("--only", metavar="EMAIL", help="Send to this one subscriber only.")
@config_option
@click.option(
    "--subscribers",
    "subscribers_path",
    type=click.Path(dir_okay=False),
    help="Subscriber list (overrides the config).",
)
@click.option(
    "--retry-failed", is_flag=True, help="Also retry subscribers whose delivery failed permanently."
)
def send_command(
    date_: dt.date | None,
    source: str | None,
    dry_run: bool,
    only: str | None,
    config_path: str | None,
    subscribers_path: str | None,
    retry_failed: bool,
) -> None:
    """Build the day's digest, personalise it per subscriber and deliver it.

    A rerun for the same day sends only to subscribers not yet sent to. The exit
    code is 1 when any delivery failed permanently, 75 when some failed only
    transiently (a rerun may deliver them), 0 otherwise.
    """
    date = date_ or dt.datetime.now(dt.UTC).date()
    settings = load_settings(config_path, overrides={"subscribers": subscribers_path})
    tty = _stdout_is_tty()
    setup_logging(level="WARNING" if tty else "INFO", secrets_=secret_values(settings))

    bar = ProgressBar() if tty else None
    would_send: list[SendResult] = []  # a dry run lists the first MAX_LISTED_FAILURES

    def progress(result: SendResult) -> None:
        if bar is not None:
            bar.advance(result)
        if dry_run and result.status in DELIVERED and len(would_send) < MAX_LISTED_FAILURES:
            would_send.append(result)

    with contextlib.ExitStack() as stack, run_context():
        if bar is not None:
            stack.enter_context(bar)
        report = send_day(
            settings,
            date,
            source=source,
            only=only,
            dry_run=dry_run,
            progress=progress,
            on_start=bar.start if bar is not None else None,
            retry_failed=retry_failed,
            wait_for_others=True,
        )
    _print_report(report, would_send)
    if report.failed_permanently:
        sys.exit(1)
    if report.failed:
        # Only transient failures are left: a rerun may deliver them (sysexits EX_TEMPFAIL).
        sys.exit(EXIT_TEMPFAIL)


def register(group: click.Group) -> None:
    group.add_command(send_command)
