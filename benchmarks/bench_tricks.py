"""Each speed trick the package keeps, timed on and off in the same run (medians).

    python3 -m benchmarks.bench_tricks [--subscribers 100000] [--variants 60] [--repeat 5]

On the page day (/work/shared/data/daily-papers-page.txt; the bundled sample day when
absent) with the synthetic list of ``bench_scale``:

* the four caches of ``newsletter.templating.Templates``, each emptied before every render
  (as if it did not exist) against one ``Templates`` for the day: premailer's parsed
  stylesheet (``css_rules``), the text part's wrapped lines (``wrapped_lines``), the
  papers' views (``paper_views``) and the one-line texts (``lines``); the figure is
  rendering every variant of the day;
* ``newsletter.headers.qp_value``'s shortcut for printable ASCII (each address and most
  names in the text part) and ``qp_link`` (each link, known to be printable ASCII: the
  same lines without the checks), the lines of ``binascii.b2a_qp`` worked out without it,
  against ``qp_encoded`` (``b2a_qp`` itself) for every value; the figure is the MIME
  stage of ``bench_scale`` (template, link tokens, ``recipient``, ``fill``) for the list;
* ``newsletter.tokens._Mac`` (the link tokens' HMAC states copied with hashlib) against
  ``hmac.HMAC.copy``; the figure is the same MIME stage.

(``gc.freeze`` while sending was measured here too and went: a 2.8 % gain on 100k
messages, under the 5 % a trick must earn; the streaming send keeps no list to freeze.)

On and off alternate, ``--repeat`` times each; the medians of the CPU time this process
spent (``time.process_time``: on a shared host the wall time mostly measures the other
load) and the gain are printed. A trick whose median gain is under 5 % is not worth its code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import hmac
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.bench_scale import make_messages
from newsletter import headers, message, tokens
from newsletter.config import DigestSettings, Settings, SourceSettings
from newsletter.pipeline import Variant, prepare_day
from newsletter.render import render
from newsletter.templating import Templates, load_templates
from newsletter.topics import load_taxonomy
from tests.scale_helpers import DEFAULT_VARIANTS, synthetic_subscribers

PAGE_DAY = Path("/work/shared/data/daily-papers-page.txt")
DATE = dt.date(2026, 11, 25)
SECRET = b"bench-tricks-secret-0123456789abcdef"
CACHES = ("css_rules", "wrapped_lines", "paper_views", "lines")
"""The fields of Templates that keep work across the renders of a day."""


def render_day(variants: Sequence[Variant], settings: Settings, empty: str | None) -> float:
    """CPU seconds to render every variant with one Templates, ``empty`` cache emptied each time."""
    templates: Templates = load_templates(settings.digest.templates)
    started = time.process_time()
    for variant in variants:
        if empty is not None:
            getattr(templates, empty).clear()
        render(variant.digest, settings=settings.digest, templates=templates)
    return time.process_time() - started


def mime_day(
    variants: Sequence[Variant], settings: Settings, without: Sequence[tuple[object, str, object]]
) -> float:
    """CPU seconds for every message of the day; ``without``: (module, name, stand-in) of
    each name the trick is called by, replaced by its stand-in for the run."""
    kept = [(module, name, getattr(module, name)) for module, name, _ in without]
    for module, name, stand_in in without:
        setattr(module, name, stand_in)
    try:
        started = time.process_time()
        made, invalid, _, _ = make_messages(variants, settings)
        elapsed = time.process_time() - started
    finally:
        for module, name, original in kept:
            setattr(module, name, original)
    if invalid or not made:
        raise SystemExit(f"error: {invalid} of {made + invalid} messages invalid")
    return elapsed


class HmacCopies:
    """``tokens._Mac`` by ``hmac.HMAC.copy`` (what the link tokens used before it)."""

    def __init__(self, key: bytes, start: bytes) -> None:
        self._base = hmac.new(key, start, hashlib.sha256)

    def digest(self, rest: bytes) -> bytes:
        mac = self._base.copy()
        mac.update(rest)
        return mac.digest()


def compare(name: str, on: Callable[[], float], off: Callable[[], float], repeat: int) -> str:
    """Alternate ``on`` and ``off`` runs; one line with the medians and the gain."""
    ons: list[float] = []
    offs: list[float] = []
    for _ in range(repeat):
        offs.append(off())
        ons.append(on())
    with_it, without = statistics.median(ons), statistics.median(offs)
    gain = (without - with_it) / without if without else 0.0
    return (
        f"{name:<34} with {with_it:7.3f} s  without {without:7.3f} s CPU  "
        f"gain {gain:6.1%} (medians of {repeat}, same run)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    source = str(PAGE_DAY) if PAGE_DAY.exists() else "sample"
    settings = Settings(
        source=SourceSettings(default=source),
        secret_key=SECRET.decode(),
        digest=DigestSettings(base_url="https://papers.example"),  # links on every paper
    )
    topics = [t.name for t in load_taxonomy(settings.digest.taxonomy)]
    people = synthetic_subscribers(args.subscribers, topics=topics, variants=args.variants)
    variants = prepare_day(settings, DATE, source=source, subscribers=people).variants
    print(f"{len(people):,} subscribers in {len(variants)} variants; source {source}")
    for cache in CACHES:
        line = compare(
            f"Templates.{cache}",
            lambda: render_day(variants, settings, None),
            lambda cache=cache: render_day(variants, settings, cache),
            args.repeat,
        )
        print(line)
    mime_tricks: list[tuple[str, list[tuple[object, str, object]]]] = [
        # replaced under the names message.py calls
        (
            "qp_value / qp_link shortcut",
            [(message, "qp_value", headers.qp_encoded), (message, "qp_link", headers.qp_encoded)],
        ),
        ("tokens._Mac (hashlib states)", [(tokens, "_Mac", HmacCopies)]),
    ]
    for name, stand_ins in mime_tricks:
        print(
            compare(
                name,
                functools.partial(mime_day, variants, settings, ()),
                functools.partial(mime_day, variants, settings, stand_ins),
                args.repeat,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
