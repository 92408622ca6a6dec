"""The filter interface: a filter looks at one story and keeps it, or drops it with a reason.

    class Shouting(Filter):
        name = "shouting"
        def check(self, story: Story) -> Verdict:
            share = sum(c.isupper() for c in story.text) / max(1, len(story.text))
            return drop("shouting", f"{share:.0%} capitals", share) if share > 0.5 else keep(share)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..records import StoryRecord

WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str = ""  # a short category for statistics: "too short", "language", ...
    detail: str = ""  # what exactly, for the rejected file and --explain
    score: float | None = None


def keep(score: float | None = None, detail: str = "") -> Verdict:
    return Verdict(True, "", detail, score)


def drop(reason: str, detail: str = "", score: float | None = None) -> Verdict:
    return Verdict(False, reason, detail, score)


@dataclass
class Story:
    """A record on its way through the filters; ``text`` may be repaired on the way."""

    record: StoryRecord
    text: str
    notes: dict[str, Any] = field(default_factory=dict)  # written to record.meta["filters"] when kept
    _words: list[str] | None = None
    _lower: list[str] | None = None

    @classmethod
    def of(cls, record: StoryRecord) -> "Story":
        return cls(record, record.text)

    @property
    def words(self) -> list[str]:
        """Word tokens (letters, inner hyphens and apostrophes), computed once per text."""
        if self._words is None:
            self._words = WORD.findall(self.text)
        return self._words

    @property
    def lower_words(self) -> list[str]:
        if self._lower is None:
            self._lower = [w.lower() for w in self.words]
        return self._lower

    def set_text(self, text: str) -> None:
        self.text = text
        self._words = self._lower = None

    def finished_record(self) -> StoryRecord:
        meta = dict(self.record.meta)
        if self.notes:
            meta["filters"] = self.notes
        return self.record.model_copy(update={"text": self.text, "meta": meta})


class Filter:
    """A step of the pipeline. ``check`` must not depend on other stories (dedup filters, which
    must, set ``stateful = True`` and run in one process after the others)."""

    name = "filter"
    stateful = False

    def prepare(self, stories: list[Story]) -> None:
        """Optional: work on a whole batch at once before ``check`` is called on each story."""

    def check(self, story: Story) -> Verdict:  # pragma: no cover - interface
        raise NotImplementedError
