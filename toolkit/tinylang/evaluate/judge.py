"""The LLM judge: the pack's grader prompt for one completion, and a parser that never invents a score.

The TinyStories protocol: the judge sees the story beginning and the model's continuation, split
by ***, and grades grammar, creativity, consistency and plot from 1 to 10, plus an age group. The
story is fenced (<story> ... </story>) and the fence and the split marker are removed from the texts
first, so a completion cannot close the fence, fake the split, or pass itself off as instructions.

The answer should be JSON. Parsing tries, in order: the whole answer as JSON, a fenced or embedded
JSON object, then "Grammar: 8/10"-style prose. Anything short of all four scores in range is
recorded as unparsed, with the raw text, and never counted.

    judgement = parse_judgement('{"grammar": 8, "creativity": 6, "consistency": 7, "plot": 5, "age_group": "B"}')
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..langpack import LanguagePack

CRITERIA = ("grammar", "creativity", "consistency", "plot")
OPTIONAL_CRITERIA = ("instruction_following",)
AGE_GROUPS = ("A", "B", "C", "D", "E", "F")
_FENCE_TOKENS = re.compile(r"</?\s*(?:story|instructions)\s*>|\*\*\*", re.IGNORECASE)
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL | re.IGNORECASE)


def defuse(text: str) -> str:
    """Remove what could close the fence or fake the split marker."""
    return _FENCE_TOKENS.sub(" ", text)


def grader_prompt(pack: LanguagePack, beginning: str, completion: str, instructions: str | None = None) -> str:
    """The pack's grader prompt; with ``instructions`` (an instruct model's request) its instruct variant,
    which also asks for instruction_following."""
    if instructions is None:
        return pack.spec.grading.prompt.format(beginning=defuse(beginning), completion=defuse(completion))
    return pack.spec.grading.instruct_prompt.format(instructions=defuse(instructions), beginning=defuse(beginning),
                                                    completion=defuse(completion))


@dataclass
class Judgement:
    parsed: bool
    scores: dict[str, float] = field(default_factory=dict)
    age_group: str | None = None
    comment: str = ""
    error: str = ""
    raw: str = ""

    def as_row(self) -> dict:
        row = {f"judge_{name}": self.scores.get(name) for name in CRITERIA + OPTIONAL_CRITERIA}
        return row | {"judge_age_group": self.age_group, "judge_parsed": self.parsed, "judge_error": self.error,
                      "judge_comment": self.comment, "judge_raw": self.raw}


def _balanced_objects(text: str):
    """Every {...} substring with balanced braces, outermost first."""
    for start, char in enumerate(text):
        if char != "{":
            continue
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                yield text[start : end + 1]
                break


def _json_candidates(text: str):
    yield text.strip()
    yield from _JSON_BLOCK.findall(text)
    yield from _balanced_objects(text)


def _from_json(text: str) -> dict | None:
    for candidate in _json_candidates(text):
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return {str(k).strip().lower().replace(" ", "_").replace("-", "_"): v for k, v in value.items()}
    return None


def _from_prose(text: str) -> dict:
    found: dict = {}
    for name in CRITERIA + OPTIONAL_CRITERIA:
        pattern = name.replace("_", r"[\s_-]*")
        match = re.search(rf"\b{pattern}\b[^0-9\n]{{0,20}}?(\d+(?:[.,]\d+)?)(?:\s*/\s*10)?", text, re.IGNORECASE)
        if match:
            found[name] = match.group(1).replace(",", ".")
    age = re.search(r"\bage[\s_-]*group\b[^A-Za-z\n]{0,20}\(?([A-F])\b", text, re.IGNORECASE)
    if age:
        found["age_group"] = age.group(1)
    return found


def _score(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 10 else None


def parse_judgement(raw: str | None) -> Judgement:
    text = raw or ""
    if not text.strip():
        return Judgement(False, error="empty answer", raw=text)
    data = _from_json(text)
    source = "json"
    if data is None:
        data, source = _from_prose(text), "prose"
    scores, problems = {}, []
    for name in CRITERIA:
        score = _score(data.get(name))
        if score is None:
            problems.append(f"{name} {'missing' if name not in data else f'not a score from 1 to 10: {data[name]!r}'}")
        else:
            scores[name] = score
    for name in OPTIONAL_CRITERIA:
        if _score(data.get(name)) is not None:
            scores[name] = _score(data[name])
    age = str(data.get("age_group", "")).strip().upper()[:1] or None
    age = age if age in AGE_GROUPS else None
    comment = str(data.get("comment", ""))[:500]
    if problems:
        return Judgement(False, error=f"unparsed ({source}): " + "; ".join(problems), raw=text)
    return Judgement(True, scores, age, comment, raw=text)


async def judge_completion(client, pack: LanguagePack, beginning: str, completion: str, key: str,
                           instructions: str | None = None) -> tuple[Judgement, dict]:
    """Ask the judge through the one LLM layer (retries, cache, cost); returns the judgement and usage."""
    prompt = grader_prompt(pack, beginning, completion, instructions)
    answer = await client.complete([{"role": "user", "content": prompt}], cache_key=key)
    usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens, "cached": answer.cached}
    return parse_judgement(answer.text), usage
