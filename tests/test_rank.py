from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.models import FULL_PROFILE, Paper, Profile
from newsletter.rank import (
    AUTHOR_BOOST,
    FRESH_HOURS,
    HALF_LIFE_HOURS,
    KEYWORD_BOOST,
    MAX_KEYWORD_BOOSTS,
    TOPIC_BOOST,
    AuthorName,
    as_of,
    rank,
    trending_score,
)
from newsletter.topics import OTHER

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def paper(title: str = "A paper", **kw: object) -> Paper:
    kw.setdefault("abstract", "An abstract.")
    return Paper(title=title, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- trending score


@given(st.integers(0, 10_000), st.integers(1, 100), st.integers(0, 50))
def test_more_upvotes_score_higher(upvotes: int, more: int, comments: int) -> None:
    low = paper(upvotes=upvotes, comments=comments, submitted_at=NOW - 5 * HOUR)
    high = paper(upvotes=upvotes + more, comments=comments, submitted_at=NOW - 5 * HOUR)
    assert trending_score(high, now=NOW) > trending_score(low, now=NOW)


@given(st.integers(0, 10_000), st.floats(0, 500), st.floats(0.01, 500))
def test_papers_older_than_a_day_score_lower(upvotes: int, age: float, older: float) -> None:
    fresh = paper(upvotes=upvotes, submitted_at=NOW - dt.timedelta(hours=FRESH_HOURS + age))
    stale = paper(upvotes=upvotes, submitted_at=NOW - dt.timedelta(hours=FRESH_HOURS + age + older))
    assert trending_score(stale, now=NOW) < trending_score(fresh, now=NOW)


@given(st.integers(0, 10_000), st.floats(0, FRESH_HOURS))
def test_the_hour_of_listing_within_the_day_does_not_count(upvotes: int, age: float) -> None:
    listed = paper(upvotes=upvotes, submitted_at=NOW - dt.timedelta(hours=age))
    assert trending_score(listed, now=NOW) == trending_score(paper(upvotes=upvotes), now=NOW)


def test_comments_count_and_the_formula_is_as_documented() -> None:
    p = paper(upvotes=6, comments=1)  # no timestamps: no decay
    assert trending_score(p, now=NOW) == 1 + 3  # 1 + log2(1 + 7)
    half = paper(upvotes=6, comments=1, submitted_at=NOW - (FRESH_HOURS + HALF_LIFE_HOURS) * HOUR)
    assert abs(trending_score(half, now=NOW) - 2.0) < 1e-9


def test_age_prefers_submitted_at_then_published_at() -> None:
    listed_now = paper(upvotes=3, submitted_at=NOW, published_at=NOW - 100 * HOUR)
    published_old = paper(upvotes=3, published_at=NOW - 100 * HOUR)
    assert trending_score(listed_now, now=NOW) > trending_score(published_old, now=NOW)


def test_future_and_naive_timestamps_are_handled() -> None:
    future = paper(upvotes=3, submitted_at=NOW + 10 * HOUR)
    assert trending_score(future, now=NOW) == trending_score(paper(upvotes=3), now=NOW)
    naive = paper(upvotes=3, submitted_at=(NOW - 2 * HOUR).replace(tzinfo=None))
    aware = paper(upvotes=3, submitted_at=NOW - 2 * HOUR)
    assert trending_score(naive, now=NOW) == trending_score(aware, now=NOW)
    other_zone = NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert trending_score(aware, now=other_zone) == trending_score(aware, now=NOW)


# --------------------------------------------------------------------------- ranking


def test_full_profile_keeps_every_paper_best_first() -> None:
    papers = [paper(f"p{i}", id=str(i), upvotes=v) for i, v in enumerate([3, 50, 0, 7])]
    ranked = rank(papers, FULL_PROFILE, topics={}, now=NOW)
    assert [rp.paper.id for rp in ranked] == ["1", "3", "0", "2"]
    assert all(rp.topic == OTHER for rp in ranked)
    # the counts are shown beside each paper: no reason repeats them
    assert all(rp.reasons == () for rp in ranked)


def test_stable_ties_by_score_then_upvotes_then_order() -> None:
    papers = [
        paper("a", id="a", upvotes=5, comments=5),
        paper("b", id="b", upvotes=10, comments=0),  # same score as a, more upvotes
        paper("c", id="c", upvotes=5, comments=5),
        paper("d", id="d", upvotes=5, comments=5),
    ]
    ranked = rank(papers, FULL_PROFILE, topics={}, now=NOW)
    assert [rp.paper.id for rp in ranked] == ["b", "a", "c", "d"]
    assert rank(list(reversed(papers)), FULL_PROFILE, topics={}, now=NOW)[1].paper.id == "d"


def test_topics_come_from_the_mapping() -> None:
    p = paper("x", id="2501.00001")
    (ranked,) = rank([p], FULL_PROFILE, topics={"2501.00001": "Robotics"}, now=NOW)
    assert ranked.topic == "Robotics"


def test_keyword_boost_and_reason() -> None:
    hit = paper("Diffusion Policies for grasping", id="hit", upvotes=0)
    miss = paper("Something else entirely", id="miss", upvotes=7)
    profile = Profile(keywords=("diffusion policy",))
    ranked = rank([miss, hit], profile, topics={}, now=NOW)
    assert [rp.paper.id for rp in ranked] == ["hit", "miss"]
    assert ranked[0].reasons == ("matches: diffusion policy",)
    assert ranked[0].score == trending_score(hit, now=NOW) + KEYWORD_BOOST


def test_keywords_match_abstract_and_source_keywords_on_word_boundaries() -> None:
    in_abstract = paper("t", id="1", abstract="We use Vision-Language-Action models.")
    in_keywords = paper("t", id="2", keywords=("VLA", "world models"))
    not_a_word = paper("t", id="3", abstract="Our world is a URL of bravla ideas.")
    profile = Profile(keywords=("vision language action model", "RL", "VLA"))
    ranked = {
        rp.paper.id: rp
        for rp in rank([in_abstract, in_keywords, not_a_word], profile, topics={}, now=NOW)
    }
    assert ranked["1"].reasons == ("matches: vision language action model",)
    assert ranked["2"].reasons == ("matches: VLA",)
    assert ranked["3"].reasons == ()


def test_keyword_boosts_are_capped_but_all_listed() -> None:
    words = ("alpha", "beta", "gamma", "delta", "epsilon")
    p = paper(" ".join(words))
    (ranked,) = rank([p], Profile(keywords=words), topics={}, now=NOW)
    assert len(ranked.reasons) == len(words)
    assert ranked.score == trending_score(p, now=NOW) + KEYWORD_BOOST * MAX_KEYWORD_BOOSTS


def test_author_names_match_tolerantly() -> None:
    yann = AuthorName.parse("Yann LeCun")
    assert yann is not None
    for alias in ("Y. LeCun", "yann lecun", "LeCun, Yann", "Y LeCun", "LeCun"):
        other = AuthorName.parse(alias)
        assert other is not None and other.matches(yann), alias
    for stranger in ("Yves LeCun", "Yann Dauphin", "A. LeCun"):
        other = AuthorName.parse(stranger)
        assert other is not None and not other.matches(yann), stranger
    godel = AuthorName.parse("Kurt Gödel")
    plain = AuthorName.parse("K. Godel")
    assert godel is not None and plain is not None and godel.matches(plain)
    assert AuthorName.parse(" . ") is None


def test_followed_author_boost_and_reason() -> None:
    followed = paper("x", id="f", authors=("Jane Q. Doe", "Ana Müller"))
    other = paper("y", id="o", authors=("John Smith",), upvotes=3)
    profile = Profile(authors=("J. Doe", "ana muller"))
    ranked = rank([other, followed], profile, topics={}, now=NOW)
    assert ranked[0].paper.id == "f"
    assert ranked[0].reasons == ("author: Jane Q. Doe", "author: Ana Müller")
    assert ranked[0].score == trending_score(followed, now=NOW) + 2 * AUTHOR_BOOST


def test_topic_boost_reason_and_case_insensitive_names() -> None:
    robo = paper("r", id="r", upvotes=1)
    nlp = paper("n", id="n", upvotes=2)
    topics = {"r": "Robotics & embodied AI", "n": "NLP & retrieval"}
    profile = Profile(topics=("robotics & EMBODIED ai",))
    ranked = rank([nlp, robo], profile, topics=topics, now=NOW)
    assert ranked[0].paper.id == "r"
    assert ranked[0].reasons == ("topic: Robotics & embodied AI",)
    assert ranked[0].score == trending_score(robo, now=NOW) + TOPIC_BOOST


def test_reasons_come_in_a_fixed_order() -> None:
    p = paper("Diffusion policy", id="p", authors=("Jane Doe",), upvotes=143)
    profile = Profile(keywords=("diffusion policy",), authors=("Jane Doe",), topics=("Robots",))
    (ranked,) = rank([p], profile, topics={"p": "Robots"}, now=NOW)
    assert ranked.reasons == (
        "matches: diffusion policy",
        "author: Jane Doe",
        "topic: Robots",
    )


def test_as_of_is_the_send_time_of_the_day_in_utc() -> None:
    assert as_of(dt.date(2026, 4, 7)) == dt.datetime(2026, 4, 7, 8, 0, tzinfo=dt.UTC)
    berlin = as_of(dt.date(2026, 4, 7), at="08:30", zone="Europe/Berlin")
    assert berlin == dt.datetime(2026, 4, 7, 6, 30, tzinfo=dt.UTC)  # CEST is UTC+2
    with pytest.raises(ConfigError, match=r"schedule\.time"):
        as_of(dt.date(2026, 4, 7), at="8 o'clock")
    with pytest.raises(ConfigError, match=r"schedule\.timezone"):
        as_of(dt.date(2026, 4, 7), zone="Mars/Olympus")


def test_a_past_day_ranked_as_of_its_send_time_follows_its_votes() -> None:
    """Scored against the wall clock, a day months old decays to 0.0 for every paper."""
    day = dt.date(2026, 4, 7)
    listed = dt.datetime(2026, 4, 7, 2, 0, tzinfo=dt.UTC)
    papers = [paper(f"p{v}", id=str(v), upvotes=v, submitted_at=listed) for v in (3, 113, 0, 38)]
    ranked = rank(papers, FULL_PROFILE, topics={}, now=as_of(day))
    assert [rp.paper.upvotes for rp in ranked] == [113, 38, 3, 0]
    assert all(rp.score > 0.8 for rp in ranked)  # six hours old: most of the score left


def test_only_topics_max_papers_and_min_score() -> None:
    papers = [paper(f"p{i}", id=str(i), upvotes=10 * i) for i in range(6)]
    topics = {str(i): ("A" if i % 2 else "B") for i in range(6)}
    only_a = rank(papers, Profile(topics=("A",), only_topics=True), topics=topics, now=NOW)
    assert [rp.paper.id for rp in only_a] == ["5", "3", "1"]
    no_topics = rank(papers, Profile(only_topics=True), topics=topics, now=NOW)
    assert len(no_topics) == 6
    top2 = rank(papers, Profile(max_papers=2), topics=topics, now=NOW)
    assert [rp.paper.id for rp in top2] == ["5", "4"]
    assert rank(papers, Profile(max_papers=0), topics=topics, now=NOW) == ()
    threshold = trending_score(papers[3], now=NOW)
    above = rank(papers, Profile(min_score=threshold), topics=topics, now=NOW)
    assert [rp.paper.id for rp in above] == ["5", "4", "3"]
    # min_score applies to the boosted score: a topic boost can lift a paper over it.
    boosted = rank(papers, Profile(min_score=threshold, topics=("B",)), topics=topics, now=NOW)
    assert "2" in [rp.paper.id for rp in boosted]


def test_many_variants_are_cheap() -> None:
    abstract = "We study diffusion policies for robot manipulation with language models. " * 12
    papers = [
        paper(
            f"Paper {i} on vision-language-action models",
            id=f"2511.{i:05d}",
            abstract=abstract,
            authors=tuple(f"Author{j} Name{i}" for j in range(12)),
            upvotes=i,
            submitted_at=NOW - i * HOUR,
        )
        for i in range(60)
    ]
    topics = {p.key: "Robotics & embodied AI" for p in papers}
    profiles = [
        Profile(
            keywords=(f"keyword {v}", "diffusion policy"),
            authors=(f"A. Name{v}",),
            topics=("Robotics & embodied AI",),
            max_papers=20,
        )
        for v in range(50)
    ]
    started = time.perf_counter()
    for profile in profiles:
        assert len(rank(papers, profile, topics=topics, now=NOW)) == 20
    assert time.perf_counter() - started < 10.0  # typically well under a second


def test_keyword_patterns_follow_word_boundaries_and_plurals() -> None:
    def hits(keyword: str, text: str) -> bool:
        (ranked,) = rank([paper(text)], Profile(keywords=(keyword,)), topics={}, now=NOW)
        return bool(ranked.reasons) and ranked.reasons[0].startswith("matches:")

    assert hits("diffusion policy", "Diffusion-Policies at scale")
    assert hits("world models", "a world model")
    assert hits("robot*", "robotic arms")
    assert hits("Gödel machine", "the godel machine")
    assert not hits("RL", "RLHF for chat")
    assert not hits("reward", "rewarding work")
    assert not hits("diffusion policy", "diffusion for policy")


def test_duplicate_keywords_count_once() -> None:
    p = paper("World models")
    (ranked,) = rank([p], Profile(keywords=("world model", "World Models")), topics={}, now=NOW)
    assert ranked.reasons == ("matches: world model",)
    assert ranked.score == trending_score(p, now=NOW) + KEYWORD_BOOST
