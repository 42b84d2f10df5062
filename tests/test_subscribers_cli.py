"""``newsletter subscribers ...`` through click's runner."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.prefs import PrefsStore
from tests.doubles import EXAMPLE_LIST, EXAMPLE_TOPICS

TOPICS = frozenset(EXAMPLE_TOPICS)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return prepare_workdir(
        tmp_path,
        monkeypatch,
        subscribers=str(tmp_path / "subscribers.yaml"),
        state=f"sqlite:///{tmp_path / 'state.db'}",
    )


def prepare_workdir(
    folder: Path, monkeypatch: pytest.MonkeyPatch, *, subscribers: str, state: str
) -> Path:
    """``folder`` with the example list and a config naming ``subscribers`` and ``state``,
    as the working directory, with a fixed taxonomy and no NEWSLETTER_ variables."""
    (folder / "subscribers.yaml").write_bytes(EXAMPLE_LIST.read_bytes())
    (folder / "newsletter.yaml").write_text(
        f"subscribers: {subscribers}\nstate: {state}\n", encoding="utf-8"
    )
    monkeypatch.chdir(folder)
    # The taxonomy the commands check topics against (independent of newsletter.topics).
    monkeypatch.setattr("newsletter.subscribers.default_topic_names", lambda taxonomy=None: TOPICS)
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    return folder


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["subscribers", *args], catch_exceptions=False)


def test_add_validate_remove_keep_the_comments(workdir: Path) -> None:
    original = (workdir / "subscribers.yaml").read_bytes()
    result = run("add", "x@example.org", "--topics", "Multimodal LLMs,Agents & tool use")
    assert result.exit_code == 0, result.output
    assert "added x@example.org" in result.output
    text = (workdir / "subscribers.yaml").read_text(encoding="utf-8")
    assert 'topics: ["Multimodal LLMs", "Agents & tool use"]' in text
    assert "# The subscriber list" in text
    result = run("validate")
    assert result.exit_code == 0 and "7 subscribers" in result.output
    result = run("remove", "x@example.org")
    assert result.exit_code == 0, result.output
    assert (workdir / "subscribers.yaml").read_bytes() == original
    assert (workdir / "subscribers.yaml.bak").exists()


def test_add_refuses_bad_input_in_one_line_per_problem(workdir: Path) -> None:
    result = run("add", "not-an-address", "--timezone", "Nowhere/Land")
    assert result.exit_code == 2
    assert "error: not-an-address: not saved" in result.output
    assert "email:" in result.output and "timezone: 'Nowhere/Land'" in result.output
    result = run("add", "ADA@example.org")
    assert result.exit_code == 2 and "already in the list" in result.output
    assert "Traceback" not in result.output


def test_validate_reports_every_problem(workdir: Path) -> None:
    (workdir / "subscribers.yaml").write_text(
        "subscribers:\n  - email: a@\n  - email: b@example.org\n    summary: long\n",
        encoding="utf-8",
    )
    result = run("validate")
    assert result.exit_code == 2
    assert ":2: email:" in result.output
    assert ":4: summary: 'long' is not one of" in result.output


def test_set_changes_fields_and_resubscribes(workdir: Path) -> None:
    result = run("set", "grace@example.org", "--summary", "titles", "--clear", "max_papers")
    assert result.exit_code == 0, result.output
    text = (workdir / "subscribers.yaml").read_text(encoding="utf-8")
    grace = text.split("grace@example.org")[1].split("- email")[0]
    assert "summary: titles" in grace and "max_papers" not in grace
    result = run("set", "grace@example.org", "--max-papers", "0")
    assert result.exit_code == 2
    result = run("set", "nobody@example.org", "--name", "X")
    assert result.exit_code == 2 and "not in" in result.output
    store = PrefsStore(f"sqlite:///{workdir / 'state.db'}")
    store.suppress("grace@example.org")
    result = run("set", "grace@example.org", "--resubscribe")
    assert result.exit_code == 0 and "unsubscribe lifted" in result.output
    assert not store.is_suppressed("grace@example.org")


def test_list_shows_the_state_database(workdir: Path) -> None:
    store = PrefsStore(f"sqlite:///{workdir / 'state.db'}")
    store.suppress("ada@example.org")
    store.set_preferences("grace@example.org", topics=["LLM reasoning & RL"], summary="tldr")
    store.set_preferences("hedy@example.org", paused=True)
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if "@" in line}
    assert "unsubscribed" in lines["ada@example.org"]
    assert "own choice: topics: LLM reasoning & RL; summary: tldr" in lines["grace@example.org"]
    assert "paused" in lines["hedy@example.org"]
    assert "inactive" in lines["barbara@example.com"]
    assert "6 subscribers, 3 receive the next send, 1 unsubscribed" in result.output
    result = run("list", "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    ada = next(r for r in rows if r["email"] == "ada@example.org")
    assert ada["receives_next_send"] is False


def test_import_maps_headers_and_reports_refused_rows(workdir: Path) -> None:
    (workdir / "people.csv").write_text(
        "E-mail,Full Name,Topics,Max Papers,Active,Favourite colour\n"
        "new1@example.org,New One,Multimodal LLMs;Agents & tool use,5,yes,blue\n"
        "broken-address,Broke,,,,\n"
        "ada@example.org,Ada again,,,,\n"
        "new2@example.org,New Two,Knitting,,,\n"
        "NEW1@example.org,Dup,,,,\n"
        ",,,,,\n"
        "new3@example.org,New Three,,x,,\n"
        "new4@example.org,New Four,,,no,\n",
        encoding="utf-8",
    )
    result = run("import", "people.csv", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "would add 2 subscribers, refused 5 rows" in result.output
    assert (workdir / "subscribers.yaml").read_bytes() == EXAMPLE_LIST.read_bytes()
    result = run("import", "people.csv")
    assert result.exit_code == 2, result.output
    assert "added 2 subscribers, refused 5 rows" in result.output
    assert "error: people.csv: 5 rows refused" in result.output
    assert "ignored columns: Favourite colour" in result.output
    assert "people.csv:3: broken-address: email:" in result.output
    assert "people.csv:4: ada@example.org: email: ada@example.org is already in the list" in (
        result.output
    )
    assert "people.csv:5: new2@example.org: topics: unknown topic 'Knitting'" in result.output
    assert "people.csv:6: NEW1@example.org: email: NEW1@example.org is already in the list" in (
        result.output
    )
    assert "people.csv:8: new3@example.org: max_papers: 'x'" in result.output
    text = (workdir / "subscribers.yaml").read_text(encoding="utf-8")
    assert 'topics: ["Multimodal LLMs", "Agents & tool use"]' in text
    assert "new4@example.org" in text and "active: false" in text.split("new4@example.org")[1]


def test_export_csv_round_trips_through_import(workdir: Path) -> None:
    result = run("export")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["email"] for r in rows][:2] == ["ada@example.org", "grace@example.org"]
    assert rows[0]["topics"] == "Robotics & embodied AI;Agents & tool use"
    assert rows[5]["active"] == "false"
    (workdir / "export.csv").write_text(result.output, encoding="utf-8")
    (workdir / "subscribers.yaml").write_text("subscribers:\n", encoding="utf-8")
    result = run("import", "export.csv")
    assert result.exit_code == 0, result.output
    assert "added 6 subscribers, refused 0 rows" in result.output
    again = run("export")
    assert again.output == (workdir / "export.csv").read_text(encoding="utf-8")


def test_export_json_to_a_file(workdir: Path) -> None:
    result = run("export", "--format", "json", "--output", "out.json")
    assert result.exit_code == 0
    data = json.loads((workdir / "out.json").read_text(encoding="utf-8"))
    assert data[0]["email"] == "ada@example.org" and data[0]["added"] == "2026-01-05"
    assert data[0]["topics"] == ["Robotics & embodied AI", "Agents & tool use"]


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for command in ("list", "add", "remove", "set", "import", "export", "validate"):
        result = runner.invoke(cli, ["subscribers", command, "--help"])
        assert result.exit_code == 0
        assert len(result.output.split("\n\n")[1].strip()) > 10


def test_list_file_and_config_options(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    (other / "list.yaml").write_text("subscribers:\n  - email: z@example.org\n", encoding="utf-8")
    (other / "conf.yaml").write_text(
        f"subscribers: {other / 'list.yaml'}\nstate: sqlite:///{other / 's.db'}\n",
        encoding="utf-8",
    )
    result = run("validate", "--subscribers", str(other / "list.yaml"))
    assert "1 subscriber (1 active)" in result.output
    result = run("list", "--config", str(other / "conf.yaml"))
    assert result.output.startswith("z@example.org")
    assert not (other / "s.db").exists()  # a listing creates no state database


def test_clearable_fields_follow_the_list_fields() -> None:
    from newsletter.cli.subscribers import CLEARABLE_FIELDS
    from newsletter.subscribers import FIELDS

    assert tuple(f for f in FIELDS if f not in ("email", "added")) == CLEARABLE_FIELDS
