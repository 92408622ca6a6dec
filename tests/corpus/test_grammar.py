"""The offline story grammar: the asked words and features appear, forms agree, checks catch mistakes."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest

from tinylang.corpus.grammar import GrammarError, check_grammar, load_grammar, word_forms
from tinylang.langpack import FEATURES, load_pack


def test_story_uses_the_words_and_shows_only_the_asked_features(tiny_pack):
    grammar = load_grammar(tiny_pack / "grammar")
    plain = grammar.render("puisto", "laulaa", "iso", [], random.Random(0))
    assert "puistoan" in plain and "laulaa_inf kovaa" in plain  # place form 'to'; verb + complement
    assert "Puisto oli ison" not in plain and "Puisto oli iso." in plain  # 'any' adjective describes the noun
    for marker in ("Vihje", "Ongelma", "Yllätys", "Opetus", "sanoi"):
        assert marker not in plain
    assert "Loppu hyvin." in plain
    full = grammar.render("koira", "hypätä", "iloinen", ["dialogue", "conflict", "foreshadowing"], random.Random(0))
    assert "”Hypätä_pass!” sanoi Mirri." in full
    assert full.index("Vihje tuli.") < full.index("Vihje toteutui.")
    assert "Ongelma alkoi. Ongelma ratkesi." in full and "Koira oli iloinen." in full
    sad = grammar.render("puisto", "uida", "iloinen", ["bad_ending"], random.Random(0))
    assert sad.endswith("Loppu huonosti.") and re.search(r"(Aino|Eino) oli iloinen\.", sad)  # animate adj -> hero


def test_two_children_are_different_and_stories_vary_with_the_seed(tiny_pack):
    grammar = load_grammar(tiny_pack / "grammar")
    stories = {grammar.render("koira", "uida", "iso", [], random.Random(seed)) for seed in range(20)}
    assert len(stories) == 2  # Aino/Eino as hero or friend: the only freedom the toy grammar has
    for story in stories:
        assert "Aino ja Eino" in story or "Eino ja Aino" in story


def test_unknown_word_is_a_clear_error(tiny_pack):
    grammar = load_grammar(tiny_pack / "grammar")
    with pytest.raises(GrammarError, match="no forms for the noun 'auto'"):
        grammar.render("auto", "uida", "iso", [], random.Random(0))


def test_check_catches_broken_templates_and_lexicon(tiny_pack):
    templates = tiny_pack / "grammar" / "templates.yaml"
    text = templates.read_text(encoding="utf-8")
    text = text.replace("{Noun:nom} oli {adj:nom}.", "{Noun:nom}kin oli {adj:abessive}.")
    text = text.replace("[ending, foreshadowing.payoff, moral_value]", "[ending, foreshadowing.payoff, moral_value, epilogue]")
    text = text.replace('plot_twist: ["Yllätys tapahtui."]', "plot_twist: []")
    templates.write_text(text, encoding="utf-8")
    with (tiny_pack / "grammar" / "nouns.tsv").open("a", encoding="utf-8") as handle:
        handle.write("auto\tvehicle" + "\tx" * 11 + "\t\t\t\n")
    grammar = load_grammar(tiny_pack / "grammar")
    problems = "\n".join(check_grammar(grammar, {"noun": {"koira", "kissa", "puisto", "metsä"}, "adj": {"iloinen", "iso", "pieni"},
                                                 "verb": {"hypätä", "laulaa", "uida"}}, {"Aino", "Eino", "Mirri"}))
    assert "no letters may touch {noun}" in problems
    assert "has no form 'abessive'" in problems
    assert "unknown part 'epilogue'" in problems
    assert "'auto' is not a noun of vocabulary.tsv" in problems and "'auto' has class 'vehicle'" in problems
    assert "part 'plot_twist' has no alternative" in problems


def test_uncovered_feature_combinations_are_reported(tiny_pack):
    templates = tiny_pack / "grammar" / "templates.yaml"
    templates.write_text(templates.read_text(encoding="utf-8").replace(", plot_twist]", "]"), encoding="utf-8")
    grammar = load_grammar(tiny_pack / "grammar")
    problems = check_grammar(grammar, {}, set())
    assert "no plot covers the features ['plot_twist']" in problems
    with pytest.raises(GrammarError, match="no plot"):
        grammar.render("koira", "uida", "iso", ["plot_twist"], random.Random(0))


GRAMMAR_PACKS = [lang for lang in ("fi", "en") if (Path("corpora") / lang / "grammar" / "templates.yaml").exists()]


@pytest.mark.parametrize("lang", ["fi", "en"])
def test_shipped_grammar_is_big_varied_and_uses_the_words(lang):
    pack = load_pack(lang)
    grammar = pack.grammar
    assert len(grammar.plots) >= 20
    assert len(grammar.words("noun")) >= 300 and len(grammar.words("verb")) >= 150 and len(grammar.words("adj")) >= 100
    rng = random.Random(1)
    stories = []
    for _ in range(300):
        noun, verb, adj = (rng.choice(grammar.words(slot)) for slot in ("noun", "verb", "adj"))
        features = rng.sample(FEATURES, rng.randint(0, 3))
        story = grammar.render(noun, verb, adj, features, rng)
        words = set(re.findall(r"\w+", story.lower()))
        for slot, lemma in (("noun", noun), ("verb", verb), ("adj", adj)):
            forms = {f.lower() for f in grammar.entry(slot, lemma).forms.values() if f}
            assert forms & words or any(f in story.lower() for f in forms if " " in f), (slot, lemma, story)
        if "dialogue" in features:
            assert re.search(r"[”\"“]", story), story
        stories.append(story)
    assert len(set(stories)) == len(stories)
    lengths = [len(s.split()) for s in stories]
    assert 60 <= sum(lengths) / len(lengths) <= 300


def _voikko():
    try:
        import libvoikko

        return libvoikko.Voikko("fi")
    except Exception:  # library or dictionary missing
        return None


@pytest.mark.skipif(_voikko() is None, reason="Voikko (apt: libvoikko1 voikko-fi; pip: libvoikko) is not installed")
def test_every_finnish_word_form_the_grammar_can_write_passes_voikko():
    voikko = _voikko()
    words = word_forms(load_pack("fi").grammar)
    assert len(words) > 3000
    unknown = sorted(w for w in words if not voikko.spell(w))
    assert unknown == []


def test_grammar_folder_can_live_anywhere(tiny_pack, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_pack / "grammar", copy)
    assert load_grammar(copy).words("noun") == ["koira", "kissa", "puisto", "metsä"]


def test_a_plot_can_have_its_own_feature_parts(tiny_pack):
    templates = tiny_pack / "grammar" / "templates.yaml"
    text = templates.read_text(encoding="utf-8").replace("[dialogue,", "[dialogue_picnic,")
    templates.write_text(text + '  dialogue_picnic: ["”Eväät!” sanoi {hero:nom}."]\n', encoding="utf-8")
    grammar = load_grammar(tiny_pack / "grammar")
    assert "Eväät" in grammar.render("koira", "uida", "iso", ["dialogue"], random.Random(0))
    assert "Eväät" not in grammar.render("koira", "uida", "iso", [], random.Random(0))
