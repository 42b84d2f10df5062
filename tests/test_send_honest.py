"""A run against a dead SMTP port ends at once with exit 75, and ``status`` says so; the
send summary counts the readers it skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from benchmarks.bench_smtp import free_port
from newsletter.cli import cli
from newsletter.state import State

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from newsletter.cli import cli; cli.main(sys.argv[1:])"
DAY = "2026-11-25"


def setup(folder: Path, port: int, readers: int = 8) -> Path:
    (folder / "subscribers.yaml").write_text(
        "subscribers:\n" + "".join(f"  - email: r{n}@example.org\n" for n in range(readers))
    )
    config = folder / "newsletter.yaml"
    config.write_text(
        "state: state.db\n"
        "subscribers: subscribers.yaml\n"
        "source:\n  default: sample\n"
        'sender:\n  from: "Daily Papers <digest@papers.example>"\n'
        '  list_id: "Daily Papers <daily.papers.example>"\n'
        "digest:\n  base_url: https://papers.example\n"
        f"delivery:\n  backend: smtp\n  host: 127.0.0.1\n  port: {port}\n  security: none\n"
        "schedule:\n  days: [mon-sun]\n"
    )
    return config


def test_a_dead_smtp_port_ends_with_75_and_status_shows_the_failures(tmp_path: Path) -> None:
    config = setup(tmp_path, free_port())  # nobody listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    done = subprocess.run(
        [sys.executable, "-c", CLI, "send", "--config", str(config), "--date", DAY],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "NEWSLETTER_SECRET_KEY": "k" * 32},
        cwd="/",
        timeout=60,  # the old code retried each address: two minutes for eight
    )
    assert done.returncode == 75, done.stdout + done.stderr
    assert f"{DAY}: failed=8" in done.stdout
    assert "unreachable: 3 connection attempts in a row failed" in done.stdout
    assert done.stderr.count("WARNING") == 8  # each address once, at WARNING

    result = CliRunner().invoke(cli, ["status", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    last = report["last_run"]
    assert last["date"] == DAY and last["outcome"] == "transient"
    assert last["counts"] == {"sent": 0, "failed": 8, "pending": 0, "failed_permanent": 0}
    assert last["run_counts"] == {"failed": 8}
    assert any("8 deliveries failed (0 permanent, 8 transient" in p for p in report["problems"])


def test_the_summary_counts_skipped_readers(tmp_path: Path) -> None:
    config = setup(tmp_path, free_port(), readers=5)
    config.write_text(config.read_text().replace("backend: smtp", "backend: memory"))
    with State(tmp_path / "state.db") as state:
        state.suppress("r0@example.org")
        state.suppress("r1@example.org", reason="bounce", source="dsn")
        state.set_preferences("r2@example.org", paused=True)
    result = CliRunner().invoke(
        cli,
        ["send", "--config", str(config), "--date", DAY],
        env={"NEWSLETTER_SECRET_KEY": "k" * 32},
    )
    assert result.exit_code == 0, result.output
    assert "sent=2" in result.output
    assert "skipped: paused 1, suppressed 1, unsubscribed 1" in result.output


def test_read_only_commands_create_nothing(tmp_path: Path, monkeypatch: object) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = setup(folder, free_port(), readers=2)
    out = tmp_path / "preview"
    before = sorted(p.name for p in folder.iterdir())
    runner = CliRunner()
    for args in (
        ["status", "-c", str(config)],
        ["status", "-c", str(config), "--json"],
        ["subscribers", "list", "--config", str(config)],
        ["preview", "--config", str(config), "--date", DAY, "--out", str(out)],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        assert sorted(p.name for p in folder.iterdir()) == before, args
    assert not (tmp_path / "state.db").exists()
