from __future__ import annotations

import datetime as dt

from newsletter.feedback import (
    FEWER_TOPIC_PENALTY,
    LIKE_PAPERS_REASON,
    Feedback,
    FeedbackScorer,
    buckets,
    liked_reason,
    outcome_key,
    rerank,
    steer,
)
from newsletter.models import FULL_PROFILE, RankedPaper
from newsletter.rank import rank
from newsletter.similarity import SimilarityIndex
from tests.steer_papers import ALL, DIFFUSION, LANGUAGE, ROBOTICS, dated

NOW = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
TOPICS = {p.key: "Robotics" for p in ROBOTICS} | {p.key: "Diffusion" for p in DIFFUSION}


DAY = [dated(p, NOW.date(), 40 if p in DIFFUSION else 10) for p in ALL]
"""Diffusion papers are the day's most upvoted."""


def _ranked() -> tuple[RankedPaper, ...]:
    return rank(DAY, FULL_PROFILE, topics=TOPICS, now=NOW)


def _order(picked: tuple[RankedPaper, ...]) -> list[str]:
    return [rp.paper.key for rp in picked]


def test_liked_subject_rises_disliked_subject_sinks() -> None:
    index = SimilarityIndex(ALL)
    base = rerank(_ranked(), Feedback(), index=index)
    steered = rerank(
        _ranked(), Feedback(liked=(ROBOTICS[0],), disliked=(DIFFUSION[0],)), index=index
    )
    scores = {rp.paper.key: rp.score for rp in steered}
    base_scores = {rp.paper.key: rp.score for rp in base}
    assert _order(base)[:3] == [p.key for p in DIFFUSION]  # before: diffusion on top
    assert set(_order(steered)[:2]) == {p.key for p in ROBOTICS[1:]}  # after: robotics
    order = _order(steered)
    assert max(order.index(p.key) for p in ROBOTICS[1:]) < min(
        order.index(p.key) for p in DIFFUSION[1:]
    )
    for p in ROBOTICS[1:]:
        assert scores[p.key] > base_scores[p.key]
    for p in DIFFUSION[1:]:
        assert scores[p.key] < base_scores[p.key]
    for p in LANGUAGE:  # unrelated papers keep their score
        assert scores[p.key] == base_scores[p.key]


def test_rated_papers_are_not_shown_again_and_raised_ones_say_why() -> None:
    index = SimilarityIndex(ALL)
    steered = rerank(
        _ranked(), Feedback(liked=(ROBOTICS[0],), disliked=(DIFFUSION[0],)), index=index
    )
    keys = {rp.paper.key for rp in steered}
    assert ROBOTICS[0].key not in keys and DIFFUSION[0].key not in keys
    top = steered[0]
    assert top.paper.key in {p.key for p in ROBOTICS}
    assert top.reasons[0] == liked_reason(ROBOTICS[0].title)
    assert top.reasons[0].startswith('like "Diffusion-free visuomotor')
    assert top.reasons[0].endswith(", which you liked")


def test_fewer_of_a_topic_lowers_every_paper_of_it() -> None:
    index = SimilarityIndex(ALL)
    base = {rp.paper.key: rp.score for rp in rerank(_ranked(), Feedback(), index=index)}
    fewer = rerank(_ranked(), Feedback(fewer_topics=("diffusion",)), index=index)
    for rp in fewer:
        expected = base[rp.paper.key] - (FEWER_TOPIC_PENALTY if rp.topic == "Diffusion" else 0)
        assert abs(rp.score - expected) <= 0.25 + 1e-9  # rounded to FEEDBACK_STEP


def test_max_papers_cuts_after_reranking_and_equal_tastes_share_an_outcome() -> None:
    index = SimilarityIndex(ALL)
    a = rerank(_ranked(), Feedback(liked=(ROBOTICS[0],)), index=index, max_papers=3)
    b = rerank(_ranked(), Feedback(liked=(ROBOTICS[0],)), index=index, max_papers=3)
    assert len(a) == 3 and outcome_key(a) == outcome_key(b)
    c = rerank(_ranked(), Feedback(liked=(DIFFUSION[0],)), index=index, max_papers=3)
    assert outcome_key(c) != outcome_key(a)
    assert rerank(_ranked(), Feedback(), index=index, max_papers=0) == ()


def test_buckets_keep_equal_tastes_together_and_bound_the_renders() -> None:
    vectors = [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.9, 0.1), (0.0, 2.0)]
    assert buckets(vectors, cap=10) == [[0, 2], [1], [3], [4]]
    capped = buckets(vectors, cap=2)
    assert capped == [[0, 2, 3], [1, 4]]  # later tastes join the nearest first one
    assert buckets([], cap=2) == []


def test_a_bucket_gets_its_mean_term_and_says_why_only_when_true_for_all() -> None:
    index = SimilarityIndex(ALL)
    ranked = _ranked()
    scorer = FeedbackScorer(ranked, index)
    a = scorer.terms(Feedback(liked=(ROBOTICS[0],)))
    b = scorer.terms(Feedback(liked=(ROBOTICS[2],)))
    together = {rp.paper.key: rp for rp in steer(ranked, [a, a])}
    alone = {rp.paper.key: rp for rp in steer(ranked, [a])}
    assert together == alone  # equal tastes: exactly one reader's digest
    mixed = {rp.paper.key: rp for rp in steer(ranked, [a, b])}
    assert ROBOTICS[0].key not in mixed and ROBOTICS[2].key not in mixed  # rated by one
    raised = mixed[ROBOTICS[1].key]
    assert raised.reasons[0] in (LIKE_PAPERS_REASON, liked_reason(ROBOTICS[0].title))
    base = {rp.paper.key: rp.score for rp in ranked}
    i = [rp.paper.key for rp in ranked].index(ROBOTICS[1].key)
    assert raised.score == base[ROBOTICS[1].key] + (a.terms[i] + b.terms[i]) / 2
