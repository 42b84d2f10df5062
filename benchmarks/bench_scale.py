"""End to end at scale: 100,000 subscribers over 60 variants, into Postfix's smtp-sink.

    python3 -m benchmarks.bench_scale [--subscribers N] [--variants V] [--connections C]
                                      [--baseline-messages M] [--repeat R] [--tracemalloc]
                                      [--no-smtp] [--state URL] [--feedback-share F]

On the page day (/work/shared/data/daily-papers-page.txt through
``newsletter.sources.fetch_day``; the bundled sample day, with a note, when it is absent):

1. stages one by one: write the synthetic list (to the state database, or to
   ``subscribers.yaml`` with ``--list yaml``), load it,
   ``prepare_day`` (fetch, topics, then rank + group + render per variant, broken down),
   MIME (``build_template`` per variant, link tokens + ``recipient`` + ``fill`` per
   subscriber, bytes counted and dropped);
2. the real thing: ``newsletter.send.send_day`` with ``delivery.backend: smtp`` to
   Postfix's smtp-sink on loopback and the state database: SQLite in a temporary folder,
   or with ``--state postgresql://USER:PW@HOST/DB`` a fresh database made on that server
   for the run (the role needs CREATEDB) and dropped after it;
3. the baseline: Postfix's smtp-source sending the same number of messages of the mean
   message size over the same number of connections into the same sink.

Prints wall time, per-stage time, peak RSS after each stage (``ru_maxrss``), messages per
second and the ratio to smtp-source. Render + MIME (``prepare_day`` then every message) runs
``--repeat`` times (3): timings on a shared machine vary by a fifth from run to run, so the
median is held against the target and the best is printed beside it; the baseline in the
same run is the bare copy of the same messages (one join of each template's fixed bytes
per subscriber, no per-subscriber work). Targets (issue 11): render + MIME for 100k <= 3 s,
SMTP >= 0.8 of smtp-source, peak RSS <= 300 MB.

``--feedback-share F`` (issue 16): F of the subscribers have feedback signals (each liked
1-3 and disliked 0-2 papers of an earlier day: ``/work/shared/data/hf/2026-08-12.json``
when present, else the day itself), so they no longer share their variant's render;
render + MIME runs ``--repeat`` times with and without them, alternately, and the median
with them is held against 1.5x the median without (the machine's load average is printed
at the start and the end). ``--tracemalloc`` adds Python-heap peaks
(slower: it traces every allocation). smtp-sink/source come from
``benchmarks.bench_smtp.find_postfix``; without them the SMTP part is skipped with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_smtp import find_postfix, run_smtp_source, smtp_sink
from newsletter.config import (
    DeliverySettings,
    DigestSettings,
    SenderSettings,
    Settings,
    SourceSettings,
)
from newsletter.delivery.base import Backend
from newsletter.delivery.smtp import SmtpBackend
from newsletter.message import build_template
from newsletter.models import FULL_PROFILE, Digest, Paper, SendResult, Subscriber
from newsletter.pipeline import Steering, Variant, prepare_day
from newsletter.rank import rank
from newsletter.render import render
from newsletter.send import recipients_for, send_day, values_maker
from newsletter.sources import fetch_day
from newsletter.state import parse_state_url
from newsletter.stores import open_store
from newsletter.templating import load_templates
from newsletter.topics import assign_topics, group, load_taxonomy
from tests.scale_helpers import (
    DEFAULT_VARIANTS,
    subscriber_entries,
    subscribers_yaml,
    synthetic_feedback,
    synthetic_subscribers,
)

SUBSCRIBERS = 100_000
"""Synthetic subscribers (``--subscribers``)."""

CONNECTIONS = 2
"""SMTP connections for both clients (``delivery.connections``'s default)."""

PAGE_DAY = Path("/work/shared/data/daily-papers-page.txt")
"""The seed page day (the bundled sample day when absent)."""

DATE = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SECRET = "bench-scale-secret-0123456789abcdef01"
SENDER = SenderSettings(
    from_="Daily Papers <digest@papers.example>", list_id="Daily Papers <daily.papers.example>"
)

SAMPLE_EVERY = 499
"""Every this many messages one is kept; smtp-source sends the one nearest the mean size."""

TARGET_RENDER_MIME_SECONDS = 3.0
TARGET_RATIO = 0.8
TARGET_RSS_MB = 300.0


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Times and peak memory per stage, printed as a table."""

    def __init__(self, *, trace: bool) -> None:
        self.rows: list[tuple[str, float, float | None, float, float | None]] = []
        self.trace = trace

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.trace:
            tracemalloc.reset_peak()
        started, cpu = time.perf_counter(), time.process_time()
        yield
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        heap = tracemalloc.get_traced_memory()[1] / 2**20 if self.trace else None
        self.rows.append((name, elapsed, cpu, rss_mb(), heap))

    def add(self, name: str, seconds: float) -> None:
        """A sub-step timed by the caller (wall time only)."""
        self.rows.append((name, seconds, None, rss_mb(), None))

    def seconds(self, name: str) -> float:
        return next(row[1] for row in self.rows if row[0] == name)

    def cpu_seconds(self, name: str) -> float:
        return next(row[2] or 0.0 for row in self.rows if row[0] == name)

    def print(self) -> None:
        heap_head = "  heap peak" if self.trace else ""
        print(f"{'stage':<36}{'wall s':>8}{'CPU s':>8}{'peak RSS':>11}{heap_head}")
        for name, seconds, cpu, rss, heap in self.rows:
            cpu_col = f"{cpu:>8.2f}" if cpu is not None else f"{'':>8}"
            heap_col = f"{heap:>8.1f} MB" if heap is not None else ""
            print(f"{name:<36}{seconds:>8.2f}{cpu_col}{rss:>8.0f} MB{heap_col}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--baseline-messages",
        type=int,
        default=None,
        help="messages smtp-source sends (default: as many as subscribers)",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python heap peaks")
    parser.add_argument("--no-smtp", action="store_true", help="stages only, no delivery")
    parser.add_argument(
        "--state",
        default=None,
        help="postgresql://... server to make a scratch database on (default: SQLite file)",
    )
    parser.add_argument(
        "--list",
        choices=("state", "yaml"),
        default="state",
        help="where the subscriber list lives: the state database (read in batches; the "
        "store for lists this size) or a subscribers.yaml file",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="render + MIME runs (median and best reported; this machine's timings vary)",
    )
    parser.add_argument(
        "--feedback-share",
        type=float,
        default=0.0,
        help="share of subscribers with feedback signals (e.g. 0.1); compared with none",
    )
    parser.add_argument(
        "--feedback-buckets",
        type=int,
        default=None,
        help="digest.feedback_buckets for the --feedback-share runs (default: the setting's)",
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.feedback_share <= 1.0:
        parser.error("--feedback-share must be between 0 and 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    n = args.subscribers

    if PAGE_DAY.exists():
        source = str(PAGE_DAY)
    else:
        source = "sample"
        print(f"note: {PAGE_DAY} is absent: using the bundled sample day")
    if args.tracemalloc:
        tracemalloc.start()
    stages = Stages(trace=args.tracemalloc)

    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
        scratch_state(args.state, Path(tmp)) as state_url,
    ):
        workdir = Path(tmp)
        yaml_path = workdir / "subscribers.yaml"
        settings = Settings(
            sender=SENDER,
            source=SourceSettings(default=source),
            subscribers=str(yaml_path) if args.list == "yaml" else "state",
            state=state_url,
            secret_key=SECRET,
            digest=DigestSettings(base_url="https://papers.example"),
        )
        print(f"state database: {parse_state_url(state_url).engine}")
        taxonomy = load_taxonomy(settings.digest.taxonomy)
        topic_names = [t.name for t in taxonomy]

        # ------------------------------------------------------------------ stages
        store = open_store(settings.subscribers, state=state_url)

        def load_list() -> list[Subscriber]:
            # The list is read with the collector paused (``gc_paused``): its young
            # generations' passes over the 100k new entries come at the next collection.
            # Made here, they stay out of the prepare_day timer (send_day streams the list
            # and never holds it whole).
            people = store.load(topic_names)
            gc.collect()
            return people

        with stages.stage(f"write the list ({args.list}, setup)"):
            made = synthetic_subscribers(n, topics=topic_names, variants=args.variants)
            if args.list == "yaml":
                yaml_path.write_text(subscribers_yaml(made), encoding="utf-8")
            else:
                with store.edit(topic_names) as editor:
                    for entry in subscriber_entries(made):
                        editor.add(entry)
            del made
        list_size = f"{args.list} list" + (
            f" {yaml_path.stat().st_size / 2**20:.1f} MB" if args.list == "yaml" else ""
        )

        with stages.stage("load_subscribers"):
            people = load_list()

        with stages.stage("prepare_day (fetch..render)"):
            prepared = prepare_day(settings, DATE, source=source, subscribers=people)
        timed = [(stages.seconds("prepare_day (fetch..render)"), 0.0)]
        variants = prepared.variants
        day = prepared.day

        # the same work again, timed per step (plan_day does it in one go)
        templates = load_templates(settings.digest.templates)
        with stages.stage("  topics (assign, once)"):
            topics = assign_topics(day.papers, taxonomy)
        rank_s = group_s = render_s = 0.0
        for variant in variants:
            t0 = time.perf_counter()
            ranked = rank(day.papers, variant.profile, topics=topics, now=NOW)
            t1 = time.perf_counter()
            groups = group(ranked, taxonomy)
            t2 = time.perf_counter()
            digest = Digest(
                date=day.date, topics=groups, profile=variant.profile, total_papers=len(day.papers)
            )
            render(digest, settings=settings.digest, templates=templates)
            t3 = time.perf_counter()
            rank_s, group_s, render_s = rank_s + t1 - t0, group_s + t2 - t1, render_s + t3 - t2
        stages.add("  rank (per variant)", rank_s)
        stages.add("  group (per variant)", group_s)
        stages.add("  render (per variant)", render_s)

        with stages.stage("MIME: template + fill, all"):
            made_count, invalid, total_bytes, samples = make_messages(variants, settings)
        timed[0] = (timed[0][0], stages.seconds("MIME: template + fill, all"))
        cpu_runs = [
            stages.cpu_seconds("prepare_day (fetch..render)")
            + stages.cpu_seconds("MIME: template + fill, all")
        ]
        with stages.stage("baseline: the same bytes, joined"):
            joined = join_only(variants)
        baseline_s = stages.seconds("baseline: the same bytes, joined")
        mean_size = total_bytes / max(1, made_count)
        sample = mean_sized(samples, mean_size)
        variant_sizes = sorted((len(v.subscribers) for v in variants), reverse=True)
        full_in = any(v.profile == FULL_PROFILE for v in variants)
        del people, prepared, variants, day, samples
        gc.collect()

        # ------------------------------------------------------------------ SMTP
        smtp_lines: list[str] = []
        if not args.no_smtp:
            smtp_lines = run_smtp(settings, source, workdir, sample, n, args, stages)

        feedback_lines: list[str] = []
        if args.feedback_share > 0:
            people = load_list()
            feedback_lines = feedback_runs(settings, source, people, args)
            del people
            gc.collect()

        # the two stages again, timed whole (after SMTP, so they leave its peak RSS alone)
        if args.repeat > 1:
            people = load_list()
        for _ in range(args.repeat - 1):
            started, cpu_started = time.perf_counter(), time.process_time()
            again = prepare_day(settings, DATE, source=source, subscribers=people)
            middle = time.perf_counter()
            make_messages(again.variants, settings)
            timed.append((middle - started, time.perf_counter() - middle))
            cpu_runs.append(time.process_time() - cpu_started)
            del again

    print(
        f"subscribers {n:,} in {len(variant_sizes)} variants "
        f"(largest {variant_sizes[0]:,}, smallest {variant_sizes[-1]:,}; "
        f"default profile among them: {full_in}); source {source}"
    )
    print(
        f"{list_size}; messages made {made_count:,} "
        f"(invalid {invalid}), mean size {mean_size:,.0f} bytes"
    )
    stages.print()
    for line in render_mime_lines(timed, cpu_runs, n, made_count, joined, baseline_s):
        print(line)
    for line in smtp_lines:
        print(line)
    for line in feedback_lines:
        print(line)
    peak = rss_mb()
    verdict = "met" if peak <= TARGET_RSS_MB else "NOT met"
    print(f"peak RSS {peak:.0f} MB (target <= {TARGET_RSS_MB:.0f} MB: {verdict})")
    if args.tracemalloc:
        print(f"Python heap peak (tracemalloc) {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MB")
    return 0


def mean_sized(samples: Sequence[bytes], mean_size: float) -> bytes:
    """smtp-source's message: the longest kept message not over the day's mean size (the
    shortest when all are), padded at its end with lines of ``x`` to the mean. The sizes
    of a day's messages are bimodal (compact and full variants), so the kept message
    nearest the mean can be a fifth smaller than it, which flattered the baseline."""
    under = [raw for raw in samples if len(raw) <= mean_size]
    sample = max(under, key=len) if under else min(samples, key=len)
    missing = max(0, round(mean_size) - len(sample))
    line = b"x" * 76 + b"\r\n"
    pad = line * (missing // len(line))
    rest = missing % len(line)
    return sample + pad + (b"x" * (rest - 2) + b"\r\n" if rest >= 2 else b"")


@contextmanager
def scratch_state(server: str | None, workdir: Path) -> Iterator[str]:
    """The state URL for the run: a SQLite file in ``workdir``, or a database made on the
    PostgreSQL ``server`` for this run and dropped afterwards."""
    if server is None:
        yield f"sqlite:///{workdir / 'state.db'}"
        return
    import os
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_scale_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path="/" + name))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


EARLIER_DAY = Path("/work/shared/data/hf/2026-08-12.json")
"""Where the synthetic readers' rated papers come from (the day itself when absent)."""

TARGET_FEEDBACK_RATIO = 1.5


def feedback_runs(
    settings: Settings, source: str, people: Sequence[Subscriber], args: argparse.Namespace
) -> list[str]:
    """Render + MIME with and without ``--feedback-share`` readers, alternately; the lines."""
    rated_from: Sequence[Paper]
    if EARLIER_DAY.exists():
        rated_from = fetch_day(str(EARLIER_DAY), DATE, settings=settings.source).papers
    else:
        rated_from = fetch_day(source, DATE, settings=settings.source).papers
    feedback = synthetic_feedback(people, rated_from, share=args.feedback_share)
    if args.feedback_buckets is not None:
        digest = dataclasses.replace(settings.digest, feedback_buckets=args.feedback_buckets)
        settings = dataclasses.replace(settings, digest=digest)
    load_before = os.getloadavg()
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    counts: dict[bool, int] = {}
    for _ in range(args.repeat):
        for steered in (False, True):
            steering = Steering(feedback=feedback) if steered else Steering()
            started, cpu_started = time.perf_counter(), time.process_time()
            prepared = prepare_day(
                settings,
                DATE,
                source=source,
                subscribers=people,
                steer=lambda papers, steering=steering: steering,
            )
            middle = time.perf_counter()
            make_messages(prepared.variants, settings)
            runs[steered].append((middle - started, time.perf_counter() - middle))
            cpu[steered].append(time.process_time() - cpu_started)
            counts[steered] = len(prepared.variants)
            del prepared
            gc.collect()
    load_after = os.getloadavg()
    medians = {k: statistics.median(p + m for p, m in v) for k, v in runs.items()}
    plans = {k: statistics.median(p for p, _ in v) for k, v in runs.items()}
    ratio = medians[True] / medians[False]
    verdict = "met" if ratio <= TARGET_FEEDBACK_RATIO else "NOT met"
    cpus = {k: statistics.median(v) for k, v in cpu.items()}
    cpu_ratio = cpus[True] / cpus[False]
    cpu_verdict = "met" if cpu_ratio <= TARGET_FEEDBACK_RATIO else "NOT met"
    n = len(people)
    return [
        f"feedback: {len(feedback):,} of {n:,} readers ({args.feedback_share:.0%}) with signals "
        f"({len(rated_from)} earlier papers rated); variants {counts[True]} with them, "
        f"{counts[False]} without (digest.feedback_buckets {settings.digest.feedback_buckets})",
        f"render + MIME for {n:,}: median {medians[True]:.2f} s with feedback "
        f"(prepare_day {plans[True]:.2f}), {medians[False]:.2f} s without "
        f"(prepare_day {plans[False]:.2f}), {args.repeat} runs each, alternately",
        f"ratio with/without {ratio:.2f} (target <= {TARGET_FEEDBACK_RATIO}: {verdict}); "
        f"load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs)",
        f"CPU time (this process; steadier than wall time on a busy host): median "
        f"{cpus[True]:.2f} s with feedback, {cpus[False]:.2f} s without: ratio {cpu_ratio:.2f} "
        f"({cpu_verdict})",
    ]


def make_messages(
    variants: Sequence[Variant], settings: Settings
) -> tuple[int, int, int, list[bytes]]:
    """Every subscriber's message as send_day makes it: per variant the template, then a
    backend batch at a time (SMTP's 200) the recipients (``recipients_for``: address check,
    link tokens, ``recipient``) and ``Backend.fill`` each as the backends do; bytes
    counted and dropped. (made, invalid, bytes, a sample every SAMPLE_EVERY messages)

    Making a whole variant's recipients at once (14k for the largest), as this did before,
    kept them alive long enough to set off a full collection over the benchmark's own
    100k list: 0.16 s of the MIME figure in two runs of three."""
    subscriber_values = values_maker(
        base_url=settings.digest.base_url, secret=SECRET.encode(), list_id=SENDER.list_id, date=DATE
    )
    total_bytes = made = invalid = 0
    samples: list[bytes] = []
    for variant in variants:
        template = build_template(variant.rendered, sender=SENDER, date=DATE, now=NOW)
        people = variant.subscribers
        for start in range(0, len(people), SmtpBackend.batch_size):
            batch = people[start : start + SmtpBackend.batch_size]
            recipients, refused = recipients_for(template, batch, subscriber_values)
            invalid += len(refused)
            for recipient in recipients:
                raw = Backend.fill(template, recipient)
                if not isinstance(raw, bytes):  # the backends' `invalid` result
                    invalid += 1
                    continue
                total_bytes += len(raw)
                made += 1
                if made % SAMPLE_EVERY == 1:
                    samples.append(raw)
    return made, invalid, total_bytes, samples


def join_only(variants: Sequence[Variant]) -> int:
    """The baseline: each subscriber's message as one join of its template's fixed bytes,
    no per-subscriber work (what copying the messages alone costs); bytes joined."""
    total = 0
    for variant in variants:
        template = build_template(variant.rendered, sender=SENDER, date=DATE, now=NOW)
        for _ in variant.subscribers:
            total += len(b"".join(template.fixed))
    return total


def render_mime_lines(
    timed: list[tuple[float, float]],
    cpu: list[float],
    n: int,
    made: int,
    joined: int,
    baseline_s: float,
) -> list[str]:
    """The render + MIME figures: each run, the median and the best against the target."""
    totals = sorted(plan + mime for plan, mime in timed)
    median = statistics.median(totals)
    lines = []
    for i, (plan, mime) in enumerate(timed, 1):
        lines.append(
            f"render + MIME for {n:,}, run {i}: {plan + mime:.2f} s "
            f"(prepare_day {plan:.2f} + MIME {mime:.2f}; {made / mime:,.0f} messages/s)"
        )
    target = TARGET_RENDER_MIME_SECONDS
    verdict = "met" if median <= target else "NOT met"
    lines.append(
        f"render + MIME for {n:,}: median {median:.2f} s, best {totals[0]:.2f} s of "
        f"{len(timed)} runs (target <= {target:.0f} s on the median: {verdict})"
    )
    lines.append(
        f"render + MIME CPU time (this process; steadier than wall time on a busy host): "
        f"median {statistics.median(cpu):.2f} s of {' / '.join(f'{c:.2f}' for c in cpu)} s"
    )
    mime_s = timed[0][1]
    per_message = mime_s / max(made, 1) * 1e6
    per_copy = baseline_s / max(n, 1) * 1e6
    lines.append(
        f"MIME per message {per_message:.1f} us; the baseline (the same {joined / 2**30:.1f} GiB "
        f"only joined, in this run) {per_copy:.1f} us: {mime_s / baseline_s:.1f}x the bare copy"
    )
    return lines


def run_smtp(
    settings: Settings,
    source: str,
    workdir: Path,
    sample: bytes,
    n: int,
    args: argparse.Namespace,
    stages: Stages,
) -> list[str]:
    """send_day to smtp-sink, then smtp-source into the same sink; the lines to print."""
    found = find_postfix(workdir)
    if isinstance(found, str):
        return [f"SMTP: skipped: {found}"]
    sink, smtp_source, env = found
    message_file = workdir / "message.eml"
    message_file.write_bytes(sample.replace(b"\r\n", b"\n"))
    with smtp_sink(sink, env) as port:
        smtp_settings = dataclasses.replace(
            settings,
            delivery=DeliverySettings(
                backend="smtp",
                host="127.0.0.1",
                port=port,
                security="none",
                connections=args.connections,
            ),
        )
        marks: dict[str, float] = {}
        delivered = 0

        def on_start(total: int) -> None:
            marks["start"] = time.perf_counter()

        def progress(result: SendResult) -> None:
            nonlocal delivered
            delivered += 1

        with stages.stage("send_day: e2e (load..SMTP+ledger)"):
            started = time.perf_counter()
            report = send_day(
                smtp_settings,
                DATE,
                source=source,
                now=lambda: NOW,
                progress=progress,
                on_start=on_start,
            )
            ended = time.perf_counter()
        before = marks.get("start", started) - started
        deliver = ended - marks.get("start", started)
        stages.add("  load + ledger + prepare", before)
        stages.add("  MIME + SMTP + ledger", deliver)
        sent = report.delivered
        ours = sent / deliver if deliver > 0 else 0.0
        counts = ", ".join(f"{k}={v}" for k, v in sorted(report.counts.items()))
        del report
        baseline_n = args.baseline_messages or n
        with stages.stage("smtp-source baseline"):
            theirs = run_smtp_source(
                smtp_source, env, port, message_file, baseline_n, args.connections
            )
    ratio = ours / theirs if theirs else 0.0
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    return [
        f"send_day results: {counts} (progress calls {delivered:,})",
        f"send_day wall time {ended - started:.2f} s end to end "
        f"({sent / (ended - started):,.0f} messages/s overall)",
        f"SMTP delivery: {sent:,} messages in {deliver:.2f} s = {ours:,.0f} messages/s "
        f"over {args.connections} connections (MIME fill + SMTP + ledger)",
        f"smtp-source: {baseline_n:,} messages of {len(sample):,} bytes = {theirs:,.0f} messages/s",
        f"ratio ours/smtp-source {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})",
    ]


if __name__ == "__main__":
    sys.exit(main())
