"""What a build-corpus command line asks for (``BuildOptions``) and the checks that refuse one no
build could honour, before a source is read or a request sent: numbers no build can use, and options
this build would silently ignore (a paid generation where a translation was meant).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass
class BuildOptions:
    lang: str
    n: int = 1000
    mode: Literal["generate", "translate"] = "generate"
    backend: Literal["auto", "llm", "grammar"] = "auto"
    out: Path | None = None
    seed: int = 0
    format: Literal["plain", "instruct"] = "plain"
    source: str | None = None  # translate: HF dataset name or local .txt/.jsonl/.parquet/corpus dir
    source_split: str = "train"
    source_lang: str = "en"
    text_column: str = "text"
    model: str | None = None
    base_url: str | None = None
    concurrency: int = 8
    temperature: float = 1.0
    top_p: float | None = None
    max_tokens: int = 1024
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None
    cache: Path | None = None
    batch_api: bool = False
    poll_interval_s: float = 30.0
    dry_run: bool = False
    filter: bool = True  # run the pack's filter pipeline before writing the splits
    filter_workers: int = 1
    validation_fraction: float = 0.05
    expected_story_tokens: int = 600  # dry-run estimate of one answer

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("data") / f"{Path(self.lang).name}-{self.mode}"


# (option, flag, smallest value, whether the smallest value itself is allowed)
_NUMERIC_LIMITS = (
    ("n", "--n", 1, True), ("concurrency", "--concurrency", 1, True), ("max_tokens", "--max-tokens", 1, True),
    ("max_attempts", "--max-attempts", 1, True), ("timeout_s", "--timeout", 0, False),
    ("poll_interval_s", "--poll-interval", 0, False), ("backoff_s", "backoff_s", 0, True),
    ("temperature", "--temperature", 0, True), ("top_p", "top_p", 0, False),
    ("price_input_per_mtok", "--price-input", 0, True), ("price_output_per_mtok", "--price-output", 0, True),
    ("filter_workers", "--workers", 1, True), ("validation_fraction", "validation_fraction", 0, True),
)


# The most stories one build may plan. TinyStories has 2.1M; the plan of 10M requests already takes
# gigabytes of memory, and a mistyped --n 100000000000 would never finish planning.
MAX_STORIES = 10_000_000

# Options that only translation reads, with their flags and defaults: set in generate mode they would
# be silently ignored (a paid generation run instead of the translation that was meant).
_TRANSLATE_OPTIONS = (("source", "--source", None), ("source_split", "--source-split", "train"),
                      ("text_column", "--text-column", "text"), ("source_lang", "--source-lang", "en"))


def option_problem(options: BuildOptions) -> str | None:
    """Why ``options`` cannot make the build they describe, as one line; None when they can: numbers
    no build can use, or options that would be ignored."""
    return number_problem(options) or combination_problem(options)


def number_problem(options: BuildOptions) -> str | None:
    """Why the numbers of ``options`` cannot make a build (a timeout of -5 s fails every request after
    paying for the attempt; zero attempts asks nothing), as one line; None when they can."""
    for name, flag, smallest, inclusive in _NUMERIC_LIMITS:
        value = getattr(options, name)
        if value is None:
            continue
        if value < smallest or (value == smallest and not inclusive):
            bound = f"at least {smallest}" if inclusive else f"more than {smallest}"
            return f"{flag} must be {bound}, not {value:g}"
    if options.top_p is not None and options.top_p > 1:
        return f"top_p must be at most 1, not {options.top_p:g}"
    if options.validation_fraction >= 1:
        return f"validation_fraction must be less than 1, not {options.validation_fraction:g}"
    if options.n > MAX_STORIES:
        return (f"--n must be at most {MAX_STORIES:,} (TinyStories has 2.1M stories), not {options.n:,}: "
                "build a larger corpus in several folders")
    return None


def combination_problem(options: BuildOptions) -> str | None:
    """Options that this build would ignore, as one line (None when there are none): a build must not
    quietly do something else than what its command line says, least of all a paid one."""
    if options.mode != "translate":
        for name, flag, default in _TRANSLATE_OPTIONS:
            value = getattr(options, name)
            if value != default:
                return (f"{flag} is for --mode translate, and this build generates stories (--mode {options.mode}): "
                        f"add --mode translate to translate, or leave out {flag}")
    elif options.format == "instruct":
        return ("--format instruct needs --mode generate: the Instruct rendering lists the words and features a story "
                "was asked for, and a translation has none; leave out --format instruct")
    if options.backend == "grammar":
        ignored = [flag for flag, value in (("--model", options.model), ("--base-url", options.base_url),
                                            ("--batch-api", options.batch_api)) if value]
        if ignored:
            return (f"--backend grammar writes stories offline and would ignore {' and '.join(ignored)}: leave "
                    f"{'it' if len(ignored) == 1 else 'them'} out, or use --backend llm")
    elif options.batch_api and resolve_backend(options) == "grammar":
        return ("--batch-api needs an LLM, and none is configured (this build would use the offline story grammar): "
                "pass --model with OPENAI_API_KEY set, or --base-url")
    return None


def endpoint_configured(options: BuildOptions) -> bool:
    return bool(options.base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))


def resolve_backend(options: BuildOptions) -> str:
    """``auto`` means: the LLM when an endpoint is configured or a ``--model`` is named (naming a model
    asks for it; without an endpoint the build refuses rather than write grammar stories instead),
    the offline story grammar otherwise."""
    if options.backend != "auto":
        return options.backend
    return "llm" if endpoint_configured(options) or options.model else "grammar"
