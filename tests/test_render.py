"""Rendering: size budget, escaping, the text part, slots, templates, no network."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
import socket
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import DigestSettings
from newsletter.errors import ConfigError, TemplateError
from newsletter.htmlpart import MAX_LINE_BYTES
from newsletter.models import Digest, Paper, Profile, RankedPaper, SummaryStyle, TopicGroup
from newsletter.render import (
    MAX_SLOT_BYTES,
    SLOTS,
    TEXT_WIDTH,
    RenderedDigest,
    encoded_size,
    render,
)
from newsletter.templating import Templates, load_templates

DATE = dt.date(2026, 11, 25)
SETTINGS = DigestSettings()
VOCABULARY = """diffusion policy robot manipulation language model multimodal reasoning benchmark
transformer attention dataset video generation reinforcement learning agents vision representation
scaling inference retrieval alignment tokens training evaluation embodied navigation planning
simulation real-world zero-shot fine-tuning latent"""
WORDS = tuple(VOCABULARY.split())
OUR_TAGS = frozenset(
    [
        "html",
        "head",
        "title",
        "meta",
        "style",
        "body",
        "div",
        "table",
        "tbody",
        "tr",
        "td",
        "a",
        "h1",
        "h2",
        "p",
        "b",
        "i",
        "br",
        "ul",
        "li",
    ]
)
"""Every tag the shipped templates produce."""
VALUES = {
    "name": "Ada",
    "email": "ada@example.org",
    "unsubscribe_url": "https://news.example.org/u/abc123",
    "preferences_url": "https://news.example.org/p/abc123",
    "feedback_url": "https://papers.example/f/" + "F" * 36,
}


# --------------------------------------------------------------------------- fixtures


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def _abstract(rng: random.Random, chars: int) -> str:
    text = ""
    while len(text) < chars:
        text += _sentence(rng) + " "
    return text[:chars].rstrip()


def _title(rng: random.Random, k: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
    return f"P{k}: {words.title()}"


def _page_day_papers(n: int = 61, *, abstract_chars: int = 1000) -> list[Paper]:
    """Like the Daily Papers page: title and abstract only, no ids, authors or votes."""
    rng = random.Random(n)
    papers = []
    for k in range(n):
        title = _title(rng, k)
        url = "https://huggingface.co/papers?q=" + quote(title)
        papers.append(Paper(title=title, abstract=_abstract(rng, abstract_chars), url=url))
    return papers


def _hf_papers(n: int) -> list[Paper]:
    rng = random.Random(n)
    papers = []
    for k in range(n):
        pid = f"2511.{10000 + k}"
        papers.append(
            Paper(
                title=_title(rng, k),
                abstract=_abstract(rng, 1000),
                id=pid,
                url=f"https://huggingface.co/papers/{pid}",
                authors=tuple(f"Author {k}-{j}" for j in range(rng.randint(1, 15))),
                upvotes=rng.randint(0, 200),
                comments=rng.randint(0, 9),
                ai_summary=_abstract(rng, 250) if k % 2 else None,
                github_repo=f"https://github.com/lab{k}/code" if k % 3 == 0 else None,
                project_page=f"https://lab{k}.github.io/" if k % 4 == 0 else None,
                source="hf",
            )
        )
    return papers


def _digest(
    papers: Sequence[Paper],
    *,
    topics: int = 10,
    summary: SummaryStyle = "tldr",
    reasons: tuple[str, ...] = ("matches: diffusion policy",),
) -> Digest:
    """Papers ranked in the given order, dealt round-robin into ``topics`` topics."""
    names = [f"Topic {chr(65 + i)} & friends" for i in range(topics)]
    groups: dict[str, list[RankedPaper]] = {name: [] for name in names}
    for k, paper in enumerate(papers):
        name = names[k % topics]
        groups[name].append(RankedPaper(paper, score=1000.0 - k, topic=name, reasons=reasons))
    return Digest(
        date=DATE,
        topics=tuple(TopicGroup(name, tuple(rps)) for name, rps in groups.items() if rps),
        profile=Profile(summary=summary),
        total_papers=len(papers),
    )


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(None)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.ids: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "a" and attributes.get("href") is not None:
            self.hrefs.append(str(attributes["href"]))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser


def _assert_every_paper_linked_once(html: str, papers: Sequence[Paper]) -> None:
    hrefs = _links(html).hrefs
    for paper in papers:
        assert hrefs.count(str(paper.url)) == 1, paper.title


def _filled(rendered: RenderedDigest) -> tuple[str, str]:
    """The html (its wrapped lines joined back: breaks replace spaces) and the text."""
    html, text = rendered.fill(VALUES)
    return _flat(html), text


def _flat(html: str) -> str:
    return html.replace("\n", " ")


# --------------------------------------------------------------------------- size


def test_page_day_fits_the_budget_with_every_paper_linked(templates: Templates) -> None:
    papers = _page_day_papers(61)
    rendered = render(_digest(papers), settings=SETTINGS, templates=templates)
    html, _ = _filled(rendered)

    assert rendered.fits and rendered.compact_papers == 0
    assert rendered.summary_chars == SETTINGS.tldr_chars
    assert encoded_size(html) <= rendered.html_bytes <= SETTINGS.max_html_bytes
    _assert_every_paper_linked_once(html, papers)
    assert "More papers" not in html


def test_150_paper_day_moves_the_lowest_ranked_into_a_compact_list(
    templates: Templates,
) -> None:
    papers = _hf_papers(150)
    rendered = render(_digest(papers), settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)

    assert rendered.fits and encoded_size(html) <= SETTINGS.max_html_bytes
    assert 0 < rendered.compact_papers < 150
    feedback = VALUES["feedback_url"]
    for paper in papers:  # every paper, compact ones too, in both parts
        for word in ("more", "less"):
            assert html.count(f'href="{feedback}/{word}/{paper.id}"') == 1, paper.id
            assert text.count(f"{feedback}/{word}/{paper.id}\n") == 1, paper.id
    assert f"More papers ({rendered.compact_papers})" in html
    assert f"More papers ({rendered.compact_papers})" in text
    _assert_every_paper_linked_once(html, papers)
    # The compact list holds exactly the lowest-ranked papers (the last ones given).
    more = html[html.index(f"More papers ({rendered.compact_papers})") :]
    for paper in papers[-rendered.compact_papers :]:
        assert f'href="{paper.url}"' in more
    for paper in papers[: -rendered.compact_papers]:
        assert f'href="{paper.url}"' not in more
    assert any("compact list" in w for w in rendered.warnings)


def test_a_500_paper_day_keeps_feedback_links_on_its_best_compact_papers(
    templates: Templates,
) -> None:
    papers = _hf_papers(500)  # more than fit in ~100 KB with two links each
    rendered = render(_digest(papers), settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)

    assert rendered.fits and rendered.compact_papers == 500
    _assert_every_paper_linked_once(html, papers)
    linked = [p for p in papers if f'{VALUES["feedback_url"]}/more/{p.id}"' in html]
    assert 0 < len(linked) < 500 and linked == papers[: len(linked)]  # the best ones
    assert text.count(f"{VALUES['feedback_url']}/less/") == len(linked)
    assert any(f"{500 - len(linked)} compact papers without" in w for w in rendered.warnings)


def test_a_day_too_big_even_when_compact_is_reported_not_truncated(
    templates: Templates,
) -> None:
    papers = [
        dataclasses.replace(p, url=f"{p.url}?{'x' * 400}", ai_summary=None) for p in _hf_papers(300)
    ]
    rendered = render(_digest(papers), settings=SETTINGS, templates=templates)

    assert not rendered.fits
    assert rendered.compact_papers == 300
    assert any("over the 100000-byte budget" in w for w in rendered.warnings)
    _assert_every_paper_linked_once(rendered.html, papers)


def test_summaries_shrink_before_any_paper_moves(templates: Templates) -> None:
    papers = _page_day_papers(61, abstract_chars=1500)
    rendered = render(_digest(papers, summary="abstract"), settings=SETTINGS, templates=templates)

    assert rendered.fits and rendered.compact_papers == 0
    assert rendered.summary_chars is not None
    assert rendered.summary_chars < SETTINGS.abstract_chars
    assert "Summaries are shortened today" in _flat(rendered.html)


def test_a_smaller_budget_is_honoured(templates: Templates) -> None:
    settings = dataclasses.replace(SETTINGS, max_html_bytes=40_000)
    papers = _page_day_papers(61)
    rendered = render(_digest(papers), settings=settings, templates=templates)

    assert rendered.fits and rendered.html_bytes <= 40_000
    assert rendered.compact_papers > 0
    _assert_every_paper_linked_once(rendered.html, papers)


# --------------------------------------------------------------------------- the HTML


def test_html_is_ascii_with_short_lines_even_after_filling(templates: Templates) -> None:
    papers = _page_day_papers(12)
    papers[0] = dataclasses.replace(
        papers[0],
        title="Über große Modelle: 中文 🤖 — naïve",
        abstract="Ça marche très bien. " * 80,
    )
    papers[1] = dataclasses.replace(papers[1], abstract="x" * 3000)  # one word, no spaces
    papers[2] = dataclasses.replace(papers[2], abstract="é" * 3000)
    rendered = render(_digest(papers, summary="abstract"), settings=SETTINGS, templates=templates)
    long_url = "https://news.example.org/u/" + "t" * (MAX_SLOT_BYTES - 27)
    html, _ = rendered.fill(
        {**VALUES, "name": "Zoë " * 100, "unsubscribe_url": long_url, "preferences_url": long_url}
    )

    for page in (rendered.html, html):
        assert page.isascii()
        assert max(len(line.encode()) for line in page.split("\n")) <= MAX_LINE_BYTES
    assert "&#220;ber gro&#223;e Modelle: &#20013;&#25991; &#129302;" in _flat(html)
    assert "&#233;" in html
    assert html.lower().startswith("<!doctype html>")


def test_layout_has_dark_mode_lang_preheader_toc_and_mobile_rules(templates: Templates) -> None:
    papers = _page_day_papers(20)
    settings = dataclasses.replace(SETTINGS, lang="de", title="Tagespapiere")
    rendered = render(
        _digest(papers, topics=4),
        settings=settings,
        templates=templates,
        web_url="https://archive.example.org/2026-11-25.html",
    )
    html, _ = _filled(rendered)
    links = _links(html)

    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    assert "@media (prefers-color-scheme:dark)" in html
    assert '<html lang="de"' in html
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert any(t == "table" and a.get("role") == "presentation" for t, a in links.tags)
    assert "overflow-wrap:anywhere" in html and "word-break:break-word" in html
    # MJML's reset rules stay in the head instead of being inlined into every cell.
    assert html.count("mso-table-lspace") == 1
    # Table of contents: no in-message #anchor (dead in many mail apps); with an archive,
    # one link per topic to that section of the day's web page.
    assert not [h for h in links.hrefs if h.startswith("#")]
    page = "https://archive.example.org/2026-11-25.html#"
    toc = [h.removeprefix(page) for h in links.hrefs if h.startswith(page)]
    assert len(toc) == 4 and set(toc) <= set(links.ids)
    assert "Topic A &amp; friends" in html
    # The preheader names the top paper and is hidden.
    assert papers[0].title[:40] in rendered.preheader
    assert rendered.preheader.split(";")[0][:40] in html
    assert "https://archive.example.org/2026-11-25.html" in links.hrefs
    assert "View in browser" in html
    assert "Tagespapiere" in rendered.subject and "25 Nov" in rendered.subject


def test_paper_details_tldr_authors_votes_links_and_reasons(templates: Templates) -> None:
    paper = Paper(
        title="Diffusion Policy at Scale",
        abstract="First sentence is here. Second sentence follows it. Third one is long. " * 10,
        id="2511.00001",
        url="https://huggingface.co/papers/2511.00001",
        authors=tuple(f"Name{i} Surname" for i in range(15)),
        upvotes=42,
        comments=7,
        github_repo="https://github.com/lab/dp",
        project_page="https://lab.github.io/dp",
    )
    rendered = render(
        _digest([paper], topics=1, reasons=("matches: diffusion policy", "author: Name1 Surname")),
        settings=dataclasses.replace(SETTINGS, tldr_chars=60),
        templates=templates,
        web_url=None,
    )
    html, text = _filled(rendered)
    links = _links(html)

    assert "Name0 Surname, Name1 Surname, Name2 Surname +12" in html
    assert "42 upvotes" in html and "7 comments" in html
    assert "https://github.com/lab/dp" in links.hrefs
    assert "https://lab.github.io/dp" in links.hrefs
    assert "matches: diffusion policy; author: Name1 Surname" in html
    # TL;DR: whole sentences of the abstract within tldr_chars.
    tldr = re.search(r'<p class="s"[^>]*>([^<]*)</p>', html)
    assert tldr is not None and 0 < len(tldr.group(1)) <= 60
    assert tldr.group(1) in paper.abstract and tldr.group(1).endswith(".")
    assert "View in browser" not in html
    assert "Name0 Surname, Name1 Surname, Name2 Surname +12" in text
    assert "Code: https://github.com/lab/dp" in text


def test_summary_styles(templates: Templates) -> None:
    long_sentence = "Word " * 200
    ai = Paper(title="With AI summary", abstract="The abstract. " * 20, ai_summary="Short AI.")
    cut = Paper(title="Long first sentence", abstract=long_sentence)
    ok = render(_digest([ai, cut], topics=1), settings=SETTINGS, templates=templates)
    assert "Short AI." in _flat(ok.html) and "The abstract." not in _flat(ok.html)
    tldr = re.search(r"(Word ){10,}[^<]*", _flat(ok.html))
    assert tldr is not None
    assert tldr.group(0).endswith("Word&#8230;")
    assert len(tldr.group(0).replace("&#8230;", ".")) <= SETTINGS.tldr_chars

    abstract = render(
        _digest([ai], topics=1, summary="abstract"), settings=SETTINGS, templates=templates
    )
    assert "The abstract. The abstract." in _flat(abstract.html) and "Short AI." not in _flat(
        abstract.html
    )

    titles = render(
        _digest([ai], topics=1, summary="titles"), settings=SETTINGS, templates=templates
    )
    assert "The abstract." not in _flat(titles.html) and "Short AI." not in _flat(titles.html)
    assert titles.summary_chars is None


def test_empty_digest_is_a_short_note(templates: Templates) -> None:
    digest = Digest(date=DATE, topics=())
    rendered = render(digest, settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)

    assert "No papers today" in html and "No papers today" in text
    assert "no new papers" in rendered.subject
    assert rendered.preheader == "No new papers today."
    assert "https://news.example.org/u/abc123" in html


# --------------------------------------------------------------------------- hostile content


def test_hostile_content_is_escaped_and_unsafe_links_dropped(templates: Templates) -> None:
    evil = Paper(
        title="Evil\r\nTitle <script>alert(1)</script>\x07 {{ 7*7 }}",
        abstract="Look: <script>alert('x')</script> {{ 7*7 }} {% if true %}yes{% endif %} & more.",
        url="javascript:alert(1)",
        github_repo="data:text/html,<b>x</b>",
        project_page=" JavaScript:alert(2)",
        authors=("<img src=x onerror=alert(1)>",),
    )
    sneaky = Paper(
        title="Sneaky link", abstract="a", url='https://ok.example/"onmouseover="alert(1)'
    )
    rendered = render(_digest([evil, sneaky], topics=1), settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)
    links = _links(html)

    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{ 7*7 }}" in html and "{% if true %}yes{% endif %}" in html and "49" not in html
    assert "Evil Title" in html
    for href in links.hrefs:
        assert href.startswith(("https://", "http://", "#")), href
    assert all(not re.search(r"javascript|data:", h, re.I) for h in links.hrefs)
    assert "https://ok.example/%22onmouseover=%22alert(1)" in links.hrefs
    # Text part: verbatim, one line per title, no control characters.
    assert "{{ 7*7 }}" in text and "<script>alert('x')</script>" in text
    assert "* Evil Title <script>alert(1)</script> {{ 7*7 }}" in text
    assert "\x07" not in text and "\r" not in text
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_papers_without_a_usable_url(templates: Templates) -> None:
    arxiv = Paper(title="Has an arXiv id", abstract="a", id="2511.01234", url="ftp://x/y")
    none = Paper(title="Has nothing", abstract="b", url=None)
    rendered = render(_digest([arxiv, none], topics=1), settings=SETTINGS, templates=templates)
    html = _flat(rendered.html)

    assert _links(html).hrefs.count("https://arxiv.org/abs/2511.01234") == 1
    assert "Has nothing</b>" in html and "ftp:" not in html


def test_settings_text_is_one_line_in_the_text_part(templates: Templates) -> None:
    settings = dataclasses.replace(SETTINGS, title="Daily\r\nPapers\x1b[31m")
    rendered = render(
        _digest(_page_day_papers(1), topics=1), settings=settings, templates=templates
    )
    assert rendered.text.startswith("DAILY PAPERS [31M - ")
    assert "\r" not in rendered.text and "\x1b" not in rendered.text
    assert "Daily Papers [31m" in rendered.subject


def test_lone_surrogates_and_noncharacters_are_dropped(templates: Templates) -> None:
    paper = Paper(title="Bad \ud800 title \ufffe", abstract="x \udcff y", url="https://x.org/1")
    rendered = render(_digest([paper], topics=1), settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)

    assert "Bad title" in html and "* Bad title" in text
    text.encode("utf-8")  # no surrogates left


def test_placeholder_lookalikes_in_content_are_never_substituted(templates: Templates) -> None:
    first = render(_digest(_page_day_papers(2), topics=1), settings=SETTINGS, templates=templates)
    guess = first.placeholder("email")
    paper = Paper(title="Forged", abstract=f"Mail me at {guess} and %%x.email%% please.")
    rendered = render(_digest([paper], topics=1), settings=SETTINGS, templates=templates)
    html, text = _filled(rendered)

    assert rendered.nonce != first.nonce
    assert guess in html and guess in text
    assert "%%x.email%%" in html


# --------------------------------------------------------------------------- slots


def test_fill_substitutes_every_slot_escaped_for_html_raw_for_text(templates: Templates) -> None:
    rendered = render(
        _digest(_page_day_papers(3), topics=1), settings=SETTINGS, templates=templates
    )
    for slot in SLOTS:
        assert rendered.placeholder(slot) in _flat(rendered.html)
        assert rendered.placeholder(slot) in rendered.text
    values = {
        "name": "Zoë <b>&</b>",
        "email": "zoe@example.org",
        "unsubscribe_url": "https://news.example.org/u?t=a&b=1",
        "preferences_url": "https://news.example.org/p?t=a&b=1",
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }
    html, text = rendered.fill(values)
    html = _flat(html)
    links = _links(html)

    assert "%%" not in html and "%%" not in text
    assert "Hi Zo&#235; &lt;b&gt;&amp;&lt;/b&gt;," in html and html.isascii()
    assert "Hi Zoë <b>&</b>," in text
    assert 'href="https://news.example.org/u?t=a&amp;b=1"' in html
    assert "https://news.example.org/u?t=a&b=1" in links.hrefs
    assert "https://news.example.org/p?t=a&b=1" in links.hrefs
    assert "Unsubscribe: https://news.example.org/u?t=a&b=1" in text
    assert "zoe@example.org" in html and "zoe@example.org" in text
    # The rendered digest is reusable: another subscriber, other values.
    html2, _ = _filled(dataclasses.replace(rendered))
    assert "Hi Ada," in html2
    html3, _ = rendered.fill({**VALUES, "name": ""})
    assert "Hi there," in _flat(html3) and "Zo&#235;" not in html2


def test_fill_refuses_bad_values(templates: Templates) -> None:
    rendered = render(
        _digest(_page_day_papers(1), topics=1), settings=SETTINGS, templates=templates
    )
    with pytest.raises(ValueError, match="missing slots"):
        rendered.fill({"name": "x"})
    with pytest.raises(ValueError, match="unknown slots"):
        rendered.fill({**VALUES, "other": "x"})
    with pytest.raises(ValueError, match="unsubscribe_url"):
        rendered.fill({**VALUES, "unsubscribe_url": "javascript:alert(1)"})
    with pytest.raises(ValueError, match="longer than"):
        rendered.fill({**VALUES, "email": "a" * (MAX_SLOT_BYTES + 1)})


def test_web_url_must_be_http(templates: Templates) -> None:
    with pytest.raises(ConfigError, match="web_url"):
        render(_digest([]), settings=SETTINGS, templates=templates, web_url="javascript:x")


# --------------------------------------------------------------------------- text part


def test_text_part_is_reflowed_with_bare_urls(templates: Templates) -> None:
    papers = _hf_papers(15)
    papers[0] = dataclasses.replace(papers[0], title="A Very Long Title " * 8)
    rendered = render(
        _digest(papers, topics=3, summary="abstract"),
        settings=SETTINGS,
        templates=templates,
        web_url="https://archive.example.org/d.html",
    )
    _, text = _filled(rendered)
    lines = text.split("\n")

    for line in lines:
        assert len(line) <= TEXT_WIDTH or re.fullmatch(r"\s*([\w ]+: )?https?://\S+", line), line
    for paper in papers:
        assert f"  {paper.url}" in lines
    assert "<" not in text and "&amp;" not in text and "&#" not in text
    assert "View in browser: https://archive.example.org/d.html" in text
    # A long title wraps under its bullet.
    start = lines.index("* " + "A Very Long Title " * 4 + "A")
    assert lines[start + 1] == "  Very Long Title " + "A Very Long Title " * 2 + "A Very Long Title"
    assert "Contents:" in text and "== Topic A & friends ==" in text


# --------------------------------------------------------------------------- no network


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def test_rendering_never_touches_the_network(no_network: None, tmp_path: Path) -> None:
    # A stylesheet link and a Google-Fonts import in an override template are not fetched.
    (tmp_path / "digest.mjml.j2").write_text(
        _shipped("digest.mjml.j2").replace(
            "<mj-head>",
            '<mj-head><mj-font name="Roboto" href="https://fonts.googleapis.com/css?family=Roboto"/>'
            '<mj-raw><link rel="stylesheet" href="https://styles.example.org/x.css"/></mj-raw>',
        ),
        encoding="utf-8",
    )
    for folder in (None, str(tmp_path)):
        rendered = render(
            _digest(_page_day_papers(5), topics=2),
            settings=SETTINGS,
            templates=load_templates(folder),
        )
        assert "P0:" in _flat(rendered.html)


# --------------------------------------------------------------------------- templates


def _shipped(name: str) -> str:
    return (Path(__file__).resolve().parent.parent / "templates" / name).read_text("utf-8")


def test_override_folder_replaces_templates_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "paper.mjml.j2").write_text(
        '<div class="p">OVERRIDE <a href="{{ p.url }}">{{ p.title }}</a></div>\n',
        encoding="utf-8",
    )
    (tmp_path / "subject.txt.j2").write_text("Custom {{ shown }} papers", encoding="utf-8")
    templates = load_templates(str(tmp_path))
    papers = _page_day_papers(3)
    rendered = render(_digest(papers, topics=1), settings=SETTINGS, templates=templates)

    assert rendered.html.count("OVERRIDE") == 3
    assert rendered.subject == "Custom 3 papers"
    assert "Contents:" in rendered.text  # the shipped text template is still used
    _assert_every_paper_linked_once(rendered.html, papers)


def test_missing_override_folder_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        load_templates(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("name", "content", "when", "message"),
    [
        ("digest.mjml.j2", "<mjml>{% if %}</mjml>", "load", "syntax error"),
        ("partials/paper.txt.j2", "{% for x in %}", "load", "paper.txt.j2:1"),
        ("digest.txt.j2", "{{ no_such_thing }}", "render", "no_such_thing"),
        ("digest.mjml.j2", "<mjml><mj-body><mj-section></mjml>", "render", "invalid MJML"),
        ("digest.mjml.j2", "{% include 'partials/missing.j2' %}", "render", "missing"),
        ("digest.txt.j2", "Hi {{ slot.name }}", "render", "no unsubscribe link"),
    ],
)
def test_broken_templates_raise_template_error_at_preflight(
    tmp_path: Path, name: str, content: str, when: str, message: str
) -> None:
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    with pytest.raises(TemplateError, match=message):
        templates = load_templates(str(tmp_path))
        assert when == "render", "a syntax error must surface when loading"
        render(_digest(_page_day_papers(1), topics=1), settings=SETTINGS, templates=templates)


# --------------------------------------------------------------------------- any text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    titles=st.lists(st.text(min_size=1, max_size=120), min_size=1, max_size=4),
    abstract=st.text(max_size=1500),
    name=st.text(max_size=80),
)
def test_any_text_renders_ascii_short_lines_escaped(
    templates: Templates, titles: list[str], abstract: str, name: str
) -> None:
    papers = [
        Paper(title=t, abstract=abstract, url=f"https://huggingface.co/papers/2511.{i:05d}")
        for i, t in enumerate(titles)
    ]
    rendered = render(_digest(papers, topics=2), settings=SETTINGS, templates=templates)
    html, text = rendered.fill({**VALUES, "name": name})

    assert html.isascii()
    assert max(len(line) for line in html.split("\n")) <= MAX_LINE_BYTES
    _assert_every_paper_linked_once(html, papers)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    assert {tag for tag, _ in _links(html).tags} <= OUR_TAGS  # nothing from the content


def test_an_open_bidi_override_in_a_name_is_closed_in_the_greeting() -> None:
    digest = Digest(date=dt.date(2026, 11, 25), topics=())
    rendered = render(digest, settings=DigestSettings(), templates=load_templates(None))
    values = {
        "name": "\u202eevil",
        "email": "a@example.org",
        "unsubscribe_url": "https://example.org/u?token=x",
        "preferences_url": "https://example.org/p?token=x",
        "feedback_url": "https://papers.example/f/" + "F" * 36,
    }
    _html, text = rendered.fill(values)
    assert "\u202eevil\u202c" in text


# --------------------------------------------------------------------------- what the reader sees


def _one_section(papers: Sequence[Paper], name: str, topics: Sequence[str]) -> Digest:
    ranked = tuple(
        RankedPaper(p, score=100.0 - k, topic=t, reasons=(f"topic: {t}", "author: Ada Lovelace"))
        for k, (p, t) in enumerate(zip(papers, topics, strict=True))
    )
    return Digest(date=DATE, topics=(TopicGroup(name, ranked),), total_papers=len(ranked))


def test_reasons_leave_out_the_section_the_paper_is_already_in(templates: Templates) -> None:
    papers = _hf_papers(2)
    rendered = render(
        _one_section(papers, "Robots", ["Robots", "Vision"]), settings=SETTINGS, templates=templates
    )
    html, text = _filled(rendered)
    assert "topic: Robots" not in html and "topic: Robots" not in text
    assert "topic: Vision" in html and "author: Ada Lovelace" in html
    assert "trending:" not in html


def test_a_gathered_section_shows_each_papers_topic(templates: Templates) -> None:
    papers = _hf_papers(2)
    digest = _one_section(papers, "Also today", ["Speech", "Theory"])
    html, text = _filled(render(digest, settings=SETTINGS, templates=templates))
    assert "<i>Speech</i>" in html and "<i>Theory</i>" in html
    assert "Speech | " in text and "Theory | " in text
    # "fewer of this topic" is offered for topics: a gathered section is none
    assert "/fewer/" not in html and "/fewer/" not in text
    assert html.count(f"{VALUES['feedback_url']}/more/") == 2


def test_each_topic_section_offers_fewer_of_this_topic(templates: Templates) -> None:
    html, text = _filled(
        render(_digest(_hf_papers(6), topics=3), settings=SETTINGS, templates=templates)
    )
    feedback = VALUES["feedback_url"]
    assert f'href="{feedback}/fewer/Topic%20A%20%26%20friends"' in html
    assert f"Fewer of this topic:\n{feedback}/fewer/Topic%20A%20%26%20friends\n" in text
    assert html.count(f"{feedback}/fewer/") == text.count(f"{feedback}/fewer/") == 3


def test_contents_are_plain_names_without_an_archive(templates: Templates) -> None:
    html, text = _filled(
        render(_digest(_hf_papers(6), topics=3), settings=SETTINGS, templates=templates)
    )
    links = _links(html)
    assert not [h for h in links.hrefs if h.startswith("#")]
    assert "In this issue: <b>Topic A &amp; friends</b>" in html
    assert "  - Topic A & friends (2)" in text


@pytest.mark.parametrize(
    "title", ["Daily Papers", "The Extremely Long Newsletter Title of Our Lab"]
)
@pytest.mark.parametrize("paper_title", ["Short", "A" * 40 + " " + "very long words " * 20])
def test_subjects_fit_a_phone(templates: Templates, title: str, paper_title: str) -> None:
    papers = [dataclasses.replace(p, title=paper_title) for p in _hf_papers(30)]
    settings = dataclasses.replace(SETTINGS, title=title)
    subject = render(_digest(papers, topics=3), settings=settings, templates=templates).subject
    assert len(subject) <= 78
    assert subject.endswith(" +29") and "25 Nov" in subject
    if title == "Daily Papers":
        assert len(subject) <= 70
        assert subject.startswith(f"Daily Papers 25 Nov: {paper_title[:10]}")


def test_the_web_page_has_no_greeting_footer_or_slots(templates: Templates) -> None:
    rendered = render(
        _digest(_hf_papers(6), topics=3),
        settings=SETTINGS,
        templates=templates,
        web_url="https://archive.example.org/2026-11-25.html",
        page=True,
    )
    html = _flat(rendered.html)
    assert "Hi " not in html and "Unsubscribe" not in html and "You receive this" not in html
    assert "View in browser" not in html and "%%" not in html
    links = _links(html)
    toc = [h[1:] for h in links.hrefs if h.startswith("#")]
    assert len(toc) == 3 and set(toc) <= set(links.ids)
    assert "Unsubscribe" not in rendered.text and "Hi " not in rendered.text
