"""Render benchmark: a render per variant + a fill per subscriber, vs a render per subscriber.

    python3 -m benchmarks.bench_render [--subscribers 10000] [--variants 20] [--naive-sample 200]

The day is synthetic (61 papers, Hugging Face-like fields, 10 topics); each variant is a
different profile (summary style and chosen topics); subscribers are dealt round-robin
over the variants. The naive way (a full render per subscriber) is timed on a sample of
subscribers and extrapolated to all of them, which the output says. When
/work/shared/data/daily-papers-page.txt exists, the page day's HTML size is printed too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from newsletter.config import DigestSettings
from newsletter.models import Digest, Paper, Profile, RankedPaper, SummaryStyle, TopicGroup
from newsletter.render import SLOTS, RenderedDigest, encoded_size, render
from newsletter.sources.files import parse_page_text
from newsletter.templating import Templates, load_templates

SUBSCRIBERS = 10_000
"""Synthetic subscribers."""

VARIANTS = 20
"""Distinct profiles, each rendered once."""

NAIVE_SAMPLE = 200
"""Subscribers rendered the naive way (per subscriber); the rest is extrapolated."""

DAY_PAPERS = 61
TOPICS = 10
PAGE_DAY = Path("/work/shared/data/daily-papers-page.txt")
"""The seed page day (read only when present)."""

DATE = dt.date(2026, 11, 25)
STYLES: tuple[SummaryStyle, ...] = ("tldr", "abstract", "titles")
VOCABULARY = """diffusion policy robot manipulation language model multimodal reasoning benchmark
transformer attention dataset video generation reinforcement learning agents vision representation
scaling inference retrieval alignment tokens training evaluation"""
WORDS = tuple(VOCABULARY.split())


def synthetic_day(n: int, rng: random.Random) -> list[Paper]:
    papers = []
    for k in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).title()
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."
            for _ in range(10)
        ]
        pid = f"2511.{10000 + k}"
        papers.append(
            Paper(
                title=title,
                abstract=" ".join(sentences)[:1200],
                id=pid,
                url=f"https://huggingface.co/papers/{pid}",
                authors=tuple(f"Author {k}-{j}" for j in range(rng.randint(1, 12))),
                upvotes=rng.randint(0, 150),
                comments=rng.randint(0, 8),
                ai_summary=sentences[0] + " " + sentences[1] if k % 2 else None,
                github_repo=f"https://github.com/lab{k}/code" if k % 3 == 0 else None,
            )
        )
    return papers


def grouped(papers: Sequence[Paper], topics: int) -> tuple[TopicGroup, ...]:
    """Papers ranked in the given order, dealt round-robin into named topics."""
    names = [f"Topic {i + 1}" for i in range(topics)]
    groups: dict[str, list[RankedPaper]] = {name: [] for name in names}
    for k, paper in enumerate(papers):
        name = names[k % topics]
        groups[name].append(RankedPaper(paper, float(len(papers) - k), name, ("matches: policy",)))
    return tuple(TopicGroup(name, tuple(rps)) for name, rps in groups.items() if rps)


def variant_digests(papers: Sequence[Paper], count: int) -> list[Digest]:
    """Variant 0 is the full digest; the others keep a few topics, in one summary style."""
    groups = grouped(papers, TOPICS)
    digests = []
    for i in range(count):
        chosen = groups if i == 0 else tuple(g for j, g in enumerate(groups) if (i + j) % 3 == 0)
        profile = Profile(
            topics=tuple(g.name for g in chosen), only_topics=i > 0, summary=STYLES[i % 3]
        )
        digests.append(Digest(DATE, chosen, profile, total_papers=len(papers)))
    return digests


def subscriber_values(i: int) -> dict[str, str]:
    token = f"{i:08d}.{'k' * 40}"
    values = {
        "name": f"Subscriber {i}",
        "email": f"subscriber{i}@example.org",
        "unsubscribe_url": f"https://news.example.org/unsubscribe?t={token}",
        "preferences_url": f"https://news.example.org/preferences?t={token}",
        "feedback_url": f"https://news.example.org/f/{i:038d}",
    }
    assert set(values) == set(SLOTS)
    return values


def timed_variants(
    digests: Sequence[Digest], settings: DigestSettings, templates: Templates
) -> tuple[list[RenderedDigest], list[float]]:
    rendered, seconds = [], []
    for digest in digests:
        start = time.perf_counter()
        rendered.append(render(digest, settings=settings, templates=templates))
        seconds.append(time.perf_counter() - start)
    return rendered, seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--variants", type=int, default=VARIANTS)
    parser.add_argument("--naive-sample", type=int, default=NAIVE_SAMPLE)
    args = parser.parse_args(argv)

    settings = DigestSettings()
    templates = load_templates(None)
    papers = synthetic_day(DAY_PAPERS, random.Random(7))
    digests = variant_digests(papers, args.variants)
    n = args.subscribers

    # Warm up (template compilation, CSS parse caches) so both ways are timed warm.
    for digest in digests[:3]:
        render(digest, settings=settings, templates=templates)

    # Variant-based: render each variant once, then fill per subscriber.
    rendered, render_seconds = timed_variants(digests, settings, templates)
    values = [subscriber_values(i) for i in range(n)]
    start = time.perf_counter()
    for i in range(n):
        rendered[i % len(rendered)].fill(values[i])
    fill_total = time.perf_counter() - start
    html_bytes = max(encoded_size(r.fill(values[0])[0]) for r in rendered)
    variant_total = sum(render_seconds) + fill_total

    # Naive: a full render per subscriber, on a sample, extrapolated.
    sample = min(args.naive_sample, n)
    start = time.perf_counter()
    for i in range(sample):
        one = render(digests[i % len(digests)], settings=settings, templates=templates)
        one.fill(values[i])
    naive_each = (time.perf_counter() - start) / sample
    naive_total = naive_each * n

    print(f"day: {DAY_PAPERS} synthetic papers in {TOPICS} topics; {len(digests)} variants")
    print(
        f"render per variant: mean {statistics.mean(render_seconds) * 1e3:.1f} ms, "
        f"max {max(render_seconds) * 1e3:.1f} ms, total {sum(render_seconds):.2f} s"
    )
    print(
        f"fill per subscriber: {fill_total / n * 1e6:.1f} us "
        f"({n} subscribers, {fill_total:.2f} s); largest variant html {html_bytes} bytes"
    )
    print(f"variant-based total for {n} subscribers: {variant_total:.2f} s")
    print(
        f"naive per-subscriber render: {naive_each * 1e3:.1f} ms each, measured on {sample} "
        f"subscribers, extrapolated to {n}: {naive_total:.1f} s"
    )
    print(f"ratio naive / variant-based: {naive_total / variant_total:.1f}x")

    if PAGE_DAY.is_file():
        page_papers = list(parse_page_text(PAGE_DAY.read_text(encoding="utf-8")))
        digest = Digest(DATE, grouped(page_papers, TOPICS), total_papers=len(page_papers))
        start = time.perf_counter()
        page = render(digest, settings=settings, templates=templates)
        took = time.perf_counter() - start
        html, _ = page.fill(subscriber_values(0))
        linked = sum(f'href="{p.url}"' in html for p in page_papers)
        print(
            f"page day: {len(page_papers)} papers, {linked} linked, html {encoded_size(html)} "
            f"bytes as sent (worst-case slots {page.html_bytes}, budget {page.budget}), "
            f"{page.compact_papers} in the compact list, summaries {page.summary_chars} chars, "
            f"rendered in {took * 1e3:.0f} ms"
        )
    else:
        print(f"page day: {PAGE_DAY} not present, size not measured")


if __name__ == "__main__":
    main()
