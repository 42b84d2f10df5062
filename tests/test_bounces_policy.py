"""The policy (pure) and the VERP token."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.bounces import verp
from newsletter.bounces.policy import Policy, decide
from newsletter.errors import ConfigError

AT = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)


def test_hard_and_complaint_suppress_at_once() -> None:
    assert decide("hard", [], AT, Policy()) == "bounce"
    assert decide("complaint", [], AT, Policy()) == "complaint"


def test_soft_bounces_count_only_inside_the_window() -> None:
    policy = Policy(soft_limit=3, soft_days=14)
    old = AT - dt.timedelta(days=15)
    recent = [AT - dt.timedelta(days=10), AT - dt.timedelta(days=1)]
    assert decide("soft", [old, *recent[:1], AT], AT, policy) is None
    assert decide("soft", [*recent, AT], AT, policy) == "soft-bounce"
    assert decide("soft", [AT], AT, Policy(soft_limit=1)) == "soft-bounce"
    with pytest.raises(ValueError):
        decide("delayed", [], AT, policy)


def test_verp_token_maps_back_and_forgeries_match_nobody() -> None:
    day = dt.date(2026, 12, 5)
    address = verp.return_path("bounces+{token}@example.org", b"k", "Ada@Example.net", day)
    local = address.split("@")[0]
    assert len(local) <= 64 and local == local.lower()
    people = ["bob@example.net", "ada@example.net"]
    assert verp.match(b"k", address, people) == ("ada@example.net", day)
    assert verp.match(b"other key", address, people) is None
    tampered = address.replace("20261205", "20261206")
    assert verp.match(b"k", tampered, people) is None
    flipped = address[:-20] + ("a" if address[-20] != "a" else "b") + address[-19:]
    assert verp.match(b"k", flipped, people) is None
    assert verp.read("digest@example.org") is None


@pytest.mark.parametrize("template", ["bounces@example.org", "{token}@localhost", "x"])
def test_return_path_template_is_checked(template: str) -> None:
    with pytest.raises(ConfigError, match=r"delivery\.return_path"):
        verp.check_template(template)
