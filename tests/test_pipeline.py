from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.errors import TemplateError
from newsletter.models import FULL_PROFILE, Subscriber
from newsletter.pipeline import plan_day, prepare_day
from newsletter.sources import load_sample_day
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy

DAY = dt.date(2026, 11, 25)


def _subscribers() -> list[Subscriber]:
    return [
        Subscriber("a@example.org"),
        Subscriber("b@example.org"),
        Subscriber("c@example.org", topics=("Robotics & embodied AI",), max_papers=5),
        Subscriber("d@example.org", topics=("Robotics & embodied AI",), max_papers=5),
        Subscriber("e@example.org", keywords=("diffusion",), summary="titles"),
    ]


def test_one_variant_per_distinct_profile() -> None:
    prepared = prepare_day(Settings(), DAY, source="sample", subscribers=_subscribers())
    assert len(prepared.variants) == 3
    sizes = sorted(len(v.subscribers) for v in prepared.variants)
    assert sizes == [1, 2, 2]
    full = prepared.full
    assert full.profile == FULL_PROFILE
    assert len(full.digest.papers) == len(prepared.day.papers) > 0
    limited = next(v for v in prepared.variants if v.profile.max_papers == 5)
    assert len(limited.digest.papers) == 5


def test_full_digest_lists_every_paper_under_one_topic() -> None:
    prepared = prepare_day(Settings(), DAY, source="sample", subscribers=[])
    keys = [rp.paper.key for rp in prepared.full.digest.papers]
    assert sorted(keys) == sorted(p.key for p in prepared.day.papers)
    assert len(set(keys)) == len(keys)


def test_excluded_papers_leave_subscriber_digests_but_not_the_full_one() -> None:
    day = load_sample_day(DAY)
    gone = {day.papers[0].key, day.papers[1].key}
    prepared = plan_day(
        day,
        _subscribers()[:1],
        settings=Settings(),
        taxonomy=load_taxonomy(None),
        templates=load_templates(None),
        exclude=gone,
    )
    (variant,) = prepared.variants
    assert not gone & {rp.paper.key for rp in variant.digest.papers}
    assert gone <= {rp.paper.key for rp in prepared.full.digest.papers}


def test_broken_template_fails_before_anything_is_planned(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{% for x in %}")
    with pytest.raises(TemplateError):
        load_templates(str(tmp_path))


@pytest.mark.parametrize("day", [dt.date(2026, 11, 25), dt.date(2024, 2, 29), dt.date(2031, 6, 2)])
def test_the_sample_day_is_fresh_on_any_day_and_ordered_by_its_votes(day: dt.date) -> None:
    """Ranked as of the day's send time, the sample day scores alike whenever it is sent."""
    sample = load_sample_day(day)
    assert max(p.submitted_at for p in sample.papers if p.submitted_at).date() == day
    prepared = prepare_day(Settings(), day, source="sample", subscribers=[])
    ranked = sorted(prepared.full.digest.papers, key=lambda rp: -rp.score)
    assert ranked[0].paper.upvotes == max(p.upvotes for p in sample.papers)
    assert prepared.full.digest.topics[0].papers[0] is ranked[0]  # its section opens the day
    scores = sorted(round(rp.score, 9) for rp in ranked)
    again = prepare_day(Settings(), DAY, source="sample", subscribers=[])
    assert scores == sorted(round(rp.score, 9) for rp in again.full.digest.papers)


def test_a_day_is_ranked_as_of_its_own_date_not_the_clock() -> None:
    """The same papers sent as a later day's digest are older there and score lower."""
    day = load_sample_day(DAY)

    def scores(date: dt.date) -> list[float]:
        prepared = plan_day(
            dataclasses.replace(day, date=date),
            (),
            settings=Settings(),
            taxonomy=load_taxonomy(None),
            templates=load_templates(None),
        )
        return sorted(rp.score for rp in prepared.full.digest.papers)

    own, later = scores(DAY), scores(DAY + dt.timedelta(days=3))
    assert own == scores(DAY)  # no clock: the same day scores the same whenever planned
    assert all(b < a for a, b in zip(own, later, strict=True))
