"""Hostile files: YAML alias bombs and duplicate keys, spreadsheet formulas in CSV exports,
a full disk during an edit, the modes of files holding addresses."""

from __future__ import annotations

import csv
import errno
import grp
import io
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from newsletter import files
from tests.corpus.helpers import INPUTS, assert_ok, invoke

MEMORY_LIMIT = 1 << 30
"""Address space the alias-bomb subprocess may use: expanding the bomb needs ~14 GB."""


def _copy(name: str, folder: Path) -> Path:
    target = folder / name
    target.write_bytes((INPUTS / name).read_bytes())
    return target


def _python(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (its own resource limits), in the file's folder."""
    folder = Path(str(args[0])).parent
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        check=False,
    )


def _subscribers(*args: str) -> list[str]:
    return ["subscribers", *args]


def _lines(output: str) -> list[str]:
    return output.splitlines()


def test_alias_bomb_is_refused_with_its_line_in_bounded_memory(tmp_path: Path) -> None:
    path = _copy("subs_alias_bomb.yaml", tmp_path)
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        from newsletter.cli import cli
        cli.main(["subscribers", "validate", "--subscribers", sys.argv[1]], prog_name="newsletter")
        """
    )
    done = _python(script, path)
    assert done.returncode == 2, done.stderr
    assert _lines(done.stderr)[1] == f"  {path}:3: aliases (*name) are not allowed in this file"
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr


@pytest.mark.parametrize("command", [["validate"], ["list"], ["export"], ["add", "x@example.org"]])
def test_alias_bomb_is_refused_by_every_command(command: list[str], tmp_path: Path) -> None:
    path = _copy("subs_alias_bomb.yaml", tmp_path)
    (tmp_path / "n.yaml").write_text(f"state: sqlite:///{tmp_path / 's.db'}\n", encoding="utf-8")
    before = path.read_bytes()
    result = invoke(
        _subscribers(*command, "-c", str(tmp_path / "n.yaml"), "--subscribers", str(path))
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert f"{path}:3: aliases (*name) are not allowed" in result.output
    assert path.read_bytes() == before


def test_a_second_top_level_key_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = _copy("subs_duplicate_top_key.yaml", tmp_path)
    result = invoke(_subscribers("validate", "--subscribers", str(path)))
    assert result.exit_code == 2
    assert _lines(result.output) == [
        f"error: {path}: 1 problem; nothing was loaded",
        f"  {path}:5: 'subscribers': duplicate key (first on line 1)",
    ]
    before = path.read_bytes()
    result = invoke(_subscribers("add", "new@example.org", "--subscribers", str(path)))
    assert _lines(result.output) == [
        f"error: {path}:5: 'subscribers': duplicate key (first on line 1); fix it by hand first"
    ]
    assert path.read_bytes() == before


def test_a_duplicate_field_in_an_entry_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "subscribers:\n  - email: a@example.org\n    name: A\n    name: B\n", encoding="utf-8"
    )
    result = invoke(_subscribers("validate", "--subscribers", str(path)))
    assert f"  {path}:4: 'name': duplicate key (first on line 3)" in _lines(result.output)


def test_long_values_are_cut_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"subscribers:\n  - email: {'a' * 5000}@example.org\n    summary: {'b' * 5000}\n",
        encoding="utf-8",
    )
    result = invoke(_subscribers("validate", "--subscribers", str(path)))
    assert result.exit_code == 2
    problems = _lines(result.output)[1:]
    assert len(problems) == 2
    for problem in problems:
        assert len(problem.removeprefix(f"  {path}")) < 300, problem
        assert "characters)" in problem


FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1)"]


def test_csv_export_neutralises_formulas_and_import_reads_them_back(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    entries = "".join(
        f"  - email: p{i}@example.org\n    name: '{name.replace(chr(39), chr(39) * 2)}'\n"
        for i, name in enumerate(FORMULAS)
    )
    path.write_text("subscribers:\n" + entries, encoding="utf-8")
    result = invoke(_subscribers("export", "--subscribers", str(path)))
    assert_ok(result)
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["name"] for r in rows] == ["'" + name for name in FORMULAS]
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    exported = tmp_path / "out.csv"
    exported.write_text(result.output, encoding="utf-8")
    again = tmp_path / "again.yaml"
    result = invoke(_subscribers("import", str(exported), "--subscribers", str(again)))
    assert_ok(result)
    result = invoke(_subscribers("export", "--format", "json", "--subscribers", str(again)))
    assert [row["name"] for row in json.loads(result.output)] == FORMULAS


def test_tab_and_carriage_return_cells_are_neutralised() -> None:
    from newsletter.cli.options import csv_cell as _cell

    assert _cell("\tcmd") == "'\tcmd"
    assert _cell("\rcmd") == "'\rcmd"
    assert _cell(["=a", "b"]) == "'=a;b"
    assert _cell("plain") == "plain"


def _listfile(folder: Path) -> Path:
    path = folder / "subscribers.yaml"
    path.write_text("# the admin's list\nsubscribers:\n  - email: ada@example.org\n")
    return path


def test_a_full_disk_during_add_is_one_line_and_leaves_the_list_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _listfile(tmp_path)
    before = path.read_bytes()
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full_disk)
    result = invoke(_subscribers("add", "new@example.org", "--subscribers", str(path)))
    assert result.exit_code == 2
    assert _lines(result.output) == [f"error: {path}.bak: {os.strerror(errno.ENOSPC)}"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "subscribers.yaml",
        "subscribers.yaml.lock",
    ]


def test_a_file_size_limit_during_add_is_one_line_and_leaves_the_list_alone(
    tmp_path: Path,
) -> None:
    path = _listfile(tmp_path)
    before = path.read_bytes()
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from newsletter.cli import cli
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        limit = int(sys.argv[2])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        cli.main(["subscribers", "add", "new.reader.with.a.long.address@example.org",
                  "--name", "A long name to grow the file", "--subscribers", sys.argv[1]],
                 prog_name="newsletter")
        """
    )
    done = _python(script, path, len(before) + 8)
    assert done.returncode == 2, done.stderr
    assert _lines(done.stderr) == [f"error: {path}: {os.strerror(errno.EFBIG)}"]
    assert path.read_bytes() == before
    assert (tmp_path / "subscribers.yaml.bak").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_files_holding_addresses_are_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        path = tmp_path / "new.yaml"
        assert_ok(invoke(_subscribers("add", "a@example.org", "--subscribers", str(path))))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        group = grp.getgrgid(os.getegid()).gr_name
        config = tmp_path / "n.yaml"
        config.write_text(f"file_group: {group}\n", encoding="utf-8")
        shared = tmp_path / "shared.yaml"
        args = _subscribers("add", "a@example.org", "-c", str(config), "--subscribers", str(shared))
        assert_ok(invoke(args))
        assert stat.S_IMODE(shared.stat().st_mode) == 0o640
        assert shared.stat().st_gid == os.getegid()
        path.chmod(0o640)  # the admin's choice is kept by later edits
        assert_ok(invoke(_subscribers("add", "b@example.org", "--subscribers", str(path))))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "new.yaml.bak").stat().st_mode) == 0o600
    finally:
        os.umask(old)
