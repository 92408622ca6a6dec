"""The filter pipeline: run every filter over a stream of records, count, and keep every rejection.

Per-story filters run in chunks (optionally on ``workers`` processes, each loading the lemmatiser and
language profiles once); the duplicate filters then run in the main process, in input order, so
the result does not depend on the number of workers. Memory stays flat: records stream through,
only the duplicate indexes grow.

    pipeline = FilterPipeline.for_pack(load_pack("fi"))
    stats = pipeline.run(records, on_kept=kept.append, on_rejected=rejected.append, workers=2)
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from ..langpack import LanguagePack, load_pack
from ..records import StoryRecord
from .base import Filter, Story, Verdict
from .dedup import ExactDuplicate, NearDuplicate
from .lexical import DictionaryCoverage, Language, Lemmatiser, Vocabulary, make_lemmatiser
from .text import Alphabet, Length, MetaText, Normalise, Repetition

CHUNK = 256


@dataclass
class Rejection:
    record: StoryRecord
    filter: str
    reason: str
    detail: str

    def as_dict(self) -> dict:
        return self.record.model_dump(exclude_none=True) | {"filter": self.filter, "reason": self.reason, "detail": self.detail}


@dataclass
class FilterStats:
    seen: int = 0
    kept: int = 0
    dropped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # filter -> reason -> n
    repaired: Counter = field(default_factory=Counter)  # normalisation repairs on kept stories

    @property
    def dropped_total(self) -> int:
        return sum(sum(c.values()) for c in self.dropped.values())

    def as_dict(self) -> dict:
        return {"seen": self.seen, "kept": self.kept, "dropped": self.dropped_total,
                "kept_share": round(self.kept / self.seen, 4) if self.seen else None,
                "dropped_by": {name: dict(reasons) for name, reasons in self.dropped.items()},
                "repaired": dict(self.repaired)}


def pack_lemmatiser(pack: LanguagePack) -> Lemmatiser:
    """The pack's lemmatiser, for its language: ``filters.language`` when set (a pack copied under a
    new code keeps its language), else the pack code."""
    settings = pack.spec.filters
    return make_lemmatiser(settings.language or pack.code, settings.lemmatiser)


def story_filters(pack: LanguagePack) -> list[Filter]:
    """The per-story steps, cheap ones first, with the pack's thresholds."""
    settings = pack.spec.filters
    lemmatiser = pack_lemmatiser(pack)
    names = frozenset(n.lower() for n in pack.names)
    function_words = frozenset(w.lower() for w in pack.function_words) | names
    vocabulary = frozenset(e.lemma.lower() for e in pack.vocabulary) | function_words
    return [
        Normalise(story_labels=(pack.spec.instruct.story,)),
        Length(settings.min_words, settings.max_words, settings.min_bytes, settings.max_bytes),
        Alphabet(pack.spec.alphabet, pack.spec.punctuation, settings.max_foreign_char_fraction),
        MetaText(tuple(settings.meta_phrases)),
        Repetition(settings.max_duplicate_lines, settings.max_top_2gram, settings.max_duplicate_5grams),
        Language((settings.language or pack.code) if settings.language_id else None, settings.min_language_probability),
        DictionaryCoverage(lemmatiser, settings.min_dictionary_coverage, names),
        Vocabulary(vocabulary, function_words, lemmatiser, settings.min_vocabulary_adherence, settings.compounds),
    ]


def duplicate_filters(pack: LanguagePack) -> list[Filter]:
    return [ExactDuplicate(), NearDuplicate(pack.spec.filters.near_duplicate_threshold)]


def run_story_filters(filters: list[Filter], records: list[StoryRecord]) -> list[tuple[Story, str, Verdict | None]]:
    """One chunk through the per-story filters: (story, failing filter name or "", its verdict)."""
    stories = [Story.of(r) for r in records]
    outcome: list[tuple[Story, str, Verdict | None]] = [(s, "", None) for s in stories]
    alive = list(range(len(stories)))
    for step in filters:
        step.prepare([stories[i] for i in alive])
        still = []
        for i in alive:
            verdict = step.check(stories[i])
            if verdict.keep:
                still.append(i)
            else:
                outcome[i] = (stories[i], step.name, verdict)
        alive = still
    return outcome


_worker_filters: list[Filter] | None = None


def _start_worker(pack_directory: str) -> None:
    global _worker_filters
    _worker_filters = story_filters(load_pack(pack_directory))


def _work(records: list[StoryRecord]):
    return run_story_filters(_worker_filters, records)


def _chunks(records: Iterable[StoryRecord], size: int) -> Iterator[list[StoryRecord]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


class FilterPipeline:
    def __init__(self, pack: LanguagePack) -> None:
        self.pack = pack
        self.filters = story_filters(pack)
        self.duplicates = duplicate_filters(pack)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters + self.duplicates]

    def run(self, records: Iterable[StoryRecord], on_kept: Callable[[StoryRecord], None],
            on_rejected: Callable[[Rejection], None], workers: int = 1,
            on_progress: Callable[[int], None] | None = None) -> FilterStats:
        stats = FilterStats()
        chunks = _chunks(records, CHUNK)
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, _start_worker, (str(self.pack.directory),)) as pool:
                for outcome in pool.imap(_work, chunks):
                    self._finish(outcome, stats, on_kept, on_rejected, on_progress)
        else:
            for chunk in chunks:
                self._finish(run_story_filters(self.filters, chunk), stats, on_kept, on_rejected, on_progress)
        return stats

    def _finish(self, outcome, stats: FilterStats, on_kept, on_rejected, on_progress) -> None:
        for story, failed, verdict in outcome:
            stats.seen += 1
            if not failed:
                for step in self.duplicates:
                    verdict = step.check(story)
                    if not verdict.keep:
                        failed = step.name
                        break
            if failed:
                stats.dropped[failed][verdict.reason] += 1
                on_rejected(Rejection(story.finished_record(), failed, verdict.reason, verdict.detail))
            else:
                stats.kept += 1
                stats.repaired.update(story.notes.get("normalised", []))
                on_kept(story.finished_record())
        if on_progress:
            on_progress(len(outcome))

    def explain(self, text: str) -> list[tuple[str, Verdict]]:
        """Every filter's verdict and score for one text (duplicates judged against nothing)."""
        story = Story.of(StoryRecord(id="explain", lang=self.pack.code, text=text, source="dataset", mode="import"))
        verdicts = []
        for step in self.filters + duplicate_filters(self.pack):  # fresh: judged against no other story
            step.prepare([story])
            verdicts.append((step.name, step.check(story)))
        return verdicts
