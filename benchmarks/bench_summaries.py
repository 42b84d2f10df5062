"""Do the extractive TL;DRs say what Hugging Face's ``ai_summary`` says, better than the opening?

Run: ``python3 -m benchmarks.bench_summaries [--data DIR] [--chars N] [--show K]``

For every paper of the HF days (``DIR/hf/*.json``) that has an ``ai_summary``, the field
is withheld and three TL;DRs are made from the abstract, each within ``--chars``
(default: ``digest.tldr_chars``):

- ``tldr``:            :func:`newsletter.summarize.tldr` (what the reader now sees);
- ``first sentence``:  the abstract's opening sentence (cut to the limit);
- ``old lead``:        the leading sentences that fit (what the digest showed before).

Each is compared with the ``ai_summary`` by ROUGE-1 and ROUGE-2 F1 (lowercased word
unigrams/bigrams, clipped counts, no stemming, no stopword removal; computed here) and
by content-word recall (the share of the reference's words, stopwords excluded, that the
TL;DR contains). Printed: mean and median per measure, the paired win rate of ``tldr``
over the first sentence, and the longest TL;DR against its limit (it must not exceed it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from newsletter.config import DigestSettings
from newsletter.sources.hf_daily import parse_hf_json
from newsletter.summarize import sentences, tldr, trim
from newsletter.topics import STOPWORDS
from newsletter.topics import tokens as _tokens

DEFAULT_DATA = "/work/shared/data"
"""Where the shared evaluation data lives."""


def words(text: str) -> list[str]:
    """Lowercased words (the stemmer of ``newsletter.topics`` folds plurals only)."""
    return list(_tokens(text))


def ngrams(items: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(items[i : i + n]) for i in range(len(items) - n + 1))


def rouge_f(candidate: str, reference: str, n: int) -> float:
    """ROUGE-N F1 of ``candidate`` against ``reference``."""
    cand, ref = ngrams(words(candidate), n), ngrams(words(reference), n)
    overlap = sum((cand & ref).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(cand.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def content_recall(candidate: str, reference: str) -> float:
    """Share of the reference's content words found in the candidate."""
    ref = {w for w in words(reference) if w not in STOPWORDS and len(w) > 2}
    if not ref:
        return 0.0
    return len(ref & set(words(candidate))) / len(ref)


def first_sentence(abstract: str, chars: int) -> str:
    parts = sentences(abstract)
    return trim(parts[0], chars) if parts else ""


def old_lead(abstract: str, chars: int) -> str:
    return trim(" ".join(abstract.split()), chars)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--chars", type=int, default=DigestSettings().tldr_chars)
    parser.add_argument("--show", type=int, default=0, help="Print K examples.")
    args = parser.parse_args(argv)
    files = sorted(Path(args.data, "hf").glob("*.json"))
    if not files:
        print(f"error: no HF days under {args.data}/hf", file=sys.stderr)
        return 2
    methods: dict[str, Callable[[str, str, int], str]] = {
        "tldr": lambda abstract, title, chars: tldr(abstract, chars, title=title),
        "first sentence": lambda abstract, _title, chars: first_sentence(abstract, chars),
        "old lead": lambda abstract, _title, chars: old_lead(abstract, chars),
    }
    scores: dict[str, dict[str, list[float]]] = {
        m: {"rouge1": [], "rouge2": [], "recall": []} for m in methods
    }
    longest = {m: 0 for m in methods}
    days = papers = 0
    shown = 0
    for path in files:
        day = [p for p in parse_hf_json(path.read_bytes(), origin=str(path)) if p.ai_summary]
        if not day:
            continue
        days += 1
        for paper in day:
            papers += 1
            reference = paper.ai_summary or ""
            outputs = {}
            for name, method in methods.items():
                text = method(paper.abstract, paper.title, args.chars)
                outputs[name] = text
                longest[name] = max(longest[name], len(text))
                scores[name]["rouge1"].append(rouge_f(text, reference, 1))
                scores[name]["rouge2"].append(rouge_f(text, reference, 2))
                scores[name]["recall"].append(content_recall(text, reference))
            if shown < args.show:
                shown += 1
                print(f"- {paper.title}\n  ai_summary: {reference}")
                for name, text in outputs.items():
                    print(f"  {name}: {text}")
                print()
    print(f"{papers} papers with an ai_summary on {days} HF days; limit {args.chars} chars")
    print(
        f"{'method':<16}{'R-1 F mean':>11}{'median':>8}{'R-2 F mean':>12}{'median':>8}"
        f"{'recall':>8}{'longest':>9}"
    )
    for name in methods:
        s = scores[name]
        print(
            f"{name:<16}{statistics.mean(s['rouge1']):>11.3f}{statistics.median(s['rouge1']):>8.3f}"
            f"{statistics.mean(s['rouge2']):>12.3f}{statistics.median(s['rouge2']):>8.3f}"
            f"{statistics.mean(s['recall']):>8.3f}{longest[name]:>9}"
        )
    base = scores["first sentence"]
    ours = scores["tldr"]
    for measure in ("rouge1", "rouge2"):
        wins = sum(a > b for a, b in zip(ours[measure], base[measure], strict=True))
        ties = sum(a == b for a, b in zip(ours[measure], base[measure], strict=True))
        ratio = statistics.mean(ours[measure]) / max(statistics.mean(base[measure]), 1e-9)
        print(
            f"tldr vs first sentence, {measure}: x{ratio:.2f} of the mean; "
            f"better on {wins}, equal on {ties}, worse on {papers - wins - ties} of {papers}"
        )
    over = max(longest.values()) > args.chars
    print(
        f"longest TL;DR {longest['tldr']} chars (limit {args.chars}): "
        f"{'OVER THE LIMIT' if over else 'within'}"
    )
    return 1 if longest["tldr"] > args.chars else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
