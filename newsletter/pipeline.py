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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

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
from newsletter.render import RenderedDigest, Templates, load_templates, render
from newsletter.similarity import SimilarityIndex
from newsletter.sources import fetch_day
from newsletter.topics import assign_topics, group, load_taxonomy
from newsletter.weekly import edition_size, pick_week, ranking_time, unsent, week_pool


@dataclass(frozen=True, slots=True)
class Variant:
    """One distinct digest and the subscribers who get it."""

    profile: Profile
    digest: Digest
    rendered: RenderedDigest
    subscribers: tuple[Subscriber, ...]


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
        settings=settings,
        taxonomy=load_taxonomy(settings.digest.taxonomy),
        templates=load_templates(settings.digest.templates),
        exclude=exclude,
        web_url=web_url,
        steering=steer(day.papers) if steer is not None else NO_STEERING,
    )


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
    each reader's papers sent before (never twice) and feedback (see _plan_variants).
    The full digest is rendered first, so a broken template fails before any email.
    """
    plan = _DayPlan.of(day, settings=settings, taxonomy=taxonomy, templates=templates)
    skip = set(exclude)
    subscriber_pool = tuple(p for p in day.papers if p.key not in skip) if skip else day.papers

    def make(
        profile: Profile, picked: Sequence[RankedPaper], members: Sequence[Subscriber]
    ) -> Variant:
        digest, rendered = plan.render_ranked(profile, picked, web_url=web_url)
        return Variant(profile, digest, rendered, tuple(members))

    full_digest, full_rendered = plan.render(FULL_PROFILE, day.papers, web_url=web_url)
    full = Variant(FULL_PROFILE, full_digest, full_rendered, ())
    variants = _plan_variants(
        subscriber_pool,
        subscribers,
        topics=plan.topics,
        now=plan.now,
        steering=steering,
        make=make,
        pick=lambda ranked, profile: _cut(ranked, profile.max_papers),
        reuse=None if skip else full,
        buckets_per_group=settings.digest.feedback_buckets,
    )
    return PreparedDay(day=day, variants=variants, full=full)


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
    digest, rendered = plan.render(FULL_PROFILE, day.papers, page=True)
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

    def render(
        self,
        profile: Profile,
        pool: Sequence[Paper],
        *,
        web_url: str | None = None,
        page: bool = False,
    ) -> tuple[Digest, RenderedDigest]:
        ranked = rank(pool, profile, topics=self.topics, now=self.now)
        return self.render_ranked(profile, ranked, web_url=web_url, page=page)

    def render_ranked(
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
    pool, first_day = week_pool(days)
    topics = assign_topics(pool, taxonomy)
    now = ranking_time(days)

    def make(
        profile: Profile, picked: Sequence[RankedPaper], members: Sequence[Subscriber]
    ) -> Variant:
        digest = Digest(
            date=date,
            topics=group(picked, taxonomy, max_sections=settings.digest.max_sections),
            profile=profile,
            total_papers=len(pool),
            weekly=True,
        )
        rendered = render(digest, settings=settings.digest, templates=templates)
        return Variant(profile, digest, rendered, tuple(members))

    return _plan_variants(
        pool,
        subscribers,
        topics=topics,
        now=now,
        steering=steering,
        make=make,
        pick=lambda ranked, profile: pick_week(
            ranked, first_day, size=edition_size(profile.max_papers)
        ),
        reuse=None,
        buckets_per_group=settings.digest.feedback_buckets,
    )


def _cut(ranked: Sequence[RankedPaper], max_papers: int | None) -> tuple[RankedPaper, ...]:
    return tuple(ranked) if max_papers is None else tuple(ranked[: max(max_papers, 0)])


Make = Callable[[Profile, Sequence[RankedPaper], Sequence[Subscriber]], Variant]
Pick = Callable[[Sequence[RankedPaper], Profile], tuple[RankedPaper, ...]]


def _plan_variants(
    pool: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    *,
    topics: Mapping[str, str],
    now: dt.datetime,
    steering: Steering,
    make: Make,
    pick: Pick,
    reuse: Variant | None,
    buckets_per_group: int,
) -> tuple[Variant, ...]:
    """One variant per distinct digest.

    Subscribers are grouped by profile and by the papers of ``pool`` they were already
    sent. In a group, readers without feedback share one digest; readers with feedback
    are re-ranked from the group's one ranking, in at most ``buckets_per_group`` buckets
    of alike tastes (:func:`newsletter.feedback.buckets`; one render each), and buckets
    that come out equal share one render too. ``reuse`` is a variant whose render serves
    the full profile as it is (the full digest).
    """
    pool_keys = frozenset(p.key for p in pool)
    GroupKey = tuple[tuple[object, ...], frozenset[str]]
    plain: dict[GroupKey, list[Subscriber]] = {}  # one Profile made per group
    steered: dict[GroupKey, list[tuple[Subscriber, Feedback]]] = {}
    asked = steering is not NO_STEERING
    for subscriber in subscribers:
        key = email_key(subscriber.email) if asked else ""
        sent = steering.sent.get(key) if asked else None
        seen: frozenset[str] = pool_keys.intersection(sent) if sent else frozenset()
        group_key: GroupKey = (profile_key(subscriber), seen)
        feedback = steering.feedback.get(key) if asked else None
        if feedback is not None and not feedback.is_empty:
            steered.setdefault(group_key, []).append((subscriber, feedback))
            continue
        members = plain.get(group_key)
        if members is None:
            plain[group_key] = [subscriber]
        else:
            members.append(subscriber)

    ranked_for: dict[GroupKey, tuple[Profile, tuple[RankedPaper, ...]]] = {}

    def ranking(group_key: GroupKey, profile: Profile) -> tuple[RankedPaper, ...]:
        found = ranked_for.get(group_key)
        if found is None:
            uncut = dataclasses.replace(profile, max_papers=None)
            found = (profile, rank(unsent(pool, group_key[1]), uncut, topics=topics, now=now))
            ranked_for[group_key] = found
        return found[1]

    shared: dict[tuple[object, ...], tuple[Profile, tuple[RankedPaper, ...], list[Subscriber]]] = {}

    def add(profile: Profile, picked: tuple[RankedPaper, ...], members: list[Subscriber]) -> None:
        outcome: tuple[object, ...] = (profile, outcome_key(picked))
        held = shared.get(outcome)
        if held is None:
            shared[outcome] = (profile, picked, members)
        else:
            held[2].extend(members)

    for group_key, members in plain.items():
        profile = members[0].profile
        if reuse is not None and profile == FULL_PROFILE and not group_key[1]:
            shared[("reuse",)] = (profile, (), members)
            continue
        add(profile, pick(ranking(group_key, profile), profile), members)

    if steered:
        rated = (
            p for readers in steered.values() for _, fb in readers for p in fb.liked + fb.disliked
        )
        index = SimilarityIndex((*pool, *rated))
        for group_key, readers in steered.items():
            profile = readers[0][0].profile
            ranked = ranking(group_key, profile)
            scorer = FeedbackScorer(ranked, index)
            terms = [scorer.terms(fb) for _, fb in readers]
            for bucket in buckets([t.terms for t in terms], cap=buckets_per_group):
                picked = pick(steer(ranked, [terms[i] for i in bucket]), profile)
                add(profile, picked, [readers[i][0] for i in bucket])

    variants: list[Variant] = []
    for outcome, (profile, picked, members) in shared.items():
        if outcome == ("reuse",) and reuse is not None:
            variants.append(dataclasses.replace(reuse, subscribers=tuple(members)))
        else:
            variants.append(make(profile, picked, members))
    return tuple(variants)
