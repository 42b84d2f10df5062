"""Editing the subscriber list: comments kept, atomic, locked, backed up."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from newsletter.errors import SubscribersError
from newsletter.listfile import SubscriberList, edit_subscribers
from newsletter.subscribers import load_subscribers, parse_subscribers
from tests.doubles import EXAMPLE_LIST, EXAMPLE_TOPICS


@pytest.fixture
def listfile(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.write_bytes(EXAMPLE_LIST.read_bytes())
    return path


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_add_then_remove_gives_back_the_same_bytes(listfile: Path) -> None:
    original = listfile.read_bytes()
    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        doc.add(
            {"email": "x@example.org", "topics": ["Multimodal LLMs"], "added": dt.date(2026, 5, 1)}
        )
    added = listfile.read_text(encoding="utf-8")
    assert comments(added) == comments(original.decode())
    assert (
        '  - email: x@example.org\n    topics: ["Multimodal LLMs"]\n    added: 2026-05-01\n'
        in added
    )
    assert listfile.with_name("subscribers.yaml.bak").read_bytes() == original
    assert [s.email for s in load_subscribers(listfile, known_topics=EXAMPLE_TOPICS)][-1] == (
        "x@example.org"
    )

    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        assert doc.remove("X@EXAMPLE.ORG")
    assert listfile.read_bytes() == original
    assert listfile.with_name("subscribers.yaml.bak").read_text(encoding="utf-8") == added


def test_update_keeps_comments_order_and_quotes(listfile: Path) -> None:
    original = listfile.read_text(encoding="utf-8")
    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        doc.update("grace@example.org", {"name": "Rear Admiral Hopper", "max_papers": None})
        doc.update("alan@example.com", {"topics": ["Agents & tool use"]})
    text = listfile.read_text(encoding="utf-8")
    assert comments(text) == comments(original)
    assert "    name: Rear Admiral Hopper\n" in text
    assert 'topics: ["Agents & tool use"]' in text
    before = original.splitlines()
    after = text.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=False) if a != b]
    assert len(after) == len(before) - 1  # max_papers removed, nothing else moved
    assert changed[0] == ("    name: Grace Hopper", "    name: Rear Admiral Hopper")


def test_removing_an_entry_keeps_the_comment_of_the_next_one(listfile: Path) -> None:
    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        doc.remove("ada@example.org")
        doc.remove("alan@example.com")
    text = listfile.read_text(encoding="utf-8")
    assert "# A robotics researcher" not in text
    assert "# Titles only" not in text
    assert "  # Wants the full abstracts of multimodal work.\n  - email: grace@example.org" in text
    assert "\n  # The whole digest, no preferences.\n  - email: katherine" in text
    assert "# The subscriber list" in text


def test_an_edit_that_would_not_validate_is_refused(listfile: Path) -> None:
    original = listfile.read_bytes()
    with (
        pytest.raises(SubscribersError) as info,
        edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc,
    ):
        doc.add({"email": "z@example.org", "topics": ["Knitting"]})
    assert any("unknown topic 'Knitting'" in p for p in info.value.problems)
    with pytest.raises(SubscribersError, match="already subscribed"):  # noqa: SIM117
        with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
            doc.add({"email": "ADA@example.org"})
    assert listfile.read_bytes() == original
    assert not listfile.with_name("subscribers.yaml.bak").exists()


def test_a_crash_between_write_and_rename_leaves_the_old_file(
    listfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = listfile.read_bytes()
    real_replace = os.replace

    def crash(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == listfile:
            raise OSError("simulated crash before rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):  # noqa: SIM117
        with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
            doc.add({"email": "new@example.org"})
    assert listfile.read_bytes() == original
    leftovers = sorted(p.name for p in listfile.parent.iterdir())
    assert leftovers == ["subscribers.yaml", "subscribers.yaml.bak", "subscribers.yaml.lock"]


def test_new_file_is_created_with_the_usual_layout(tmp_path: Path) -> None:
    path = tmp_path / "new.yaml"
    with edit_subscribers(path, known_topics=EXAMPLE_TOPICS) as doc:
        doc.add({"email": "a@example.org", "name": "A"})
        doc.add({"email": "b@example.org", "keywords": ["x", "y z"]})
    assert path.read_text(encoding="utf-8") == (
        "subscribers:\n"
        "  - email: a@example.org\n    name: A\n"
        "  - email: b@example.org\n    keywords: [x, y z]\n"
    )
    assert not path.with_name("new.yaml.bak").exists()


def _add_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        with edit_subscribers(path, known_topics=()) as doc:
            doc.add({"email": f"w{worker}.n{i}@example.org"})
            time.sleep(0.005)  # widen the read-modify-write window


def test_concurrent_edits_do_not_lose_entries(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text("# shared\nsubscribers:\n", encoding="utf-8")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_add_many, args=(str(path), w, 8)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    emails = {s.email for s in load_subscribers(path, known_topics=())}
    assert emails == {f"w{w}.n{i}@example.org" for w in range(4) for i in range(8)}
    assert path.read_text(encoding="utf-8").startswith("# shared\n")


def test_edits_leave_comments_and_quoting_alone(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    odd = (
        "subscribers:   # the list\n"
        "  - email: a@example.org  # spaced out\n"
        "    name: 'Single quoted'\n"
        "    keywords:\n"
        "      - one\n"
        "      - two\n"
        "       # a stray comment\n"
        "  - email: b@example.org\n"
        "    name: B\n"
        "    # inside b\n"
        "    summary: titles\n"
        "  - email: c@example.org\n"
    )
    path.write_text(odd, encoding="utf-8")
    with edit_subscribers(path, known_topics=EXAMPLE_TOPICS) as doc:
        doc.update("b@example.org", {"summary": "abstract"})
    text = path.read_text(encoding="utf-8")
    assert text == odd.replace("summary: titles", "summary: abstract")
    with edit_subscribers(path, known_topics=EXAMPLE_TOPICS) as doc:
        assert doc.remove("b@example.org")
        doc.add({"email": "d@example.org", "name": "D"})
    assert path.read_text(encoding="utf-8") == (
        odd.split("  - email: b@example.org")[0]
        + "  - email: c@example.org\n  - email: d@example.org\n    name: D\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "subscribers: []\n",
        "subscribers:\r\n  - email: a@example.org\r\n",
        "---\nsubscribers:\n  - email: a@example.org\n",
        "subscribers:\n  - {email: a@example.org}\n",
    ],
)
def test_other_layouts_are_edited_too(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(text.encode())
    with edit_subscribers(path, known_topics=EXAMPLE_TOPICS) as doc:
        doc.add({"email": "new@example.org"})
    emails = [s.email for s in load_subscribers(path, known_topics=EXAMPLE_TOPICS)]
    assert emails[-1] == "new@example.org"
    assert path.with_name("s.yaml.bak").read_bytes() == text.encode()


_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(_any_text, st.lists(_any_text, max_size=3))
@example("0", [":0"])  # ruamel writes [:0] plain, which libyaml cannot read
def test_new_entries_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, name: str, keywords: list[str]
) -> None:
    assume(all(k.strip() for k in keywords))  # a blank keyword is refused, rightly
    path = tmp_path_factory.mktemp("rt") / "s.yaml"
    with edit_subscribers(path, known_topics=None) as doc:
        doc.add({"email": "a@example.org", "name": name, "keywords": keywords})
    text = path.read_text(encoding="utf-8")
    data = yaml.load(text, Loader=yaml.CSafeLoader)  # libyaml reads back what ruamel wrote
    assert data["subscribers"][0]["name"] == name
    assert data["subscribers"][0].get("keywords", []) == keywords


def test_hostile_files_are_refused_before_any_edit(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = "subscribers:\n  - &a {email: a@example.org}\n  - *a\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SubscribersError, match=r":3: aliases \(\*name\) are not allowed"):  # noqa: SIM117
        with edit_subscribers(path, known_topics=None) as doc:
            doc.add({"email": "b@example.org"})
    assert path.read_text(encoding="utf-8") == text


def test_a_new_list_is_private(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with edit_subscribers(path, known_topics=None) as doc:
        doc.add({"email": "a@example.org"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with edit_subscribers(path, known_topics=None) as doc:
        doc.add({"email": "b@example.org"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("s.yaml.bak").stat().st_mode) == 0o600
    assert [s.email for s in parse_subscribers(path.read_text(), known_topics=None)] == [
        "a@example.org",
        "b@example.org",
    ]


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE_LIST.read_text(encoding="utf-8"),
        "# c\nsubscribers:\n- email: a@example.org\n  keywords: [x]\n",
        "subscribers:\n    -   email: a@example.org\n        name: A   # c\n",
        "subscribers:\n  - email: a@example.org\n  # trailing\n# the end\n",
        "subscribers:\n  - email: a@example.org\n    name: no final line break",
        "subscribers:\n  - email: a@example.org\n    keywords:\n      - one\n\n# end\n",
    ],
)
def test_an_appended_entry_is_what_a_ruamel_round_trip_writes(tmp_path: Path, text: str) -> None:
    new = {"email": "new@example.org", "name": "Zoë", "topics": ["Multimodal LLMs"]}
    appended, round_trip = tmp_path / "appended.yaml", tmp_path / "round_trip.yaml"
    for path in (appended, round_trip):
        path.write_text(text, encoding="utf-8")
        with edit_subscribers(path, known_topics=None) as doc:
            doc.add(new)
            if path == round_trip:
                doc.update("new@example.org", {})  # loads the whole document into ruamel
    assert appended.read_text(encoding="utf-8") == round_trip.read_text(encoding="utf-8")
    assert appended.read_text(encoding="utf-8").startswith(text)


@pytest.mark.parametrize(
    "name", ["Yes", "off", "1_000", "0x1F", "2026-01-01", "~", ".inf", ":0", "a, b", "[x]", "x #y"]
)
def test_names_libyaml_would_read_as_other_types_are_quoted(tmp_path: Path, name: str) -> None:
    path = tmp_path / "s.yaml"
    for email in ("a@example.org", "b@example.org"):  # into a new list, then appended
        with edit_subscribers(path, known_topics=None) as doc:
            doc.add({"email": email, "name": name})
    assert [s.name for s in load_subscribers(path, known_topics=None)] == [name, name]


_FIELD_LINES = st.sampled_from(
    [
        "name: Plain Name",
        "name: 'Single quoted'",
        'name: "Zoë \\u00e9"',
        "keywords: [x, 'y z']",
        "keywords:\n{i}  - one\n{i}  - two",
        'topics: ["Multimodal LLMs"]',
        "max_papers: 7",
        "summary: titles",
        "active: false",
        "added: 2026-01-02",
        "timezone: Europe/Paris",
    ]
)
_BETWEEN = st.sampled_from(["", "\n", "{d}# about the next\n", "# at column 0\n", "\n{d}# a\n\n"])
_EOL = st.sampled_from(["", "", "  # eol"])


@st.composite
def _layouts(draw: st.DrawFn) -> str:
    """A subscriber list as people write them: indentation, comments, blank lines, quotes."""
    dash, indent = draw(st.sampled_from([("  ", "    "), ("", "  "), ("    ", "      ")]))
    text = draw(st.sampled_from(["", "# the list\n", "---\n"])) + "subscribers:"
    text += draw(_EOL) + "\n"
    for n in range(draw(st.integers(1, 4))):
        text += draw(_BETWEEN).format(d=dash)
        text += f"{dash}- email: r{n}@example.org{draw(_EOL)}\n"
        fields = draw(st.lists(_FIELD_LINES, max_size=3, unique_by=lambda f: f.split(":")[0]))
        for field in fields:
            text += f"{indent}{field.format(i=indent)}{draw(_EOL)}\n"
    return text + draw(st.sampled_from(["", "# the end\n", "\n# the end\n", "other: 1\n"]))


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["remove", "set", "clear", "add"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=3,
)


def _edited(
    text: str, edits: list[tuple[str, int]], *, in_place: bool, step: int = 0
) -> SubscriberList:
    doc = SubscriberList(text, in_place=in_place)
    for number, (edit, index) in enumerate(edits, start=step):
        emails = doc.emails()
        email = emails[index % len(emails)] if emails else "nobody@example.org"
        if edit == "remove" and emails:
            doc.remove(email)
        elif edit == "set" and emails:
            doc.update(email, {"name": "Zoë N", "topics": ["Agents & tool use"], "active": True})
        elif edit == "clear" and emails:
            doc.update(email, {"name": None, "keywords": None, "max_papers": None})
        else:
            doc.add({"email": f"new{number}@example.org", "name": "New"})
    return doc


@settings(max_examples=300, deadline=None)
@given(_layouts(), _EDITS)
def test_edits_in_place_are_what_a_ruamel_round_trip_writes(
    text: str, edits: list[tuple[str, int]]
) -> None:
    assert yaml.load(text, Loader=yaml.CSafeLoader)["subscribers"]  # the layout is valid
    for step, edit in enumerate(edits):  # one command after the other
        if SubscriberList(text, in_place=False).dump() != text:
            assume(step)  # ruamel would change more than the edit: nothing to compare
            break
        in_place = _edited(text, [edit], in_place=True, step=step)
        whole = _edited(text, [edit], in_place=False, step=step)
        assert whole.round_tripped
        assert in_place.dump() == whole.dump()
        text = in_place.dump()
        try:
            yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError:  # ruamel broke it (refused when saving): both did the same
            break


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE_LIST.read_text(encoding="utf-8"),
        "# c\nsubscribers:  # k\n- email: a@example.org\n  keywords:\n  - x\n"
        "- email: b@example.org\n  name: B # eol\n# above c\n\n- email: c@example.org\n# end\n",
        "subscribers:\n    -   email: a@example.org\n        name: A\n"
        "    -   email: b@example.org  # b\n        name: 'B'\nother: 1\n",
    ],
)
def test_removing_or_setting_edits_only_a_window_of_the_text(text: str) -> None:
    for email in SubscriberList(text).emails():
        for edit in ("remove", "set", "clear"):
            in_place = _edited(
                text, [(edit, SubscriberList(text).emails().index(email))], in_place=True
            )
            whole = _edited(
                text, [(edit, SubscriberList(text).emails().index(email))], in_place=False
            )
            assert not in_place.round_tripped
            assert in_place.dump() == whole.dump()


@pytest.mark.parametrize(
    "text",
    [
        "subscribers:\n  - email: only@example.org\n",  # removing it leaves an empty list
        "subscribers:\r\n  - email: a@example.org\r\n  - email: b@example.org\r\n",
        "subscribers: [{email: a@example.org}, {email: b@example.org}]\n",
        "subscribers:\n  -\n    email: a@example.org\n  -\n    email: b@example.org\n",
    ],
)
def test_other_shapes_are_round_tripped_whole(text: str) -> None:
    for edit in ("remove", "set"):
        in_place = _edited(text, [(edit, 0)], in_place=True)
        whole = _edited(text, [(edit, 0)], in_place=False)
        assert in_place.dump() == whole.dump()
    assert _edited(text, [("remove", 0)], in_place=True).round_tripped


def test_remove_and_set_are_saved_like_add(listfile: Path) -> None:
    original = listfile.read_bytes()
    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        assert doc.remove("grace@example.org")
        assert not doc.remove("nobody@example.org")
    removed = listfile.read_bytes()
    assert listfile.with_name("subscribers.yaml.bak").read_bytes() == original
    assert "grace@example.org" not in removed.decode()
    with (  # a set that would not validate leaves the file and its backup alone
        pytest.raises(SubscribersError, match=r"not saved, the list would have 1 problem$"),
        edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc,
    ):
        doc.update("ada@example.org", {"topics": ["Knitting"]})
    assert listfile.read_bytes() == removed
    assert listfile.with_name("subscribers.yaml.bak").read_bytes() == original
    with edit_subscribers(listfile, known_topics=EXAMPLE_TOPICS) as doc:
        assert doc.current("ada@example.org")["email"] == "ada@example.org"
        doc.update("ada@example.org", {"max_papers": 3})
    assert listfile.with_name("subscribers.yaml.bak").read_bytes() == removed
    ada = load_subscribers(listfile, known_topics=EXAMPLE_TOPICS)[0]
    assert (ada.email, ada.max_papers) == ("ada@example.org", 3)
