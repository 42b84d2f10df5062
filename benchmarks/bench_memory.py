"""Peak memory of a real send as the list grows: the list streamed from the state database.

    python3 -m benchmarks.bench_memory [--subscribers 1000000] [--baseline 100000]
                                       [--variants 60] [--connections 2] [--before REV]

For each size (``--baseline`` first, then ``--subscribers``): a fresh SQLite state
database gets the synthetic list of ``bench_scale`` (``subscribers: state``, written in
bulk with ``State.add_subscribers``), then a real ``newsletter send`` runs as a child
process with ``delivery.backend: smtp`` into Postfix's smtp-sink on loopback (the page
day, /work/shared/data/daily-papers-page.txt, or the bundled sample day). Printed per
run: the child's peak RSS (``ru_maxrss`` of that child, from ``os.wait4``), its wall
time and messages/second, and the same-run floor: the bare interpreter importing the
package and its CLI. The list is written by a child of its own (``--write-list``): on
Linux a child's ``ru_maxrss`` starts from its parent's high-water mark (``execve``
records the old address space's peak), so a parent that had held the list would be
measured instead of the send (1,000,000 readers: 664 MB "peak" for a send that stays
near 130 MB). ``--before REV`` also sends to the ``--baseline`` list with the code
of git revision REV (``git archive`` into the temporary folder; e.g. ``main``), the
same-run "before". Target (issue 11): <= 300 MB for 1,000,000 readers, flat in N.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_smtp import find_postfix, smtp_sink
from newsletter.state import State
from newsletter.topics import load_taxonomy
from tests.scale_helpers import DEFAULT_VARIANTS, subscriber_entries, synthetic_subscribers

PAGE_DAY = Path("/work/shared/data/daily-papers-page.txt")
"""The seed page day (the bundled sample day when absent)."""

DATE = "2026-11-25"
SECRET = "bench-memory-secret-0123456789abcdef01"
TARGET_MB = 300.0
CLI = "import sys; from newsletter.cli import cli; cli.main(sys.argv[1:])"
"""``newsletter`` (the console script) in a child interpreter."""
INSERT_CHUNK = 50_000
"""Entries written per transaction."""


def settings_env(state: Path, port: int, connections: int) -> dict[str, str]:
    """The send's settings, as ``NEWSLETTER_…`` variables (no config file)."""
    values = {
        "SUBSCRIBERS": "state",
        "STATE": f"sqlite:///{state}",
        "SECRET_KEY": SECRET,
        "SENDER__FROM": "Daily Papers <digest@papers.example>",
        "SENDER__LIST_ID": "Daily Papers <daily.papers.example>",
        "DIGEST__BASE_URL": "https://papers.example",
        "DELIVERY__BACKEND": "smtp",
        "DELIVERY__HOST": "127.0.0.1",
        "DELIVERY__PORT": str(port),
        "DELIVERY__SECURITY": "none",
        "DELIVERY__CONNECTIONS": str(connections),
    }
    return {f"NEWSLETTER_{key}": value for key, value in values.items()}


def write_list(state_url: str, n: int, variants: int) -> float:
    """The synthetic list of ``n`` readers in the state database; seconds taken."""
    started = time.perf_counter()
    topics = [t.name for t in load_taxonomy(None)]
    people = synthetic_subscribers(n, topics=topics, variants=min(variants, n))
    with State(state_url) as state:
        entries = list(subscriber_entries(people))
        del people
        for start in range(0, len(entries), INSERT_CHUNK):
            state.add_subscribers(entries[start : start + INSERT_CHUNK])
    return time.perf_counter() - started


def write_list_child(state: Path, n: int, variants: int, log: Path) -> float:
    """:func:`write_list` in a child process (see the module doc); seconds taken."""
    command = [sys.executable, "-m", "benchmarks.bench_memory", "--write-list", str(state)]
    command += ["--subscribers", str(n), "--variants", str(variants)]
    root = Path(__file__).resolve().parents[1]
    code, _, seconds = run_child(command, dict(os.environ), log, root)
    if code != 0:
        raise SystemExit(f"error: writing {n:,} readers exited {code}: see {log}")
    return seconds


def run_child(
    command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> tuple[int, float, float]:
    """Run ``command`` (in ``cwd``); its exit status, peak RSS in MB and wall seconds."""
    started = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024, time.perf_counter() - started


def send_once(
    n: int,
    args: argparse.Namespace,
    workdir: Path,
    port: int,
    env: dict[str, str],
    code_dir: Path | None = None,
) -> str:
    """Write ``n`` readers, send to them (with the package found in ``code_dir``, else
    this one); one line of figures."""
    folder = workdir / f"n{n}{'-before' if code_dir else ''}"
    folder.mkdir()
    state = folder / "state.db"
    written = write_list_child(state, n, args.variants, folder / "write.log")
    source = str(PAGE_DAY) if PAGE_DAY.exists() else "sample"
    command = [sys.executable, "-c", CLI, "send", "--date", DATE, "--source", source]
    env = {**env, **settings_env(state, port, args.connections)}
    log = folder / "send.log"
    if code_dir is not None:  # the child imports the package from there (cwd first on sys.path)
        env = {**env, "PYTHONPATH": str(code_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    code, peak, seconds = run_child(command, env, log, code_dir)
    summary = [line for line in log.read_text(errors="replace").splitlines() if "sent=" in line]
    if code != 0 or not summary:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise SystemExit(f"error: the send of {n:,} exited {code}:\n{tail}")
    verdict = "met" if peak <= TARGET_MB else "NOT met"
    label = f"{args.before} " if code_dir else ""
    return (
        f"{label}{n:>9,} readers: peak RSS {peak:6.0f} MB "
        f"(target <= {TARGET_MB:.0f} MB: {verdict}); "
        f"send {seconds:6.1f} s ({n / seconds:,.0f} msg/s), list written in {written:.0f} s\n"
        f"           {summary[-1].strip()}"
    )


def export(rev: str, workdir: Path) -> Path:
    """The tree of git revision ``rev`` of this repository, unpacked under ``workdir``."""
    into = workdir / "before"
    into.mkdir()
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000, help="the smaller list first")
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--before", metavar="REV", help="also the baseline list with REV's code")
    parser.add_argument("--write-list", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_list:  # the child that writes the list (see the module doc)
        write_list(f"sqlite:///{args.write_list}", args.subscribers, args.variants)
        return 0
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        bare = [sys.executable, "-c", "import newsletter.cli, newsletter.send"]
        floor = run_child(bare, env, workdir / "bare.log")[1]
        print(f"floor: the interpreter with the package imported: peak RSS {floor:.0f} MB")
        found = find_postfix(workdir)
        if isinstance(found, str):
            print(f"skipped: {found}")
            return 0
        sink, _, sink_env = found
        before = export(args.before, workdir) if args.before else None
        with smtp_sink(sink, sink_env) as port:
            if before is not None:
                print(send_once(args.baseline, args, workdir, port, env, before), flush=True)
            for n in dict.fromkeys((args.baseline, args.subscribers)):
                print(send_once(n, args, workdir, port, env), flush=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's own peak RSS: {own:.0f} MB (no child's figure can be below it)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
