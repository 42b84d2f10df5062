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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import httpx

from newsletter.config import Settings
from newsletter.models import (
    FULL_PROFILE,
    Day,
    Digest,
    Paper,
    Profile,
    Subscriber,
    TopicDef,
    profile_key,
)
from newsletter.rank import as_of, rank
from newsletter.render import RenderedDigest, Templates, load_templates, render
from newsletter.sources import fetch_day
from newsletter.topics import assign_topics, group, load_taxonomy


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
) -> PreparedDay:
    """Fetch the day from ``source`` (default: ``settings.source.default``) and plan it."""
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
    )


def plan_day(
    day: Day,
    subscribers: Sequence[Subscriber],
    *,
    settings: Settings,
    taxonomy: Sequence[TopicDef],
    templates: Templates,
    exclude: Collection[str] = (),
    web_url: str | None = None,
) -> PreparedDay:
    """Rank, group and render the day once per distinct profile (pure).

    ``exclude`` holds paper keys already sent recently (``digest.dedupe_days``): they
    are left out of the subscribers' digests but stay in the full digest.
    The full digest is rendered first, so a broken template fails before any email.
    """
    plan = _DayPlan.of(day, settings=settings, taxonomy=taxonomy, templates=templates)
    skip = set(exclude)
    subscriber_pool = tuple(p for p in day.papers if p.key not in skip) if skip else day.papers

    def build(profile: Profile, members: Sequence[Subscriber], pool: Sequence[Paper]) -> Variant:
        digest, rendered = plan.render(profile, pool, web_url=web_url)
        return Variant(profile, digest, rendered, tuple(members))

    full = build(FULL_PROFILE, (), day.papers)
    by_fields: dict[tuple[object, ...], list[Subscriber]] = {}  # one Profile made per group
    for subscriber in subscribers:
        key = profile_key(subscriber)
        members = by_fields.get(key)
        if members is None:
            by_fields[key] = [subscriber]
        else:
            members.append(subscriber)
    by_profile = {members[0].profile: members for members in by_fields.values()}
    variants = tuple(
        dataclasses.replace(full, subscribers=tuple(members))
        if profile == FULL_PROFILE and not skip
        else build(profile, members, subscriber_pool)
        for profile, members in by_profile.items()
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
