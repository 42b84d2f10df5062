"""The digest's templates: the shipped ``newsletter.templates`` and an override folder,
compiled once per configuration (:func:`load_templates`), with the caches that keep work
across a day's renders (:class:`Templates`). :mod:`newsletter.render` renders with them.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2

from newsletter.errors import TemplateError
from newsletter.models import Paper
from newsletter.slots import one_line

if TYPE_CHECKING:
    from newsletter.render import PaperView

TEMPLATE_PACKAGE = "newsletter.templates"
"""The package whose files are the shipped templates (the top-level templates/ folder)."""

HTML_TEMPLATE = "digest.mjml.j2"
"""The MJML template of the HTML part."""

TEXT_TEMPLATE = "digest.txt.j2"
"""The template of the plain-text part."""

SUBJECT_TEMPLATE = "subject.txt.j2"
"""The template of the subject line (whitespace collapsed to one line)."""


class _PackageLoader(jinja2.BaseLoader):
    """Templates from a package's files via importlib.resources (works in wheels and zips)."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = self.root
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise jinja2.TemplateNotFound(template)
            node = node.joinpath(part)
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True

    def list_templates(self) -> list[str]:
        found: list[str] = []

        def walk(node: Traversable, prefix: str) -> None:
            for child in node.iterdir():
                if child.is_dir():
                    walk(child, f"{prefix}{child.name}/")
                elif child.name.endswith(".j2"):
                    found.append(prefix + child.name)

        walk(self.root, "")
        return sorted(found)


@dataclass(frozen=True)
class Templates:
    """The compiled templates of one configuration (shipped + override folder), and the
    four caches that keep work across a day's renders: each saves about 10 to 40 % of the
    CPU time of rendering a day's variants (``benchmarks.bench_tricks``; README,
    Performance)."""

    html: jinja2.Template
    text: jinja2.Template
    subject: jinja2.Template
    folder: str | None = None
    """The override folder, if any."""
    css_rules: dict[tuple[str | None, int], Any] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )
    """Premailer's parsed style rules per (stylesheet text, index), kept across renders:
    every variant of a day carries the same stylesheet (``htmlpart.CachedRulesPremailer``)."""
    wrapped_lines: dict[tuple[str, int], list[str]] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )
    """The text part's long lines as wrapped, per (line, width), kept across renders: the
    variants of a day share most paper lines (see ``newsletter.render._reflow``)."""
    paper_views: dict[tuple[Paper, str, int | None], PaperView] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )
    """Each paper as the templates see it, per (paper, summary style, summary length),
    before the variant's reasons, topic and score: kept across renders, since the
    variants of a day show the same papers (see ``newsletter.render._paper_view``)."""
    lines: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)
    """Texts as :func:`newsletter.slots.one_line` makes them, kept across renders: every
    value a text template prints (its ``finalize``: one line, no control characters) and
    the texts ``newsletter.render`` cleans (titles, authors, abstracts, reasons, topics,
    section names); 16 to 19 % of rendering the page day's variants (``bench_tricks``).
    The text templates' ``finalize`` holds this very dict: empty it, never replace it."""


def load_templates(folder: str | None = None) -> Templates:
    """Compile the shipped templates, each replaced by ``folder``'s file of the same name.

    Every ``*.j2`` file is compiled here, so a syntax error anywhere (partials too)
    raises :class:`TemplateError` now, not halfway through a send.
    """
    loaders: list[jinja2.BaseLoader] = []
    if folder is not None:
        if not Path(folder).is_dir():
            raise TemplateError(f"{folder}: templates folder not found")
        loaders.append(jinja2.FileSystemLoader(folder))
    loaders.append(_PackageLoader(importlib.resources.files(TEMPLATE_PACKAGE)))
    loader = jinja2.ChoiceLoader(loaders)
    common: dict[str, Any] = {
        "loader": loader,
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "auto_reload": False,
    }
    lines: dict[str, str] = {}
    html_env = jinja2.Environment(autoescape=True, **common)
    text_env = jinja2.Environment(
        autoescape=False,
        finalize=lambda value: kept_line(value, lines) if isinstance(value, str) else value,
        **common,
    )
    for env in (html_env, text_env):
        env.filters["plural"] = _plural
        env.filters["query"] = query_value
    try:
        names = loader.list_templates()
        for name in names:
            env = html_env if ".mjml" in name or ".html" in name else text_env
            env.get_template(name)
        return Templates(
            html=html_env.get_template(HTML_TEMPLATE),
            text=text_env.get_template(TEXT_TEMPLATE),
            subject=text_env.get_template(SUBJECT_TEMPLATE),
            folder=folder,
            lines=lines,
        )
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}") from None
    except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot load templates: {exc}") from None


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    word = singular if count == 1 else (plural or singular + "s")
    return f"{count} {word}"


def kept_line(text: str, kept: dict[str, str]) -> str:
    """:func:`newsletter.slots.one_line` of ``text``, kept in ``kept`` (``Templates.lines``)."""
    found = kept.get(text)
    if found is None:
        found = kept[text] = one_line(text)
    return found


def query_value(value: object) -> str:
    """``value`` percent-encoded for a query string (characters UTF-8 cannot hold dropped)."""
    return quote(str(value).encode("utf-8", "ignore"), safe="")
