"""Filters that need only the text: normalisation, length, alphabet, meta-text, repetition.

    Normalise().check(Story.of(record))    # repairs preambles, markdown, quotes; notes what changed
"""

from __future__ import annotations

import re
from collections import Counter

from .base import Filter, Story, Verdict, drop, keep

# Said by LLMs before or instead of a story, in the languages the shipped packs need; packs add
# their own in `filters.meta_phrases`.
META_PHRASES = (
    "as an ai", "as a language model", "i'm sorry, but", "i am sorry, but", "i cannot", "i can't write",
    "here is a story", "here's a story", "here is a short story", "here's a short story", "sure! here",
    "i hope you enjoyed", "let me know if", "write a short story", "the story should",
)
_PREAMBLE = re.compile(r"^[^\n]{0,100}:\s*\n")  # "Here is a story:" / "Tässä on tarina:" on its own line
_TITLE = re.compile(r"^(?:#+\s*[^\n]+|\*\*[^\n*]+\*\*|(?:title|otsikko|titel|rubrik)\s*:[^\n]*)\s*\n+", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|^#+\s*|^\s*[-*]\s+(?=\S)", re.MULTILINE)
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_QUOTE_PAIRS = {'"': '"', "”": "”", "“": "”", "'": "'", "«": "»"}


class Normalise(Filter):
    """Repairs what can be repaired and notes each repair; drops only what is left empty."""

    name = "normalise"

    def __init__(self, story_labels: tuple[str, ...] = ()) -> None:
        labels = [re.escape(label.rstrip(":")) for label in story_labels if label]
        self._label = re.compile(rf"^(?:{'|'.join(labels)})\s*:\s*", re.IGNORECASE) if labels else None

    def check(self, story: Story) -> Verdict:
        text, changes = story.text.replace("\r\n", "\n").strip(), []
        head = text[:120]
        if ":" in head or head[:1] in "#*_" or "\n" in head:  # cheap tests first: most stories are clean
            if _TITLE.match(text):
                text, changes = _TITLE.sub("", text, count=1), changes + ["title"]
            if _PREAMBLE.match(text) and len(text.split("\n", 1)[0].split()) <= 12:
                text, changes = _PREAMBLE.sub("", text, count=1), changes + ["preamble"]
            if self._label and self._label.match(text):
                text, changes = self._label.sub("", text, count=1), changes + ["label"]
        if ("*" in text or "_" in text or "#" in text or "- " in text) and _MARKDOWN.search(text):
            text, changes = _MARKDOWN.sub("", text), changes + ["markdown"]
        closing = _QUOTE_PAIRS.get(text[:1])
        only_pair = text.count(text[:1]) == 2 if closing == text[:1] else text.count(text[:1]) == text.count(closing or "_") == 1
        if closing and len(text) > 2 and text.endswith(closing) and only_pair:
            text, changes = text[1:-1].strip(), changes + ["quotes"]
        tidy = text
        if "  " in text or "\t" in text or "\n\n\n" in text or " \n" in text or "\n " in text:
            tidy = _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text)).strip()
            tidy = "\n".join(line.strip() for line in tidy.split("\n"))
        if tidy != text:
            changes.append("whitespace")
        if not tidy:
            return drop("empty", "nothing left after normalisation")
        if tidy != story.text:
            story.set_text(tidy)
        if changes:
            story.notes["normalised"] = changes
        return keep(detail=", ".join(changes) or "unchanged")


class Length(Filter):
    name = "length"

    def __init__(self, min_words: int, max_words: int, min_bytes: int = 0, max_bytes: int = 1 << 30) -> None:
        self.min_words, self.max_words, self.min_bytes, self.max_bytes = min_words, max_words, min_bytes, max_bytes

    def check(self, story: Story) -> Verdict:
        words, size = len(story.words), len(story.text.encode("utf-8"))
        if words < self.min_words:
            return drop("too short", f"{words} words < {self.min_words}", words)
        if words > self.max_words:
            return drop("too long", f"{words} words > {self.max_words}", words)
        if size < self.min_bytes:
            return drop("too short", f"{size} bytes < {self.min_bytes}", words)
        if size > self.max_bytes:
            return drop("too long", f"{size} bytes > {self.max_bytes}", words)
        return keep(words, f"{words} words, {size} bytes")


class Alphabet(Filter):
    """Characters outside the pack's letters, punctuation, digits and whitespace."""

    name = "alphabet"

    def __init__(self, alphabet: str, punctuation: str, max_foreign_fraction: float = 0.0) -> None:
        self.allowed = frozenset(alphabet + alphabet.upper() + punctuation + "0123456789 \n\t")
        self.max_foreign_fraction = max_foreign_fraction

    def check(self, story: Story) -> Verdict:
        foreign = [c for c in story.text if c not in self.allowed]
        share = len(foreign) / max(1, len(story.text))
        if share > self.max_foreign_fraction:
            shown = "".join(sorted(set(foreign))[:12])
            return drop("alphabet", f"{len(foreign)} characters outside the alphabet: {shown}", share)
        return keep(share)


class MetaText(Filter):
    """Refusals, assistant chatter and echoed instructions that normalisation cannot cut away."""

    name = "meta"

    def __init__(self, phrases: tuple[str, ...] = ()) -> None:
        self.phrases = tuple(sorted({p.lower() for p in META_PHRASES + tuple(phrases)}))

    def check(self, story: Story) -> Verdict:
        lowered = story.text.lower()
        for phrase in self.phrases:
            if phrase in lowered:
                return drop("meta-text", f"contains {phrase!r}")
        return keep()


class Repetition(Filter):
    """Gopher-style (Rae et al., 2021): duplicate lines, the most frequent word 2-gram, and the share
    of characters inside repeated word 5-grams."""

    name = "repetition"

    def __init__(self, max_duplicate_lines: float = 0.3, max_top_2gram: float = 0.2, max_duplicate_5grams: float = 0.3):
        self.max_duplicate_lines = max_duplicate_lines
        self.max_top_2gram = max_top_2gram
        self.max_duplicate_5grams = max_duplicate_5grams

    def check(self, story: Story) -> Verdict:
        lines = [line.strip() for line in story.text.split("\n") if line.strip()]
        if len(lines) > 1:
            duplicates = len(lines) - len(set(lines))
            if duplicates / len(lines) > self.max_duplicate_lines:
                return drop("repetition", f"{duplicates} of {len(lines)} lines repeated", duplicates / len(lines))
        words = [w.lower() for w in story.words]
        if len(words) < 10:
            return keep(0.0)
        chars = sum(map(len, words))
        (top, count), = Counter(zip(words, words[1:])).most_common(1)
        top_share = count * (len(top[0]) + len(top[1])) / max(1, chars)
        if count > 1 and top_share > self.max_top_2gram:
            return drop("repetition", f"'{' '.join(top)}' makes {top_share:.0%} of the text", top_share)
        fives = list(zip(words, words[1:], words[2:], words[3:], words[4:]))
        counts = Counter(fives)
        covered = set()
        for start, gram in enumerate(fives):
            if counts[gram] > 1:
                covered.update(range(start, start + 5))
        share = sum(len(words[i]) for i in covered) / max(1, chars)
        if share > self.max_duplicate_5grams:
            return drop("repetition", f"{share:.0%} of the text is in repeated 5-word runs", share)
        return keep(share)
