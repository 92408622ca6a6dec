"""Filters on short multilingual strings, with their exact drop reasons, and the pipeline's counts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.filters.base import Story
from tinylang.filters.dedup import ExactDuplicate, NearDuplicate
from tinylang.filters.pipeline import FilterPipeline
from tinylang.filters.text import Normalise, Repetition
from tinylang.langpack import load_pack
from tinylang.records import StoryRecord, read_parquet

FI = ("Olipa kerran pieni tyttö, jonka nimi oli Aino. Aino asui metsän reunalla äidin ja isän kanssa. "
      "Eräänä päivänä Aino löysi metsästä pienen pupun. Pupu oli nälkäinen ja surullinen. Aino antoi pupulle porkkanan. "
      "Pupu söi porkkanan ja hyppi iloisesti. Siitä päivästä lähtien Aino ja pupu olivat parhaat ystävät. "
      "Joka aamu he leikkivät yhdessä pihalla, ja illalla pupu nukkui Ainon vieressä.")
ET = ("Elas kord väike tüdruk, kelle nimi oli Anni. Anni elas metsa ääres koos ema ja isaga. Ühel päeval leidis Anni "
      "metsast väikese jänese. Jänes oli näljane ja kurb. Anni andis jänesele porgandi. Jänes sõi porgandi ja hüppas "
      "rõõmsalt. Sellest päevast alates olid Anni ja jänes parimad sõbrad. Iga hommik mängisid nad koos õues.")
SV = ("Det var en gång en liten flicka som hette Alva. Alva bodde vid skogen med sin mamma och pappa. En dag hittade "
      "Alva en liten kanin i skogen. Kaninen var hungrig och ledsen. Alva gav kaninen en morot. Kaninen åt moroten och "
      "hoppade glatt. Från den dagen var Alva och kaninen bästa vänner. Varje morgon lekte de tillsammans på gården.")
EN = ("Once upon a time there was a little girl named Lily. Lily lived near the forest with her mom and dad. One day "
      "Lily found a little bunny in the forest. The bunny was hungry and sad. Lily gave the bunny a carrot. The bunny ate "
      "the carrot and hopped happily. From that day on Lily and the bunny were best friends. Every morning they played together.")
FI_WITH_ENGLISH = FI.replace("Pupu söi porkkanan ja hyppi iloisesti.",
                             "Then the little bunny ate the whole carrot and jumped around the garden happily.")
ADULT = ("Olipa kerran konsultti, jonka nimi oli Aino. Aino analysoi yrityksen tilinpäätöksen ja laati strategisen "
         "kehityssuunnitelman johtoryhmälle. Hallitus hyväksyi investointiohjelman, vaikka osakkeenomistajat kyseenalaistivat "
         "kannattavuuslaskelmat. Neuvottelut jatkuivat lokakuussa, ja lopulta osapuolet allekirjoittivat aiesopimuksen "
         "rahoituksesta sekä riskienhallinnasta. Tilintarkastaja totesi raportissaan, että verotuksellinen käsittely oli asianmukainen.")


@pytest.fixture(scope="module")
def pipeline():
    return FilterPipeline(load_pack("fi"))


def first_drop(pipeline, text):
    for name, verdict in pipeline.explain(text):
        if not verdict.keep:
            return name, verdict.reason, verdict.detail
    return None


def test_clean_finnish_is_kept(pipeline):
    assert first_drop(pipeline, FI) is None


@pytest.mark.parametrize("text,expected", [
    (ET, ("alphabet", "alphabet")),           # õ and ü are not Finnish letters
    (SV, ("language", "language")),
    (EN, ("language", "language")),
    (FI_WITH_ENGLISH, ("dictionary", "dictionary")),  # language ID still says Finnish
    (ADULT, ("vocabulary", "vocabulary")),
    ("Olipa kerran koira.", ("length", "too short")),
    ("As an AI language model, I cannot write stories about " + FI, ("meta", "meta-text")),
])
def test_each_kind_of_bad_story_is_dropped_for_the_right_reason(pipeline, text, expected):
    assert first_drop(pipeline, text)[:2] == expected


def test_language_id_passes_the_code_mixed_story_that_dictionary_coverage_catches(pipeline):
    verdicts = dict(pipeline.explain(FI_WITH_ENGLISH))
    assert verdicts["language"].keep
    assert not verdicts["dictionary"].keep and "Then" in verdicts["dictionary"].detail


def test_swedish_and_estonian_details_name_the_language(pipeline):
    assert "detected sv" in dict(pipeline.explain(SV))["language"].detail
    assert "detected et" in dict(pipeline.explain(ET))["language"].detail


@pytest.mark.parametrize("wrapped,repair", [
    ("Tässä on tarina:\n\n" + FI, "preamble"),
    ("Here is a short story for you:\n" + FI, "preamble"),
    ("# Aino ja pupu\n\n" + FI, "title"),
    ("**Aino ja pupu**\n\n" + FI, "title"),
    ("Tarina: " + FI, "label"),
    ("”" + FI + "”", "quotes"),
    (FI.replace("Pupu oli", "**Pupu** oli"), "markdown"),
    (FI.replace(". ", ".   ", 3), "whitespace"),
])
def test_preambles_markdown_and_quotes_are_repaired_not_dropped(pipeline, wrapped, repair):
    story = Story.of(StoryRecord(id="x", lang="fi", text=wrapped, source="llm"))
    assert Normalise(("Tarina:",)).check(story).keep
    assert repair in story.notes["normalised"]
    assert story.text.startswith("Olipa kerran") and story.text.endswith("vieressä.") or repair == "markdown"
    assert first_drop(pipeline, wrapped) is None


def test_repetition_is_dropped():
    looping = " ".join(["Aino hyppi ja nauroi."] * 30)
    verdict = Repetition().check(Story.of(StoryRecord(id="x", lang="fi", text=looping, source="llm")))
    assert not verdict.keep and verdict.reason == "repetition"
    lines = "\n".join(["Pupu hyppäsi."] * 5 + ["Aino nauroi."])
    assert "lines repeated" in Repetition().check(Story.of(StoryRecord(id="y", lang="fi", text=lines, source="llm"))).detail


def test_exact_and_near_duplicates_are_dropped():
    def story(i, text):
        return Story.of(StoryRecord(id=f"s{i}", lang="fi", text=text, source="llm"))

    exact, near = ExactDuplicate(), NearDuplicate(threshold=0.8)
    assert exact.check(story(1, FI)).keep and near.check(story(1, FI)).keep
    assert exact.check(story(2, FI.upper().replace(".", "!"))).detail == "same text as s1"
    almost = FI.replace("illalla pupu nukkui", "illalla se nukkui")
    verdict = near.check(story(3, almost))
    assert not verdict.keep and verdict.detail.startswith("of s1")
    assert near.check(story(4, ET)).keep


def test_pipeline_statistics_add_up_and_every_rejection_is_written(pipeline, tmp_path):
    texts = [FI, FI, ET, SV, EN, ADULT, "Liian lyhyt.", FI_WITH_ENGLISH, FI.replace("illalla pupu", "illalla se")]
    records = [StoryRecord(id=f"r{i}", lang="fi", text=t, source="llm") for i, t in enumerate(texts)]
    kept, rejected = [], []
    stats = FilterPipeline(load_pack("fi")).run(records, kept.append, rejected.append)
    assert stats.seen == 9 == stats.kept + stats.dropped_total == len(kept) + len(rejected)
    assert [r.id for r in kept] == ["r0"]
    assert {(r.record.id, r.filter) for r in rejected} >= {("r1", "exact_duplicate"), ("r8", "near_duplicate"),
                                                          ("r2", "alphabet"), ("r5", "vocabulary")}
    assert stats.dropped["language"]["language"] == 2
    assert kept[0].meta["filters"]["oov"] == [] or isinstance(kept[0].meta["filters"]["oov"], list)


def test_workers_give_the_same_result(tmp_path):
    texts = [FI, ET, FI, SV, EN, ADULT] * 3
    records = [StoryRecord(id=f"r{i}", lang="fi", text=t, source="llm") for i, t in enumerate(texts)]
    runs = []
    for workers in (1, 2):
        kept, rejected = [], []
        stats = FilterPipeline(load_pack("fi")).run(records, kept.append, rejected.append, workers=workers)
        runs.append(([r.id for r in kept], [(r.record.id, r.filter, r.reason) for r in rejected], stats.as_dict()))
    assert runs[0] == runs[1]


def test_filter_command_writes_splits_rejected_and_stats(tmp_path):
    source = tmp_path / "stories.jsonl"
    rows = [{"id": f"s{i}", "text": t} for i, t in enumerate([FI, EN, FI, FI.replace("illalla pupu", "illalla se")])]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "clean"
    result = CliRunner().invoke(app, ["filter", str(source), "--lang", "fi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| language | language | 1 |" in result.output and "Kept 1 of 4" in result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["seen"] == 4 and stats["kept"] == 1 and stats["dropped_by"]["exact_duplicate"] == {"exact duplicate": 1}
    kept = [r.id for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")]
    assert kept == ["s0"]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {(r["id"], r["filter"]) for r in rejected} == {("s1", "language"), ("s2", "exact_duplicate"), ("s3", "near_duplicate")}


def test_filter_reads_another_text_column(tmp_path):
    source = tmp_path / "stories.jsonl"
    source.write_text("".join(json.dumps({"id": f"s{i}", "story": t}, ensure_ascii=False) + "\n"
                              for i, t in enumerate([FI, EN])), encoding="utf-8")
    refused = CliRunner().invoke(app, ["filter", str(source), "--lang", "fi", "--out", str(tmp_path / "a")])
    assert refused.exit_code == 1 and "no 'text' field" in " ".join(refused.output.split())
    result = CliRunner().invoke(app, ["filter", str(source), "--lang", "fi", "--out", str(tmp_path / "b"),
                                      "--text-column", "story"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "stats.json").read_text())["kept"] == 1


def test_repeated_ids_are_filtered_and_warned_about(tmp_path):
    source = tmp_path / "stories.jsonl"
    rows = [{"id": "k0", "text": FI}, {"id": "k0", "text": FI.replace("pupu", "kissa")}]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(app, ["filter", str(source), "--lang", "fi", "--out", str(tmp_path / "o")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "1 row(s) of the input repeat an earlier row's id (first: 'k0')" in result.output
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["seen"] == 2


def test_explain_shows_every_filter(tmp_path):
    result = CliRunner().invoke(app, ["filter", "--lang", "fi", "--explain", EN], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("normalise", "length", "alphabet", "meta", "repetition", "language", "dictionary", "vocabulary"):
        assert name in result.output
    assert "detected en" in result.output and "dropped" in result.output


def test_echoed_finnish_instructions_are_meta_text(pipeline):
    assert first_drop(pipeline, "Kirjoita lyhyt tarina lapsille. " + FI)[:2] == ("meta", "meta-text")


def _voikko_available() -> bool:
    try:
        import libvoikko

        libvoikko.Voikko("fi")
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _voikko_available(), reason="Voikko is not installed (apt: libvoikko1 voikko-fi)")
def test_voikko_backend_judges_like_a_finnish_dictionary():
    from tinylang.filters.lexical import DictionaryCoverage, Vocabulary, make_lemmatiser

    voikko = make_lemmatiser("fi", "voikko")
    assert voikko.analyse("koirille") == (True, ("koira",))
    assert voikko.analyse("hyppäsivät")[1] == ("hypätä",)
    assert voikko.analyse("watched")[0] is False
    pack = load_pack("fi")
    names = frozenset(n.lower() for n in pack.names)
    function_words = frozenset(w.lower() for w in pack.function_words) | names
    vocabulary = frozenset(e.lemma.lower() for e in pack.vocabulary) | function_words
    story = Story.of(StoryRecord(id="v", lang="fi", text=FI, source="llm"))
    assert DictionaryCoverage(voikko, 0.9, names).check(story).keep
    assert Vocabulary(vocabulary, function_words, voikko, 0.8, compounds=True).check(story).keep
    mixed = Story.of(StoryRecord(id="m", lang="fi", text=FI_WITH_ENGLISH, source="llm"))
    assert not DictionaryCoverage(voikko, 0.9, names).check(mixed).keep
