"""Run one day: the only place where the stages meet.

::

    fetch_day (I/O) -> assign_topics -> per variant: rank -> group -> render

Every variant of a day is ranked as of the day's own send time
(:func:`newsletter.rank.as_of` of the date at ``schedule.time`` in ``schedule.timezone``),
not the wall clock: a preview, a catch-up or a re-send of a past day orders and scores its
papers as that day's send did.

A *variant* is one distinct :class:`~newsletter.models.Profile`: subscribers who asked
for the same thing share one ranked, grouped and rendered digest, so the cost of a day
grows with the number of variants, not with the number of subscribers. Everything here
but :func:`prepare_day` is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TypedDict

import httpx

from newsletter.config import Settings
from newsletter.feedback import Feedback, FeedbackScorer, buckets, outcome_key, steer
from newsletter.models import (
    FULL_PROFILE,
    Day,
    Digest,
    Paper,
    Profile,
    RankedPaper,
    Subscriber,
    TopicDef,
    email_key,
    profile_key,
)
from newsletter.rank import as_of, rank
from newsletter.render import RenderedDigest, render
from newsletter.similarity import SimilarityIndex
from newsletter.sources import fetch_day
from newsletter.templating import Templates, load_templates
from newsletter.topics import assign_topics, group, load_taxonomy
from newsletter.weekly import edition_size, pick_week, ranking_time, unsent, week_pool


@dataclass(frozen=True, slots=True)
class Variant:
    """One distinct digest and the subscribers who get it."""

    profile: Profile
    """What its readers asked for (readers with feedback share a variant per bucket)."""
    digest: Digest
    rendered: RenderedDigest
    subscribers: tuple[Subscriber, ...]
    """Who gets it (empty for a :class:`Planner`'s variants: the readers are streamed)."""


@dataclass(frozen=True, slots=True)
class PreparedDay:
    """A day's papers and every variant of its digest, rendered and ready to send."""

    day: Day
    variants: tuple[Variant, ...]
    full: Variant
    """The full digest (every paper of the day): preview, archive, web version."""


def prepare_day(
    settings: Settings,
    date: dt.date,
    *,
    source: str | None,
    subscribers: Sequence[Subscriber],
    client: httpx.Client | None = None,
    exclude: Collection[str] = (),
    web_url: str | None = None,
    steer: Callable[[Sequence[Paper]], Steering] | None = None,
) -> PreparedDay:
    """Fetch the day from ``source`` (default: ``settings.source.default``) and plan it.

    ``steer`` says, for the day's papers, what the state database knows of the readers
    (what each was sent before, their feedback)."""
    day = fetch_day(
        source or settings.source.default, date, settings=settings.source, client=client
    )
    return plan_day(
        day,
        subscribers,
        **stage_tools(settings),
        exclude=exclude,
        web_url=web_url,
        steering=steer(day.papers) if steer is not None else NO_STEERING,
    )


class StageTools(TypedDict):
    """The ``settings``, ``taxonomy`` and ``templates`` arguments of the planners."""

    settings: Settings
    taxonomy: Sequence[TopicDef]
    templates: Templates


def stage_tools(settings: Settings) -> StageTools:
    """The planners' tools as ``settings`` configures them."""
    return {
        "settings": settings,
        "taxonomy": load_taxonomy(settings.digest.taxonomy),
        "templates": load_templates(settings.digest.templates),
    }


@dataclass(frozen=True, slots=True)
class Steering:
    """What the state database knows of each reader beyond their profile.

    Both maps are keyed by :func:`newsletter.models.email_key`. ``sent`` holds the paper
    keys each reader was already sent (only those among the papers being planned matter:
    "never twice"); ``feedback`` their "more / less like this" and "fewer of this topic".
    """

    sent: Mapping[str, Collection[str]] = field(default_factory=dict)
    feedback: Mapping[str, Feedback] = field(default_factory=dict)


NO_STEERING = Steering()


def plan_day(
    day: Day,
    subscribers: Sequence[Subscriber],
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
    exclude: Collection[str] = (),
    web_url: str | None = None,
    steering: Steering = NO_STEERING,
) -> PreparedDay:
    """Rank, group and render the day once per distinct profile (pure).

    ``exclude`` holds paper keys already sent recently (``digest.dedupe_days``): they
    are left out of the subscribers' digests but stay in the full digest. ``steering``:
    each reader's papers sent before (never twice) and feedback (see :class:`Planner`).
    """
    tools = StageTools(settings=settings, taxonomy=taxonomy, templates=templates)
    full, planner = day_planner(
        day, **tools, exclude=exclude, web_url=web_url, feedback=steering.feedback
    )
    return PreparedDay(day=day, variants=planner.plan(subscribers, steering.sent), full=full)


def day_planner(
    day: Day,
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
    exclude: Collection[str] = (),
    web_url: str | None = None,
    feedback: Mapping[str, Feedback] | None = None,
) -> tuple[Variant, Planner]:
    """The day's full digest and the :class:`Planner` of its readers' digests (pure).

    The full digest is rendered first, so a broken template fails before any email."""
    plan = _DayPlan.of(day, settings=settings, taxonomy=taxonomy, templates=templates)
    skip = set(exclude)
    subscriber_pool = tuple(p for p in day.papers if p.key not in skip) if skip else day.papers

    def make(profile: Profile, picked: Sequence[RankedPaper]) -> Variant:
        digest, rendered = plan.render(profile, picked, web_url=web_url)
        return Variant(profile, digest, rendered, ())

    everything = plan.ranked(FULL_PROFILE, day.papers)
    full_digest, full_rendered = plan.render(FULL_PROFILE, everything, web_url=web_url)
    full = Variant(FULL_PROFILE, full_digest, full_rendered, ())
    planner = Planner(
        subscriber_pool,
        topics=plan.topics,
        now=plan.now,
        make=make,
        pick=lambda ranked, profile: _cut(ranked, profile.max_papers),
        reuse=None if skip else full,
        buckets_per_group=settings.digest.feedback_buckets,
        feedback=feedback or {},
    )
    return full, planner


def plan_page(
    day: Day,
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
) -> Variant:
    """The day's full digest as its web page (the archive's day page): every paper, ranked
    and grouped as the day's send did, rendered without greeting or per-reader parts."""
    plan = _DayPlan.of(day, settings=settings, taxonomy=taxonomy, templates=templates)
    digest, rendered = plan.render(FULL_PROFILE, plan.ranked(FULL_PROFILE, day.papers), page=True)
    return Variant(FULL_PROFILE, digest, rendered, ())


@dataclass(frozen=True, slots=True)
class _DayPlan:
    """What every variant of a day shares: its topics and the moment it is ranked at."""

    day: Day
    topics: Mapping[str, str]
    now: dt.datetime
    settings: Settings
    taxonomy: Sequence[TopicDef]
    templates: Templates

    @classmethod
    def of(
        cls,
        day: Day,
        *,
        settings: Settings,
        taxonomy: Sequence[TopicDef],
        templates: Templates,
    ) -> _DayPlan:
        topics = assign_topics(day.papers, taxonomy)
        now = as_of(day.date, at=settings.schedule.time, zone=settings.schedule.timezone)
        return cls(day, topics, now, settings, taxonomy, templates)

    def ranked(self, profile: Profile, pool: Sequence[Paper]) -> tuple[RankedPaper, ...]:
        """``pool`` ranked for ``profile`` as of the day's send time."""
        return tuple(rank(pool, profile, topics=self.topics, now=self.now))

    def render(
        self,
        profile: Profile,
        ranked: Sequence[RankedPaper],
        *,
        web_url: str | None = None,
        page: bool = False,
    ) -> tuple[Digest, RenderedDigest]:
        """The digest of papers already ranked (and picked) for ``profile``, rendered."""
        digest = Digest(
            date=self.day.date,
            topics=group(ranked, self.taxonomy, max_sections=self.settings.digest.max_sections),
            profile=profile,
            total_papers=len(self.day.papers),
        )
        rendered = render(
            digest,
            settings=self.settings.digest,
            templates=self.templates,
            web_url=web_url,
            page=page,
        )
        return digest, rendered


def plan_week(
    days: Sequence[Day],
    subscribers: Sequence[Subscriber],
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
    date: dt.date,
    steering: Steering = NO_STEERING,
) -> tuple[Variant, ...]:
    """The weekly edition sent on ``date`` for each distinct profile (pure).

    ``days`` are the week's days (see :mod:`newsletter.weekly`); each reader gets the
    week's best papers for their profile that they were not sent before, the week's
    topics as sections, and a subject that says it is the weekly edition.
    """
    tools = StageTools(settings=settings, taxonomy=taxonomy, templates=templates)
    planner = week_planner(days, **tools, date=date, feedback=steering.feedback)
    return planner.plan(subscribers, steering.sent)


def week_planner(
    days: Sequence[Day],
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
    date: dt.date,
    feedback: Mapping[str, Feedback] | None = None,
) -> Planner:
    """The :class:`Planner` of the weekly edition sent on ``date`` (see :func:`plan_week`)."""
    pool, first_day = week_pool(days)
    topics = assign_topics(pool, taxonomy)

    def make(profile: Profile, picked: Sequence[RankedPaper]) -> Variant:
        digest = Digest(
            date=date,
            topics=group(picked, taxonomy, max_sections=settings.digest.max_sections),
            profile=profile,
            total_papers=len(pool),
            weekly=True,
        )
        rendered = render(digest, settings=settings.digest, templates=templates)
        return Variant(profile, digest, rendered, ())

    return Planner(
        pool,
        topics=topics,
        now=ranking_time(days),
        make=make,
        pick=lambda ranked, profile: pick_week(
            ranked, first_day, size=edition_size(profile.max_papers)
        ),
        reuse=None,
        buckets_per_group=settings.digest.feedback_buckets,
        feedback=feedback or {},
    )


def _cut(ranked: Sequence[RankedPaper], max_papers: int | None) -> tuple[RankedPaper, ...]:
    return tuple(ranked) if max_papers is None else tuple(ranked[: max(max_papers, 0)])


Make = Callable[[Profile, Sequence[RankedPaper]], Variant]
Pick = Callable[[Sequence[RankedPaper], Profile], tuple[RankedPaper, ...]]
GroupKey = tuple[tuple[object, ...], frozenset[str]]
"""A reader's profile (:func:`newsletter.models.profile_key`) and the pool papers they had."""


@dataclass
class Planner:
    """Readers to variants: one variant per distinct digest, made when first needed.

    Readers are grouped by profile and by the papers of ``pool`` they were already
    sent. In a group, readers without feedback share one digest; readers with feedback
    (given to :meth:`steer`, all at once, before they are asked for) are re-ranked from
    the group's one ranking, in at most ``buckets_per_group`` buckets of alike tastes
    (:func:`newsletter.feedback.buckets`; one render each), and digests that come out
    equal share one render too. ``reuse`` is a variant whose render serves the full
    profile as it is (the full digest).

    Only the variants and one entry per group are kept, never the readers: a list of any
    length streams through :meth:`variant_of` a batch at a time. The variants it made
    are :attr:`variants` (their ``subscribers`` empty), in the order first asked for.
    """

    pool: Sequence[Paper]
    _: KW_ONLY
    topics: Mapping[str, str]
    now: dt.datetime
    make: Make
    pick: Pick
    reuse: Variant | None
    buckets_per_group: int
    feedback: Mapping[str, Feedback]
    variants: list[Variant] = field(default_factory=list, init=False)
    _groups: dict[GroupKey, int] = field(default_factory=dict, init=False)
    _steered: dict[str, int] = field(default_factory=dict, init=False)
    """email_key -> the variant index of a reader with feedback."""
    _ranked: dict[GroupKey, tuple[RankedPaper, ...]] = field(default_factory=dict, init=False)
    _shared: dict[tuple[object, ...], int] = field(default_factory=dict, init=False)
    pool_keys: frozenset[str] = field(init=False)
    """The keys of ``pool``'s papers."""

    def __post_init__(self) -> None:
        self.pool_keys = frozenset(p.key for p in self.pool)

    def steered(self, subscriber: Subscriber) -> bool:
        """Whether the reader left feedback (their digest is re-ranked for them)."""
        found = self.feedback.get(email_key(subscriber.email)) if self.feedback else None
        return found is not None and not found.is_empty

    def variant_of(self, subscriber: Subscriber, sent: Collection[str] | None = None) -> int:
        """The index in :attr:`variants` of the digest ``subscriber`` gets; ``sent``: the
        paper keys they were sent before (only those in the pool matter)."""
        if self._steered:
            index = self._steered.get(email_key(subscriber.email))
            if index is not None:
                return index
        key = self._group_key(subscriber, sent)
        index = self._groups.get(key)
        if index is None:
            profile = subscriber.profile
            if self.reuse is not None and profile == FULL_PROFILE and not key[1]:
                index = self._add(("reuse",), profile, ())
            else:
                index = self._add_picked(profile, self.pick(self._ranking(key, profile), profile))
            self._groups[key] = index
        return index

    def steer(self, readers: Iterable[tuple[Subscriber, Collection[str] | None]]) -> None:
        """Bucket the readers with feedback (each with the keys they were sent before);
        :meth:`variant_of` then answers their bucket's variant."""
        groups: dict[GroupKey, list[tuple[Subscriber, Feedback]]] = {}
        for subscriber, sent in readers:
            found = self.feedback.get(email_key(subscriber.email))
            if found is not None and not found.is_empty:
                groups.setdefault(self._group_key(subscriber, sent), []).append((subscriber, found))
        if not groups:
            return
        rated = (p for each in groups.values() for _, fb in each for p in fb.liked + fb.disliked)
        index = SimilarityIndex((*self.pool, *rated))
        for key, readers_of in groups.items():
            profile = readers_of[0][0].profile
            ranked = self._ranking(key, profile)
            scorer = FeedbackScorer(ranked, index)
            terms = [scorer.terms(fb) for _, fb in readers_of]
            for bucket in buckets([t.terms for t in terms], cap=self.buckets_per_group):
                picked = self.pick(steer(ranked, [terms[i] for i in bucket]), profile)
                at = self._add_picked(profile, picked)
                for i in bucket:
                    self._steered[email_key(readers_of[i][0].email)] = at

    def plan(
        self, subscribers: Iterable[Subscriber], sent: Mapping[str, Collection[str]]
    ) -> tuple[Variant, ...]:
        """Every variant of ``subscribers`` (a whole list at once) with its readers;
        ``sent`` by :func:`newsletter.models.email_key`."""
        members: dict[int, list[Subscriber]] = {}
        later: list[Subscriber] = []
        for subscriber in subscribers:
            if self.steered(subscriber):
                later.append(subscriber)
            else:
                index = self.variant_of(
                    subscriber, sent.get(email_key(subscriber.email)) if sent else None
                )
                members.setdefault(index, []).append(subscriber)
        self.steer((s, sent.get(email_key(s.email))) for s in later)
        for subscriber in later:
            index = self.variant_of(subscriber, sent.get(email_key(subscriber.email)))
            members.setdefault(index, []).append(subscriber)
        return tuple(
            dataclasses.replace(variant, subscribers=tuple(members[i]))
            for i, variant in enumerate(self.variants)
            if i in members
        )

    def _group_key(self, subscriber: Subscriber, sent: Collection[str] | None) -> GroupKey:
        seen = self.pool_keys.intersection(sent) if sent else frozenset()
        return (profile_key(subscriber), seen)

    def _ranking(self, key: GroupKey, profile: Profile) -> tuple[RankedPaper, ...]:
        found = self._ranked.get(key)
        if found is None:
            uncut = dataclasses.replace(profile, max_papers=None)
            found = rank(unsent(self.pool, key[1]), uncut, topics=self.topics, now=self.now)
            self._ranked[key] = found
        return found

    def _add_picked(self, profile: Profile, picked: tuple[RankedPaper, ...]) -> int:
        return self._add((profile, outcome_key(picked)), profile, picked)

    def _add(
        self, outcome: tuple[object, ...], profile: Profile, picked: tuple[RankedPaper, ...]
    ) -> int:
        index = self._shared.get(outcome)
        if index is None:
            index = self._shared[outcome] = len(self.variants)
            made = self.reuse if outcome == ("reuse",) else None
            self.variants.append(made or self.make(profile, picked))
        return index
