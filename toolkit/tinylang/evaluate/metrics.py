"""Automatic metrics, no LLM needed: bits per byte / character / story under the model, and what the
filters say about completions (vocabulary adherence, dictionary coverage, language, repetition),
diversity (distinct-n) and length. Means come with a 95% confidence interval.

    bits = story_bits(model, ["Olipa kerran ..."], end_of_story=False)     # [(bits, bytes, characters)]
    mean, low, high = mean_ci([7, 8, 6])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import encode_story
from ..filters.base import Story
from ..filters.lexical import DictionaryCoverage, Language, Vocabulary
from ..filters.pipeline import story_filters
from ..filters.text import Repetition
from ..langpack import LanguagePack
from ..model import BOS_ID, Megabyte
from ..records import StoryRecord


def mean_ci(values: Sequence[float], bounds: tuple[float, float] | None = None
            ) -> tuple[float | None, float | None, float | None]:
    """Mean and its 95% confidence interval (normal approximation; needs two values or more),
    clipped to ``bounds`` when the metric has them (a share stays within 0-1)."""
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return None, None, None
    mean = sum(clean) / len(clean)
    if len(clean) < 2:
        return mean, None, None
    sd = float(np.std(clean, ddof=1))
    half = 1.96 * sd / math.sqrt(len(clean))
    low, high = mean - half, mean + half
    if bounds:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return mean, low, high


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of all texts (Li et al., 2016)."""
    grams, total = set(), 0
    for text in texts:
        words = text.lower().split()
        for i in range(len(words) - n + 1):
            grams.add(tuple(words[i : i + n]))
            total += 1
    return len(grams) / total if total else 0.0


@torch.no_grad()
def story_bits(model: Megabyte, texts: Sequence[str], end_of_story: bool = True,
               progress: Callable[[], None] | None = None) -> list[tuple[float, int, int]]:
    """(bits, UTF-8 bytes, characters) to encode each text after BOS.

    Whole stories (a validation split) include the end-of-story prediction: ending at the right
    place is part of telling the story. Beginnings that stop mid-sentence (the evaluation
    beginnings) must not (``end_of_story=False``): predicting an end there would be wrong, and it
    would add 14-20 bits per story that say nothing about the text. Texts longer than the context
    are scored in consecutive windows (each window starts fresh). ``progress`` is called after each
    text."""
    device = next(model.parameters()).device
    context = model.config.context_bytes
    results = []
    for text in texts:
        ids = encode_story(text) if end_of_story else encode_story(text)[:-1]
        ids = torch.from_numpy(ids.astype(np.int64)).to(device)
        bits = 0.0
        for start in range(0, len(ids) - 1, context):
            window = ids[start : start + context + 1]
            if len(window) < 2:
                break
            logits, _ = model(window[None, :-1])
            nats = F.cross_entropy(logits[0].float(), window[1:], reduction="sum")
            bits += float(nats) / math.log(2)
        results.append((bits, len(text.encode("utf-8")), len(text)))
        if progress:
            progress()
    return results


@torch.no_grad()
def request_gain(model: Megabyte, pack: LanguagePack, stories: Sequence[tuple[list[str], list[str], str]],
                 progress: Callable[[], None] | None = None) -> dict:
    """How much an instruct model's request tells it about the story, split in its two parts: bits
    to encode each story after its own request, against after the same request with the next
    story's words (``words``) or the next story's features (``features``). A model that follows
    requests finds a story cheaper after its own. This moves with training long before sampled
    stories use the requested words, and the split says which part the model reads (the demo model
    learnt features long before words). Each comparison scores the same story bytes on both sides:
    as many as fit in the context after the longer request. ``progress`` is called for each
    story of each part (2 x stories calls)."""
    device = next(model.parameters()).device
    context = model.config.context_bytes

    def bits(request: bytes, story: bytes) -> float:
        ids = torch.tensor([[BOS_ID, *request, *story]], device=device)
        logits, _ = model(ids[:, :-1])  # output t predicts id t + 1: the story starts at output len(request)
        nats = F.cross_entropy(logits[0, len(request):].float(), ids[0, len(request) + 1:], reduction="sum")
        return float(nats) / math.log(2)

    result: dict = {"stories": len(stories)}
    for part in ("words", "features"):
        gains = []
        for i, (words, features, text) in enumerate(stories):
            if progress:
                progress()
            neighbour = stories[(i + 1) % len(stories)]
            swapped = (neighbour[0], features) if part == "words" else (words, neighbour[1])
            if list(swapped) == [words, features]:
                continue  # the same request: nothing to compare
            own = pack.instruct_text(words, features, "").encode("utf-8")
            other = pack.instruct_text(*swapped, "").encode("utf-8")
            story = text.encode("utf-8")[: context - max(len(own), len(other))]
            if story:
                gains.append(bits(other, story) - bits(own, story))
        mean, low, high = mean_ci(gains)
        result[part] = {"gain_bits_per_story": mean, "ci95": [low, high], "n": len(gains)}
    return result


def bits_summary(scored: list[tuple[float, int, int]]) -> dict:
    bits = sum(b for b, _, _ in scored)
    size = sum(n for _, n, _ in scored)
    chars = sum(c for _, _, c in scored)
    return {"stories": len(scored), "bits_per_byte": bits / size if size else None,
            "bits_per_char": bits / chars if chars else None, "bits_per_story": bits / len(scored) if scored else None}


class CompletionMetrics:
    """The pack's filters, used as measurements of completions rather than gates."""

    def __init__(self, pack: LanguagePack) -> None:
        filters = {f.name: f for f in story_filters(pack)}
        self.language: Language = filters["language"]
        self.dictionary: DictionaryCoverage = filters["dictionary"]
        self.vocabulary: Vocabulary = filters["vocabulary"]
        self.repetition = Repetition()
        self.pack = pack

    def measure(self, completions: list[str], requested_words: list[list[str]] | None = None,
                sizes: list[int] | None = None) -> list[dict]:
        """One row of measurements per completion. ``sizes`` are the bytes generated (default: the
        text's UTF-8 length, which counts a U+FFFD standing for one bad byte as three). A completion
        with no words scores 0 on dictionary coverage and vocabulary adherence: it wrote nothing in
        the language, and 1.0 (nothing out of vocabulary) would reward empty output."""
        stories = [Story.of(StoryRecord(id=str(i), lang=self.pack.code, text=t or " ", source="dataset", mode="import"))
                   for i, t in enumerate(completions)]
        self.language.prepare(stories)
        rows = []
        for i, story in enumerate(stories):
            language = self.language.check(story)
            top = story.notes.get("language", [None, 0.0])
            row = {
                "words": len(story.words),
                "bytes": sizes[i] if sizes is not None else len(completions[i].encode("utf-8")),
                "language": top[0],
                # None, not a perfect 1.0, for a pack whose language ID is off (language_id: false)
                "language_ok": bool(language.keep) if self.language.expected is not None else None,
                "dictionary_coverage": self.dictionary.check(story).score if story.words else 0.0,
                "vocabulary_adherence": self.vocabulary.check(story).score if story.words else 0.0,
                "repetition": self.repetition.check(story).score or 0.0,
            }
            if requested_words and requested_words[i]:
                # a word is used when it is written or one of its forms is (the rule word guidance uses)
                written = set(story.lower_words)
                wanted = [w.lower() for w in requested_words[i]]
                is_form = self.vocabulary.lemmatiser.is_form_of
                row["requested_words_used"] = sum(any(is_form(w, lemma) for w in written) for lemma in wanted) / len(wanted)
            rows.append(row)
        return rows
