"""Render the full digest of every real day in shared/data and check what a reader sees.

    python3 -m benchmarks.check_digests [--data DIR]

For each HF day (``DIR/hf/*.json``, dated by its file name), the arXiv feeds and API
responses (``DIR/arxiv/*.xml``) and the Daily Papers page text, the full digest is
planned as ``preview`` plans it (default settings, ranked as of the day's send time) and
printed: papers, sections (with their sizes), the subject and its length, the longest
TL;DR against ``digest.tldr_chars``, and whether the scores follow the votes (Kendall's
tau between score and upvotes, and upvotes + comments, which the score counts alike).
Exit 1 when a subject exceeds MAX_SUBJECT_CHARS, a TL;DR its limit, or a day of up to
20 papers has more than MAX_SECTIONS_20 sections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import re
import sys
from pathlib import Path

from newsletter.config import Settings
from newsletter.models import Day
from newsletter.pipeline import PreparedDay, plan_day
from newsletter.render import summary_text
from newsletter.sources.common import merge_duplicates
from newsletter.sources.files import read_path
from newsletter.templating import load_templates
from newsletter.topics import load_taxonomy

DEFAULT_DATA = "/work/shared/data"
"""Where the shared evaluation data lives."""

MAX_SUBJECT_CHARS = 78
"""No subject may be longer (a phone's inbox list shows about 70)."""

MAX_SECTIONS_20 = 8
"""A day of up to 20 papers renders in at most this many sections."""

_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-a between two equally long lists (1.0: the same order)."""
    pairs = list(itertools.combinations(range(len(xs)), 2))
    if not pairs:
        return 1.0
    score = 0
    for i, j in pairs:
        a, b = xs[i] - xs[j], ys[i] - ys[j]
        score += (a > 0) - (a < 0) if b > 0 else -((a > 0) - (a < 0)) if b < 0 else 0
    return score / len(pairs)


def plan(path: Path, settings: Settings) -> PreparedDay:
    found = _DATE.search(path.name)
    date = dt.date.fromisoformat(found.group(1)) if found else dt.date(2026, 1, 5)
    papers = merge_duplicates(read_path(path, settings=settings.source))
    return plan_day(
        Day(date=date, papers=papers, source=str(path)),
        (),
        settings=settings,
        taxonomy=load_taxonomy(None),
        templates=load_templates(None),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    root = Path(args.data)
    files = sorted(root.glob("hf/*.json")) + sorted(root.glob("arxiv/*.xml"))
    files += sorted(root.glob("*.txt"))
    if not files:
        print(f"error: no days under {root}", file=sys.stderr)
        return 2
    settings = Settings()
    limit = settings.digest.tldr_chars
    failures: list[str] = []
    longest_subject = 0
    for path in files:
        prepared = plan(path, settings)
        digest, rendered = prepared.full.digest, prepared.full.rendered
        papers = digest.papers
        sizes = [len(group.papers) for group in digest.topics]
        tldrs = [summary_text(rp.paper, "tldr", rendered.summary_chars) for rp in papers]
        longest = max((len(t) for t in tldrs), default=0)
        with_votes = [rp for rp in papers if rp.paper.upvotes]
        scores = [rp.score for rp in with_votes]
        tau = kendall_tau(scores, [rp.paper.upvotes for rp in with_votes])
        tau_votes = kendall_tau(scores, [rp.paper.upvotes + rp.paper.comments for rp in with_votes])
        longest_subject = max(longest_subject, len(rendered.subject))
        print(f"{path.relative_to(root)}: {len(papers)} papers in {len(sizes)} sections {sizes}")
        print(f"  subject ({len(rendered.subject)} chars): {rendered.subject}")
        votes = (
            f"; Kendall tau of score vs upvotes {tau:.2f}, vs upvotes+comments {tau_votes:.2f}"
            if len(with_votes) > 1
            else ""
        )
        print(f"  longest TL;DR {longest}/{limit} chars{votes}")
        if len(rendered.subject) > MAX_SUBJECT_CHARS:
            failures.append(f"{path.name}: subject of {len(rendered.subject)} chars")
        if longest > limit:
            failures.append(f"{path.name}: a TL;DR of {longest} chars")
        if len(papers) <= 20 and len(sizes) > MAX_SECTIONS_20:
            failures.append(f"{path.name}: {len(sizes)} sections for {len(papers)} papers")
    print(f"{len(files)} days; longest subject {longest_subject} chars (limit {MAX_SUBJECT_CHARS})")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
