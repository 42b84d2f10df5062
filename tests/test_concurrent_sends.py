"""Exactly once under concurrency, end to end: real ``newsletter send`` / ``newsletter run``
processes for the same day against one state database (SQLite file or PostgreSQL), one
slow aiosmtpd server on loopback (about 50 ms per message). Each subscriber gets one copy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from newsletter.cli.run import FIRST_START_KEY
from newsletter.state import State
from tests.doubles import smtp_server

ROOT = Path(__file__).resolve().parents[1]
READERS = [f"reader{n:03d}@example.org" for n in range(300)]
DELAY = 0.05
"""Seconds the server takes per message."""

CLI = "import sys; from newsletter.cli import cli; cli.main(sys.argv[1:])"


class SlowServer:
    """Accepts every message after DELAY seconds; remembers each recipient. The first
    message waits (up to ``gate_timeout``) until ``gate`` SMTP sessions are open, so every
    sender has claimed its first batch before anyone finishes one."""

    def __init__(self, gate: int = 0, gate_timeout: float = 30.0) -> None:
        self.recipients: list[str] = []
        self.lock = threading.Lock()
        self.sessions: set[int] = set()
        self.gate = gate
        self.gate_timeout = gate_timeout

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.sessions.add(id(session))
        waited = 0.0
        while len(self.sessions) < self.gate and waited < self.gate_timeout:
            await asyncio.sleep(0.05)
            waited += 0.05
        await asyncio.sleep(DELAY)
        with self.lock:
            self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"

    def received(self) -> list[str]:
        with self.lock:
            return list(self.recipients)


def write_setup(folder: Path, port: int, state: str, *, due: dt.datetime | None = None) -> Path:
    (folder / "subscribers.yaml").write_text(
        "subscribers:\n" + "".join(f"  - email: {email}\n" for email in READERS)
    )
    schedule = (
        f"schedule:\n  time: '{due:%H:%M}'\n  timezone: UTC\n  days: [mon-sun]\n"
        if due is not None
        else ""
    )
    config = folder / "newsletter.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            state: {state}
            subscribers: {folder / "subscribers.yaml"}
            source:
              default: sample
            sender:
              from: "Daily Papers <digest@papers.example>"
              list_id: "Daily Papers <daily.papers.example>"
            digest:
              base_url: https://papers.example
            delivery:
              backend: smtp
              host: 127.0.0.1
              port: {port}
              security: none
              connections: 2
              claim_lease: 10
            """
        )
        + schedule
    )
    return config


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return {
        **out,
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_SECRET_KEY": "concurrency-test-key-0123456789abcdef",
    }


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out:\n{out}\n{err}")
    return proc.returncode, out, err


def sent_count(output: str) -> int:
    found = re.search(r": sent=(\d+)", output)
    return int(found.group(1)) if found else 0


def state_for(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def assert_everyone_once(state: str, server: SlowServer, day: dt.date) -> None:
    copies = Counter(server.received())
    assert set(copies) == set(READERS), f"missing: {sorted(set(READERS) - set(copies))[:5]}"
    assert set(copies.values()) == {1}, {e: n for e, n in copies.items() if n > 1}
    with State(state) as db:
        assert db.counts(day) == {"sent": len(READERS)}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_sends_at_once_deliver_each_subscriber_once(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state = state_for(engine, tmp_path, request)
    server = SlowServer(gate=3)  # both processes connected before the first 250
    day = dt.date(2026, 11, 25)
    with smtp_server(server) as port:
        config = write_setup(tmp_path, port, state)
        args = ("send", "--config", str(config), "--date", day.isoformat())
        first, second = cli(*args), cli(*args)
        results = [finish(first), finish(second)]
    for code, out, err in results:
        assert code == 0, out + err
    assert len(server.received()) == len(READERS)
    assert_everyone_once(state, server, day)
    shares = [sent_count(out) for _, out, _ in results]
    assert sum(shares) == len(READERS)
    assert all(share > 0 for share in shares), shares  # they split the list


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_daemon_and_a_send_for_the_same_day_deliver_each_subscriber_once(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state = state_for(engine, tmp_path, request)
    due = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    day = due.date()
    with State(state) as db:  # a daemon first started here a day ago: it catches up `due`
        db.set_meta(FIRST_START_KEY, (due - dt.timedelta(days=1)).isoformat())
    server = SlowServer(gate=3)
    with smtp_server(server) as port:
        config = write_setup(tmp_path, port, state, due=due)
        daemon = cli("run", "-c", str(config), "--no-archive")
        try:
            send = cli("send", "--config", str(config), "--date", day.isoformat())
            code, out, err = finish(send)
            assert code == 0, out + err
            deadline = time.monotonic() + 60
            while len(server.received()) < len(READERS) and time.monotonic() < deadline:
                assert daemon.poll() is None, daemon.communicate()
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            dcode, _, derr = finish(daemon)
    assert dcode == 0, derr
    assert "sending the papers of" in derr  # the daemon did run the day
    assert len(server.received()) == len(READERS)
    assert_everyone_once(state, server, day)
