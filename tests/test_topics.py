from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import ConfigError
from newsletter.models import FULL_PROFILE, Paper, RankedPaper, TopicDef
from newsletter.rank import rank
from newsletter.topics import (
    ALSO_TODAY,
    OTHER,
    Phrase,
    Text,
    assign_topics,
    explain,
    group,
    load_taxonomy,
    name_key,
    parse_taxonomy,
)

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)

SMALL = (
    TopicDef(
        name="Robots",
        description="Robot learning.",
        keywords=("robot*", "manipulation task", "vision language action"),
        categories=("cs.RO",),
    ),
    TopicDef(
        name="Language",
        keywords=("language model", "translation"),
        categories=("cs.CL",),
    ),
    TopicDef(
        name="Vision", keywords=("image classification", "segmentation"), categories=("cs.CV",)
    ),
)


def paper(title: str, abstract: str = "", **kw: object) -> Paper:
    return Paper(title=title, abstract=abstract, **kw)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- taxonomy


def test_default_taxonomy_is_shipped_and_valid() -> None:
    taxonomy = load_taxonomy(None)
    names = [t.name for t in taxonomy]
    assert 10 <= len(taxonomy) <= 16
    assert len(set(names)) == len(names)
    assert "Robotics & embodied AI" in names
    assert "Multimodal LLMs" in names
    assert all(t.description and t.keywords for t in taxonomy)


def test_load_taxonomy_from_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - name: Graphs
          description: Graph learning.
          keywords: [graph neural network, message passing]
          categories: [cs.SI]
        - name: "  Speech   stuff "
          keywords: [speech^0.5]
        """,
    )
    taxonomy = load_taxonomy(str(path))
    assert taxonomy[0] == TopicDef(
        name="Graphs",
        description="Graph learning.",
        keywords=("graph neural network", "message passing"),
        categories=("cs.SI",),
    )
    assert taxonomy[1].name == "Speech stuff"
    assert Phrase.parse(taxonomy[1].keywords[0]).boost == 0.5


def test_a_topics_mapping_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "topics:\n  - name: A\n    keywords: [alpha]\n")
    assert load_taxonomy(path)[0].name == "A"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: A\n  keywords: [a]\n- just a string\n", "topic #2: must be a mapping"),
        ("- keywords: [a]\n", "topic #1: 'name' must be a non-empty string"),
        ("- name: A\n  keyword: [a]\n", "topic #1 (A): unknown field(s) keyword"),
        ("- name: A\n  keywords: a\n", "topic #1 (A): 'keywords' must be a list of strings"),
        ("- name: A\n  keywords: [a, 3]\n", "topic #1 (A): 'keywords' must be a list of non-empty"),
        ("- name: A\n  description: x\n", "topic #1 (A): needs at least one keyword or category"),
        ("- name: A\n  keywords: [a]\n- name: a\n  keywords: [b]\n", "topic #2 (a): duplicate"),
        ("- name: Other\n  keywords: [a]\n", "topic #1 (Other): 'Other' is reserved"),
        ("- name: A\n  keywords: ['--']\n", "keyword '--' has no letters or digits"),
        ("- name: A\n  keywords: ['x^zero']\n", "keyword 'x^zero': boost 'zero' is not a number"),
        ("- name: A\n  keywords: ['x^-1']\n", "must be a positive number"),
        ("- name: A\n  description: [1]\n  keywords: [a]\n", "'description' must be a string"),
        ("{}\n", "a taxonomy is a non-empty list of topics"),
        ("- name: A\n  keywords: [a\n", "not valid YAML (line"),
    ],
)
def test_bad_taxonomies_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_taxonomy(path)
    assert str(info.value).startswith(str(path) + ":")
    assert message in str(info.value)


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="taxonomy file not found"):
        load_taxonomy(tmp_path / "nope.yaml")


def test_non_utf8_taxonomy_file(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"- name: \xff\n")
    with pytest.raises(ConfigError, match="cannot read taxonomy"):
        load_taxonomy(path)


def test_parse_taxonomy_label_defaults() -> None:
    with pytest.raises(ConfigError, match=r"^<taxonomy>: a taxonomy"):
        parse_taxonomy("nope")


# --------------------------------------------------------------------------- matching


def test_phrases_match_on_word_boundaries_with_plurals_and_hyphens() -> None:
    text = Text("Vision-Language-Action Models for robotic grasping; policies in the world.")
    assert text.count(Phrase.parse("vision language action model")) == 1
    assert text.count(Phrase.parse("robot*")) == 1
    assert text.count(Phrase.parse("robot")) == 0  # "robotic" is not "robot" without *
    assert text.count(Phrase.parse("policy")) == 1
    assert text.count(Phrase.parse("rl")) == 0  # not inside "world"
    assert text.count(Phrase.parse("Gödel")) == 0
    assert Text("Mendel Gödel Machine").count(Phrase.parse("godel machine")) == 1


def test_the_longest_match_wins() -> None:
    taxonomy = (
        TopicDef(name="Multimodal", keywords=("vision language model",)),
        TopicDef(name="NLP", keywords=("language model",)),
    )
    p = paper("A vision-language model", "We train vision-language models.")
    assert explain(p, taxonomy)["NLP"] == {}
    assert assign_topics([p], taxonomy)[p.key] == "Multimodal"


# --------------------------------------------------------------------------- assignment


def test_assignment_uses_the_text_with_the_title_above_the_abstract() -> None:
    p = paper("Translation with small data", "We segment sentences, see segmentation.")
    assert assign_topics([p], SMALL) == {p.key: "Language"}
    q = paper("Segmentation of cells", "A language model helps translation of labels.")
    assert assign_topics([q], SMALL) == {q.key: "Vision"}


def test_ai_keywords_are_evidence() -> None:
    bare = paper("Foo: a new recipe", "We study a new recipe for things.", id="1")
    with_keywords = paper(
        "Foo: a new recipe",
        "We study a new recipe for things.",
        id="2",
        keywords=("robotic arms", "manipulation tasks"),
    )
    assigned = assign_topics([bare, with_keywords], SMALL)
    assert assigned["1"] == OTHER
    assert assigned["2"] == "Robots"


def test_arxiv_categories_are_evidence() -> None:
    plain = paper("Foo: a new recipe", "We study a new recipe.", id="1")
    listed = paper("Foo: a new recipe", "We study a new recipe.", id="2", categories=("cs.RO",))
    assigned = assign_topics([plain, listed], SMALL)
    assert assigned == {"1": OTHER, "2": "Robots"}
    # A category also breaks a tie between two topics the text supports equally.
    tie = paper("Translation and segmentation", "", id="3", categories=("cs.CV", "cs.CL"))
    assert assign_topics([tie], SMALL)["3"] == "Vision"


def test_ties_go_to_the_topic_listed_first() -> None:
    tie = paper("Translation and segmentation", "", id="3")
    assert assign_topics([tie], SMALL)["3"] == "Language"


def test_assignment_is_deterministic_and_independent_of_order() -> None:
    papers = _day()
    first = assign_topics(papers, load_taxonomy(None))
    again = assign_topics(list(reversed(papers)), load_taxonomy(None))
    assert first == again
    assert set(first) == {p.key for p in papers}


def test_assignment_does_not_depend_on_the_hash_seed() -> None:
    code = textwrap.dedent(
        """
        import json
        from newsletter.models import Paper
        from newsletter.topics import assign_topics, load_taxonomy
        titles = ["Graph neural networks for molecules", "Graph neural networks at scale",
                  "Oddities of lattices", "Lattices and oddities", "Robotic grasping",
                  "Speech recognition for all", "A tale of two cities"]
        papers = [Paper(title=t, abstract=t + " and more.", id=str(i))
                  for i, t in enumerate(titles)]
        print(json.dumps(assign_topics(papers, load_taxonomy(None)), sort_keys=True))
        """
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_leftovers_sharing_a_term_become_a_named_cluster() -> None:
    papers = [
        paper("Graph Neural Networks for molecules", "We predict properties.", id="a"),
        paper("Scaling graph neural networks", "Message passing on big graphs.", id="b"),
        paper("Oversmoothing in Graph Neural Networks", "Deep message passing.", id="c"),
        paper("Robotic grasping in clutter", "A robot grasps objects.", id="d"),
        paper("A tale of two cities", "It was the best of times.", id="e"),
    ]
    assigned = assign_topics(papers, SMALL)
    assert assigned == {
        "a": "Graph neural networks",
        "b": "Graph neural networks",
        "c": "Graph neural networks",
        "d": "Robots",
        "e": OTHER,
    }


def test_cluster_terms_must_be_specific() -> None:
    # "propose" and "method" are generic; one shared common word makes no cluster.
    papers = [
        paper("We propose a method", "Our method is novel.", id="a"),
        paper("A method we propose", "The method works.", id="b"),
    ]
    assert set(assign_topics(papers, SMALL).values()) == {OTHER}


def test_an_acronym_shared_by_titles_names_a_cluster() -> None:
    papers = [
        paper("ISAC waveforms", "Joint sensing.", id="a"),
        paper("Secure ISAC", "Eavesdroppers.", id="b"),
    ]
    assert set(assign_topics(papers, SMALL).values()) == {"ISAC"}


def test_a_weak_singleton_topic_is_merged_on_a_busy_day() -> None:
    busy = [paper(f"Robotic manipulation task number {i}", "", id=f"r{i}") for i in range(40)]
    weak = paper("Notes", "A language model.", id="w")  # 1 abstract hit + nothing else
    strong = paper("Translation for a language model", "A language model for translation.", id="s")
    assigned = assign_topics([*busy, weak], SMALL)
    assert assigned["w"] == OTHER
    assigned = assign_topics([*busy, strong], SMALL)
    assert assigned["s"] == "Language"


# --------------------------------------------------------------------------- grouping


def _ranked(name: str, score: float, topic: str, **kw: object) -> RankedPaper:
    return RankedPaper(paper=paper(name, **kw), score=score, topic=topic)


def test_group_orders_sections_by_their_best_paper_and_puts_other_last() -> None:
    ranked = [
        _ranked("o", 100.0, OTHER),
        _ranked("v1", 5.0, "Vision"),
        _ranked("r1", 9.0, "Robots"),
        _ranked("v2", 7.0, "Vision"),
        _ranked("c", 9.0, "Some cluster"),
        _ranked("l", 9.0, "Language"),
    ]
    groups = group(ranked, SMALL)
    assert [g.name for g in groups] == ["Robots", "Language", "Some cluster", "Vision", OTHER]
    assert [rp.paper.title for rp in groups[3].papers] == ["v2", "v1"]
    assert groups[0].description == "Robot learning."
    assert groups[2].description == ""


def test_group_keeps_rank_order_for_equal_scores() -> None:
    ranked = [_ranked(f"p{i}", 1.0, "Vision") for i in range(5)]
    (only,) = group(ranked, SMALL)
    assert [rp.paper.title for rp in only.papers] == ["p0", "p1", "p2", "p3", "p4"]


def test_group_of_nothing_is_empty() -> None:
    assert group([], SMALL) == ()


WORDS = (
    "robotic",
    "translation",
    "segmentation",
    "graph",
    "neural",
    "networks",
    "lattice",
    "speech",
    "diffusion",
    "the",
    "of",
    "agents",
    "ISAC",
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=5),
            st.integers(min_value=0, max_value=50),
        ),
        max_size=25,
    )
)
def test_every_paper_appears_exactly_once_across_groups(
    specs: list[tuple[list[str], int]],
) -> None:
    papers = [
        paper(" ".join(words), " ".join(reversed(words)), id=str(i), upvotes=votes)
        for i, (words, votes) in enumerate(specs)
    ]
    topics = assign_topics(papers, SMALL)
    groups = group(rank(papers, FULL_PROFILE, topics=topics, now=NOW), SMALL)
    keys = Counter(rp.paper.key for g in groups for rp in g.papers)
    assert keys == Counter(p.key for p in papers)
    assert all(g.papers for g in groups)
    assert len({g.name for g in groups}) == len(groups)
    assert OTHER not in [g.name for g in groups[:-1]]


# --------------------------------------------------------------------------- a realistic day


def _day() -> list[Paper]:
    rows = [
        ("OpenVLA: An Open-Source Vision-Language-Action Model", "Robot manipulation policies."),
        ("Diffusion Policy for dexterous grasping", "A robot learns to grasp."),
        ("Flamingo: a Visual Language Model for Few-Shot Learning", "Visual question answering."),
        ("Eyes Wide Shut? Visual Shortcomings of Multimodal LLMs", "MLLMs fail on images."),
        (
            "LongLive: Real-time Interactive Long Video Generation",
            "Autoregressive video diffusion.",
        ),
        ("Depth Anything V2", "Monocular depth estimation."),
        ("Quantile Advantage Estimation for Entropy-Safe Reasoning", "RLVR with GRPO on math."),
        ("SimpleTIR: RL for Multi-Turn Tool-Integrated Reasoning", "Agents calling tools."),
        ("Metis: Training LLMs with Low-Bit Quantization", "FP8 quantization of LLMs."),
        ("STITCH: Spoken Language Models that think", "Speech and audio."),
        ("Self-Execution Simulation Improves Coding Models", "Code generation via execution."),
        ("Jailbreaking aligned models", "Safety of LLMs against jailbreak attacks."),
    ]
    return [paper(t, a, id=str(i)) for i, (t, a) in enumerate(rows)]


def test_default_taxonomy_sorts_a_small_day_sensibly() -> None:
    assigned = assign_topics(_day(), load_taxonomy(None))
    expected = {
        "0": "Robotics & embodied AI",
        "1": "Robotics & embodied AI",
        "2": "Multimodal LLMs",
        "3": "Multimodal LLMs",
        "4": "Image & video generation",
        "6": "LLM reasoning & RL",
        "8": "Efficient training & inference",
        "10": "Code generation",
    }
    assert {k: assigned[k] for k in expected} == expected


def test_matches_do_not_overlap_leftmost_longest_wins() -> None:
    taxonomy = (
        TopicDef(name="Vision", keywords=("visual representation",)),
        TopicDef(name="Representations", keywords=("representation learning",)),
    )
    p = paper("Visual representation learning at scale")
    assert explain(p, taxonomy) == {
        "Vision": {"visual representation": 3.0 * 1.5},
        "Representations": {},
    }


# --------------------------------------------------------------------------- CLI


def test_taxonomy_command_lists_the_default_and_a_configured_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from newsletter.cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["taxonomy"])
    assert result.exit_code == 0, result.output
    assert "default taxonomy: " in result.output
    assert "- Robotics & embodied AI (" in result.output

    write(tmp_path, "- name: Graphs\n  description: G.\n  keywords: [graph, gnn]\n")
    (tmp_path / "n.yaml").write_text("digest:\n  taxonomy: taxonomy.yaml\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["taxonomy", "--config", "n.yaml", "--keywords"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{tmp_path.resolve() / 'taxonomy.yaml'}: 1 topic",  # relative to the config's folder
        "- Graphs (2 keywords)",
        "    G.",
        "    keywords: graph, gnn",
    ]


def test_taxonomy_command_reports_a_broken_file_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsletter.cli import cli

    path = write(tmp_path, "- name: A\n  keywords: [a]\n- name: A\n  keywords: [b]\n")
    result = CliRunner().invoke(cli, ["taxonomy", "--file", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {path}: topic #2 (A): duplicate of topic #1"


def test_an_empty_day_has_no_topics() -> None:
    assert assign_topics([], SMALL) == {}
    assert assign_topics([], load_taxonomy(None)) == {}


def test_a_weak_singleton_joins_a_close_runner_up_on_any_day() -> None:
    vision = [paper(f"Image classification {i}", "Segmentation too.", id=f"v{i}") for i in range(2)]
    weak = paper("Translation", "Segmentation, then segmentation again.", id="w")
    assert assign_topics([*vision, weak], SMALL)["w"] == "Vision"
    alone = paper("Translation", "Nothing else here.", id="a")
    assert assign_topics([*vision, alone], SMALL)["a"] == "Language"


# --------------------------------------------------------------------------- readable sections


def test_near_duplicate_cluster_names_are_one_section() -> None:
    assert name_key("Quantum computer") == name_key("Quantum computing")
    assert name_key("Quantum computation") == name_key("quantum computers")
    assert name_key("Graph neural networks") != name_key("Graph neural fields")
    papers = [
        paper("Quantum computer architectures", "Superconducting chips.", id="a"),
        paper("Error rates of a quantum computer", "Surface codes.", id="b"),
        paper("Quantum computing with ions", "Trapped ions.", id="c"),
        paper("Fault-tolerant quantum computing", "Magic states.", id="d"),
        paper("Quantum computing benchmarks", "Volume.", id="e"),
    ]
    names = set(assign_topics(papers, SMALL).values())
    assert len(names) == 1 and names <= {"Quantum computer", "Quantum computing"}


def test_one_paper_topics_beyond_max_sections_are_gathered_in_also_today() -> None:
    ranked = [
        _ranked("r1", 9.0, "Robots"),
        _ranked("r2", 8.0, "Robots"),
        _ranked("s1", 8.5, "Singleton one"),
        _ranked("s2", 7.5, "Singleton two"),
        _ranked("s3", 7.0, "Singleton three"),
        _ranked("v1", 3.0, "Vision"),
        _ranked("v2", 2.0, "Vision"),
        _ranked("o", 6.0, OTHER),
    ]
    groups = group(ranked, SMALL, max_sections=4)
    assert [g.name for g in groups] == ["Robots", "Singleton one", "Vision", ALSO_TODAY]
    gathered = groups[-1].papers
    assert [rp.paper.title for rp in gathered] == ["s2", "s3", "o"]
    assert [rp.topic for rp in gathered] == ["Singleton two", "Singleton three", OTHER]
    # room enough: nothing is gathered, and without a limit neither
    assert len(group(ranked, SMALL, max_sections=6)) == 6
    assert ALSO_TODAY not in [g.name for g in group(ranked, SMALL)]


def test_topics_with_several_papers_are_never_gathered() -> None:
    ranked = [_ranked(f"{t}{i}", 10.0 - t, f"Topic {t}") for t in range(5) for i in range(2)]
    ranked.append(_ranked("lone", 1.0, "Lone"))
    groups = group(ranked, SMALL, max_sections=3)
    assert [g.name for g in groups] == [*(f"Topic {t}" for t in range(5)), ALSO_TODAY]


def test_also_today_does_not_take_the_name_of_a_topic_of_the_day() -> None:
    ranked = [
        _ranked("a", 9.0, ALSO_TODAY),
        _ranked("b", 8.0, ALSO_TODAY),
        _ranked("c", 7.0, "One"),
        _ranked("d", 6.0, "Two"),
    ]
    names = [g.name for g in group(ranked, SMALL, max_sections=2)]
    assert names == [ALSO_TODAY, f"{ALSO_TODAY} (2)"]


def test_a_twenty_paper_day_reads_in_at_most_eight_sections() -> None:
    papers = [p for p in _day()]
    papers += [
        paper(f"Unrelated study number {i}", f"Topic {i} alone.", id=f"u{i}") for i in range(20)
    ]
    papers = papers[:20]
    ranked = rank(papers, FULL_PROFILE, topics=assign_topics(papers, SMALL), now=NOW)
    assert len(group(ranked, SMALL, max_sections=6)) <= 6
