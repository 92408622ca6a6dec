"""Shared fixtures: a tiny model shape, a small story file, and a recipe that trains in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from tinylang.model import MegabyteConfig

WORDS = (
    "kissa koira pupu karhu orava metsä talo äiti isä mummo leikki juoksi hyppäsi iloinen surullinen "
    "pallo puuro mustikka sauna järvi lumi aurinko ystävä pieni iso punainen"
).split()


def tiny_config(**overrides) -> MegabyteConfig:
    shape = dict(
        patch_size=4, context_bytes=32, global_dim=32, global_layers=2, global_heads=2,
        local_dim=32, local_layers=2, local_heads=2, ff_mult=2,
    )
    return MegabyteConfig(**(shape | overrides))


def make_stories(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stories = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        stories.append(f"Tarina {i}. " + " ".join(words).capitalize() + ".")
    return stories


def write_txt(path: Path, stories: list[str]) -> Path:
    path.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    return path


@pytest.fixture
def story_file(tmp_path: Path) -> Path:
    return write_txt(tmp_path / "stories.txt", make_stories(300))


def recipe_dict(data_path: Path, out_dir: Path, cache_dir: Path) -> dict:
    return {
        "data": {"path": str(data_path), "cache_dir": str(cache_dir), "validation_fraction": 0.1},
        "model": tiny_config(context_bytes=64).model_dump(),
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "lr_decay_steps": 100},
        "train": {"batch_size": 4, "max_steps": 12, "log_every": 1, "checkpoint_every": 4, "seed": 0},
        "eval": {"every_steps": 4, "batches": 2, "samples": 1, "sample_bytes": 20, "sample_prompt": "Tarina"},
        "output": {"dir": str(out_dir)},
    }


@pytest.fixture
def recipe_file(tmp_path: Path, story_file: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    raw = recipe_dict(story_file, tmp_path / "run", tmp_path / "cache")
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


REPO = Path(__file__).resolve().parents[1]
_NOUN_COLUMNS = "nom gen part ill ine ela ade abl all nom_pl part_pl to at from".split()
_CASES = ["", "n", "a", "an", "ssa", "sta", "lla", "lta", "lle", "t", "ja"]


def _noun_row(lemma: str, word_class: str) -> str:
    forms = [lemma + ending for ending in _CASES]
    local = [lemma + "an", lemma + "ssa", lemma + "sta"] if word_class == "place" else ["", "", ""]
    return "\t".join([lemma, word_class] + forms + local)


TINY_TEMPLATES = """
plots:
  one:
    - [opening, foreshadowing.hint]
    - [meet, describe, activity]
    - [dialogue, conflict.problem, conflict.solution, plot_twist]
    - [ending, foreshadowing.payoff, moral_value]
parts:
  opening: ["Olipa kerran {hero:nom}."]
  meet:
    animal: ["{Hero:nom} näki eläimen {noun:gen}."]
    place: ["{Hero:nom} meni paikkaan {noun:to}."]
  describe:
    describes_noun: ["{Noun:nom} oli {adj:nom}."]
    describes_hero: ["{Hero:nom} oli {adj:nom}."]
  activity: ["{Hero:nom} ja {friend:nom} halusivat {verb:inf}."]
  dialogue: ["”{Verb:pass}!” sanoi {pet:nom}."]
  conflict:
    - {problem: "Ongelma alkoi.", solution: "Ongelma ratkesi."}
  plot_twist: ["Yllätys tapahtui."]
  foreshadowing:
    - {hint: "Vihje tuli.", payoff: "Vihje toteutui."}
  ending:
    happy: ["Loppu hyvin."]
    bad: ["Loppu huonosti."]
  moral_value: ["Opetus opittiin."]
"""


def write_tiny_pack(directory: Path) -> Path:
    """A small but complete Finnish pack (pack.yaml of the real one, a toy grammar) for tests."""
    grammar = directory / "grammar"
    grammar.mkdir(parents=True)
    (directory / "pack.yaml").write_text((REPO / "corpora/fi/pack.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "eval-beginnings.yaml").write_text("- id: ts-01\n  text: Olipa kerran\n", encoding="utf-8")
    nouns = {"koira": "animal", "kissa": "animal", "puisto": "place", "metsä": "place"}
    adjectives = {"iloinen": "animate", "iso": "any", "pieni": "any"}
    verbs = ["hypätä", "laulaa", "uida"]
    vocabulary = [f"{w}\tnoun\t" for w in nouns] + [f"{w}\tadj\t" for w in adjectives] + [f"{w}\tverb\t" for w in verbs]
    (directory / "vocabulary.tsv").write_text("lemma\tpos\tgloss\n" + "\n".join(vocabulary) + "\n", encoding="utf-8")
    (directory / "function-words.txt").write_text("# test\nja\nse\n", encoding="utf-8")
    (directory / "names.txt").write_text("Aino\nEino\nMirri\n", encoding="utf-8")
    rows = [_noun_row(lemma, kind) for lemma, kind in nouns.items()]
    (grammar / "nouns.tsv").write_text("lemma\tclass\t" + "\t".join(_NOUN_COLUMNS) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    header = "lemma\ttarget\t" + "\t".join(_NOUN_COLUMNS[:11])
    rows = ["\t".join([lemma, target] + [lemma + e for e in _CASES]) for lemma, target in adjectives.items()]
    (grammar / "adjectives.tsv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    columns = "inf pres1 pres3 past3 pres3pl past3pl pass inf3_ill inf3_ine past_ptcp imp2".split()
    rows = ["\t".join([verb, "kovaa" if verb == "laulaa" else ""] + [f"{verb}_{c}" for c in columns]) for verb in verbs]
    (grammar / "verbs.tsv").write_text("lemma\tcomplement\t" + "\t".join(columns) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    names = ["Aino\tf\tchild", "Eino\tm\tchild", "Mirri\tf\tpet"]
    name_rows = ["\t".join([row, row.split()[0], row.split()[0] + "n"]) for row in names]
    (grammar / "names.tsv").write_text("name\tgender\tkind\tnom\tgen\n" + "\n".join(name_rows) + "\n", encoding="utf-8")
    (grammar / "templates.yaml").write_text(TINY_TEMPLATES, encoding="utf-8")
    return directory


@pytest.fixture
def tiny_pack(tmp_path: Path) -> Path:
    return write_tiny_pack(tmp_path / "fi")


@pytest.fixture
def llm_server():
    from tinylang.testing.openai_server import OpenAIServer

    with OpenAIServer(retry_after_s=0.2, slow_s=1.5) as server:
        yield server
