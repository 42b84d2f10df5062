"""Property tests of the page-text parser: never crashes, round-trips what it is given."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.models import Paper
from newsletter.sources.files import HEADER_LINES, MAX_TITLE_CHARS, parse_page_text

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


@settings(max_examples=100, deadline=None)
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
