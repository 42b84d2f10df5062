"""Postmark batches sized by bytes: a day of 100 KB digests under the 50 MB request limit.

    python3 -m benchmarks.bench_postmark_bytes [--subscribers N] [--html-bytes B] [--runs R]

The real ``PostmarkBackend`` sends N readers a digest whose HTML part is about B bytes to a
``httpx.MockTransport`` that keeps each request's size and answers like Postmark (one
accepted item per message). Three configurations, each run R times (medians printed):

* ``count only``  - the old sizing, 500 messages a request whatever their size (the
                    baseline: its largest request is what Postmark would refuse);
* ``bytes``       - this code: a request over 50 MB is split before it is sent and the
                    size that fitted is kept for the rest of the run;
* ``hand-tuned``  - 250 messages a request, chosen by hand for this digest size (the
                    floor: no request is ever built twice).

Prints requests sent, requests built but not sent, the largest request and the duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html as html_lib
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from newsletter.config import SenderSettings
from newsletter.delivery.base import BackendOptions
from newsletter.delivery.http import HttpRequest
from newsletter.delivery.postmark import PostmarkBackend
from newsletter.message import SLOTS, MessageTemplate, Recipient, build_template

SENDER = SenderSettings(from_="Daily Papers <digest@papers.example>")
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Digest:
    """A rendered digest of about ``html_bytes`` of HTML with the four slots."""

    subject: str
    html: str
    text: str
    preheader: str = ""

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]:
        html, text = self.html, self.text
        for slot in SLOTS:
            value = values.get(slot, "")
            html = html.replace("{{" + slot + "}}", html_lib.escape(value, quote=True))
            text = text.replace("{{" + slot + "}}", value)
        return html, text


def digest(html_bytes: int) -> Digest:
    paper = "<p><a href='https://hf.co/papers/2511.00001'>A paper title</a> abstract text</p>\n"
    body = paper * (html_bytes // len(paper))
    slots = "".join("{{" + s + "}}" for s in SLOTS)
    return Digest("Daily Papers", f"<html><body>{body}{slots}</body></html>", "text " + slots)


class Counting(PostmarkBackend):
    """PostmarkBackend counting the requests it builds."""

    built = 0

    def build_request(self, template: MessageTemplate, batch: Sequence[Recipient]) -> HttpRequest:
        self.built += 1
        return super().build_request(template, batch)


class CountOnly(Counting):
    max_request_bytes = 1 << 62  # no byte limit: batches by count alone


class HandTuned(Counting):
    batch_size = 250


def run(cls: type[Counting], n: int, html_bytes: int) -> dict[str, float]:
    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sizes.append(len(request.content))
        count = request.content.count(b'"MessageStream"')
        items = [{"ErrorCode": 0, "Message": "OK", "MessageID": f"m{i}"} for i in range(count)]
        return httpx.Response(200, content=json.dumps(items).encode())

    client = httpx.Client(transport=httpx.MockTransport(answer))
    backend = cls(api_key="k", unsubscribe="postmark", client=client, options=BackendOptions())
    template = build_template(digest(html_bytes), sender=SENDER, date=NOW.date(), now=NOW)
    people = [
        template.recipient(
            f"u{i}@example.org",
            "",
            {"email": f"u{i}@example.org", "unsubscribe_url": f"https://p.example/u?t={i}"},
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    results = backend.send(template, people)
    duration = time.perf_counter() - started
    assert len(results) == n
    return {
        "sent": len(sizes),
        "wasted": backend.built - len(sizes),
        "largest": max(sizes),
        "seconds": duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--html-bytes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.subscribers} readers, ~{args.html_bytes} bytes of HTML, {args.runs} runs")
    for label, cls in (("count only", CountOnly), ("bytes", Counting), ("hand-tuned", HandTuned)):
        runs = [run(cls, args.subscribers, args.html_bytes) for _ in range(args.runs)]
        last = runs[-1]
        seconds = statistics.median(r["seconds"] for r in runs)
        over = " (over Postmark's 50 MB: refused)" if last["largest"] > 50_000_000 else ""
        print(
            f"{label:>11}: {last['sent']:.0f} requests sent, {last['wasted']:.0f} built and not "
            f"sent, largest {last['largest'] / 1e6:.1f} MB{over}, median {seconds:.2f}s"
        )


if __name__ == "__main__":
    main()
