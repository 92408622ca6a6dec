"""Checkpoints: written atomically, read with clear errors, and turned back into a model.

A checkpoint holds everything needed to continue a run exactly (model, optimizer, loss scaler, step,
RNG and data-sampler state) plus the recipe it was trained with. ``load_model`` also reads exported
folders (safetensors + config.json), so every command that takes a run takes an export too.

    model, recipe = load_model("runs/fi-tiny")
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import Megabyte, MegabyteConfig
from .recipe import Recipe, recipe_from_dict

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "tinylang-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the recipe."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": _FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint, it is corrupt or truncated ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a tinylang checkpoint")
    return payload


def check_same_model(saved: dict[str, Any], config: MegabyteConfig, path: str | Path) -> None:
    """Refuse to resume into a different architecture, naming what differs."""
    current = config.model_dump()
    diffs = [f"model.{k}: checkpoint {saved.get(k)!r}, recipe {v!r}" for k, v in current.items() if saved.get(k) != v]
    if diffs:
        raise CheckpointError(f"{path}: the checkpoint was trained with another model configuration:\n  " + "\n  ".join(diffs))


def load_model(location: str | Path, device: str | torch.device = "cpu") -> tuple[Megabyte, Recipe | None]:
    """A model in eval mode from a run directory, a checkpoint file, or an exported folder."""
    location = Path(location)
    if not location.exists():
        raise CheckpointError(f"{location}: no such run folder, checkpoint or export")
    if location.is_dir() and ((location / "model.safetensors").is_file() or (location / "config.json").is_file()):
        return _load_export(location, device), None
    path = location / CHECKPOINT_NAME if location.is_dir() else location
    payload = load_checkpoint(path)
    recipe = with_data_found(recipe_from_dict(payload["recipe"], source=f"{path} (stored recipe)"), path.parent,
                             payload.get("workdir"), payload.get("data_kind"))
    model = Megabyte(recipe.model)
    load_weights(model, payload["model"], f"{path}: the weights do not fit the stored model config")
    return model.to(device).eval(), recipe


def load_weights(model: Megabyte, state: dict[str, torch.Tensor], problem: str) -> None:
    """``model.load_state_dict(state)``, or a CheckpointError of one short paragraph: PyTorch's own
    message lists every mismatched tensor, a page for a model whose width changed."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        shown = "\n  ".join(lines[:3]) + (f"\n  ... and {len(lines) - 3} more" if len(lines) > 3 else "")
        raise CheckpointError(f"{problem}:\n  {shown}") from None


def with_data_found(recipe: Recipe, run_dir: Path, workdir: str | None = None, data_kind: str | None = None) -> Recipe:
    """The stored recipe, with a relative ``data.path`` made absolute when it means another place from
    here than from where training ran. Checkpoints record that directory (``workdir``); for older
    ones the run shows it: the run folder ends with the recipe's relative ``output.dir``, so the
    training directory is what comes before it. Without this, evaluating ``/abs/project/runs/x`` from
    another directory lost the corpus (its validation split, its stats.json) or took ``data/corpus``
    for a Hugging Face dataset name. A local corpus found nowhere (a run copied to another machine)
    becomes its absolute path where training ran, so it fails as a missing folder, not after minutes
    of Hub retries."""
    data, output = Path(recipe.data.path).expanduser(), Path(recipe.output.dir)
    if data.is_absolute():
        return recipe
    if workdir is not None:
        found = Path(workdir) / data
    else:
        if output.is_absolute() or not output.parts:
            return recipe
        run_parts, out_parts = run_dir.resolve().parts, Path(os.path.normpath(output)).parts
        if run_parts[-len(out_parts):] != out_parts:
            return recipe
        found = Path(*run_parts[: -len(out_parts)]) / data
    local = data_kind in ("directory", "file")
    # the run's own corpus, even where the current directory holds another one under the same name
    if not found.exists() and not (local and workdir is not None and not data.exists()):
        return recipe
    if data.exists() and found.exists() and data.resolve() == found.resolve():
        return recipe
    return recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": str(found)})})


def _load_export(folder: Path, device: str | torch.device) -> Megabyte:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = MegabyteConfig.model_validate(json.loads((folder / "config.json").read_text())["model"])
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{folder}: config.json is missing or invalid ({error})") from None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}: an export without its weights (model.safetensors)")
    try:
        state = load_file(weights)
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{weights}: cannot read the weights, the file is corrupt or truncated ({error})") from None
    model = Megabyte(config)
    load_weights(model, state, f"{weights}: the weights do not fit config.json's model")
    return model.to(device).eval()
