"""Export a run for sharing: ``model.safetensors``, ``config.json`` and a model card (README.md).

Safetensors holds only tensors (no pickled code), so an export is safe to download and load; the
config carries the model shape and the id scheme, the card says how the model was trained. The
output folder must be new, empty or an earlier export: nothing else in it is overwritten.

    export_run("runs/fi-tiny", "exports/fi-tiny")
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from . import __version__
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_weights, with_data_found
from .run_corpus import pack_holding, run_corpus_stats
from .model import BOS_ID, EOS_ID, PAD_ID, Megabyte, MegabyteConfig
from .outputs import make_folder, output_folder_problem
from .recipe import recipe_from_dict, recipe_to_yaml


EXPORT_FILES = ("model.safetensors", "config.json", "recipe.yaml", "README.md")


class ExportError(CheckpointError):
    """A run that cannot be exported, or an output folder that must not be written into."""


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    problem = run_problem(run_dir) or output_problem(out_dir)
    if problem:
        raise ExportError(problem)
    checkpoint = run_dir / CHECKPOINT_NAME if run_dir.is_dir() else run_dir
    payload = load_checkpoint(checkpoint)
    recipe = recipe_from_dict(payload["recipe"], source=str(run_dir))
    found = with_data_found(recipe, checkpoint.parent, payload.get("workdir"), payload.get("data_kind"))
    corpus = run_corpus_stats(found)
    if corpus is None and (lang := pack_holding(found.data.path)):
        corpus = {"lang": lang}  # a text inside a language pack (fi-tiny's seed stories)
    config = MegabyteConfig.model_validate(payload["model_config"])
    model = Megabyte(config)
    load_weights(model, payload["model"], f"{run_dir}: the weights do not fit the stored model config")
    problem = make_folder(out_dir, "OUT_DIR")
    if problem:
        raise ExportError(problem)
    training = {
        "steps": payload["step"],
        "bytes_seen": payload["bytes_seen"],
        "train_loss": payload.get("train_loss"),
        "val_bpb": payload.get("val_bpb"),
        "data": recipe.data.path,
        "text_column": recipe.data.text_column,  # instruct for instruct models: serve's chat format
        # the corpus's language and sources, so that commands need no --lang (the corpus stays behind)
        "corpus": {"lang": corpus["lang"], "corpus": {"sources": corpus.get("corpus", {}).get("sources", {})}}
        if corpus and "lang" in corpus else None,
    }
    meta = {
        "architecture": "megabyte",
        "tinylang_version": __version__,
        "model": config.model_dump(),
        "special_ids": {"bos": BOS_ID, "eos": EOS_ID, "pad": PAD_ID},
        "parameters": model.num_parameters(),
        "training": training,
    }
    # config.json first: it marks the folder as an export, so an export cut short is finished by the next one
    (out_dir / "config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    weights = out_dir / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    # safetensors writes 0600: give the weights the mode config.json got, or no one else could read them
    weights.chmod((out_dir / "config.json").stat().st_mode & 0o777)
    (out_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe), encoding="utf-8")
    (out_dir / "README.md").write_text(model_card(meta, Path(recipe.output.dir).name, out_dir), encoding="utf-8")
    return out_dir


def run_problem(run_dir: Path) -> str | None:
    """Why ``run_dir`` is not something to export, in words a user can act on; None when it may be."""
    if run_dir.is_dir() and (run_dir / "model.safetensors").is_file():
        return (f"{run_dir} is already an export (model.safetensors, config.json); export takes a run directory "
                "(a recipe's output.dir) or its checkpoint.pt, and the export folder can be shared as it is")
    if not run_dir.exists() or (run_dir.is_dir() and not (run_dir / CHECKPOINT_NAME).is_file()):
        return (f"{run_dir}: no checkpoint here; export takes a run directory (a recipe's output.dir, with the "
                f"{CHECKPOINT_NAME} tinylang train writes) or a checkpoint file")
    return None


def output_problem(out_dir: Path) -> str | None:
    """Why ``out_dir`` must not receive an export (it would overwrite a README.md, config.json ...)."""
    return output_folder_problem(out_dir, "export", _own_output, option="OUT_DIR")


def _own_output(folder: Path) -> bool:
    """An earlier export, finished or cut short: its config.json (written first) names the architecture."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architecture") == "megabyte"
    except (OSError, ValueError, AttributeError):
        return False


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def model_card(meta: dict, run_name: str, folder: Path) -> str:
    m, t = meta["model"], meta["training"]
    bpb = "not evaluated" if t["val_bpb"] is None else f"{t['val_bpb']:.4f}"
    return f"""# {run_name}

A byte-level MEGABYTE language model trained with tinylang {meta['tinylang_version']}.

| | |
|---|---|
| parameters | {meta['parameters']:,} |
| patch size | {m['patch_size']} bytes |
| context | {m['context_bytes']} bytes |
| global model | {_count(m['global_layers'], 'layer')}, width {m['global_dim']}, {_count(m['global_heads'], 'head')} |
| local model | {_count(m['local_layers'], 'layer')}, width {m['local_dim']}, {_count(m['local_heads'], 'head')} |
| training data | `{t['data']}` |
| training | {t['steps']:,} steps, {t['bytes_seen']:,} bytes |
| validation bits per byte | {bpb} |

Ids 0-255 are bytes; {meta['special_ids']['bos']} begins a story, {meta['special_ids']['eos']} ends it,
{meta['special_ids']['pad']} is padding and never predicted. `recipe.yaml` is the full training recipe.

## Use

```bash
tinylang generate {folder} --prompt "Olipa kerran" --max-bytes 400
```

```python
from tinylang.checkpoint import load_model
from tinylang.generate import complete_story

model, _ = load_model("{folder}")
print(complete_story(model, "Olipa kerran", max_bytes=400, seed=0))
```

## Limits

A small model trained on a restricted-vocabulary story corpus: it writes short, simple stories
and nothing else. Its text is generated, not checked, and can be wrong or odd.
"""
