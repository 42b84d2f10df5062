"""Helpers every source parser shares: whitespace, TeX, error excerpts, merging duplicates."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable

from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db
from pylatexenc.latexwalker import LatexWalkerError

from newsletter.models import Paper

EXCERPT_CHARS = 80
"""How much of an unexpected body an error message quotes."""


def squash(text: str) -> str:
    """Collapse runs of whitespace (the APIs wrap abstracts with newlines) into one space."""
    return " ".join(text.split())


_TEX_HINT = re.compile(r"\\[A-Za-z\"'`^~=.vuHcdbkr]|\$[^\s$](?:[^$]*[^\s$])?\$")
"""Text worth handing to the TeX converter: a backslash command or accent, or ``$x$``
math (no space inside the dollars, so "$5 and $10" is left alone)."""

_TEX_SPECIALS = re.compile(r"(?<!\\)([%&#])")
"""Characters TeX would take as a comment, an alignment or a parameter: escaped first,
since abstracts write "25%" and "R&D" literally."""

_FONT_SWITCHES = ("em", "bf", "it", "rm", "sc", "sf", "tt", "sl", "bfseries", "itshape", "upshape")
"""Old-style font switches (``{\\em word}``): dropped, their text kept."""

MAX_TEX_CHARS = 20_000
"""Longer texts are left as they are (the converter's time grows with the text)."""


@functools.cache
def _tex_converter() -> LatexNodes2Text:
    """pylatexenc with math as text ("$O(n^2)$" -> "O(n^2)", "\\alpha" -> "α") and an
    unknown macro kept as its name (``\\minerupro`` -> "minerupro", not dropped)."""
    db = get_default_latex_context_db()
    db.add_context_category(
        "newsletter-font-switches",
        macros=[MacroTextSpec(name, simplify_repl="") for name in _FONT_SWITCHES],
        prepend=True,
    )
    db.set_unknown_macro_spec(
        MacroTextSpec("", simplify_repl=lambda node: node.macroname + node.macro_post_space)
    )
    return LatexNodes2Text(latex_context=db, math_mode="text", strict_latex_spaces=True)


def detex(text: str) -> str:
    """TeX accents, common macros and inline math as Unicode text, whitespace squashed:
    ``G\\"unther`` -> "Günther", ``Hajdu\\v{s}ek`` -> "Hajdušek", ``Cram\\'er`` -> "Cramér".

    Text without TeX is returned squashed and otherwise unchanged; text the converter
    cannot read is returned as it was.
    """
    if len(text) > MAX_TEX_CHARS or not _TEX_HINT.search(text):
        return squash(text)
    try:
        out = _tex_converter().latex_to_text(_TEX_SPECIALS.sub(r"\\\1", text))
    except (LatexWalkerError, ValueError, IndexError, RecursionError):
        return squash(text)
    return squash(out.replace("\xa0", " "))


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
