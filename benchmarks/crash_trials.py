"""Crash trials: SIGKILL a real ``newsletter send`` at a random moment, restart, count copies.

    python3 -m benchmarks.crash_trials [--trials 20] [--subscribers 1000] [--seed 1]

Each trial starts the real CLI (``newsletter send`` in a subprocess) for a fresh day
(its own SQLite state) with ``delivery.backend: smtp`` pointed at an aiosmtpd server run
in this process, which records every message's recipient and ``Message-ID``. Once the
sink has received a random number of messages (1 .. N-1) the process gets SIGKILL after
a random 0-20 ms more; the CLI is then started again, without kills, until a run exits 0
with every subscriber ``sent`` in the ledger.
Per trial and in total it prints what the sink received per subscriber: missing ones
(must be 0), duplicates (copies beyond the first), distinct Message-IDs (must equal the
subscribers: a duplicate is byte-identical in its Message-ID, so receivers drop it), and
the ledger rows left ``pending`` (must be 0).

Why duplicates happen at all (the at-least-once window): SMTP has no idempotency; a
message the server accepted (``250`` after DATA, or still in flight) whose result the
process had not yet committed to the ledger when it died is still ``pending`` there, and
the rerun sends it again. Each SMTP worker records an acceptance in the ledger before
its connection sends the next message's final ``.`` (while that message's content goes
out), so the window is at most one message per connection (``delivery.connections``):
the one whose DATA the server took while the process died before reading the reply or
committing it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller

from benchmarks.bench_smtp import free_port
from newsletter.ledger import Ledger
from newsletter.topics import load_taxonomy
from tests.scale_helpers import (
    RecordingSink,
    copies_per_recipient,
    subscribers_yaml,
    synthetic_subscribers,
)

TRIALS = 20
SUBSCRIBERS = 1000
VARIANTS = 8
"""Distinct profiles among the trial's subscribers."""

CONNECTIONS = 2
"""delivery.connections of the killed sender."""

KILL_JITTER = 0.02
"""Seconds, at most, between reaching the random message count and the SIGKILL."""

MAX_RUNS = 6
"""Runs (the killed one included) before a trial is declared stuck."""

CLAIM_LEASE = 2
"""delivery.claim_lease: a rerun takes the killed sender's claims over after this."""

RUN_TIMEOUT = 300.0
DATE = "2026-11-25"
DAY = dt.date.fromisoformat(DATE)
REPO = Path(__file__).resolve().parent.parent
CLI = "from newsletter.cli import main; main()"
"""The real ``newsletter`` command line."""


@dataclass
class Trial:
    number: int
    kill_after: int
    killed: bool
    received_before_kill: int
    runs: int
    exit_codes: list[int]
    received: int
    distinct: int
    missing: int
    duplicates: int
    distinct_message_ids: int
    mismatched_ids: int
    pending: int
    ledger: dict[str, int]
    seconds: float


def write_config(folder: Path, port: int, subscribers: Path, state: Path) -> Path:
    config = folder / "newsletter.yaml"
    config.write_text(
        "sender:\n"
        '  from: "Daily Papers <digest@papers.example>"\n'
        '  list_id: "Daily Papers <daily.papers.example>"\n'
        "digest:\n"
        "  base_url: https://papers.example\n"
        "delivery:\n"
        "  backend: smtp\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  security: none\n"
        f"  connections: {CONNECTIONS}\n"
        "  max_attempts: 3\n"
        f"  claim_lease: {CLAIM_LEASE}\n"
        "source:\n"
        "  default: sample\n"
        f"subscribers: {subscribers}\n"
        f"state: sqlite:///{state}\n",
        encoding="utf-8",
    )
    return config


def ledger_counts(state: Path) -> dict[str, int]:
    with Ledger(f"sqlite:///{state}") as ledger:
        return ledger.counts(DAY)


def ledger_message_ids(state: Path) -> dict[str, str]:
    with Ledger(f"sqlite:///{state}") as ledger:
        return {email: str(row.message_id) for email, row in ledger.deliveries(DAY).items()}


def run_trial(
    number: int,
    *,
    folder: Path,
    port: int,
    sink: RecordingSink,
    reached: threading.Event,
    target: list[int],
    emails: list[str],
    subscribers: Path,
    rng: random.Random,
) -> Trial:
    state = folder / f"state-{number}.db"
    config = write_config(folder, port, subscribers, state)
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        NEWSLETTER_SECRET_KEY="crash-trials-secret-0123456789abcdef",
    )
    command = [sys.executable, "-c", CLI, "send", "--config", str(config), "--date", DATE]
    log = (folder / f"trial-{number}.log").open("ab")
    sink.clear()
    kill_after = rng.randint(1, len(emails) - 1)
    target[0] = kill_after
    reached.clear()
    started = time.perf_counter()
    exit_codes: list[int] = []
    killed = False
    received_before_kill = 0
    with log:
        proc = subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=log)
        while proc.poll() is None and not reached.wait(0.05):
            pass
        if proc.poll() is None:
            time.sleep(rng.uniform(0.0, KILL_JITTER))
            proc.send_signal(signal.SIGKILL)
            killed = True
        exit_codes.append(proc.wait(timeout=RUN_TIMEOUT))
        received_before_kill = len(sink.snapshot())
        target[0] = 0
        runs = 1
        while runs < MAX_RUNS and (
            exit_codes[-1] != 0 or ledger_counts(state).get("sent", 0) < len(emails)
        ):
            runs += 1
            done = subprocess.run(
                command, env=env, cwd=folder, stdout=log, stderr=log, timeout=RUN_TIMEOUT
            )
            exit_codes.append(done.returncode)
    seconds = time.perf_counter() - started
    received = sink.snapshot()
    copies = copies_per_recipient(received)
    missing = sum(1 for e in emails if copies[e] == 0)
    duplicates = sum(c - 1 for c in copies.values() if c > 1)
    stray = set(copies) - set(emails)
    if stray:
        raise RuntimeError(f"sink got mail for addresses not on the list: {sorted(stray)[:3]}")
    ids = ledger_message_ids(state)
    ids_per_email: dict[str, set[str | None]] = {}
    for item in received:
        for rcpt in item.recipients:
            ids_per_email.setdefault(rcpt, set()).add(item.message_id)
    mismatched = sum(
        1 for e, seen in ids_per_email.items() if len(seen) != 1 or ids.get(e) not in seen
    )
    counts = ledger_counts(state)
    return Trial(
        number=number,
        kill_after=kill_after,
        killed=killed,
        received_before_kill=received_before_kill,
        runs=runs,
        exit_codes=exit_codes,
        received=len(received),
        distinct=len(copies),
        missing=missing,
        duplicates=duplicates,
        distinct_message_ids=len({item.message_id for item in received}),
        mismatched_ids=mismatched,
        pending=counts.get("pending", 0),
        ledger=counts,
        seconds=seconds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    reached = threading.Event()
    target = [0]

    def on_message(count: int) -> None:
        if target[0] and count >= target[0]:
            reached.set()

    sink = RecordingSink(on_message=on_message)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    trials: list[Trial] = []
    try:
        with tempfile.TemporaryDirectory(prefix="crash-trials-") as tmp:
            folder = Path(tmp)
            topics = [t.name for t in load_taxonomy(None)]
            people = synthetic_subscribers(args.subscribers, topics=topics, variants=VARIANTS)
            subscribers = folder / "subscribers.yaml"
            subscribers.write_text(subscribers_yaml(people), encoding="utf-8")
            emails = [p.email for p in people]
            jitter_ms = KILL_JITTER * 1000
            print(
                f"{args.trials} trials, {len(emails)} subscribers, {CONNECTIONS} SMTP connections,"
                f" SIGKILL after a random 1..{len(emails) - 1} messages + 0-{jitter_ms:.0f} ms"
            )
            print(
                f"{'trial':>5} {'kill@':>6} {'killed':>6} {'recv@kill':>9} {'runs':>4} "
                f"{'exits':<10} {'received':>8} {'missing':>7} {'dups':>4} {'ids':>5} "
                f"{'pending':>7} {'secs':>6}"
            )
            for number in range(1, args.trials + 1):
                t = run_trial(
                    number,
                    folder=folder,
                    port=port,
                    sink=sink,
                    reached=reached,
                    target=target,
                    emails=emails,
                    subscribers=subscribers,
                    rng=rng,
                )
                trials.append(t)
                exits = ",".join(str(c) for c in t.exit_codes)
                print(
                    f"{t.number:>5} {t.kill_after:>6} {t.killed!s:>6} {t.received_before_kill:>9}"
                    f" {t.runs:>4} {exits:<10} {t.received:>8} {t.missing:>7} {t.duplicates:>4}"
                    f" {t.distinct_message_ids:>5} {t.pending:>7} {t.seconds:>6.1f}",
                    flush=True,
                )
    finally:
        controller.stop()

    n = len(trials)
    total_dups = sum(t.duplicates for t in trials)
    with_dups = sum(1 for t in trials if t.duplicates)
    print(
        f"total: {n} trials, {sum(t.killed for t in trials)} killed mid-send, "
        f"messages received {sum(t.received for t in trials):,} for "
        f"{n * args.subscribers:,} subscriber-days"
    )
    print(f"missing subscribers: {sum(t.missing for t in trials)} (must be 0)")
    print(
        f"duplicates: {total_dups} in {with_dups} of {n} trials "
        f"(max {max((t.duplicates for t in trials), default=0)} per trial; "
        f"window: at most one message per connection, {CONNECTIONS} here)"
    )
    print(
        "distinct Message-IDs per trial == subscribers: "
        f"{sum(t.distinct_message_ids == args.subscribers for t in trials)} of {n}; "
        f"copies with a Message-ID other than the ledger's: {sum(t.mismatched_ids for t in trials)}"
    )
    print(f"ledger rows left pending: {sum(t.pending for t in trials)} (must be 0)")
    ok = all(t.missing == 0 and t.pending == 0 and t.mismatched_ids == 0 for t in trials)
    ok = ok and all(t.distinct_message_ids == args.subscribers for t in trials)
    print(
        "verdict: "
        + ("every subscriber at least once, duplicates identifiable" if ok else "FAILED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
