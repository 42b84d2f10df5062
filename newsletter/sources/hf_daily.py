"""Hugging Face Daily Papers: the API client and the parser of its JSON.

``GET {settings.hf_url}?date=YYYY-MM-DD&limit=100&p=N`` returns a JSON list of
entries, each with a nested ``paper``::

    [{"paper": {"id": "2510.02283", "title": ..., "summary": ..., "authors": [{"name": ...}],
                "upvotes": 12, "publishedAt": ..., "submittedOnDailyAt": ...,
                "ai_summary": ..., "ai_keywords": [...], "githubRepo": ..., "githubStars": 3,
                "projectPage": ...},
      "numComments": 2, "thumbnail": ..., "title": ..., "publishedAt": ...}, ...]

Fields come and go across the years (2024 days have no ``ai_*`` fields and no
``submittedOnDailyAt``), so every field but the title is optional. A field of the
wrong type is dropped with a logged warning; an entry without a usable title is
dropped with a logged warning; the parser never raises for one bad entry. A body
that is not a JSON list at all (an HTML error page, truncated JSON, an object)
raises :class:`~newsletter.errors.SourceFormatError` with one line: where, what was
wrong, and the first bytes of the body.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from newsletter.config import SourceSettings
from newsletter.errors import SourceFormatError
from newsletter.models import Day, Paper
from newsletter.sources.common import detex, excerpt, merge_duplicates, squash
from newsletter.sources.http import RetryPolicy, get_source

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Entries asked for per request (the API's maximum ``limit``)."""

MAX_PAGES = 50
"""Most pages fetched for one day (5,000 papers): a guard against a server ignoring ``p``."""

PAPER_URL = "https://huggingface.co/papers/"
"""A paper's page is this followed by its id."""

SEARCH_URL = "https://huggingface.co/papers?q="
"""Followed by a quoted title: the link of a paper whose id is unknown."""

SOURCE_NAME = "hf"
"""``Paper.source`` of papers from this API."""

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_/]*$")


def paper_url(paper_id: str | None, title: str) -> str:
    """The paper's Hugging Face page, or a search for its title when the id is unknown."""
    if paper_id:
        return PAPER_URL + quote(paper_id, safe="./")
    return SEARCH_URL + quote(squash(title), safe="")


def fetch_hf_day(
    client: httpx.Client,
    date: dt.date,
    *,
    settings: SourceSettings,
    policy: RetryPolicy,
) -> Day:
    """The day's papers from the Daily Papers API, following pages while a page is full."""
    papers: list[Paper] = []
    seen: set[str] = set()
    for page in range(MAX_PAGES):
        params: dict[str, str | int] = {"date": date.isoformat(), "limit": PAGE_SIZE, "p": page}
        url = settings.hf_url
        response = get_source(client, url, params=params, settings=settings, policy=policy)
        origin = str(response.url)
        entries = load_entries(
            response.content, origin=origin, content_type=response.headers.get("content-type")
        )
        found = parse_entries(entries, origin=origin)
        fresh = [p for p in found if p.key not in seen]
        seen.update(p.key for p in found)
        papers.extend(found)
        if len(entries) < PAGE_SIZE or not fresh:
            break
    else:
        log.warning("%s: stopped after %d pages", settings.hf_url, MAX_PAGES)
    return Day(date=date, papers=merge_duplicates(papers), source=SOURCE_NAME)


def parse_hf_json(body: bytes | str, *, origin: str) -> tuple[Paper, ...]:
    """Papers from a Daily Papers JSON body (duplicates not yet merged)."""
    return parse_entries(load_entries(body, origin=origin), origin=origin)


def load_entries(body: bytes | str, *, origin: str, content_type: str | None = None) -> list[Any]:
    """The JSON list of a Daily Papers body, or SourceFormatError in one line."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    head = text.lstrip("\ufeff \t\r\n")[:200].lower()
    looks_html = head.startswith(("<!doctype html", "<html")) or (
        content_type is not None
        and "html" in content_type.lower()
        and not head.startswith(("[", "{"))
    )
    if looks_html:
        raise SourceFormatError(
            f"{origin}: expected a JSON list of daily papers, got an HTML page: {excerpt(text)}"
        )
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated JSON" if at_end else "invalid JSON"
        problem = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise SourceFormatError(
            f"{origin}: {what} ({problem} at line {exc.lineno} column {exc.colno}): {excerpt(text)}"
        ) from None
    except RecursionError:
        raise SourceFormatError(f"{origin}: JSON nested too deeply: {excerpt(text)}") from None
    if isinstance(data, dict):
        error = data.get("error")
        said = f" saying {error!r}" if isinstance(error, str) else ""
        keys = squash(", ".join(sorted(str(k) for k in data)[:5]))  # one line, whatever they are
        raise SourceFormatError(
            f"{origin}: expected a JSON list of daily papers, got an object{said} "
            f"(keys: {keys}): {excerpt(text)}"
        )
    if not isinstance(data, list):
        raise SourceFormatError(
            f"{origin}: expected a JSON list of daily papers, got {type(data).__name__}: "
            f"{excerpt(text)}"
        )
    return data


def parse_entries(entries: Sequence[Any], *, origin: str) -> tuple[Paper, ...]:
    """One Paper per usable entry; unusable entries and fields are logged and skipped."""
    papers: list[Paper] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            log.warning(
                "%s: entry %d is %s, not an object; skipped", origin, index, type(entry).__name__
            )
            continue
        paper = _parse_entry(entry, _Reader(origin, index))
        if paper is not None:
            papers.append(paper)
    return tuple(papers)


class _Reader:
    """Typed reads of JSON fields that log and return a default on a wrong type."""

    def __init__(self, origin: str, index: int) -> None:
        self.origin = origin
        self.where = f"entry {index}"

    def warn(self, message: str, *args: object) -> None:
        log.warning("%s: %s: " + message, self.origin, self.where, *args)

    def _wrong(self, name: str, value: object, expected: str) -> None:
        self.warn("%s is %s, not %s; ignored", name, type(value).__name__, expected)

    def text(self, obj: Mapping[str, Any], name: str) -> str | None:
        value = obj.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self._wrong(name, value, "a string")
            return None
        return squash(value) or None

    def integer(self, obj: Mapping[str, Any], name: str) -> int | None:
        value = obj.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self._wrong(name, value, "a count")
            return None
        return value

    def link(self, obj: Mapping[str, Any], name: str) -> str | None:
        value = self.text(obj, name)
        if value is None:
            return None
        if not value.lower().startswith(("https://", "http://")):
            self.warn("%s %r is not an http(s) URL; ignored", name, value[:60])
            return None
        return value

    def timestamp(self, obj: Mapping[str, Any], name: str) -> dt.datetime | None:
        value = self.text(obj, name)
        if value is None:
            return None
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            self.warn("%s %r is not an ISO timestamp; ignored", name, value[:40])
            return None
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)

    def strings(self, obj: Mapping[str, Any], name: str) -> tuple[str, ...]:
        value = obj.get(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            self._wrong(name, value, "a list")
            return ()
        items = tuple(squash(item) for item in value if isinstance(item, str))
        if len(items) != len(value):
            self.warn("%s has %d non-string items; ignored", name, len(value) - len(items))
        return tuple(dict.fromkeys(item for item in items if item))

    def authors(self, obj: Mapping[str, Any]) -> tuple[str, ...]:
        value = obj.get("authors")
        if value is None:
            return ()
        if not isinstance(value, list):
            self._wrong("authors", value, "a list")
            return ()
        names: list[str] = []
        for author in value:
            if isinstance(author, str):
                name = squash(author)
            elif isinstance(author, Mapping):
                if author.get("hidden") is True or not isinstance(author.get("name"), str):
                    continue
                name = squash(author["name"])
            else:
                continue
            if name:
                names.append(name)
        return tuple(names)


def _parse_entry(entry: Mapping[str, Any], read: _Reader) -> Paper | None:
    nested = entry.get("paper")
    if nested is None:
        nested = entry  # a bare paper object (the /api/papers shape)
    if not isinstance(nested, Mapping):
        read.warn("paper is %s, not an object; skipped", type(nested).__name__)
        return None
    paper_id = read.text(nested, "id")
    if paper_id is not None and not _ID_RE.match(paper_id):
        read.warn("id %r is not a paper id; ignored", paper_id[:40])
        paper_id = None
    if paper_id:
        read.where += f" ({paper_id})"
    title = read.text(nested, "title") or read.text(entry, "title")
    if not title:
        read.warn("no title; skipped")
        return None
    abstract = read.text(nested, "summary") or read.text(entry, "summary")
    if abstract is None:
        read.warn("no summary; listed with an empty abstract")
        abstract = ""
    return Paper(
        title=detex(title),
        abstract=detex(abstract),
        id=paper_id,
        authors=tuple(detex(name) for name in read.authors(nested)),
        url=paper_url(paper_id, title),
        upvotes=read.integer(nested, "upvotes") or 0,
        comments=read.integer(entry, "numComments") or 0,
        published_at=read.timestamp(nested, "publishedAt"),
        submitted_at=read.timestamp(nested, "submittedOnDailyAt")
        or (read.timestamp(entry, "publishedAt") if "submittedOnDailyAt" not in nested else None),
        ai_summary=read.text(nested, "ai_summary"),
        keywords=read.strings(nested, "ai_keywords"),
        github_repo=read.link(nested, "githubRepo"),
        github_stars=read.integer(nested, "githubStars"),
        project_page=read.link(nested, "projectPage"),
        thumbnail=read.link(entry, "thumbnail") or read.link(nested, "thumbnail"),
        source=SOURCE_NAME,
    )
