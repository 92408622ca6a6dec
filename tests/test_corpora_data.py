"""The language-pack data files shipped so far (issue 3 builds the loader on them): their format,
sizes and cross-file consistency."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
SHARED_PROMPTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinystories-eval-prompts-en.yaml"
FINNISH_LETTERS = set("abcdefghijklmnopqrstuvwxyzåäö-")


def word_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_finnish_vocabulary_has_lemmas_with_parts_of_speech():
    with (CORPORA / "fi" / "vocabulary.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert rows and set(rows[0]) == {"lemma", "pos", "gloss"}
    lemmas = [r["lemma"] for r in rows]
    assert len(lemmas) == len(set(lemmas)), "duplicate lemmas"
    assert 1_400 <= len(lemmas) <= 1_700
    assert {r["pos"] for r in rows} == {"noun", "verb", "adj", "adv"}
    assert all(set(lemma) <= FINNISH_LETTERS for lemma in lemmas), [w for w in lemmas if set(w) - FINNISH_LETTERS]
    verbs = [r["lemma"] for r in rows if r["pos"] == "verb"]
    assert all(v.endswith(("a", "ä")) for v in verbs), "verbs are listed in the first infinitive"


def test_function_words_and_names_do_not_overlap_the_vocabulary():
    with (CORPORA / "fi" / "vocabulary.tsv").open(encoding="utf-8") as handle:
        lemmas = {r["lemma"] for r in csv.DictReader(handle, delimiter="\t")}
    function_words = word_list(CORPORA / "fi" / "function-words.txt")
    names = word_list(CORPORA / "fi" / "names.txt")
    assert len(function_words) == len(set(function_words)) and len(names) == len(set(names))
    assert not lemmas & set(function_words)
    assert {"minä", "ja", "ei", "olla"} <= set(function_words)
    assert all(name[0].isupper() for name in names) and {"Aino", "Eino"} <= set(names)


@pytest.mark.parametrize("lang", ["en", "fi"])
def test_evaluation_beginnings_are_parallel(lang):
    items = yaml.safe_load((CORPORA / lang / "eval-beginnings.yaml").read_text(encoding="utf-8"))
    assert [item["id"] for item in items] == [f"ts-{i:02d}" for i in range(1, 45)]
    assert all(item["text"].strip() for item in items)


def test_english_beginnings_are_the_authors_text():
    if not SHARED_PROMPTS.is_file():
        pytest.skip("the shared reference data is not beside this checkout")
    source = yaml.safe_load(SHARED_PROMPTS.read_text(encoding="utf-8"))
    ours = yaml.safe_load((CORPORA / "en" / "eval-beginnings.yaml").read_text(encoding="utf-8"))
    assert [item["text"] for item in ours] == source
