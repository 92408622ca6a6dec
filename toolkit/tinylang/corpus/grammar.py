"""The offline story grammar: grammatical stories from a pack's templates, with no LLM at all.

It takes what an LLM prompt takes (a noun, a verb, an adjective and story features) and writes a
story that uses all three, so the whole pipeline (corpus, filters, training, the instruct format)
runs offline: demo, tests, CI. The code never inflects a word: every form a template may ask for
is a column of the pack's lexicon (``grammar/nouns.tsv`` ...), so Finnish cases and verb forms are
data that a native speaker (and Voikko) can check.

Template language (``grammar/templates.yaml``):
  * ``{slot:form}`` inserts a form of a story word: slots ``noun``, ``adj``, ``verb`` (the requested
    words), ``hero``, ``friend`` (children's names), ``pet``; the form is a lexicon column, or a
    pronoun column of ``pronouns`` chosen by the name's gender. ``{Slot:form}`` capitalises.
    Verb forms are followed by the verb's ``complement`` ("rakensi" + "majaa").
  * ``plots`` map a name to paragraphs of part references. A part named after a story feature
    (``dialogue``, ``conflict``..., or ``dialogue_<anything>`` for a plot's own) is used only
    when that feature is asked for; ``part.sub`` picks
    one text of a paired part (a foreshadowing hint and its payoff come from one alternative). A
    plot shows ``bad_ending`` when one of its parts has alternatives tagged ``bad``.
  * ``parts`` map a name to a list of alternatives, or to ``{tag: [alternatives]}`` where tags are
    the noun's class (animal, person, thing, food, place, nature), ``describes_noun`` /
    ``describes_hero`` (whether the adjective fits the noun), ``happy`` / ``bad`` (the ending), and
    ``any``; ``"animal,person"`` matches either.

    grammar = load_grammar(Path("corpora/fi/grammar"))
    text = grammar.render("koira", "hypätä", "iloinen", ["dialogue"], random.Random(0))
"""

from __future__ import annotations

import csv
import itertools
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..langpack import FEATURES

NOUN_CLASSES = ("animal", "person", "thing", "food", "place", "nature")
ADJECTIVE_TARGETS = ("any", "animate")
ANIMATE_CLASSES = ("animal", "person")
WORD_SLOTS = {"noun": "nouns", "adj": "adjectives", "verb": "verbs"}
NAME_SLOTS = ("hero", "friend", "pet")
ATTRIBUTE_COLUMNS = ("class", "target", "gender", "kind", "complement")
LEXICON_FILES = ("nouns", "adjectives", "verbs", "names")
_SLOT = re.compile(r"\{([A-Za-z_]+)(?::([A-Za-z0-9_]+))?\}")


class GrammarError(ValueError):
    """A grammar that cannot be loaded or cannot write the story asked for."""


@dataclass(frozen=True)
class LexiconEntry:
    lemma: str
    attributes: dict[str, str]
    forms: dict[str, str]


@dataclass(frozen=True)
class Slot:
    name: str  # lowercase slot name
    form: str | None
    capitalise: bool


Template = tuple  # of str (literal text) and Slot


def compile_template(text: str) -> Template:
    pieces: list = []
    position = 0
    for match in _SLOT.finditer(text):
        if match.start() > position:
            pieces.append(text[position : match.start()])
        name = match.group(1)
        pieces.append(Slot(name.lower(), match.group(2), name[0].isupper()))
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return tuple(pieces)


@dataclass
class Part:
    """One story part: alternatives, each a template or a dict of paired templates, by tag."""

    name: str
    by_tag: dict[frozenset[str], list]  # tags -> alternatives; frozenset({"any"}) matches everything

    def choices(self, tags: set[str]) -> list:
        found: list = []
        for keys, alternatives in self.by_tag.items():
            if "any" in keys or keys & tags:
                found += alternatives
        return found


def _compile_alternative(part: str, alternative) -> Template | dict[str, Template]:
    if isinstance(alternative, str):
        return compile_template(alternative)
    if isinstance(alternative, dict) and all(isinstance(v, str) for v in alternative.values()):
        return {str(k): compile_template(v) for k, v in alternative.items()}
    raise GrammarError(f"part {part!r}: an alternative must be a string or a mapping of strings, got {alternative!r}")


def _load_part(name: str, raw) -> Part:
    if isinstance(raw, list):
        return Part(name, {frozenset({"any"}): [_compile_alternative(name, a) for a in raw]})
    if isinstance(raw, dict):
        by_tag = {}
        for keys, alternatives in raw.items():
            if not isinstance(alternatives, list):
                raise GrammarError(f"part {name!r}, tag {keys!r}: expected a list of alternatives")
            tags = frozenset(k.strip() for k in str(keys).split(","))
            by_tag[tags] = [_compile_alternative(name, a) for a in alternatives]
        return Part(name, by_tag)
    raise GrammarError(f"part {name!r}: expected a list of alternatives or a mapping tag -> list")


@dataclass(frozen=True)
class PartRef:
    part: str
    sub: str | None

    @property
    def feature(self) -> str | None:
        """Parts named after a story feature (``dialogue``, or ``dialogue_picnic`` for a plot's own
        dialogue) appear only in stories that ask for that feature."""
        for feature in FEATURES:
            if self.part == feature or self.part.startswith(feature + "_"):
                return feature
        return None


def _parse_ref(text: str) -> PartRef:
    part, _, sub = text.partition(".")
    return PartRef(part, sub or None)


@dataclass
class Plot:
    name: str
    paragraphs: list[list[PartRef]]
    features: frozenset[str] = frozenset()  # features this plot can show; set by StoryGrammar


def _read_lexicon(path: Path) -> list[LexiconEntry]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    if not rows:
        raise GrammarError(f"{path}: empty")
    header = rows[0]
    entries = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise GrammarError(f"{path}:{number}: {len(row)} columns, the header has {len(header)}")
        cells = dict(zip(header[1:], (cell.strip() for cell in row[1:])))
        attributes = {k: v for k, v in cells.items() if k in ATTRIBUTE_COLUMNS}
        forms = {k: v for k, v in cells.items() if k not in ATTRIBUTE_COLUMNS}
        entries.append(LexiconEntry(row[0].strip(), attributes, forms))
    return entries


@dataclass
class StoryGrammar:
    directory: Path
    lexicon: dict[str, list[LexiconEntry]]  # "nouns" / "adjectives" / "verbs" / "names"
    plots: list[Plot]
    parts: dict[str, Part]
    pronouns: dict[str, dict[str, str]] = field(default_factory=dict)  # gender -> {form: pronoun}

    def __post_init__(self) -> None:
        self._index = {kind: {e.lemma: e for e in entries} for kind, entries in self.lexicon.items()}
        names = self.lexicon["names"]
        self.children = [e for e in names if e.attributes.get("kind", "child") == "child"]
        self.pets = [e for e in names if e.attributes.get("kind") == "pet"] or self.children
        for plot in self.plots:
            refs = [ref for paragraph in plot.paragraphs for ref in paragraph]
            features = {ref.feature for ref in refs if ref.feature}
            if any("bad" in tags for ref in refs if ref.part in self.parts for tags in self.parts[ref.part].by_tag):
                features.add("bad_ending")
            plot.features = frozenset(features)

    def words(self, slot: str) -> list[str]:
        """Lemmas the grammar can use for ``noun``, ``adj`` or ``verb``."""
        return [e.lemma for e in self.lexicon[WORD_SLOTS[slot]]]

    def entry(self, slot: str, lemma: str) -> LexiconEntry:
        try:
            return self._index[WORD_SLOTS[slot]][lemma]
        except KeyError:
            raise GrammarError(f"the story grammar has no forms for the {slot} {lemma!r}") from None

    def story_tags(self, noun: LexiconEntry, adjective: LexiconEntry, features: list[str]) -> set[str]:
        noun_class = noun.attributes["class"]
        fits_noun = adjective.attributes.get("target") == "any" or noun_class in ANIMATE_CLASSES
        ending = "bad" if "bad_ending" in features else "happy"
        return {noun_class, "describes_noun" if fits_noun else "describes_hero", ending}

    def plots_for(self, features: list[str]) -> list[Plot]:
        return [plot for plot in self.plots if set(features) <= plot.features]

    def render(self, noun: str, verb: str, adjective: str, features: list[str], rng: random.Random) -> str:
        """One story using the three words and showing every feature asked for."""
        words = {"noun": self.entry("noun", noun), "verb": self.entry("verb", verb), "adj": self.entry("adj", adjective)}
        plots = self.plots_for(features)
        if not plots:
            raise GrammarError(f"no plot in {self.directory} covers the features {features}")
        plot = rng.choice(plots)
        hero, friend = rng.sample(self.children, 2)
        cast = dict(words, hero=hero, friend=friend, pet=rng.choice(self.pets))
        tags = self.story_tags(words["noun"], words["adj"], features)
        chosen: dict[str, object] = {}
        paragraphs = []
        for paragraph in plot.paragraphs:
            sentences = []
            for ref in paragraph:
                if ref.feature and ref.feature not in features:
                    continue
                if ref.part not in chosen:
                    choices = self.parts[ref.part].choices(tags)
                    if not choices:
                        raise GrammarError(f"part {ref.part!r} has no alternative for tags {sorted(tags)}")
                    chosen[ref.part] = rng.choice(choices)
                template = chosen[ref.part]
                sentences.append(self.fill(template[ref.sub] if ref.sub else template, cast))
            if sentences:
                paragraphs.append(" ".join(sentences))
        return "\n\n".join(paragraphs)

    def fill(self, template: Template, cast: dict[str, LexiconEntry]) -> str:
        out = []
        for piece in template:
            if isinstance(piece, str):
                out.append(piece)
                continue
            text = self.form(cast[piece.name], piece)
            out.append(text[:1].upper() + text[1:] if piece.capitalise else text)
        return "".join(out)

    def form(self, entry: LexiconEntry, slot: Slot) -> str:
        if slot.form is None:
            return entry.forms.get("nom", entry.lemma)
        text = entry.forms.get(slot.form)
        if text is None and slot.name in NAME_SLOTS:
            text = self.pronouns.get(entry.attributes.get("gender", ""), {}).get(slot.form)
        if not text:
            raise GrammarError(f"{slot.name} {entry.lemma!r} has no form {slot.form!r}")
        complement = entry.attributes.get("complement", "")
        return f"{text} {complement}" if slot.name == "verb" and complement else text


def load_grammar(directory: Path) -> StoryGrammar:
    directory = Path(directory)
    lexicon = {}
    for name in LEXICON_FILES:
        path = directory / f"{name}.tsv"
        if not path.is_file():
            raise GrammarError(f"{directory}: missing {name}.tsv")
        lexicon[name] = _read_lexicon(path)
    path = directory / "templates.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise GrammarError(f"{path}: {error}") from None
    try:
        parts = {name: _load_part(name, value) for name, value in raw["parts"].items()}
        plots = []
        for name, paragraphs in raw["plots"].items():
            refs = [[_parse_ref(str(text)) for text in paragraph] for paragraph in paragraphs]
            plots.append(Plot(name, refs))
    except (KeyError, AttributeError, TypeError) as error:
        raise GrammarError(f"{path}: expected top-level 'plots' and 'parts' mappings ({error})") from None
    pronouns = {str(k): {str(f): str(p) for f, p in v.items()} for k, v in (raw.get("pronouns") or {}).items()}
    return StoryGrammar(directory, lexicon, plots, parts, pronouns)


def check_grammar(grammar: StoryGrammar, vocabulary: dict[str, set[str]], names: set[str]) -> list[str]:
    """Every problem that would make a story fail or leave the pack's vocabulary, as messages.

    ``vocabulary`` maps part of speech -> lemmas of the pack; ``names`` is the pack's names list.
    """
    problems = []
    where = grammar.directory
    pos_of = {"nouns": "noun", "adjectives": "adj", "verbs": "verb"}
    for kind, entries in grammar.lexicon.items():
        lemmas = [e.lemma for e in entries]
        for lemma in sorted({x for x in lemmas if lemmas.count(x) > 1}):
            problems.append(f"{where}/{kind}.tsv: {lemma!r} listed twice")
        for entry in entries:
            if kind == "names" and entry.lemma not in names:
                problems.append(f"{where}/names.tsv: {entry.lemma!r} is not in names.txt")
            elif kind in pos_of and entry.lemma not in vocabulary.get(pos_of[kind], set()):
                problems.append(f"{where}/{kind}.tsv: {entry.lemma!r} is not a {pos_of[kind]} of vocabulary.tsv")
    for entry in grammar.lexicon["nouns"]:
        if entry.attributes.get("class") not in NOUN_CLASSES:
            problems.append(f"{where}/nouns.tsv: {entry.lemma!r} has class {entry.attributes.get('class')!r}")
    for entry in grammar.lexicon["adjectives"]:
        if entry.attributes.get("target") not in ADJECTIVE_TARGETS:
            problems.append(f"{where}/adjectives.tsv: {entry.lemma!r} has target {entry.attributes.get('target')!r}")
    if len(grammar.children) < 2:
        problems.append(f"{where}/names.tsv: needs at least two children's names")
    for plot in grammar.plots:
        for ref in itertools.chain.from_iterable(plot.paragraphs):
            if ref.part not in grammar.parts:
                problems.append(f"plot {plot.name!r}: unknown part {ref.part!r}")
    for size in range(4):
        for combination in itertools.combinations(FEATURES, size):
            if not grammar.plots_for(list(combination)):
                problems.append(f"no plot covers the features {list(combination)}")
    problems += _check_parts(grammar)
    return problems


def _check_parts(grammar: StoryGrammar) -> list[str]:
    """Render every alternative of every part with every word it can meet; report what breaks."""
    problems: list[str] = []
    subs_used: dict[str, set[str | None]] = {}
    for plot in grammar.plots:
        for ref in itertools.chain.from_iterable(plot.paragraphs):
            subs_used.setdefault(ref.part, set()).add(ref.sub)
    adjectives = {t: [a for a in grammar.lexicon["adjectives"] if a.attributes.get("target") == t] for t in ADJECTIVE_TARGETS}
    for noun_class in NOUN_CLASSES:
        nouns = [n for n in grammar.lexicon["nouns"] if n.attributes.get("class") == noun_class]
        for target, ending in itertools.product(ADJECTIVE_TARGETS, ("happy", "bad")):
            if not nouns or not adjectives[target]:
                continue
            features = ["bad_ending"] if ending == "bad" else []
            tags = grammar.story_tags(nouns[0], adjectives[target][0], features)
            for part, subs in subs_used.items():
                if part not in grammar.parts:
                    continue
                choices = grammar.parts[part].choices(tags)
                if not choices:
                    problems.append(f"part {part!r} has no alternative for {sorted(tags)}")
                for alternative in choices:
                    for sub in subs:
                        problems += _check_alternative(grammar, part, alternative, sub, nouns, adjectives[target])
    return sorted(set(problems))


def _check_alternative(grammar, part, alternative, sub, nouns, adjectives) -> list[str]:
    if sub is not None and (not isinstance(alternative, dict) or sub not in alternative):
        return [f"part {part!r}: an alternative has no {sub!r} text"]
    if sub is None and isinstance(alternative, dict):
        return [f"part {part!r} has paired texts; plots must name one ({', '.join(alternative)})"]
    template = alternative[sub] if sub else alternative
    problems = []
    pools = {"noun": nouns, "adj": adjectives, "verb": grammar.lexicon["verbs"], "hero": grammar.children,
             "friend": grammar.children, "pet": grammar.pets}
    for before, piece, after in zip((None,) + template, template, template[1:] + (None,)):
        if isinstance(piece, str):
            continue
        if (isinstance(before, str) and before[-1:].isalpha()) or (isinstance(after, str) and after[:1].isalpha()):
            problems.append(f"part {part!r}: no letters may touch {{{piece.name}}}; add a lexicon column for that form")
        if piece.name not in pools:
            problems.append(f"part {part!r}: unknown slot {{{piece.name}}}")
            continue
        for entry in pools[piece.name]:
            try:
                grammar.form(entry, piece)
            except GrammarError as error:
                problems.append(f"part {part!r}: {error}")
                break
    return problems


def word_forms(grammar: StoryGrammar) -> set[str]:
    """Every distinct word the grammar can write (template text and lexicon forms), for spell-checking."""
    texts: list[str] = []
    for part in grammar.parts.values():
        for alternatives in part.by_tag.values():
            for alternative in alternatives:
                templates = alternative.values() if isinstance(alternative, dict) else [alternative]
                for template in templates:
                    texts.append("".join(p if isinstance(p, str) else " " for p in template))
    for entries in grammar.lexicon.values():
        for entry in entries:
            texts += entry.forms.values()
            texts.append(entry.attributes.get("complement", ""))
    return {word for text in texts for word in re.findall(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*", text)}
