"""Subscriber lists where they live: a hand-sized YAML file, and 100,000 readers in the
state database.

Run: ``python3 -m benchmarks.bench_subscribers [--count N] [--yaml-count M]``.

1. The YAML file (``--yaml-count``, default 5,000, the size people edit by hand):
   ``load_subscribers`` (libyaml, aliases/duplicates refused, every field validated)
   against a plain ``yaml.load(CSafeLoader)`` of the same file in the same run, and one
   ``add`` (locked, checked by libyaml, the entry appended as ruamel writes it, the new
   text validated, backed up, atomic), and one ``set`` and one ``remove`` in the middle
   of the list (the same, the entry's text edited in place).
2. The state database (``--count``, default 100,000): ``subscribers import`` of the list
   (one transaction), then ``StateStore.load`` (batches by row id, every entry
   validated) and the peak memory of reading it batch by batch.

Every timing is the median of ``--repeat`` runs; the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml
from email_validator import validate_email

from newsletter.listfile import edit_subscribers
from newsletter.state import SUBSCRIBER_BATCH, State
from newsletter.stores import StateStore
from newsletter.subscribers import load_subscribers, normalize_email

DEFAULT_COUNT = 100_000
"""Subscribers in the state database."""

DEFAULT_YAML_COUNT = 5_000
"""Subscribers in the YAML file."""

DEFAULT_REPEAT = 3
"""Runs timed; the median is reported (the machine is shared)."""

CALIBRATION_LOOPS = 10_000_000
"""Steps of the pure-Python loop that shows how fast the machine is."""

TOPICS = (
    "Robotics & embodied AI",
    "Multimodal LLMs",
    "Image & video generation",
    "LLM reasoning & RL",
    "Agents & tool use",
)
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
STYLES = ("tldr", "abstract", "titles")


def write_list(path: Path, count: int) -> None:
    """A subscriber list of ``count`` valid entries."""
    with path.open("w", encoding="utf-8") as out:
        out.write("# generated for the benchmark\nsubscribers:\n")
        for i in range(count):
            if i % 100 == 0:
                out.write(f"  # block {i // 100}\n")
            topics = ", ".join(f'"{TOPICS[(i + k) % len(TOPICS)]}"' for k in range(i % 3))
            out.write(
                f"  - email: reader.{i}@example.org\n"
                f"    name: Reader {i}\n"
                f"    topics: [{topics}]\n"
                f"    keywords: [diffusion, agents]\n"
                f"    max_papers: {5 + i % 20}\n"
                f"    summary: {STYLES[i % 3]}\n"
                f"    timezone: {ZONES[i % len(ZONES)]}\n"
                f"    active: true\n"
                f"    added: 2026-01-{1 + i % 28:02d}\n"
            )


def calibrate() -> float:
    """Seconds for a fixed pure-Python loop: how fast this machine runs Python today."""
    start = time.perf_counter()
    total = 0
    for i in range(CALIBRATION_LOOPS):
        total += i
    return time.perf_counter() - start


def _median_seconds(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_yaml(folder: Path, count: int, repeat: int) -> None:
    path = folder / "subscribers.yaml"
    write_list(path, count)
    text = path.read_text(encoding="utf-8")
    ours = _median_seconds(repeat, lambda: load_subscribers(path, known_topics=TOPICS))
    base = _median_seconds(repeat, lambda: yaml.load(text, Loader=yaml.CSafeLoader))
    subscribers = load_subscribers(path, known_topics=TOPICS)
    baseline = yaml.load(text, Loader=yaml.CSafeLoader)["subscribers"]
    assert [s.email for s in subscribers] == [b["email"] for b in baseline]
    addresses = [b["email"] for b in baseline]
    slow = _median_seconds(
        1, lambda: [validate_email(a, check_deliverability=False) for a in addresses]
    )
    fast = _median_seconds(1, lambda: [normalize_email(a) for a in addresses])
    print(f"YAML file: {count:,} subscribers, {path.stat().st_size / 1e6:.1f} MB")
    print(f"  load_subscribers (libyaml, validated), median of {repeat}: {ours:.2f} s")
    print(f"  baseline yaml.load(CSafeLoader), no checks, same run: {base:.2f} s")
    print(f"  ratio load_subscribers / baseline: {ours / base:.2f}")
    print(f"  address checks: email-validator {slow:.2f} s, ours {fast:.2f} s")

    def add_one() -> None:
        with edit_subscribers(path, known_topics=TOPICS) as doc:
            doc.add({"email": f"more.{time.monotonic_ns()}@example.org"})

    edit = _median_seconds(repeat, add_one)
    print(f"  one 'add' (locked, libyaml check, entry appended, validated, atomic): {edit:.2f} s")
    readers = iter(range(count // 2, count))

    def set_one() -> None:
        with edit_subscribers(path, known_topics=TOPICS) as doc:
            doc.update(f"reader.{next(readers)}@example.org", {"name": "Set", "max_papers": None})

    def remove_one() -> None:
        with edit_subscribers(path, known_topics=TOPICS) as doc:
            assert doc.remove(f"reader.{next(readers)}@example.org")

    edit = _median_seconds(repeat, set_one)
    print(f"  one 'set' (the same, the entry's window round-tripped by ruamel): {edit:.2f} s")
    edit = _median_seconds(repeat, remove_one)
    print(f"  one 'remove' (the same): {edit:.2f} s")


def bench_state(folder: Path, count: int, repeat: int) -> None:
    url = f"sqlite:///{folder / 'state.db'}"
    entries = [
        {
            "email": f"reader.{i}@example.org",
            "name": f"Reader {i}",
            "topics": [TOPICS[(i + k) % len(TOPICS)] for k in range(i % 3)],
            "keywords": ["diffusion", "agents"],
            "max_papers": 5 + i % 20,
            "summary": STYLES[i % 3],
            "timezone": ZONES[i % len(ZONES)],
            "active": True,
            "added": f"2026-01-{1 + i % 28:02d}",
        }
        for i in range(count)
    ]
    start = time.perf_counter()
    with State(url) as state:
        added = state.add_subscribers(entries)
    imported = time.perf_counter() - start
    assert added == count
    store = StateStore(url)
    loaded = _median_seconds(repeat, lambda: store.load(TOPICS))
    tracemalloc.start()
    seen = sum(len(batch) for batch in store.batches(TOPICS))
    _now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == count
    print(f"state database (SQLite): {count:,} subscribers")
    print(f"  import (one transaction): {imported:.2f} s")
    print(
        f"  StateStore.load (batches of {SUBSCRIBER_BATCH:,}, validated), "
        f"median of {repeat}: {loaded:.2f} s"
    )
    print(f"  reading batch by batch: peak traced memory {peak / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--yaml-count", type=int, default=DEFAULT_YAML_COUNT)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    print(
        f"machine: {CALIBRATION_LOOPS // 1_000_000}M-step Python loop in {calibrate():.2f} s "
        "(about 0.35 s on a recent laptop)"
    )
    with tempfile.TemporaryDirectory() as folder:
        bench_yaml(Path(folder), args.yaml_count, args.repeat)
        bench_state(Path(folder), args.count, args.repeat)


if __name__ == "__main__":
    main()
