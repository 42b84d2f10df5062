"""arXiv: Atom (current and 2016 formats), RSS announce types, the RSS-or-API choice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from newsletter.config import SourceSettings
from newsletter.errors import ConfigError, SourceFormatError, SourceUnavailable
from newsletter.models import Day
from newsletter.sources import fetch_day
from newsletter.sources.arxiv import (
    API_PAGE_DELAY,
    API_PAGE_SIZE,
    api_query,
    parse_atom,
    parse_categories,
    parse_rss,
    select,
    split_authors,
    split_id,
)
from newsletter.sources.common import detex
from newsletter.sources.http import USER_AGENT

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
API = "https://export.example.test/api/query"
RSS = "https://rss.example.test/rss"
SETTINGS = SourceSettings(arxiv_api_url=API, arxiv_rss_url=RSS, retries=1)
FEED_DAY = dt.date(2026, 11, 25)


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _serve(
    requests: list[httpx.Request],
    *,
    rss: bytes | None = None,
    api_pages: list[bytes] | None = None,
) -> httpx.Client:
    pages = list(api_pages or [])

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        assert request.headers["User-Agent"] == USER_AGENT
        if str(request.url).startswith(RSS):
            return httpx.Response(
                200,
                content=rss or _read("arxiv_rss.xml"),
                headers={"content-type": "application/rss+xml"},
            )
        assert str(request.url).startswith(API)
        return httpx.Response(
            200, content=pages.pop(0), headers={"content-type": "application/atom+xml"}
        )

    return httpx.Client(transport=httpx.MockTransport(handler))


def _fetch(
    client: httpx.Client,
    date: dt.date,
    *,
    settings: SourceSettings = SETTINGS,
    sleeps: list[float] | None = None,
) -> Day:
    waits: list[float] = [] if sleeps is None else sleeps
    with client:
        return fetch_day(
            "arxiv:cs.RO,cs.CV", date, settings=settings, client=client, sleep=waits.append
        )


def test_atom_current_format_with_kinds_relative_to_the_requested_categories() -> None:
    feed = parse_atom(_read("arxiv_api_new.xml"), origin="api", categories=("cs.RO", "cs.CV"))
    assert feed.total == 3
    assert [(i.paper.id, i.kind) for i in feed.items] == [
        ("2611.10001", "new"),
        ("2611.10002", "cross"),
        ("2610.09999", "replace"),
    ]
    first = feed.items[0].paper
    assert first.title == "Whole-Body Control for Humanoid Loco-Manipulation"
    assert first.abstract.startswith(
        "We present a whole-body controller for humanoid robots that walk while carrying objects."
    )
    assert first.authors == ("Riya Das", "Émile Roux")
    assert first.categories == ("cs.RO", "cs.LG")
    assert first.url == "https://arxiv.org/abs/2611.10001"
    assert first.published_at == dt.datetime(2026, 11, 24, 17, 59, 46, tzinfo=dt.UTC)
    assert first.source == "arxiv"
    assert feed.items[1].paper.categories == ("cs.LG", "cs.CV")  # primary first


def test_atom_2016_format_with_inline_namespaces_and_old_identifiers() -> None:
    feed = parse_atom(_read("arxiv_api_old.xml"), origin="api")
    assert feed.total == 2
    walking, old = (item.paper for item in feed.items)
    assert walking.id == "1201.04869"
    assert walking.title == "A Walking Robot on Soft Ground"
    assert walking.abstract == (
        "We study walking robots on soft ground. The results indicate that compliant feet help."
    )
    assert walking.categories == ("cs.RO", "cs.SY")
    assert old.id == "cs/0412498" and old.url == "https://arxiv.org/abs/cs/0412498"
    assert old.authors == ("Sam Old", "Kim Older")
    assert [item.kind for item in feed.items] == ["new", "replace"]


def test_an_empty_api_answer_is_no_papers() -> None:
    feed = parse_atom(_read("arxiv_api_empty.xml"), origin="api")
    assert feed.items == () and feed.total == 0


def test_an_api_error_entry_is_reported() -> None:
    with pytest.raises(SourceFormatError, match=r"incorrect id format for 1234\.12345"):
        parse_atom(_read("arxiv_api_error.xml"), origin="api")


def test_rss_items_carry_their_announce_type_and_lose_the_description_prefix() -> None:
    feed = parse_rss(_read("arxiv_rss.xml"), origin="rss")
    assert feed.date == FEED_DAY
    assert [(i.paper.id, i.kind) for i in feed.items] == [
        ("2611.20001", "new"),
        ("2611.20002", "cross"),
        ("2509.01234", "replace"),
        ("2402.05555", "replace-cross"),
        ("2611.20001", "new"),
    ]
    paper = feed.items[0].paper
    assert paper.abstract == (
        "We learn insertion with tactile diffusion policies. Inputs may contain "
        "<script>alert(1)</script> and {{ braces }} verbatim."
    )
    assert paper.authors == ("Kai Jensen", "Marisol Peña", "Wei Zhang")
    assert paper.categories == ("cs.RO", "cs.LG")
    assert paper.url == "https://arxiv.org/abs/2611.20001"


@pytest.mark.parametrize(
    ("cross", "replace", "expected"),
    [
        (False, False, {"2611.20001"}),
        (True, False, {"2611.20001", "2611.20002"}),
        (False, True, {"2611.20001", "2509.01234"}),
        (True, True, {"2611.20001", "2611.20002", "2509.01234", "2402.05555"}),
    ],
)
def test_new_only_by_default_cross_lists_and_replacements_by_option(
    cross: bool, replace: bool, expected: set[str]
) -> None:
    settings = SourceSettings(include_cross_lists=cross, include_replacements=replace)
    papers = select(parse_rss(_read("arxiv_rss.xml"), origin="rss").items, settings=settings)
    assert {p.id for p in papers} == expected


def test_the_feed_of_the_requested_day_is_used_and_duplicates_merged() -> None:
    requests: list[httpx.Request] = []
    day = _fetch(_serve(requests), FEED_DAY)
    assert [str(r.url) for r in requests] == [f"{RSS}/cs.RO+cs.CV"]
    assert day.source == "arxiv:cs.RO,cs.CV (rss)"
    assert [p.id for p in day.papers] == ["2611.20001"]


def test_another_day_asks_the_api_for_that_submission_date() -> None:
    requests: list[httpx.Request] = []
    client = _serve(requests, api_pages=[_read("arxiv_api_new.xml")])
    day = _fetch(client, dt.date(2026, 11, 24))
    assert len(requests) == 2
    params = requests[1].url.params
    assert params["search_query"] == (
        "(cat:cs.RO OR cat:cs.CV) AND submittedDate:[202611240000 TO 202611242359]"
    )
    assert params["sortBy"] == "submittedDate"
    assert params["start"] == "0" and params["max_results"] == str(API_PAGE_SIZE)
    assert day.source == "arxiv:cs.RO,cs.CV (api)"
    assert [p.id for p in day.papers] == ["2611.10001"]


def test_api_cross_lists_by_option() -> None:
    client = _serve([], api_pages=[_read("arxiv_api_new.xml")])
    settings = SourceSettings(arxiv_api_url=API, arxiv_rss_url=RSS, include_cross_lists=True)
    day = _fetch(client, dt.date(2026, 11, 24), settings=settings)
    assert [p.id for p in day.papers] == ["2611.10001", "2611.10002"]


def _atom_page(start: int, count: int, total: int) -> bytes:
    entries = "".join(
        f"""<entry><id>http://arxiv.org/abs/2611.{start + i:05d}v1</id>
        <title>Paper {start + i}</title><summary>About {start + i}.</summary>
        <arxiv:primary_category term="cs.RO"/><category term="cs.RO"/>
        <author><name>A B</name></author></entry>"""
        for i in range(count)
    )
    return (
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f"<opensearch:totalResults>{total}</opensearch:totalResults>{entries}</feed>"
    ).encode()


def test_api_pages_are_followed_with_the_polite_pause() -> None:
    requests: list[httpx.Request] = []
    total = API_PAGE_SIZE + 5
    pages = [_atom_page(0, API_PAGE_SIZE, total), _atom_page(API_PAGE_SIZE, 5, total)]
    sleeps: list[float] = []
    day = _fetch(_serve(requests, api_pages=pages), dt.date(2026, 11, 24), sleeps=sleeps)
    assert len(day.papers) == total
    assert [r.url.params.get("start") for r in requests[1:]] == ["0", str(API_PAGE_SIZE)]
    assert sleeps == [API_PAGE_DELAY]


def test_an_empty_feed_for_the_day_is_an_empty_day() -> None:
    rss = _read("arxiv_rss.xml")
    head, _, _ = rss.partition(b"<item>")
    empty = head + b"</channel></rss>"
    day = _fetch(_serve([], rss=empty), FEED_DAY)
    assert day.papers == () and day.is_empty


def test_entity_declarations_are_refused_before_parsing() -> None:
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n<rss><channel><title>&lol2;</title>'
        b"</channel></rss>"
    )
    with pytest.raises(SourceFormatError, match="DOCTYPE"):
        parse_rss(bomb, origin="rss")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<rss><channel><item><title>cut", "malformed XML"),
        (b"<!DOCTYPE html><html><body>Service Unavailable</body></html>", "an HTML page"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'></feed>", "expected an RSS"),
    ],
)
def test_bad_rss_bodies_raise_one_line(body: bytes, expected: str) -> None:
    with pytest.raises(SourceFormatError, match=expected) as info:
        parse_rss(body, origin="https://rss.example.test/rss/cs.RO")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("https://rss.example.test/rss/cs.RO: ")


def test_an_rss_atom_mixup_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match="expected an Atom <feed>, got <rss>"):
        parse_atom(_read("arxiv_rss.xml"), origin="api")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cs.RO,cs.CV", ("cs.RO", "cs.CV")),
        ("cs.RO+cs.CV", ("cs.RO", "cs.CV")),
        (" cs.RO , cs.RO ", ("cs.RO",)),
        ("quant-ph", ("quant-ph",)),
    ],
)
def test_parse_categories(text: str, expected: tuple[str, ...]) -> None:
    assert parse_categories(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "cs.RO;DROP", "../x"])
def test_bad_categories_are_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="arxiv"):
        parse_categories(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://arxiv.org/abs/2504.17830v2", ("2504.17830", 2)),
        ("oai:arXiv.org:2504.17830v1", ("2504.17830", 1)),
        ("https://arxiv.org/abs/2504.17830", ("2504.17830", None)),
        ("http://arxiv.org/abs/cond-mat/0412498v1", ("cond-mat/0412498", 1)),
        ("http://arxiv.org/abs/math.CO/0101001v1", ("math.CO/0101001", 1)),
        ("nothing here", (None, None)),
    ],
)
def test_split_id(text: str, expected: tuple[str | None, int | None]) -> None:
    assert split_id(text) == expected


def test_api_query_spans_the_whole_utc_day() -> None:
    assert api_query(["cs.RO"], dt.date(2026, 1, 2)) == (
        "(cat:cs.RO) AND submittedDate:[202601020000 TO 202601022359]"
    )


def test_an_unexpected_empty_api_page_is_asked_again() -> None:
    requests: list[httpx.Request] = []
    total = API_PAGE_SIZE + 5
    pages = [
        _atom_page(0, API_PAGE_SIZE, total),
        _atom_page(API_PAGE_SIZE, 0, total),
        _atom_page(API_PAGE_SIZE, 5, total),
    ]
    sleeps: list[float] = []
    day = _fetch(_serve(requests, api_pages=pages), dt.date(2026, 11, 24), sleeps=sleeps)
    assert len(day.papers) == total
    assert [r.url.params.get("start") for r in requests[1:]] == ["0", "200", "200"]
    assert sleeps == [API_PAGE_DELAY, API_PAGE_DELAY]


def test_an_api_that_keeps_answering_empty_pages_is_unavailable() -> None:
    pages = [_atom_page(0, 0, 7) for _ in range(SETTINGS.retries + 1)]
    with pytest.raises(SourceUnavailable, match="empty page at start=0 of 7"):
        _fetch(_serve([], api_pages=pages), dt.date(2026, 11, 24))


def test_an_empty_api_answer_for_another_day_is_an_empty_day() -> None:
    day = _fetch(_serve([], api_pages=[_read("arxiv_api_empty.xml")]), dt.date(2026, 11, 22))
    assert day.papers == () and day.source == "arxiv:cs.RO,cs.CV (api)"


RSS_TEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom"
     xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>quant-ph updates on arXiv.org</title>
<pubDate>Wed, 25 Nov 2026 00:00:00 -0500</pubDate>
<item>
 <title>Holevo Cram\\'er-Rao bounds for $N$ qubits</title>
 <link>https://arxiv.org/abs/2611.30001</link>
 <description>arXiv:2611.30001v1 Announce Type: new
Abstract: We compute the Cram\\'er-Rao bound at 25% of the cost, $\\mathcal{O}(n^2)$ \\cite{x}.
</description>
 <guid isPermaLink="false">oai:arXiv.org:2611.30001v1</guid>
 <category>quant-ph</category>
 <arxiv:announce_type>new</arxiv:announce_type>
 <dc:creator>M. R. Nirmal (Department of Chemistry, IIT Madras, Chennai, India, Centre for
 Quantum Information, Communication, and Computing, IIT Madras), Jakob G\\"unther,
 Michal Hajdu\\v{s}ek (Keio University, Fujisawa, Japan), S{\\o}ren Stobbe
 and Stanis{\\l}aw Nowak</dc:creator>
</item>
</channel></rss>
"""


def test_rss_names_and_text_come_as_unicode_without_affiliations() -> None:
    (item,) = parse_rss(RSS_TEX, origin="rss").items
    assert item.paper.authors == (
        "M. R. Nirmal",
        "Jakob Günther",
        "Michal Hajdušek",
        "Søren Stobbe",
        "Stanisław Nowak",
    )
    assert item.paper.title == "Holevo Cramér-Rao bounds for N qubits"
    assert item.paper.abstract.startswith("We compute the Cramér-Rao bound at 25% of the cost, ")
    assert "\\" not in item.paper.abstract and "$" not in item.paper.abstract
    assert "𝒪(n^2)" in item.paper.abstract


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Jakob G\\"unther', "Jakob Günther"),
        ("R\\'{e}nyi entropy", "Rényi entropy"),
        ("we present \\minerupro, which", "we present minerupro, which"),
        ("costs $5 and $10, 50% R&D", "costs $5 and $10, 50% R&D"),
        ("plain text <b>", "plain text <b>"),
        ("unbalanced {\\em braces", "unbalanced braces"),
        ("$\\alpha$-divergence", "α-divergence"),
    ],
)
def test_detex(text: str, expected: str) -> None:
    assert detex(text) == expected


def test_split_authors_handles_nested_parentheses_and_a_final_and() -> None:
    assert split_authors("A. One (Lab (West), Univ), B. Two, and C. Three") == (
        "A. One",
        "B. Two",
        "C. Three",
    )
    assert split_authors("") == ()
