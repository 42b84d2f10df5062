"""``newsletter send``: deliver one day's digest to every subscriber due."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
from typing import Any

import click

from newsletter.config import load_settings, secret_values
from newsletter.logs import run_context, setup_logging
from newsletter.models import SendResult, SendStatus
from newsletter.send import RunReport, send_day

log = logging.getLogger("newsletter.send")

EXIT_TEMPFAIL = 75
"""Exit code when some deliveries failed transiently and none for good: rerun later."""

MAX_LISTED_FAILURES = 20
"""Failed recipients listed under the report (the rest are counted)."""


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _parse_date(value: str | None) -> dt.date:
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--date"
        ) from None


def _print_report(report: RunReport) -> None:
    click.echo(report.summary())
    failures = [r for r in report.results if r.status not in (SendStatus.SENT, SendStatus.QUEUED)]
    for result in failures[:MAX_LISTED_FAILURES]:
        kind = "retry later" if result.transient else "permanent"
        click.echo(f"  {result.status} {result.email} ({kind}): {result.error}")
    if len(failures) > MAX_LISTED_FAILURES:
        click.echo(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more")
    if report.dry_run:
        for result in report.results:
            if result.status in (SendStatus.SENT, SendStatus.QUEUED):
                click.echo(f"  would send to {result.email} ({result.message_id})")


@click.command("send")
@click.option(
    "--date", "date_text", metavar="YYYY-MM-DD", help="The paper day (default: today, UTC)."
)
@click.option(
    "--source", help="Where the papers come from: sample, hf, arxiv:CATS, a file or a URL."
)
@click.option(
    "--dry-run", is_flag=True, help="Go through everything into memory; send and record nothing."
)
@click.option("--only", metavar="EMAIL", help="Send to this one subscriber only.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Config file (default newsletter.yaml).",
)
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
    date_text: str | None,
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
    date = _parse_date(date_text)
    settings = load_settings(config_path, overrides={"subscribers": subscribers_path})
    tty = _stdout_is_tty()
    setup_logging(level="WARNING" if tty else "INFO", secrets_=secret_values(settings))

    bars: list[Any] = []
    stack = contextlib.ExitStack()

    def start(total: int) -> None:
        if tty:
            bars.append(stack.enter_context(click.progressbar(length=total, label="sending")))
        else:
            log.info("sending to %d subscribers", total)

    def advance(result: SendResult) -> None:
        if bars:
            bars[0].update(1)
        else:
            log.info(
                "%s %s%s", result.status, result.email, f": {result.error}" if result.error else ""
            )

    with stack, run_context():
        report = send_day(
            settings,
            date,
            source=source,
            only=only,
            dry_run=dry_run,
            progress=advance,
            on_start=start,
            retry_failed=retry_failed,
            wait_for_others=True,
        )
    _print_report(report)
    if report.failed_permanently:
        sys.exit(1)
    if report.failed:
        # Only transient failures are left: a rerun may deliver them (sysexits EX_TEMPFAIL).
        sys.exit(EXIT_TEMPFAIL)


def register(group: click.Group) -> None:
    group.add_command(send_command)
