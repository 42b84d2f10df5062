"""Helpers every source parser shares: whitespace, error excerpts, merging duplicates."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from newsletter.models import Paper

EXCERPT_CHARS = 80
"""How much of an unexpected body an error message quotes."""


def squash(text: str) -> str:
    """Collapse runs of whitespace (the APIs wrap abstracts with newlines) into one space."""
    return " ".join(text.split())


def excerpt(body: bytes | str, *, limit: int = EXCERPT_CHARS) -> str:
    """The first characters of a body, on one line, quoted for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = squash(text)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def _merge_pair(first: Paper, second: Paper) -> Paper:
    """One paper from two records of it: the busier record wins, the other fills gaps."""
    if (second.upvotes, second.comments) > (first.upvotes, first.comments):
        first, second = second, first
    changes: dict[str, object] = {}
    for f in dataclasses.fields(Paper):
        mine = getattr(first, f.name)
        theirs = getattr(second, f.name)
        if f.name == "keywords":
            merged = tuple(dict.fromkeys((*mine, *theirs)))
            if merged != mine:
                changes[f.name] = merged
        elif f.name in {"upvotes", "comments"}:
            if theirs > mine:
                changes[f.name] = theirs
        elif f.name == "github_stars":
            if theirs is not None and (mine is None or theirs > mine):
                changes[f.name] = theirs
        elif (mine is None or mine in ("", ())) and theirs not in (None, "", ()):
            changes[f.name] = theirs
    return dataclasses.replace(first, **changes) if changes else first  # type: ignore[arg-type]


def merge_duplicates(papers: Iterable[Paper]) -> tuple[Paper, ...]:
    """Papers with the same key (arXiv id, else normalised title) merged into one.

    The order is the order of first appearance; the merged record keeps the higher
    upvotes and comments and the union of the fields the records carry.
    """
    merged: dict[str, Paper] = {}
    for paper in papers:
        known = merged.get(paper.key)
        merged[paper.key] = paper if known is None else _merge_pair(known, paper)
    return tuple(merged.values())
