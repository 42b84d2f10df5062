"""Papers from a file (or any fetched body), its format told by its content.

Formats, detected by content (the extension and Content-Type only break ties):

- ``hf``:   a JSON list in the Daily Papers API format (see :mod:`.hf_daily`);
- ``atom``: an arXiv API response (every entry is kept: a saved search has no "new");
- ``rss``:  an rss.arxiv.org feed (announce types filtered as in :mod:`.arxiv`);
- ``page``: the text of the huggingface.co/papers page, as copied from a browser:
  a few header lines ("Daily Papers", "Subscribe", ...), then per paper a title line,
  a blank line and the abstract paragraph. Such papers have no id; their link is a
  Hugging Face search for the title, so every paper is linked.

Text must be UTF-8 (a byte-order mark is fine; UTF-16 with a BOM is accepted too).
Anything else is refused with a :class:`~newsletter.errors.SourceFormatError` naming
the file and the byte offset of the first bad byte: guessing a legacy encoding would
put wrong characters in front of every subscriber without anyone noticing.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path
from typing import Literal

from newsletter.config import SourceSettings
from newsletter.errors import SourceFormatError, SourceUnavailable
from newsletter.models import Paper
from newsletter.sources import arxiv, hf_daily
from newsletter.sources.common import detex, excerpt, squash

log = logging.getLogger(__name__)

Format = Literal["hf", "atom", "rss", "page"]

SOURCE_NAME = "file"
"""``Paper.source`` of papers read from page text."""

MAX_TITLE_CHARS = 300
"""A block longer than this is never a title."""

MIN_ABSTRACT_CHARS = 100
"""A block shorter than this is never an abstract."""

HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "daily papers",
        "by ak and the research community",
        "previous",
        "next",
        "daily",
        "weekly",
        "monthly",
        "trending papers",
        "submit",
        "search",
    }
)
"""Lines of the page's chrome, dropped wherever they appear (compared in lowercase)."""

_NOISE_RE = re.compile(r"^(?:[\d,.]+[kKmM]?|[·•|\-–—]+|submitted by .*)$", re.IGNORECASE)
_SENTENCE_END = (".", "!", "?", ")", '"', "”")


def read_path(path: str | Path, *, settings: SourceSettings) -> tuple[Paper, ...]:
    """Papers from a file in any supported format (duplicates not yet merged)."""
    path = Path(path).expanduser()
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise SourceUnavailable(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceUnavailable(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise SourceUnavailable(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_document(body, origin=str(path), settings=settings)


def decode_text(body: bytes, *, origin: str) -> str:
    """UTF-8 text (BOM dropped; UTF-16 with a BOM accepted), or SourceFormatError."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return body.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SourceFormatError(
                f"{origin}: broken UTF-16 text at byte offset {exc.start}"
            ) from None
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.start + 1].hex()
        raise SourceFormatError(
            f"{origin}: not UTF-8 text: byte 0x{bad} at byte offset {exc.start} "
            f"({exc.reason}); save the file as UTF-8"
        ) from None


def detect_format(text: str, *, content_type: str | None = None, origin: str = "") -> Format:
    """Which parser a body needs, from its first characters; SourceFormatError if none."""
    head = text.lstrip("\ufeff \t\r\n")
    lowered = head[:1000].lower()
    ctype = (content_type or "").lower()
    if head.startswith(("[", "{")) or ("json" in ctype and not head.startswith("<")):
        return "hf"
    if head.startswith("<"):
        prolog = re.sub(r"^(?:<\?.*?\?>\s*|<!--.*?-->\s*)*", "", lowered, flags=re.DOTALL)
        if prolog.startswith(("<!doctype html", "<html")) or (
            "html" in ctype and "xml" not in ctype
        ):
            raise SourceFormatError(
                f"{origin}: got an HTML page, not papers (a JSON list, an arXiv feed or "
                f"page text): {excerpt(text)}"
            )
        if prolog.startswith("<rss"):
            return "rss"
        if prolog.startswith("<feed"):
            return "atom"
        raise SourceFormatError(
            f"{origin}: XML that is neither an arXiv Atom feed nor an RSS feed: {excerpt(text)}"
        )
    return "page"


def parse_document(
    body: bytes | str,
    *,
    origin: str,
    settings: SourceSettings,
    content_type: str | None = None,
) -> tuple[Paper, ...]:
    """Papers from a body of any supported format (duplicates not yet merged)."""
    text = decode_text(body, origin=origin) if isinstance(body, bytes) else body
    kind = detect_format(text, content_type=content_type, origin=origin)
    if kind == "hf":
        return hf_daily.parse_hf_json(text, origin=origin)
    if kind == "atom":
        return tuple(item.paper for item in arxiv.parse_atom(text, origin=origin).items)
    if kind == "rss":
        return arxiv.select(arxiv.parse_rss(text, origin=origin).items, settings=settings)
    return parse_page_text(text, origin=origin)


def _blocks(text: str) -> list[list[str]]:
    """Paragraphs: runs of non-blank lines, each line stripped."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _is_chrome(lines: list[str]) -> bool:
    text = squash(" ".join(lines))
    return text.lower() in HEADER_LINES or bool(_NOISE_RE.match(text))


def _is_title(lines: list[str]) -> bool:
    return len(lines) == 1 and len(lines[0]) <= MAX_TITLE_CHARS


def _is_abstract(lines: list[str], title: str) -> bool:
    text = squash(" ".join(lines))
    if len(text) < MIN_ABSTRACT_CHARS or len(text) <= len(title):
        return False
    return len(lines) > 1 or len(text) > MAX_TITLE_CHARS or text.endswith(_SENTENCE_END)


def parse_page_text(text: str, *, origin: str = "page text") -> tuple[Paper, ...]:
    """Papers from the Daily Papers page text: title line, blank line, abstract.

    Header lines are dropped; a block that is neither part of a title/abstract pair
    nor a known header line is dropped with a logged warning.
    """
    blocks = [b for b in _blocks(text.replace("\ufeff", "")) if not _is_chrome(b)]
    papers: list[Paper] = []
    index = 0
    while index < len(blocks):
        block = blocks[index]
        title = squash(block[0]) if _is_title(block) else ""
        if title and index + 1 < len(blocks) and _is_abstract(blocks[index + 1], title):
            abstract = squash(" ".join(blocks[index + 1]))
            papers.append(
                Paper(
                    title=detex(title),
                    abstract=detex(abstract),
                    id=None,
                    url=hf_daily.paper_url(None, title),
                    source=SOURCE_NAME,
                )
            )
            index += 2
            continue
        log.warning(
            "%s: paragraph %d is not a title followed by an abstract; skipped: %s",
            origin,
            index + 1,
            excerpt(" ".join(block), limit=60),
        )
        index += 1
    return tuple(papers)
