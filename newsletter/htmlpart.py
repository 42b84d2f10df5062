"""The HTML part after MJML: CSS inlined, ASCII only, every line at most 900 bytes (pure).

``inline_css`` runs premailer (no network) with the parsed stylesheets kept across calls;
``postprocess`` writes non-ASCII as character references (``\\XXXXXX`` escapes in CSS) and
``wrap_lines`` breaks long lines, counting each slot placeholder at its longest value
(:data:`newsletter.slots.MAX_SLOT_BYTES`), so the part goes out as 7bit whatever a
subscriber's values (:mod:`newsletter.message` relies on it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from premailer import Premailer

from newsletter.errors import TemplateError
from newsletter.slots import MAX_SLOT_BYTES, ascii_refs, placeholder, placeholder_pattern

MAX_LINE_BYTES = 900
"""Longest HTML line, so the part goes out as 7bit (limit 998) with no re-encoding."""

_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.S | re.I)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_MJML_RESET_STYLE = re.compile(r"<style type=\"text/css\">(?=\s*#outlook a)")
"""MJML's own reset rules (table, td, p, img...): they stay in the head, as MJML means
them; inlining them into every table cell would cost ~400 bytes per section."""


class CachedRulesPremailer(Premailer):  # type: ignore[misc]  # premailer is untyped
    """Premailer reusing the parsed rules of a stylesheet it has seen before.

    ``_parse_style_rules`` depends only on the stylesheet text, its index and the
    options (the same on every call here); ``transform`` only reads what it returns.
    Premailer already caches the cssutils parse; this also skips turning the parsed
    sheet into rule strings again, most of the inlining time for a day's variants.
    """

    def __init__(
        self, html: str, *, rules: dict[tuple[str | None, int], Any], **options: Any
    ) -> None:
        super().__init__(html, **options)
        self._rules_cache = rules

    def _parse_style_rules(self, css_body: str | None, ruleset_index: int) -> Any:
        key = (css_body, ruleset_index)
        found = self._rules_cache.get(key)
        if found is None:
            found = super()._parse_style_rules(css_body, ruleset_index)
            self._rules_cache[key] = found
        return found


def inline_css(html: str, *, rules: dict[tuple[str | None, int], Any] | None = None) -> str:
    """Inline our <style> rules (kept in the head too, for media queries); never fetch.

    ``rules`` caches the parsed stylesheets across calls (``Templates.css_rules``).
    """
    html = _MJML_RESET_STYLE.sub('<style type="text/css" data-premailer="ignore">', html, 1)
    try:
        inliner = CachedRulesPremailer(
            html,
            rules={} if rules is None else rules,
            allow_network=False,
            allow_loading_external_files=False,
            keep_style_tags=True,
            strip_important=False,
            disable_validation=True,
            disable_link_rewrites=True,
            cssutils_logging_level=logging.CRITICAL,
        )
        out: str = inliner.transform(pretty_print=False)
    except Exception as exc:  # premailer raises bare library errors (cssutils, lxml)
        raise TemplateError(f"CSS inlining failed: {type(exc).__name__}: {exc}") from None
    return out


def postprocess(html: str, nonce: str) -> str:
    if not html.lstrip()[:9].lower().startswith("<!doctype"):
        html = "<!doctype html>\n" + html
    html = _STYLE_BLOCK.sub(
        lambda m: m.group(1) + _NON_ASCII.sub(_css_escape, m.group(2)) + m.group(3), html
    )
    return wrap_lines(ascii_refs(html), nonce)


def _css_escape(match: re.Match[str]) -> str:
    return f"\\{ord(match.group(0)):06x}"


def wrap_lines(html: str, nonce: str, limit: int = MAX_LINE_BYTES) -> str:
    """Break lines over ``limit`` bytes, counting each placeholder at MAX_SLOT_BYTES.

    A break replaces a space with a newline (same meaning in HTML outside <pre>),
    preferring the last space that fits; a line without one is broken after a tag
    (or, failing that, in text before a character reference). The placeholders of a
    long line are found once, not again after every break.
    """
    pattern = placeholder_pattern(nonce)
    extra = MAX_SLOT_BYTES - len(placeholder(nonce, "name"))
    out: list[str] = []
    for line in html.split("\n"):
        spans = [match.span() for match in pattern.finditer(line)]
        pos = first = 0  # the rest of the line is line[pos:]; spans[first:] lie in it
        while len(line) - pos + (len(spans) - first) * extra > limit:
            window = _window(spans, first, pos, extra, limit)
            cut = line.rfind(" ", pos + 1, pos + window + 1)
            if cut > pos:
                out.append(line[pos:cut])
                pos = cut + 1
            else:
                cut = pos + _hard_break(line[pos : pos + window + 1], window)
                out.append(line[pos:cut])
                pos = cut
            while first < len(spans) and spans[first][0] < pos:
                first += 1  # passed (a placeholder broken in two no longer matches either)
        out.append(line[pos:])
    return "\n".join(out)


def _window(spans: Sequence[tuple[int, int]], first: int, pos: int, extra: int, limit: int) -> int:
    """The longest prefix of ``line[pos:]`` whose cost (placeholders weighted) is <= limit;
    ``spans[first:]`` are the placeholders in it, as (start, end) in ``line``."""
    count, low, best = 0, 0, 0
    for index in range(first, len(spans)):
        end = spans[index][1] - pos
        # Prefixes of length low..end-1 hold `count` whole placeholders.
        cap = limit - extra * count
        if cap < low:
            return best
        if cap < end:
            return cap
        best, count, low = end - 1, count + 1, end
    cap = limit - extra * count
    return best if cap < low else cap


def _hard_break(line: str, window: int) -> int:
    """A position <= window to break a line that has no space: after a tag, else in text."""
    gt = line.rfind(">", 0, window - 1)
    if gt > 0:
        return gt + 1
    # No tag ends in the window: the window is text, maybe with character references.
    amp = line.rfind("&", 0, window)
    if amp > 0 and line.find(";", amp, window) < 0:
        return amp
    return max(window - 1, 1)
