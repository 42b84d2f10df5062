from __future__ import annotations

import math

from newsletter.models import Paper
from newsletter.similarity import SimilarityIndex, cosine, paper_terms
from tests.steer_papers import ALL, DIFFUSION, LANGUAGE, ROBOTICS


def test_a_paper_is_most_like_papers_of_its_own_subject() -> None:
    index = SimilarityIndex(ALL)
    for group in (ROBOTICS, DIFFUSION, LANGUAGE):
        for paper in group:
            near, score = index.nearest(paper, ALL)
            assert near is not None and near in group, (paper.title, near)
            assert 0.0 < score < 1.0


def test_similarity_is_a_symmetric_cosine_between_zero_and_one() -> None:
    index = SimilarityIndex(ALL)
    a, b = ROBOTICS[0], DIFFUSION[0]
    assert index.similarity(a, b) == index.similarity(b, a)
    assert math.isclose(index.similarity(a, a), 1.0)
    assert index.similarity(ROBOTICS[0], ROBOTICS[2]) > index.similarity(ROBOTICS[0], b)


def test_papers_without_a_shared_term_score_zero_and_empty_text_is_harmless() -> None:
    x = Paper(title="Quantum annealing", abstract="Spin glasses cool slowly.")
    y = Paper(title="Sourdough bread", abstract="Yeast ferments flour overnight.")
    empty = Paper(title="", abstract="")
    index = SimilarityIndex([x, y, empty])
    assert index.similarity(x, y) == 0.0
    assert index.similarity(x, empty) == 0.0


def test_terms_fold_case_and_accents_stem_plurals_and_keep_keywords_and_categories() -> None:
    p = Paper(
        title="Robots and Ünits",
        abstract="the robot of units",
        keywords=("Diffusion Models",),
        categories=("cs.RO",),
    )
    terms = paper_terms(p)
    assert terms["robot"] == 3  # twice from the title, once from the abstract
    assert terms["unit"] == 3
    assert terms["kw:diffusion models"] == 1
    assert terms["cat:cs.ro"] == 1
    assert "the" not in terms and "and" not in terms


def test_a_paper_outside_the_index_is_weighed_with_its_idf() -> None:
    index = SimilarityIndex(ROBOTICS)
    assert index.similarity(DIFFUSION[0], DIFFUSION[1]) > 0.1
    assert cosine({}, {"a": 1.0}) == 0.0
