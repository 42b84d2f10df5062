"""What every command shares: ``-c/--config``, the date type, plural counts.

Commands take these instead of defining their own, so the convention is one place:

* :data:`config_option` - ``-c/--config FILE`` passed as ``config_path``;
* :data:`DATE` - a ``YYYY-MM-DD`` parameter read as a :class:`datetime.date`, with the
  same metavar and the same error everywhere;
* :func:`count` - ``1 paper``, ``2 papers``;
* :func:`echo_rows` - a listing as JSON lines (``--json``) or as aligned lines.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

DATE_METAVAR = "YYYY-MM-DD"
"""How every date option is shown in --help."""


class DateType(click.ParamType[dt.date]):
    """A calendar day written ``YYYY-MM-DD``; the value is a :class:`datetime.date`."""

    name = "date"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return DATE_METAVAR

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        text = str(value).strip()
        try:
            if len(text) == len("2026-01-31"):
                return dt.date.fromisoformat(text)
        except ValueError:
            pass
        self.fail(f"{value!r} is not a date ({DATE_METAVAR})", param, ctx)


DATE = DateType()
"""The one date type of the command line."""

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file (default: newsletter.yaml here, if present).",
)
"""``-c/--config FILE``, passed to the command as ``config_path``."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 paper``, ``0 papers``; ``plural`` for nouns that do not take an s."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


LIST_SEPARATOR = ";"
"""Separates the items of topics, keywords and authors in a CSV cell."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is run as a formula by spreadsheets (OWASP
"CSV injection"): export writes it with a leading ``'``, import takes that off again."""


def csv_cell(value: Any) -> str:
    """One CSV cell; text a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, list):
        text = LIST_SEPARATOR.join(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def echo_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    as_json: bool,
    line: Callable[[Mapping[str, Any], int], str],
) -> None:
    """Each row as one JSON object a line, or as ``line(row, width)`` where ``width`` is
    the longest ``email`` (at least 5), for the address column."""
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    width = max([len(r["email"]) for r in rows] + [5])
    for row in rows:
        click.echo(line(row, width))
