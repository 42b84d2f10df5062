"""Done-when of feedback: through a real ``newsletter serve`` process and ``newsletter send``.

Two readers with the same profile get Monday's digest. One opens "more like this" under a
robotics paper and "less like this" under a diffusion paper (a GET: a page with one
button; then the POST). In Tuesday's digest that reader's robotics papers come before,
and diffusion papers after, where the other reader has them; the raised paper says why.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from benchmarks.bench_smtp import free_port
from newsletter.cli import cli
from newsletter.models import Paper
from newsletter.state import State
from tests.steer_papers import DIFFUSION, LANGUAGE, ROBOTICS

MONDAY = dt.date(2026, 1, 5)
TUESDAY = dt.date(2026, 1, 6)
SECRET = "feedback-loop-secret-feedback-loop-secret-01"


def _hf(papers: list[tuple[Paper, int]], day: dt.date) -> str:
    stamp = f"{day.isoformat()}T06:00:00.000Z"
    return json.dumps(
        [
            {
                "paper": {
                    "id": p.id,
                    "title": p.title,
                    "summary": p.abstract,
                    "authors": [],
                    "publishedAt": stamp,
                    "submittedOnDailyAt": stamp,
                    "upvotes": votes,
                    "ai_keywords": list(p.keywords),
                },
                "title": p.title,
                "publishedAt": stamp,
                "numComments": 0,
            }
            for p, votes in papers
        ]
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: steered@example.org\n  - email: twin@example.org\n",
        encoding="utf-8",
    )
    config = tmp_path / "newsletter.yaml"
    config.write_text(
        f"subscribers: {tmp_path / 'subscribers.yaml'}\n"
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        f"delivery:\n  backend: outbox\n  outbox: {tmp_path / 'outbox'}\n"
        f"digest:\n  base_url: {base}\n",
        encoding="utf-8",
    )
    State(f"sqlite:///{tmp_path / 'state.db'}").close()  # migrated before the server starts
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET}
    command = [sys.executable, "-c", "from newsletter.cli import main; main()", "serve"]
    server = subprocess.Popen(
        [*command, "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "serving on" in line, line
        yield config, base
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def _send(config: Path, day: dt.date, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    result = CliRunner().invoke(
        cli, ["send", "--date", day.isoformat(), "--source", str(source), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output


def _html(outbox: Path, day: dt.date, address: str) -> str:
    for path in sorted(outbox.glob(f"{day.isoformat()}-*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"].addresses[0].addr_spec == address:
            body = message.get_body(("html",))
            assert body is not None
            return str(body.get_content())
    raise AssertionError(f"no email to {address} on {day}")


def _order(html: str, papers: tuple[Paper, ...]) -> dict[str, int]:
    return {p.key: html.index(f'papers/{p.id}"') for p in papers}


def test_more_and_less_like_this_change_the_next_digest(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, base = served
    outbox = tmp_path / "outbox"
    monday = tmp_path / "monday.json"
    monday.write_text(_hf([(ROBOTICS[0], 20), (DIFFUSION[0], 20), (LANGUAGE[0], 20)], MONDAY))
    _send(config, MONDAY, monday, monkeypatch)

    html = _html(outbox, MONDAY, "steered@example.org")
    for word, paper in (("more", ROBOTICS[0]), ("less", DIFFUSION[0])):
        found = re.search(
            rf'href="({re.escape(base)}/preferences\?token=[^"]+&amp;{word}={paper.id})"', html
        )
        assert found is not None, word
        url = found.group(1).replace("&amp;", "&")
        page = httpx.get(url, timeout=10)  # what a mail scanner does: nothing changes
        assert page.status_code == 200 and paper.title in page.text
        with State(f"sqlite:///{tmp_path / 'state.db'}") as state:
            assert paper.key not in {s.target for s in state.signals("steered@example.org")}
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None
        posted = httpx.post(
            base + "/preferences" + action.group(1).replace("&amp;", "&"), timeout=10
        )
        assert posted.status_code == 200 and "Thank you" in posted.text

    tuesday = tmp_path / "tuesday.json"
    day2 = [(p, 60) for p in DIFFUSION[1:]] + [(p, 20) for p in ROBOTICS[1:]] + [(LANGUAGE[1], 30)]
    tuesday.write_text(_hf(day2, TUESDAY))
    _send(config, TUESDAY, tuesday, monkeypatch)

    steered = _html(outbox, TUESDAY, "steered@example.org")
    twin = _html(outbox, TUESDAY, "twin@example.org")
    mine, theirs = (
        _order(steered, ROBOTICS[1:] + DIFFUSION[1:]),
        _order(twin, ROBOTICS[1:] + DIFFUSION[1:]),
    )
    # the twin (no feedback) reads diffusion first: it has the votes
    assert max(theirs[p.key] for p in DIFFUSION[1:]) < min(theirs[p.key] for p in ROBOTICS[1:])
    # the steered reader reads robotics first and diffusion after it
    assert max(mine[p.key] for p in ROBOTICS[1:]) < min(mine[p.key] for p in DIFFUSION[1:])
    assert re.search(
        rf"like \S{{1,6}}{re.escape(ROBOTICS[0].title)}\S{{1,6}}, which you liked", steered
    )
    assert "which you liked" not in twin
