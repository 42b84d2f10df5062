"""The weekly edition and "never twice" (pure).

A weekly reader gets, on their weekday, the best papers of the last :data:`WEEK_DAYS`
days instead of seven daily emails::

    week_pool(days)          every paper of the week once (by Paper.key; the copy
                             with the most votes wins, the earliest day is its day)
    rank(pool, profile)      as for a day, but without the freshness decay: every
                             paper is ranked as of the start of the week, so Monday's
                             papers compete with Friday's on votes and the reader's boosts
    pick_week(ranked, ...)   the best WEEKLY_PAPERS (or the reader's max_papers), at most
                             MAX_DAY_SHARE of them from one day, so one busy day does
                             not fill the week

"Never twice": whatever a source says, a paper a reader was already sent (in a daily or
a weekly edition) is not sent to them again; :func:`unsent` is the filter, the state
database says what each reader received.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal, get_args

from newsletter.models import Day, Paper, RankedPaper

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
"""A weekly reader's day, as written in the subscriber list and in settings."""

WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)

Frequency = Literal["daily", "weekly"]
FREQUENCIES: tuple[Frequency, ...] = get_args(Frequency)

WEEK_DAYS = 7
"""A weekly edition covers the day it is sent and the six days before."""

WEEKLY_PAPERS = 20
"""Papers in a weekly edition for a reader who set no ``max_papers``."""

MAX_DAY_SHARE = 0.4
"""At most this share of a weekly edition (rounded up) comes from one day."""


def default_weekday(weekly_day: Weekday | None, days: Sequence[str]) -> Weekday:
    """``schedule.weekly_day``, else the last day of ``schedule.days`` ("mon-fri": fri)."""
    if weekly_day is not None:
        return weekly_day
    last = str(days[-1]).split("-")[-1].strip().lower()[:3] if days else ""
    for name in WEEKDAYS:
        if name == last:
            return name
    return "fri"


def weekday_of(date: dt.date) -> Weekday:
    """The ``mon`` ... ``sun`` name of ``date``."""
    return WEEKDAYS[date.weekday()]


def week_dates(date: dt.date) -> tuple[dt.date, ...]:
    """The days a weekly edition sent on ``date`` covers, oldest first."""
    return tuple(date - dt.timedelta(days=n) for n in range(WEEK_DAYS - 1, -1, -1))


def week_pool(days: Iterable[Day]) -> tuple[tuple[Paper, ...], dict[str, dt.date]]:
    """Every paper of ``days`` once, and the day each paper first appeared on.

    Of two copies of one paper the one with more upvotes (then the later one) is kept.
    """
    chosen: dict[str, Paper] = {}
    first_day: dict[str, dt.date] = {}
    for day in sorted(days, key=lambda d: d.date):
        for paper in day.papers:
            key = paper.key
            first_day.setdefault(key, day.date)
            held = chosen.get(key)
            if held is None or paper.upvotes >= held.upvotes:
                chosen[key] = paper
    return tuple(chosen.values()), first_day


def ranking_time(days: Iterable[Day]) -> dt.datetime:
    """The ``now`` a week is ranked at: the start of its first day (UTC), so no paper
    of the week is older than it and rank()'s decay leaves every score whole."""
    first = min((d.date for d in days), default=dt.date.today())
    return dt.datetime.combine(first, dt.time(0, 0), tzinfo=dt.UTC)


def unsent(papers: Sequence[Paper], sent: Collection[str]) -> tuple[Paper, ...]:
    """``papers`` without those whose key is in ``sent`` (what the reader already got)."""
    if not sent:
        return tuple(papers)
    return tuple(p for p in papers if p.key not in sent)


def edition_size(max_papers: int | None) -> int:
    """How many papers a weekly edition holds for a reader's ``max_papers``."""
    return WEEKLY_PAPERS if max_papers is None else max(max_papers, 0)


def pick_week(
    ranked: Sequence[RankedPaper],
    first_day: Mapping[str, dt.date],
    *,
    size: int,
) -> tuple[RankedPaper, ...]:
    """The best ``size`` of ``ranked`` (best first), at most ``ceil(size * MAX_DAY_SHARE)``
    from any one day; when the cap leaves room unfilled, the best of the rest fill it."""
    if size <= 0:
        return ()
    cap = max(1, math.ceil(size * MAX_DAY_SHARE))
    per_day: Counter[dt.date | None] = Counter()
    picked: list[RankedPaper] = []
    held_back: list[RankedPaper] = []
    for rp in ranked:
        day = first_day.get(rp.paper.key)
        if len(picked) >= size:
            break
        if per_day[day] >= cap:
            held_back.append(rp)
            continue
        per_day[day] += 1
        picked.append(rp)
    if len(picked) < size:
        picked.extend(held_back[: size - len(picked)])
        order = {id(rp): i for i, rp in enumerate(ranked)}
        picked.sort(key=lambda rp: order[id(rp)])
    return tuple(picked)
