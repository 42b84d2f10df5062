"""How alike two papers are, from their own text and keywords (pure, local, no model).

A paper becomes a TF-IDF vector over three kinds of terms::

    words     title (counted TITLE_REPEAT times) + abstract + the source's keywords,
              folded (lowercase, no diacritics), light plural stemming, stopwords
              and words shorter than MIN_WORD_CHARS left out
    kw:...    each source keyword (HF ``ai_keywords``) as one whole term
    cat:...   each arXiv category

    weight(term) = (1 + log tf) * idf,   idf = log((1 + N) / (1 + df)) + 1

over the N papers of the index (the papers that are compared: a day or a week plus
the papers a reader gave feedback on), L2-normalised, so that
``similarity(a, b)`` is the cosine of the two vectors: 1.0 for the same text, 0.0 for
papers without a shared term. Plain scikit-learn-style smoothed TF-IDF: on the page
day (``python3 -m benchmarks.bench_similarity``) it puts a paper's nearest neighbour in
its own topic for most papers, for a few milliseconds per 100 papers; an embedding model
would do better on paraphrase but needs a download and a GPU-sized budget we do not have.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from newsletter.models import Paper
from newsletter.topics import fold, stem

TITLE_REPEAT = 2
"""The title's words count this many times (a title says what a paper is about)."""

MIN_WORD_CHARS = 3
"""Shorter words are left out (``a``, ``of``, ``3d`` survive only as keywords)."""

_STOPWORD_TEXT = """
    about above across after again against all also among and any are around based
    because been before being below best better between both but can could did does
    doing done down during each either even every few for from further given had has
    have having here how however into its itself just large less like made make many
    may more most much must new not novel now often only other our out over own paper
    per propose proposed provide rather same several should show shows significant
    since some such than that the their them then there these they this those through
    thus too under until upon use used uses using very via was way well were what when
    where whether which while who whose why will with within without work would yet you
    approach approaches method methods model models result results task tasks data
    performance existing first two three one state art demonstrate achieve achieves
    experiments experimental introduce present framework study studies we also
"""

STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that say nothing about a paper's subject (English function words and the
boilerplate of abstracts)."""

_WORD = re.compile(r"[a-z][a-z0-9]+")

Vector = Mapping[str, float]


def paper_terms(paper: Paper) -> Counter[str]:
    """The raw term counts of ``paper`` (see the module docstring)."""
    counts: Counter[str] = Counter()
    for text, times in ((paper.title, TITLE_REPEAT), (paper.abstract, 1)):
        for word in _WORD.findall(fold(text)):
            if len(word) >= MIN_WORD_CHARS and word not in STOPWORDS:
                counts[stem(word)] += times
    for keyword in paper.keywords:
        folded = " ".join(_WORD.findall(fold(keyword)))
        if folded:
            counts["kw:" + folded] += 1
            for word in folded.split():
                if len(word) >= MIN_WORD_CHARS and word not in STOPWORDS:
                    counts[stem(word)] += 1
    for category in paper.categories:
        counts["cat:" + category.strip().lower()] += 1
    return counts


class SimilarityIndex:
    """TF-IDF vectors of a set of papers, by ``Paper.key``, and cosine similarity."""

    __slots__ = ("_idf", "_missing_idf", "_pairs", "_vectors")

    def __init__(self, papers: Iterable[Paper]) -> None:
        terms: dict[str, Counter[str]] = {}
        for paper in papers:
            if paper.key not in terms:
                terms[paper.key] = paper_terms(paper)
        df: Counter[str] = Counter()
        for counts in terms.values():
            df.update(counts.keys())
        n = len(terms)
        self._idf = {term: math.log((1 + n) / (1 + d)) + 1.0 for term, d in df.items()}
        self._missing_idf = math.log(1 + n) + 1.0
        self._vectors = {key: self._weigh(counts) for key, counts in terms.items()}
        self._pairs: dict[tuple[str, str], float] = {}

    def _weigh(self, counts: Mapping[str, int]) -> dict[str, float]:
        weights = {
            term: (1.0 + math.log(tf)) * self._idf.get(term, self._missing_idf)
            for term, tf in counts.items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {term: w / norm for term, w in weights.items()} if norm else {}

    def __len__(self) -> int:
        return len(self._vectors)

    def vector(self, paper: Paper) -> Vector:
        """The paper's vector (papers outside the index are weighed with its IDF)."""
        found = self._vectors.get(paper.key)
        if found is None:
            found = self._weigh(paper_terms(paper))
            self._vectors[paper.key] = found
        return found

    def similarity(self, a: Paper, b: Paper) -> float:
        """Cosine similarity of two papers, in [0, 1] (each pair worked out once)."""
        pair = (a.key, b.key) if a.key <= b.key else (b.key, a.key)
        found = self._pairs.get(pair)
        if found is None:
            found = self._pairs[pair] = cosine(self.vector(a), self.vector(b))
        return found

    def row(self, paper: Paper, others: Sequence[Paper]) -> tuple[float, ...]:
        """``paper``'s similarity to each of ``others`` (0.0 to itself), each vector
        looked up once: the rows of many readers' feedback over one list."""
        key = paper.key
        mine = self.vector(paper)
        pairs = self._pairs
        out: list[float] = []
        for other in others:
            okey = other.key
            if okey == key:
                out.append(0.0)
                continue
            pair = (key, okey) if key <= okey else (okey, key)
            found = pairs.get(pair)
            if found is None:
                found = pairs[pair] = cosine(mine, self.vector(other))
            out.append(found)
        return tuple(out)

    def nearest(self, paper: Paper, others: Sequence[Paper]) -> tuple[Paper | None, float]:
        """The paper of ``others`` most like ``paper`` (not itself) and how alike they are."""
        mine = self.vector(paper)
        best: Paper | None = None
        best_score = 0.0
        for other in others:
            if other.key == paper.key:
                continue
            score = cosine(mine, self.vector(other))
            if score > best_score:
                best, best_score = other, score
        return best, best_score


def cosine(a: Vector, b: Vector) -> float:
    """The dot product of two L2-normalised sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    return min(sum(w * b.get(term, 0.0) for term, w in a.items()), 1.0)
