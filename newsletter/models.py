"""The values that flow through the pipeline.

Every stage takes and returns these frozen dataclasses, so a stage can be tested
on its own and nothing downstream can change what an upstream stage produced::

    sources  -> Day(papers: tuple[Paper, ...])
    topics   -> tuple[TopicGroup, ...]          (pure)
    rank     -> tuple[RankedPaper, ...]         (pure, per Profile)
    render   -> RenderedDigest                  (pure, per variant)
    delivery -> SendResult per recipient
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

SummaryStyle = Literal["tldr", "abstract", "titles"]
"""How much of each paper a subscriber sees: a short TL;DR, the abstract, or titles only."""

SUMMARY_STYLES: tuple[SummaryStyle, ...] = ("tldr", "abstract", "titles")


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper of the day, as any source reports it.

    Only ``title`` and ``abstract`` are always there; every other field is optional
    because the sources (and the years of one source) differ in what they carry.
    """

    title: str
    abstract: str
    id: str | None = None
    """arXiv identifier ("2510.02283") when the source knows it."""
    authors: tuple[str, ...] = ()
    url: str | None = None
    """The paper's page: hf.co/papers/ID, the arXiv abstract page, or None."""
    upvotes: int = 0
    comments: int = 0
    published_at: dt.datetime | None = None
    submitted_at: dt.datetime | None = None
    """When it was put on the daily list (HF ``submittedOnDailyAt``)."""
    ai_summary: str | None = None
    keywords: tuple[str, ...] = ()
    """Keywords the source attached (HF ``ai_keywords``)."""
    categories: tuple[str, ...] = ()
    """arXiv categories, primary first."""
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    thumbnail: str | None = None
    source: str = ""
    """Where it came from: "hf", "arxiv", "file"."""

    @property
    def key(self) -> str:
        """A stable identity: the id when known, else the normalised title."""
        return self.id if self.id else "title:" + " ".join(self.title.lower().split())


@dataclass(frozen=True, slots=True)
class Day:
    """What a source returned for one date. ``papers == ()`` is an explicit empty day."""

    date: dt.date
    papers: tuple[Paper, ...]
    source: str
    """A human-readable description of the source ("hf", "arxiv:cs.RO", a path)."""

    @property
    def is_empty(self) -> bool:
        return not self.papers


@dataclass(frozen=True, slots=True)
class TopicDef:
    """A named topic of the taxonomy: how a reader sees it and how papers are matched."""

    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    """arXiv categories that count as evidence for this topic."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What one subscriber asked for; everything rank() needs to personalise.

    Two subscribers with equal profiles get the same digest (one render variant).
    """

    topics: tuple[str, ...] = ()
    """Chosen topics: boosted, and with ``only_topics`` the only ones shown."""
    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    only_topics: bool = False
    max_papers: int | None = None
    min_score: float | None = None
    summary: SummaryStyle = "tldr"


FULL_PROFILE = Profile()
"""The profile of the full digest: every paper of the day, no boosts."""


@dataclass(frozen=True, slots=True)
class RankedPaper:
    """A paper with its score, its topic and the reasons it was picked."""

    paper: Paper
    score: float
    topic: str
    reasons: tuple[str, ...] = ()
    """Shown in the email, e.g. ("matches: diffusion policy", "author: Jane Doe")."""


@dataclass(frozen=True, slots=True)
class TopicGroup:
    """One section of the digest."""

    name: str
    papers: tuple[RankedPaper, ...]
    description: str = ""

    @property
    def anchor(self) -> str:
        """An id for the table of contents: lowercase letters, digits and dashes."""
        out = "".join(ch if ch.isalnum() else "-" for ch in self.name.lower())
        return "-".join(part for part in out.split("-") if part) or "topic"


@dataclass(frozen=True, slots=True)
class Digest:
    """One subscriber variant's digest for one day, before rendering."""

    date: dt.date
    topics: tuple[TopicGroup, ...]
    profile: Profile = FULL_PROFILE
    total_papers: int = 0
    """How many papers the day had in all (the digest may show fewer)."""
    weekly: bool = False
    """A weekly edition: the best of the seven days up to ``date``."""

    @property
    def papers(self) -> tuple[RankedPaper, ...]:
        return tuple(rp for group in self.topics for rp in group.papers)

    @property
    def is_empty(self) -> bool:
        return not any(group.papers for group in self.topics)

    @property
    def top_topic(self) -> str | None:
        """The topic of the highest-scored paper, for the subject line."""
        best = max(self.papers, key=lambda rp: rp.score, default=None)
        return best.topic if best else None


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One entry of the subscriber list."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    max_papers: int | None = None
    summary: SummaryStyle = "tldr"
    timezone: str | None = None
    active: bool = True
    added: dt.date | None = None
    frequency: Literal["daily", "weekly"] = "daily"
    """Daily digests, or one weekly edition on ``weekday``."""
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    """The weekly edition's day; None: ``schedule.weekly_day``."""

    @property
    def profile(self) -> Profile:
        return Profile(
            topics=self.topics,
            keywords=self.keywords,
            authors=self.authors,
            max_papers=self.max_papers,
            summary=self.summary,
        )


def email_key(address: str) -> str:
    """How two addresses are compared: case-insensitively (the list, the state database)."""
    return address.strip().casefold()


PROFILE_FIELDS = ("topics", "keywords", "authors", "max_papers", "summary")
"""The fields of a Subscriber that its :attr:`Subscriber.profile` is made of."""

profile_key: Callable[[Subscriber], tuple[object, ...]] = operator.attrgetter(*PROFILE_FIELDS)
"""A subscriber's PROFILE_FIELDS as a tuple (cheaper to make and hash than a Profile): two
subscribers have equal keys exactly when their profiles are equal."""


class SendStatus(StrEnum):
    """The fixed set of outcomes for one recipient."""

    SENT = "sent"
    QUEUED = "queued"
    INVALID = "invalid"
    REJECTED = "rejected"
    FAILED = "failed"
    SKIPPED = "skipped"


DELIVERED = frozenset({SendStatus.SENT, SendStatus.QUEUED})
"""Statuses that mean the provider took the message."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one recipient's message."""

    email: str
    status: SendStatus
    message_id: str | None = None
    """The provider's id for the message, when it gave one."""
    error: str | None = None
    transient: bool = False
    """True when a retry may succeed (4xx SMTP, 429/5xx HTTP, timeouts)."""
    attempts: int = 1
    extra: dict[str, str] = field(default_factory=dict)
