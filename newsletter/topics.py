"""Grouping a day's papers into named topics a researcher recognises (pure).

Three entry points::

    load_taxonomy(path)            -> tuple[TopicDef, ...]   (the only I/O: reads the YAML)
    assign_topics(papers, taxonomy) -> dict[Paper.key, topic name]
    group(ranked, taxonomy)        -> tuple[TopicGroup, ...] (the digest's sections)

How a paper gets its topic (deterministic: no randomness, no dependence on hash order):

1. **Taxonomy match.** Every keyword of every topic is matched on word boundaries,
   case-insensitively and tolerant to plurals and hyphens ("vision-language-action
   models" matches the keyword ``vision language action model``; a trailing ``*``
   makes a prefix, ``robot*`` matches "robotic"). A keyword found in the title adds
   ``TITLE_WEIGHT``, in the abstract ``ABSTRACT_WEIGHT`` times ``1 + log2(count)``
   (sublinear, as term frequency usually is), in the source's ``ai_keywords``
   ``AI_KEYWORD_WEIGHT``; multiword keywords weigh more (``PHRASE_BONUS`` per extra
   word) because they are more specific, and a keyword may carry a boost
   (``"llm^0.4"``). Matches never overlap, the longest wins: inside "vision-language
   model" the keyword "language model" is not seen. arXiv categories listed by a topic add
   ``PRIMARY_CATEGORY_WEIGHT`` (primary) or ``CATEGORY_WEIGHT`` (cross-list), divided by
   how many topics list that category, so a category shared by four topics is weak
   evidence. The best topic wins if it scores at least ``MIN_TOPIC_SCORE``; ties go to
   the topic listed first.
2. **Data-driven clusters.** Papers that fit no topic well are grouped by salient
   terms they share: the same two- or three-word phrase in at least two of them (in a
   title or keyword list of one at least, not starting or ending with a generic word
   such as "method" or "novel", and rare in the rest of the day), or an acronym in at
   least two of their titles. The greedy choice takes the term covering most papers,
   weighted by its specificity to the leftovers; the cluster is named from the term in
   the papers' own spelling ("Graph neural networks", "ISAC"). A cluster whose name is a
   near-duplicate of an earlier one or of a topic (:func:`name_key`: "Quantum computer"
   and "Quantum computing") joins it.
3. **Other.** Whatever is left, last in the digest.

A taxonomy topic left with a single, weakly matched paper (below
``SINGLETON_KEEP_SCORE``) is merged into the paper's runner-up topic when that one has
papers and is close (``RUNNER_UP_RATIO``); on a busy day (``SINGLETON_DAY_SIZE``
papers or more) it otherwise goes on to clustering, so the digest has few one-paper
sections that a stray keyword created. Strongly matched singletons stay: a lone
speech paper is still best read under "Speech & audio".
"""

from __future__ import annotations

import importlib.resources
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter import yamlfile
from newsletter.errors import ConfigError
from newsletter.models import Paper, RankedPaper, TopicDef, TopicGroup

OTHER = "Other"
"""The name of the catch-all section, always last."""

ALSO_TODAY = "Also today"
"""The section gathering one-paper topics beyond ``digest.max_sections`` (papers keep their
own topic, which the email shows beside each of them)."""

MIN_SECTIONS = 2
"""``max_sections`` below this is taken as this (one topic and "Also today")."""

DEFAULT_TAXONOMY_RESOURCE = "taxonomy.yaml"
"""The default taxonomy, shipped in ``newsletter/data``."""

TITLE_WEIGHT = 3.0
"""Evidence added by a keyword found in the title."""

ABSTRACT_WEIGHT = 1.0
"""Evidence added by a keyword found once in the abstract."""

ABSTRACT_COUNT_CAP = 8
"""Occurrences in the abstract count sublinearly (1 + log2 n), up to this many."""

AI_KEYWORD_WEIGHT = 2.0
"""Evidence added by a keyword found in the source's ``ai_keywords``."""

PHRASE_BONUS = 0.5
"""Multiplier added per extra word of a multiword keyword (specificity)."""

PRIMARY_CATEGORY_WEIGHT = 3.0
"""Evidence for a topic listing the paper's primary arXiv category (before sharing)."""

CATEGORY_WEIGHT = 0.75
"""Evidence for a topic listing one of the paper's other arXiv categories."""

MIN_TOPIC_SCORE = 3.0
"""Below this, a paper does not fit any taxonomy topic and goes to clustering."""

MIN_CLUSTER_SIZE = 2
"""A data-driven cluster needs at least this many papers."""

MAX_CLUSTER_TERM_WORDS = 3
"""Cluster names are phrases of at most this many words."""

SINGLETON_DAY_SIZE = 40
"""On days with at least this many papers, weak one-paper topics go to clustering."""

SINGLETON_KEEP_SCORE = 6.0
"""A one-paper topic whose paper scores at least this is a real section; it stays."""

RUNNER_UP_RATIO = 0.6
"""A weak singleton moves to its runner-up topic if that scores at least this share."""

MAX_NGRAM = 6
"""Keywords longer than this many words are refused."""

STOPWORDS = frozenset(
    """a about above across after again against all almost along also although am among an and
    any are as at be been before being below between both but by can could did do does doing
    down during each either else even ever every few for from further had has have having he
    her here hers him his how however i if in into is it its itself just less many may me
    might more most much must my neither no nor not now of off often on once one only or
    other our out over own per rather same she should since so some such than that the their
    theirs them then there these they this those through thus to too toward towards under
    until up upon us very via was we were what when where whether which while who whom whose
    why will with within without would yet you your""".split()  # noqa: SIM905
)
"""Words never part of a cluster term."""

GENERIC_WORDS = frozenset(
    """ability able accuracy achieve achieves achieving across address addressing advance
    advanced advancing analysis approach approaches art baseline baselines based benchmark
    best better beyond bridging broad capability capable case challenge challenging code
    codes comprehensive consistent current data demonstrate demonstrates design despite
    different diverse easy effect effective effectively efficiency efficient empirical
    enable enables enhance enhanced enhancing evaluate evaluation existing experiment
    experimental extensive first framework full general generalization generalizable given
    high highly however improve improved improvement improving include including introduce
    key large leading learning level limited low make making massive method methods model
    modeling modelling models module multiple need new novel open paper performance pipeline
    potential practical present previous problem propose proposed provide provides quality
    real recent remain remains require result results robust scalable scale scaling set show
    shows significant significantly simple single small stage state strong study superior
    system systems task tasks technique thus toward towards training two understanding
    unified use used using various via well wide work world yet aware based driven guided
    free agnostic specific oriented branch step grained centric conditioned augmented
    dual multi cross attribute fine tuning""".split()  # noqa: SIM905
)
"""Words too common in abstracts to name a cluster, alone or at either end of a phrase."""


# --------------------------------------------------------------------------- text


def fold(text: str) -> str:
    """Lowercase and strip diacritics ("Gödel" -> "godel")."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


_TOKEN_RE = re.compile(r"[a-z0-9]+")


def stem(token: str) -> str:
    """A light plural stemmer, applied alike to texts and keywords ("policies" -> "policy")."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(text: str) -> tuple[str, ...]:
    """Words of ``text``: folded, split on anything not a letter or digit, stemmed."""
    return tuple(stem(tok) for tok in _TOKEN_RE.findall(fold(text)))


_GENERIC_STEMS = frozenset(stem(word) for word in GENERIC_WORDS)
"""GENERIC_WORDS as the stemmer sees them."""

_STOP_STEMS = STOPWORDS | frozenset(stem(word) for word in STOPWORDS)
"""STOPWORDS as the stemmer sees them."""


PhraseKey = tuple[tuple[str, ...], bool]
"""What a phrase matches: its words and whether the last one is a prefix."""


@dataclass(frozen=True, slots=True)
class Phrase:
    """A keyword ready to match.

    ``"vision-language model"`` matches the words ``vision language model`` (plurals
    stemmed); ``"robot*"`` matches any word starting with "robot"; ``"llm^0.4"`` is the
    keyword "llm" with a boost of 0.4 (the Lucene convention), for broad words that
    should count less than specific ones.
    """

    text: str
    words: tuple[str, ...]
    prefix: bool = False
    boost: float = 1.0

    @classmethod
    def parse(cls, keyword: str) -> Phrase:
        raw = keyword.strip()
        boost = 1.0
        if "^" in raw:
            raw, _, weight = raw.rpartition("^")
            try:
                boost = float(weight)
            except ValueError:
                raise ValueError(f"boost {weight!r} is not a number") from None
            if not math.isfinite(boost) or boost <= 0:
                raise ValueError(f"boost {weight!r} must be a positive number")
            raw = raw.strip()
        prefix = raw.endswith("*")
        words = tuple(_TOKEN_RE.findall(fold(raw.rstrip("*"))))
        if not prefix:
            words = tuple(stem(w) for w in words)
        return cls(text=raw.rstrip("*").strip(), words=words, prefix=prefix, boost=boost)

    @property
    def key(self) -> PhraseKey:
        return (self.words, self.prefix)

    @property
    def weight(self) -> float:
        """Longer phrases are more specific and weigh more; the boost scales it all."""
        return self.boost * (1.0 + PHRASE_BONUS * (len(self.words) - 1))


class Text:
    """A tokenised text that finds where phrases occur."""

    __slots__ = ("_first", "words")

    def __init__(self, text: str) -> None:
        self.words = tokens(text)
        first: dict[str, list[int]] = {}
        for i, word in enumerate(self.words):
            first.setdefault(word, []).append(i)
        self._first = first

    def starts(self, key: PhraseKey) -> list[int]:
        """The positions where the phrase starts."""
        words, prefix = key
        if not words:
            return []
        n = len(words)
        if prefix and n == 1:
            return [i for i, w in enumerate(self.words) if w.startswith(words[0])]
        found = []
        for i in self._first.get(words[0], ()):
            window = self.words[i : i + n]
            if len(window) < n:
                continue
            if prefix:
                if window[:-1] == words[:-1] and window[-1].startswith(words[-1]):
                    found.append(i)
            elif window == words:
                found.append(i)
        return found

    def count(self, phrase: Phrase) -> int:
        """How often the phrase occurs (overlaps with longer phrases included)."""
        return len(self.starts(phrase.key))

    def match_counts(self, index: PhraseIndex) -> dict[PhraseKey, int]:
        """Occurrences of each phrase of ``index``, matches not overlapping.

        As a tokenizer does, the leftmost match wins, and of those the longest: in
        "vision-language model", "language model" is not seen, only "vision language
        model"; in "visual representation learning" only "visual representation". Two
        phrases with exactly the same span (a word both as ``robot*`` and ``robot``)
        both count.
        """
        spans: list[tuple[int, int, PhraseKey]] = []
        for word in self._first.keys() & index.by_first.keys():
            for key in index.by_first[word]:
                n = len(key[0])
                spans.extend((i, i + n, key) for i in self.starts(key))
        for key in index.prefixed:
            n = len(key[0])
            spans.extend((i, i + n, key) for i in self.starts(key))
        spans.sort(key=lambda span: (span[0], span[0] - span[1], span[2]))
        counts: dict[PhraseKey, int] = {}
        taken_until = -1
        taken: tuple[int, int] = (-1, -1)
        for start, end, key in spans:
            if start < taken_until and (start, end) != taken:
                continue  # overlaps a match already taken (leftmost, then longest, wins)
            counts[key] = counts.get(key, 0) + 1
            taken_until, taken = max(taken_until, end), (start, end)
        return counts


class PhraseIndex:
    """Phrases grouped by their first word, so a text only tries the ones that can match."""

    __slots__ = ("by_first", "prefixed")

    def __init__(self, keys: Iterable[PhraseKey]) -> None:
        by_first: dict[str, list[PhraseKey]] = {}
        prefixed: list[PhraseKey] = []
        for key in dict.fromkeys(keys):
            words, prefix = key
            if not words:
                continue
            if prefix and len(words) == 1:
                prefixed.append(key)
            else:
                by_first.setdefault(words[0], []).append(key)
        self.by_first = by_first
        self.prefixed = tuple(prefixed)


# --------------------------------------------------------------------------- taxonomy

_TOPIC_FIELDS = frozenset({"name", "description", "keywords", "categories"})


def load_taxonomy(path: str | Path | None) -> tuple[TopicDef, ...]:
    """Read a taxonomy: a YAML list of ``{name, description, keywords, categories}``.

    ``None`` loads the default shipped with the package. A top-level mapping with a
    ``topics`` list is accepted too. Raises :class:`ConfigError` naming the file and
    the entry for anything malformed.
    """
    if path is None:
        resource = importlib.resources.files("newsletter.data") / DEFAULT_TAXONOMY_RESOURCE
        label = f"<default {DEFAULT_TAXONOMY_RESOURCE}>"
        text = resource.read_text(encoding="utf-8")
    else:
        label = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{label}: taxonomy file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{label}: cannot read taxonomy: {exc}") from None
    try:
        data, _node = yamlfile.load(text)  # libyaml; aliases and duplicate keys refused
    except yamlfile.YamlProblem as problem:
        line = f" (line {problem.line})" if problem.line is not None else ""
        raise ConfigError(f"{label}: not valid YAML{line}: {problem.reason}") from None
    return parse_taxonomy(data, label=label)


def parse_taxonomy(data: Any, *, label: str = "<taxonomy>") -> tuple[TopicDef, ...]:
    """Validate already-parsed YAML data into topics (see :func:`load_taxonomy`)."""
    if isinstance(data, dict) and set(data) == {"topics"}:
        data = data["topics"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{label}: a taxonomy is a non-empty list of topics")
    topics: list[TopicDef] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(data, start=1):
        where = f"{label}: topic #{index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with name and keywords")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: 'name' must be a non-empty string")
        name = " ".join(name.split())
        where = f"{label}: topic #{index} ({name})"
        unknown = sorted(set(entry) - _TOPIC_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        if name.casefold() == OTHER.casefold():
            raise ConfigError(f"{where}: '{OTHER}' is reserved for papers that fit no topic")
        if name.casefold() in seen:
            raise ConfigError(f"{where}: duplicate of topic #{seen[name.casefold()]}")
        seen[name.casefold()] = index
        description = entry.get("description", "") or ""
        if not isinstance(description, str):
            raise ConfigError(f"{where}: 'description' must be a string")
        keywords = _string_list(entry.get("keywords"), f"{where}: 'keywords'")
        categories = _string_list(entry.get("categories"), f"{where}: 'categories'")
        if not keywords and not categories:
            raise ConfigError(f"{where}: needs at least one keyword or category")
        for keyword in keywords:
            try:
                words = Phrase.parse(keyword).words
            except ValueError as exc:
                raise ConfigError(f"{where}: keyword {keyword!r}: {exc}") from None
            if not words:
                raise ConfigError(f"{where}: keyword {keyword!r} has no letters or digits")
            if len(words) > MAX_NGRAM:
                raise ConfigError(f"{where}: keyword {keyword!r} is longer than {MAX_NGRAM} words")
        topics.append(
            TopicDef(
                name=name,
                description=" ".join(description.split()),
                keywords=tuple(keywords),
                categories=tuple(categories),
            )
        )
    return tuple(topics)


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list):
        raise ConfigError(f"{what} must be a list of strings")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{what} must be a list of non-empty strings, got {item!r}")
        out.append(item.strip())
    return out


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class _Topic:
    name: str
    index: int
    phrases: tuple[Phrase, ...]
    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Compiled:
    topics: tuple[_Topic, ...]
    index: PhraseIndex
    """Every distinct phrase of the taxonomy."""
    share: Mapping[str, float]
    """1 / the number of topics listing each arXiv category."""


def _compile(taxonomy: Sequence[TopicDef]) -> _Compiled:
    topics = tuple(
        _Topic(
            name=t.name,
            index=i,
            phrases=tuple(Phrase.parse(k) for k in t.keywords),
            categories=frozenset(t.categories),
        )
        for i, t in enumerate(taxonomy)
    )
    index = PhraseIndex(p.key for t in topics for p in t.phrases)
    sharing: Counter[str] = Counter(c for t in topics for c in t.categories)
    return _Compiled(topics, index, {cat: 1.0 / n for cat, n in sharing.items()})


class _PaperText:
    """The parts of a paper topic matching reads, tokenised and matched once."""

    __slots__ = (
        "abstract",
        "abstract_hits",
        "categories",
        "hit_keys",
        "keyword_hits",
        "keywords",
        "raw",
        "title",
        "title_hits",
    )

    def __init__(self, paper: Paper, index: PhraseIndex) -> None:
        self.raw = (paper.title, *paper.keywords, paper.abstract)
        self.title = Text(paper.title)
        self.abstract = Text(paper.abstract)
        self.keywords = tuple(Text(k) for k in paper.keywords)
        self.categories = paper.categories
        self.title_hits = self.title.match_counts(index)
        self.abstract_hits = self.abstract.match_counts(index)
        keyword_hits: Counter[PhraseKey] = Counter()
        for keyword in self.keywords:
            keyword_hits.update(keyword.match_counts(index).keys())
        self.keyword_hits = keyword_hits
        self.hit_keys = self.title_hits.keys() | self.abstract_hits.keys() | keyword_hits.keys()


def _phrase_evidence(phrase: Phrase, text: _PaperText) -> float:
    key = phrase.key
    evidence = 0.0
    if text.title_hits.get(key):
        evidence += TITLE_WEIGHT
    in_abstract = min(text.abstract_hits.get(key, 0), ABSTRACT_COUNT_CAP)
    if in_abstract:
        evidence += ABSTRACT_WEIGHT * (1.0 + math.log2(in_abstract))
    if text.keyword_hits.get(key):
        evidence += AI_KEYWORD_WEIGHT
    return evidence * phrase.weight


def _score(topic: _Topic, text: _PaperText, share: Mapping[str, float]) -> float:
    hits = text.hit_keys
    score = sum(_phrase_evidence(p, text) for p in topic.phrases if p.key in hits)
    for position, category in enumerate(text.categories):
        if category in topic.categories:
            weight = PRIMARY_CATEGORY_WEIGHT if position == 0 else CATEGORY_WEIGHT
            score += weight * share[category]
    return score


def explain(paper: Paper, taxonomy: Sequence[TopicDef]) -> dict[str, dict[str, float]]:
    """Per topic, the evidence each matched keyword gave (for tuning a taxonomy)."""
    compiled = _compile(taxonomy)
    text = _PaperText(paper, compiled.index)
    out: dict[str, dict[str, float]] = {}
    for topic in compiled.topics:
        hits = {p.text: _phrase_evidence(p, text) for p in topic.phrases}
        out[topic.name] = {k: v for k, v in hits.items() if v}
    return out


def assign_topics(papers: Sequence[Paper], taxonomy: Sequence[TopicDef]) -> dict[str, str]:
    """Give every paper one topic name: ``{paper.key: name}``.

    Names are taxonomy topics, data-driven cluster names, or :data:`OTHER`.
    The same papers and taxonomy always give the same answer.
    """
    compiled = _compile(taxonomy)
    texts: dict[str, _PaperText] = {}
    ranked_choices: dict[str, list[tuple[float, int, str]]] = {}
    for paper in papers:
        key = paper.key
        if key in texts:
            continue
        text = _PaperText(paper, compiled.index)
        texts[key] = text
        scores = [(-_score(t, text, compiled.share), t.index, t.name) for t in compiled.topics]
        scores.sort()
        ranked_choices[key] = scores

    assigned: dict[str, str] = {}
    best_score: dict[str, float] = {}
    leftovers: list[str] = []
    for key, choices in ranked_choices.items():
        neg, _, name = choices[0]
        if -neg >= MIN_TOPIC_SCORE:
            assigned[key] = name
            best_score[key] = -neg
        else:
            leftovers.append(key)

    busy = len(ranked_choices) >= SINGLETON_DAY_SIZE
    _merge_weak_singletons(assigned, best_score, ranked_choices, leftovers, busy=busy)

    taken = {name_key(t.name): t.name for t in compiled.topics}
    for name, members in _cluster(leftovers, texts):
        final = taken.setdefault(name_key(name), name)  # "Quantum computer" joins "...computing"
        for key in members:
            assigned[key] = final
    for key in leftovers:
        assigned.setdefault(key, OTHER)
    return {paper.key: assigned[paper.key] for paper in papers}


def _merge_weak_singletons(
    assigned: dict[str, str],
    best_score: Mapping[str, float],
    choices: Mapping[str, list[tuple[float, int, str]]],
    leftovers: list[str],
    *,
    busy: bool,
) -> None:
    """Move weakly matched one-paper topics into a close runner-up, or (busy days) away."""
    sizes = Counter(assigned.values())
    for key in sorted(assigned, key=lambda k: (best_score[k], k)):
        name = assigned[key]
        if sizes[name] != 1 or best_score[key] >= SINGLETON_KEEP_SCORE:
            continue
        runner_up = next(
            (
                (-neg, other)
                for neg, _, other in choices[key][1:]
                if sizes[other] >= MIN_CLUSTER_SIZE
            ),
            None,
        )
        if runner_up and runner_up[0] >= RUNNER_UP_RATIO * best_score[key]:
            sizes[name] -= 1
            assigned[key] = runner_up[1]
            sizes[runner_up[1]] += 1
        elif busy:
            sizes[name] -= 1
            del assigned[key]
            leftovers.append(key)


# --------------------------------------------------------------------------- clusters


def _candidate_terms(text: _PaperText) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(terms anywhere in the paper, terms in its title or keyword list)."""
    everywhere: set[tuple[str, ...]] = set()
    salient: set[tuple[str, ...]] = set()
    for words, target in (
        (text.title.words, (everywhere, salient)),
        *((k.words, (everywhere, salient)) for k in text.keywords),
        (text.abstract.words, (everywhere,)),
    ):
        for term in _terms(words):
            for bucket in target:
                bucket.add(term)
    return everywhere, salient


def _terms(words: Sequence[str]) -> Iterable[tuple[str, ...]]:
    """Runs of one to three content words, not starting or ending with a generic word."""
    run: list[str] = []
    for word in (*words, ""):
        if word and word not in _STOP_STEMS and not word.isdigit() and len(word) > 1:
            run.append(word)
            continue
        for i in range(len(run)):
            for n in range(1, MAX_CLUSTER_TERM_WORDS + 1):
                term = tuple(run[i : i + n])
                if len(term) < n:
                    break
                if term[0] in _GENERIC_STEMS or term[-1] in _GENERIC_STEMS:
                    continue
                if n == 1 and len(term[0]) < 4:
                    continue
                yield term
        run = []


def _cluster(
    leftovers: Sequence[str], texts: Mapping[str, _PaperText]
) -> list[tuple[str, list[str]]]:
    """Greedy clusters of the ``leftovers`` among the day's ``texts`` sharing a salient
    term, named by the term."""
    if len(leftovers) < MIN_CLUSTER_SIZE:
        return []
    terms = {key: _candidate_terms(text) for key, text in texts.items()}
    day_df: Counter[tuple[str, ...]] = Counter()
    for all_terms, _salient in terms.values():
        day_df.update(all_terms)
    acronyms = {
        (stem(word.lower()),)
        for key in leftovers
        for raw in texts[key].raw[:-1]  # title and keywords
        for word in re.findall(r"\b[A-Za-z]*[A-Z][A-Za-z]*[A-Z][A-Za-z0-9]*\b", raw)
    }
    remaining = list(leftovers)
    clusters: list[tuple[str, list[str]]] = []
    while len(remaining) >= MIN_CLUSTER_SIZE:
        df: Counter[tuple[str, ...]] = Counter()
        salient_df: Counter[tuple[str, ...]] = Counter()
        for key in remaining:
            df.update(terms[key][0])
            salient_df.update(terms[key][1])
        best: tuple[float, tuple[str, ...]] | None = None
        for term, count in df.items():
            if len(term) == 1:
                # A single word names a cluster only as an acronym in two titles.
                if term not in acronyms:
                    continue
                count = salient_df[term]
            if count < MIN_CLUSTER_SIZE or not salient_df[term]:
                continue
            specificity = count / day_df[term]
            weight = (1.0 + 0.5 * (len(term) - 1)) * (1.0 + salient_df[term] / count)
            value = count * specificity * weight
            if best is None or (-value, term) < (-best[0], best[1]):
                best = (value, term)
        if best is None:
            break
        term = best[1]
        where = 1 if len(term) == 1 else 0  # acronyms: titles and keywords only
        members = [key for key in remaining if term in terms[key][where]]
        clusters.append((_term_name(term, [texts[k] for k in members]), members))
        remaining = [key for key in remaining if key not in members]
    return clusters


def _term_name(term: tuple[str, ...], texts: Sequence[_PaperText]) -> str:
    """A readable name for a cluster term, in sentence case ("Graph neural networks").

    The term is found again in the papers' own text, so the name keeps their spelling
    (plurals, acronyms such as "GNN" or "LoRA"); words in plain or title case are
    lowercased, and the first letter is capitalised.
    """
    parts = [re.escape(w[:-1] if w.endswith("y") else w) + r"\w*" for w in term]
    pattern = re.compile(r"\b" + r"[\W_]+".join(parts) + r"\b", re.IGNORECASE)
    surfaces: Counter[str] = Counter()
    for text in texts:
        for raw in text.raw:
            surfaces.update(m.group(0) for m in pattern.finditer(raw))
    if surfaces:
        surface = min(surfaces.items(), key=lambda item: (-item[1], item[0]))[0]
    else:
        surface = " ".join(term)
    words = ["-".join(_case(part) for part in w.split("-")) for w in surface.split()]
    name = " ".join(words)
    return name[:1].upper() + name[1:]


_SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "er", "ies", "es", "ed", "s", "al")


def name_key(name: str) -> str:
    """What two section names are compared by: folded words without common suffixes, so
    near-duplicates ("Quantum computer", "Quantum computing", "Quantum computation") meet."""
    out = []
    for word in _TOKEN_RE.findall(fold(name)):
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                break
        out.append(word)
    return " ".join(out)


def _case(word: str) -> str:
    """Keep acronyms and mixed case ("GNN", "LoRA"); lowercase plain and title case."""
    return word if any(ch.isupper() for ch in word[1:]) else word.lower()


# --------------------------------------------------------------------------- grouping


def group(
    ranked: Sequence[RankedPaper],
    taxonomy: Sequence[TopicDef],
    *,
    max_sections: int | None = None,
) -> tuple[TopicGroup, ...]:
    """The digest's sections: every ranked paper under exactly one section.

    A section is named by its papers' ``topic``. Sections come in the order of their
    best paper's score (the day's top story opens the digest), ties in taxonomy order
    and then by name, with "Other" always last. Inside a section papers keep the
    order of ``ranked`` sorted by score (stable), so equal scores keep rank's order.

    With ``max_sections``, a day with more sections than that keeps every topic with two
    or more papers and the best one-paper topics while room is left, and gathers the
    other one-paper topics and "Other" into one last section, :data:`ALSO_TODAY`. Its
    papers keep their own ``topic``. (A busy day may so have more sections than
    ``max_sections``; only single papers are gathered, never a real topic.)
    """
    order = {t.name: i for i, t in enumerate(taxonomy)}
    descriptions = {t.name: t.description for t in taxonomy}
    members: dict[str, list[tuple[int, RankedPaper]]] = {}
    for position, rp in enumerate(ranked):
        members.setdefault(rp.topic or OTHER, []).append((position, rp))

    def section_key(name: str) -> tuple[bool, float, int, str]:
        best = max(rp.score for _, rp in members[name])
        return (name == OTHER, -best, order.get(name, len(order)), name)

    names = sorted(members, key=section_key)
    gathered: list[str] = []
    if max_sections is not None and len(names) > max(max_sections, MIN_SECTIONS):
        room = max(max_sections, MIN_SECTIONS) - 1  # one place for "Also today"
        named = [n for n in names if n != OTHER]
        keep = {n for n in named if len(members[n]) > 1}
        for name in named:  # the best one-paper topics, while there is room
            if len(keep) < room:
                keep.add(name)
        gathered = [n for n in names if n not in keep]
        names = [n for n in names if n in keep]

    def section(name: str, items: list[tuple[int, RankedPaper]], about: str) -> TopicGroup:
        papers = sorted(items, key=lambda item: (-item[1].score, item[0]))
        return TopicGroup(name=name, papers=tuple(rp for _, rp in papers), description=about)

    groups = [section(name, members[name], descriptions.get(name, "")) for name in names]
    if gathered:
        rest = [item for name in gathered for item in members[name]]
        groups.append(section(_free_name(ALSO_TODAY, names), rest, ""))
    return tuple(groups)


def _free_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name (2)`` when a topic of the day already has it."""
    used = {n.casefold() for n in taken}
    out, n = name, 2
    while out.casefold() in used:
        out, n = f"{name} ({n})", n + 1
    return out
