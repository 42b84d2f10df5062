"""How sensible are the topics? Agreement with arXiv categories, and sections to read.

Run: ``python3 -m benchmarks.eval_topics [--data DIR] [--taxonomy FILE] [--quiet]``

(a) Labelled arXiv abstracts (``DIR/labelled/*.jsonl``, each with its arXiv categories).
    Topics are assigned from the **text only** (categories removed, so the figure measures
    the keywords, not the category table), then once more with categories as evidence.
    Each taxonomy topic names the arXiv categories it stands for (``TopicDef.categories``);
    that is the mapping used here:

    - coverage: share of papers put in a taxonomy topic (not a cluster, not "Other");
    - primary accuracy: among covered papers whose predicted topic maps to categories
      (every topic but "Datasets & benchmarks") and whose primary category some topic
      maps to, the share whose predicted topic maps to that primary category;
    - any-category accuracy: the same, where any of the paper's categories counts;
    - purity: each predicted section (clusters and "Other" included) counts its most
      common primary category; summed over sections, divided by all papers;
    - NMI: normalised mutual information (arithmetic mean of entropies) between the
      predicted section and the primary category, over all papers.

    The baseline, run in the same process, is the naive rule "first topic of the
    taxonomy with a keyword in the title (substring match), else Other".

(c) Ranking speed: the page day's papers (with synthetic upvotes and authors) ranked for
    50 distinct profiles (keywords, authors, topics, max_papers), beside the baseline of
    sorting the same papers by trending score alone, as a ratio.

(b) The page day (``DIR/daily-papers-page.txt``) and every HF API day (``DIR/hf/*.json``,
    with ``ai_keywords`` when present): the sections with their sizes and paper titles,
    for a human to judge, and the time taken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from newsletter.models import Paper, Profile, RankedPaper, TopicDef
from newsletter.rank import rank, trending_score
from newsletter.sources.files import parse_page_text
from newsletter.topics import OTHER, assign_topics, group, load_taxonomy

DEFAULT_DATA = "/work/shared/data"
"""Where the shared evaluation data lives."""

PAGE_HEADER_LINES = 9
"""The page-day text starts with this many header lines (incl. blanks) before the papers."""

Assigner = Callable[[Sequence[Paper], Sequence[TopicDef]], dict[str, str]]


# --------------------------------------------------------------------------- loaders


def read_labelled(folder: Path) -> list[Paper]:
    papers = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            papers.append(
                Paper(
                    title=" ".join(item["title"].split()),
                    abstract=" ".join(item["summary"].split()),
                    id=item["id"],
                    categories=tuple(item.get("categories") or ()),
                )
            )
    return papers


def read_hf_day(path: Path) -> list[Paper]:
    papers = []
    for entry in json.loads(path.read_text(encoding="utf-8")):
        paper = entry.get("paper", entry)
        papers.append(
            Paper(
                title=" ".join(str(paper.get("title", "")).split()),
                abstract=" ".join(str(paper.get("summary", "")).split()),
                id=paper.get("id"),
                upvotes=int(paper.get("upvotes") or 0),
                keywords=tuple(paper.get("ai_keywords") or ()),
            )
        )
    return papers


# --------------------------------------------------------------------------- metrics


def naive_assign(papers: Sequence[Paper], taxonomy: Sequence[TopicDef]) -> dict[str, str]:
    """Baseline: the first topic with a keyword in the lowercased title, else Other."""
    out = {}
    for paper in papers:
        title = paper.title.lower()
        out[paper.key] = next(
            (t.name for t in taxonomy if any(k.rstrip("*").lower() in title for k in t.keywords)),
            OTHER,
        )
    return out


def entropy(counts: Sequence[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c) if total else 0.0


def nmi(pred: Sequence[str], truth: Sequence[str]) -> float:
    joint = Counter(zip(pred, truth, strict=True))
    p_count = Counter(pred)
    t_count = Counter(truth)
    n = len(pred)
    mutual = sum(
        c / n * math.log((c / n) / ((p_count[p] / n) * (t_count[t] / n)))
        for (p, t), c in joint.items()
    )
    denom = (entropy(list(p_count.values())) + entropy(list(t_count.values()))) / 2
    return mutual / denom if denom else 1.0


def agreement(
    papers: Sequence[Paper], assigned: Mapping[str, str], taxonomy: Sequence[TopicDef]
) -> dict[str, float]:
    cats = {t.name: set(t.categories) for t in taxonomy}
    mapped = set().union(*cats.values())
    covered = [p for p in papers if assigned[p.key] in cats]
    with_mapping = [p for p in covered if cats[assigned[p.key]]]
    scorable = [p for p in with_mapping if p.categories and p.categories[0] in mapped]
    primary_ok = sum(1 for p in scorable if p.categories[0] in cats[assigned[p.key]])
    any_scorable = [p for p in with_mapping if set(p.categories) & mapped]
    any_ok = sum(1 for p in any_scorable if set(p.categories) & cats[assigned[p.key]])
    sections: dict[str, Counter[str]] = {}
    for p in papers:
        sections.setdefault(assigned[p.key], Counter())[p.categories[0]] += 1
    purity = sum(c.most_common(1)[0][1] for c in sections.values()) / len(papers)
    pred = [assigned[p.key] for p in papers]
    truth = [p.categories[0] for p in papers]
    return {
        "coverage": len(covered) / len(papers),
        "primary accuracy": primary_ok / len(scorable) if scorable else 0.0,
        "any-category accuracy": any_ok / len(any_scorable) if any_scorable else 0.0,
        "purity": purity,
        "NMI": nmi(pred, truth),
        "sections": float(len(sections)),
    }


# --------------------------------------------------------------------------- reports


def evaluate_labelled(papers: Sequence[Paper], taxonomy: Sequence[TopicDef]) -> None:
    text_only = [Paper(title=p.title, abstract=p.abstract, id=p.id, categories=()) for p in papers]
    runs: list[tuple[str, Assigner, Sequence[Paper]]] = [
        ("baseline: first title keyword", naive_assign, text_only),
        ("assign_topics, text only", assign_topics, text_only),
        ("assign_topics, text + categories", assign_topics, papers),
    ]
    primaries = Counter(p.categories[0] for p in papers)
    print(
        f"(a) labelled arXiv abstracts: {len(papers)} papers, primary categories {dict(primaries)}"
    )
    results = {}
    for label, assign, data in runs:
        started = time.perf_counter()
        assigned = assign(data, taxonomy)
        elapsed = time.perf_counter() - started
        results[label] = agreement(papers, assigned, taxonomy)
        figures = ", ".join(
            f"{k} {v:.3f}" if k != "sections" else f"{k} {v:.0f}" for k, v in results[label].items()
        )
        print(f"  {label:36s} {figures}  ({elapsed * 1000:.0f} ms)")
    base = results[runs[0][0]]
    ours = results[runs[1][0]]
    for metric in ("primary accuracy", "any-category accuracy", "purity", "NMI"):
        ratio = ours[metric] / base[metric] if base[metric] else float("inf")
        print(f"  text-only vs baseline, {metric}: {ratio:.2f}x")
    assigned = assign_topics(text_only, taxonomy)
    table: dict[str, Counter[str]] = {}
    for p in papers:
        table.setdefault(assigned[p.key], Counter())[p.categories[0]] += 1
    print("  predicted section -> primary categories (text only):")
    for name, counts in sorted(table.items(), key=lambda item: -sum(item[1].values())):
        top = ", ".join(f"{c} {n}" for c, n in counts.most_common(4))
        print(f"    {sum(counts.values()):4d}  {name}: {top}")


def show_day(
    label: str, papers: Sequence[Paper], taxonomy: Sequence[TopicDef], *, quiet: bool
) -> None:
    started = time.perf_counter()
    assigned = assign_topics(papers, taxonomy)
    ranked = [RankedPaper(paper=p, score=float(p.upvotes), topic=assigned[p.key]) for p in papers]
    groups = group(ranked, taxonomy)
    elapsed = time.perf_counter() - started
    sizes = ", ".join(f"{g.name} {len(g.papers)}" for g in groups)
    print(f"\n{label}: {len(papers)} papers, {len(groups)} sections in {elapsed * 1000:.0f} ms")
    print(f"  sizes: {sizes}")
    if quiet:
        return
    for g in groups:
        print(f"  == {g.name} ({len(g.papers)})")
        for rp in g.papers:
            print(f"       - {rp.paper.title[:110]}")


RANK_VARIANTS = 50
"""Profiles ranked in the speed figure."""

RANK_REPEATS = 5
"""The speed figure is the best of this many runs."""


def rank_speed(papers: Sequence[Paper], taxonomy: Sequence[TopicDef]) -> None:
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    papers = [
        Paper(
            title=p.title,
            abstract=p.abstract,
            id=f"2611.{i:05d}",
            authors=tuple(f"Author{j} Person{i}" for j in range(8)),
            upvotes=(i * 37) % 150,
            comments=i % 4,
            submitted_at=now - dt.timedelta(hours=i % 30),
        )
        for i, p in enumerate(papers)
    ]
    topics = assign_topics(papers, taxonomy)
    names = [t.name for t in taxonomy]
    words = ["diffusion policy", "world model", "prompt tuning", "VLA", "reward", "benchmark"]
    profiles = [
        Profile(
            keywords=(words[v % len(words)], words[(v * 7) % len(words)]),
            authors=(f"A. Person{v}",),
            topics=(names[v % len(names)],),
            only_topics=v % 5 == 0,
            max_papers=10 + v % 20,
        )
        for v in range(RANK_VARIANTS)
    ]

    def personal() -> None:
        for profile in profiles:
            rank(papers, profile, topics=topics, now=now)

    def baseline() -> None:
        for _ in profiles:
            sorted(papers, key=lambda p: -trending_score(p, now=now))

    timings = {}
    for label, run in (("trending sort only (baseline)", baseline), ("rank()", personal)):
        best = min(_timed(run) for _ in range(RANK_REPEATS))
        timings[label] = best
        per = best / RANK_VARIANTS * 1000
        print(
            f"  {label:30s} {best * 1000:7.1f} ms for {RANK_VARIANTS} variants ({per:.2f} ms each)"
        )
    ratio = timings["rank()"] / timings["trending sort only (baseline)"]
    print(f"  rank() vs baseline: {ratio:.1f}x the time")


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--taxonomy", default=None, help="a taxonomy YAML (default: shipped)")
    parser.add_argument("--quiet", action="store_true", help="sizes only, no titles")
    parser.add_argument("--skip-labelled", action="store_true")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"skipped: no evaluation data at {data}")
        return 0
    taxonomy = load_taxonomy(args.taxonomy)
    labelled = read_labelled(data / "labelled")
    if labelled and not args.skip_labelled:
        evaluate_labelled(labelled, taxonomy)
    page = data / "daily-papers-page.txt"
    if page.is_file():
        papers = list(parse_page_text(page.read_text(encoding="utf-8")))
        show_day(f"(b) page day {page.name}", papers, taxonomy, quiet=args.quiet)
        print(f"\n(c) ranking {len(papers)} papers for {RANK_VARIANTS} profiles")
        rank_speed(papers, taxonomy)
    for path in sorted((data / "hf").glob("*.json")):
        show_day(f"(b) HF day {path.name}", read_hf_day(path), taxonomy, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
