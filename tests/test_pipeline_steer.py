from __future__ import annotations

import dataclasses
import datetime as dt

from newsletter.config import Settings
from newsletter.feedback import Feedback
from newsletter.models import Day, Subscriber
from newsletter.pipeline import Steering, Variant, plan_day, plan_week
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy
from tests.steer_papers import ALL, DIFFUSION, ROBOTICS, dated

MONDAY = dt.date(2026, 1, 5)
NOW = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
DAY = Day(MONDAY, tuple(dated(p, MONDAY, 40 if p in DIFFUSION else 10) for p in ALL), "test")


def _plan(subscribers: list[Subscriber], steering: Steering) -> tuple[Variant, ...]:
    return plan_day(
        DAY,
        subscribers,
        settings=Settings(),
        taxonomy=load_taxonomy(None),
        templates=load_templates(None),
        steering=steering,
    ).variants


def _of(variants: tuple[Variant, ...], email: str) -> Variant:
    return next(v for v in variants if any(s.email == email for s in v.subscribers))


def _keys(variant: Variant) -> list[str]:
    return [rp.paper.key for rp in variant.digest.papers]


def test_a_paper_sent_before_is_never_sent_again_and_others_still_share() -> None:
    people = [Subscriber(f"r{i}@example.org") for i in range(3)]
    sent = {"r0@example.org": {ROBOTICS[0].key, "2501.99999"}}
    variants = _plan(people, Steering(sent=sent))
    assert ROBOTICS[0].key not in _keys(_of(variants, "r0@example.org"))
    shared = _of(variants, "r1@example.org")
    assert ROBOTICS[0].key in _keys(shared)
    assert {s.email for s in shared.subscribers} == {"r1@example.org", "r2@example.org"}


def test_feedback_raises_what_the_reader_liked_and_sinks_what_they_disliked() -> None:
    people = [Subscriber("steered@example.org"), Subscriber("twin@example.org")]
    feedback = {"steered@example.org": Feedback(liked=(ROBOTICS[0],), disliked=(DIFFUSION[0],))}
    variants = _plan(people, Steering(feedback=feedback))
    steered, twin = (
        _keys(_of(variants, "steered@example.org")),
        _keys(_of(variants, "twin@example.org")),
    )
    for p in ROBOTICS[1:]:
        assert steered.index(p.key) < twin.index(p.key)
    assert DIFFUSION[0].key in twin and DIFFUSION[0].key not in steered  # rated: seen
    for p in DIFFUSION[1:]:  # below every robotics paper now, above them before
        assert steered.index(p.key) > max(steered.index(r.key) for r in ROBOTICS[1:])
        assert twin.index(p.key) < min(twin.index(r.key) for r in ROBOTICS[1:])
    top = _of(variants, "steered@example.org").digest.papers[0]
    assert top.paper.key in {p.key for p in ROBOTICS}
    assert "which you liked" in top.reasons[0]
    html = _of(variants, "steered@example.org").rendered.html
    assert "which you liked" in html


def test_readers_whose_feedback_comes_out_the_same_share_one_render() -> None:
    people = [Subscriber(f"r{i}@example.org") for i in range(4)]
    liked = Feedback(liked=(ROBOTICS[0],))
    feedback = {"r0@example.org": liked, "r1@example.org": liked}
    variants = _plan(people, Steering(feedback=feedback))
    assert len(variants) == 2
    assert {s.email for s in _of(variants, "r0@example.org").subscribers} == {
        "r0@example.org",
        "r1@example.org",
    }


def test_each_paper_and_section_carries_feedback_links() -> None:
    (variant,) = _plan([Subscriber("a@example.org")], Steering())
    html = variant.rendered.html
    slot = variant.rendered.placeholder("feedback_url")
    assert html.count(f"{slot}/more/") == len(ALL)
    assert html.count(f"{slot}/less/") == len(ALL)
    assert html.count(f"{slot}/fewer/") == len(variant.digest.topics)
    filled, _ = variant.rendered.fill(
        {
            "name": "A",
            "email": "a@example.org",
            "unsubscribe_url": "https://x.example/unsubscribe?token=u",
            "preferences_url": "https://x.example/preferences?token=p",
            "feedback_url": "https://x.example/f/" + "F" * 36,
        }
    )
    assert f'href="https://x.example/f/{"F" * 36}/more/{ROBOTICS[0].key}"' in filled


def test_the_weekly_edition_takes_the_best_of_several_days_never_sent_before() -> None:
    days = []
    for n in range(5):
        date = MONDAY + dt.timedelta(days=n)
        papers = tuple(
            dataclasses.replace(dated(p, date, 100 if n == 0 else 10 + i), id=f"{p.id}-{n}")
            for i, p in enumerate(ALL)
        )
        days.append(Day(date, papers, f"day{n}"))
    friday = MONDAY + dt.timedelta(days=4)
    already = {days[4].papers[0].key}
    people = [Subscriber("w@example.org", max_papers=10), Subscriber("v@example.org")]
    variants = plan_week(
        days,
        people,
        settings=Settings(),
        taxonomy=load_taxonomy(None),
        templates=load_templates(None),
        date=friday,
        steering=Steering(sent={"w@example.org": already}),
    )
    weekly = _of(variants, "w@example.org")
    assert weekly.digest.weekly and weekly.digest.date == friday
    assert "weekly edition" in weekly.rendered.subject
    keys = _keys(weekly)
    assert len(keys) == 10 and len(set(keys)) == 10
    assert not already & set(keys)
    assert len({k.rsplit("-", 1)[1] for k in keys}) >= 3  # papers of at least three days
    assert len(_keys(_of(variants, "v@example.org"))) == 20  # WEEKLY_PAPERS
