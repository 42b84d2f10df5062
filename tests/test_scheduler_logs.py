"""Logging: one line per event, a run id on each, human or JSON, secrets kept out."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from newsletter.logs import (
    NO_RUN,
    current_run_id,
    new_run_id,
    run_context,
    setup_logging,
)


def test_run_ids_are_fresh_and_scoped() -> None:
    assert current_run_id() == NO_RUN
    with run_context() as outer:
        assert len(outer) == 8 and outer == current_run_id()
        with run_context("inner") as inner:
            assert current_run_id() == inner == "inner"
        assert current_run_id() == outer
    assert current_run_id() == NO_RUN
    assert new_run_id() != new_run_id()


def test_a_thread_starts_outside_any_run() -> None:
    seen: list[str] = []
    with run_context("main-run"):
        thread = threading.Thread(target=lambda: seen.append(current_run_id()))
        thread.start()
        thread.join()
    assert seen == [NO_RUN]


def test_human_lines_carry_the_run_id_and_fields_on_one_line() -> None:
    out = io.StringIO()
    setup_logging(stream=out)
    log = logging.getLogger("newsletter.test")
    with run_context("abcd1234"):
        log.info("sent the papers\nof the day", extra={"data": {"zone": "Europe/Berlin", "n": 3}})
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            log.exception("crashed")
    log.info("outside")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert (
        "INFO  run=abcd1234 newsletter.test: sent the papers\\nof the day zone=Europe/Berlin n=3"
        in lines[0]
    )
    assert "ERROR run=abcd1234 newsletter.test: crashed error=" in lines[1]
    assert "ValueError: bad\\nthing at " in lines[1]
    assert "run=- newsletter.test: outside" in lines[2]


def test_json_lines_are_objects_with_the_fields_and_the_traceback() -> None:
    out = io.StringIO()
    setup_logging(fmt="json", stream=out)
    log = logging.getLogger("newsletter.test")
    with run_context("abcd1234"):
        log.warning("late source", extra={"data": {"zone": "UTC", "checks": 2}})
        try:
            raise KeyError("x")
        except KeyError:
            log.exception("crashed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "WARNING"
    assert first["run_id"] == "abcd1234"
    assert first["message"] == "late source"
    assert (first["zone"], first["checks"]) == ("UTC", 2)
    assert first["ts"].endswith("Z")
    assert "Traceback" in second["exc"] and "KeyError" in second["exc"]


def test_secrets_never_reach_the_log() -> None:
    out = io.StringIO()
    setup_logging(fmt="json", stream=out, secrets_=["hunter2", "", "k"])
    log = logging.getLogger("newsletter.test")
    log.error("bad key for user:%s", "hunter2", extra={"data": {"url": "smtp://u:hunter2@h"}})
    assert "hunter2" not in out.getvalue()
    event = json.loads(out.getvalue())
    assert event["message"] == "bad key for user:[redacted]"  # a one-letter "k" blots nothing
    assert event["url"] == "smtp://u:[redacted]@h"


def test_setting_up_twice_keeps_one_handler_and_quiets_the_library() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first)
    setup_logging(stream=second)
    logging.getLogger("newsletter").info("once")
    logging.getLogger("apscheduler.scheduler").info("Running job ...")
    logging.getLogger("apscheduler.executors").warning("Run time of job was missed by 0:10:00")
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    assert len(lines) == 2
    assert "missed by" in lines[1]
    with pytest.raises(ValueError, match="log format"):
        setup_logging(fmt="xml")  # type: ignore[arg-type]
