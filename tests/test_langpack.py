"""Language packs: every shipped pack is sound, the checker catches broken ones, prompts render."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.langpack import FEATURES, PackError, available_packs, check_pack, load_pack

SHIPPED = available_packs()
REPO_CORPORA = Path(__file__).resolve().parents[1] / "corpora"


def test_english_finnish_and_a_third_language_ship():
    assert {"en", "fi"} <= set(SHIPPED) and len(SHIPPED) >= 3


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_shipped_pack_passes_its_check(lang):
    pack = load_pack(lang)
    assert check_pack(pack, load_pack("en")) == []
    assert len(pack.eval_beginnings) == 44
    assert 1000 <= len(pack.vocabulary) and all(pack.words(pos) for pos in ("noun", "verb", "adj"))
    assert len(pack.names) >= 50 and len(pack.function_words) >= 100


def test_generation_prompt_names_the_words_and_only_asked_features(tiny_pack):
    pack = load_pack(tiny_pack)
    plain = pack.generation_prompt("koira", "hypätä", "iloinen", [])
    featured = pack.generation_prompt("koira", "hypätä", "iloinen", ["dialogue", "bad_ending"])
    for word in ("koira", "hypätä", "iloinen"):
        assert f"”{word}”" in plain
    assert pack.spec.features["dialogue"].prompt not in plain
    assert pack.spec.features["dialogue"].prompt in featured and pack.spec.features["bad_ending"].prompt in featured
    assert "{" not in featured


def test_instruct_text_uses_the_pack_labels(tiny_pack):
    pack = load_pack(tiny_pack)
    text = pack.instruct_text(["koira", "hypätä", "iloinen"], ["dialogue"], "Tarina tässä.")
    assert text == "Piirteet: vuoropuhelu\nSanat: koira, hypätä, iloinen\nTarina: Tarina tässä."


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_check_reports_missing_pos_duplicates_and_bad_templates(tiny_pack):
    with (tiny_pack / "vocabulary.tsv").open("a", encoding="utf-8") as handle:
        handle.write("koira\tnoun\t\nauto\t\t\nsininen\tcolour\t\n")
    _edit(tiny_pack / "pack.yaml", "{adjective}", "{adjektiivi}")
    _edit(tiny_pack / "names.txt", "Mirri", "Mirri\nAino")
    problems = check_pack(load_pack(tiny_pack))
    text = "\n".join(problems)
    assert "'koira' (noun) duplicates line 2" in text
    assert "'auto' has part of speech ''" in text and "'sininen' has part of speech 'colour'" in text
    assert "prompts.generate uses" in text and "adjektiivi" in text
    assert "names.txt: listed twice: Aino" in text


def test_check_reports_eval_ids_that_are_not_parallel(tiny_pack):
    problems = check_pack(load_pack(tiny_pack), load_pack("en"))
    assert any("ids differ" in p for p in problems)


def test_load_errors_name_the_file(tiny_pack, tmp_path):
    with pytest.raises(PackError, match="no language pack 'xx'"):
        load_pack("xx")
    _edit(tiny_pack / "pack.yaml", "native_name: suomi", "native_name: suomi\ncolour: blue")
    with pytest.raises(PackError, match=r"pack.yaml: colour: Extra inputs"):
        load_pack(tiny_pack)


def test_features_are_the_six_of_tinystories():
    assert FEATURES == ("dialogue", "bad_ending", "moral_value", "plot_twist", "foreshadowing", "conflict")


def test_cli_show_and_check(tiny_pack):
    runner = CliRunner()
    shown = runner.invoke(app, ["langpack", "show", "fi"])
    assert shown.exit_code == 0, shown.output
    assert "Finnish" in shown.output and "vocabulary" in shown.output and "grammar" in shown.output
    checked = runner.invoke(app, ["langpack", "check"])
    assert checked.exit_code == 0, checked.output
    assert all(f"✓ {lang}" in checked.output for lang in SHIPPED)
    _edit(tiny_pack / "vocabulary.tsv", "kissa\tnoun", "kissa\tnoon")
    broken = runner.invoke(app, ["langpack", "check", str(tiny_pack)])
    assert broken.exit_code == 1 and "noon" in broken.output


def test_check_catches_what_a_copied_pack_keeps_by_mistake(tmp_path):
    """A pack copied from sv into et/ with the code, language ID and a label left wrong."""
    import shutil

    pack_dir = tmp_path / "et"
    shutil.copytree(REPO_CORPORA / "sv", pack_dir)
    text = "\n".join(check_pack(load_pack(pack_dir)))
    assert "code is 'sv' but the folder is 'et'" in text
    _edit(pack_dir / "pack.yaml", "code: sv", "code: et")
    assert not any("folder" in p for p in check_pack(load_pack(pack_dir)))

    spec = load_pack(pack_dir).spec
    dialogue_label = spec.features["dialogue"].label
    _edit(pack_dir / "pack.yaml", f"label: {spec.features['moral_value'].label}", f"label: {dialogue_label}")
    assert any(f"features.moral_value.label {dialogue_label!r} also names dialogue" in p
               for p in check_pack(load_pack(pack_dir)))


def test_check_refuses_a_language_id_code_the_detector_does_not_know(tiny_pack):
    _edit(tiny_pack / "pack.yaml", "  language: fi\n", "  language: se\n")
    problems = check_pack(load_pack(tiny_pack))
    assert any("filters.language 'se' is not a language the language-ID filter knows" in p for p in problems)
    _edit(tiny_pack / "pack.yaml", "language: se\n", "language: se\n  language_id: false\n")
    assert not any("language-ID" in p for p in check_pack(load_pack(tiny_pack)))


def test_language_id_off_keeps_stories_the_detector_would_reject(tiny_pack):
    from tinylang.filters.pipeline import story_filters
    from tinylang.filters.base import Story
    from tinylang.records import StoryRecord

    english = "Once upon a time there was a little dog who loved to play in the park with his friends."
    story = Story.of(StoryRecord(id="1", lang="fi", text=english, source="dataset", mode="import"))
    on = {f.name: f for f in story_filters(load_pack(tiny_pack))}["language"]
    assert not on.check(story).keep
    _edit(tiny_pack / "pack.yaml", "filters:\n", "filters:\n  language_id: false\n")
    off = {f.name: f for f in story_filters(load_pack(tiny_pack))}["language"]
    assert off.check(story).keep and off.detector is None


def test_a_file_not_in_utf8_is_named_with_its_line(tiny_pack):
    (tiny_pack / "names.txt").write_bytes("Aino\nEino\nMäyrä\n".encode("latin-1"))
    with pytest.raises(PackError, match=r"names.txt:3: not UTF-8 text \(byte 0xe4\)"):
        load_pack(tiny_pack)
    (tiny_pack / "names.txt").write_text("Aino\n", encoding="utf-8")
    (tiny_pack / "grammar" / "verbs.tsv").write_bytes("lemma\tcomplement\nlaulaa\tkovaa ä\n".encode("latin-1"))
    with pytest.raises(PackError, match=r"verbs.tsv:2: not UTF-8"):
        load_pack(tiny_pack).grammar


def test_own_packs_are_added_to_the_shipped_ones(tmp_path, monkeypatch, tiny_pack):
    own = tmp_path / "mine"
    (own / "et").mkdir(parents=True)
    for name in ("pack.yaml", "vocabulary.tsv", "function-words.txt", "names.txt", "eval-beginnings.yaml"):
        (own / "et" / name).write_bytes((tiny_pack / name).read_bytes())
    monkeypatch.setenv("TINYLANG_CORPORA", str(own))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no ./corpora here
    assert {"et", "fi", "en"} <= set(available_packs())
    assert load_pack("et").directory == own / "et"
    assert load_pack("fi").directory.parent.name == "corpora"
    with pytest.raises(PackError, match="no language pack 'xx'.*mine"):
        load_pack("xx")


def test_check_catches_filter_settings_a_build_would_fail_on_after_paying(tmp_path):
    """A pack for a language simplemma has no dictionary for (olo, Livvi), thresholds that reject
    everything, and a vocabulary with nothing to sample: each named before any story is made."""
    import shutil

    from tinylang.filters.pipeline import story_filters

    pack_dir = tmp_path / "olo"
    shutil.copytree(REPO_CORPORA / "sv", pack_dir)
    _edit(pack_dir / "pack.yaml", "code: sv", "code: olo")
    _edit(pack_dir / "pack.yaml", "  language: sv\n", "  language: olo\n  language_id: false\n")
    text = "\n".join(check_pack(load_pack(pack_dir)))
    assert "simplemma has no dictionary for 'olo'" in text and "filters.lemmatiser to none" in text
    with pytest.raises(ValueError, match="simplemma has no dictionary for 'olo'"):
        story_filters(load_pack(pack_dir))
    _edit(pack_dir / "pack.yaml", "filters:\n", "filters:\n  lemmatiser: none\n")
    assert check_pack(load_pack(pack_dir)) == []
    filters = {f.name: f for f in story_filters(load_pack(pack_dir))}
    assert filters["vocabulary"].judge("hund")[1] and not filters["vocabulary"].judge("hundar")[1]  # forms as written

    _edit(pack_dir / "pack.yaml", "min_words: 40", "min_words: 900")
    assert any("min_words 900 is above max_words" in p for p in check_pack(load_pack(pack_dir)))
    _edit(pack_dir / "pack.yaml", "min_words: 900", "min_words: -5")
    with pytest.raises(PackError, match="min_words"):
        load_pack(pack_dir)
    _edit(pack_dir / "pack.yaml", "min_words: -5", "min_words: 5")
    header = (pack_dir / "vocabulary.tsv").read_text(encoding="utf-8").splitlines()[0]
    (pack_dir / "vocabulary.tsv").write_text(header + "\n", encoding="utf-8")
    assert any("no noun, verb, adj entries" in p for p in check_pack(load_pack(pack_dir)))


def test_a_copied_pack_lemmatises_in_the_language_it_names(tmp_path):
    import shutil

    from tinylang.filters.pipeline import pack_lemmatiser

    pack_dir = tmp_path / "fz"
    shutil.copytree(REPO_CORPORA / "fi", pack_dir)
    _edit(pack_dir / "pack.yaml", "code: fi", "code: fz")
    pack = load_pack(pack_dir)
    assert pack.spec.filters.language == "fi" and pack_lemmatiser(pack).is_form_of("koiran", "koira")


def test_a_run_trained_on_a_text_inside_a_pack_is_in_that_packs_language(tmp_path):
    """fi-tiny trains on corpora/fi/seed-stories.txt: evaluate, generate --words and serve need no --lang
    for it, and neither does its export."""
    from tests.conftest import make_stories, recipe_dict, write_txt
    from tinylang.export import export_run
    from tinylang.run_corpus import run_language
    from tinylang.recipe import recipe_from_dict
    from tinylang.train import train
    from rich.console import Console

    shipped = recipe_from_dict(recipe_dict(REPO_CORPORA / "fi" / "seed-stories.txt", tmp_path / "r", tmp_path / "c"))
    assert run_language("runs/x", shipped) == "fi"
    loose = write_txt(tmp_path / "stories.txt", make_stories(100))
    recipe = recipe_from_dict(recipe_dict(loose, tmp_path / "run", tmp_path / "cache"))
    with pytest.raises(PackError, match="neither a build-corpus folder nor inside a language pack.*pass --lang"):
        run_language(tmp_path / "run", recipe)
    pack = tmp_path / "mypack"
    __import__("shutil").copytree(REPO_CORPORA / "fi", pack)
    inside = write_txt(pack / "stories.txt", make_stories(100))
    recipe = recipe_from_dict(recipe_dict(inside, tmp_path / "run", tmp_path / "cache"))
    run = train(recipe, console=Console(quiet=True)).run_dir
    assert run_language(run, recipe) == "fi"
    exported = export_run(run, tmp_path / "export")
    assert run_language(exported, None) == "fi"
