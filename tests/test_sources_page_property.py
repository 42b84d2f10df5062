"""Property tests: the parsers never crash on any input; the page parser round-trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import SourceSettings
from newsletter.errors import SourceFormatError
from newsletter.models import Paper
from newsletter.sources.files import HEADER_LINES, MAX_TITLE_CHARS, parse_document, parse_page_text
from newsletter.sources.hf_daily import parse_entries

HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "by AK and the research community\n\n"
)

word = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x2FFF),
    min_size=1,
    max_size=10,
)
punct_word = st.builds(lambda w, p: w + p, word, st.sampled_from(["", "", ":", ",", "-", "?"]))
title = (
    st.lists(punct_word, min_size=1, max_size=14)
    .map(" ".join)
    .filter(lambda t: t.lower() not in HEADER_LINES and len(t) <= MAX_TITLE_CHARS)
    .filter(lambda t: not t.replace(",", "").replace(".", "").isdigit())
)
ABSTRACT_OPENING = "This paper studies the following question carefully and at length:"
abstract = st.lists(punct_word, min_size=20, max_size=60).map(
    lambda words: f"{ABSTRACT_OPENING} {' '.join(words)}."
)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    papers = parse_page_text(text)
    assert all(isinstance(p, Paper) and p.title and p.url for p in papers)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(title, abstract).filter(lambda ta: len(ta[1]) > len(ta[0])), max_size=8),
    st.booleans(),
    st.booleans(),
)
def test_round_trips_generated_papers(
    pairs: list[tuple[str, str]], with_header: bool, crlf: bool
) -> None:
    text = (HEADER if with_header else "") + "\n\n".join(f"{t}\n\n{a}" for t, a in pairs)
    if crlf:
        text = text.replace("\n", "\r\n")
    papers = parse_page_text(text)
    assert [(p.title, p.abstract) for p in papers] == pairs
    assert all(
        p.id is None and p.url and p.url.startswith("https://huggingface.co/papers?q=")
        for p in papers
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "paper",
                    "id",
                    "title",
                    "summary",
                    "authors",
                    "name",
                    "hidden",
                    "upvotes",
                    "numComments",
                    "publishedAt",
                    "ai_keywords",
                    "githubRepo",
                    "githubStars",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_hf_parser_never_crashes_on_any_json_list(entries: list[object]) -> None:
    papers = parse_entries(entries, origin="fuzz")
    assert all(isinstance(p, Paper) and p.title for p in papers)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_body_gives_papers_or_one_line_format_error(body: bytes) -> None:
    try:
        papers = parse_document(body, origin="fuzz", settings=SourceSettings())
    except SourceFormatError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz")
    else:
        assert all(isinstance(p, Paper) for p in papers)
