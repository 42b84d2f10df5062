"""Load 100,000 subscribers; compare with a plain ``yaml.load(CSafeLoader)`` of the same file.

Run: ``python3 -m benchmarks.bench_subscribers [--count N]``. The file is generated in a
temporary folder: realistic entries (every field, flow lists, comments every 100 entries).
Prints the load time, the baseline time and their ratio, and, as a check, that the
validating load agrees with the baseline on every address.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from email_validator import validate_email

from newsletter.listfile import edit_subscribers
from newsletter.subscribers import load_subscribers, normalize_email

DEFAULT_COUNT = 100_000
"""Subscribers in the generated file."""

DEFAULT_REPEAT = 3
"""Loads timed; the best is reported (the machine is shared)."""

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "subscribers.yaml"
        write_list(path, args.count)
        size = path.stat().st_size
        print(f"file: {args.count} subscribers, {size / 1e6:.1f} MB")
        print(
            f"machine: {CALIBRATION_LOOPS // 1_000_000}M-step Python loop in {calibrate():.2f} s "
            "(about 0.35 s on a recent laptop)"
        )

        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subscribers = load_subscribers(path, known_topics=TOPICS)
            times.append(time.perf_counter() - start)
        ours = min(times)

        text = path.read_text(encoding="utf-8")
        start = time.perf_counter()
        baseline = yaml.load(text, Loader=yaml.CSafeLoader)
        base = time.perf_counter() - start

        assert len(subscribers) == len(baseline["subscribers"]) == args.count
        assert all(
            s.email == b["email"] for s, b in zip(subscribers, baseline["subscribers"], strict=True)
        )
        addresses = [b["email"] for b in baseline["subscribers"]]
        start = time.perf_counter()
        for address in addresses:
            validate_email(address, check_deliverability=False)
        slow_check = time.perf_counter() - start
        start = time.perf_counter()
        for address in addresses:
            normalize_email(address)
        fast_check = time.perf_counter() - start

        print(f"load_subscribers (validating, libyaml), best of {args.repeat}: {ours:.2f} s")
        print(f"baseline yaml.load(CSafeLoader), no validation: {base:.2f} s")
        print(f"ratio load_subscribers / baseline: {ours / base:.2f}")
        print(
            f"address checks: email-validator {slow_check:.2f} s, our fast path "
            f"{fast_check:.2f} s (ratio {fast_check / slow_check:.2f})"
        )

        start = time.perf_counter()
        with edit_subscribers(path, known_topics=TOPICS) as doc:
            doc.add({"email": "one.more@example.org", "topics": [TOPICS[0]]})
        edit = time.perf_counter() - start
        print(f"one 'add' (locked, validated, backed up, atomic): {edit:.2f} s")


if __name__ == "__main__":
    main()
