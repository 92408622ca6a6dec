"""What to ask for: the TinyStories request plan, reproducible from the seed alone.

Story ``i`` of a plan is the same whatever ``n`` is and however often the build was interrupted, so
a resumed or extended build asks for exactly the stories it still lacks.

    requests = plan_generation(pack, n=1000, seed=0, words=pack_words(pack))
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from ..langpack import FEATURES, LanguagePack
from ..records import StoryRecord
from ..sources import SourceError, iter_source_rows

MAX_FEATURES = 3


@dataclass(frozen=True)
class StoryRequest:
    id: str
    words: dict[str, str] = field(default_factory=dict)  # noun / verb / adjective
    features: tuple[str, ...] = ()
    source_id: str | None = None
    source_text: str | None = None


def pack_words(pack: LanguagePack) -> dict[str, list[str]]:
    """The restricted vocabulary by role, as the LLM prompt samples it."""
    return {"noun": pack.words("noun"), "verb": pack.words("verb"), "adjective": pack.words("adj")}


def grammar_words(pack: LanguagePack) -> dict[str, list[str]]:
    """Only words the story grammar has forms for."""
    grammar = pack.grammar
    return {"noun": grammar.words("noun"), "verb": grammar.words("verb"), "adjective": grammar.words("adj")}


WORD_ROLES = ("noun", "verb", "adjective")  # a request's words, in the order prompts and instruct headers list them


def sample_request(index: int, lang: str, seed: int, words: dict[str, list[str]]) -> StoryRequest:
    """One noun, one verb, one adjective and 0-3 features, seeded by (seed, index)."""
    rng = random.Random(f"{seed}:{index}")
    chosen = {role: rng.choice(words[role]) for role in WORD_ROLES}
    picked = set(rng.sample(FEATURES, rng.randint(0, MAX_FEATURES)))
    return StoryRequest(id=f"{lang}-{seed}-{index:07d}", words=chosen, features=tuple(f for f in FEATURES if f in picked))


def plan_generation(pack: LanguagePack, n: int, seed: int, words: dict[str, list[str]]) -> list[StoryRequest]:
    for role in WORD_ROLES:
        if not words.get(role):
            raise ValueError(f"the {pack.code} pack has no {role}s to sample from")
    return [sample_request(i, pack.code, seed, words) for i in range(n)]


def plan_translation(source: str, n: int, split: str = "train", text_column: str = "text") -> list[StoryRequest]:
    """The first ``n`` stories of the source; each keeps the source's id. A source whose ids repeat
    among them is refused (SourceError), naming the ids and their rows: each translation is stored
    under its id, so a repeated id would be paid for twice and one of its translations lost."""
    requests: list[StoryRequest] = []
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, (source_id, text) in enumerate(iter_source_rows(source, split, text_column), 1):
        if not text or not text.strip():  # no story in this row: nothing to translate
            continue
        rows_of[source_id].append(row)
        requests.append(StoryRequest(id=source_id, source_id=source_id, source_text=text.strip()))
        if len(requests) >= n:
            break
    repeated = {story_id: rows for story_id, rows in rows_of.items() if len(rows) > 1}
    if repeated:
        raise SourceError(repeated_ids_message(source, split, repeated))
    return requests


def repeated_ids_message(source: str, split: str, repeated: dict[str, list[int]], shown: int = 5) -> str:
    """One line naming the repeated ids and their rows (counted from 1 among the rows of the split read)."""
    listed = "; ".join(f"{story_id!r} in rows {', '.join(map(str, rows))}"
                       for story_id, rows in list(repeated.items())[:shown])
    more = f"; and {len(repeated) - shown:,} more" if len(repeated) > shown else ""
    count = f"{len(repeated):,} ids appear" if len(repeated) > 1 else "1 id appears"
    return (f"{source} ({split}): {count} more than once among the stories to translate ({listed}{more}); a "
            "translation is stored under its source's id, so every repeat would be paid for and then lost: make the "
            "ids unique, or drop the id column to number the rows")


def with_instruct(pack: LanguagePack, record: StoryRecord) -> StoryRecord:
    """The record with its TinyStories-Instruct rendering, derived from its words, features and text
    (so a plain corpus can become an instruct one without asking again). Translations have no words
    and get none."""
    if record.instruct is not None or not record.words:
        return record
    words = [record.words[r] for r in WORD_ROLES if r in record.words]  # a record read back may have sorted keys
    instruct = pack.instruct_text(words + [w for r, w in record.words.items() if r not in WORD_ROLES],
                                  list(record.features), record.text)
    return record.model_copy(update={"instruct": instruct})
