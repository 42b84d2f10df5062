"""Peak memory of fetching a gzip bomb: the bounded source path vs reading it whole.

    python3 -m benchmarks.bench_source_bomb [--inflated-mb 500] [--runs 3]

A loopback HTTP server sends a gzip body of about 509 KB that inflates to 500 MiB of
zeros. Each run is a fresh process, measured by ``wait4`` (its own peak resident memory):

- ``bounded``: ``newsletter.sources.http.get`` as every source uses it: decompressed chunk
  by chunk, stopped at ``source.max_bytes`` (32 MiB) with a one-line error;
- ``baseline``: the same request read whole by httpx (``response.content``), which is
  what an unbounded reader does (the old path kept the raw body, then decoded it at once).

Prints the median peak RSS of each over ``--runs`` runs, and their ratio (target: the
bounded path under 300 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import statistics
import subprocess
import sys
import threading
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BOUNDED = """
import sys
from newsletter.errors import SourceUnavailable
from newsletter.sources.http import RetryPolicy, get, make_client
from newsletter.config import SourceSettings
settings = SourceSettings()
with make_client(settings) as client:
    try:
        get(client, sys.argv[1], timeout=60, policy=RetryPolicy(retries=0),
            max_bytes=settings.max_bytes)
    except SourceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
"""

BASELINE = """
import sys, httpx
response = httpx.get(sys.argv[1], timeout=60)
print(len(response.content), file=sys.stderr)
"""


def gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, packer.flush()])


def serve(body: bytes) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Bomb(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the bounded reader hangs up early
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def peak_rss(code: str, url: str) -> tuple[int, str]:
    """(peak resident bytes, last stderr line) of one fresh process running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read().decode()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = err.strip().splitlines()
    return usage.ru_maxrss * 1024, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflated-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    body = gzip_bomb(args.inflated_mb * 1024 * 1024)
    server, port = serve(body)
    url = f"http://127.0.0.1:{port}/day.json"
    print(f"gzip body {len(body) / 1000:.0f} KB, inflating to {args.inflated_mb} MiB")
    try:
        figures: dict[str, list[int]] = {"bounded": [], "baseline": []}
        last: dict[str, str] = {}
        for _ in range(args.runs):
            for name, code in (("bounded", BOUNDED), ("baseline", BASELINE)):
                peak, line = peak_rss(code, url)
                figures[name].append(peak)
                last[name] = line
    finally:
        server.shutdown()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name in ("bounded", "baseline"):
        runs = ", ".join(f"{v / 2**20:.0f}" for v in figures[name])
        print(f"{name:9} peak RSS median {medians[name] / 2**20:7.0f} MiB  (runs: {runs})")
        print(f"          says: {last[name][:120]}")
    print(f"baseline / bounded: {medians['baseline'] / medians['bounded']:.1f}x")


if __name__ == "__main__":
    main()
