"""Sources: one day's papers from wherever the operator points ``--source``.

``fetch_day(spec, date, *, settings, client=None) -> Day`` is the only entry point the
rest of the package uses. ``spec`` is one of:

=====================  ==========================================================
``sample``             the bundled fictional day (newsletter/data/sample_day.json),
                       moved to whatever date is asked for (its papers' times too,
                       so they are as fresh on that day as on their own); no network
``hf``                 the Hugging Face Daily Papers API (:mod:`.hf_daily`)
``arxiv:cs.RO,cs.CV``  arXiv categories, RSS for the feed's own day, else the API
                       (:mod:`.arxiv`)
a file path            HF JSON, arXiv Atom/RSS XML or Daily Papers page text,
                       detected by content (:mod:`.files`)
``http(s)://...``      fetched, then parsed like a file (content decides the format)
=====================  ==========================================================

Every result has duplicates merged by paper id. A day with no papers is
``Day(papers=())``, never an error: the pipeline's empty-day policy decides. Errors
are one-line :class:`~newsletter.errors.SourceError` (format, unavailable) or
:class:`~newsletter.errors.ConfigError` (a spec we do not understand).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from newsletter.config import SourceSettings
from newsletter.errors import ConfigError
from newsletter.models import Day
from newsletter.sources import arxiv, files, hf_daily
from newsletter.sources.common import merge_duplicates
from newsletter.sources.http import RetryPolicy, get_source, make_client, utcnow

__all__ = ["SAMPLE_RESOURCE", "SPECS_HELP", "fetch_day", "load_sample_day"]

SAMPLE_RESOURCE = "sample_day.json"
"""The bundled sample day, a resource of the ``newsletter.data`` package."""

SPECS_HELP = (
    "sample, hf, arxiv:CATEGORIES (e.g. arxiv:cs.RO,cs.CV), a file path "
    "(HF JSON, arXiv XML or Daily Papers page text) or an http(s) URL"
)
"""What ``--source`` accepts, for help texts and errors."""

_FILE_SUFFIXES = (".json", ".xml", ".txt", ".atom", ".rss", ".text")


def fetch_day(
    spec: str,
    date: dt.date,
    *,
    settings: SourceSettings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] | None = None,
) -> Day:
    """The papers of ``date`` from the source ``spec`` (see the module doc).

    ``client`` is used as given (and not closed); without one a client is made with
    the configured timeout and closed afterwards. ``sleep`` and ``now`` drive the
    retry waits, so tests never sleep.
    """
    spec = spec.strip()
    kind = spec.lower()
    if kind == "sample":
        return load_sample_day(date)
    if kind == "hf" or kind.startswith("arxiv:") or kind.startswith(("http://", "https://")):
        policy = RetryPolicy(retries=max(0, settings.retries), sleep=sleep, now=now or utcnow)
        if kind.startswith("arxiv:"):
            categories = arxiv.parse_categories(spec.split(":", 1)[1])
        own = client is None
        http = make_client(settings) if client is None else client
        try:
            if kind == "hf":
                return hf_daily.fetch_hf_day(http, date, settings=settings, policy=policy)
            if kind.startswith("arxiv:"):
                return arxiv.fetch_arxiv_day(
                    http, categories, date, settings=settings, policy=policy
                )
            return _fetch_url(http, spec, date, settings=settings, policy=policy)
        finally:
            if own:
                http.close()
    if _looks_like_path(spec):
        papers = files.read_path(spec, settings=settings)
        return Day(date=date, papers=merge_duplicates(papers), source=spec)
    raise ConfigError(f"unknown source {spec!r}: use {SPECS_HELP}")


def load_sample_day(date: dt.date) -> Day:
    """The bundled fictional day, moved to ``date``: every paper's times shift by the days
    between the sample's own day (its latest ``submittedOnDailyAt``) and ``date``."""
    resource = importlib.resources.files("newsletter.data").joinpath(SAMPLE_RESOURCE)
    papers = hf_daily.parse_hf_json(
        resource.read_bytes(), origin=f"newsletter/data/{SAMPLE_RESOURCE}"
    )
    listed = [p.submitted_at for p in papers if p.submitted_at is not None]
    if listed:
        shift = date - max(listed).date()
        papers = tuple(
            dataclasses.replace(
                p,
                submitted_at=p.submitted_at + shift if p.submitted_at else None,
                published_at=p.published_at + shift if p.published_at else None,
            )
            for p in papers
        )
    return Day(date=date, papers=merge_duplicates(papers), source="sample")


def _looks_like_path(spec: str) -> bool:
    return (
        Path(spec).expanduser().exists()
        or "/" in spec
        or "\\" in spec
        or spec.lower().endswith(_FILE_SUFFIXES)
    )


def _fetch_url(
    client: httpx.Client,
    url: str,
    date: dt.date,
    *,
    settings: SourceSettings,
    policy: RetryPolicy,
) -> Day:
    response = get_source(client, url, settings=settings, policy=policy)
    papers = files.parse_document(
        response.content,
        origin=url,
        settings=settings,
        content_type=response.headers.get("content-type"),
    )
    return Day(date=date, papers=merge_duplicates(papers), source=url)
