"""The TL;DR a reader sees when the source has no ai_summary: the abstract's key sentence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newsletter.models import Paper
from newsletter.slots import ELLIPSIS
from newsletter.summarize import sentences, summary, tldr, trim

BACKGROUND_FIRST = (
    "Diffusion models have demonstrated remarkable capabilities in image synthesis. "
    "However, existing methods struggle with long videos, which remains challenging. "
    "In this paper, we propose LongDiff, a memory-augmented diffusion model that keeps "
    "characters consistent across minutes of video. "
    "We show that LongDiff outperforms the strongest baseline by 12% on consistency. "
    "Code is available at https://github.com/example/longdiff."
)


def test_the_contribution_is_chosen_over_the_background_opening() -> None:
    text = tldr(BACKGROUND_FIRST, 280, title="LongDiff: Consistent Long Videos")
    assert text.startswith("We propose LongDiff, a memory-augmented diffusion model")
    assert "remarkable capabilities" not in text
    assert "github" not in text
    assert text in BACKGROUND_FIRST.replace("In this paper, we", "We") or " We show" in text


def test_a_finding_sentence_joins_when_both_fit_in_the_abstract_order() -> None:
    text = tldr(BACKGROUND_FIRST, 280)
    assert text.endswith("outperforms the strongest baseline by 12% on consistency.")
    first, second = sentences(text)
    assert BACKGROUND_FIRST.index(second) > BACKGROUND_FIRST.index(first[3:])


def test_only_the_best_sentence_when_two_do_not_fit() -> None:
    text = tldr(BACKGROUND_FIRST, 140)
    assert len(sentences(text)) == 1 and len(text) <= 140
    assert "LongDiff" in text and not text.endswith(ELLIPSIS)


def test_sentences_do_not_split_after_abbreviations_or_initials() -> None:
    text = "We follow Smith et al. in using e.g. Adam. Results by J. Doe hold. Third one."
    assert sentences(text) == [
        "We follow Smith et al. in using e.g. Adam.",
        "Results by J. Doe hold.",
        "Third one.",
    ]


def test_summary_uses_the_source_tldr_when_there_is_one() -> None:
    paper = Paper(title="T", abstract=BACKGROUND_FIRST, ai_summary="  LongDiff keeps\nvideos. ")
    assert summary(paper, "tldr", 280) == "LongDiff keeps videos."
    assert summary(paper, "abstract", 90).startswith("Diffusion models have demonstrated")
    assert summary(paper, "titles", 280) == ""
    assert summary(paper, "tldr", None) == ""


def test_a_long_single_sentence_is_cut_with_an_ellipsis() -> None:
    text = tldr("We propose " + "a very long method name " * 30 + ".", 100)
    assert len(text) <= 100 and text.endswith(ELLIPSIS)


@given(
    st.text(alphabet=st.sampled_from("ab. ,WeT\n;:!?()e.g"), max_size=600),
    st.integers(min_value=1, max_value=400),
)
def test_never_longer_than_the_limit(abstract: str, limit: int) -> None:
    assert len(tldr(abstract, limit)) <= limit
    assert len(trim(" ".join(abstract.split()), limit)) <= limit


def test_a_leading_connective_is_dropped_and_the_sentence_capitalised() -> None:
    abstract = (
        "Robots have long struggled with deformable objects in homes. "
        "Second, we propose ClothNet, a policy that folds shirts from a single camera view."
    )
    assert (
        tldr(abstract, 280)
        == "We propose ClothNet, a policy that folds shirts from a single camera view."
    )
