"""The LLM judge: the pack's grader prompt for one completion, and a parser that never invents a score.

The TinyStories protocol: the judge sees the story beginning and the model's continuation, split
by ***, and grades grammar, creativity, consistency and plot from 1 to 10, plus an age group. The
story is fenced (<story> ... </story>) and the fence and the split marker are removed from the texts
first, so a completion cannot close the fence, fake the split, or pass itself off as instructions.

The answer should be JSON. Parsing tries, in order: the whole answer as JSON, a fenced or embedded
JSON object, then "Grammar: 8/10"-style prose. Scale expressions ("(1-10)", "1 to 10", "out of
10") are never read as scores; "6/10" and "6 out of 10" are 6. Anything short of all four scores
in range (a boolean is not a score) is recorded as unparsed, with the raw text, and never counted.
A request that fails every attempt is recorded as failed, with the reason, and never counted either.

    judgement = parse_judgement('{"grammar": 8, "creativity": 6, "consistency": 7, "plot": 5, "age_group": "B"}')
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..langpack import LanguagePack
from ..llm import LLMRequestFailed

CRITERIA = ("grammar", "creativity", "consistency", "plot")
OPTIONAL_CRITERIA = ("instruction_following",)  # required when grading an instruct model
AGE_GROUPS = ("A", "B", "C", "D", "E", "F")
FAILED_PREFIX = "judge request failed: "  # starts the error of a judgement whose request failed
_FENCE_TOKENS = re.compile(r"</?\s*(?:story|instructions)\s*>|\*\*\*", re.IGNORECASE)
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL | re.IGNORECASE)
_NUMBER = r"\d+(?:[.,]\d+)?"
_OUT_OF_TEN = r"\s*(?:/|\bout\s+of\b)\s*10\b"
# The scale, not a score: "1-10", "1 to 10", a bare "out of 10" or "/10".
_SCALE = rf"\b1\s*(?:-|\u2013|\u2014|\bto\b)\s*10\b|{_OUT_OF_TEN}"
_SCORE_TOKEN = re.compile(rf"(?P<scale>{_SCALE})|(?P<number>{_NUMBER})(?P<fraction>{_OUT_OF_TEN})?", re.IGNORECASE)
_SCORE_TEXT = re.compile(rf"\s*({_NUMBER})(?:{_OUT_OF_TEN})?\s*\.?\s*", re.IGNORECASE)


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
    failure: str = ""  # how the request failed every attempt (server_error, timeout, ...): no answer to parse

    @property
    def failed(self) -> bool:
        return bool(self.failure)

    def as_row(self) -> dict:
        row = {f"judge_{name}": self.scores.get(name) for name in CRITERIA + OPTIONAL_CRITERIA}
        return row | {"judge_age_group": self.age_group, "judge_parsed": self.parsed, "judge_failed": self.failed,
                      "judge_failure": self.failure or None, "judge_error": self.error, "judge_comment": self.comment,
                      "judge_raw": self.raw}


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
            return _flat_scores(value)
    return None


def _key(name) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _flat_scores(value: dict, depth: int = 0) -> dict:
    """Keys normalised, with what judges nest lifted to the top: ``{"scores": {"grammar": 8}}`` and
    ``{"grammar": {"score": 8, "reason": ...}}`` read as ``{"grammar": 8}``. A top-level key wins
    over a nested one of the same name."""
    flat = {_key(k): v for k, v in value.items() if not isinstance(v, dict)}
    for k, v in value.items():
        if not isinstance(v, dict) or depth > 1:
            continue
        inner = {_key(name): item for name, item in v.items()}
        if _key(k) in CRITERIA + OPTIONAL_CRITERIA and "score" in inner:
            flat.setdefault(_key(k), inner["score"])
        else:
            for name, item in _flat_scores(v, depth + 1).items():
                flat.setdefault(name, item)
    return flat


def _label(name: str) -> str:
    return r"\b" + name.replace("_", r"[\s_-]*") + r"\b"


_ANY_LABEL = re.compile("|".join(_label(name) for name in CRITERIA + OPTIONAL_CRITERIA + ("age_group",)),
                        re.IGNORECASE)


def _segment(text: str, start: int) -> str:
    """What follows a label, up to the end of its line or the next criterion's label, whichever comes
    first: a one-line "Grammar: 7. Creativity: 6/10" must not lend creativity's score to grammar."""
    rest = text[start:].split("\n", 1)[0]
    following = _ANY_LABEL.search(rest)
    return rest[: following.start()] if following else rest


def _ranked_numbers(segment: str):
    """(rank, number) for each number in ``segment`` that is not part of a scale expression. Rank 0: a
    fraction ("6/10", "6 out of 10"), the clearest way to give a score; 1: the first thing after the
    label ("Grammar (1-10): 6"); 2: any other number ("the 5 cases are wrong")."""
    for match in _SCORE_TOKEN.finditer(segment):
        if match.group("number") is None:
            continue
        before = _SCORE_TOKEN.sub(lambda m: "" if m.group("scale") else m.group(0), segment[: match.start()])
        rank = 0 if match.group("fraction") else 1 if not re.search(r"\w", before) else 2
        yield rank, match.group("number")


def _prose_score(text: str, name: str) -> str | None:
    """The score given for ``name``: the best-ranked number after any mention of it (the first of equals)."""
    candidates = [candidate for mention in re.finditer(_label(name), text, re.IGNORECASE)
                  for candidate in _ranked_numbers(_segment(text, mention.end()))]
    return min(candidates, key=lambda candidate: candidate[0])[1] if candidates else None


def _from_prose(text: str) -> dict:
    found: dict = {}
    for name in CRITERIA + OPTIONAL_CRITERIA:
        score = _prose_score(text, name)
        if score is not None:
            found[name] = score
    age = re.search(r"\bage[\s_-]*group\b[^A-Za-z\n]{0,20}\(?([A-F])\b", text, re.IGNORECASE)
    if age:
        found["age_group"] = age.group(1)
    return found


def _score(value) -> float | None:
    """A score from 1 to 10, or None. A boolean is not a score (``float(True)`` is 1.0), nor is a list;
    text may be a number, "6/10" or "6 out of 10"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        match = _SCORE_TEXT.fullmatch(value)
        if match is None:
            return None
        value = match.group(1).replace(",", ".")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float is out of range anyway
        return None
    return number if 1 <= number <= 10 else None


def _problem(name: str, data: dict) -> str:
    return f"{name} {'missing' if name not in data else f'not a score from 1 to 10: {repr(data[name])[:40]}'}"


def parse_judgement(raw: str | None, instruct: bool = False) -> Judgement:
    """The judge's answer read into scores, or unparsed with the reason. With ``instruct`` the answer
    must also grade instruction_following: without it the four scores still count, but the answer
    is marked (``error``) and that score counts as unparsed."""
    text = raw or ""
    if not text.strip():
        return Judgement(False, error="empty answer", raw=text)
    data = _from_json(text)
    source = "json"
    if data is None:
        data, source = _from_prose(text), "prose"
    scores = {name: _score(data.get(name)) for name in CRITERIA + OPTIONAL_CRITERIA}
    problems = [_problem(name, data) for name in CRITERIA if scores[name] is None]
    if problems:
        return Judgement(False, error=f"unparsed ({source}): " + "; ".join(problems), raw=text)
    missing = [_problem(name, data) for name in OPTIONAL_CRITERIA if instruct and scores[name] is None]
    age = str(data.get("age_group", "")).strip().upper()[:1] or None
    age = age if age in AGE_GROUPS else None
    comment = str(data.get("comment", ""))[:500]
    error = f"unparsed ({source}): " + "; ".join(missing) if missing else ""
    return Judgement(True, {k: v for k, v in scores.items() if v is not None}, age, comment, error, raw=text)


async def judge_completion(client, pack: LanguagePack, beginning: str, completion: str, key: str,
                           instructions: str | None = None) -> tuple[Judgement, dict]:
    """Ask the judge through the one LLM layer (retries, cache, cost); returns the judgement and usage.

    A request that fails every attempt (server errors, malformed or cut-off answers, timeouts, no
    connection) becomes a failed judgement with the reason: one bad request must not lose the whole
    evaluation. Fatal errors (bad key, unknown model, no quota) propagate: nothing else would succeed."""
    prompt = grader_prompt(pack, beginning, completion, instructions)
    try:
        answer = await client.complete([{"role": "user", "content": prompt}], cache_key=key)
    except LLMRequestFailed as error:
        return Judgement(False, error=FAILED_PREFIX + str(error), failure=error.kind), {"failure": error.kind}
    usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens, "cached": answer.cached}
    return parse_judgement(answer.text, instruct=instructions is not None), usage
