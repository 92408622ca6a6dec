"""Whose folder is this? ``build-corpus`` writes only into folders that are new, empty or its own,
and a later build of its own folder must plan the same stories (or more of them).

A folder is build-corpus's own when its ``raw/`` holds build-corpus's mark or shards
(``store.is_build_folder``; a ``raw/`` of someone's scraped pages is not enough). Its plan (language, mode, seed or source, number
of stories, format) is stored in ``stats.json``, so a rerun with another ``--seed`` or a smaller
``--n`` is refused with a message naming the option and the folder's value, instead of quietly
swapping or shrinking the splits. The functions return the problem as one line (or None); the
build turns it into a ``BuildError``.

    problem = folder_problem(out) or plan_conflict(out, stored_plan(out), current_plan(pack, options, len(requests)))
"""

from __future__ import annotations

import os
from pathlib import Path

from ..outputs import output_folder_problem
from ..records import StoryRecord
from .store import is_build_folder, raw_shards, read_stats

# Options that decide which stories a folder holds, with the flag that sets each.
PLAN_FLAGS = {"lang": "--lang", "mode": "--mode", "seed": "--seed", "source": "--source",
              "source_split": "--source-split", "text_column": "--text-column"}


def folder_problem(out: Path) -> str | None:
    """Why build-corpus must not write into ``out`` (its own folders hold its mark or shards in ``raw/``)."""
    return output_folder_problem(out, "build-corpus", is_build_folder)


def current_plan(lang: str, options, planned_stories: int) -> dict:
    """What this build plans: the options that pick its stories, how many, and the format."""
    plan = {"lang": lang, "mode": options.mode, "n": planned_stories, "format": options.format}
    if options.mode == "generate":
        plan["seed"] = options.seed
    else:
        plan |= {"source": options.source, "source_split": options.source_split, "text_column": options.text_column}
    return plan


def stored_plan(out: Path) -> dict:
    """What an earlier build of ``out`` planned: the plan in ``stats.json``, or, for folders built
    before the plan was stored or whose first build was interrupted, what stats.json and the first
    raw record say. Empty for a new folder."""
    stats = read_stats(out)
    if stats.get("plan"):
        return dict(stats["plan"])
    plan = {key: stats[name] for key, name in (("lang", "lang"), ("mode", "mode"), ("format", "format"),
                                                 ("n", "requested"), ("source", "source")) if stats.get(name) is not None}
    first = _first_raw_record(out)
    if first is not None:
        plan.setdefault("lang", first.lang)
        plan.setdefault("mode", first.mode)
        if first.mode == "generate" and "seed" in first.params:
            plan["seed"] = first.params["seed"]
        if first.instruct is not None:
            plan.setdefault("format", "instruct")
    return plan


def _plan_value(key: str, value):
    """A plan value as compared between builds: ./stories.jsonl and stories.jsonl are one source."""
    return os.path.normpath(value) if key == "source" and isinstance(value, str) else value


def plan_conflict(out: Path, stored: dict, current: dict) -> str | None:
    """Why this build must not run on ``out``: it would plan other stories than the folder holds, or
    fewer (which would shrink the splits). None when it resumes or extends the folder."""
    for key, flag in PLAN_FLAGS.items():
        if key in stored and key in current and _plan_value(key, stored[key]) != _plan_value(key, current[key]):
            return (f"{out} was built with {flag} {stored[key]}, and this build has {flag} {current[key]}, which "
                    f"plans other stories: rerun with {flag} {stored[key]} to resume or extend it, or choose another --out")
    if stored.get("n") and current["n"] < stored["n"]:
        return (f"{out} holds a corpus of {stored['n']:,} planned stories; --n {current['n']} would shrink its splits: "
                f"pass --n {stored['n']} or more to resume or extend it, or choose another --out for a smaller corpus")
    return None


def _first_raw_record(out: Path) -> StoryRecord | None:
    for shard in raw_shards(out):
        with shard.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        return StoryRecord.model_validate_json(line)
                    except ValueError:
                        return None
    return None
