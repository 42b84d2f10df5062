"""Loading and validating the subscriber list."""

from __future__ import annotations

import datetime as dt
import string
from pathlib import Path

import pytest
import yaml
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newsletter.addresses import _fast_email
from newsletter.errors import SubscribersError
from newsletter.subscribers import (
    load_subscribers,
    normalize_email,
    parse_subscribers,
    read_entries,
)
from tests.doubles import EXAMPLE_LIST, EXAMPLE_TOPICS


def test_example_file_loads_with_every_field() -> None:
    subs = load_subscribers(EXAMPLE_LIST, known_topics=EXAMPLE_TOPICS)
    assert 4 <= len(subs) <= 6
    assert all(s.email.endswith(("@example.org", "@example.com")) for s in subs)
    ada = subs[0]
    assert ada.email == "ada@example.org"
    assert ada.name == "Ada Lovelace"
    assert ada.topics == ("Robotics & embodied AI", "Agents & tool use")
    assert ada.keywords == ("diffusion policy", "humanoid", "sim-to-real")
    assert ada.authors == ("Chelsea Finn",)
    assert ada.max_papers == 10
    assert ada.summary == "tldr"
    assert ada.timezone == "Europe/London"
    assert ada.active is True
    assert ada.added == dt.date(2026, 1, 5)
    assert {s.summary for s in subs} == {"tldr", "abstract", "titles"}
    assert any(not s.active for s in subs)
    text = EXAMPLE_LIST.read_text(encoding="utf-8")
    for field in ("email", "name", "topics", "keywords", "authors", "max_papers"):
        assert f"{field}:" in text
    for field in ("summary", "timezone", "active", "added"):
        assert f"{field}:" in text


def _libyaml_entries(text: str) -> list[dict[str, object]] | None:
    """The entries as PyYAML's libyaml loader reads them (the oracle), None if it fails."""
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("subscribers"), list):
        return None
    return [e if isinstance(e, dict) else {"<not a mapping>": None} for e in data["subscribers"]]


def _our_entries(text: str) -> tuple[list[dict[str, object]], list[str]]:
    entries, problems = read_entries(text, "x")
    out = [
        {k: v for k, v, _line in fields} if fields is not None else {"<not a mapping>": None}
        for _line, fields in entries
    ]
    return out, problems


BAD = """\
subscribers:
  - email: not-an-address
    name: One
  - email: Bob@Example.org
    topics: ["Multimodal LLMs", "Underwater basket weaving"]
    colour: blue
  - email: bob@example.ORG
    timezone: Mars/Olympus_Mons
    summary: everything
    max_papers: many
    active: maybe
    added: someday
  - name: nobody
  - just a string
  - email: carol@example.org
    keywords: 42
"""


def test_bad_file_reports_every_problem_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "subs.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(SubscribersError) as info:
        load_subscribers(path, known_topics=EXAMPLE_TOPICS)
    problems = info.value.problems
    p = str(path)
    expected_prefixes = [
        f"{p}:2: email: 'not-an-address'",
        f"{p}:5: topics: unknown topic 'Underwater basket weaving'",
        f"{p}:6: colour: unknown field",
        f"{p}:7: email: duplicate of line 4",
        f"{p}:8: timezone: 'Mars/Olympus_Mons' is not a known time zone",
        f"{p}:9: summary: 'everything' is not one of tldr | abstract | titles",
        f"{p}:10: max_papers: 'many'",
        f"{p}:11: active: 'maybe' is not true or false",
        f"{p}:12: added: 'someday' is not a date",
        f"{p}:13: email: missing",
        f"{p}:14: entry: expected a mapping",
        f"{p}:16: keywords: expected a list of text",
    ]
    assert len(problems) == len(expected_prefixes), problems
    for prefix in expected_prefixes:
        assert any(pr.startswith(prefix) for pr in problems), (prefix, problems)
    assert "12 problems" in str(info.value)


def test_malformed_yaml_reports_its_line(tmp_path: Path) -> None:
    path = tmp_path / "subs.yaml"
    path.write_text(
        'subscribers:\n  - email: a@example.org\n    name: "unclosed\n  - email: b@example.org\n',
        encoding="utf-8",
    )
    with pytest.raises(SubscribersError) as info:
        load_subscribers(path, known_topics=EXAMPLE_TOPICS)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:")
    assert "invalid YAML" in problem
    line = int(problem.split(":")[1])
    assert 3 <= line <= 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- email: a@example.org\n", "must be a mapping"),
        ("people:\n  - email: a@example.org\n", "unknown top-level key"),
        ("subscribers: 3\n", "expected a list of entries"),
    ],
)
def test_wrong_shape_is_reported(text: str, message: str) -> None:
    with pytest.raises(SubscribersError) as info:
        parse_subscribers(text, source="s.yaml", known_topics=EXAMPLE_TOPICS)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_empty_list_and_missing_file(tmp_path: Path) -> None:
    assert parse_subscribers("subscribers:\n", known_topics=EXAMPLE_TOPICS) == []
    assert parse_subscribers("subscribers: []\n", known_topics=EXAMPLE_TOPICS) == []
    assert parse_subscribers("", known_topics=EXAMPLE_TOPICS) == []
    with pytest.raises(SubscribersError, match="not found"):
        load_subscribers(tmp_path / "nope.yaml", known_topics=EXAMPLE_TOPICS)


def test_defaults_and_normalised_address() -> None:
    (sub,) = parse_subscribers("subscribers:\n- email: Jane.Doe@EXAMPLE.org\n", known_topics=())
    assert sub.email == "Jane.Doe@example.org"
    assert (sub.name, sub.topics, sub.summary, sub.active, sub.max_papers) == (
        "",
        (),
        "tldr",
        True,
        None,
    )


def test_topics_are_not_checked_without_a_taxonomy() -> None:
    text = 'subscribers:\n  - email: a@example.org\n    topics: ["Anything"]\n'
    (sub,) = parse_subscribers(text, known_topics=None)
    assert sub.topics == ("Anything",)


def test_block_lists_and_quoting_variants_agree_with_libyaml() -> None:
    text = """\
# comment
subscribers:
- email: 'o''neil@example.org'   # quoted
  name: "Jo: the \\"best\\""
  topics:
  - Multimodal LLMs
  - "Agents & tool use"
  keywords:
    - a # x
    - 'b'
  authors: [ "A. Person" , 'B', C D ]
  max_papers: 0x10
  active: yes
  added: 2026-02-03
- email: second@example.org
  name:
  timezone: ~
"""
    ours, problems = _our_entries(text)
    assert not problems and ours == _libyaml_entries(text)
    subs = parse_subscribers(text, known_topics=EXAMPLE_TOPICS)
    assert subs[0].email == "o'neil@example.org"
    assert subs[0].name == 'Jo: the "best"'
    assert subs[0].topics == ("Multimodal LLMs", "Agents & tool use")
    assert subs[0].keywords == ("a", "b")
    assert subs[0].authors == ("A. Person", "B", "C D")
    assert subs[0].max_papers == 16
    assert subs[1].name == ""


# -- the reader reads exactly what libyaml reads, or refuses aliases and duplicate keys ----

_plain_word = st.text(alphabet=string.ascii_letters + string.digits + " .-_&'+:#", max_size=12)
_value = st.one_of(
    _plain_word,
    _plain_word.map(lambda s: f'"{s}"'),
    _plain_word.map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.lists(_plain_word, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(["", "~", "null", "true", "no", "12", "-3", "1.5", "2026-01-02", "# c"]),
)
_key = st.sampled_from(["email", "name", "topics", "max_papers", "yes", "x-y", "added"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.tuples(_key, _value), min_size=1, max_size=4), min_size=0, max_size=4),
    st.sampled_from([0, 2, 4]),
)
def test_reader_agrees_with_libyaml(entries: list[list[tuple[str, str]]], indent: int) -> None:
    lines = ["subscribers:"]
    pad = " " * indent
    for fields in entries:
        for i, (key, value) in enumerate(fields):
            lead = pad + ("- " if i == 0 else "  ")
            lines.append(f"{lead}{key}: {value}".rstrip())
    text = "\n".join(lines) + "\n"
    _assert_agrees_with_libyaml(text)


def _assert_agrees_with_libyaml(text: str) -> None:
    ours, problems = _our_entries(text)
    expected = _libyaml_entries(text)
    if problems:  # refused: libyaml fails too, or the text repeats a key or has an alias
        refused = ("duplicate key", "aliases", "invalid YAML", "expected a list", "top-level")
        assert expected is None or any(r in p for p in problems for r in refused), problems
    elif expected is not None:
        assert ours == expected, text


# -- the fast address check must agree with email-validator ------------------------------

_local = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=70)
_label = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=12)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)
_tld = st.sampled_from(["org", "COM", "test", "localhost", "io", "x", "local", "a1"])


@settings(max_examples=500, deadline=None)
@given(_local, _domain, _tld)
@example("INFO", "0", "org")  # a role name email-validator lowercases (RFC 2142)
def test_fast_address_check_matches_email_validator(local: str, domain: str, tld: str) -> None:
    address = f"{local}@{domain}.{tld}"
    fast = _fast_email(address)
    if fast is None:
        return
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:  # pragma: no cover - a failure of the fast path
        pytest.fail(f"fast path accepted {address!r}, email-validator refuses: {exc}")
    assert fast == expected


def test_addresses_outside_the_fast_path_go_to_email_validator() -> None:
    assert normalize_email("Jose@Exämple.org") == "Jose@xn--exmple-cua.org"
    with pytest.raises(ValueError, match="needs SMTPUTF8"):
        normalize_email("José@example.org")
    for bad in ("a@localhost", "a@b.test", "a..b@example.org", "a@-x.org", "@x.org", "a@x"):
        with pytest.raises(ValueError):
            normalize_email(bad)


def test_libyaml_is_the_baseline_the_benchmark_uses() -> None:
    assert yaml.__with_libyaml__


_LINES = [
    "subscribers:",
    "subscribers: []",
    "  - email: a@example.org",
    "  -   email: a@example.org",
    "- email: b@example.org",
    "    - email: c@example.org",
    "    name: Bo",
    "    name:   spaced  ",
    "   name: off by one",
    "      name: too deep",
    "    topics:",
    "    topics: # comment",
    "      - Multimodal LLMs",
    "    - Agents & tool use",
    "      -   LLM reasoning & RL",
    "      - key: value",
    "      - - nested",
    "        continued",
    "  # comment",
    "",
    "   ",
    "    keywords: [a, 'b c', \"d\"]",
    "    keywords: [a,]",
    "    keywords: [a, [b]]",
    "    keywords: []",
    "    keywords: [ ]",
    "    keywords: [a] # see [x]",
    "    keywords: [#]",
    "    keywords: [a #b]",
    '    keywords: [a, "c#"]',
    "    keywords: [a:b]",
    "    name: 'it''s'",
    '    name: "say \\"hi\\""',
    '    name: "a"b',
    "    name: 'open",
    "    name: a #not a comment#",
    "    name: a#b",
    "    name: a: b",
    "    name: a:",
    "    name: |",
    "      block text",
    "    name: >",
    "    name: &anchor x",
    "    name: *anchor",
    "    name: !!str 12",
    "    name: {a: 1}",
    "    name: -x",
    "    name: ~",
    "    name: null",
    "    max_papers: 012",
    "    max_papers: 1_000",
    "    max_papers: 0o17",
    "    max_papers: .inf",
    "    active: Yes",
    "    active: off",
    "    added: 2026-02-30",
    "    added: 2026-02-03 10:00:00",
    "    yes: 1",
    "    on: 2",
    "    email: dup@example.org",
    "    ? complex",
    "---",
    "...",
    "other: 1",
    "\tname: tab",
    "    name: tab\there",
]


_ENTRY_STARTS = [line for line in _LINES if line.lstrip().startswith("- ")]
_FIELD_LINES = [line for line in _LINES if not line.lstrip().startswith("- ")] + [
    "      - Multimodal LLMs",
    "    name: Bo",
    "    added: 2026-02-03",
]
_soup_entry = st.tuples(
    st.sampled_from(_ENTRY_STARTS), st.lists(st.sampled_from(_FIELD_LINES), max_size=5)
).map(lambda e: [e[0], *e[1]])


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_soup_entry, max_size=4), st.booleans())
def test_reader_never_disagrees_on_line_soup(entries: list[list[str]], crlf: bool) -> None:
    lines = [line for entry in entries for line in entry]
    text = ("\r\n" if crlf else "\n").join(["subscribers:", *lines]) + "\n"
    _assert_agrees_with_libyaml(text)
