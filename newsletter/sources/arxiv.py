"""arXiv: the RSS feed and the API (Atom) for a list of categories.

Which one ``arxiv:cs.RO,cs.CV`` uses for a date (no clock needed):

1. The RSS feed ``{arxiv_rss_url}/cs.RO+cs.CV`` lists the latest announcement and says
   which day it is (``<pubDate>`` of the channel). If that is the requested date, its
   items are the day: what arXiv announced that day, an empty feed being an explicit
   empty day (weekends, holidays).
2. Otherwise (an older date, or today before the announcement) the API is asked for
   the papers *submitted* on that date, in UTC:
   ``search_query=(cat:cs.RO OR cat:cs.CV) AND submittedDate:[YYYYMMDD0000 TO YYYYMMDD2359]``,
   sorted by submission date, 200 a page, with the 3-second pause between pages arXiv asks for.
   A page that comes back empty although ``totalResults`` promises more (a known API
   hiccup) is asked for again, up to ``settings.retries`` times.

Announce types: ``new`` papers are kept; ``cross`` (cross-lists) only with
``settings.include_cross_lists``; ``replace`` (new versions) only with
``settings.include_replacements``; ``replace-cross`` only with both. For API results the
type is inferred: a primary category outside the requested ones is a cross-list, a
version above 1 a replacement.

Text is given as Unicode: TeX accents, macros and inline math in titles, abstracts and
names are converted (:func:`newsletter.sources.common.detex`). The RSS feed lists a
paper's authors in one ``<dc:creator>``, each maybe followed by affiliations in
parentheses that hold commas of their own; :func:`split_authors` splits at the commas
(and a final "and") outside parentheses and leaves the affiliations out.

XML is parsed with the standard library. A document type declaration is refused before
parsing (arXiv never sends one), so no entity can be declared or expanded.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.utils
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from newsletter.config import SourceSettings
from newsletter.errors import ConfigError, SourceFormatError, SourceUnavailable
from newsletter.models import Day, Paper
from newsletter.sources.common import detex, excerpt, merge_duplicates, squash
from newsletter.sources.http import RetryPolicy, get_source

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
DC = "{http://purl.org/dc/elements/1.1/}"

ABS_URL = "https://arxiv.org/abs/"
"""A paper's page is this followed by its id (without version)."""

API_PAGE_SIZE = 200
"""Results asked for per API request."""

API_MAX_PAGES = 25
"""Most API pages fetched for one day (5,000 papers)."""

API_PAGE_DELAY = 3.0
"""Seconds to wait between two API requests (arXiv's terms of use)."""

SOURCE_NAME = "arxiv"
"""``Paper.source`` of papers from arXiv."""

ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")
"""The values of ``<arxiv:announce_type>`` in the RSS feed."""

_CATEGORY_RE = re.compile(r"^[a-z][a-z\-]*(\.[A-Za-z][A-Za-z\-]*)?$")
_ID_RE = re.compile(
    r"(?:arxiv\.org/abs/|oai:arXiv\.org:|arXiv:)?([a-z\-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5})(v\d+)?",
    re.I,
)
_RSS_PREFIX_RE = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*[\w\-]+\s*(?:Abstract:\s*)?", re.IGNORECASE
)
_DOCTYPE_RE = re.compile(rb"^\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.DOTALL | re.I)


@dataclass(frozen=True, slots=True)
class ArxivItem:
    """A paper and how it was announced (one of ANNOUNCE_TYPES)."""

    paper: Paper
    kind: str


@dataclass(frozen=True, slots=True)
class RssFeed:
    """A parsed RSS feed: the announcement date it states, and its items."""

    date: dt.date | None
    items: tuple[ArxivItem, ...]


@dataclass(frozen=True, slots=True)
class AtomFeed:
    """One parsed page of API results."""

    items: tuple[ArxivItem, ...]
    total: int | None
    """``opensearch:totalResults``, when present."""


def parse_categories(text: str) -> tuple[str, ...]:
    """``"cs.RO,cs.CV"`` (or ``+``/space separated) as a tuple, or ConfigError."""
    cats = tuple(dict.fromkeys(c for c in re.split(r"[,+\s]+", text.strip()) if c))
    if not cats:
        raise ConfigError("arxiv: name at least one category, e.g. arxiv:cs.RO,cs.CV")
    bad = [c for c in cats if not _CATEGORY_RE.match(c)]
    if bad:
        raise ConfigError(f"arxiv: not arXiv categories: {', '.join(bad)} (e.g. cs.RO, cs.CV)")
    return cats


def fetch_arxiv_day(
    client: httpx.Client,
    categories: Sequence[str],
    date: dt.date,
    *,
    settings: SourceSettings,
    policy: RetryPolicy,
) -> Day:
    """The papers of ``date`` in these categories: RSS if it is that day's feed, else the API."""
    joined = "+".join(categories)
    spec = f"arxiv:{','.join(categories)}"
    rss_url = f"{settings.arxiv_rss_url.rstrip('/')}/{joined}"
    response = get_source(client, rss_url, settings=settings, policy=policy)
    feed = parse_rss(response.content, origin=str(response.url))
    if feed.date == date:
        papers = select(feed.items, settings=settings)
        return Day(date=date, papers=merge_duplicates(papers), source=f"{spec} (rss)")
    log.info("%s: feed is for %s, not %s; asking the API", rss_url, feed.date, date)
    items = fetch_api_items(client, categories, date, settings=settings, policy=policy)
    papers = select(items, settings=settings)
    return Day(date=date, papers=merge_duplicates(papers), source=f"{spec} (api)")


def api_query(categories: Sequence[str], date: dt.date) -> str:
    """The API ``search_query`` for papers of these categories submitted on ``date`` (UTC)."""
    cats = " OR ".join(f"cat:{c}" for c in categories)
    day = date.strftime("%Y%m%d")
    return f"({cats}) AND submittedDate:[{day}0000 TO {day}2359]"


def fetch_api_items(
    client: httpx.Client,
    categories: Sequence[str],
    date: dt.date,
    *,
    settings: SourceSettings,
    policy: RetryPolicy,
) -> tuple[ArxivItem, ...]:
    """Every API result for the date, page by page."""
    query = api_query(categories, date)
    items: list[ArxivItem] = []
    for page in range(API_MAX_PAGES):
        start = page * API_PAGE_SIZE
        params: dict[str, str | int] = {
            "search_query": query,
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": start,
            "max_results": API_PAGE_SIZE,
        }
        for attempt in range(policy.retries + 1):
            if page or attempt:
                policy.sleep(API_PAGE_DELAY)
            url = settings.arxiv_api_url
            response = get_source(client, url, params=params, settings=settings, policy=policy)
            feed = parse_atom(response.content, origin=str(response.url), categories=categories)
            # the API now and then answers a page with no entries although its own
            # totalResults says there are more: ask again before believing it
            if feed.items or feed.total is None or start >= feed.total:
                break
        else:
            raise SourceUnavailable(
                f"{settings.arxiv_api_url}: the arXiv API kept returning an empty page at "
                f"start={start} of {feed.total} results ({policy.retries + 1} attempts)"
            )
        items.extend(feed.items)
        if len(feed.items) < API_PAGE_SIZE:
            break
        if feed.total is not None and start + API_PAGE_SIZE >= feed.total:
            break
    return tuple(items)


def select(items: Sequence[ArxivItem], *, settings: SourceSettings) -> tuple[Paper, ...]:
    """The papers whose announce type the settings ask for (new ones always)."""
    wanted = {"new"}
    if settings.include_cross_lists:
        wanted.add("cross")
    if settings.include_replacements:
        wanted.add("replace")
    if settings.include_cross_lists and settings.include_replacements:
        wanted.add("replace-cross")
    return tuple(item.paper for item in items if item.kind in wanted)


def _prolog_bytes(raw: bytes) -> bytes:
    """The document as UTF-8 without a BOM, for the DOCTYPE check: expat reads UTF-8
    behind a BOM and UTF-16 too, so the check must see what expat will see."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", "ignore").encode("utf-8")
    if raw[:1] == b"\x00" or raw[1:2] == b"\x00":  # UTF-16 without a BOM
        return raw.decode("utf-16-be" if raw[:1] == b"\x00" else "utf-16-le", "ignore").encode()
    return raw


def parse_xml(body: bytes | str, *, origin: str) -> ET.Element:
    """The root element, or SourceFormatError; refuses any DOCTYPE (no entity expansion)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if _DOCTYPE_RE.match(_prolog_bytes(raw)):
        what = "an HTML page" if b"html" in raw[:300].lower() else "a DOCTYPE (refused)"
        raise SourceFormatError(f"{origin}: expected an arXiv feed, got {what}: {excerpt(raw)}")
    if isinstance(body, str):
        raw = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", raw)  # the text is already decoded
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise SourceFormatError(f"{origin}: malformed XML ({exc}): {excerpt(raw)}") from None


def split_id(text: str) -> tuple[str | None, int | None]:
    """``"http://arxiv.org/abs/2504.17830v2"`` -> ``("2504.17830", 2)``; (None, None) if none."""
    match = _ID_RE.search(text.strip())
    if not match:
        return None, None
    version = int(match.group(2)[1:]) if match.group(2) else None
    return match.group(1), version


def split_authors(text: str) -> tuple[str, ...]:
    """Author names of an RSS ``<dc:creator>``: split at commas and "and" outside
    parentheses, affiliations (in parentheses) left out, TeX converted."""
    names: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            if ch == ",":
                names.append("".join(current))
                current = []
            else:
                current.append(ch)
    names.append("".join(current))
    out: list[str] = []
    for chunk in names:
        for part in re.split(r"\s+and\s+", chunk.strip()):
            name = detex(re.sub(r"^and\s+", "", part.strip()))
            if name:
                out.append(name)
    return tuple(out)


def _text(element: ET.Element | None) -> str:
    return squash(element.text or "") if element is not None else ""


def _iso(text: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _rfc822(text: str) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def parse_atom(body: bytes | str, *, origin: str, categories: Sequence[str] = ()) -> AtomFeed:
    """Papers of an API (Atom) response, 2016 and current formats alike.

    ``categories``: the requested ones, to tell new papers from cross-lists; without
    them every first version counts as new.
    """
    root = parse_xml(body, origin=origin)
    if root.tag != f"{ATOM}feed":
        raise SourceFormatError(
            f"{origin}: expected an Atom <feed>, got <{root.tag.split('}')[-1]}>: {excerpt(body)}"
        )
    total_text = _text(root.find(f"{OPENSEARCH}totalResults"))
    total = int(total_text) if total_text.isdigit() else None
    requested = set(categories)
    items: list[ArxivItem] = []
    for index, entry in enumerate(root.findall(f"{ATOM}entry")):
        raw_id = _text(entry.find(f"{ATOM}id"))
        if "/api/errors" in raw_id:
            message = _text(entry.find(f"{ATOM}summary")) or _text(entry.find(f"{ATOM}title"))
            raise SourceFormatError(f"{origin}: the arXiv API answered with an error: {message}")
        paper_id, version = split_id(raw_id)
        title = _text(entry.find(f"{ATOM}title"))
        if not title:
            log.warning("%s: entry %d (%s) has no title; skipped", origin, index, raw_id)
            continue
        primary_el = entry.find(f"{ARXIV}primary_category")
        primary = primary_el.get("term", "") if primary_el is not None else ""
        cats = [c.get("term", "") for c in entry.findall(f"{ATOM}category")]
        ordered = tuple(dict.fromkeys(c for c in (primary, *cats) if c))
        authors = tuple(
            name
            for a in entry.findall(f"{ATOM}author")
            if (name := detex(_text(a.find(f"{ATOM}name"))))
        )
        published = _iso(_text(entry.find(f"{ATOM}published")))
        cross = bool(requested) and bool(ordered) and ordered[0] not in requested
        replaced = version is not None and version > 1
        kind = {
            (False, False): "new",
            (True, False): "cross",
            (False, True): "replace",
            (True, True): "replace-cross",
        }[(cross, replaced)]
        paper = Paper(
            title=detex(title),
            abstract=detex(_text(entry.find(f"{ATOM}summary"))),
            id=paper_id,
            authors=authors,
            url=ABS_URL + paper_id if paper_id else None,
            published_at=published,
            categories=ordered,
            source=SOURCE_NAME,
        )
        items.append(ArxivItem(paper=paper, kind=kind))
    return AtomFeed(items=tuple(items), total=total)


def parse_rss(body: bytes | str, *, origin: str) -> RssFeed:
    """Papers of an rss.arxiv.org feed, each with its announce type."""
    root = parse_xml(body, origin=origin)
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise SourceFormatError(
            f"{origin}: expected an RSS <rss><channel>, got <{root.tag.split('}')[-1]}>: "
            f"{excerpt(body)}"
        )
    stamp = _rfc822(_text(channel.find("pubDate"))) or _rfc822(_text(channel.find("lastBuildDate")))
    items: list[ArxivItem] = []
    for index, item in enumerate(channel.findall("item")):
        title = _text(item.find("title"))
        if not title:
            log.warning("%s: item %d has no title; skipped", origin, index)
            continue
        paper_id, _ = split_id(_text(item.find("guid")) or _text(item.find("link")))
        if paper_id is None:
            paper_id, _ = split_id(_text(item.find("link")))
        kind = _text(item.find(f"{ARXIV}announce_type")).lower() or "new"
        if kind not in ANNOUNCE_TYPES:
            log.warning(
                "%s: item %d (%s): unknown announce type %r; skipped", origin, index, paper_id, kind
            )
            continue
        authors = tuple(
            name for c in item.findall(f"{DC}creator") for name in split_authors(_text(c))
        )
        abstract = detex(_RSS_PREFIX_RE.sub("", _text(item.find("description")), count=1))
        cats = tuple(dict.fromkeys(c for el in item.findall("category") if (c := _text(el))))
        paper = Paper(
            title=detex(title),
            abstract=abstract,
            id=paper_id,
            authors=authors,
            url=ABS_URL + paper_id if paper_id else (_text(item.find("link")) or None),
            published_at=_rfc822(_text(item.find("pubDate"))),
            categories=cats,
            source=SOURCE_NAME,
        )
        items.append(ArxivItem(paper=paper, kind=kind))
    return RssFeed(date=stamp.date() if stamp else None, items=tuple(items))
