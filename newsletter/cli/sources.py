"""``newsletter fetch``: show what a source gives for a day, without sending anything."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import click

from newsletter.cli.options import DATE, config_option, count
from newsletter.config import load_settings
from newsletter.models import Day
from newsletter.sources import SPECS_HELP, fetch_day


def _day_json(day: Day) -> str:
    def plain(value: object) -> object:
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()
        raise TypeError(type(value).__name__)  # pragma: no cover

    papers = [dataclasses.asdict(paper) for paper in day.papers]
    return json.dumps(
        {"date": day.date.isoformat(), "source": day.source, "papers": papers},
        default=plain,
        ensure_ascii=False,
        indent=2,
    )


@click.command("fetch")
@click.option("--source", "spec", default=None, help=f"Where to read papers: {SPECS_HELP}.")
@click.option("--date", "date", type=DATE, help="The day to fetch (default: today, UTC).")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
def fetch_command(
    spec: str | None, date: dt.date | None, config_path: str | None, as_json: bool
) -> None:
    """Fetch one day's papers from a source and list them.

    Handy to check a source before a run: the same code the digest uses, with the
    configured timeouts and retries. An empty day is reported, not an error.
    """
    settings = load_settings(config_path)
    day_date = date or dt.datetime.now(dt.UTC).date()
    day = fetch_day(spec or settings.source.default, day_date, settings=settings.source)
    if as_json:
        click.echo(_day_json(day))
        return
    papers = count(len(day.papers), "paper")
    note = " (an empty day)" if day.is_empty else ""
    click.echo(f"{day.source} {day.date.isoformat()}: {papers}{note}")
    for paper in day.papers:
        click.echo(f"{paper.upvotes:>5}  {paper.id or '-':<12} {paper.title}")


def register(group: click.Group) -> None:
    """Add the fetch command to the ``newsletter`` group."""
    group.add_command(fetch_command)
