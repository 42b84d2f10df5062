"""Files: format by content, encodings, and the Daily Papers page text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from newsletter.config import SourceSettings
from newsletter.errors import SourceFormatError, SourceUnavailable
from newsletter.sources.files import (
    decode_text,
    detect_format,
    parse_document,
    parse_page_text,
    read_path,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
SETTINGS = SourceSettings()
ABSTRACT = (
    "We propose a method that does something useful for robots and language models, "
    "and we evaluate it carefully on several benchmarks with strong results."
)


def _copy(tmp_path: Path, fixture: str, name: str) -> Path:
    target = tmp_path / name
    target.write_bytes((FIXTURES / fixture).read_bytes())
    return target


def test_page_text_yields_title_abstract_pairs_linked_to_a_search() -> None:
    papers = read_path(FIXTURES / "page.txt", settings=SETTINGS)
    assert [p.title for p in papers] == [
        "Diffusion Policies for Bimanual Folding: A Study",
        "Vision-Language-Action Models Need Better Benchmarks",
        "Escaping <script>alert(1)</script> and {{ template }} in Titles",
    ]
    first = papers[0]
    assert first.id is None and first.source == "file"
    assert first.url == (
        "https://huggingface.co/papers?q=Diffusion%20Policies%20for%20Bimanual%20Folding%3A%20A%20Study"
    )
    assert first.abstract.startswith("We study bimanual cloth folding")
    assert papers[2].abstract.startswith(
        "Abstracts may contain <script>alert('x')</script>, "
        '{{ user.email }} and {% if %} & < > " characters'
    )


def test_a_61_paper_page_yields_61_papers() -> None:
    header = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    header += "by AK and the research community\n\n"
    body = "\n\n".join(f"Paper Number {i}: A Title\n\n{ABSTRACT} ({i})" for i in range(61))
    papers = parse_page_text(header + body)
    assert len(papers) == 61
    assert papers[60].title == "Paper Number 60: A Title"


def test_crlf_bom_trailing_spaces_and_wrapped_abstracts_are_fine(tmp_path: Path) -> None:
    text = (
        "\ufeffDaily Papers\r\n\r\nA Title  \r\n \r\n"
        "First line of a wrapped abstract that goes on\r\nand on across lines until it is "
        "long enough to be an abstract.\r\n"
    )
    path = tmp_path / "page.txt"
    path.write_bytes(text.encode("utf-8"))
    (paper,) = read_path(path, settings=SETTINGS)
    assert paper.title == "A Title"
    assert paper.abstract == (
        "First line of a wrapped abstract that goes on and on across lines until it is "
        "long enough to be an abstract."
    )


def test_stray_blocks_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "Daily Papers\n\nSome Unknown Banner\n\nA Real Title\n\n" + ABSTRACT + "\n\n"
        "Title Without Abstract\n\nAnother Title\n\n" + ABSTRACT + "\n\n42\n\nTrailing Title\n"
    )
    with caplog.at_level(logging.WARNING, logger="newsletter.sources.files"):
        papers = parse_page_text(text, origin="p.txt")
    assert [p.title for p in papers] == ["A Real Title", "Another Title"]
    assert "Some Unknown Banner" in caplog.text
    assert "Title Without Abstract" in caplog.text
    assert "Trailing Title" in caplog.text


def test_format_is_detected_by_content_not_extension(tmp_path: Path) -> None:
    as_txt = _copy(tmp_path, "hf_day.json", "papers.txt")
    assert [p.source for p in read_path(as_txt, settings=SETTINGS)] == ["hf"] * 3
    rss_as_json = _copy(tmp_path, "arxiv_rss.xml", "feed.json")
    assert [p.id for p in read_path(rss_as_json, settings=SETTINGS)] == ["2611.20001"] * 2
    page_as_json = _copy(tmp_path, "page.txt", "page.json")
    assert len(read_path(page_as_json, settings=SETTINGS)) == 3


def test_atom_files_keep_every_entry() -> None:
    papers = read_path(FIXTURES / "arxiv_api_new.xml", settings=SETTINGS)
    assert [p.id for p in papers] == ["2611.10001", "2611.10002", "2610.09999"]


def test_rss_files_follow_the_announce_type_options() -> None:
    settings = SourceSettings(include_cross_lists=True, include_replacements=True)
    papers = read_path(FIXTURES / "arxiv_rss.xml", settings=settings)
    assert len({p.id for p in papers}) == 4


@pytest.mark.parametrize(
    ("text", "content_type", "expected"),
    [
        ("[]", None, "hf"),
        ("\ufeff  [{}]", None, "hf"),
        ('{"a": 1}', None, "hf"),
        ("<?xml version='1.0'?>\n<rss version='2.0'></rss>", None, "rss"),
        ("<!-- c --><feed xmlns='http://www.w3.org/2005/Atom'/>", None, "atom"),
        ("Daily Papers\n\nTitle\n\nAbstract.", "text/plain", "page"),
        ("", None, "page"),
    ],
)
def test_detect_format(text: str, content_type: str | None, expected: str) -> None:
    assert detect_format(text, content_type=content_type) == expected


@pytest.mark.parametrize(
    "text",
    ["<!DOCTYPE html><html></html>", "<html><body>oops</body></html>", "<svg></svg>"],
)
def test_html_and_unknown_xml_are_refused(text: str) -> None:
    with pytest.raises(SourceFormatError) as info:
        detect_format(text, origin="x.html")
    assert str(info.value).startswith("x.html: ")


def test_a_cp1252_file_is_refused_naming_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("A Title\n\nCaf\u00e9 and na\u00efve abstract.".encode("cp1252"))
    with pytest.raises(SourceFormatError) as info:
        read_path(path, settings=SETTINGS)
    message = str(info.value)
    assert message.startswith(f"{path}: not UTF-8 text: byte 0xe9 at byte offset 12")
    assert "\n" not in message


def test_utf8_with_bom_and_utf16_with_bom_decode() -> None:
    assert decode_text("\ufeff[]".encode(), origin="x") == "[]"
    assert decode_text("[\u00e9]".encode("utf-16"), origin="x") == "[\u00e9]"


def test_a_missing_file_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no such file"):
        read_path(tmp_path / "nope.json", settings=SETTINGS)
    with pytest.raises(SourceUnavailable, match="is a folder"):
        read_path(tmp_path, settings=SETTINGS)


def test_parse_document_accepts_text_and_content_type() -> None:
    papers = parse_document("[]", origin="u", settings=SETTINGS, content_type="application/json")
    assert papers == ()
    with pytest.raises(SourceFormatError, match="HTML page"):
        parse_document(b"<p>hi</p>", origin="u", settings=SETTINGS, content_type="text/html")
