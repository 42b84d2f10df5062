"""The bad-input corpus: every hostile or broken input with its exact expected outcome.

Each case goes through the real ``newsletter`` CLI (click's CliRunner) or the real
send path, and ends in one of two ways: a one-line ``error: ...`` naming the file,
line or field (exit code 2, no traceback, nothing sent), or a correct digest.
The input files live in ``tests/corpus/inputs/``; generated inputs (a 500-paper day,
servers, providers) are made here.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.header import decode_header, make_header
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from click.testing import Result

from newsletter import scheduler
from newsletter.config import load_settings
from newsletter.delivery.base import BackendOptions
from newsletter.delivery.base import RetryPolicy as DeliveryRetry
from newsletter.delivery.http import HttpBackend
from newsletter.delivery.mailgun import MailgunBackend
from newsletter.delivery.postmark import PostmarkBackend
from newsletter.delivery.resend import ResendBackend
from newsletter.delivery.sendgrid import SendGridBackend
from newsletter.errors import ConfigError
from newsletter.ledger import Ledger
from newsletter.models import SendStatus, Subscriber
from newsletter.prefs import PrefsStore
from newsletter.send import RunReport, send_day
from newsletter.slots import MAX_NAME_CHARS
from newsletter.tokens import make_token
from newsletter.web import WebApp
from tests.corpus.helpers import (
    DATE,
    INPUTS,
    PYTHON_WORDS,
    Markup,
    assert_ok,
    assert_one_line_error,
    invoke,
    parse_eml,
    preview,
    summary,
    titles,
)
from tests.doubles import free_port


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case runs in an empty folder with no NEWSLETTER_* variables but the link
    secret (as in production: without it a send first warns about the offline key)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "corpus-secret-0123456789abcdef0123")


# --- broken source files

SOURCE_ERRORS = [
    pytest.param(
        "hf_html_error.json",
        "hf_html_error.json: got an HTML page, not papers (a JSON list, an arXiv feed or "
        'page text): \'<!DOCTYPE html> <html class=""> <head><meta charset="utf-8">',
        id="html-error-page-instead-of-json",
    ),
    pytest.param(
        "hf_truncated.json",
        f"hf_truncated.json: truncated JSON ({PYTHON_WORDS})",
        id="truncated-json",
    ),
    pytest.param(
        "hf_invalid.json",
        f"hf_invalid.json: invalid JSON ({PYTHON_WORDS}): "
        '\'[{"paper": {"id": "2611.00004", "title": "T", "summary": "S"}},]\'',
        id="invalid-json-trailing-comma",
    ),
    pytest.param(
        "hf_error_object.json",
        "hf_error_object.json: expected a JSON list of daily papers, got an object saying "
        "'Invalid date: 2026-13-01' (keys: error)",
        id="json-error-object-instead-of-list",
    ),
    pytest.param(
        "hf_deep.json",
        "hf_deep.json: JSON nested too deeply: '[[[[",
        id="json-nested-5000-deep",
    ),
    pytest.param(
        "hf_latin1.json",
        "hf_latin1.json: not UTF-8 text: byte 0xe9 at byte offset 45 (invalid continuation "
        "byte); save the file as UTF-8",
        id="hf-json-latin1",
    ),
    pytest.param(
        "page_cp1252.txt",
        "page_cp1252.txt: not UTF-8 text: byte 0xe9 at byte offset 118 (invalid continuation "
        "byte); save the file as UTF-8",
        id="page-text-cp1252",
    ),
    pytest.param(
        "arxiv_truncated.xml",
        "arxiv_truncated.xml: malformed XML (no element found: line 9, column 0)",
        id="arxiv-atom-truncated",
    ),
    pytest.param(
        "arxiv_bomb.xml",
        "arxiv_bomb.xml: XML that is neither an arXiv Atom feed nor an RSS feed",
        id="arxiv-billion-laughs-refused-unexpanded",
    ),
    pytest.param(
        "arxiv_api_error.xml",
        "arxiv_api_error.xml: the arXiv API answered with an error: incorrect id format for "
        "1234.12345",
        id="arxiv-api-error-feed",
    ),
]


@pytest.mark.parametrize(("name", "fragment"), SOURCE_ERRORS)
def test_broken_source_file_is_one_line_error(name: str, fragment: str, tmp_path: Path) -> None:
    result = preview(INPUTS / name, tmp_path / "out")
    assert_one_line_error(result, str(INPUTS / fragment))
    assert not (tmp_path / "out").exists()


def test_missing_source_file_names_it(tmp_path: Path) -> None:
    result = preview(tmp_path / "nope.json", tmp_path / "out")
    assert_one_line_error(result, f"{tmp_path / 'nope.json'}: no such file")


def test_source_spec_that_is_nothing_known() -> None:
    result = invoke(["fetch", "--source", "huggingface", "--date", DATE])
    assert_one_line_error(result, "unknown source 'huggingface': use sample, hf, arxiv:")


# --- odd but valid sources


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "hf_2024.json",
            ["Depth Anything at Scale", "One-Step Diffusion Policies for Manipulation"],
            id="hf-2024-shape-no-ai-fields",
        ),
        pytest.param(
            "hf_bom.json",
            ["Depth Anything at Scale", "One-Step Diffusion Policies for Manipulation"],
            id="hf-json-utf8-bom",
        ),
        pytest.param(
            "hf_utf16.json",
            ["Depth Anything at Scale", "One-Step Diffusion Policies for Manipulation"],
            id="hf-json-utf16-bom",
        ),
        pytest.param(
            "page_bom.txt",
            [
                "Grasping Café Objects with Naïve Policies",
                "Tokenizers for Ελληνικά and 日本語",
                "Sparse Mixture Routing at Scale",
            ],
            id="page-text-utf8-bom",
        ),
        pytest.param(
            "page_crlf.txt",
            [
                "Grasping Café Objects with Naïve Policies",
                "Tokenizers for Ελληνικά and 日本語",
                "Sparse Mixture Routing at Scale",
            ],
            id="page-text-crlf-line-ends",
        ),
    ],
)
def test_valid_but_odd_source_gives_the_full_digest(
    name: str, expected: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / name, out))
    assert sorted(titles(out)) == sorted(expected)
    html = (out / "digest.html").read_text(encoding="utf-8")
    assert html.isascii()
    markup = Markup(html)
    for title in expected:
        assert title in markup.all_text


def test_hf_2026_shape_keeps_ai_summary_keywords_and_links(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / "hf_2026.json", out))
    data = summary(out)
    papers = {p["id"]: p for topic in data["topics"] for p in topic["papers"]}
    assert set(papers) == {"2608.10915", "2608.10916"}
    assert papers["2608.10915"]["url"] == "https://huggingface.co/papers/2608.10915"
    markup = Markup((out / "digest.html").read_text(encoding="utf-8"))
    assert "https://github.com/example/reread" in markup.hrefs
    assert "https://example.org/reread" in markup.hrefs
    # the ai_summary is the TL;DR; the null ai_* fields of the other paper are just absent
    assert "re-reads the prompt improves long-context recall" in markup.all_text


def test_hf_schema_drift_keeps_every_paper_with_a_title(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / "hf_drift.json", out))
    # entries without a usable title are dropped, each with a logged line naming it
    logged = caplog.messages
    origin = str(INPUTS / "hf_drift.json")
    assert f"{origin}: entry 0: no title; skipped" in logged
    assert f"{origin}: entry 2 (2608.20001): no title; skipped" in logged
    assert f"{origin}: entry 5: paper is list, not an object; skipped" in logged
    assert f"{origin}: entry 6 is str, not an object; skipped" in logged
    assert f"{origin}: entry 7 is NoneType, not an object; skipped" in logged
    assert f"{origin}: entry 3 (2608.20002): upvotes is str, not a count; ignored" in logged
    data = summary(out)
    papers = {p["title"]: p for topic in data["topics"] for p in topic["papers"]}
    assert set(papers) == {
        "Entry-Level Title Only Survives",
        "Wrong Types Everywhere",
        "Path Traversal Id",
    }
    assert papers["Wrong Types Everywhere"]["id"] == "2608.20002"
    assert papers["Path Traversal Id"]["id"] is None
    assert papers["Path Traversal Id"]["url"] == (
        "https://huggingface.co/papers?q=Path%20Traversal%20Id"
    )
    markup = Markup((out / "digest.html").read_text(encoding="utf-8"))
    assert "Real Author" in markup.all_text
    assert "Hidden" not in markup.all_text
    assert not [h for h in markup.hrefs if "passwd" in h or h.startswith("42")]


# --- hostile content


def _assert_no_active_content(html: str) -> Markup:
    markup = Markup(html)
    assert "script" not in markup.tags
    assert not [a for a in markup.attrs if a[1].lower().startswith("on")]
    for href in markup.hrefs:
        assert href.startswith(("https://", "http://", "#", "mailto:")), href
    return markup


def test_script_javascript_links_and_jinja_in_hf_json_stay_inert(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / "hf_xss.json", out))
    html = (out / "digest.html").read_text(encoding="utf-8")
    markup = _assert_no_active_content(html)
    text = " ".join(markup.all_text.split())  # as a browser shows it: a line break is a space
    # shown as text, exactly as written: escaped, never executed, never a link
    assert "<script>alert('title')</script> Robust Policies" in text
    assert "{{ 7*7 }} Jinja in a {% raw %}title{% endraw %}" in text
    assert '{{ self.__init__.__globals__ }} <a href="javascript:alert(2)">click</a>' in text
    assert "<b>Mallory</b> {{ config }}" in text
    assert "49" not in text
    assert not [h for h in markup.hrefs if "alert" in h and "%22" not in h]
    # the quote in the code link is percent-encoded: it cannot leave the attribute
    assert "https://github.com/ok/repo%22onmouseover=%22alert(5)" in markup.hrefs
    assert "&lt;script&gt;" in html
    # the plain-text part shows the same characters; nothing there is a link either
    plain = (out / "digest.txt").read_text(encoding="utf-8")
    assert "* {{ 7*7 }} Jinja in a {% raw %}title{% endraw %}" in plain
    assert "javascript:" not in plain.replace('href="javascript:alert(2)"', "")
    # the subject carries the top title as text, on one line
    message = parse_eml((out / "digest.eml").read_bytes())
    assert message["Subject"] == "Daily Papers 25 Nov: <script>alert('title')</script> Robust… +1"


def test_unicode_tricks_in_page_text_titles(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / "page_hostile.txt", out))
    expected = [
        "\u202eevil.exe\u202c Reversed Title With Zero\u200bWidth\u200d Joiners",
        "Аttention Is All Yоu Need (Cyrillic homoglyphs)",
        "<script>alert(1)</script>{{ 7*7 }}{% if true %}jinja{% endif %}",
    ]
    assert sorted(titles(out)) == sorted(expected)
    html = (out / "digest.html").read_text(encoding="utf-8")
    assert html.isascii()
    assert "&#8238;evil.exe&#8236;" in html  # the override survives only as a character
    markup = _assert_no_active_content(html)
    for title in expected:
        assert title in markup.all_text
    assert "42" not in markup.all_text and "49" not in markup.all_text
    message = parse_eml((out / "digest.eml").read_bytes())
    subject = str(message["Subject"])
    assert subject.startswith(f"Daily Papers 25 Nov: {expected[0][:30]}") and len(subject) <= 78
    assert subject.endswith("\u2026 +2")


# --- slow and hanging sources

SOURCE_TIMEOUT = 0.4
"""settings.source.timeout for the slow-source cases (seconds)."""


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (kernel backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@contextmanager
def _accepting_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A server on 127.0.0.1 that passes each connection, one at a time, to
    ``handle(conn, done)`` (``done`` is set when the ``with`` block ends); yields the port."""
    done = threading.Event()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                handle(conn, done)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(timeout=2)
        server.close()


@pytest.fixture
def dripping_port() -> Iterator[int]:
    """A server that sends headers, then one body byte every 0.1 s: each read is quick,
    the whole answer never comes (a per-read timeout alone never fires)."""

    def drip(conn: socket.socket, done: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
        )
        deadline = time.monotonic() + 5.0
        while not done.is_set() and time.monotonic() < deadline:
            try:
                conn.sendall(b" ")
            except OSError:
                break
            time.sleep(0.1)

    with _accepting_server(drip) as port:
        yield port


def _slow_source_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SOURCE__TIMEOUT", str(SOURCE_TIMEOUT))
    monkeypatch.setenv("NEWSLETTER_SOURCE__RETRIES", "0")


def test_hanging_source_times_out_in_one_line(
    hanging_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_source_env(monkeypatch)
    url = f"http://127.0.0.1:{hanging_port}/day.json"
    started = time.monotonic()
    result = invoke(["fetch", "--source", url, "--date", DATE])
    elapsed = time.monotonic() - started
    assert_one_line_error(result, f"error: {url}: ReadTimeout: timed out (gave up after 1 attempt")
    assert SOURCE_TIMEOUT * 0.9 <= elapsed < SOURCE_TIMEOUT + 1.0


def test_dripping_source_is_bounded_by_the_timeout(
    dripping_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_source_env(monkeypatch)
    url = f"http://127.0.0.1:{dripping_port}/day.json"
    started = time.monotonic()
    result = invoke(["fetch", "--source", url, "--date", DATE])
    elapsed = time.monotonic() - started
    assert_one_line_error(result, f"error: {url}: ")
    assert "timed out" in result.output.splitlines()[0]
    assert elapsed < SOURCE_TIMEOUT + 1.0


def test_refused_connection_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_source_env(monkeypatch)
    port = free_port()  # a port nobody listens on
    url = f"http://127.0.0.1:{port}/day.json"
    result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(result, f"error: {url}: ConnectError: ")
    assert result.output.rstrip().endswith("(gave up after 1 attempts)")


# --- the HF API answering garbage

HF_URL = "https://huggingface.co/api/daily_papers"

Handler = Callable[[httpx.Request], httpx.Response]


def _serve_hf(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> list[httpx.Request]:
    """Route ``--source hf`` through ``handler`` (httpx.MockTransport); returns the requests."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    monkeypatch.setattr(
        "newsletter.sources.make_client",
        lambda settings: httpx.Client(transport=httpx.MockTransport(record)),
    )
    return seen


HF_GARBAGE = [
    pytest.param(
        httpx.Response(200, text="Service temporarily unavailable, try again later"),
        f"invalid JSON ({PYTHON_WORDS}): 'Service temporarily unavailable, try again later'",
        1,
        id="non-json-200",
    ),
    pytest.param(
        httpx.Response(200, json={"papers": [], "next": None}),
        "expected a JSON list of daily papers, got an object (keys: next, papers)",
        1,
        id="200-with-unexpected-json-object",
    ),
    pytest.param(
        httpx.Response(200, json="2026-11-25"),
        "expected a JSON list of daily papers, got str: '\"2026-11-25\"'",
        1,
        id="200-with-a-json-string",
    ),
    pytest.param(
        httpx.Response(
            200,
            headers={"Content-Type": "text/html; charset=utf-8"},
            text="<html><body><h1>We are down for maintenance</h1></body></html>",
        ),
        "expected a JSON list of daily papers, got an HTML page: "
        "'<html><body><h1>We are down for maintenance</h1></body></html>'",
        1,
        id="200-html-maintenance-page",
    ),
    pytest.param(
        httpx.Response(
            502,
            headers={"Content-Type": "text/html", "Retry-After": "0"},
            text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        ),
        "HTTP 502 Bad Gateway (gave up after 3 attempts)",
        3,
        id="html-502-retried-then-one-line",
    ),
    pytest.param(
        httpx.Response(429, headers={"Retry-After": "3600"}, text="slow down"),
        "HTTP 429, asked to retry after 3600 s (more than 300 s)",
        1,
        id="429-retry-after-an-hour",
    ),
    pytest.param(
        httpx.Response(404, text="Not Found"),
        "HTTP 404 Not Found",
        1,
        id="404",
    ),
]


@pytest.mark.parametrize(("response", "fragment", "calls"), HF_GARBAGE)
def test_hf_api_garbage_is_one_line_error(
    response: httpx.Response, fragment: str, calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SOURCE__RETRIES", "2")
    seen = _serve_hf(monkeypatch, lambda request: response)
    result = invoke(["fetch", "--source", "hf", "--date", DATE])
    line = assert_one_line_error(result, f"error: {HF_URL}?date={DATE}&limit=100&p=0: {fragment}")
    assert len(line) < 300
    assert len(seen) == calls


def test_hf_api_500_paper_day_over_five_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    papers = _hf_entries(500)

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["p"])
        return httpx.Response(200, json=papers[page * 100 : (page + 1) * 100])

    seen = _serve_hf(monkeypatch, handler)
    result = invoke(["fetch", "--source", "hf", "--date", DATE, "--json"])
    assert_ok(result)
    day = json.loads(result.output)
    assert [p["id"] for p in day["papers"]] == [f"2611.{i:05d}" for i in range(500)]
    assert [r.url.params["p"] for r in seen] == ["0", "1", "2", "3", "4", "5"]


# --- empty and huge days

TOPIC_WORDS = (
    "robot manipulation with diffusion policies",
    "multimodal large language models for video",
    "reinforcement learning from human feedback",
    "3D gaussian splatting reconstruction",
    "speech recognition and audio tokenizers",
    "protein structure prediction",
    "retrieval-augmented generation for code",
    "autonomous driving trajectory prediction",
)


def _hf_entries(count: int) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for i in range(count):
        words = TOPIC_WORDS[i % len(TOPIC_WORDS)]
        entries.append(
            {
                "paper": {
                    "id": f"2611.{i:05d}",
                    "title": f"Paper {i}: {words}",
                    "summary": f"We study {words}. " + "Our method improves results. " * 12,
                    "authors": [{"name": f"Author {i} {j}", "hidden": False} for j in range(5)],
                    "upvotes": (i * 37) % 101,
                    "publishedAt": "2026-11-24T17:00:00.000Z",
                    "submittedOnDailyAt": "2026-11-25T02:00:00.000Z",
                },
                "numComments": i % 7,
                "publishedAt": "2026-11-25T02:00:00.000Z",
                "title": f"Paper {i}: {words}",
            }
        )
    return entries


def test_500_paper_day_lists_every_paper_within_the_size_budget(tmp_path: Path) -> None:
    day = tmp_path / "big.json"
    day.write_text(json.dumps(_hf_entries(500)), encoding="utf-8")
    out = tmp_path / "out"
    result = preview(day, out)
    assert_ok(result)
    data = summary(out)
    ids = [p["id"] for topic in data["topics"] for p in topic["papers"]]
    assert sorted(ids) == [f"2611.{i:05d}" for i in range(500)]  # each exactly once
    assert data["total_papers"] == 500
    message = parse_eml((out / "digest.eml").read_bytes())
    html_part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    encoded = html_part.get_payload(decode=True)
    assert isinstance(encoded, bytes)
    assert len(encoded.replace(b"\n", b"\r\n")) <= 102_000
    markup = Markup(encoded.decode("ascii"))
    for i in range(500):
        assert f"https://huggingface.co/papers/2611.{i:05d}" in markup.hrefs
    assert max(len(line) for line in encoded.splitlines()) <= 998


@pytest.mark.parametrize("name", ["hf_empty.json", "page_chrome_only.txt"])
def test_empty_day_previews_as_empty(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preview(INPUTS / name, out)
    assert_ok(result)
    assert f"note: {INPUTS / name} has no papers for {DATE}" in result.output
    assert summary(out)["topics"] == []


# --- broken config files

CONFIG_ERRORS = [
    pytest.param(
        "config_unterminated.yaml",
        "config_unterminated.yaml:4: invalid YAML: ",
        id="config-unterminated-quote",
    ),
    pytest.param(
        "config_tab.yaml",
        "config_tab.yaml:2: invalid YAML: ",
        id="config-tab-indent",
    ),
    pytest.param(
        "config_latin1.yaml",
        "config_latin1.yaml: not UTF-8 text (invalid continuation byte)",
        id="config-latin1",
    ),
    pytest.param(
        "config_unknown_key.yaml",
        "config_unknown_key.yaml:3: delivery.prot: unknown setting (known: api_key, backend,",
        id="config-unknown-key",
    ),
    pytest.param(
        "config_wrong_type.yaml",
        "config_wrong_type.yaml:2: delivery.port: 'twenty-five' is not a valid int",
        id="config-wrong-type",
    ),
    pytest.param(
        "config_secret.yaml",
        "config_secret.yaml:3: delivery.api_key: secrets come from the environment; "
        "set NEWSLETTER_DELIVERY__API_KEY",
        id="config-secret-in-file",
    ),
    pytest.param(
        "config_list.yaml",
        "config_list.yaml: the top level must be a mapping of settings",
        id="config-top-level-list",
    ),
    pytest.param(
        "config_negative_timeout.yaml",
        "config_negative_timeout.yaml:2: source.timeout: -1 is not valid "
        "(input should be greater than 0)",
        id="config-negative-timeout",
    ),
    pytest.param(
        "config_nan_timeout.yaml",
        "config_nan_timeout.yaml:2: source.timeout: nan is not valid "
        "(input should be a finite number)",
        id="config-nan-timeout",
    ),
    pytest.param(
        "config_alias_bomb.yaml",
        "config_alias_bomb.yaml:2: aliases (*name) are not allowed in this file",
        id="config-alias-bomb",
    ),
    pytest.param(
        "config_duplicate_key.yaml",
        "config_duplicate_key.yaml:5: 'port': duplicate key (first on line 3)",
        id="config-duplicate-key",
    ),
]


@pytest.mark.parametrize(("name", "fragment"), CONFIG_ERRORS)
def test_broken_config_is_one_line_error(name: str, fragment: str, tmp_path: Path) -> None:
    path = INPUTS / name
    result = invoke(["fetch", "--config", str(path), "--source", "http://127.0.0.1:9/x.json"])
    assert_one_line_error(result, f"error: {INPUTS / fragment}")
    assert "SG.not-here" not in result.output


def test_config_with_a_bom_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preview("sample", out, "--config", str(INPUTS / "config_bom.yaml"))
    assert_ok(result)
    message = parse_eml((out / "digest.eml").read_bytes())
    assert str(message["Subject"]).startswith("Café Digest 25 Nov: ")


def test_header_injection_through_config_adds_no_header(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preview("sample", out, "--config", str(INPUTS / "config_header_injection.yaml"))
    assert_ok(result)
    raw = (out / "digest.eml").read_bytes()
    message = parse_eml(raw)
    assert "Bcc" not in message
    assert b"\nBcc:" not in raw and b"\rBcc:" not in raw
    assert message["From"] == "Daily <digest@example.org>"
    assert message["List-Id"] == "Papers Bcc: victim@example.net <papers.example.org>"
    assert str(message["Subject"]).startswith(
        "Daily Bcc: victim@example.net {{ 7*7 }} {% if 1 %}x{% endif %} 25 Nov"
    )
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [h.split(b":", 1)[0] for h in headers if h and not h[:1].isspace()]
    assert len(names) == len(set(names))
    html = (out / "digest.html").read_text(encoding="utf-8")
    assert "Daily Bcc: victim@example.net {{ 7*7 }} {% if 1 %}x{% endif %}" in Markup(html).all_text


# --- a mail provider answering garbage

SEND_DATE = dt.date(2026, 11, 25)
SEND_NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

PROVIDERS: dict[str, tuple[type[HttpBackend], dict[str, str]]] = {
    "postmark": (PostmarkBackend, {"unsubscribe": "postmark"}),  # no stream check here
    "resend": (ResendBackend, {}),
    "mailgun": (MailgunBackend, {"domain": "mg.example.org"}),
    "sendgrid": (SendGridBackend, {}),
}


def _provider(name: str, handler: Handler) -> HttpBackend:
    cls, extra = PROVIDERS[name]
    options = BackendOptions(
        retry=DeliveryRetry(max_attempts=2, deadline=60.0), sleep=lambda seconds: None
    )
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return cls(api_key="key-not-shown", client=client, options=options, **extra)


def _send(
    tmp_path: Path, backend: HttpBackend, people: int = 3, *, retry_failed: bool = False
) -> RunReport:
    settings = load_settings(
        None,
        env={
            "NEWSLETTER_STATE": f"sqlite:///{tmp_path / 'state.db'}",
            "NEWSLETTER_SECRET_KEY": "k" * 32,
        },
    )
    subscribers = [Subscriber(email=f"u{i}@example.org", name=f"U {i}") for i in range(people)]
    return send_day(
        settings,
        SEND_DATE,
        source=str(INPUTS / "hf_2026.json"),
        backend=backend,
        subscribers=subscribers,
        now=lambda: SEND_NOW,
        retry_failed=retry_failed,
    )


def _ledger(tmp_path: Path) -> dict[str, str]:
    with Ledger(f"sqlite:///{tmp_path / 'state.db'}") as ledger:
        return {email: row.status for email, row in ledger.deliveries(SEND_DATE).items()}


PROVIDER_GARBAGE = [
    pytest.param(
        "resend",
        httpx.Response(200, text="<html>ok</html>"),
        "resend: HTTP 200 with an answer that is not a batch result (gave up after 2 attempt(s))",
        id="resend-non-json-200",
    ),
    pytest.param(
        "resend",
        httpx.Response(200, json={"data": [], "errors": [{"message": "no index"}]}),
        "resend: HTTP 200 with an answer that is not a batch result (gave up after 2 attempt(s))",
        id="resend-200-unexpected-errors-shape",
    ),
    *(
        pytest.param(
            name,
            httpx.Response(502, headers={"Content-Type": "text/html"}, text=HTML_502),
            f"{name}: HTTP 502: 502 Bad Gateway (gave up after 2 attempt(s))",
            id=f"{name}-html-502",
        )
        for name in PROVIDERS
    ),
]


POSTMARK_UNREADABLE = [
    pytest.param(
        "postmark",
        httpx.Response(200, text="OK, sent!"),
        "HTTP 200 with a body that is not JSON",
        id="postmark-non-json-200",
    ),
    pytest.param(
        "postmark",
        httpx.Response(200, json={"Status": "fine"}),
        "the batch answer does not match the request",
        id="postmark-200-object-not-batch",
    ),
    pytest.param(
        "postmark",
        httpx.Response(200, json=["ok", "ok", "ok"]),
        "the batch answer does not match the request",
        id="postmark-200-list-of-strings",
    ),
    pytest.param(
        "postmark",
        httpx.Response(200, json=[{"ErrorCode": "zero", "Message": "OK"}] * 3),
        "the batch answer does not match the request",
        id="postmark-200-error-code-not-a-number",
    ),
]
"""Postmark answers 200 but not in its batch shape: it may have taken the messages."""


@pytest.mark.parametrize(("name", "response", "error"), PROVIDER_GARBAGE)
def test_provider_garbage_fails_each_recipient_in_one_line(
    name: str, response: httpx.Response, error: str, tmp_path: Path
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    report = _send(tmp_path, _provider(name, handler))
    assert len(calls) == 2  # tried, retried once, then recorded
    assert [(r.email, r.status, r.error) for r in report.results] == [
        (f"u{i}@example.org", SendStatus.FAILED, error) for i in range(3)
    ]
    assert report.delivered == 0
    assert _ledger(tmp_path) == {f"u{i}@example.org": "failed" for i in range(3)}
    # nothing lost: a later run with a working provider sends exactly the three
    ok = _provider(name, lambda request: _accepting(name, request))
    again = _send(tmp_path, ok)
    assert sorted(r.email for r in again.results) == [f"u{i}@example.org" for i in range(3)]
    assert again.delivered == 3


@pytest.mark.parametrize(("name", "response", "why"), POSTMARK_UNREADABLE)
def test_postmark_unreadable_200_is_recorded_unknown_and_not_resent(
    name: str, response: httpx.Response, why: str, tmp_path: Path
) -> None:
    """No idempotency key at Postmark: a resend could deliver twice, so the readers are
    failed permanently as "outcome unknown" and only --retry-failed sends again."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    report = _send(tmp_path, _provider(name, handler))
    assert len(calls) == 1
    assert all(
        r.status == SendStatus.FAILED
        and not r.transient
        and (r.error or "").startswith(f"postmark: outcome unknown: {why}; not resent")
        for r in report.results
    )
    assert len(report.results) == 3
    assert _ledger(tmp_path) == {f"u{i}@example.org": "failed" for i in range(3)}
    ok = _provider(name, lambda request: _accepting(name, request))
    assert _send(tmp_path, ok).results == ()  # a plain rerun leaves them alone
    again = _send(tmp_path, ok, retry_failed=True)
    assert again.delivered == 3


def _accepting(name: str, request: httpx.Request) -> httpx.Response:
    if name == "postmark":
        sent = json.loads(request.content)
        return httpx.Response(
            200,
            json=[
                {"ErrorCode": 0, "Message": "OK", "MessageID": f"m{i}"} for i in range(len(sent))
            ],
        )
    if name == "resend":
        sent = json.loads(request.content)
        return httpx.Response(200, json={"data": [{"id": f"m{i}"} for i in range(len(sent))]})
    if name == "mailgun":
        return httpx.Response(
            200, json={"id": "<m@mg.example.org>", "message": "Queued. Thank you."}
        )
    return httpx.Response(202, headers={"X-Message-Id": "m"})


# --- broken subscriber lists


def _copy(name: str, folder: Path) -> Path:
    target = folder / name
    target.write_bytes((INPUTS / name).read_bytes())
    return target


def _send_cli(subscribers: Path, *extra: str) -> Result:
    return invoke(
        ["send", "--date", DATE, "--source", "sample", "--subscribers", str(subscribers), *extra]
    )


def _outbox(folder: Path) -> list[Path]:
    return sorted((folder / "outbox").glob("*.eml")) if (folder / "outbox").exists() else []


SUBSCRIBER_ERRORS = [
    pytest.param(
        "subs_malformed.yaml",
        "subs_malformed.yaml: 1 problem; nothing was loaded",
        ["subs_malformed.yaml:6: invalid YAML: did not find expected ',' or ']'"],
        id="subscribers-malformed-yaml",
    ),
    pytest.param(
        "subs_duplicates.yaml",
        "subs_duplicates.yaml: 2 problems; nothing was loaded",
        [
            "subs_duplicates.yaml:5: email: duplicate of line 2 (ADA@example.org)",
            "subs_duplicates.yaml:7: email: duplicate of line 4 (Grace@example.org)",
        ],
        id="subscribers-duplicates-any-case",
    ),
    pytest.param(
        "subs_invalid.yaml",
        "subs_invalid.yaml: 13 problems; nothing was loaded",
        [
            "subs_invalid.yaml:2: email: 'not-an-address': An email address must have an @-sign.",
            "subs_invalid.yaml:3: email: 'ada@': There must be something after the @-sign.",
            "subs_invalid.yaml:4: email: 'a..b@example.org': An email address cannot have two "
            "periods in a row.",
            "subs_invalid.yaml:5: email: 'eve@example.org\\r\\nBcc: victim@example.net': The part "
            "after the @-sign contains invalid characters: ':', '@', SPACE, U+000A, U+000D.",
            "subs_invalid.yaml:6: email: 'bob@localhost': The part after the @-sign is not valid. "
            "It should have a period.",
            "subs_invalid.yaml:8: summary: 'everything' is not one of tldr | abstract | titles",
            "subs_invalid.yaml:9: max_papers: -3 is not a whole number of papers >= 1",
            "subs_invalid.yaml:10: timezone: 'Mars/Olympus_Mons' is not a known time zone "
            "(e.g. Europe/Paris)",
            "subs_invalid.yaml:11: topics: unknown topic 'Astrology' (known: ",
            "subs_invalid.yaml:12: colour: unknown field (known: email, name, topics, keywords, "
            "authors, max_papers, summary, timezone, active, added, frequency, weekday)",
            "subs_invalid.yaml:14: active: 'maybe' is not true or false",
            "subs_invalid.yaml:15: added: 'yesterday' is not a date (YYYY-MM-DD)",
            "subs_invalid.yaml:16: entry: expected a mapping of fields (email: ...)",
        ],
        id="subscribers-invalid-addresses-and-fields",
    ),
    pytest.param(
        "subs_latin1.yaml",
        "subs_latin1.yaml: not UTF-8 text (invalid continuation byte)",
        [],
        id="subscribers-latin1",
    ),
    pytest.param(
        "subs_top_level_list.yaml",
        "subs_top_level_list.yaml: 1 problem; nothing was loaded",
        ["subs_top_level_list.yaml:1: the file must be a mapping with a 'subscribers:' list"],
        id="subscribers-top-level-list",
    ),
]


@pytest.mark.parametrize(("name", "error", "problems"), SUBSCRIBER_ERRORS)
def test_broken_subscriber_list_refuses_the_whole_send(
    name: str, error: str, problems: list[str], tmp_path: Path
) -> None:
    path = _copy(name, tmp_path)
    before = path.read_bytes()
    result = _send_cli(path)
    assert_one_line_error(result, f"error: {tmp_path / error}")
    listed = [line.strip() for line in result.output.splitlines()[1:]]
    assert len(listed) == len(problems)
    for line, problem in zip(listed, problems, strict=True):
        assert line.startswith(str(tmp_path / problem)), line
    assert _outbox(tmp_path) == []  # nothing partially sent
    assert path.read_bytes() == before
    # the same problems from validate, and nothing sent by a dry run either
    validate = invoke(["subscribers", "validate", "--subscribers", str(path)])
    assert_one_line_error(validate, f"error: {tmp_path / error}")
    assert validate.output == result.output
    assert_one_line_error(_send_cli(path, "--dry-run"), f"error: {tmp_path / error}")


def test_subscriber_list_with_a_bom_sends_to_everyone(tmp_path: Path) -> None:
    path = _copy("subs_bom.yaml", tmp_path)
    result = _send_cli(path)
    assert_ok(result)
    assert "2026-11-25: sent=2" in result.output
    recipients = sorted(str(parse_eml(p.read_bytes())["To"]) for p in _outbox(tmp_path))
    assert recipients == ["Ada Lovelace <ada@example.org>", "René Descartes <rene@example.org>"]


def test_header_tricks_in_names_are_sent_safely(tmp_path: Path) -> None:
    path = _copy("subs_header_tricks.yaml", tmp_path)
    result = _send_cli(path)
    assert_ok(result)
    assert "2026-11-25: sent=9" in result.output
    seen: dict[str, str] = {}
    for eml in _outbox(tmp_path):
        raw = eml.read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0]
        names = [h.split(b":", 1)[0] for h in head.split(b"\r\n") if h and h[:1] not in b" \t"]
        assert sorted(names) == sorted(
            [
                b"From",
                b"To",
                b"Subject",
                b"Date",
                b"Message-ID",
                b"List-Id",
                b"List-Unsubscribe",
                b"List-Unsubscribe-Post",
                b"Feedback-ID",
                b"MIME-Version",
                b"Content-Type",
            ]
        )
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        message = parse_eml(raw)
        (address,) = message["To"].addresses
        seen[address.addr_spec] = _decoded_name(head)
        html_part = next(p for p in message.walk() if p.get_content_type() == "text/html")
        html = html_part.get_content()
        markup = _assert_no_active_content(html)
        if address.addr_spec == "script@example.org":
            greeting = "<script>alert(1)</script> {{ 7*7 }} {% if 1 %}x{% endif %}"
            assert greeting in markup.all_text
            assert "&lt;script&gt;" in html
    assert seen == {
        "crlf@example.org": "Eve Bcc: victim@example.net Subject: you won",
        "lf@example.org": "Mallory X-Injected: yes",
        "rtl@example.org": "\u202eevil\u202c Reversed",
        "zw@example.org": "Zero\u200bWidth\u200d\ufeffJoiner",
        "homoglyph@example.org": "Аda Lоvelace",
        "script@example.org": "<script>alert(1)</script> {{ 7*7 }} {% if 1 %}x{% endif %}",
        "long@example.org": ("Very Long " + "Name " * 1000)[:MAX_NAME_CHARS].strip(),
        "encoded@example.org": "=?utf-8?q?Support_Team?=",
        "quote@example.org": 'O\'Brien "The Boss" <boss@evil.org>, Other',
    }


def _decoded_name(head: bytes) -> str:
    """The To display name as RFC 2047 / RFC 5322 read it (quoted pairs undone)."""
    value = head.decode("ascii").replace("\r\n ", " ")
    to = next(line for line in value.split("\r\n") if line.startswith("To: "))[4:]
    phrase = to.rsplit(" <", 1)[0]
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase))).strip()
    name, _address = parseaddr(to)
    return name


# --- refused edits lose nothing


EDITS = [
    pytest.param(
        ["add", "not-an-address"],
        "error: not-an-address: not saved",
        id="add-invalid-address",
    ),
    pytest.param(
        ["add", "ADA@example.org", "--name", "Ada twice"],
        "error: ADA@example.org: not saved",
        id="add-duplicate-any-case",
    ),
    pytest.param(
        ["add", "eve@example.org\r\nBcc: victim@example.net"],
        "error: 'eve@example.org\\r\\nBcc: victim@example.net': not saved",
        id="add-address-with-crlf",
    ),
    pytest.param(
        ["set", "nobody@example.org", "--max-papers", "3"],
        "error: nobody@example.org is not in ",
        id="set-unknown-address",
    ),
    pytest.param(
        ["remove", "nobody@example.org"],
        "error: nobody@example.org is not in ",
        id="remove-unknown-address",
    ),
]


@pytest.mark.parametrize(("args", "fragment"), EDITS)
def test_refused_edit_leaves_the_file_unchanged(
    args: list[str], fragment: str, tmp_path: Path
) -> None:
    path = _copy("subs_bom.yaml", tmp_path)
    before = path.read_bytes()
    result = invoke(["subscribers", *args, "--subscribers", str(path)])
    assert_one_line_error(result, fragment)
    assert "\r" not in result.output
    assert path.read_bytes() == before
    assert not (tmp_path / "subs_bom.yaml.bak").exists()


@pytest.mark.parametrize("args", [["add", "new@example.org"], ["remove", "ada@example.org"]])
def test_edit_of_a_malformed_list_is_refused_in_one_line(args: list[str], tmp_path: Path) -> None:
    path = _copy("subs_malformed.yaml", tmp_path)
    before = path.read_bytes()
    result = invoke(["subscribers", *args, "--subscribers", str(path)])
    line = assert_one_line_error(result, f"error: {path}:6: invalid YAML: ")
    assert line.endswith("; fix it by hand first")
    assert len(result.output.splitlines()) == 1
    assert path.read_bytes() == before


def test_import_of_a_latin1_csv_is_one_line_and_adds_nothing(tmp_path: Path) -> None:
    path = _copy("subs_bom.yaml", tmp_path)
    before = path.read_bytes()
    rows = tmp_path / "rows.csv"
    rows.write_bytes("email,name\nzoe@example.org,Zoé\n".encode("latin-1"))
    result = invoke(["subscribers", "import", str(rows), "--subscribers", str(path)])
    assert_one_line_error(result, f"error: {rows}: not UTF-8 text (invalid continuation byte)")
    assert path.read_bytes() == before


# --- whole sends that must refuse


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        pytest.param(
            "hf_truncated.json", "hf_truncated.json: truncated JSON", id="send-truncated-json"
        ),
        pytest.param(
            "hf_html_error.json", "hf_html_error.json: got an HTML page", id="send-html-error-page"
        ),
        pytest.param(
            "page_cp1252.txt", "page_cp1252.txt: not UTF-8 text", id="send-page-text-cp1252"
        ),
    ],
)
def test_send_with_a_broken_source_sends_nothing_and_loses_nothing(
    source: str, fragment: str, tmp_path: Path
) -> None:
    people = _copy("subs_bom.yaml", tmp_path)
    base = ["send", "--date", DATE, "--subscribers", str(people)]
    result = invoke([*base, "--source", str(INPUTS / source)])
    assert_one_line_error(result, f"error: {INPUTS / fragment}")
    assert _outbox(tmp_path) == []
    with Ledger(f"sqlite:///{tmp_path / 'newsletter.db'}") as ledger:
        assert ledger.deliveries(SEND_DATE) == {}
    # once the source is fixed, everyone gets the day's digest exactly once
    again = invoke([*base, "--source", str(INPUTS / "hf_2026.json")])
    assert_ok(again)
    assert "2026-11-25: sent=2" in again.output
    assert len(_outbox(tmp_path)) == 2


def test_send_on_an_empty_day_skips_by_default(tmp_path: Path) -> None:
    people = _copy("subs_bom.yaml", tmp_path)
    result = invoke(
        [
            "send",
            "--date",
            DATE,
            "--subscribers",
            str(people),
            "--source",
            str(INPUTS / "hf_empty.json"),
        ]
    )
    assert_ok(result)
    assert result.output.strip().endswith(
        f"2026-11-25: nothing sent: no papers for 2026-11-25 from {INPUTS / 'hf_empty.json'} "
        "(digest.empty_day: skip)"
    )
    assert _outbox(tmp_path) == []


def test_send_on_an_empty_day_with_the_note_policy_sends_a_short_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_DIGEST__EMPTY_DAY", "note")
    people = _copy("subs_bom.yaml", tmp_path)
    result = invoke(
        [
            "send",
            "--date",
            DATE,
            "--subscribers",
            str(people),
            "--source",
            str(INPUTS / "page_chrome_only.txt"),
        ]
    )
    assert_ok(result)
    assert "2026-11-25: sent=2" in result.output
    for eml in _outbox(tmp_path):
        message = parse_eml(eml.read_bytes())
        assert message["Subject"] == "Daily Papers 25 Nov: no new papers"
        markup = Markup(
            next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
        )
        assert not [h for h in markup.hrefs if "huggingface.co/papers/" in h]


def _config(folder: Path, text: str) -> Path:
    path = folder / "newsletter.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_template_override_refuses_before_any_email(tmp_path: Path) -> None:
    config = _config(tmp_path, f"digest:\n  templates: {INPUTS / 'templates_broken'}\n")
    people = _copy("subs_bom.yaml", tmp_path)
    result = invoke(
        [
            "send",
            "--date",
            DATE,
            "--source",
            "sample",
            "--config",
            str(config),
            "--subscribers",
            str(people),
        ]
    )
    assert_one_line_error(
        result,
        f"error: {INPUTS / 'templates_broken' / 'digest.mjml.j2'}:1: template syntax error: "
        "Expected an expression, got 'end of statement block'",
    )
    assert _outbox(tmp_path) == []


def test_broken_taxonomy_is_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"digest:\n  taxonomy: {INPUTS / 'taxonomy_broken.yaml'}\n")
    result = preview("sample", tmp_path / "out", "--config", str(config))
    assert_one_line_error(
        result, f"error: {INPUTS / 'taxonomy_broken.yaml'}: not valid YAML (line 4)"
    )


def test_regex_and_template_syntax_in_keywords_rank_as_plain_text(tmp_path: Path) -> None:
    people = _copy("subs_regex_keywords.yaml", tmp_path)
    result = _send_cli(people)
    assert_ok(result)
    assert "2026-11-25: sent=1" in result.output
    (eml,) = _outbox(tmp_path)
    message = parse_eml(eml.read_bytes())
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    markup = _assert_no_active_content(html)
    papers = [h for h in markup.hrefs if h.startswith("https://huggingface.co/papers/")]
    assert len(set(papers)) == 3  # max_papers: 3, whatever the keywords say


# --- arXiv answering garbage

RSS_URL = "https://rss.arxiv.org/rss/cs.RO"
DOCTYPE_RSS = (
    "<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY a 'expanded'>]>"
    "<rss version='2.0'><channel><title>cs.RO</title><item><title>&a;</title></item>"
    "</channel></rss>"
)

ARXIV_GARBAGE = [
    pytest.param(
        httpx.Response(
            200,
            headers={"Content-Type": "text/html"},
            text="<!DOCTYPE html><html><body>Rate exceeded.</body></html>",
        ),
        "expected an arXiv feed, got an HTML page: "
        "'<!DOCTYPE html><html><body>Rate exceeded.</body></html>'",
        id="arxiv-html-200",
    ),
    pytest.param(
        httpx.Response(200, json={"error": "nope"}),
        'malformed XML (not well-formed (invalid token): line 1, column 0): \'{"error":"nope"}\'',
        id="arxiv-json-200",
    ),
    pytest.param(
        httpx.Response(200, content=DOCTYPE_RSS.encode("utf-8")),
        "expected an arXiv feed, got a DOCTYPE (refused)",
        id="arxiv-doctype-entities",
    ),
    pytest.param(
        httpx.Response(200, content=b"\xef\xbb\xbf" + DOCTYPE_RSS.encode("utf-8")),
        "expected an arXiv feed, got a DOCTYPE (refused)",
        id="arxiv-doctype-behind-utf8-bom",
    ),
    pytest.param(
        httpx.Response(200, content=DOCTYPE_RSS.encode("utf-16")),
        "expected an arXiv feed, got a DOCTYPE (refused)",
        id="arxiv-doctype-in-utf16",
    ),
]


@pytest.mark.parametrize(("response", "fragment"), ARXIV_GARBAGE)
def test_arxiv_garbage_is_one_line_error(
    response: httpx.Response, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _serve_hf(monkeypatch, lambda request: response)
    result = invoke(["fetch", "--source", "arxiv:cs.RO", "--date", DATE])
    assert_one_line_error(result, f"error: {RSS_URL}: {fragment}")
    assert [str(r.url) for r in seen] == [RSS_URL]  # refused as it came, never parsed


def test_hf_day_broken_on_page_two_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    papers = _hf_entries(150)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["p"] == "0":
            return httpx.Response(200, json=papers[:100])
        return httpx.Response(200, text=json.dumps(papers[100:])[:500])  # cut mid-way

    _serve_hf(monkeypatch, handler)
    people = _copy("subs_bom.yaml", tmp_path)
    result = invoke(["send", "--date", DATE, "--source", "hf", "--subscribers", str(people)])
    assert_one_line_error(
        result, f"error: {HF_URL}?date={DATE}&limit=100&p=1: truncated JSON ({PYTHON_WORDS})"
    )
    assert _outbox(tmp_path) == []  # never a digest of the first 100 papers only


def test_huge_fields_are_trimmed_not_sent_whole(tmp_path: Path) -> None:
    entries = [
        {
            "paper": {
                "id": "2611.00001",
                "title": "T" * 10_000,
                "summary": "word " * 200_000,
                "upvotes": 5,
                "authors": [{"name": "A" * 5_000}] * 300,
                "ai_keywords": ["k" * 1_000] * 50,
                "githubRepo": "https://github.com/" + "x" * 5_000,
            }
        },
        {
            "paper": {
                "id": "2611.00002",
                "title": "Normal " * 2_000,
                "summary": "x" * 300_000,
                "upvotes": 3,
                "projectPage": "https://example.org/" + "%41" * 3_000,
            }
        },
    ]
    day = tmp_path / "huge.json"
    day.write_text(json.dumps(entries), encoding="utf-8")
    out = tmp_path / "out"
    assert_ok(preview(day, out))
    assert sorted(p["id"] for t in summary(out)["topics"] for p in t["papers"]) == [
        "2611.00001",
        "2611.00002",
    ]
    raw = (out / "digest.eml").read_bytes()
    assert len(raw) < 102_000
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    subject = str(parse_eml(raw)["Subject"])
    assert subject.startswith("Daily Papers 25 Nov: TTTT") and len(subject) <= 78
    markup = Markup((out / "digest.html").read_text(encoding="utf-8"))
    assert "https://huggingface.co/papers/2611.00001" in markup.hrefs
    assert "https://huggingface.co/papers/2611.00002" in markup.hrefs


# --- schedule settings


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        pytest.param(
            'time: "25:99"',
            "error: schedule.time: '25:99' is not a time of day as HH:MM",
            id="time",
        ),
        pytest.param(
            "timezone: Mars/Base",
            "error: schedule.timezone: 'Mars/Base' is not an IANA time zone (e.g. Europe/Berlin)",
            id="timezone",
        ),
        pytest.param(
            "days: [funday]",
            "error: schedule.days: 'funday': 'funday' is not a day name (mon..sun)",
            id="days",
        ),
    ],
)
def test_broken_schedule_is_one_line(setting: str, fragment: str, tmp_path: Path) -> None:
    config = _config(tmp_path, f"schedule:\n  {setting}\n")
    people = _copy("subs_bom.yaml", tmp_path)
    result = invoke(["status", "--config", str(config)])
    assert_one_line_error(result, fragment)
    assert people.exists()


def test_a_bad_poll_until_stops_the_daemon_at_start_not_at_the_first_run() -> None:
    settings = load_settings(None, env={"NEWSLETTER_SCHEDULE__POLL_UNTIL": "noon"})
    with pytest.raises(ConfigError) as caught:
        scheduler.Wiring(settings).build([Subscriber(email="a@example.org")])
    assert str(caught.value) == "schedule.poll_until: 'noon' is not a time of day as HH:MM"


# --- delivery targets that are not what they should be


def test_outbox_path_that_is_a_file_refuses_and_the_rerun_sends_each_once(tmp_path: Path) -> None:
    people = _copy("subs_bom.yaml", tmp_path)
    (tmp_path / "outbox").write_text("not a folder")
    result = _send_cli(people)
    # log lines come first (no terminal); the run ends with the one-line error
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.output.splitlines()[-1] == "error: outbox folder outbox: File exists"
    (tmp_path / "outbox").unlink()
    again = _send_cli(people)
    assert_ok(again)
    assert "2026-11-25: sent=2; already sent before: 0" in again.output
    assert len(_outbox(tmp_path)) == 2


@pytest.fixture
def http_speaking_smtp_port() -> Iterator[int]:
    """A 'mail server' that answers every connection with an HTTP error and hangs up."""

    def answer_http(conn: socket.socket, done: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with _accepting_server(answer_http) as port:
        yield port


def test_smtp_server_speaking_http_fails_each_recipient_for_a_retry(
    http_speaking_smtp_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "DELIVERY__BACKEND": "smtp",
        "DELIVERY__HOST": "127.0.0.1",
        "DELIVERY__PORT": str(http_speaking_smtp_port),
        "DELIVERY__SECURITY": "none",
        "DELIVERY__MAX_ATTEMPTS": "2",
        "DELIVERY__TIMEOUT": "1",
        "SECRET_KEY": "k" * 32,
        "DIGEST__BASE_URL": "https://papers.example.org",
        "SENDER__LIST_ID": "Daily Papers <daily-papers.example.org>",
    }.items():
        monkeypatch.setenv("NEWSLETTER_" + key, value)
    people = _copy("subs_bom.yaml", tmp_path)
    result = _send_cli(people)
    assert result.exit_code == 75, result.output  # transient only: EX_TEMPFAIL, rerun later
    assert "Traceback" not in result.output
    assert "2026-11-25: failed=2; already sent before: 0" in result.output
    for email in ("ada@example.org", "rene@example.org"):
        (line,) = [
            line for line in result.output.splitlines() if line.startswith(f"  failed {email}")
        ]
        assert line.startswith(
            (f"  failed {email} (retry later): connect: ", f"  failed {email} (retry later): not")
        )
        # two recipients, two attempts each: the third failed connect in a row gives up
        # on the server for the run (delivery.smtp.FAIL_FAST_AFTER)
        assert line.endswith(("(gave up after 2 attempt(s))", "(server down)"))
    with Ledger(f"sqlite:///{tmp_path / 'newsletter.db'}") as ledger:
        assert {e: d.status for e, d in ledger.deliveries(SEND_DATE).items()} == {
            "ada@example.org": "failed",
            "rene@example.org": "failed",
        }


def test_state_database_that_is_not_sqlite_refuses_before_sending(tmp_path: Path) -> None:
    people = _copy("subs_bom.yaml", tmp_path)
    state = _copy("state_not_sqlite.db", tmp_path)
    before = state.read_bytes()
    config = _config(tmp_path, f"state: sqlite:///{state}\n")
    result = _send_cli(people, "--config", str(config))
    assert_one_line_error(
        result, f"error: {state}: cannot open the state database: file is not a database"
    )
    assert state.read_bytes() == before
    assert _outbox(tmp_path) == []


# --- hostile requests to the unsubscribe / preferences app

WEB_SECRET = b"corpus-secret"


def _wsgi(
    app: WebApp, method: str, path: str, query: str, body: bytes, content_type: str, length: str
) -> tuple[str, bytes]:
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": length,
    }
    out = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], out


FORM = "application/x-www-form-urlencoded"
BAD_REQUESTS = [
    pytest.param(
        "GET", "/unsubscribe", "token=%ff%fe%00", b"", FORM, "0", "400", id="token-bad-bytes"
    ),
    pytest.param(
        "GET", "/unsubscribe", "token=" + "A" * 100_000, b"", FORM, "0", "400", id="token-100k"
    ),
    pytest.param(
        "GET",
        "/unsubscribe",
        "token=%E2%80%AE&token=x",
        b"",
        FORM,
        "0",
        "400",
        id="token-rtl-twice",
    ),
    pytest.param(
        "POST",
        "/unsubscribe",
        "token=<script>",
        b"List-Unsubscribe=One-Click",
        FORM,
        "26",
        "400",
        id="token-script",
    ),
    pytest.param("GET", "/%ff%00", "", b"", FORM, "0", "404", id="path-bad-bytes"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "content_type", "length", "status"), BAD_REQUESTS
)
def test_hostile_requests_are_refused_and_change_nothing(
    method: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str,
    length: str,
    status: str,
    tmp_path: Path,
) -> None:
    store = PrefsStore(f"sqlite:///{tmp_path / 'state.db'}")
    app = WebApp(store=store, secret=WEB_SECRET)
    got, page = _wsgi(app, method, path, query, body, content_type, length)
    assert got.startswith(status)
    assert b"<script>" not in page
    assert store.suppressed_count() == 0


@pytest.mark.parametrize(
    ("body", "content_type", "length"),
    [
        pytest.param(b"List-Unsubscribe=One-Click", FORM, "-5", id="negative-length"),
        pytest.param(b"List-Unsubscribe=One-Click", FORM, "abc", id="length-not-a-number"),
        pytest.param(b"\xff\xfe=\xff", FORM, "5", id="form-not-utf8"),
        pytest.param(b"garbage", "multipart/form-data", "7", id="multipart-without-boundary"),
        pytest.param(b"x", 'multipart/form-data; boundary="', "1", id="multipart-broken-boundary"),
    ],
)
def test_one_click_with_a_mangled_body_never_errors(
    body: bytes, content_type: str, length: str, tmp_path: Path
) -> None:
    store = PrefsStore(f"sqlite:///{tmp_path / 'state.db'}")
    app = WebApp(store=store, secret=WEB_SECRET)
    token = quote(make_token(WEB_SECRET, "ada@example.org", "unsubscribe"), safe="")
    status, _page = _wsgi(app, "POST", "/unsubscribe", f"token={token}", body, content_type, length)
    assert status == "200 OK"  # a signed link unsubscribes, whatever the client sent
    assert store.is_suppressed("ada@example.org")


def test_international_domains_go_out_in_punycode_and_utf8_local_parts_are_refused(
    tmp_path: Path,
) -> None:
    people = _copy("subs_international.yaml", tmp_path)
    result = _send_cli(people)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert (
        f"  {people}:6: email: 'josé@example.org': the part before the @ has non-ASCII "
        "characters, which needs "
        "SMTPUTF8; this mailer sends ASCII addresses only" in result.output.splitlines()
    )
    assert not (tmp_path / "outbox").exists()

    text = people.read_text(encoding="utf-8").replace("  - email: josé@example.org\n", "")
    people.write_text(text, encoding="utf-8")
    result = _send_cli(people)
    assert result.exit_code == 0, result.output
    assert "2026-11-25: sent=2; already sent before: 0" in result.output
    recipients = sorted(parse_eml(eml.read_bytes())["To"] for eml in _outbox(tmp_path))
    assert recipients == ["B <user@xn--bcher-kva.de>", "plain@example.org"]


def test_unbalanced_bidi_overrides_are_closed_where_they_are_shown(tmp_path: Path) -> None:
    """An RLO or RLI left open in a title would reverse the rest of the subject line
    ("+1 more") or of the paragraph in a mail client: each is closed right after it."""
    out = tmp_path / "out"
    assert_ok(preview(INPUTS / "hf_bidi_unbalanced.json", out))
    message = parse_eml((out / "digest.eml").read_bytes())
    assert message["Subject"] == (
        "Daily Papers 25 Nov: \u202eevil.exe Reversed Without An End\u202c +1"
    )
    html = (out / "digest.html").read_text(encoding="utf-8")
    assert "&#8238;evil.exe Reversed Without An End&#8236;<" in html
    assert "Isolated &#8295;right-to-left and open&#8297;<" in html
    text = (out / "digest.txt").read_text(encoding="utf-8")
    assert "* \u202eevil.exe Reversed Without An End\u202c\n" in text
    assert "\u202eEmbedded Author\u202c, Next Author" in text


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("taxonomy_alias_bomb.yaml", "not valid YAML (line 3): aliases (*name) are not allowed"),
        ("taxonomy_duplicate_key.yaml", "not valid YAML (line 4): 'keywords': duplicate key"),
    ],
)
def test_hostile_taxonomy_is_refused_at_once(name: str, fragment: str, tmp_path: Path) -> None:
    config = _config(tmp_path, f"digest:\n  taxonomy: {INPUTS / name}\n")
    result = invoke(["taxonomy", "--config", str(config)])
    assert_one_line_error(result, f"error: {INPUTS / name}: {fragment}")
