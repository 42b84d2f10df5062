from __future__ import annotations

import dataclasses
import datetime as dt

from newsletter.models import Day, Profile
from newsletter.rank import rank
from newsletter.weekly import (
    MAX_DAY_SHARE,
    WEEKLY_PAPERS,
    edition_size,
    pick_week,
    ranking_time,
    unsent,
    week_dates,
    week_pool,
    weekday_of,
)
from tests.steer_papers import ALL, dated

MONDAY = dt.date(2026, 1, 5)


def _week() -> list[Day]:
    """Five days of different papers; Monday's have far more votes than the rest."""
    days = []
    for n in range(5):
        date = MONDAY + dt.timedelta(days=n)
        papers = tuple(
            dataclasses.replace(dated(p, date, 200 if n == 0 else 5 + i), id=f"{p.id}-{n}")
            for i, p in enumerate(ALL)
        )
        days.append(Day(date=date, papers=papers, source=f"day{n}"))
    return days


def test_week_dates_and_weekday_names() -> None:
    friday = MONDAY + dt.timedelta(days=4)
    assert weekday_of(friday) == "fri" and weekday_of(MONDAY) == "mon"
    dates = week_dates(friday)
    assert len(dates) == 7 and dates[-1] == friday and dates[0] == friday - dt.timedelta(days=6)


def test_week_pool_keeps_each_paper_once_with_its_first_day() -> None:
    p = ALL[0]
    monday = Day(MONDAY, (dated(p, MONDAY, 3),), "a")
    tuesday = Day(MONDAY + dt.timedelta(days=1), (dated(p, MONDAY, 9), ALL[1]), "b")
    pool, first = week_pool([tuesday, monday])
    assert [q.key for q in pool] == [p.key, ALL[1].key]
    assert pool[0].upvotes == 9
    assert first[p.key] == MONDAY


def test_a_busy_day_cannot_fill_the_week_and_the_spread_is_kept() -> None:
    days = _week()
    pool, first = week_pool(days)
    ranked = rank(pool, Profile(), topics={}, now=ranking_time(days))
    picked = pick_week(ranked, first, size=10)
    assert len(picked) == 10
    per_day = {first[rp.paper.key] for rp in picked}
    assert len(per_day) >= 3
    from_monday = sum(1 for rp in picked if first[rp.paper.key] == MONDAY)
    assert from_monday == 4 == round(10 * MAX_DAY_SHARE)
    assert [rp.score for rp in picked] == sorted((rp.score for rp in picked), reverse=True)


def test_ranking_time_leaves_the_weeks_scores_undecayed() -> None:
    days = _week()
    pool, _ = week_pool(days)
    ranked = rank(pool, Profile(), topics={}, now=ranking_time(days))
    by_votes = {}
    for rp in ranked:
        by_votes.setdefault(rp.paper.upvotes, set()).add(round(rp.score, 9))
    assert all(len(scores) == 1 for scores in by_votes.values())


def test_when_one_day_is_all_there_is_the_cap_gives_way() -> None:
    day = _week()[0]
    pool, first = week_pool([day])
    ranked = rank(pool, Profile(), topics={}, now=ranking_time([day]))
    assert len(pick_week(ranked, first, size=5)) == 5
    assert pick_week(ranked, first, size=0) == ()


def test_unsent_leaves_out_what_the_reader_got_and_edition_size() -> None:
    assert unsent(ALL, {ALL[0].key}) == ALL[1:]
    assert unsent(ALL, ()) == ALL
    assert edition_size(None) == WEEKLY_PAPERS and edition_size(3) == 3
