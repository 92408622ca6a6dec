"""Training: metrics, exact resume, budgets, clear refusals, and Ctrl-C that saves."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tinylang.checkpoint import CheckpointError, load_checkpoint, load_model
from tinylang.recipe import OptimConfig, RecipeError, load_recipe, recipe_from_dict
from tinylang.train import TrainError, learning_rate, train


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_metrics_samples_recipe_and_checkpoint(recipe_file):
    recipe = load_recipe(recipe_file)
    result = train(recipe)
    run = Path(recipe.output.dir)
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all({"step", "train_loss", "lr", "bytes", "bytes_per_s"} <= r.keys() for r in rows)
    assert [r["step"] for r in rows if "val_bpb" in r] == [4, 8, 12]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.step == 12 and result.stopped_by == "max_steps"
    assert math.isclose(result.val_bpb, rows[-1]["val_bpb"], rel_tol=1e-5)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [4, 8, 12] and all(s["text"].startswith("Tarina") for s in samples)
    assert load_recipe(run / "recipe.yaml") == recipe
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["step"] == 12 and payload["recipe"]["output"]["dir"] == recipe.output.dir
    model, stored = load_model(run)
    assert stored == recipe and not model.training


def test_resume_matches_an_uninterrupted_run(recipe_file, tmp_path):
    """Stopped at step 6 and resumed to 12 logs the same losses as 12 steps in one go."""
    split = tmp_path / "split"
    train(load_recipe(recipe_file, [f"output.dir={split}", "train.max_steps=6"]))
    train(load_recipe(recipe_file, [f"output.dir={split}", "train.max_steps=12"]), resume=True)
    whole = tmp_path / "whole"
    train(load_recipe(recipe_file, [f"output.dir={whole}"]))
    a, b = metrics(split), metrics(whole)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    # The split run also evaluated at its end (step 6); the scheduled evaluations agree exactly.
    assert [r["val_bpb"] for r in a if r["step"] in (4, 8, 12)] == [r["val_bpb"] for r in b if "val_bpb" in r]


def test_refuses_to_overwrite_a_run(recipe_file):
    recipe = load_recipe(recipe_file, ["train.max_steps=2"])
    train(recipe)
    with pytest.raises(TrainError, match="--resume"):
        train(recipe)


def test_resume_refuses_another_model_shape(recipe_file):
    train(load_recipe(recipe_file, ["train.max_steps=2"]))
    other = load_recipe(recipe_file, ["train.max_steps=4", "model.local_layers=1"])
    with pytest.raises(CheckpointError, match="model.local_layers: checkpoint 2, recipe 1"):
        train(other, resume=True)


def test_resume_refuses_to_rewind_and_keeps_the_stored_recipe(recipe_file):
    recipe = load_recipe(recipe_file, ["train.max_steps=4"])
    train(recipe)
    stored = (Path(recipe.output.dir) / "recipe.yaml").read_text()
    with pytest.raises(TrainError, match="step 4, past train.max_steps=2"):
        train(load_recipe(recipe_file, ["train.max_steps=2"]), resume=True)
    assert (Path(recipe.output.dir) / "recipe.yaml").read_text() == stored


def test_an_empty_output_dir_is_refused(recipe_file):
    with pytest.raises(RecipeError, match="output.dir"):
        load_recipe(recipe_file, ["output.dir="])


def test_corrupt_checkpoint_is_reported(recipe_file):
    recipe = load_recipe(recipe_file, ["train.max_steps=2"])
    train(recipe)
    ckpt = Path(recipe.output.dir) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(load_recipe(recipe_file, ["train.max_steps=4"]), resume=True)


def test_byte_and_time_budgets(recipe_file, tmp_path):
    by_bytes = train(load_recipe(recipe_file, [f"output.dir={tmp_path / 'b'}", "train.max_bytes=600"]))
    assert by_bytes.stopped_by == "max_bytes" and by_bytes.step == 3  # 4 x 64 = 256 bytes per step
    by_time = train(
        load_recipe(recipe_file, [f"output.dir={tmp_path / 't'}", "train.max_minutes=0.0001", "train.max_steps=1000"])
    )
    assert by_time.stopped_by == "max_minutes" and by_time.step < 1000
    assert load_checkpoint(tmp_path / "t" / "checkpoint.pt")["step"] == by_time.step
    # resumed with the time already spent: no step runs, and the output says which key to change
    out = io.StringIO()
    again = train(load_recipe(recipe_file, [f"output.dir={tmp_path / 't'}", "train.max_minutes=0.0001",
                                            "train.max_steps=1000"]), resume=True, console=Console(file=out, width=300))
    assert again.step == by_time.step and again.stopped_by == "max_minutes"
    assert "train.max_minutes=0.0001 ended the run before train.max_steps=1,000" in out.getvalue()
    assert "--set train.max_minutes=null" in out.getvalue()


def test_gradient_accumulation_equals_a_bigger_batch_in_bytes(recipe_file, tmp_path):
    result = train(load_recipe(recipe_file, [f"output.dir={tmp_path}/acc", "train.grad_accum_steps=2", "train.max_steps=3"]))
    assert result.bytes_seen == 3 * 2 * 4 * 64


def test_learning_rate_schedule():
    optim = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10, lr_decay_steps=110)
    assert learning_rate(5, optim) == pytest.approx(0.5)
    assert learning_rate(10, optim) == pytest.approx(1.0)
    assert learning_rate(60, optim) == pytest.approx(0.55)
    assert learning_rate(110, optim) == pytest.approx(0.1)
    assert learning_rate(500, optim) == pytest.approx(0.1)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(recipe_file, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "tinylang", "train", str(recipe_file), "--set", "train.max_steps=100000",
               "--set", "train.checkpoint_every=100000", "--set", "eval.every_steps=100000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=os.environ | {"COLUMNS": "120"})
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() or len(metrics(run)) < 3:
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Continue with --resume" in output and "Traceback" not in output
    stopped = load_checkpoint(run / "checkpoint.pt")["step"]
    assert stopped >= 3 and metrics(run)[-1]["step"] == stopped
    result = train(load_recipe(recipe_file, [f"train.max_steps={stopped + 2}"]), resume=True)
    assert result.step == stopped + 2
    assert [r["step"] for r in metrics(run)][-2:] == [stopped + 1, stopped + 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda_in_bf16(recipe_file):
    result = train(load_recipe(recipe_file, ["train.device=cuda", "train.precision=bf16"]))
    assert result.step == 12 and math.isfinite(result.train_loss)


def test_init_from_starts_from_the_pretrained_weights(recipe_file, tmp_path):
    from rich.console import Console

    pretrained = train(load_recipe(recipe_file), console=Console(quiet=True)).run_dir
    tuned = tmp_path / "tuned"
    overrides = [f"train.init_from={pretrained}", f"output.dir={tuned}", "train.max_steps=1", "optim.lr=1e-12",
                 "optim.min_lr=0", "optim.warmup_steps=0"]
    train(load_recipe(recipe_file, overrides), console=Console(quiet=True))
    before, _ = load_model(pretrained)
    after, _ = load_model(tuned)
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    longer = train(load_recipe(recipe_file, overrides + [f"output.dir={tmp_path / 'long'}", "model.context_bytes=128"]),
                   console=Console(quiet=True))
    assert longer.step == 1  # rotary positions: the same weights fine-tune at a longer context
    cache = tmp_path / "fresh-cache"
    with pytest.raises(TrainError, match="different model shape"):
        train(load_recipe(recipe_file, overrides + [f"output.dir={tmp_path / 'other'}", "model.global_dim=64",
                                                    f"data.cache_dir={cache}"]), console=Console(quiet=True))
    assert not cache.exists()  # refused before the corpus was encoded


def test_a_run_loaded_from_another_directory_finds_its_relative_corpus(tmp_path, monkeypatch):
    from tests.conftest import make_stories, recipe_dict, write_txt

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    write_txt(project / "data" / "stories.txt", make_stories(100))
    monkeypatch.chdir(project)
    raw = recipe_dict(Path("data/stories.txt"), Path("runs/r"), Path("cache")) | {"train": {"max_steps": 1}}
    train(recipe_from_dict(raw))
    monkeypatch.chdir(elsewhere)
    _, recipe = load_model(project / "runs" / "r")
    assert recipe.data.path == str(project.resolve() / "data" / "stories.txt")
    _, same = load_model(Path("../project/runs/r"))
    assert same.data.path == recipe.data.path
    write_txt((elsewhere / "data").mkdir() or elsewhere / "data" / "stories.txt", make_stories(5))  # another corpus
    assert load_model(project / "runs" / "r")[1].data.path == recipe.data.path  # the run's own, not this one
    monkeypatch.chdir(project)  # from the training directory the stored path is kept as it was
    assert load_model(Path("runs/r"))[1].data.path == "data/stories.txt"

    # an output.dir that climbs out of the training directory: only the recorded directory can tell
    (project / "work").mkdir()
    monkeypatch.chdir(project / "work")
    raw = recipe_dict(Path("../data/stories.txt"), Path("../runs/up"), Path("cache")) | {"train": {"max_steps": 1}}
    train(recipe_from_dict(raw))
    monkeypatch.chdir(elsewhere)
    assert Path(load_model(project / "runs" / "up")[1].data.path).resolve() == (project / "data" / "stories.txt").resolve()

    # a run copied to another machine: its local corpus is missing there, as an absolute path (not a Hub name)
    checkpoint = project / "runs" / "up" / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=False)
    assert payload["data_kind"] == "file"
    torch.save(payload | {"workdir": "/nowhere/project/work"}, checkpoint)
    assert load_model(checkpoint)[1].data.path == "/nowhere/project/work/../data/stories.txt"
    torch.save(payload | {"workdir": "/nowhere/project/work", "data_kind": "huggingface"}, checkpoint)
    assert load_model(checkpoint)[1].data.path == "../data/stories.txt"  # a Hub name stays a name

    # checkpoints from before the directory was recorded: the run folder's path still tells
    payload = torch.load(project / "runs" / "r" / "checkpoint.pt", weights_only=False)
    del payload["workdir"]
    torch.save(payload, project / "runs" / "r" / "checkpoint.pt")
    assert load_model(project / "runs" / "r")[1].data.path == recipe.data.path


def test_an_output_dir_that_cannot_be_made_fails_before_encoding(recipe_file, tmp_path):
    (tmp_path / "afile").write_text("mine")
    cache = tmp_path / "fresh-cache"
    with pytest.raises(TrainError, match="output.dir .*afile is a file, not a folder"):
        train(load_recipe(recipe_file, [f"output.dir={tmp_path / 'afile' / 'run'}", f"data.cache_dir={cache}"]))
    assert not cache.exists() and (tmp_path / "afile").read_text() == "mine"
    out = io.StringIO()  # --resume: the same error, without first announcing a new run
    with pytest.raises(TrainError, match="afile is a file, not a folder"):
        train(load_recipe(recipe_file, [f"output.dir={tmp_path / 'afile'}", f"data.cache_dir={cache}"]), resume=True,
              console=Console(file=out))
    assert "starting a new run" not in out.getvalue()


def test_a_split_shorter_than_one_window_is_said_and_counted(recipe_file, tmp_path):
    from io import StringIO

    from rich.console import Console

    from tests.conftest import make_stories, write_txt
    from tinylang.data import ByteData

    small = write_txt(tmp_path / "few.txt", make_stories(12))
    out = StringIO()
    recipe = load_recipe(recipe_file, [f"data.path={small}", "data.validation_fraction=0.3", "model.context_bytes=2048",
                                       f"output.dir={tmp_path / 'short'}", "train.max_steps=1"])
    train(recipe, console=Console(file=out, width=300))
    assert "less than one window of model.context_bytes=2,048" in " ".join(out.getvalue().split())
    split = len(ByteData.from_config(recipe.data).train)
    assert metrics(tmp_path / "short")[0]["bytes"] == 4 * (split - 1)  # batch 4 of the whole split, not 4 x 2048
