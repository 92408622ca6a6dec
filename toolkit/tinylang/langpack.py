"""Language packs: everything that differs between languages, loaded from ``corpora/<lang>/``.

A pack is data, not code (see corpora/README.md): ``pack.yaml`` (names, alphabet, story features,
prompt templates, instruct labels, filter thresholds), ``vocabulary.tsv``, ``function-words.txt``,
``names.txt``, ``eval-beginnings.yaml`` and optionally ``grammar/`` (the offline story grammar).

    pack = load_pack("fi")
    prompt = pack.generation_prompt("koira", "hypätä", "iloinen", ["dialogue"])
"""

from __future__ import annotations

import csv
import os
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FEATURES = ("dialogue", "bad_ending", "moral_value", "plot_twist", "foreshadowing", "conflict")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
PACK_FILES = ("pack.yaml", "vocabulary.tsv", "function-words.txt", "names.txt", "eval-beginnings.yaml")


class PackError(ValueError):
    """A language pack that cannot be loaded; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    label: str = Field(description="Short name in the instruct format, e.g. 'vuoropuhelu'.")
    prompt: str = Field(description="The feature phrased for the generation prompt.")


class Prompts(_Strict):
    version: str = Field(description="Stored in every record; bump it when a template changes.")
    generate: str = Field(description="Placeholders {noun} {verb} {adjective} {features_sentence}.")
    features_sentence: str = Field(description="Placeholder {features}; appended only when features are asked.")
    list_separator: str = ", "
    translate: str = Field(description="Placeholders {story} {source_language}.")


class Grading(_Strict):
    version: str = Field(description="Stored with every judgement; bump it when the prompt changes.")
    prompt: str = Field(description="The judge's prompt; placeholders {beginning} {completion}.")
    instruct_prompt: str = Field(description="The same for instruct models; adds {instructions}.")


class InstructLabels(_Strict):
    features: str
    words: str
    story: str


class FilterThresholds(_Strict):
    """Settings of the filter pipeline (tinylang filter); every key has a default."""

    min_words: int = Field(40, ge=0)
    max_words: int = Field(700, ge=1)
    min_bytes: int = Field(0, ge=0)
    max_bytes: int = Field(20_000, ge=1)
    max_foreign_char_fraction: float = Field(0.0, ge=0, le=1, description="Characters outside alphabet + punctuation.")
    language: str | None = Field(None, description="Expected language-ID code; defaults to the pack code.")
    language_id: bool = Field(True, description="False skips language ID, for a language the detector "
                              "does not know (Sami): dictionary coverage and vocabulary still check the language.")
    min_language_probability: float = Field(0.9, ge=0, le=1)
    lemmatiser: Literal["simplemma", "voikko", "none"] = Field(
        "simplemma", description="simplemma, voikko (Finnish, needs libvoikko), or none (words as written).")
    min_dictionary_coverage: float = Field(0.9, ge=0, le=1)
    min_vocabulary_adherence: float = Field(0.8, ge=0, le=1)
    compounds: bool = Field(False, description="Accept compounds whose parts are all allowed (fi, sv, et).")
    max_duplicate_lines: float = Field(0.3, ge=0, le=1)
    max_top_2gram: float = Field(0.2, ge=0, le=1)
    max_duplicate_5grams: float = Field(0.3, ge=0, le=1)
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)
    meta_phrases: list[str] = Field(default_factory=list, description="Phrases that mark meta-text or refusals.")


class PackSpec(_Strict):
    code: str
    name: str
    native_name: str
    alphabet: str = Field(description="Lowercase letters; uppercase forms are derived.")
    punctuation: str
    features: dict[str, Feature]
    prompts: Prompts
    grading: Grading
    instruct: InstructLabels
    filters: FilterThresholds = FilterThresholds()


# Placeholders each template must use (exactly these, each at least once).
TEMPLATE_FIELDS = {
    "generate": {"noun", "verb", "adjective", "features_sentence"},
    "features_sentence": {"features"},
    "translate": {"story", "source_language"},
}
GRADING_FIELDS = {"prompt": {"beginning", "completion"}, "instruct_prompt": {"instructions", "beginning", "completion"}}


@dataclass(frozen=True)
class VocabularyEntry:
    lemma: str
    pos: str
    gloss: str = ""


@dataclass(frozen=True)
class EvalBeginning:
    id: str
    text: str


def packs_roots() -> list[Path]:
    """Where packs are looked up, first match wins: each folder of $TINYLANG_CORPORA (os.pathsep
    separated), ./corpora, then the corpora/ beside the sources. The shipped packs stay reachable
    under a user's own folder, so a pack of one's own never hides fi or the en reference."""
    roots = [Path(p) for p in os.environ.get("TINYLANG_CORPORA", "").split(os.pathsep) if p]
    roots += [Path("corpora"), Path(__file__).resolve().parents[2] / "corpora"]
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and all(root.resolve() != seen.resolve() for seen in unique):
            unique.append(root)
    return unique


def available_packs() -> list[str]:
    """Codes of every pack in any root (a code in several roots counts once)."""
    return sorted({p.name for root in packs_roots() for p in root.iterdir() if (p / "pack.yaml").is_file()})


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _read_text(path: Path) -> str:
    """A pack file as text; packs are UTF-8, and a file saved in another encoding is named."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise PackError(f"{path}:{line}: not UTF-8 text (byte 0x{error.object[error.start]:02x}); "
                        "save pack files as UTF-8") from None


def _read_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a word list."""
    lines = _read_text(path).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _read_vocabulary(path: Path) -> tuple[VocabularyEntry, ...]:
    rows = list(csv.reader(_read_text(path).splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0][:2] != ["lemma", "pos"]:
        raise PackError(f"{path}: the first line must be the header 'lemma<TAB>pos<TAB>gloss'")
    entries = []
    for number, row in enumerate(rows[1:], 2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise PackError(f"{path}:{number}: expected 'lemma<TAB>pos[<TAB>gloss]', got {row!r}")
        entries.append(VocabularyEntry(row[0].strip(), row[1].strip(), row[2].strip() if len(row) > 2 else ""))
    return tuple(entries)


@dataclass
class LanguagePack:
    """A loaded pack. Word lists are read eagerly (they are small); the grammar lazily."""

    directory: Path
    spec: PackSpec
    vocabulary: tuple[VocabularyEntry, ...]
    function_words: tuple[str, ...]
    names: tuple[str, ...]
    eval_beginnings: tuple[EvalBeginning, ...]

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def name(self) -> str:
        return self.spec.name

    def words(self, pos: str) -> list[str]:
        """Vocabulary lemmas of one part of speech, in file order."""
        return [entry.lemma for entry in self.vocabulary if entry.pos == pos]

    @property
    def has_grammar(self) -> bool:
        return (self.directory / "grammar" / "templates.yaml").is_file()

    @cached_property
    def grammar(self):
        """The offline story grammar (``tinylang.corpus.grammar.StoryGrammar``)."""
        from .corpus.grammar import GrammarError, load_grammar

        if not self.has_grammar:
            raise PackError(f"{self.directory}: this pack has no story grammar (grammar/templates.yaml)")
        try:
            return load_grammar(self.directory / "grammar")
        except GrammarError as error:
            raise PackError(str(error)) from None
        except UnicodeDecodeError:
            for path in sorted((self.directory / "grammar").iterdir()):
                if path.is_file():
                    _read_text(path)  # raises PackError naming the file and line
            raise

    # --- prompts -------------------------------------------------------------------------------
    def feature_labels(self, features: list[str]) -> list[str]:
        return [self.spec.features[f].label for f in features]

    def feature_names(self, asked: list[str]) -> list[str]:
        """Features as users type them, by name (``dialogue``) or by this pack's label
        (``vuoropuhelu``), in any case, as feature names, each once; unknown ones raise PackError."""
        by_label = {self.spec.features[f].label.lower(): f for f in FEATURES} | {f: f for f in FEATURES}
        unknown = [item for item in asked if item.lower() not in by_label]
        if unknown:
            raise PackError(f"unknown feature(s) {', '.join(unknown)}; choose from {', '.join(FEATURES)} "
                            f"(or their {self.spec.code} labels: {', '.join(self.feature_labels(list(FEATURES)))})")
        return list(dict.fromkeys(by_label[item.lower()] for item in asked))  # dialogue,vuoropuhelu: once

    def generation_prompt(self, noun: str, verb: str, adjective: str, features: list[str]) -> str:
        """The TinyStories prompt in this pack's words (pure: same inputs, same text)."""
        prompts = self.spec.prompts
        sentence = ""
        if features:
            phrases = prompts.list_separator.join(self.spec.features[f].prompt for f in features)
            sentence = prompts.features_sentence.format(features=phrases)
        return prompts.generate.format(noun=noun, verb=verb, adjective=adjective, features_sentence=sentence)

    def translation_prompt(self, story: str, source_language: str) -> str:
        return self.spec.prompts.translate.format(story=story, source_language=source_language)

    def instruct_header(self, words: list[str], features: list[str]) -> str:
        """The request part of the instruct format: the features and words lines."""
        labels, separator = self.spec.instruct, self.spec.prompts.list_separator
        lines = [f"{labels.features} {separator.join(self.feature_labels(features))}"] if features else []
        lines.append(f"{labels.words} {separator.join(words)}")
        return "\n".join(lines)

    def instruct_text(self, words: list[str], features: list[str], story: str) -> str:
        """The TinyStories-Instruct rendering: features, words, then the story, in the pack's labels."""
        return f"{self.instruct_header(words, features)}\n{self.spec.instruct.story} {story}"


def _pack_directory(lang: str | Path) -> Path:
    candidate = Path(lang)
    if (candidate / "pack.yaml").is_file():
        return candidate
    roots = packs_roots()
    for root in roots:
        if (root / str(lang) / "pack.yaml").is_file():
            return root / str(lang)
    known = ", ".join(available_packs()) or "none"
    looked = ", ".join(str(root) for root in roots) or "no corpora folder found"
    raise PackError(f"no language pack {str(lang)!r} (looked in {looked}; packs there: {known})")


def load_pack(lang: str | Path) -> LanguagePack:
    """Load a pack by code (``fi``, looked up in :func:`packs_roots`) or by directory path."""
    directory = _pack_directory(lang)
    for name in PACK_FILES:
        if not (directory / name).is_file():
            raise PackError(f"{directory}: missing {name}")
    try:
        raw = yaml.safe_load(_read_text(directory / "pack.yaml"))
        spec = PackSpec.model_validate(raw)
    except yaml.YAMLError as error:
        raise PackError(f"{directory / 'pack.yaml'}: not valid YAML ({error})") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PackError(f"{directory / 'pack.yaml'}: {problems}") from None
    try:
        items = yaml.safe_load(_read_text(directory / "eval-beginnings.yaml")) or []
        beginnings = tuple(EvalBeginning(str(item["id"]), str(item["text"])) for item in items)
    except (yaml.YAMLError, TypeError, KeyError) as error:
        raise PackError(f"{directory / 'eval-beginnings.yaml'}: expected a list of {{id, text}} ({error})") from None
    return LanguagePack(
        directory=directory,
        spec=spec,
        vocabulary=_read_vocabulary(directory / "vocabulary.tsv"),
        function_words=tuple(_read_lines(directory / "function-words.txt")),
        names=tuple(_read_lines(directory / "names.txt")),
        eval_beginnings=beginnings,
    )


def check_pack(pack: LanguagePack, reference: LanguagePack | None = None) -> list[str]:
    """Every problem with a pack, as one message each; an empty list means the pack is sound.

    ``reference`` (normally the English pack) supplies the evaluation ids every pack must share.
    """
    problems: list[str] = []
    where = pack.directory
    spec = pack.spec
    if sorted(spec.features) != sorted(FEATURES):
        problems.append(f"{where}/pack.yaml: features must be exactly {', '.join(FEATURES)}")
    for name, required in TEMPLATE_FIELDS.items():
        template = getattr(spec.prompts, name)
        try:
            fields = template_fields(template)
        except ValueError as error:
            problems.append(f"{where}/pack.yaml: prompts.{name} is not a valid template ({error})")
            continue
        if fields != required:
            problems.append(f"{where}/pack.yaml: prompts.{name} uses {sorted(fields)}, expected {sorted(required)}")
    for name, required in GRADING_FIELDS.items():
        try:
            fields = template_fields(getattr(spec.grading, name))
        except ValueError as error:
            problems.append(f"{where}/pack.yaml: grading.{name} is not a valid template ({error})")
            continue
        if fields != required:
            problems.append(f"{where}/pack.yaml: grading.{name} uses {sorted(fields)}, expected {sorted(required)}")
    if not problems:  # render every template once with and without features
        try:
            pack.generation_prompt("x", "y", "z", list(FEATURES))
            pack.generation_prompt("x", "y", "z", [])
            pack.translation_prompt("story", "English")
            pack.instruct_text(["x", "y", "z"], list(FEATURES[:2]), "story")
            spec.grading.prompt.format(beginning="Once", completion="upon")
            spec.grading.instruct_prompt.format(instructions="Words: x", beginning="Once", completion="upon")
        except (KeyError, IndexError, ValueError) as error:
            problems.append(f"{where}/pack.yaml: a template does not render ({error!r})")
    seen: dict[tuple[str, str], int] = {}
    for number, entry in enumerate(pack.vocabulary, 2):
        if entry.pos not in PARTS_OF_SPEECH:
            problems.append(f"{where}/vocabulary.tsv:{number}: {entry.lemma!r} has part of speech {entry.pos!r} "
                            f"(expected one of {', '.join(PARTS_OF_SPEECH)})")
        if not entry.lemma:
            problems.append(f"{where}/vocabulary.tsv:{number}: empty lemma")
        key = (entry.lemma, entry.pos)
        if key in seen:
            problems.append(f"{where}/vocabulary.tsv:{number}: {entry.lemma!r} ({entry.pos}) duplicates line {seen[key]}")
        seen.setdefault(key, number)
    for label, items in (("function-words.txt", pack.function_words), ("names.txt", pack.names)):
        duplicates = sorted({w for w in items if items.count(w) > 1})
        if duplicates:
            problems.append(f"{where}/{label}: listed twice: {', '.join(duplicates)}")
    problems += _check_beginnings(pack, reference)
    problems += _check_identity(pack)
    problems += _check_filters(pack)
    if pack.has_grammar:
        from .corpus.grammar import check_grammar

        try:
            grammar = pack.grammar
        except PackError as error:
            return problems + [str(error)]
        vocabulary = {pos: set(pack.words(pos)) for pos in PARTS_OF_SPEECH}
        problems += check_grammar(grammar, vocabulary, set(pack.names))
    return problems


def _check_filters(pack: LanguagePack) -> list[str]:
    """Filter settings a build would only discover after writing (and paying for) its stories."""
    where, settings = pack.directory / "pack.yaml", pack.spec.filters
    problems = []
    if settings.min_words > settings.max_words:
        problems.append(f"{where}: filters.min_words {settings.min_words} is above max_words {settings.max_words}: "
                        "every story would be rejected")
    if settings.min_bytes > settings.max_bytes:
        problems.append(f"{where}: filters.min_bytes {settings.min_bytes} is above max_bytes {settings.max_bytes}: "
                        "every story would be rejected")
    from .filters.pipeline import pack_lemmatiser

    try:
        pack_lemmatiser(pack)
    except (ValueError, ImportError, OSError) as error:
        problems.append(f"{where}: filters.lemmatiser {settings.lemmatiser}: {error}")
    missing = [pos for pos in ("noun", "verb", "adj") if not pack.words(pos)]
    if missing:
        problems.append(f"{pack.directory / 'vocabulary.tsv'}: no {', '.join(missing)} entries: LLM generation "
                        "asks for a noun, a verb and an adjective (adj) in every story")
    return problems


def language_id_codes() -> list[str]:
    """Languages the language-ID filter knows: langdetect's profile files (read without loading them)."""
    from importlib.resources import files

    return sorted(entry.name for entry in files("langdetect").joinpath("profiles").iterdir())


def _check_identity(pack: LanguagePack) -> list[str]:
    """What a copied pack keeps by mistake: another language's code, a language ID it cannot run,
    feature labels that name two features."""
    where, spec = pack.directory / "pack.yaml", pack.spec
    problems = []
    if pack.directory.name != spec.code:
        problems.append(f"{where}: code is {spec.code!r} but the folder is {pack.directory.name!r}; packs are found "
                        f"by folder name and every record is stamped with the code, so the two must match")
    expected = spec.filters.language or spec.code
    if spec.filters.language_id and expected not in (known := language_id_codes()):
        problems.append(f"{where}: filters.language {expected!r} is not a language the language-ID filter knows "
                        f"({', '.join(known)}); name a close one it knows, or set filters.language_id: false")
    labels: dict[str, str] = {}
    for name in FEATURES:
        feature = spec.features.get(name)
        if feature is None:
            continue
        label = feature.label.strip().lower()
        if label in labels or (label in FEATURES and label != name):
            other = labels.get(label, label)
            problems.append(f"{where}: features.{name}.label {feature.label!r} also names {other}; "
                            "each feature needs a label of its own")
        labels.setdefault(label, name)
    return problems


def _check_beginnings(pack: LanguagePack, reference: LanguagePack | None) -> list[str]:
    where = pack.directory / "eval-beginnings.yaml"
    problems = []
    ids = [b.id for b in pack.eval_beginnings]
    if len(set(ids)) != len(ids):
        problems.append(f"{where}: duplicate ids")
    if reference is not None and ids != [b.id for b in reference.eval_beginnings]:
        problems.append(f"{where}: ids differ from {reference.directory / 'eval-beginnings.yaml'} (they must be parallel)")
    allowed = set(pack.spec.alphabet) | set(pack.spec.alphabet.upper()) | set(pack.spec.punctuation)
    for beginning in pack.eval_beginnings:
        strange = sorted({c for c in beginning.text if not (c in allowed or c.isdigit() or c.isspace())})
        if strange:
            problems.append(f"{where}: {beginning.id} has characters outside the alphabet and punctuation: {''.join(strange)}")
    return problems


def summarise_pack(pack: LanguagePack) -> dict:
    """What ``tinylang langpack show`` prints."""
    by_pos = {pos: len(pack.words(pos)) for pos in PARTS_OF_SPEECH}
    summary = {
        "code": pack.code, "name": f"{pack.name} ({pack.spec.native_name})", "directory": str(pack.directory),
        "alphabet": pack.spec.alphabet, "vocabulary": by_pos | {"total": len(pack.vocabulary)},
        "function_words": len(pack.function_words), "names": len(pack.names),
        "eval_beginnings": len(pack.eval_beginnings), "prompt_version": pack.spec.prompts.version,
        "features": {name: f.label for name, f in pack.spec.features.items()},
        "instruct_labels": pack.spec.instruct.model_dump(), "filters": pack.spec.filters.model_dump(),
    }
    if pack.has_grammar:
        grammar = pack.grammar
        summary["grammar"] = {
            "plots": len(grammar.plots), "parts": len(grammar.parts),
            "nouns": len(grammar.lexicon["nouns"]), "verbs": len(grammar.lexicon["verbs"]),
            "adjectives": len(grammar.lexicon["adjectives"]), "names": len(grammar.lexicon["names"]),
        }
    return summary
