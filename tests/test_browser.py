"""Real-browser checks: headless Chromium lays out the digest HTML as a reader sees it.

The bundled sample day and a synthetic 61-paper day in the trending page's text
format (once more under a small size limit, so that its lower-ranked papers become
a "More papers" list of title links) go through ``prepare_day`` and ``fill`` like a
send, and are opened from a file at 375 px (a phone) and 640 px (the email's
width): no horizontal overflow, every paper's title link visible and on top where a
finger would tap it, the contents links land on their sections, dark colours only
under ``prefers-color-scheme: dark``. One browser per module. Without Chromium
these tests FAIL (CI installs Debian's ``chromium``): they are never skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.browser import Browser, Page, launch
from newsletter.cli.preview import preview_slots
from newsletter.config import DigestSettings, Settings
from newsletter.errors import BrowserError
from newsletter.pipeline import plan_page, prepare_day
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy

WIDTHS = (375, 640)
"""A phone, and the email's own width."""

VIEWPORT_HEIGHT = 800
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
SAMPLE_DATE = dt.date(2026, 3, 2)
PAGE_DATE = dt.date(2026, 11, 25)
PAGE_PAPERS = 61
COMPACT_HTML_BYTES = 50_000
"""A size limit the 61-paper day only meets with a "More papers" list of title links."""
MIN_LIST_GAP_PX = 6
"""Vertical room between two links of the "More papers" list."""
DAYS = ("sample", "page61", "page61-compact")

PAGE_HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "by AK and the research community\n\n"
)
SUBJECTS = (
    "Robot manipulation with diffusion policies",
    "Reinforcement learning from human feedback for reasoning",
    "Multimodal LLMs for video question answering",
    "Text-to-image generation with distilled diffusion",
    "3D Gaussian splatting for dynamic scenes",
    "Speech recognition and audio language models",
    "Efficient inference with speculative decoding and quantization",
    "Jailbreak attacks and safety alignment of assistants",
    "Code generation agents that use tools",
    "A benchmark dataset for visual logical reasoning",
)
LONG_TOKEN = "SuperLongUnbrokenModelNameWithoutAnySpacesOrHyphens" * 2
"""A title word far wider than a phone: it must wrap, not push the page sideways."""

OVERFLOW_JS = """(() => {
  window.scrollTo(0, 0);
  const w = window.innerWidth, wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > w + 0.5 || r.left < -0.5)
      wide.push(`${el.tagName}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}: `
        + (el.textContent || '').trim().slice(0, 50));
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: w, wide: wide};
})()"""

CLICKABLE_JS = """((papers) => {
  const anchors = Array.from(document.querySelectorAll('a[href]'));
  const problems = [];
  for (const [url, title] of papers) {
    const named = (text) => text === title  // or shortened with an ellipsis (compact list)
      || (text.length > 1 && text.endsWith('\u2026') && title.startsWith(text.slice(0, -1)));
    const a = anchors.find(x => x.getAttribute('href') === url
      && named(x.textContent.replace(/\\s+/g, ' ').trim()));
    if (!a) { problems.push(`no link to ${url} titled ${title}`); continue; }
    a.scrollIntoView({block: 'center', inline: 'nearest'});
    const style = getComputedStyle(a);
    if (style.visibility !== 'visible' || style.display === 'none' || +style.opacity === 0) {
      problems.push(`hidden: ${title}`); continue;
    }
    const box = a.getClientRects()[0];
    if (!box || box.width < 1 || box.height < 1) { problems.push(`no box: ${title}`); continue; }
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    if (x < 0 || y < 0 || x > innerWidth || y > innerHeight) {
      problems.push(`off screen at ${x},${y}: ${title}`); continue;
    }
    const hit = document.elementFromPoint(x, y);
    if (!hit || !(hit === a || a.contains(hit)))
      problems.push(`covered by ${hit ? hit.outerHTML.slice(0, 60) : 'nothing'}: ${title}`);
  }
  return problems;
})(PAPERS)"""

CONTENTS_JS = """(() => {
  const links = Array.from(document.querySelectorAll('a[href^="#"]'));
  const problems = [];
  for (const a of links) {
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    const target = document.getElementById(id);
    if (!target || target.tagName !== 'H2') { problems.push(`#${id} is no section`); continue; }
    window.scrollTo(0, 0);
    a.click();
    const top = target.getBoundingClientRect().top;
    const atEnd = scrollY + innerHeight >= document.documentElement.scrollHeight - 1;
    if (Math.abs(top) > 1 && !(atEnd && top > 0 && top < innerHeight))
      problems.push(`#${id} scrolled to ${top}`);
  }
  return {
    links: links.map(a => a.textContent.replace(/\\s+/g, ' ').trim()),
    sections: Array.from(document.querySelectorAll('h2[id]'))
      .map(h => h.textContent.replace(/\\s+/g, ' ').trim()),
    problems: problems,
  };
})()"""

COLOURS_JS = """(() => {
  const css = (sel, prop) => {
    const el = document.querySelector(sel);
    return el ? getComputedStyle(el)[prop] : null;
  };
  return {
    body: css('body', 'backgroundColor'),
    container: css('.bg', 'backgroundColor'),
    heading: css('h1', 'color'),
    title: css('a.t', 'color'),
    summary: css('.s', 'color'),
    greeting: css('.g', 'color'),
  };
})()"""


@dataclass(frozen=True)
class DigestPage:
    name: str
    path: Path
    papers: tuple[tuple[str, str], ...]
    """(url, title) of every paper of the day."""


def page_day_text(n: int) -> str:
    """A day in the trending page's text format: varied topics, real-length abstracts."""
    blocks = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        title = f"{subject}: study {i} at scale"
        if i % 20 == 7:
            title = f"{LONG_TOKEN} {i}: {subject.lower()}"
        abstract = (
            f"We study {subject.lower()} (variant {i}). "
            + "Our method improves accuracy and robustness over strong baselines. " * 8
            + f"Code: https://github.com/example/{'very-long-repository-name-' * 3}{i}."
        )
        blocks.append(f"{title}\n\n{abstract}\n\n")
    return PAGE_HEADER + "".join(blocks)


def render_page(settings: Settings, source: str, date: dt.date, out: Path) -> DigestPage:
    prepared = prepare_day(settings, date, source=source, subscribers=[])
    variant = prepared.full
    html, _ = variant.rendered.fill(preview_slots(settings, "reader@example.org"))
    out.write_text(html, encoding="utf-8")
    web = plan_page(
        prepared.day,
        settings=settings,
        taxonomy=load_taxonomy(None),
        templates=load_templates(settings.digest.templates),
    )
    out.with_name(f"{out.stem}-web.html").write_text(web.rendered.html, encoding="utf-8")
    papers = tuple((rp.paper.url, rp.paper.title) for rp in variant.digest.papers)
    assert len(papers) == len(prepared.day.papers)
    return DigestPage(out.stem, out, papers)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DigestPage]:
    folder = tmp_path_factory.mktemp("digests")
    settings = Settings()
    page_text = folder / "page.txt"
    page_text.write_text(page_day_text(PAGE_PAPERS), encoding="utf-8")
    sample = render_page(settings, "sample", SAMPLE_DATE, folder / "sample.html")
    page = render_page(settings, str(page_text), PAGE_DATE, folder / "page61.html")
    compact = render_page(
        Settings(digest=DigestSettings(max_html_bytes=COMPACT_HTML_BYTES)),
        str(page_text),
        PAGE_DATE,
        folder / "page61-compact.html",
    )
    assert len(page.papers) == len(compact.papers) == PAGE_PAPERS
    assert "More papers" not in page.path.read_text()
    assert "More papers" in compact.path.read_text()
    return {"sample": sample, "page61": page, "page61-compact": compact}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        running = launch()
    except BrowserError as exc:
        pytest.fail(f"{exc} (CI installs it in .ci/run)", pytrace=False)
    with running:
        yield running


def open_page(browser: Browser, page: DigestPage, width: int, scheme: str = "light") -> Page:
    tab = browser.page
    tab.set_viewport(width, VIEWPORT_HEIGHT)
    tab.emulate_color_scheme("dark" if scheme == "dark" else "light")
    tab.navigate(page.path.resolve().as_uri())
    return tab


def luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of ``rgb(r, g, b)`` / ``rgba(...)``."""
    inside = css_colour[css_colour.index("(") + 1 : css_colour.index(")")]
    r, g, b = (int(float(v)) / 255 for v in inside.split(",")[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def overflow(tab: Page) -> dict[str, Any]:
    return dict(tab.evaluate(OVERFLOW_JS))


def covered_links(tab: Page, papers: tuple[tuple[str, str], ...]) -> list[str]:
    return list(tab.evaluate(CLICKABLE_JS.replace("PAPERS", json.dumps(papers))))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", DAYS)
def test_no_horizontal_overflow(
    browser: Browser, pages: dict[str, DigestPage], name: str, width: int
) -> None:
    tab = open_page(browser, pages[name], width)
    found = overflow(tab)
    assert found["innerWidth"] == width
    assert found["scrollWidth"] <= width, found
    assert found["wide"] == []


@pytest.mark.parametrize("name", DAYS)
def test_a_phone_shows_it_at_full_scale(
    browser: Browser, pages: dict[str, DigestPage], name: str
) -> None:
    """With mobile emulation the viewport meta tag applies: nothing to zoom out for."""
    tab = browser.page
    tab.set_viewport(WIDTHS[0], VIEWPORT_HEIGHT, mobile=True)
    tab.emulate_color_scheme("light")
    tab.navigate(pages[name].path.resolve().as_uri())
    found = tab.evaluate("[innerWidth, document.documentElement.scrollWidth, visualViewport.scale]")
    assert found == [WIDTHS[0], WIDTHS[0], 1]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", DAYS)
def test_every_paper_link_is_visible_and_clickable(
    browser: Browser, pages: dict[str, DigestPage], name: str, width: int
) -> None:
    tab = open_page(browser, pages[name], width)
    assert covered_links(tab, pages[name].papers) == []


@pytest.mark.parametrize("name", DAYS)
def test_contents_links_land_on_their_sections(
    browser: Browser, pages: dict[str, DigestPage], name: str
) -> None:
    """In the email the contents are plain names (mail apps do not follow #anchors); on
    the day's web page (the archive) each name links to its section."""
    email = open_page(browser, pages[name], WIDTHS[0]).evaluate(CONTENTS_JS)
    assert email["links"] == [] and len(email["sections"]) >= 2
    web = pages[name].path.with_name(f"{pages[name].name}-web.html")
    tab = open_page(browser, DigestPage(name, web, pages[name].papers), WIDTHS[0])
    found = tab.evaluate(CONTENTS_JS)
    assert found["problems"] == []
    names = [link.rsplit("(", 1)[0].strip() for link in found["links"]]
    sections = [s.rsplit("(", 1)[0].strip() for s in found["sections"]]
    assert len(names) >= 2
    assert names == sections


@pytest.mark.parametrize("name", DAYS)
def test_dark_mode_only_under_prefers_dark(
    browser: Browser, pages: dict[str, DigestPage], name: str
) -> None:
    light = open_page(browser, pages[name], WIDTHS[1], "light").evaluate(COLOURS_JS)
    dark = open_page(browser, pages[name], WIDTHS[1], "dark").evaluate(COLOURS_JS)
    for key in ("body", "container"):
        assert luminance(light[key]) > 0.9, light
        assert luminance(dark[key]) < 0.05, dark
    for key in ("heading", "title", "summary", "greeting"):
        assert luminance(light[key]) < 0.25, light
        assert luminance(dark[key]) > 0.4, dark


def test_more_papers_list_leaves_room_between_links(
    browser: Browser, pages: dict[str, DigestPage]
) -> None:
    """Title-only links stacked in a list need a gap, or a thumb hits the neighbour."""
    tab = open_page(browser, pages["page61-compact"], WIDTHS[0])
    gaps = tab.evaluate(
        "(() => { const r = Array.from(document.querySelectorAll('ul.l > li'),"
        " li => li.getBoundingClientRect());"
        " return r.slice(1).map((b, i) => b.top - r[i].bottom); })()"
    )
    assert len(gaps) >= 10
    assert min(gaps) >= MIN_LIST_GAP_PX, gaps


def test_the_checks_catch_a_wide_element_and_a_covered_link(
    browser: Browser, tmp_path: Path
) -> None:
    """The checks above can fail: a fixed-width table and a link under an overlay."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><meta name="viewport" content="width=device-width">'
        '<body style="margin:0"><table style="width:500px"><tr><td>wide</td></tr></table>'
        '<p><a href="https://example.org/p/1">Covered paper</a></p>'
        '<div style="position:fixed;inset:0;background:#fff"></div>'
        '<p><a href="https://example.org/p/2" style="display:none">Hidden paper</a></p>',
        encoding="utf-8",
    )
    tab = open_page(browser, DigestPage("bad", bad, ()), WIDTHS[0])
    found = overflow(tab)
    assert found["scrollWidth"] > WIDTHS[0]
    assert any(line.startswith("TABLE") for line in found["wide"])
    problems = covered_links(
        tab,
        (
            ("https://example.org/p/1", "Covered paper"),
            ("https://example.org/p/2", "Hidden paper"),
            ("https://example.org/p/3", "Missing paper"),
        ),
    )
    assert [p.split(" ")[0] for p in problems] == ["covered", "hidden:", "no"]


def test_launch_without_chromium_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        BrowserError, match=r"not found: install it with `apt-get install -y chromium`"
    ):
        launch()


def test_a_browser_that_dies_at_start_up_is_one_error(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrowserError, match="exited at start-up with status 3"):
        launch(str(fake))


def test_a_script_error_is_a_browser_error(browser: Browser) -> None:
    with pytest.raises(BrowserError, match="JavaScript failed: ReferenceError"):
        browser.page.evaluate("no_such_function()")
    assert browser.page.evaluate("1 + 1") == 2
