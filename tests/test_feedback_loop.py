"""Done-when of feedback: through a real ``newsletter serve`` process and ``newsletter send``.

Two readers with the same profile get Monday's digest. One opens "more like this" under a
robotics paper and "less like this" under a diffusion paper (a GET: a page with one
button; then the POST). In Tuesday's digest that reader's robotics papers come before,
and diffusion papers after, where the other reader has them; the raised paper says why.

On a big day (70 papers) every paper carries both links in the HTML and the text part,
every link answers, the HTML stays under Gmail's clip, and forged or altered tokens get
the "link not valid" page and change nothing.
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
from newsletter.cli.preview import GMAIL_CLIP_BYTES
from newsletter.models import Paper
from newsletter.state import State
from tests.steer_papers import DIFFUSION, LANGUAGE, ROBOTICS
from tests.steer_papers import paper as steer_paper

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


def _parts(outbox: Path, day: dt.date, address: str) -> tuple[str, str]:
    """(html, text) of the email to ``address`` on ``day``, decoded as a mail app does."""
    for path in sorted(outbox.glob(f"{day.isoformat()}-*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"].addresses[0].addr_spec == address:
            html, text = message.get_body(("html",)), message.get_body(("plain",))
            assert html is not None and text is not None
            return str(html.get_content()), str(text.get_content()).replace("\r\n", "\n")
    raise AssertionError(f"no email to {address} on {day}")


def _html(outbox: Path, day: dt.date, address: str) -> str:
    return _parts(outbox, day, address)[0]


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
        found = re.search(rf'href="({re.escape(base)}/f/[\w-]+/{word}/{paper.id})"', html)
        assert found is not None, word
        url = found.group(1)
        page = httpx.get(url, timeout=10)  # what a mail scanner does: nothing changes
        assert page.status_code == 200 and paper.title in page.text
        with State(f"sqlite:///{tmp_path / 'state.db'}") as state:
            assert paper.key not in {s.target for s in state.signals("steered@example.org")}
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None
        posted = httpx.post(action.group(1), timeout=10)
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


WORDS = (
    "sparse attention kernels for long context transformers",
    "protein structure prediction with equivariant networks",
    "speech recognition for low resource languages",
    "graph neural networks for molecule property prediction",
    "federated learning under client drift",
    "tabular data synthesis with language models",
    "weather forecasting with neural operators",
)


def _fillers(start: int, count: int) -> list[tuple[Paper, int]]:
    """``count`` papers on other subjects, each with its own arXiv id."""
    return [
        (
            steer_paper(
                f"2601.{start + i:05d}",
                f"{WORDS[i % len(WORDS)].capitalize()}, study {i}",
                f"We study {WORDS[i % len(WORDS)]} (variant {i}) and report results on "
                f"public benchmarks; code and data are released.",
            ),
            5 + i % 7,
        )
        for i in range(count)
    ]


def test_every_paper_of_a_big_day_carries_working_feedback_links(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, base = served
    outbox = tmp_path / "outbox"
    monday = [(ROBOTICS[0], 20), (DIFFUSION[0], 20), (LANGUAGE[0], 20), *_fillers(1000, 67)]
    (tmp_path / "monday.json").write_text(_hf(monday, MONDAY))
    _send(config, MONDAY, tmp_path / "monday.json", monkeypatch)

    html, text = _parts(outbox, MONDAY, "steered@example.org")
    assert len(html.encode("utf-8")) + html.count("\n") <= GMAIL_CLIP_BYTES  # CRLF as sent
    tokens = set(re.findall(rf"{re.escape(base)}/f/([\w-]+)/", html + text))
    assert len(tokens) == 1  # one short token per reader, the same in every link
    (token,) = tokens
    feedback = f"{base}/f/{token}"
    for p, _votes in monday:  # every paper, in full or in the compact list, in both parts
        for word in ("more", "less"):
            assert html.count(f'href="{feedback}/{word}/{p.id}"') == 1, (word, p.id)
            assert text.count(f"{feedback}/{word}/{p.id}\n") == 1, (word, p.id)
    sections = re.findall(rf'href="({re.escape(feedback)}/fewer/[^"]+)"', html)
    assert sections and len(sections) == text.count(f"{feedback}/fewer/")

    with httpx.Client(timeout=10) as web:
        for p, _votes in monday:  # every link answers, and a GET records nothing
            for word in ("more", "less"):
                page = web.get(f"{feedback}/{word}/{p.id}")
                assert page.status_code == 200 and "Your feedback" in page.text, p.id
        topic = web.get(sections[0].replace("&amp;", "&"))
        assert topic.status_code == 200 and "Fewer papers on" in topic.text

        twin = _parts(outbox, MONDAY, "twin@example.org")[0]
        (theirs,) = set(re.findall(rf"{re.escape(base)}/f/([\w-]+)/", twin))
        assert theirs != token
        altered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
        for forged in (altered, token[:22] + theirs[22:], token[:-1], "A" * len(token)):
            for method in ("GET", "POST"):
                answer = web.request(method, f"{base}/f/{forged}/more/{ROBOTICS[0].id}")
                assert answer.status_code == 400 and "Link not valid" in answer.text
        with State(f"sqlite:///{tmp_path / 'state.db'}") as state:
            assert state.signals("steered@example.org") == []
            assert state.signals("twin@example.org") == []

        # the text part's link for robotics and the HTML's for diffusion, each confirmed
        liked = re.search(rf"More like this: (\S+/more/{ROBOTICS[0].id})\n", text)
        disliked = re.search(rf'href="(\S+/less/{DIFFUSION[0].id})"', html)
        assert liked is not None and disliked is not None
        for url in (liked.group(1), disliked.group(1)):
            page = web.get(url)
            action = re.search(r'<form method="post" action="([^"]+)"', page.text)
            assert action is not None
            assert "Thank you" in web.post(action.group(1).replace("&amp;", "&")).text

    tuesday = [(p, 60) for p in DIFFUSION[1:]] + [(p, 20) for p in ROBOTICS[1:]]
    tuesday += [(LANGUAGE[1], 30), *_fillers(2000, 62)]
    (tmp_path / "tuesday.json").write_text(_hf(tuesday, TUESDAY))
    _send(config, TUESDAY, tmp_path / "tuesday.json", monkeypatch)
    mine = _order(_html(outbox, TUESDAY, "steered@example.org"), ROBOTICS[1:] + DIFFUSION[1:])
    theirs_order = _order(_html(outbox, TUESDAY, "twin@example.org"), ROBOTICS[1:] + DIFFUSION[1:])
    assert max(theirs_order[p.key] for p in DIFFUSION[1:]) < min(
        theirs_order[p.key] for p in ROBOTICS[1:]
    )
    assert max(mine[p.key] for p in ROBOTICS[1:]) < min(mine[p.key] for p in DIFFUSION[1:])
