"""The state database's reader settings, feedback signals and "what did they receive"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsletter.models import Day, SendResult, SendStatus, Subscriber
from newsletter.state import State, variant_key
from tests.steer_papers import DIFFUSION, ROBOTICS

DAY = dt.date(2026, 1, 5)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_every_setting_lies_over_the_list_and_none_means_as_in_the_list(tmp_path: Path) -> None:
    sub = Subscriber("A@example.org", topics=("x",), keywords=("k",), max_papers=5)
    with State(_url(tmp_path)) as state:
        assert state.apply([sub]) == [sub]
        state.set_preferences(
            "a@example.org",
            keywords=["robot arm"],
            authors=["Ada Lovelace"],
            max_papers="all",
            timezone="Europe/Berlin",
            frequency="weekly",
            weekday="fri",
        )
        (got,) = state.apply([sub])
    assert got.topics == ("x",) and got.summary == "tldr"  # not set: the list's
    assert got.keywords == ("robot arm",) and got.authors == ("Ada Lovelace",)
    assert got.max_papers is None and got.timezone == "Europe/Berlin"
    assert got.frequency == "weekly" and got.weekday == "fri"
    with State(_url(tmp_path)) as state:  # persisted, read back by a new connection
        overlay = state.preferences("a@EXAMPLE.org")
        assert overlay is not None and overlay.max_papers == "all"
        state.set_preferences("a@example.org", max_papers=3)
        (got,) = state.apply([sub])
        assert got.max_papers == 3 and got.keywords == ("k",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("frequency", "hourly"), ("weekday", "friday"), ("max_papers", 0), ("summary", "long")],
)
def test_bad_settings_are_refused(tmp_path: Path, field: str, value: object) -> None:
    with State(_url(tmp_path)) as state, pytest.raises(ValueError):
        state.set_preferences("a@example.org", **{field: value})  # type: ignore[arg-type]


def test_signals_are_recorded_once_replace_their_opposite_and_clear(tmp_path: Path) -> None:
    with State(_url(tmp_path)) as state:
        assert state.record_signal("a@example.org", "more", ROBOTICS[0].key, paper=ROBOTICS[0])
        assert not state.record_signal("A@example.org", "more", ROBOTICS[0].key, paper=ROBOTICS[0])
        state.record_signal("a@example.org", "less", DIFFUSION[0].key, paper=DIFFUSION[0])
        state.record_signal("a@example.org", "fewer_topic", "Image & video generation")
        state.record_signal("b@example.org", "more", DIFFUSION[0].key, paper=DIFFUSION[0])
        feedback = state.feedback()
        mine = feedback["a@example.org"]
        assert [p.key for p in mine.liked] == [ROBOTICS[0].key]
        assert mine.liked[0] == ROBOTICS[0]  # the whole paper, for similarity
        assert [p.key for p in mine.disliked] == [DIFFUSION[0].key]
        assert mine.fewer_topics == ("Image & video generation",)
        state.record_signal("a@example.org", "less", ROBOTICS[0].key, paper=ROBOTICS[0])
        assert [
            s.signal for s in state.signals("a@example.org") if s.target == ROBOTICS[0].key
        ] == ["less"]
        titles = {s.title for s in state.signals("a@example.org")}
        assert ROBOTICS[0].title in titles and "Image & video generation" in titles
        assert (
            state.clear_signals(
                "a@example.org", signal="fewer_topic", target="Image & video generation"
            )
            == 1
        )
        assert state.clear_signals("a@example.org") == 2
        assert state.signals("a@example.org") == []
        assert set(state.feedback()) == {"b@example.org"}
        with pytest.raises(ValueError):
            state.record_signal("a@example.org", "love", "x")  # type: ignore[arg-type]


def test_received_among_says_which_papers_each_reader_was_sent(tmp_path: Path) -> None:
    keys = [ROBOTICS[0].key, ROBOTICS[1].key]
    with State(_url(tmp_path)) as state:
        variant = variant_key(keys)
        state.save_variant(DAY, variant, keys)
        emails = ["A@example.org", "b@example.org"]
        state.claim(DAY, emails, owner="test")
        state.mark_attempt(DAY, {e: (f"<{e}>", variant) for e in emails}, owner="test")
        state.record(
            DAY,
            [
                SendResult("A@example.org", SendStatus.SENT),
                SendResult("b@example.org", SendStatus.FAILED, error="550"),
            ],
        )
        got = state.received_among([ROBOTICS[0].key, DIFFUSION[0].key])
        mine = state.received_among([ROBOTICS[0].key], emails=["A@example.org"])
        earlier = state.received_among([ROBOTICS[0].key], before=DAY)  # the day itself: no
    assert got == {"a@example.org": {ROBOTICS[0].key}} == mine
    assert earlier == {}


def test_find_paper_looks_in_the_stored_days(tmp_path: Path) -> None:
    with State(_url(tmp_path)) as state:
        state.save_day(Day(DAY, (ROBOTICS[0], DIFFUSION[0]), "test"))
        state.save_day(Day(DAY + dt.timedelta(days=1), (ROBOTICS[1],), "test"))
        assert state.find_paper(DIFFUSION[0].key, days=2) == DIFFUSION[0]
        assert state.find_paper("nope", days=2) is None
        assert state.find_paper(DIFFUSION[0].key, days=1) is None  # only the newest day
