"""Render one digest variant into an email: an HTML part and a plain-text part (pure).

::

    Digest --views--> context --Jinja (autoescape)--> MJML --mjml2html--> HTML
           --premailer (CSS inlined, no network)--> ASCII-only, lines <= 900 bytes  = html
    context --Jinja (no escaping, control characters stripped)--> reflowed to 78  = text

``render()`` does no I/O: the templates come in as a
:class:`~newsletter.templating.Templates` made by
:func:`~newsletter.templating.load_templates` (the shipped ``newsletter.templates`` plus an
optional override folder, file by file). Call it once before sending as a preflight: a
broken template raises :class:`~newsletter.errors.TemplateError`.

Per-subscriber parts (greeting, address, unsubscribe, preferences and feedback links)
are not rendered per subscriber. The output holds placeholders for :data:`SLOTS`,
made unforgeable by a random nonce per render (an abstract that contains
something placeholder-like is never substituted), and
:meth:`RenderedDigest.fill` swaps them in with one ``str.join``: the cost of a
send grows with variants, not with subscribers.

Size: Gmail clips a message whose HTML is over ~102 KB. When the HTML (as
encoded, CRLF line ends, worst-case slot values: MAX_SLOT_BYTES each, the short
feedback link at its exact length, :func:`slot_bytes`) is over
``DigestSettings.max_html_bytes``, summaries are shortened step by step
(:data:`SUMMARY_SHRINK`), then the lowest-ranked papers move into a compact
"More papers" list of title links, which the email announces with its count.
No paper is ever dropped, and every paper, compact ones too, keeps its "more / less like
this" links (``digest.feedback_links``); a day too big even then is rendered
all-compact and reported in :attr:`RenderedDigest.warnings`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html as htmllib
import re
import secrets
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import mjml

from newsletter import slots
from newsletter.config import DigestSettings
from newsletter.errors import ConfigError, TemplateError
from newsletter.feedback import paper_ref
from newsletter.htmlpart import inline_css, postprocess
from newsletter.models import Digest, Paper, RankedPaper, SummaryStyle
from newsletter.slots import (
    FEEDBACK_SLOT,
    MAX_SLOT_BYTES,
    SLOTS,
    one_line,
    placeholder,
    placeholder_pattern,
)
from newsletter.slots import ascii_refs as _ascii_refs
from newsletter.slots import close_bidi as _close_bidi
from newsletter.slots import cut as _cut
from newsletter.slots import safe_url as _safe_url
from newsletter.summarize import summary as paper_summary
from newsletter.templating import HTML_TEMPLATE, TEXT_TEMPLATE, Templates, kept_line
from newsletter.tokens import FEEDBACK_TOKEN_CHARS, feedback_base

__all__ = [
    "SLOTS",
    "PaperView",
    "RenderedDigest",
    "SectionView",
    "encoded_size",
    "render",
]

TEXT_WIDTH = 78
"""Plain-text lines are reflowed to this width; only a lone long URL may exceed it."""

MAX_TITLE_CHARS = 300
"""Titles are cut (with an ellipsis) beyond this many characters."""

COMPACT_TITLE_CHARS = 90
"""Titles in the compact "More papers" list are cut (with an ellipsis) beyond this."""

AUTHORS_SHOWN = 3
"""Authors named before "+N"."""

SUMMARY_SHRINK: tuple[float, ...] = (0.75, 0.5, 0.3)
"""Fractions of the configured summary length tried, in turn, when the HTML is too big."""

SUBJECT_CHARS = 70
"""The subject line aims at this many characters: the top paper's title is cut to fit
(phones show about that much in the inbox list)."""

MAX_SUBJECT_CHARS = 78
"""No subject is longer than this, whatever the template makes of it."""

MIN_SUBJECT_TITLE_CHARS = 24
"""When less than this is left for the top paper's title, the subject names its topic."""

PREHEADER_PAPERS = 3
"""How many top paper titles the preheader (inbox preview text) names."""

PREHEADER_CHARS = 150
"""Longest preheader."""

NONCE_BYTES = 8
"""Random bytes in each render's placeholder nonce."""

FALLBACK_PAPER_URL = "https://arxiv.org/abs/{id}"
"""The page a paper links to when the source gave no usable URL but an arXiv id."""

_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")
_BULLET = re.compile(r"\s*[*-] ")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class PaperView:
    """One paper as the templates see it: cleaned text, safe links only."""

    key: str
    ref: str
    """How feedback links name the paper (:func:`newsletter.feedback.paper_ref`)."""
    title: str
    url: str | None
    """An http(s) URL or None: nothing else ever becomes an href."""
    authors: str
    """Shortened: "A, B, C +12"."""
    summary: str
    """The TL;DR or abstract as the summary style asks ("" for titles)."""
    upvotes: int
    comments: int
    code_url: str | None
    project_url: str | None
    reasons: tuple[str, ...]
    topic: str
    score: float


@dataclass(frozen=True, slots=True)
class SectionView:
    name: str
    anchor: str
    description: str
    papers: tuple[PaperView, ...]
    mixed: bool = False
    """A section of papers from several topics ("Also today"): each shows its own."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """One attempt at fitting the budget."""

    summary_chars: int | None
    compact: frozenset[str]
    """Keys of the papers shown in the compact list."""
    unlinked: frozenset[str] = frozenset()
    """Keys of compact papers shown without feedback links (only on days so big that
    even the all-compact digest with every link would not fit)."""


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class RenderedDigest:
    """One variant rendered, with placeholders for the per-subscriber slots."""

    subject: str
    html: str
    """Pure ASCII, every line <= MAX_LINE_BYTES bytes, placeholders for SLOTS."""
    text: str
    preheader: str
    nonce: str
    html_bytes: int
    """Size of the HTML as encoded (CRLF line ends) when every slot value is as long as
    it can be (:func:`slot_bytes`): the figure compared to the budget."""
    budget: int
    summary_chars: int | None
    """The summary length used (None when the style shows no summaries)."""
    compact_papers: int
    """How many papers are in the compact "More papers" list."""
    warnings: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.html_bytes <= self.budget

    def placeholder(self, slot: str) -> str:
        """The placeholder that stands for ``slot`` in this render."""
        return placeholder(self.nonce, slot)

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]:
        """``(html, text)`` with one subscriber's slot values, as
        :func:`newsletter.slots.normalize` makes them (ValueError for a refused value)."""
        text_values, html_values = slots.normalize(values)
        html = slots.join(slots.split(self.html, self.nonce), html_values)
        return html, slots.join(slots.split(self.text, self.nonce), text_values)


def encoded_size(html: str) -> int:
    """Bytes of an ASCII text part as sent: every line end becomes CRLF."""
    return len(html.encode("utf-8")) + html.count("\n")


def slot_bytes(slot: str, base_url: str) -> int:
    """The longest value of ``slot`` in the HTML: the feedback link's exact length (its
    base URL as escaped and a fixed-length token), MAX_SLOT_BYTES for every other slot."""
    if slot != FEEDBACK_SLOT:
        return MAX_SLOT_BYTES
    base = _ascii_refs(htmllib.escape(feedback_base(base_url), quote=True))
    return min(len(base) + FEEDBACK_TOKEN_CHARS, MAX_SLOT_BYTES)


# --------------------------------------------------------------------------- render


def render(
    digest: Digest,
    *,
    settings: DigestSettings,
    templates: Templates,
    web_url: str | None = None,
    nonce: str | None = None,
    page: bool = False,
) -> RenderedDigest:
    """Render ``digest`` to a subject, an HTML part and a text part, within the size budget.

    ``web_url`` (the day's archive page) adds a "View in browser" link, and the contents
    link to its sections (in-message ``#anchor`` links do not work in many mail apps:
    without ``web_url`` the contents are plain section names). ``page`` renders the
    web page of the day instead of an email: no greeting, no per-reader footer, no
    slots, contents linking to the page's own sections. ``nonce`` fixes the
    placeholder nonce (tests); by default each render draws a random one.
    """
    if web_url is not None and _safe_url(web_url) != web_url.strip():
        raise ConfigError(f"web_url must be an http(s) URL: {web_url!r}")
    nonce = nonce or secrets.token_hex(NONCE_BYTES)
    style: SummaryStyle = digest.profile.summary
    base_chars = _base_chars(style, settings)
    budget = settings.max_html_bytes
    ranked = sorted(digest.papers, key=lambda rp: -rp.score)  # stable: ties keep order

    def attempt(plan: _Plan) -> RenderedDigest:
        return _render_plan(digest, plan, settings, templates, web_url, nonce, budget, page)

    steps: list[int | None] = [None]
    if base_chars is not None:
        steps = [base_chars]
        steps += sorted({max(1, int(base_chars * f)) for f in SUMMARY_SHRINK}, reverse=True)
    result = attempt(_Plan(steps[0], frozenset()))
    for chars in steps[1:]:
        if result.fits:
            return result
        result = attempt(_Plan(chars, frozenset()))
    if result.fits or not ranked:
        return result

    chars = steps[-1]
    keys = [rp.paper.key for rp in ranked]

    def keeping(count: int) -> RenderedDigest:
        return attempt(_Plan(chars, frozenset(keys[count:])))

    def linking(count: int) -> RenderedDigest:
        return attempt(_Plan(chars, frozenset(keys), unlinked=frozenset(keys[count:])))

    result = _most_that_fit(keeping, len(ranked) - 1)
    if not result.fits and settings.feedback_links and not page:
        result = _most_that_fit(linking, len(ranked) - 1)
    if not result.fits:
        note = (
            f"the HTML is {result.html_bytes} bytes with all {len(ranked)} papers in the "
            f"compact list, over the {budget}-byte budget"
        )
        result = dataclasses.replace(result, warnings=(*result.warnings, note))
    return result


def _most_that_fit(make: Callable[[int], RenderedDigest], most: int) -> RenderedDigest:
    """``make(count)`` for the largest ``count`` from 0 to ``most`` that fits (the size
    grows with the count, so bisect on it); ``make(0)`` when even that does not fit.

    Used twice on days too big to show in full: the count of papers kept in full (the
    rest in the compact list), then, when even the all-compact digest is too big, the
    count of compact papers that keep their feedback links."""
    best = make(0)
    if not best.fits:
        return best
    lo, hi = 0, most  # make(lo) fits; make(hi + 1) does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = make(mid)
        if candidate.fits:
            lo, best = mid, candidate
        else:
            hi = mid - 1
    return best


def _render_plan(
    digest: Digest,
    plan: _Plan,
    settings: DigestSettings,
    templates: Templates,
    web_url: str | None,
    nonce: str,
    budget: int,
    page: bool = False,
) -> RenderedDigest:
    context = _context(digest, plan, settings, web_url, nonce, templates, page)
    try:
        source = templates.html.render(context)
        text = templates.text.render(context)
        subject = _cut(" ".join(templates.subject.render(context).split()), MAX_SUBJECT_CHARS)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template does not render: {_jinja_error(exc)}") from None
    try:
        raw_html = mjml.mjml2html(source, fonts={}, disable_comments=True)
    except ValueError as exc:
        raise TemplateError(f"{HTML_TEMPLATE}: invalid MJML: {exc}") from None
    html = postprocess(inline_css(raw_html, rules=templates.css_rules), nonce)
    unsubscribe = placeholder(nonce, "unsubscribe_url")
    for part, name in ((html, HTML_TEMPLATE), (text, TEXT_TEMPLATE)):
        if unsubscribe not in part and not page:
            raise TemplateError(f"{name}: the email has no unsubscribe link (slot.unsubscribe_url)")
    longest = {slot: slot_bytes(slot, settings.base_url) for slot in SLOTS}
    growth = sum(
        longest[slot] - len(placeholder(nonce, slot))
        for slot in placeholder_pattern(nonce).findall(html)
    )
    warnings: list[str] = []
    if plan.compact:
        warnings.append(f"{len(plan.compact)} papers moved to the compact list to fit the budget")
    if plan.unlinked:
        warnings.append(f"{len(plan.unlinked)} compact papers without feedback links to fit")
    return RenderedDigest(
        subject=subject,
        html=html,
        text=_reflow(text, wrapped=templates.wrapped_lines),
        preheader=context["preheader"],
        nonce=nonce,
        html_bytes=encoded_size(html) + max(growth, 0),
        budget=budget,
        summary_chars=plan.summary_chars,
        compact_papers=len(plan.compact),
        warnings=tuple(warnings),
    )


def _jinja_error(exc: jinja2.TemplateError) -> str:
    lineno = getattr(exc, "lineno", None)
    name = getattr(exc, "filename", None) or getattr(exc, "name", None)
    where = f"{name}:{lineno}: " if name and lineno else ""
    return f"{where}{exc.message or type(exc).__name__}"


def _context(
    digest: Digest,
    plan: _Plan,
    settings: DigestSettings,
    web_url: str | None,
    nonce: str,
    templates: Templates,
    page: bool = False,
) -> dict[str, Any]:
    style = digest.profile.summary
    anchors: set[str] = set()
    sections, compact = _sections(digest, plan, templates, anchors)
    ranked = sorted(digest.papers, key=lambda rp: -rp.score)
    shown = len(digest.papers)
    web = web_url.strip() if web_url else None
    lines = templates.lines
    title = kept_line(settings.title, lines)
    date_short = f"{digest.date.day} {_MONTH_NAMES[digest.date.month - 1][:3]}"
    top_title, top_topic = "", kept_line(digest.top_topic or "", lines)
    if ranked:
        more = f" +{shown - 1}" if shown > 1 else ""
        room = SUBJECT_CHARS - len(f"{title} {date_short}: ") - len(more)
        top_title = _cut(
            kept_line(ranked[0].paper.title, lines), max(room, MIN_SUBJECT_TITLE_CHARS)
        )
        if room < MIN_SUBJECT_TITLE_CHARS:
            top_title = _cut(top_topic, MIN_SUBJECT_TITLE_CHARS)
    return {
        "title": title,
        "date": digest.date,
        "date_text": _long_date(digest.date),
        "date_short": date_short,
        "lang": one_line(settings.lang) or "en",
        "preheader": _preheader(ranked, shown, lines),
        "sections": tuple(sections),
        "more": tuple(compact),
        "more_anchor": _unique("more-papers", anchors),
        "shown": shown,
        "total": max(digest.total_papers, shown),
        "top_topic": top_topic,
        "top_title": top_title,
        "style": style,
        "shortened": plan.summary_chars is not None
        and plan.summary_chars < (_base_chars(style, settings) or 0),
        "empty": digest.is_empty,
        "web_url": None if page else web,
        "page": page,
        "toc_base": "" if page else web,
        "slot": {slot: placeholder(nonce, slot) for slot in SLOTS},
        "feedback": settings.feedback_links and not page,
        "unlinked": plan.unlinked,
        "weekly": digest.weekly,
    }


def _sections(
    digest: Digest, plan: _Plan, templates: Templates, anchors: set[str]
) -> tuple[list[SectionView], list[PaperView]]:
    """The digest's sections of papers shown in full (their anchors added to ``anchors``)
    and the compact list, best first."""
    sections: list[SectionView] = []
    compact: list[PaperView] = []
    for group in digest.topics:
        full: list[PaperView] = []
        mixed = any(rp.topic != group.name for rp in group.papers)  # "Also today"
        for rp in group.papers:
            view = _paper_view(
                rp, digest.profile.summary, plan.summary_chars, templates, section=group.name
            )
            if rp.paper.key in plan.compact:
                compact.append(
                    dataclasses.replace(view, title=_cut(view.title, COMPACT_TITLE_CHARS))
                )
            else:
                full.append(view)
        if full:
            anchor = _unique(group.anchor, anchors)
            anchors.add(anchor)
            name = kept_line(group.name, templates.lines)
            about = kept_line(group.description, templates.lines)
            sections.append(SectionView(name, anchor, about, tuple(full), mixed))
    compact.sort(key=lambda view: -view.score)
    return sections, compact


def _unique(anchor: str, taken: set[str]) -> str:
    out, n = anchor, 2
    while out in taken:
        out, n = f"{anchor}-{n}", n + 1
    return out


def _base_chars(style: SummaryStyle, settings: DigestSettings) -> int | None:
    """The configured summary length of ``style`` (None: the style shows no summaries)."""
    return {"tldr": settings.tldr_chars, "abstract": settings.abstract_chars}.get(style)


def _paper_view(
    rp: RankedPaper,
    style: SummaryStyle,
    chars: int | None,
    templates: Templates,
    *,
    section: str = "",
) -> PaperView:
    """``rp`` as the templates see it; the paper's part comes from ``templates.paper_views``
    when there.

    Its reasons leave out what the reader already sees: the topic of the section the
    paper is in."""
    views, lines = templates.paper_views, templates.lines
    key = (rp.paper, style, chars)
    view = views.get(key)
    if view is None:
        view = views[key] = _plain_paper_view(rp.paper, style, chars, lines)
    visible = f"topic: {section}".casefold()
    return dataclasses.replace(
        view,
        reasons=tuple(
            r for r in (kept_line(r, lines) for r in rp.reasons) if r and r.casefold() != visible
        ),
        topic=kept_line(rp.topic, lines),
        score=rp.score,
    )


def _plain_paper_view(
    paper: Paper, style: SummaryStyle, chars: int | None, lines: dict[str, str]
) -> PaperView:
    """The paper's part of its view: everything but the variant's reasons, topic, score
    (``lines``: the one-line texts kept across renders, ``Templates.lines``)."""
    url = _safe_url(paper.url)
    if url is None and paper.id and _ARXIV_ID.fullmatch(paper.id):
        url = FALLBACK_PAPER_URL.format(id=paper.id)
    summary = summary_text(paper, style, chars, lines=lines)
    code = paper.github_repo.strip() if paper.github_repo else None
    if code and re.fullmatch(r"[\w.-]+/[\w.-]+", code):
        code = f"https://github.com/{code}"
    return PaperView(
        key=paper.key,
        ref=paper_ref(paper.key),
        title=_cut(kept_line(paper.title, lines), MAX_TITLE_CHARS) or "(untitled)",
        url=url,
        authors=_short_authors(paper.authors, lines),
        summary=summary,
        upvotes=max(paper.upvotes, 0),
        comments=max(paper.comments, 0),
        code_url=_safe_url(code),
        project_url=_safe_url(paper.project_page),
        reasons=(),
        topic="",
        score=0.0,
    )


def summary_text(
    paper: Paper, style: SummaryStyle, chars: int | None, *, lines: dict[str, str] | None = None
) -> str:
    """The summary the reader sees (:func:`newsletter.summarize.summary` of the cleaned
    text): the source's TL;DR or the abstract's key sentence, the abstract, or nothing.
    ``lines`` keeps the cleaned texts across calls (``Templates.lines``)."""
    if style == "titles" or chars is None:
        return ""
    kept = {} if lines is None else lines
    clean = dataclasses.replace(
        paper,
        abstract=kept_line(paper.abstract, kept),
        ai_summary=kept_line(paper.ai_summary, kept) if paper.ai_summary else None,
    )
    return _close_bidi(paper_summary(clean, style, chars))


def _preheader(ranked: Sequence[RankedPaper], shown: int, lines: dict[str, str]) -> str:
    if not ranked:
        return "No new papers today."
    titles = "; ".join(
        _cut(kept_line(rp.paper.title, lines), 60) for rp in ranked[:PREHEADER_PAPERS]
    )
    rest = shown - min(shown, PREHEADER_PAPERS)
    more = f" and {rest} more" if rest else ""
    return _cut(f"{titles}{more}", PREHEADER_CHARS)


# --------------------------------------------------------------------------- text helpers


def _short_authors(authors: Iterable[str], lines: dict[str, str]) -> str:
    names = [name for name in (kept_line(a, lines) for a in authors) if name]
    if len(names) <= AUTHORS_SHOWN + 1:
        return ", ".join(names)
    return ", ".join(names[:AUTHORS_SHOWN]) + f" +{len(names) - AUTHORS_SHOWN}"


def _long_date(day: dt.date) -> str:
    return f"{_DAY_NAMES[day.weekday()]}, {day.day} {_MONTH_NAMES[day.month - 1]} {day.year}"


def _reflow(
    text: str,
    width: int = TEXT_WIDTH,
    *,
    wrapped: dict[tuple[str, int], list[str]] | None = None,
) -> str:
    """Wrap each line longer than ``width`` at spaces, keeping its indent (hanging under a
    "* " or "- " bullet); URLs stay whole. ``wrapped`` keeps each long line's wrapping
    across calls (``Templates.wrapped_lines``)."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        if wrapped is not None:
            key = (line, width)
            found = wrapped.get(key)
            if found is None:
                found = wrapped[key] = _wrap_line(line, width)
            out.extend(found)
        else:
            out.extend(_wrap_line(line, width))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _wrap_line(line: str, width: int) -> list[str]:
    """One line longer than ``width`` wrapped as :func:`_reflow` says."""
    indent = line[: len(line) - len(line.lstrip())]
    bullet = _BULLET.match(line)
    return textwrap.wrap(
        line.strip(),
        width=width,
        initial_indent=indent,
        subsequent_indent=" " * bullet.end() if bullet else indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
