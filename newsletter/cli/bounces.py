"""``newsletter bounces import`` and ``newsletter suppressions list | add | remove | export``.

``bounces import PATH…`` reads delivery reports (DSNs, ARF complaints, MTAs' own bounce
shapes) from ``.eml`` files, folders of them, mbox files and Maildirs; ``--imap`` reads
the bounce mailbox of the ``bounces`` settings (password: NEWSLETTER_BOUNCES__PASSWORD).
Each report becomes a stored event and, by the policy, a suppression
(:mod:`newsletter.bounces.intake`). Importing the same reports again changes nothing.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from typing import Any

import click

from newsletter.bounces.intake import Intake, Tally
from newsletter.bounces.mailbox import read_imap, read_path
from newsletter.bounces.parse import parse_report
from newsletter.bounces.policy import LOCKED_REASONS
from newsletter.cli.options import config_option, count, csv_cell, echo_rows
from newsletter.config import Settings, load_settings, secret_values
from newsletter.errors import NewsletterError, ReportError
from newsletter.logs import setup_logging
from newsletter.state import BounceEvent, State

ADMIN_REASON = "admin"
"""The reason of a suppression added by hand."""


def _settings(config_path: str | None) -> Settings:
    settings = load_settings(config_path)
    setup_logging(level="WARNING", secrets_=secret_values(settings))
    return settings


@click.group("bounces")
def bounces_group() -> None:
    """Delivery reports: bounces and complaints become suppressions."""


@bounces_group.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--imap", is_flag=True, help="Read the bounce mailbox of the bounces settings.")
@click.option("--all", "all_messages", is_flag=True, help="With --imap: seen messages too.")
@config_option
def import_cmd(
    paths: tuple[str, ...], imap: bool, all_messages: bool, config_path: str | None
) -> None:
    """Read reports from PATHS (.eml files, folders of them, mbox files, Maildirs) or --imap.

    Prints what was found; every event is stored with its date, kind, diagnostic code
    and source, and the addresses the policy suppresses are listed.
    """
    if not paths and not imap:
        raise click.UsageError("give PATHS to read, or --imap")
    settings = _settings(config_path)
    with State(settings.state) as state:
        intake = Intake.from_settings(state, settings)
        seen = {"messages": 0, "not_reports": 0, "skipped": 0}

        def take(label: str, raw: bytes | None, source: str) -> None:
            seen["messages"] += 1
            if raw is None:
                seen["skipped"] += 1
                click.echo(f"  skipped {label}: larger than a report can be", err=True)
                return
            try:
                reports = parse_report(raw)
            except ReportError as exc:
                seen["skipped"] += 1
                click.echo(f"  skipped {label}: {exc}", err=True)
                return
            if not reports:
                seen["not_reports"] += 1
            for report in reports:
                intake.take(report, source=source)

        for path in paths:
            for label, raw in read_path(path):
                take(label, raw, f"file:{label}")
        if imap:
            read_imap(
                settings.bounces,
                lambda label, raw: take(label, raw, label),
                all_messages=all_messages,
            )
        _print_tally(intake.tally, seen)


def _print_tally(tally: Tally, seen: dict[str, int]) -> None:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(tally.kinds.items()))
    click.echo(
        f"{seen['messages']} message(s): {tally.new} new event(s)"
        + (f" ({kinds})" if kinds else "")
        + f", {tally.replays} already imported, {seen['not_reports']} not a bounce or complaint"
        + (f", {seen['skipped']} skipped" if seen["skipped"] else "")
        + (f", {tally.unmatched} naming no address" if tally.unmatched else "")
    )
    for email, reason in tally.suppressed:
        click.echo(f"  suppressed {email} ({reason})")


# --------------------------------------------------------------------------- suppressions


@click.group("suppressions")
def suppressions_group() -> None:
    """Addresses the next send skips: unsubscribed, bounced, complained, added by hand."""


def _rows(state: State) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sup in state.suppressions():
        event: BounceEvent | None = state.bounce_event(sup.event_id) if sup.event_id else None
        rows.append(
            {
                "email": sup.email,
                "reason": sup.reason,
                "source": sup.source,
                "since": sup.created_at,
                "event_id": sup.event_id,
                "event_kind": event.kind if event else None,
                "event_status": event.status if event else None,
                "event_at": event.occurred_at.isoformat() if event else None,
                "event_day": event.day.isoformat() if event and event.day else None,
                "diagnostic": event.diagnostic if event else None,
            }
        )
    return rows


@suppressions_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per suppression.")
@config_option
def list_cmd(as_json: bool, config_path: str | None) -> None:
    """Every suppressed address, its reason and the event that caused it."""
    settings = _settings(config_path)
    with State(settings.state) as state:
        rows = _rows(state)
    echo_rows(rows, as_json=as_json, line=_suppression_line)
    if not as_json:
        click.echo(f"{len(rows)} suppressed")


def _suppression_line(row: Mapping[str, Any], width: int) -> str:
    cause = ""
    if row["event_id"]:
        status = f" {row['event_status']}" if row["event_status"] else ""
        cause = f"  {row['event_kind']}{status}: {row['diagnostic']}"
    return (
        f"{row['email']:<{width}}  {row['reason']:<12}  {row['since'][:10]}  {row['source']}{cause}"
    )


@suppressions_group.command("add")
@click.argument("email")
@click.option("--reason", default=ADMIN_REASON, show_default=True, help="Why (free text).")
@config_option
def add_cmd(email: str, reason: str, config_path: str | None) -> None:
    """Suppress EMAIL: no send reaches it until it is removed."""
    if "@" not in email or any(c.isspace() for c in email.strip()):
        raise NewsletterError(f"{email!r} is not an email address")
    settings = _settings(config_path)
    with State(settings.state) as state:
        added = state.suppress(email, reason=reason, source="cli")
    click.echo(f"suppressed {email}" if added else f"{email} was already suppressed")


@suppressions_group.command("remove")
@click.argument("email")
@click.option(
    "--force", is_flag=True, help="Also lift a complaint (only when the reader asked for mail)."
)
@config_option
def remove_cmd(email: str, force: bool, config_path: str | None) -> None:
    """Lift EMAIL's suppression (a complaint only with --force)."""
    settings = _settings(config_path)
    with State(settings.state) as state:
        current = state.suppression(email)
        if current is None:
            raise NewsletterError(f"{email} is not suppressed")
        if current.reason in LOCKED_REASONS and not force:
            raise NewsletterError(
                f"{email} reported the digest as spam ({current.event_id}); lift it with "
                "--force only if they asked to receive it again"
            )
        state.unsuppress(email, source="cli")
    click.echo(f"lifted the suppression of {email} ({current.reason})")


@suppressions_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the CSV here (default: standard output).",
)
@config_option
def export_cmd(output: str | None, config_path: str | None) -> None:
    """Every suppression as CSV (email, reason, source, since, the causing event)."""
    settings = _settings(config_path)
    with State(settings.state) as state:
        rows = _rows(state)
    fields = list(rows[0]) if rows else ["email", "reason", "source", "since", "event_id"]

    def write(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(v) for k, v in row.items()})

    if output is None:
        write(sys.stdout)
        return
    try:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            write(handle)
    except OSError as exc:
        raise NewsletterError(f"{output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {count(len(rows), 'suppression')} to {output}", err=True)


def register(group: click.Group) -> None:
    group.add_command(bounces_group)
    group.add_command(suppressions_group)
