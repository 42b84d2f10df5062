"""Parse every real response in shared/data and print what each source parser made of it.

    python3 -m benchmarks.check_sources [DATA_DIR]

DATA_DIR defaults to ../shared/data next to the repository (or $NEWSLETTER_SHARED_DATA);
when it is absent the script says so and exits 0. For each file it prints the papers
parsed, the papers after merging duplicates, how many carry an id, an ai_summary and
authors, and the parse time beside a baseline: the bare stdlib parse of the same bytes
(json.loads / ElementTree.fromstring / str.splitlines), as a ratio.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from newsletter.config import SourceSettings
from newsletter.errors import SourceError
from newsletter.sources.common import merge_duplicates
from newsletter.sources.files import parse_document

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
"""Where the shared data lives relative to a checkout or worktree (/work/<x>/<repo>)."""

REPEATS = 5
"""Timing runs per file; the best is reported."""

EXPECTED_PAGE_PAPERS = 61
"""Papers in daily-papers-page.txt, counted by hand."""


def _data_dir(argv: list[str]) -> Path:
    if argv:
        return Path(argv[0])
    env = os.environ.get("NEWSLETTER_SHARED_DATA")
    if env:
        return Path(env)
    for candidate in (DEFAULT_DATA, Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return DEFAULT_DATA


def _best(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _baseline(body: bytes) -> Callable[[], object]:
    text = body.decode("utf-8-sig")
    head = text.lstrip()[:1]
    if head in "[{" and head:
        return lambda: json.loads(text)
    if head == "<":
        return lambda: ET.fromstring(body)
    return text.splitlines


def main(argv: list[str] | None = None) -> int:
    """Print one line per file and a total; 1 if a file fails or the page count is off."""
    logging.basicConfig(level=logging.ERROR)
    data = _data_dir(sys.argv[1:] if argv is None else argv)
    if not data.is_dir():
        print(f"check_sources: {data} not found; nothing to check (skipped)")
        return 0
    files = [
        *sorted((data / "hf").glob("*.json")),
        *sorted((data / "arxiv").glob("*.xml")),
        data / "daily-papers-page.txt",
    ]
    settings = SourceSettings()
    header = (
        f"{'file':<42} {'parsed':>6} {'merged':>6} {'ids':>4} {'ai_sum':>6} {'authors':>7} "
        f"{'ms':>7} {'base ms':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    failures = 0
    total = 0
    for path in files:
        if not path.exists():
            print(f"{path.name:<42} missing")
            failures += 1
            continue
        name = str(path.relative_to(data))
        body = path.read_bytes()
        try:
            papers = parse_document(body, origin=name, settings=settings)
        except SourceError as exc:
            print(f"{name:<42} ERROR {exc}")
            failures += 1
            continue
        merged = merge_duplicates(papers)
        total += len(merged)
        ours = _best(functools.partial(parse_document, body, origin=name, settings=settings))
        base = _best(_baseline(body))
        print(
            f"{name:<42} {len(papers):>6} {len(merged):>6} "
            f"{sum(1 for p in merged if p.id):>4} {sum(1 for p in merged if p.ai_summary):>6} "
            f"{sum(1 for p in merged if p.authors):>7} {ours * 1000:>7.2f} {base * 1000:>7.2f} "
            f"{ours / base if base else float('nan'):>5.1f}x"
        )
        if path.name == "daily-papers-page.txt" and len(merged) != EXPECTED_PAGE_PAPERS:
            print(f"  expected {EXPECTED_PAGE_PAPERS} papers on the page, got {len(merged)}")
            failures += 1
    print("-" * len(header))
    print(f"{len(files)} files, {total} papers, {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
