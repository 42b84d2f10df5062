"""The hostile-input corpus, part two: attacks on the public surface (issue 12).

Sources that try to exhaust memory or send the fetch elsewhere, mail servers and
providers that echo our credentials back, sign-up floods and replays. Each case runs the
real CLI, or real servers on loopback, and checks the exact outcome: one ``error:`` line,
nothing leaked, nothing changed.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.corpus.helpers import DATE, assert_one_line_error, invoke

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTER_SOURCE__RETRIES", "0")


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def http_server(handle: Handler, host: str = "127.0.0.1") -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on ``host`` answering every GET with ``handle``; yields its
    port and the list of paths it was asked for."""
    seen: list[str] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            handle(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- sources that try to exhaust memory

BOMB_INFLATED = 500 * 1024 * 1024
"""What the gzip bomb inflates to: 500 MiB of zeros."""

PEAK_RSS_LIMIT = 300 * 1024 * 1024
"""The fetch of the bomb must stay under this much resident memory."""


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """500 MiB of zeros, gzip-compressed (about 509 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(BOMB_INFLATED // len(block))]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_ends_in_one_line_with_bounded_memory(gzip_bomb: bytes, tmp_path: Path) -> None:
    assert 400_000 < len(gzip_bomb) < 600_000

    def bomb(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(gzip_bomb)))
        request.end_headers()
        request.wfile.write(gzip_bomb)

    with http_server(bomb) as (port, _seen):
        url = f"http://127.0.0.1:{port}/day.json"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            "PYTHONPATH": str(ROOT),
            "NEWSLETTER_SOURCE__RETRIES": "0",
        }
        code = "from newsletter.cli import main; main()"
        args = [sys.executable, "-c", code, "fetch", "--source", url, "--date", DATE]
        err, returncode, peak = _run_measured(args, cwd=tmp_path, env=env)
    assert returncode == 2, err
    assert err.splitlines() == [
        f"error: {url}: the answer is larger than source.max_bytes "
        "(33554432 bytes after decompression)"
    ]
    print(f"peak RSS of the fetch: {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"


def _run_measured(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[str, int, int]:
    """Run ``args``; (stderr, exit code, peak resident memory in bytes) of that process
    alone (wait4 gives one child's own resource usage)."""
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        assert proc.stderr is not None
        with proc.stderr:
            err = proc.stderr.read().decode()
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return err, proc.returncode, usage.ru_maxrss * 1024  # Linux reports KiB


def test_a_source_larger_than_max_bytes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SOURCE__MAX_BYTES", "1000")

    def big(request: http.server.BaseHTTPRequestHandler) -> None:
        body = b"[" + b" " * 5000 + b"]"
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    with http_server(big) as (port, _seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(
        result, f"error: {url}: the answer is larger than source.max_bytes (1000 bytes"
    )


# --- sources that redirect elsewhere


def _redirect_to(location: str) -> Handler:
    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    return answer


def _papers(request: http.server.BaseHTTPRequestHandler) -> None:
    body = b'[{"paper": {"id": "2611.00001", "title": "Internal page", "summary": "S"}}]'
    request.send_response(200)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def test_a_redirect_to_another_internal_host_is_refused() -> None:
    with http_server(_papers, host="127.0.0.2") as (inner_port, inner_seen):
        inner = f"http://127.0.0.2:{inner_port}/admin/papers.json"
        with http_server(_redirect_to(inner)) as (port, _seen):
            url = f"http://127.0.0.1:{port}/day.json"
            result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(
        result,
        f"error: {url}: redirect to {inner} refused: another host over plain http",
    )
    assert inner_seen == []  # the internal host was never asked
    assert "Internal page" not in result.output


def test_a_redirect_on_the_configured_host_is_followed() -> None:
    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path == "/day.json":
            _redirect_to("/moved/day.json")(request)
        else:
            _papers(request)

    with http_server(answer) as (port, seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE, "--json"])
    assert result.exit_code == 0, result.output
    assert "Internal page" in result.output
    assert seen == ["/day.json", "/moved/day.json"]


def test_a_redirect_loop_stops() -> None:
    with http_server(_redirect_to("/day.json")) as (port, seen):
        url = f"http://127.0.0.1:{port}/day.json"
        result = invoke(["fetch", "--source", url, "--date", DATE])
    assert_one_line_error(result, f"error: {url}: more than 5 redirects")
    assert len(seen) == 6
