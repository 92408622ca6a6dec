"""Word guidance: which bytes it nudges and when, which words it counts as used, and that it steers
a real model's generation toward requested words (and changes nothing at strength 0)."""

from __future__ import annotations

import pytest
import torch

from tinylang.guidance import WordGuide, pack_matcher
from tinylang.langpack import load_pack
from tinylang.model import BOS_ID, VOCAB_SIZE, Megabyte, MegabyteConfig


def feed(guide: WordGuide, text: str) -> torch.Tensor:
    """Observe ``text`` byte by byte as if sampled; returns the bias the guide adds next."""
    logits = torch.zeros(1, VOCAB_SIZE)
    for byte in text.encode("utf-8"):
        guide(logits, torch.tensor([byte]))
    return guide(logits, None)[0]


def boosted(bias: torch.Tensor) -> dict[str, float]:
    return {chr(i): round(float(bias[i]), 3) for i in torch.nonzero(bias).flatten().tolist()}


def test_pressure_to_start_a_word_grows_with_the_words_since_the_last_use():
    guide = WordGuide(["koira"], strength=4.0, spread=4)
    assert boosted(feed(guide, "")) == {}  # nothing written yet: no pressure
    assert boosted(feed(guide, "Olipa kerran ")) == {"k": 2.0, "K": 2.0}  # 2 of 4 words
    assert boosted(feed(guide, "pieni talo. ")) == {"k": 4.0, "K": 4.0}  # full strength from then on


def test_a_started_word_is_pushed_to_its_end_and_then_left_to_the_model():
    guide = WordGuide(["koira"], strength=4.0, spread=1)
    assert boosted(feed(guide, "Talo ko")) == {"i": 4.0}  # full strength inside the word
    assert boosted(feed(guide, "ira")) == {}  # spelt out: the ending (koira-n, koira-a) is the model's
    # koiran is not koira to the exact matcher: a missed try, so the pressure builds up from nothing again
    assert boosted(feed(guide, "n ")) == {}
    assert boosted(feed(guide, "ja ")) == {"k": 4.0, "K": 4.0}
    assert boosted(feed(guide, "kissa ")) == {"k": 4.0, "K": 4.0}  # not a try at koira: kis- is not koi-
    feed(guide, "koira. ")
    assert guide.used() == ["koira"] and boosted(feed(guide, "Ja sitten ")) == {}  # used: no more nudging


def test_a_word_missed_three_times_is_left_to_the_model():
    guide = WordGuide(["dog"], strength=4.0, spread=1)
    assert boosted(feed(guide, "The door was a dogether ")) == {}  # door: not a try; dogether: the first
    assert boosted(feed(guide, "and ")) == {"d": 4.0, "D": 4.0}
    feed(guide, "dogs dogon ")  # the exact matcher: dogs is a miss too
    assert boosted(feed(guide, "and then ")) == {}  # three misses: left alone
    assert guide.used() == [] and guide.used() == guide.used()
    feed(guide, "a dog")
    assert guide.used() == ["dog"]  # the word a story ends on counts, though no space follows it


def test_words_are_letters_in_any_script_and_punctuation_ends_them():
    finished = []

    def is_use(word: str, wanted: str) -> bool:
        if not finished or finished[-1] != word:
            finished.append(word)
        return word == wanted

    guide = WordGuide(["äiti", "öinen"], strength=1.0, spread=1, is_use=is_use)
    feed(guide, "”Äiti”, hän sanoi.\nÖinen metsä")
    assert finished == ["äiti", "hän", "sanoi", "öinen"]  # ” (3 bytes) is not a letter; metsä is unfinished
    assert guide.used() == ["äiti", "öinen"]


def test_utf8_words_are_guided_byte_by_byte():
    guide = WordGuide(["äiti"], strength=2.0, spread=1)
    ä = "ä".encode()
    assert boosted(feed(guide, "Ja ")) == {chr(ä[0]): 2.0, chr("Ä".encode()[0]): 2.0}
    feed(guide, "ä")
    assert boosted(feed(guide, "")) == {"i": 2.0}
    half = WordGuide(["äiti"], strength=2.0, spread=1)
    logits = torch.zeros(1, VOCAB_SIZE)
    half(logits, torch.tensor([ord(" ")]))
    half(logits, torch.tensor([ä[0]]))
    assert boosted(half(logits, None)[0]) == {}  # inside a character: nothing to add


def test_the_prompt_can_end_inside_a_word():
    guide = WordGuide(["koira"], strength=3.0, prompt_tail="Tarina: Pieni Koi")
    assert boosted(feed(guide, "")) == {"r": 3.0}
    guide = WordGuide(["koira"], strength=3.0, prompt_tail="Pieni koira ")
    assert guide.used() == []  # the prompt's words are not the story's


def test_end_of_story_ends_a_word_and_rows_are_independent():
    guide = WordGuide(["talo"], strength=1.0, rows=2)
    logits = torch.zeros(2, VOCAB_SIZE)
    for a, b in zip(b"talo", b"tal "):
        guide(logits, torch.tensor([a, b]))
    guide(logits, torch.tensor([VOCAB_SIZE - 2, ord("o")]))  # an end-of-story id in row 0
    assert guide.used(0) == ["talo"] and guide.used(1) == []


def test_strength_zero_changes_nothing_and_negative_strength_is_refused():
    guide = WordGuide(["koira"], strength=0.0, spread=1)
    logits = torch.randn(1, VOCAB_SIZE)
    assert guide(logits, torch.tensor([ord(" ")])) is logits
    feed(guide, "koira ")
    assert guide.used() == ["koira"]  # it still counts the words used
    with pytest.raises(ValueError, match="0 or more"):
        WordGuide(["koira"], strength=-1.0)


def test_lemmatised_forms_count_as_uses():
    guide = WordGuide(["koira", "pallo"], strength=1.0, is_use=pack_matcher(load_pack("fi")))
    feed(guide, "Koiran pallot ")
    assert guide.used() == ["koira", "pallo"]


def tiny_model() -> Megabyte:
    torch.manual_seed(0)
    return Megabyte(MegabyteConfig(patch_size=4, context_bytes=64, global_dim=32, global_layers=1, global_heads=2,
                                   local_dim=32, local_layers=1, local_heads=2)).eval()


def test_guidance_steers_a_model_to_write_the_requested_words():
    model = tiny_model()
    prompt = torch.tensor([[BOS_ID, *b"Olipa kerran "]] * 4)
    plain = model.generate(prompt, 60, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert all(b"koira" not in bytes(b for b in row if b < 256) for row in plain.tolist())  # an untrained model
    guide = WordGuide(["koira", "talo"], strength=20.0, rows=4, spread=1)
    out = model.generate(prompt, 60, temperature=1.0, generator=torch.Generator().manual_seed(0), processor=guide)
    for row in range(4):
        text = bytes(b for b in out[row].tolist() if b < 256).decode("utf-8", errors="replace")
        assert "koira" in text.lower() and "talo" in text.lower(), text
        assert guide.used(row) == ["koira", "talo"]


def test_a_processor_that_changes_nothing_leaves_generation_unchanged():
    model = tiny_model()
    prompt = torch.tensor([[BOS_ID, *b"Olipa"]])
    seen = []

    def watch(logits, sampled):
        seen.append(None if sampled is None else sampled.tolist())
        return logits

    a = model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(3), processor=watch)
    assert torch.equal(a, b)
    assert seen[0] is None and [s[0] for s in seen[1:]] == b[0, 6:-1].tolist()  # each step sees the byte before


def test_the_cli_default_is_the_library_default():
    from tinylang.cli.runs import DEFAULT_GUIDANCE
    from tinylang.guidance import DEFAULT_STRENGTH

    assert DEFAULT_GUIDANCE == DEFAULT_STRENGTH


def test_a_request_that_is_not_one_word_is_not_steered_toward():
    guide = WordGuide(["jäätelö tötterö", "sini-valkoinen", "Koira", "koira"], strength=5.0, spread=1)
    assert guide.words == ["jäätelö tötterö", "sini-valkoinen", "koira"]  # once each
    assert guide.unsteered == ["jäätelö tötterö", "sini-valkoinen"]
    assert boosted(feed(guide, "Hän söi ")) == {"k": 5.0, "K": 5.0}  # only the one-word request
    feed(guide, "jäätelö tötterö ja koiran. ")
    assert guide.used() == []  # exact matching: neither the two-word request nor koiran


def test_decomposed_requests_and_text_are_read_as_composed():
    import unicodedata

    guide = WordGuide([unicodedata.normalize("NFD", "äiti")], strength=1.0, spread=1)
    assert guide.words == ["äiti"] and guide.unsteered == []
    feed(guide, "Äiti tuli. ")
    assert guide.used() == ["äiti"]
    decomposed = WordGuide(["äiti"], strength=1.0, is_use=lambda word, wanted: unicodedata.normalize("NFC", word) == wanted)
    feed(decomposed, unicodedata.normalize("NFD", "äiti") + " ")  # combining marks are part of the word
    assert decomposed.used() == ["äiti"]


def test_a_broken_byte_sequence_ends_a_word_and_does_not_crash():
    guide = WordGuide(["talo"], strength=1.0, spread=1)
    logits = torch.zeros(1, VOCAB_SIZE)
    for byte in b"talo" + bytes([0xF0, 0x80, 0x80, 0x80]) + b"talo ":  # an overlong, invalid 4-byte sequence
        guide(logits, torch.tensor([byte]))
    assert guide.used() == ["talo"]


def test_any_bytes_at_all_are_observed_without_error():
    import random

    rng = random.Random(0)
    guide = WordGuide(["koira", "äiti"], strength=3.0, rows=4, spread=1)
    logits = torch.zeros(4, VOCAB_SIZE)
    for _ in range(3000):  # an untrained model samples any id, specials and stray UTF-8 bytes included
        biased = guide(logits, torch.tensor([rng.randrange(VOCAB_SIZE) for _ in range(4)]))
        assert biased.shape == logits.shape and torch.isfinite(biased).all()
