"""Language packs: every shipped pack is sound, the checker catches broken ones, prompts render."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.langpack import FEATURES, PackError, available_packs, check_pack, load_pack

SHIPPED = available_packs()


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
