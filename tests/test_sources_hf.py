"""The Hugging Face Daily Papers client and parser, against fixtures in the API's wire format."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter.config import SourceSettings
from newsletter.errors import SourceFormatError, SourceUnavailable
from newsletter.sources import fetch_day
from newsletter.sources.hf_daily import PAGE_SIZE, parse_hf_json
from newsletter.sources.http import USER_AGENT

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
HF_URL = "https://hf.example.test/api/daily_papers"
SETTINGS = SourceSettings(hf_url=HF_URL, retries=2, timeout=5.0)
DAY = dt.date(2026, 11, 25)

Handler = Callable[[httpx.Request], httpx.Response]


def _fetch(handler: Handler, *, settings: SourceSettings = SETTINGS) -> Any:
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        day = fetch_day("hf", DAY, settings=settings, client=client, sleep=sleeps.append)
    return day


def _entry(paper_id: str, *, upvotes: int = 1, **paper: Any) -> dict[str, Any]:
    body = {
        "id": paper_id,
        "title": f"Paper {paper_id}",
        "summary": f"Abstract of {paper_id}.",
        "authors": [{"name": "A. Author", "hidden": False}],
        "upvotes": upvotes,
    }
    body.update(paper)
    return {"paper": body, "numComments": 0, "title": body["title"]}


def test_fetch_sends_date_limit_page_and_user_agent_and_parses_every_field() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200,
            content=(FIXTURES / "hf_day.json").read_bytes(),
            headers={"content-type": "application/json; charset=utf-8"},
        )

    day = _fetch(handler)
    assert len(requests) == 1
    request = requests[0]
    assert str(request.url).split("?")[0] == HF_URL
    assert dict(request.url.params) == {"date": "2026-11-25", "limit": "100", "p": "0"}
    assert request.headers["User-Agent"] == USER_AGENT
    assert day.date == DAY and day.source == "hf" and len(day.papers) == 3

    full, old, nulls = day.papers
    assert full.id == "2611.00101"
    assert full.title == "Diffusion Policies for Bimanual Folding"
    assert full.abstract == (
        "We study bimanual cloth folding with diffusion policies. "
        "Our method folds shirts in under a minute."
    )
    assert full.authors == ("Ada Quinn", "Bernardo Souza")  # hidden and blank skipped
    assert full.url == "https://huggingface.co/papers/2611.00101"
    assert (full.upvotes, full.comments) == (42, 3)
    assert full.published_at == dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    assert full.submitted_at == dt.datetime(2026, 11, 25, 1, 12, 30, tzinfo=dt.UTC)
    assert full.ai_summary == "Diffusion policies fold cloth with two arms."
    assert full.keywords == ("diffusion policy", "bimanual manipulation", "cloth folding")
    assert full.github_repo == "https://github.com/example/fold"
    assert full.github_stars == 310
    assert full.project_page == "https://example.org/fold"
    assert full.thumbnail is not None and full.thumbnail.endswith("2611.00101.png")
    assert full.source == "hf"

    # a 2024-style entry: no ai_* fields, no submittedOnDailyAt (the entry's publishedAt is it)
    assert old.ai_summary is None and old.keywords == () and old.github_repo is None
    assert old.authors == ("Lihe Example", "Jürgen Müller")
    assert old.submitted_at == dt.datetime(2024, 6, 14, 0, 20, 32, 674000, tzinfo=dt.UTC)
    assert old.abstract.endswith("we aim to reveal crucial findings.")

    # nulls everywhere are simply absent values
    assert nulls.ai_summary is None and nulls.keywords == ()
    assert nulls.github_repo is None and nulls.github_stars is None
    assert nulls.project_page is None and nulls.thumbnail is None and nulls.comments == 0


def test_script_tags_and_template_braces_survive_verbatim_as_data() -> None:
    papers = parse_hf_json((FIXTURES / "hf_day.json").read_bytes(), origin="fixture")
    paper = papers[2]
    assert paper.title == "Escaping <script>alert(1)</script> and {{ template }} Injection"
    assert paper.abstract == (
        "Abstracts may contain <script>alert('x')</script>, {{ user.email }} "
        'and {% if %} & < > " characters.'
    )


def test_wrong_types_drop_the_field_or_the_entry_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="newsletter.sources.hf_daily"):
        papers = parse_hf_json((FIXTURES / "hf_messy.json").read_bytes(), origin="messy.json")
    assert [p.title for p in papers] == ["Entry Title Fallback", "A Bad Id"]
    fallback, bad_id = papers
    assert fallback.id == "2611.00202" and fallback.abstract == ""
    assert fallback.authors == () and fallback.upvotes == 0 and fallback.comments == 0
    assert fallback.published_at is None and fallback.ai_summary is None
    assert fallback.keywords == () and fallback.github_repo is None
    assert fallback.github_stars is None and fallback.project_page is None
    assert fallback.thumbnail is None
    assert bad_id.id is None
    assert bad_id.url == "https://huggingface.co/papers?q=A%20Bad%20Id"
    assert bad_id.authors == ("Dana Roe", "Plain String Author")
    assert bad_id.keywords == ("kept",)
    text = caplog.text
    for expected in (
        "entry 0 is str",
        "paper is str",
        "no title; skipped",
        "upvotes is str",
        "javascript:alert(1)",
        "githubStars is bool",
        "not a paper id",
    ):
        assert expected in text
    assert all(record.message.startswith("messy.json: ") for record in caplog.records)


def test_pages_are_followed_while_full() -> None:
    pages: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["p"])
        pages.append(request.url.params["p"])
        count = PAGE_SIZE if page < 2 else 30
        entries = [_entry(f"2611.{page:01d}{i:04d}") for i in range(count)]
        return httpx.Response(200, json=entries)

    day = _fetch(handler)
    assert pages == ["0", "1", "2"]
    assert len(day.papers) == 230


def test_a_server_ignoring_the_page_parameter_does_not_loop() -> None:
    calls: list[int] = []
    entries = [_entry(f"2611.0{i:04d}") for i in range(PAGE_SIZE)]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=entries)

    day = _fetch(handler)
    assert len(calls) == 2
    assert len(day.papers) == PAGE_SIZE


def test_a_500_paper_day_parses() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["p"])
        if page >= 5:
            return httpx.Response(200, json=[])
        entries = [_entry(f"2611.{page}{i:04d}", upvotes=i) for i in range(PAGE_SIZE)]
        return httpx.Response(200, json=entries)

    day = _fetch(handler)
    assert len(day.papers) == 500
    assert len({p.id for p in day.papers}) == 500


def test_duplicates_are_merged_by_id_keeping_the_higher_counts_and_all_fields() -> None:
    first = _entry("2611.00001", upvotes=5, ai_keywords=["a"], githubRepo="https://github.com/x/y")
    second = _entry("2611.00001", upvotes=9, ai_keywords=["b"], projectPage="https://example.org/p")
    second["numComments"] = 4
    other = _entry("2611.00002")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[first, other, second])

    day = _fetch(handler)
    assert [p.id for p in day.papers] == ["2611.00001", "2611.00002"]
    merged = day.papers[0]
    assert (merged.upvotes, merged.comments) == (9, 4)
    assert merged.github_repo == "https://github.com/x/y"
    assert merged.project_page == "https://example.org/p"
    assert set(merged.keywords) == {"a", "b"}


def test_an_empty_day_is_an_explicit_empty_result() -> None:
    day = _fetch(lambda request: httpx.Response(200, json=[]))
    assert day.papers == () and day.is_empty and day.date == DAY


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
            "text/html",
            "got an HTML page: '<!DOCTYPE html>",
        ),
        (b'[{"paper": {"id": "2611.00001", "title": "Cut', "application/json", "truncated JSON"),
        (b"[{]", "application/json", "invalid JSON"),
        (b'{"error": "Invalid date"}', "application/json", "got an object saying 'Invalid date'"),
        (b'"just a string"', "application/json", "got str"),
    ],
)
def test_bad_bodies_raise_one_clear_line(body: bytes, content_type: str, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    with pytest.raises(SourceFormatError) as info:
        _fetch(handler)
    message = str(info.value)
    assert expected in message
    assert message.startswith(HF_URL + "?date=2026-11-25")
    assert "\n" not in message


def test_server_errors_until_retries_run_out_are_source_unavailable() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    with pytest.raises(SourceUnavailable) as info:
        _fetch(handler)
    assert len(calls) == SETTINGS.retries + 1
    assert "HTTP 503" in str(info.value)


def test_a_timeout_is_source_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(SourceUnavailable, match="ReadTimeout"):
        _fetch(handler)


def test_429_with_retry_after_then_success() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(200, json=[_entry("2611.00001")]),
    ]
    sleeps: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(lambda r: answers.pop(0))) as client:
        day = fetch_day("hf", DAY, settings=SETTINGS, client=client, sleep=sleeps.append)
    assert sleeps == [2.0]
    assert [p.id for p in day.papers] == ["2611.00001"]


def test_json_escapes_and_unicode_decode() -> None:
    body = json.dumps([_entry("2611.00009", title="Caf\u00e9 \u2014 \U0001f916 robots")]).encode()
    (paper,) = parse_hf_json(body, origin="x")
    assert paper.title == "Café — 🤖 robots"
