"""The TL;DR a reader sees: the source's own summary, or the abstract's key sentence (pure).

::

    summary(paper, style, chars) -> str
        "tldr":      paper.ai_summary when the source has one, else tldr(abstract, chars)
        "abstract":  the abstract's first sentences that fit
        "titles":    ""

Abstracts usually open with background ("Diffusion models have demonstrated remarkable
capabilities...") and only then say what the paper does. :func:`tldr` is extractive:
it splits the abstract into sentences, scores each for stating the contribution or the
finding, and keeps the best one (plus the next best when both fit), in the abstract's
own order and words. No network, no model: a handful of cue phrases do the work.

How a sentence scores (see the constants below):

- a contribution cue ("we propose", "we introduce", "this paper presents", "X is a ...")
  adds ``CONTRIBUTION_CUE``; a finding cue ("we show", "outperforms", "achieves")
  ``FINDING_CUE``;
- a background cue ("have shown", "remains challenging", "however", "recent") subtracts
  ``BACKGROUND_CUE``, and so does a sentence about future work or the code's address;
- the opening sentence loses ``FIRST_SENTENCE_PENALTY`` (usually background), a
  sentence naming the title's head ("AURA", "OpenWorldLib") gains ``NAME_BONUS``;
- a sentence longer than the limit loses ``OVERLONG_PENALTY`` (it would be cut).

A leading connective ("In this paper, ", "To address this, ") is dropped from the
chosen sentence, which then starts with a capital letter. The result never exceeds
``chars``: a single sentence longer than that is cut at a word with an ellipsis.
``benchmarks/bench_summaries.py`` measures it against Hugging Face's ``ai_summary``.
"""

from __future__ import annotations

import re

from newsletter.models import Paper, SummaryStyle
from newsletter.slots import cut

__all__ = ["sentences", "summary", "tldr", "trim"]

CONTRIBUTION_CUE = 3.0
"""Added when a sentence says what the paper does ("we propose", "we introduce")."""

FINDING_CUE = 1.5
"""Added when a sentence says what the paper finds ("we show", "outperforms")."""

BACKGROUND_CUE = 2.0
"""Subtracted when a sentence reads as background or motivation."""

FIRST_SENTENCE_PENALTY = 1.0
"""Subtracted from the abstract's opening sentence (background, more often than not)."""

NAME_BONUS = 1.0
"""Added when a sentence names the method the title announces ("AURA: ...")."""

OVERLONG_PENALTY = 2.5
"""Subtracted from a sentence that does not fit the limit on its own."""

MIN_SECOND_SCORE = 3.0
"""A second sentence is added (when it fits) only if it scores at least this."""

MIN_SENTENCE_CHARS = 25
"""Shorter fragments ("Code link: ...", list markers) are not candidates."""

_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|study|article|report)|here,? we|our (?:work|paper))"
    r"(?:\s+\w+ly)?\s+(?:propose|present|introduce|develop|design|build|construct|release|"
    r"describe|formulate|devise|offer|contribute|establish|study|investigate|explore|"
    r"address|tackle|take|turn|focus|leverage|extend|augment|revisit|pioneer|provide|"
    r"create|curate|collect|derive|unveil|fill|bridge|show|demonstrate|find|reveal)s?\b"
    r"|\bwe\s+(?:\w+\s+)?(?:propose|present|introduce)\b"
    r"|\b(?:is|are) (?:a|an) (?:new|novel|simple|unified|general|first|open|efficient|"
    r"lightweight|scalable|framework|method|approach|benchmark|model|dataset|system)\b"
    r"|\b(?:called|dubbed|named|termed)\b"
    r"|\b(?:in this (?:paper|work|study)|to this end|to (?:address|tackle|bridge|close|fill|"
    r"overcome|solve|mitigate|alleviate|resolve) (?:this|these|the|such))\b",
    re.IGNORECASE,
)
_FINDING = re.compile(
    r"\b(?:we (?:show|find|demonstrate|observe|prove|reveal|report)|results? (?:show|"
    r"demonstrate|indicate|reveal|suggest)|experiments? (?:show|demonstrate|reveal|on)|"
    r"outperform(?:s|ing)?|surpass(?:es|ing)?|achiev(?:es|ing)|improv(?:es|ing)|"
    r"reduc(?:es|ing)|state[- ]of[- ]the[- ]art|sota|speed-?up|\d+(?:\.\d+)?\s?(?:%|x|×)|"
    r"enables?|yields?|matches|boosts?)\b",
    re.IGNORECASE,
)
_BACKGROUND = re.compile(
    r"\b(?:ha(?:ve|s) (?:shown|demonstrated|achieved|emerged|become|gained|garnered|attracted|"
    r"made|seen|been)|remains? (?:a |an )?(?:challenging|difficult|unclear|limited|open|"
    r"underexplored|lacking|unexplored)|however|recent(?:ly)?|existing|despite|although|"
    r"suffer|struggle|typically|often|traditional|conventional|prior (?:work|methods?)|"
    r"widely|increasingly|growing|fundamental challenge|little is known|lack)\b",
    re.IGNORECASE,
)
_AFTERWORD = re.compile(
    r"\b(?:future (?:work|directions?|research)|code (?:is|and|will be|link|available)|"
    r"available at|github\.com|https?://|we release|is publicly available|will be released)\b",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^(?:(?:in|within) this (?:paper|work|study|article|report)|here|to this end|"
    r"to (?:address|tackle|bridge|close|fill|overcome|solve|mitigate|alleviate|resolve|"
    r"avoid) (?:this|these|the|such|that)(?: \w+){0,4}|building on (?:this|these)(?: \w+){0,2}|"
    r"based on (?:this|these)(?: \w+){0,2}|motivated by (?:this|these)(?: \w+){0,2}|"
    r"consequently|therefore|thus|specifically|in particular|finally|moreover|furthermore|"
    r"first|second|third|then|next|lastly|notably|importantly|"
    r"additionally|overall|in summary|in short|concretely|"
    r"(?:to|for|with|by|inspired by|building on|based on) [\w-]+(?: [\w()/-]+){0,8}(?=, we\b))"
    r"\s*,\s+",
    re.IGNORECASE,
)
_ABBREVIATIONS = re.compile(
    r"\b(?:e\.g|i\.e|et al|etc|vs|cf|fig|figs|eq|eqs|sec|no|approx|resp|incl|ca|dr|prof)\.$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
_NAME = re.compile(r"^\s*([^\s:]{2,40}?)\s*:\s")
"""The head of a title of the form "Name: what it is"."""


def summary(paper: Paper, style: SummaryStyle, chars: int | None) -> str:
    """The summary text of ``paper`` in ``style``, at most ``chars`` characters.

    ``chars is None`` or the "titles" style: no summary (""). The text is taken as given:
    the caller has already cleaned it (one line, no control characters).
    """
    if style == "titles" or chars is None:
        return ""
    if style == "tldr":
        if paper.ai_summary and paper.ai_summary.strip():
            return trim(" ".join(paper.ai_summary.split()), chars)
        return tldr(paper.abstract, chars, title=paper.title)
    return trim(" ".join(paper.abstract.split()), chars)


def sentences(text: str) -> list[str]:
    """``text`` split into sentences: at ``. ! ?`` before a capital letter or digit, not
    after an abbreviation ("e.g.", "et al.") or a single initial."""
    text = " ".join(text.split())
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        head = text[start : match.start()]  # up to the quote or space after the stop
        last = head.rsplit(" ", 1)[-1].rstrip("\"')]")
        if _ABBREVIATIONS.search(last) or re.fullmatch(r"\(?[A-Z]\.", last):
            continue
        out.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def tldr(abstract: str, chars: int, *, title: str = "") -> str:
    """The abstract's sentence(s) that best state the contribution, within ``chars``."""
    parts = sentences(abstract)
    if not parts:
        return ""
    name = _method_name(title)
    scored = [
        (_score(text, position, name, chars), position)
        for position, text in enumerate(parts)
        if len(text) >= MIN_SENTENCE_CHARS or len(parts) == 1
    ]
    if not scored:
        return trim(" ".join(parts), chars)
    scored.sort(key=lambda item: (-item[0], item[1]))
    best = scored[0][1]
    chosen = [best]
    budget = chars - len(_lead_trimmed(parts[best]))
    for score, position in scored[1:]:
        if score < MIN_SECOND_SCORE:
            break
        if len(_lead_trimmed(parts[position])) + 1 <= budget:
            chosen.append(position)
            break
    return trim(" ".join(_lead_trimmed(parts[i]) for i in sorted(chosen)), chars)


def _method_name(title: str) -> str | None:
    match = _NAME.match(title)
    if not match:
        return None
    name = match.group(1).strip("*\"'")
    return name if len(name) >= 2 and any(ch.isupper() for ch in name) else None


def _score(text: str, position: int, name: str | None, chars: int) -> float:
    score = 0.0
    if _CONTRIBUTION.search(text):
        score += CONTRIBUTION_CUE
    if _FINDING.search(text):
        score += FINDING_CUE
    if _BACKGROUND.search(text):
        score -= BACKGROUND_CUE
    if _AFTERWORD.search(text):
        score -= BACKGROUND_CUE
    if position == 0:
        score -= FIRST_SENTENCE_PENALTY
    if name and name.casefold() in text.casefold():
        score += NAME_BONUS
    if len(_lead_trimmed(text)) > chars:
        score -= OVERLONG_PENALTY
    return score


def _lead_trimmed(text: str) -> str:
    """``text`` without a leading connective ("In this paper, "), capitalised."""
    match = _LEAD_IN.match(text)
    if not match or len(text) - match.end() < MIN_SENTENCE_CHARS:
        return text
    rest = text[match.end() :]
    return rest[:1].upper() + rest[1:]


def trim(text: str, limit: int) -> str:
    """The first sentences of ``text`` that fit in ``limit`` characters; when even the
    first is longer, it is cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    end = 0
    for match in _SENTENCE_END.finditer(text):
        stop = match.start() + len(match.group(0).rstrip())
        if stop > limit:
            break
        end = stop
    if end >= limit // 3:
        return text[:end].rstrip()
    return cut(text, limit)
