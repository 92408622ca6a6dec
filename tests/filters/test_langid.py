"""The fast language-ID engine returns exactly what langdetect returns, float for float."""

from __future__ import annotations

import random

import pytest
from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

from tinylang.filters.langid import FastLangDetect

TEXTS = [
    "Olipa kerran pieni koira, joka asui metsän laidalla. Se leikki joka päivä pallolla.",
    "Once upon a time there was a little girl named Lily. She loved to play in the park.",
    "Det var en gång en liten katt som hette Sigge. Han bodde i ett rött hus vid sjön.",
    "Elas kord väike koer, kes elas metsa ääres. Ta mängis iga päev palliga.",
    "Olipa kerran pieni koira. Then it went home and watched TV with a friend.",
    "Ça va très bien, merci beaucoup! İstanbul çok güzel bir şehir. Привет, как дела?",
    "日本語のテキストです", "ABC DEF ghi", "x", "e-mail foo@bar.com or http://example.org/x ok",
    "ÄÄNEKKÄÄT ÄÄNET kuuluivat kauas", "",
]


def reference(text: str) -> list[tuple[str, float]]:
    DetectorFactory.seed = 0
    try:
        return [(lang.lang, lang.prob) for lang in detect_langs(text)]
    except LangDetectException:
        return []


def random_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzäöå ÄÖÅ.,!?ABC\n  -'”"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))) for _ in range(count)]


@pytest.mark.parametrize("text", TEXTS)
def test_same_answer_as_langdetect(text):
    assert FastLangDetect(seed=0).detect_langs(text) == reference(text)


def test_same_answers_on_random_text_and_in_batches():
    texts = TEXTS + random_texts(60)
    expected = [reference(t) for t in texts]
    fast = FastLangDetect(seed=0)
    assert [fast.detect_langs(t) for t in texts] == expected
    assert fast.detect_batch(texts) == expected
    assert FastLangDetect(seed=0).detect_batch(list(reversed(texts))) == list(reversed(expected))


def test_the_seed_matters_like_it_does_for_langdetect():
    text = "Tere, mina olen Mari ja mina elan Tallinnas. Hyvää päivää!"
    assert FastLangDetect(seed=0).detect_langs(text) == reference(text)
    assert [lang for lang, _ in FastLangDetect(seed=0).detect_langs(text)]
