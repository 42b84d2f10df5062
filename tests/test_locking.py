"""The single-instance lock, held by a real second process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from newsletter.locking import (
    AlreadyRunning,
    InstanceLock,
    holder,
    lock_path_for,
)

ROOT = Path(__file__).resolve().parents[1]

HOLD = textwrap.dedent(
    """
    import sys, time
    from newsletter.locking import InstanceLock
    with InstanceLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///newsletter.db", Path("newsletter.db.lock")),
        ("sqlite:////var/lib/newsletter/state.db", Path("/var/lib/newsletter/state.db.lock")),
        ("sqlite:///:memory:", Path("newsletter.lock")),
        ("postgresql://db/newsletter", Path("newsletter.lock")),
        ("data/n.db", Path("data/n.db.lock")),
    ],
)
def test_the_lock_file_sits_next_to_the_state_database(url: str, expected: Path) -> None:
    assert lock_path_for(url) == expected


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "state.db.lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        assert holder(path) == child.pid
        with pytest.raises(AlreadyRunning) as caught:
            InstanceLock(path).acquire()
        assert caught.value.pid == child.pid
        assert f"pid {child.pid}" in str(caught.value)
        assert str(path) in str(caught.value)
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    # The holder has gone: the lock is free again, and nobody is named as holding it.
    assert holder(path) is None
    with InstanceLock(path) as lock:
        assert lock.held
        assert path.read_text().strip() == str(os.getpid())
    assert not lock.held


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db.lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        child.kill()
        child.wait(timeout=10)
    with InstanceLock(path):
        assert holder(path) == os.getpid()


def test_the_same_lock_twice_in_one_process_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "x" / "n.lock"
    with InstanceLock(path), pytest.raises(AlreadyRunning, match="another newsletter daemon"):
        InstanceLock(path).acquire()


def test_a_database_servers_lock_sits_in_the_config_files_folder(tmp_path: Path) -> None:
    from newsletter.config import config_folder, load_settings

    config = tmp_path / "etc" / "newsletter.yaml"
    config.parent.mkdir()
    config.write_text("state: postgresql://u@db.example.org/news\n", encoding="utf-8")
    settings = load_settings(str(config))
    assert config_folder(settings) == config.parent.resolve()
    assert lock_path_for(settings.state, base=config_folder(settings)) == (
        config.parent.resolve() / "newsletter.lock"
    )
