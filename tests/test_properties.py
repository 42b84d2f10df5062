"""Property tests (hypothesis) for the parsers and the header encoding.

* HF JSON: any generated entry in the wire format comes back with the same fields;
  any JSON value at all gives papers or a one-line SourceFormatError.
* arXiv Atom: any generated feed (titles, abstracts, authors with any text) comes back
  squashed but otherwise equal; any text gives papers or a one-line SourceFormatError.
* Page text: any text gives papers or nothing, never an exception; a BOM and any
  Unicode line ends change nothing.
* Headers: any string as a subscriber's display name or as the subject gives a message
  that parses back to the same (one-line) value and has exactly the headers we wrote.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import xml.etree.ElementTree as ET
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import SenderSettings, SourceSettings
from newsletter.errors import SourceFormatError
from newsletter.headers import clean_text, header
from newsletter.message import build_template
from newsletter.slots import MAX_NAME_CHARS
from newsletter.sources.arxiv import parse_atom
from newsletter.sources.common import detex, squash
from newsletter.sources.files import parse_document, parse_page_text
from newsletter.sources.hf_daily import load_entries, parse_entries
from tests.doubles import sample_rendered

ATOM_NS = "http://www.w3.org/2005/Atom"
ARXIV_NS = "http://arxiv.org/schemas/atom"
DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)

# Text as it comes in JSON and XML: any character XML 1.0 can carry (no surrogates,
# no C0 controls but tab, CR and LF), which is also every string JSON can carry.
xml_char = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(chr(c) for c in range(0x20) if c not in (9, 10, 13))
    + "\ufffe\uffff",
)
any_text = st.text(xml_char, max_size=80)
some_text = any_text.filter(lambda t: squash(t) != "")
arxiv_id = st.builds(
    lambda a, b, v: f"26{a:02d}.{b:05d}v{v}",
    st.integers(1, 12),
    st.integers(0, 99999),
    st.integers(1, 3),
)


# --------------------------------------------------------------------------- HF JSON


hf_paper = st.fixed_dictionaries(
    {
        "id": arxiv_id.map(lambda i: i.split("v")[0]),
        "title": some_text,
        "summary": some_text,
        "authors": st.lists(
            st.fixed_dictionaries({"name": some_text, "hidden": st.just(False)}), max_size=4
        ),
        "upvotes": st.integers(0, 10**6),
    },
    optional={
        "ai_summary": some_text,
        "ai_keywords": st.lists(some_text, max_size=4),
        "githubRepo": st.sampled_from(["https://github.com/a/b", "http://example.org/x"]),
        "githubStars": st.integers(0, 10**5),
        "publishedAt": st.datetimes(timezones=st.just(dt.UTC)).map(
            lambda d: d.isoformat().replace("+00:00", "Z")
        ),
    },
)
hf_entry = st.fixed_dictionaries(
    {"paper": hf_paper},
    optional={"numComments": st.integers(0, 1000), "thumbnail": st.just("https://x.org/t.png")},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hf_entry, max_size=6), st.booleans())
def test_hf_entries_round_trip(entries: list[dict[str, Any]], ascii_only: bool) -> None:
    body = json.dumps(entries, ensure_ascii=ascii_only).encode("utf-8")
    papers = parse_entries(load_entries(body, origin="t"), origin="t")
    assert len(papers) == len(entries)
    for paper, entry in zip(papers, entries, strict=True):
        raw = entry["paper"]
        assert paper.id == raw["id"]
        assert paper.title == detex(raw["title"])  # TeX as Unicode, else squashed
        assert paper.abstract == detex(raw["summary"])
        assert paper.authors == tuple(detex(a["name"]) for a in raw["authors"])
        assert paper.upvotes == raw["upvotes"]
        assert paper.comments == entry.get("numComments", 0)
        assert paper.ai_summary == (squash(raw["ai_summary"]) if "ai_summary" in raw else None)
        expected_keywords = tuple(dict.fromkeys(squash(k) for k in raw.get("ai_keywords", [])))
        assert paper.keywords == expected_keywords
        assert paper.github_repo == raw.get("githubRepo")
        assert paper.url == f"https://huggingface.co/papers/{raw['id']}"


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
paperish = st.fixed_dictionaries(
    {},
    optional={
        "paper": json_value
        | st.dictionaries(
            st.sampled_from(
                list(
                    hf_paper_keys := (
                        "id",
                        "title",
                        "summary",
                        "authors",
                        "upvotes",
                        "publishedAt",
                        "ai_keywords",
                        "githubRepo",
                        "githubStars",
                        "projectPage",
                        "submittedOnDailyAt",
                        "ai_summary",
                    )
                )
            ),
            json_value,
        ),
        "numComments": json_value,
        "title": json_value,
        "thumbnail": json_value,
        "publishedAt": json_value,
    },
)


@settings(max_examples=200, deadline=None)
@given(json_value | st.lists(paperish, max_size=5))
def test_any_json_gives_papers_or_one_line_error(value: object) -> None:
    body = json.dumps(value)
    try:
        papers = parse_entries(load_entries(body, origin="t.json"), origin="t.json")
    except SourceFormatError as exc:
        assert str(exc).startswith("t.json: ")
        assert "\n" not in str(exc)
        return
    for paper in papers:
        assert paper.title and paper.title == squash(paper.title)
        assert paper.url and paper.url.startswith("https://huggingface.co/papers")
        for link in (paper.github_repo, paper.project_page, paper.thumbnail):
            assert link is None or link.lower().startswith(("https://", "http://"))


# --------------------------------------------------------------------------- arXiv Atom


atom_entry = st.fixed_dictionaries(
    {
        "id": arxiv_id,
        "title": some_text,
        "summary": any_text,
        "authors": st.lists(some_text, max_size=4),
        "category": st.sampled_from(["cs.RO", "cs.CV", "cs.LG", "stat.ML"]),
    }
)


def _atom(entries: list[dict[str, Any]]) -> bytes:
    ET.register_namespace("", ATOM_NS)
    ET.register_namespace("arxiv", ARXIV_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    ET.SubElement(feed, f"{{{ATOM_NS}}}id").text = "https://arxiv.org/api/x"
    for item in entries:
        entry = ET.SubElement(feed, f"{{{ATOM_NS}}}entry")
        ET.SubElement(entry, f"{{{ATOM_NS}}}id").text = f"http://arxiv.org/abs/{item['id']}"
        ET.SubElement(entry, f"{{{ATOM_NS}}}title").text = item["title"]
        ET.SubElement(entry, f"{{{ATOM_NS}}}summary").text = item["summary"]
        ET.SubElement(entry, f"{{{ATOM_NS}}}published").text = "2026-11-24T17:59:46Z"
        for name in item["authors"]:
            author = ET.SubElement(entry, f"{{{ATOM_NS}}}author")
            ET.SubElement(author, f"{{{ATOM_NS}}}name").text = name
        ET.SubElement(entry, f"{{{ARXIV_NS}}}primary_category", term=item["category"])
        ET.SubElement(entry, f"{{{ATOM_NS}}}category", term=item["category"])
    return b"<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(feed, encoding="utf-8")


@settings(max_examples=120, deadline=None)
@given(st.lists(atom_entry, max_size=5))
def test_atom_round_trips(entries: list[dict[str, Any]]) -> None:
    body = _atom(entries)
    for doc in (body, body.decode("utf-8")):
        feed = parse_atom(doc, origin="feed.xml")
        papers = [item.paper for item in feed.items]
        assert [p.id for p in papers] == [e["id"].split("v")[0] for e in entries]
        assert [p.title for p in papers] == [detex(e["title"]) for e in entries]
        assert [p.abstract for p in papers] == [detex(e["summary"]) for e in entries]
        assert [p.authors for p in papers] == [
            tuple(detex(a) for a in e["authors"]) for e in entries
        ]
        assert [p.categories[0] for p in papers] == [e["category"] for e in entries]
        assert {item.kind for item in feed.items} <= {"new", "replace"}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: "<feed>" + b.hex()))
def test_any_text_as_xml_gives_papers_or_one_line_error(text: str) -> None:
    try:
        papers = parse_document("<" + text.lstrip("<"), origin="f.xml", settings=SourceSettings())
    except SourceFormatError as exc:
        assert str(exc).startswith("f.xml: ")
        assert "\n" not in str(exc)
        return
    assert all(p.title for p in papers)


# --------------------------------------------------------------------------- page text


@settings(max_examples=120, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x85"]))
def test_page_text_line_ends_and_bom_change_nothing(text: str, newline: str) -> None:
    plain = parse_page_text(text)
    changed = parse_page_text("\ufeff" + text.replace("\n", newline))
    if newline in ("\n", "\r\n", "\r"):
        assert [(p.title, p.abstract) for p in changed] == [(p.title, p.abstract) for p in plain]
    for paper in changed:
        assert paper.title == squash(paper.title) and "\n" not in paper.title


# --------------------------------------------------------------------------- headers

SENDER = SenderSettings(from_="Daily Papers <digest@example.org>", list_id="Papers <p.example.org>")
EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
]
VALUES = {
    "name": "",
    "email": "reader@example.org",
    "unsubscribe_url": "https://p.example.org/unsubscribe?token=abc",
    "preferences_url": "https://p.example.org/preferences?token=abc",
    "feedback_url": "https://papers.example/f/" + "F" * 36,
}
header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.lists(
    st.sampled_from(
        [
            "\r\n",
            "\n",
            "\r",
            "Bcc: x@evil.org",
            "\u202e",
            "\u200b",
            "=?utf-8?q?x?=",
            '"',
            "\\",
            "<",
            ">",
            "@",
            ",",
            ";",
            ":",
            "a",
            "é",
            "日本",
            " ",
            "\t",
            "\x00",
            "\x85",
            "\u2028",
        ]
    ),
    max_size=40,
).map("".join)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode("ascii")
        for line in head.split(b"\r\n")
        if line and not line[:1].isspace()
    ]


long_name = st.tuples(header_text, st.integers(900, 3000), st.sampled_from(["a", "é", "a b"])).map(
    lambda t: t[0] + t[2] * t[1]
)
"""Names far longer than MAX_NAME_CHARS (cut in the greeting and in the To header)."""


@settings(max_examples=150, deadline=None)
@given(name=header_text | long_name, subject=header_text)
def test_any_name_and_subject_parse_back_with_no_injected_header(name: str, subject: str) -> None:
    rendered = sample_rendered(subject=subject)
    template = build_template(rendered, sender=SENDER, date=DATE, now=NOW)
    recipient = template.recipient("reader@example.org", name, {**VALUES, "name": name})
    raw = template.fill(recipient)
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert sorted(_header_names(raw)) == sorted(EXPECTED_HEADERS)
    message = _parse(raw)
    assert message["Subject"] == clean_text(subject)
    to = message["To"]
    assert len(to.addresses) == 1
    assert to.addresses[0].addr_spec == "reader@example.org"
    shown = _display_name(raw, to.addresses[0].display_name)
    assert (
        shown.strip() == clean_text(name)[:MAX_NAME_CHARS].strip()
    )  # names are cut to MAX_NAME_CHARS
    assert not message.defects


def _display_name(raw: bytes, parsed: str) -> str:
    """The To display name as RFC 2047 reads it. CPython's address parser keeps the
    folding space between two encoded words of one name (RFC 2047 6.2 says to drop it),
    so an encoded name is decoded with email.header, which follows the RFC."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    value = next(line for line in head.split("\r\n") if line.startswith("To: "))[4:]
    phrase = value.rsplit(" <", 1)[0] if value.endswith(">") else ""
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase)))
    return parsed


@settings(max_examples=200, deadline=None)
@given(header_text)
def test_a_header_is_one_header_that_decodes_to_the_value(value: str) -> None:
    raw = b"Subject: " + header("Subject", value).encode(linesep="\r\n").encode() + b"\r\n"
    assert raw.endswith(b"\r\n") and raw.isascii()
    lines = raw[:-2].split(b"\r\n")
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])  # folded, never a new header
    assert all(len(line) <= 998 for line in lines)
    message = _parse(raw + b"\r\n")
    assert message.keys() == ["Subject"]
    assert message["Subject"] == clean_text(value)
