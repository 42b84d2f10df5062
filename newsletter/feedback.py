"""A reader's feedback as a ranking term (pure).

A reader says "more like this" or "less like this" about a paper, or "fewer of this
topic" about a section (links in every email, recorded by the web app in the state
database). :func:`rerank` turns those signals into one more term of the score::

    liked     = max cosine similarity to a paper the reader liked      (0..1)
    disliked  = max cosine similarity to a paper the reader disliked   (0..1)
    feedback  = LIKE_WEIGHT * liked   (when liked >= MIN_SIMILARITY)
              - DISLIKE_WEIGHT * disliked (when disliked >= MIN_SIMILARITY)
              - FEWER_TOPIC_PENALTY  (when the paper's topic is one the reader has fewer of)

rounded to FEEDBACK_STEP, so readers whose tastes differ by a hair rank alike and can
share one rendered digest (:func:`outcome_key`). The weights are in the units of
:mod:`newsletter.rank` (a keyword match is +4): a paper much like one the reader liked
gains about a keyword match; one much like a paper they disliked loses more than that.
A paper the reader rated itself is never shown again (they have seen it). A raised paper
says why: ``like "X", which you liked``.

Similarity comes from :class:`newsletter.similarity.SimilarityIndex` over the papers
being ranked plus the rated ones.
"""

from __future__ import annotations

import base64
import hashlib
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from newsletter.models import Paper, RankedPaper
from newsletter.similarity import SimilarityIndex

Signal = Literal["more", "less", "fewer_topic"]
"""The three things a reader can say: about a paper (more, less) or a topic."""

SIGNALS: tuple[Signal, ...] = ("more", "less", "fewer_topic")

LIKE_WEIGHT = 6.0
"""Added, times the similarity, for a paper like one the reader liked."""

DISLIKE_WEIGHT = 8.0
"""Taken off, times the similarity, for a paper like one the reader disliked."""

MIN_SIMILARITY = 0.12
"""Below this cosine similarity two papers are taken as unrelated (no term, no reason)."""

FEWER_TOPIC_PENALTY = 3.0
"""Taken off a paper whose topic the reader asked to see fewer of."""

FEEDBACK_STEP = 0.5
"""The feedback term is rounded to a multiple of this (see the module docstring)."""

LIKE_PAPERS_REASON = "like papers you liked"
"""The reason of a paper raised for a group of readers by different liked papers."""

REASON_TITLE_CHARS = 60
"""The liked paper's title in a reason is cut beyond this."""

PAPER_REF_CHARS = 12
"""A paper key that is not a short plain id is named in feedback links by this many
characters of its hash (72 bits)."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,23}")
"""A paper key that can stand in a link as it is (an arXiv id such as ``2604.01234``)."""


def paper_ref(key: str) -> str:
    """How feedback links name the paper ``key``: the key itself when it is a short plain id,
    else ``_`` and PAPER_REF_CHARS base64url characters of its SHA-256 (papers known only
    by their title). One name per paper; a plain id never starts with ``_``."""
    if _PLAIN_KEY.fullmatch(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return "_" + base64.urlsafe_b64encode(digest[: PAPER_REF_CHARS * 3 // 4]).decode("ascii")


@dataclass(frozen=True, slots=True)
class Feedback:
    """Everything one reader said, as :func:`rerank` needs it."""

    liked: tuple[Paper, ...] = ()
    disliked: tuple[Paper, ...] = ()
    fewer_topics: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.liked or self.disliked or self.fewer_topics)

    @property
    def rated(self) -> frozenset[str]:
        """Keys of the papers the reader rated."""
        return frozenset(p.key for p in (*self.liked, *self.disliked))


def _short(title: str) -> str:
    title = " ".join(title.split())
    if len(title) <= REASON_TITLE_CHARS:
        return title
    return title[: REASON_TITLE_CHARS - 1].rstrip() + "\u2026"


def liked_reason(title: str) -> str:
    """The reason a paper raised by feedback carries."""
    return f'like "{_short(title)}", which you liked'


Terms = tuple[float, ...]
"""One reader's feedback term for each paper of a ranked list, in its order."""


@dataclass(frozen=True, slots=True)
class ReaderTerms:
    """What :class:`FeedbackScorer` worked out for one reader over one ranked list."""

    terms: Terms
    because: tuple[Paper | None, ...]
    """For each paper, the liked paper that raised it (None when not raised)."""
    rated: frozenset[str]


class FeedbackScorer:
    """Feedback terms of many readers over one ranked list, the similarity work shared:
    each rated paper's similarity to every listed paper is worked out once (a column),
    so a reader costs a few list lookups per paper, not a cosine."""

    def __init__(self, ranked: Sequence[RankedPaper], index: SimilarityIndex) -> None:
        self.ranked = tuple(ranked)
        self._index = index
        self._columns: dict[str, tuple[float, ...]] = {}
        self._topics = tuple(rp.topic.casefold() for rp in self.ranked)
        self._papers = tuple(rp.paper for rp in self.ranked)

    def _column(self, rated: Paper) -> tuple[float, ...]:
        key = rated.key
        found = self._columns.get(key)
        if found is None:
            row = self._index.row(rated, self._papers)
            found = self._columns[key] = row
        return found

    def terms(self, feedback: Feedback) -> ReaderTerms:
        """The reader's rounded feedback term per paper (see the module docstring)."""
        n = len(self.ranked)
        liked = [self._column(p) for p in feedback.liked]
        disliked = [self._column(p) for p in feedback.disliked]
        like = list(map(max, *liked)) if len(liked) > 1 else list(liked[0] if liked else [0.0] * n)
        dislike = (
            list(map(max, *disliked)) if len(disliked) > 1 else disliked[0] if disliked else None
        )
        gains = [LIKE_WEIGHT * v if v >= MIN_SIMILARITY else 0.0 for v in like]
        if dislike is not None:
            gains = [
                g - DISLIKE_WEIGHT * v if v >= MIN_SIMILARITY else g
                for g, v in zip(gains, dislike, strict=True)
            ]
        if feedback.fewer_topics:
            fewer = {t.casefold() for t in feedback.fewer_topics}
            gains = [
                g - FEWER_TOPIC_PENALTY if t in fewer else g
                for g, t in zip(gains, self._topics, strict=True)
            ]
        step = FEEDBACK_STEP
        terms = tuple([round(g / step) * step if g else 0.0 for g in gains])
        because: list[Paper | None] = [None] * n
        for i, term in enumerate(terms):
            if term > 0 and like[i] >= MIN_SIMILARITY:
                because[i] = next(
                    p for p, col in zip(feedback.liked, liked, strict=True) if col[i] == like[i]
                )
        return ReaderTerms(terms, tuple(because), feedback.rated)


def steer(ranked: Sequence[RankedPaper], readers: Sequence[ReaderTerms]) -> tuple[RankedPaper, ...]:
    """``ranked`` re-ranked for a group of readers (one reader: exactly theirs): each
    paper gets the mean of their terms; papers any of them rated are left out; a raised
    paper says which liked paper raised it when that is the same for all of them, else
    that it is like papers they liked. Best first; ties keep ``ranked``'s order."""
    if not readers:
        return tuple(ranked)
    rated = frozenset().union(*(r.rated for r in readers))
    count = len(readers)
    scored: list[tuple[float, int, RankedPaper]] = []
    for i, rp in enumerate(ranked):
        if rp.paper.key in rated:
            continue
        term = sum(r.terms[i] for r in readers) / count
        if term:
            reasons = rp.reasons
            if term > 0:
                raisers = {_key(r.because[i]) for r in readers}
                first = readers[0].because[i]
                if len(raisers) == 1 and first is not None:
                    reasons = (liked_reason(first.title), *reasons)
                elif any(raisers):
                    reasons = (LIKE_PAPERS_REASON, *reasons)
            rp = RankedPaper(rp.paper, rp.score + term, rp.topic, reasons)
        scored.append((-rp.score, i, rp))
    scored.sort(key=lambda item: item[:2])
    return tuple(item[2] for item in scored)


def _key(paper: Paper | None) -> str | None:
    return paper.key if paper is not None else None


def rerank(
    ranked: Sequence[RankedPaper],
    feedback: Feedback,
    *,
    index: SimilarityIndex,
    max_papers: int | None = None,
) -> tuple[RankedPaper, ...]:
    """``ranked`` (rank()'s output, uncut) with one reader's feedback term added, best
    first, cut to ``max_papers``. Ties keep ``ranked``'s order; rated papers are left out."""
    out = tuple(ranked)
    if not feedback.is_empty:
        out = steer(out, [FeedbackScorer(out, index).terms(feedback)])
    return out if max_papers is None else out[: max(max_papers, 0)]


def buckets(vectors: Sequence[Terms], *, cap: int) -> list[list[int]]:
    """Readers (by index) grouped so that each group shares one re-ranked digest.

    Readers with equal term vectors always share; a new vector starts a group while
    there are fewer than ``cap``; after that a reader joins the group whose first vector
    is nearest (L1). ``cap`` bounds the renders: one per group.
    """
    groups: list[list[int]] = []
    leaders: list[Terms] = []
    exact: dict[Terms, int] = {}
    for i, vector in enumerate(vectors):
        g = exact.get(vector)
        if g is None:
            if len(groups) < max(cap, 1):
                g = len(groups)
                groups.append([])
                leaders.append(vector)
            elif len(leaders) == 1:
                g = 0
            else:
                g = min(
                    range(len(leaders)),
                    key=lambda j: sum(map(abs, map(operator.sub, leaders[j], vector))),
                )
            exact[vector] = g
        groups[g].append(i)
    return groups


def outcome_key(picked: Sequence[RankedPaper]) -> tuple[tuple[str, float, tuple[str, ...]], ...]:
    """What a reader's digest is made of: readers with equal keys share one render."""
    return tuple((rp.paper.key, rp.score, rp.reasons) for rp in picked)
