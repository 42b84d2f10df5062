"""100,000 recipients through an HTTP provider: a local server speaking SendGrid's v3 mail/send.

    python3 -m benchmarks.bench_http_scale [--subscribers N] [--variants V] [--rate-limit R]

The fake SendGrid (``tests.scale_helpers``, in its own process on 127.0.0.1) checks
``Authorization: Bearer``, the JSON body and at most 1,000 personalizations, answers
``202``, and above its rate limit (R requests/second, bursts of R) answers ``429`` with
``Retry-After``. The same subscribers and variants as ``bench_scale`` go through the
real ``SendGridBackend`` and ``newsletter.send.deliver_variants`` with the SQLite ledger,
in three runs, each against a fresh server:

* ``one variant``  - every subscriber gets the full digest: the N/1000-request floor;
* ``paced``        - V variants, the client paced at the provider's limit
                     (``delivery.rate`` = R x 1000 recipients/s);
* ``unpaced``      - V variants, no client pacing: the server's 429s and Retry-After
                     do the pacing.

One request carries one content, so V variants need at least the sum over variants of
ceil(subscribers/1000) requests; that floor is printed beside the count.
Prints requests, recipients (distinct, duplicates), 429s, duration and requests/second
against the limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_scale import DATE, NOW, PAGE_DAY, SECRET, SENDER, SUBSCRIBERS
from benchmarks.bench_smtp import free_port
from newsletter.config import Settings, SourceSettings
from newsletter.delivery.base import BackendOptions, RetryPolicy
from newsletter.delivery.sendgrid import SendGridBackend
from newsletter.ledger import Ledger
from newsletter.models import Subscriber
from newsletter.pipeline import Variant, prepare_day
from newsletter.send import SendOptions, deliver_variants, values_maker
from newsletter.subscribers import load_subscribers
from newsletter.topics import load_taxonomy
from tests.scale_helpers import (
    DEFAULT_VARIANTS,
    SENDGRID_MAX_PERSONALIZATIONS,
    serve_fake_sendgrid,
    subscribers_yaml,
    synthetic_subscribers,
)

RATE_LIMIT = 10.0
"""The fake provider's limit, requests per second (``--rate-limit``)."""

API_KEY = "SG.bench-key"
ATTEMPTS = 8
"""Retries per batch (429s are retried after Retry-After)."""


def wait_http(base_url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/_stats", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"fake SendGrid did not start at {base_url}")


def run(
    name: str,
    variants: Sequence[Variant],
    *,
    rate_limit: float,
    client_rate: float,
    workdir: Path,
    settings: Settings,
) -> dict[str, Any]:
    """One delivery run against a fresh fake SendGrid; its figures."""
    port = free_port()
    context = multiprocessing.get_context("spawn")
    server = context.Process(
        target=serve_fake_sendgrid, args=(port, API_KEY, rate_limit), daemon=True
    )
    server.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http(base_url)
        options = BackendOptions(
            retry=RetryPolicy(max_attempts=ATTEMPTS, deadline=3600.0), rate=client_rate
        )
        backend = SendGridBackend(api_key=API_KEY, base_url=base_url, options=options)
        secret = SECRET.encode()
        started, cpu = time.perf_counter(), time.process_time()
        with backend, Ledger(f"sqlite:///{workdir / (name.replace(' ', '-') + '.db')}") as ledger:
            report = deliver_variants(
                variants,
                SendOptions(
                    date=DATE,
                    backend=backend,
                    sender=SENDER,
                    values_for=values_maker(
                        base_url=settings.digest.base_url,
                        secret=secret,
                        list_id=SENDER.list_id,
                        date=DATE,
                    ),
                    now=lambda: NOW,
                ),
                ledger=ledger,
            )
            pending = ledger.counts(DATE).get("pending", 0)
        duration, cpu = time.perf_counter() - started, time.process_time() - cpu
        stats: dict[str, Any] = httpx.get(f"{base_url}/_stats", timeout=10.0).json()
    finally:
        server.terminate()
        server.join(timeout=10)
    floor = sum(math.ceil(len(v.subscribers) / SENDGRID_MAX_PERSONALIZATIONS) for v in variants)
    return {
        "name": name,
        "variants": len(variants),
        "floor": floor,
        "queued": report.delivered,
        "failed": report.failed,
        "pending": pending,
        "duration": duration,
        "cpu": cpu,
        **stats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS)
    parser.add_argument("--rate-limit", type=float, default=RATE_LIMIT, help="requests/second")
    parser.add_argument(
        "--runs", default="one,paced,unpaced", help="comma-separated: one, paced, unpaced"
    )
    args = parser.parse_args(argv)
    source = str(PAGE_DAY) if PAGE_DAY.exists() else "sample"
    if source == "sample":
        print(f"note: {PAGE_DAY} is absent: using the bundled sample day")
    wanted = set(args.runs.split(","))

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        yaml_path = workdir / "subscribers.yaml"
        settings = Settings(sender=SENDER, source=SourceSettings(default=source))
        topics = [t.name for t in load_taxonomy(None)]
        made = synthetic_subscribers(args.subscribers, topics=topics, variants=args.variants)
        yaml_path.write_text(subscribers_yaml(made), encoding="utf-8")
        del made
        people = load_subscribers(yaml_path)
        prepared = prepare_day(settings, DATE, source=source, subscribers=people)
        limit = args.rate_limit
        runs: list[dict[str, Any]] = []
        if "one" in wanted:
            everyone: tuple[Subscriber, ...] = tuple(people)
            one = [dataclasses.replace(prepared.full, subscribers=everyone)]
            runs.append(
                run(
                    "one variant",
                    one,
                    rate_limit=limit,
                    client_rate=limit * SENDGRID_MAX_PERSONALIZATIONS,
                    workdir=workdir,
                    settings=settings,
                )
            )
        if "paced" in wanted:
            runs.append(
                run(
                    "paced",
                    prepared.variants,
                    rate_limit=limit,
                    client_rate=limit * SENDGRID_MAX_PERSONALIZATIONS,
                    workdir=workdir,
                    settings=settings,
                )
            )
        if "unpaced" in wanted:
            runs.append(
                run(
                    "unpaced",
                    prepared.variants,
                    rate_limit=limit,
                    client_rate=0.0,
                    workdir=workdir,
                    settings=settings,
                )
            )

    print(
        f"{args.subscribers:,} subscribers, source {source}; fake SendGrid limit "
        f"{limit:g} requests/s, <= {SENDGRID_MAX_PERSONALIZATIONS} personalizations/request"
    )
    print(
        f"{'run':<12}{'variants':>9}{'requests':>9}{'202':>6}{'floor':>6}{'429s':>6}"
        f"{'recipients':>11}{'distinct':>9}{'dups':>5}{'max/req':>8}{'seconds':>8}"
        f"{'req/s':>7}{'CPU s':>7}{'pending':>8}"
    )
    for r in runs:
        rate = r["accepted"] / r["duration"] if r["duration"] else 0.0
        print(
            f"{r['name']:<12}{r['variants']:>9}{r['requests']:>9}{r['accepted']:>6}"
            f"{r['floor']:>6}{r['throttled']:>6}{r['recipients']:>11,}"
            f"{r['distinct_recipients']:>9,}{r['duplicates']:>5}{r['max_personalizations']:>8}"
            f"{r['duration']:>8.1f}{rate:>7.2f}{r['cpu']:>7.1f}{r['pending']:>8}"
        )
    ok = all(
        r["distinct_recipients"] == args.subscribers and r["pending"] == 0 and r["failed"] == 0
        for r in runs
    )
    print(
        "every recipient accepted exactly once, no pending rows"
        if ok
        else "FAILED: not every recipient accepted"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
