"""Scoring the day's papers and picking them for one subscriber (pure).

The trending score
------------------
::

    votes    = upvotes + COMMENT_WEIGHT * comments
    age      = hours from the paper's submitted_at (else published_at) to ``now``, less
               FRESH_HOURS (a digest covers one day: the day's papers are all fresh),
               0 when neither is known or the time lies in the future
    now      = the digest's own send time, :func:`as_of` (never the wall clock), so a
               preview, a catch-up or a re-send of a past day scores as that day's send did
    trending = (1 + log2(1 + votes)) * 0.5 ** (age / HALF_LIFE_HOURS)

Why this shape: upvotes on the Hugging Face list are heavy-tailed (a day runs from 0 to
a few hundred), so a logarithm keeps the order of popularity while letting a personal
boost compete with it (+4, a keyword match, is worth 16 times the votes). The ``1 +`` gives a
paper without votes a positive score, so freshness still orders those. A half-life
rather than Hacker News' ``(age + 2) ** 1.8`` gravity because our papers are not
competing minute by minute: a digest covers one day, and the decay only has to push
papers a source reports late (arXiv listings, replacements) gently below fresh ones;
after one half-life a paper keeps half its score. Within a day, the time of listing
does not count (``FRESH_HOURS``): the day's list is ordered by its votes, not by whether a
paper came in at 01:00 or 07:00. Both parts are monotone: more upvotes (or comments)
score higher, older (beyond the day) scores lower.

Personal boosts (added, in the same units)
------------------------------------------
- ``KEYWORD_BOOST`` per subscriber keyword found in the title, abstract or the
  source's keywords (case-insensitive, on word boundaries, multiword phrases,
  plurals and hyphens tolerated), counted for at most ``MAX_KEYWORD_BOOSTS`` keywords;
- ``AUTHOR_BOOST`` per followed author (names compared without case, diacritics or
  punctuation, initials allowed: "Y. LeCun" follows "Yann LeCun");
- ``TOPIC_BOOST`` when the paper's topic is one the subscriber chose.

Filters, in this order: ``min_score`` (on the final score), ``only_topics`` (keep the
chosen topics; ignored when none are chosen), then ``max_papers`` (the best N).

Ties keep a stable order: score, then upvotes, then the order the source gave.
Every picked paper carries the reasons that are personal to the reader, e.g.
``("matches: diffusion policy", "author: Jane Doe", "topic: Robotics & embodied AI")``;
the counts are not repeated as a reason (the email shows them beside each paper).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError
from newsletter.models import Paper, Profile, RankedPaper
from newsletter.topics import OTHER, Phrase, fold

COMMENT_WEIGHT = 1.0
"""A comment counts as much as an upvote."""

HALF_LIFE_HOURS = 36.0
"""After this many hours (beyond FRESH_HOURS) a paper keeps half of its trending score."""

FRESH_HOURS = 24.0
"""A paper listed within this many hours before the send is as fresh as one listed at it."""

KEYWORD_BOOST = 4.0
"""Added per subscriber keyword the paper matches."""

MAX_KEYWORD_BOOSTS = 3
"""At most this many matched keywords add to the score (all are listed as reasons)."""

AUTHOR_BOOST = 5.0
"""Added per followed author of the paper."""

TOPIC_BOOST = 2.0
"""Added when the paper's topic is one the subscriber chose."""


def as_of(date: dt.date, *, at: str = "08:00", zone: str = "UTC") -> dt.datetime:
    """The moment a digest of ``date`` is ranked at: its send time (``schedule.time`` in
    ``schedule.timezone``), in UTC. Raises ConfigError for a bad time or zone."""
    try:
        hours, minutes = at.strip().split(":")
        clock = dt.time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"schedule.time: {at!r} is not a time of day as HH:MM") from None
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"schedule.timezone: {zone!r} is not an IANA time zone") from None
    return dt.datetime.combine(date, clock, tz).astimezone(dt.UTC)


def trending_score(paper: Paper, *, now: dt.datetime) -> float:
    """The paper's trending score before personal boosts (see the module docstring)."""
    votes = max(paper.upvotes, 0) + COMMENT_WEIGHT * max(paper.comments, 0)
    popularity = 1.0 + math.log2(1.0 + votes)
    stale = max(age_hours(paper, now=now) - FRESH_HOURS, 0.0)
    decay = math.exp(-math.log(2.0) * stale / HALF_LIFE_HOURS)
    return popularity * decay


def age_hours(paper: Paper, *, now: dt.datetime) -> float:
    """Hours since the paper was listed (``submitted_at``) or published; never negative."""
    when = paper.submitted_at or paper.published_at
    if when is None:
        return 0.0
    delta = _as_utc(now) - _as_utc(when)
    return max(delta.total_seconds() / 3600.0, 0.0)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken to be UTC, so naive and aware values compare."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --------------------------------------------------------------------------- authors


@dataclass(frozen=True, slots=True)
class AuthorName:
    """A person's name reduced for tolerant comparison: given names and surname."""

    given: tuple[str, ...]
    surname: str
    shown: str

    @classmethod
    def parse(cls, name: str) -> AuthorName | None:
        shown = " ".join(name.split())
        text = fold(shown)
        if "," in text:  # "LeCun, Yann"
            last, _, first = text.partition(",")
            text = f"{first} {last}"
        text = re.sub(r"['’`-]", "", text)
        words = re.findall(r"[a-z0-9]+", text)
        if not words:
            return None
        return cls(given=tuple(words[:-1]), surname=words[-1], shown=shown)

    def matches(self, other: AuthorName) -> bool:
        """Same surname, and compatible first given names (equal, or one an initial)."""
        if self.surname != other.surname:
            return False
        if not self.given or not other.given:
            return True
        mine, theirs = self.given[0], other.given[0]
        if len(mine) == 1 or len(theirs) == 1:
            return mine[0] == theirs[0]
        return mine == theirs


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True, slots=True)
class _Wants:
    """A profile compiled once per rank() call."""

    keywords: tuple[tuple[str, str, re.Pattern[str]], ...]
    """(the keyword as written, a literal it must contain, its pattern over folded text)."""
    authors: tuple[AuthorName, ...]
    topics: frozenset[str]

    @classmethod
    def of(cls, profile: Profile) -> _Wants:
        keywords = []
        seen = set()
        for keyword in profile.keywords:
            phrase = Phrase.parse(keyword.replace("^", " "))
            if phrase.words and phrase.key not in seen:
                seen.add(phrase.key)
                needle = min(phrase.words, key=len)[:-1] or phrase.words[0]
                keywords.append((phrase.text, needle, keyword_pattern(phrase)))
        authors = tuple(a for a in (AuthorName.parse(n) for n in profile.authors) if a)
        return cls(tuple(keywords), authors, frozenset(t.casefold() for t in profile.topics))


def keyword_pattern(phrase: Phrase) -> re.Pattern[str]:
    """A regex over folded text matching what :class:`newsletter.topics.Text` would.

    Words on word boundaries, any run of non-alphanumerics between them (spaces,
    hyphens), plural forms of each word, and a prefix for a trailing ``*``.
    """
    parts = []
    for i, word in enumerate(phrase.words):
        if phrase.prefix and i == len(phrase.words) - 1:
            parts.append(re.escape(word) + "[a-z0-9]*")
        elif word.endswith("y"):
            parts.append(re.escape(word[:-1]) + "(?:y|ys|ies)")
        else:
            parts.append(re.escape(word) + "s?")
    return re.compile(r"(?<![a-z0-9])" + "[^a-z0-9]+".join(parts) + r"(?![a-z0-9])")


def _matched_keywords(paper: Paper, wants: _Wants) -> list[str]:
    if not wants.keywords:
        return []
    text = fold("\n".join((paper.title, paper.abstract, *paper.keywords)))
    return [
        shown
        for shown, needle, pattern in wants.keywords
        if needle in text and pattern.search(text)  # the substring test is the fast path
    ]


def _matched_authors(paper: Paper, wants: _Wants) -> list[str]:
    if not wants.authors:
        return []
    found = []
    for name in paper.authors:
        folded = fold(name)
        if not any(w.surname in folded for w in wants.authors):
            continue  # cheap pre-check before parsing the name
        author = AuthorName.parse(name)
        if author and any(author.matches(w) for w in wants.authors):
            found.append(author.shown)
    return found


def _score(
    paper: Paper, wants: _Wants, *, topic: str, now: dt.datetime
) -> tuple[float, tuple[str, ...]]:
    score = trending_score(paper, now=now)
    reasons: list[str] = []
    keywords = _matched_keywords(paper, wants)
    score += KEYWORD_BOOST * min(len(keywords), MAX_KEYWORD_BOOSTS)
    reasons.extend(f"matches: {k}" for k in keywords)
    authors = _matched_authors(paper, wants)
    score += AUTHOR_BOOST * len(authors)
    reasons.extend(f"author: {a}" for a in authors)
    if topic.casefold() in wants.topics:
        score += TOPIC_BOOST
        reasons.append(f"topic: {topic}")
    return score, tuple(reasons)


def rank(
    papers: Sequence[Paper],
    profile: Profile,
    *,
    topics: Mapping[str, str],
    now: dt.datetime,
) -> tuple[RankedPaper, ...]:
    """The papers ``profile`` gets, best first, each with its topic and reasons.

    ``topics`` maps ``Paper.key`` to a topic name (from
    :func:`newsletter.topics.assign_topics`); a paper missing from it is "Other".
    With :data:`newsletter.models.FULL_PROFILE` every paper is kept.
    """
    wants = _Wants.of(profile)
    scored: list[tuple[float, int, int, RankedPaper]] = []
    for position, paper in enumerate(papers):
        topic = topics.get(paper.key, OTHER)
        score, reasons = _score(paper, wants, topic=topic, now=now)
        if profile.min_score is not None and score < profile.min_score:
            continue
        if profile.only_topics and wants.topics and topic.casefold() not in wants.topics:
            continue
        ranked = RankedPaper(paper=paper, score=score, topic=topic, reasons=reasons)
        scored.append((-score, -paper.upvotes, position, ranked))
    scored.sort(key=lambda item: item[:3])
    picked = tuple(item[3] for item in scored)
    if profile.max_papers is not None:
        picked = picked[: max(profile.max_papers, 0)]
    return picked
