"""Training recipes: pydantic models for the YAML files in recipes/, loading, and dotted overrides.

A recipe is the whole description of a run, so a checkpoint stores the recipe it was trained with and
a run can be repeated from its ``recipe.yaml`` alone.

    recipe = load_recipe("recipes/fi-tiny.yaml", overrides=["train.max_steps=50"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .model import MegabyteConfig
from .model.config import no_booleans_for_numbers
from .seeds import SEED_MAX, SEED_MIN


class _Section(BaseModel):
    # a number where text belongs is text (--set eval.sample_prompt=123 reads 123 as a number)
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    _no_booleans = field_validator("*", mode="before")(no_booleans_for_numbers)


class DataConfig(_Section):
    path: str = Field(
        ...,
        description="Corpus directory (train/validation files), a folder whose file names say their split, "
        "a .txt file of stories separated by <|endoftext|>, a .jsonl or .parquet file, or a Hugging Face dataset name.",
    )
    text_column: str = Field("text", description="Column holding the story text in jsonl/parquet/HF data.")
    hf_config: str | None = Field(None, description="Configuration name of a Hugging Face dataset.")
    validation_fraction: float = Field(
        0.05, gt=0.0, lt=1.0, description="Share of stories held out when the source has no validation split."
    )
    cache_dir: str = Field("data/cache", description="Where encoded byte streams are cached (uint16 memmaps).")
    windows: Literal["random", "story"] = Field(
        "random",
        description="Where training windows start: random (any byte) or story (a story's first byte, so "
        "its opening, such as an instruct request, is always in view; use it for instruct fine-tuning).",
    )


class OptimConfig(_Section):
    lr: float = Field(3e-3, gt=0, description="Peak learning rate after warmup.")
    min_lr: float = Field(3e-4, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps from 0 to lr.")
    lr_decay_steps: int = Field(
        10_000,
        ge=1,
        description="Step at which the cosine decay reaches min_lr (as nanoGPT's lr_decay_iters). Kept "
        "apart from train.max_steps so that extending a run with --resume replays the same schedule.",
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices (not norms or biases).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this value; null: no clipping.")

    @model_validator(mode="after")
    def _check(self) -> "OptimConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class TrainConfig(_Section):
    batch_size: int = Field(16, ge=1, description="Sequences per micro-batch (per process under torchrun).")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step (per process).")
    global_batch_size: int | None = Field(
        None,
        ge=1,
        description="Sequences per optimizer step over all processes. When set, grad_accum_steps is derived as "
        "global_batch_size / (processes x batch_size), so one recipe trains alike on 1 GPU or 8.",
    )
    max_steps: int = Field(2000, ge=1, description="Optimizer steps in the whole run.")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this much training time (checkpointed).")
    max_bytes: int | None = Field(None, gt=0, description="Stop after this many training bytes.")
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="Seeds weights, data sampling and dropout.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: CUDA, then MPS, then CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast on CUDA GPUs and CPUs with native bf16 (AVX512-BF16/AMX), fp16 with "
        "loss scaling on older GPUs, else fp32.",
    )
    compile: bool = Field(False, description="Compile the model with torch.compile.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice).")
    cpu_workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="CPU training: threads that each run a slice of every micro-batch's rows, single-threaded "
        "(data parallelism over the cores in one process; 1: off, every operation uses all threads; at most "
        "train.batch_size). auto: one per torch thread on a CPU with 2 to 4 threads, in one process, without "
        "dropout or train.compile.",
    )
    log_every: int = Field(10, ge=1, description="Steps between lines in metrics.jsonl.")
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoints (also at the end and on Ctrl-C).")
    init_from: str | None = Field(
        None, description="Start from the weights of this run, checkpoint or export (fine-tuning); the optimizer starts fresh."
    )

    @field_validator("cpu_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        # one line, where the union's own errors are two that each describe half of the answer
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"{value!r} is not a number of threads: give a whole number >= 1, or auto")


class EvalConfig(_Section):
    every_steps: int = Field(200, ge=1, description="Steps between validation runs (also at the end).")
    batches: int = Field(8, ge=1, description="Validation batches (of train.batch_size windows, per process under torchrun) per evaluation.")
    samples: int = Field(2, ge=0, description="Stories generated at each evaluation.")
    sample_bytes: int = Field(300, ge=1, description="Length of each sample in bytes.")
    sample_prompt: str = Field("", description="Text the samples start from (after the begin-of-story id).")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature of the samples (0: greedy).")
    top_k: int | None = Field(40, ge=1, description="Sample from the k likeliest bytes; null: all.")


class OutputConfig(_Section):
    dir: str = Field(..., min_length=1,
                     description="Run directory: checkpoint.pt, metrics.jsonl, samples.jsonl, recipe.yaml.")


class Recipe(_Section):
    data: DataConfig
    model: MegabyteConfig
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key path."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping, where plain YAML silently keeps the last:
    a recipe with two ``max_steps`` would train for the one the reader did not look at."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _override_value(item: str, text: str) -> Any:
    """The value of ``key=text``, read as YAML (``3e-4``, ``true``, ``null``, ``[1, 2]``); text that
    only looks like YAML structure (``Hän sanoi: hei``) stays text."""
    text = text.strip()
    if not text:
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        if text[0] not in "[{\"'":
            return text
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError(f"override {item!r}: the value is not valid YAML ({problem}); "
                          "quote text that starts with a bracket or a quote") from None
    if isinstance(value, (dict, list)) and text[0] not in "[{":
        return text
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``3e-4``, ``true``, ``null``)."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value")
        dotted, value_text = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override {item!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = _override_value(item, value_text)
    return raw


def _format_errors(source: str, error: ValidationError, overrides: list[str]) -> str:
    """One line per problem; a value that came from ``--set`` says so, since the file may be fine."""
    set_by = {item.split("=", 1)[0].strip(): item for item in overrides}
    lines = [f"{source}: invalid recipe"]
    for e in error.errors():
        where = ".".join(str(part) for part in e["loc"]) or "(top level)"
        message = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        origin = next((f" (from --set {item})" for key, item in set_by.items()
                       if where == key or where.startswith(key + ".")), "")
        lines.append(f"  {where}: {message}{origin}")
    return "\n".join(lines)


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe", overrides: list[str] | None = None) -> Recipe:
    """``raw`` validated; ``overrides``, the ``--set`` items already applied to it, are named in errors."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as error:
        raise RecipeError(_format_errors(source, error, overrides or [])) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"{path}: a folder, not a recipe file (recipes are YAML files, e.g. recipes/fi-tiny.yaml)")
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (data, model, optim, train, eval, output)")
    return recipe_from_dict(apply_overrides(raw, overrides or []), source=str(path), overrides=overrides)


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
