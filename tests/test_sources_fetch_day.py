"""fetch_day: the spec dispatch, the bundled sample day, URLs and paths."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from newsletter.config import SourceSettings
from newsletter.errors import ConfigError, SourceFormatError
from newsletter.sources import SPECS_HELP, fetch_day

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
SETTINGS = SourceSettings()
DAY = dt.date(2026, 11, 25)


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request to {request.url}")


def test_the_sample_day_is_bundled_and_dated_as_asked() -> None:
    with httpx.Client(transport=httpx.MockTransport(_no_network)) as client:
        day = fetch_day("sample", dt.date(2031, 2, 3), settings=SETTINGS, client=client)
    assert day.date == dt.date(2031, 2, 3) and day.source == "sample"
    assert 25 <= len(day.papers) <= 40
    assert len({p.id for p in day.papers}) == len(day.papers)
    assert all(p.title and p.abstract and p.authors and p.url for p in day.papers)
    assert all("\n" not in p.abstract for p in day.papers)
    with_summary = sum(1 for p in day.papers if p.ai_summary)
    assert 0 < with_summary < len(day.papers)
    assert 0 < sum(1 for p in day.papers if p.github_repo) < len(day.papers)
    assert 0 < sum(1 for p in day.papers if p.project_page) < len(day.papers)
    assert any(not name.isascii() for p in day.papers for name in p.authors)
    assert all(p.upvotes > 0 for p in day.papers)


def test_the_sample_file_is_in_the_api_wire_format() -> None:
    raw = json.loads(files("newsletter.data").joinpath("sample_day.json").read_text("utf-8"))
    assert isinstance(raw, list)
    keys = Counter(k for entry in raw for k in entry["paper"])
    assert keys["id"] == keys["title"] == keys["summary"] == keys["upvotes"] == len(raw)
    assert 0 < keys["ai_summary"] < len(raw)
    assert all(isinstance(entry["numComments"], int) for entry in raw)
    assert any(a.get("hidden") for entry in raw for a in entry["paper"]["authors"])


def test_the_sample_day_spans_the_topics_a_reader_expects() -> None:
    day = fetch_day("sample", DAY, settings=SETTINGS)
    text = " ".join(f"{p.title} {p.abstract}".lower() for p in day.papers)
    for word in (
        "robot",
        "multimodal",
        "diffusion",
        "video",
        "reinforcement learning",
        "agent",
        "quantization",
        "speech",
        "3d",
        "safety",
    ):
        assert word in text, word


def test_a_path_is_read_and_duplicates_merged(tmp_path: Path) -> None:
    entries = json.loads((FIXTURES / "hf_day.json").read_text("utf-8"))
    path = tmp_path / "day.json"
    path.write_text(json.dumps(entries + entries[:1]), encoding="utf-8")
    day = fetch_day(str(path), DAY, settings=SETTINGS)
    assert day.date == DAY and day.source == str(path)
    assert [p.id for p in day.papers] == ["2611.00101", "2406.09999", "2611.00103"]


def test_an_unknown_spec_says_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as info:
        fetch_day("huggingface", DAY, settings=SETTINGS)
    assert "unknown source 'huggingface'" in str(info.value)
    assert SPECS_HELP in str(info.value)


@pytest.mark.parametrize(
    ("fixture", "content_type", "count"),
    [
        ("hf_day.json", "application/json", 3),
        ("page.txt", "text/plain; charset=utf-8", 3),
        ("arxiv_rss.xml", "application/rss+xml", 1),
        ("arxiv_api_old.xml", "application/atom+xml", 2),
    ],
)
def test_a_url_is_fetched_and_parsed_by_content(
    fixture: str, content_type: str, count: int
) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200, content=(FIXTURES / fixture).read_bytes(), headers={"content-type": content_type}
        )

    url = "https://files.example.test/day"
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        day = fetch_day(url, DAY, settings=SETTINGS, client=client)
    assert str(requests[0].url) == url
    assert len(day.papers) == count and day.source == url


def test_a_url_answering_html_is_a_format_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<!doctype html><title>Login</title>", headers={"content-type": "text/html"}
        )

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(SourceFormatError, match="HTML page"),
    ):
        fetch_day("https://files.example.test/day", DAY, settings=SETTINGS, client=client)


def test_an_injected_client_is_left_open() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])))
    fetch_day("hf", DAY, settings=SETTINGS, client=client, sleep=lambda s: None)
    assert not client.is_closed
    client.close()
