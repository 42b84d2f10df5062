"""The subscriber list kept in the state database (``subscribers: state``): every
``subscribers`` command on it, and import/export moving a list between it and a file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from newsletter import stores
from newsletter import subscribers as roster
from newsletter.config import load_settings
from newsletter.errors import SubscribersError
from newsletter.prefs import next_send_subscribers
from newsletter.state import State
from tests.doubles import EXAMPLE_TOPICS
from tests.test_subscribers_cli import prepare_workdir, run

TOPICS = frozenset(EXAMPLE_TOPICS)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_url: str) -> Path:
    """The example list in a folder whose config keeps the list in the state database
    (SQLite, then PostgreSQL)."""
    return prepare_workdir(tmp_path, monkeypatch, subscribers="state", state=state_url)


def _yaml_emails(path: Path) -> list[str]:
    return [s.email for s in roster.load_subscribers(path, known_topics=EXAMPLE_TOPICS)]


def test_a_yaml_list_moves_into_the_database_and_back(workdir: Path) -> None:
    result = run("import", "subscribers.yaml")
    assert result.exit_code == 0, result.output
    assert "added 6 subscribers, refused 0 rows" in result.output
    assert "6 subscribers (5 active), no problems" in run("validate").output
    again = run("import", "subscribers.yaml")  # every address is already there
    assert again.exit_code == 2 and "refused 6 rows" in again.output
    result = run("export", "--format", "yaml", "-o", "back.yaml")
    assert result.exit_code == 0, result.output
    assert _yaml_emails(workdir / "back.yaml") == _yaml_emails(workdir / "subscribers.yaml")
    original = roster.load_subscribers(workdir / "subscribers.yaml", known_topics=TOPICS)
    back = roster.load_subscribers(workdir / "back.yaml", known_topics=TOPICS)
    assert back == original  # every field of every reader survives the round trip


def test_every_command_works_on_the_database(workdir: Path) -> None:
    assert run("import", "subscribers.yaml").exit_code == 0
    result = run("add", "New@Example.org", "--name", "New", "--topics", "Multimodal LLMs")
    assert result.exit_code == 0, result.output
    assert "added New@example.org" in result.output
    assert "is already in the list" in run("add", "new@example.org").output
    assert run("set", "new@example.org", "--summary", "titles").exit_code == 0
    assert run("set", "new@example.org", "--clear", "name").exit_code == 0
    rows = list(csv.DictReader(io.StringIO(run("export").output)))
    new = next(r for r in rows if r["email"] == "New@example.org")
    assert (new["summary"], new["name"], new["topics"]) == ("titles", "", "Multimodal LLMs")
    listed = run("list").output
    assert "New@example.org" in listed and "7 subscribers" in listed
    assert run("remove", "new@example.org").exit_code == 0
    assert "is not in" in run("remove", "new@example.org").output
    assert "6 subscribers" in run("validate").output
    settings = load_settings(workdir / "newsletter.yaml")
    assert len(next_send_subscribers(settings)) == 5  # the send path reads the same table


def test_problems_in_the_table_name_the_row(workdir: Path, state_url: str) -> None:
    with State(state_url) as state:
        state.add_subscribers([{"email": "ok@example.org"}, {"email": "broken", "summary": "x"}])
    result = run("validate")
    assert result.exit_code == 2
    assert "2: email: 'broken'" in result.output and "2: summary: 'x' is not one of" in (
        result.output
    )
    assert result.output.startswith("error: ")


def test_the_list_is_read_in_batches_by_row_id(workdir: Path, state_url: str) -> None:
    url = state_url
    with State(url) as state:
        state.add_subscribers([{"email": f"r{i}@example.org"} for i in range(5)])
        first = state.subscriber_batch(limit=2)
        assert [e["email"] for _id, e in first] == ["r0@example.org", "r1@example.org"]
        assert state.subscriber_batch(after=first[-1][0], limit=2)[0][1]["email"] == (
            "r2@example.org"
        )
    batches = list(stores.StateStore(url, batch=2).batches(None))
    assert [len(b) for b in batches] == [2, 2, 1]
    emails = [s.email for s in roster.load_subscribers("state", state=url)]
    assert emails == [f"r{i}@example.org" for i in range(5)]


def test_state_needs_its_url() -> None:
    with pytest.raises(SubscribersError, match="needs the 'state' setting"):
        stores.open_store("state", state="")


def test_the_web_lookup_finds_one_reader_in_the_table(workdir: Path, state_url: str) -> None:
    with State(state_url) as state:
        state.add_subscribers([{"email": "ada@example.org", "name": "Ada", "summary": "titles"}])
    store = stores.StateStore(state_url)
    found = store.find("ADA@example.org")
    assert found is not None and (found.name, found.summary) == ("Ada", "titles")
    assert store.find("nobody@example.org") is None
