"""``tinylang export``: what it takes (a run, not an export) and where it writes (a new, empty or
earlier export folder, never over other files), each mistake one clear line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tinylang.checkpoint import save_checkpoint
from tinylang.cli import app
from tinylang.export import ExportError, export_run
from tinylang.model import Megabyte

from tests.conftest import recipe_dict, tiny_config

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with an untrained tiny checkpoint: export does not care how long it trained."""
    config = tiny_config(context_bytes=64)
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint.pt", {
        "recipe": recipe_dict(tmp_path / "stories.txt", run, tmp_path / "cache"),
        "model_config": config.model_dump(), "model": Megabyte(config).state_dict(), "step": 0, "bytes_seen": 0,
    })
    return run


def export_cli(*args: str):
    result = runner.invoke(app, ["export", *args])
    failed_cleanly = result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    return result, failed_cleanly, " ".join(result.output.split())


def test_an_out_that_is_a_file_is_one_clear_line(run_dir, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    _, failed_cleanly, text = export_cli(str(run_dir), str(a_file))
    assert failed_cleanly and "is a file, not a folder" in text and a_file.read_text() == "mine"


def test_a_folder_of_other_files_is_not_overwritten_but_an_earlier_export_is(run_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("our project readme")
    _, failed_cleanly, text = export_cli(str(run_dir), str(docs))
    assert failed_cleanly and "already holds files that export did not write (README.md)" in text
    assert (docs / "README.md").read_text() == "our project readme"
    with pytest.raises(ExportError, match="already holds files"):
        export_run(run_dir, run_dir)  # the run folder itself
    out = export_run(run_dir, tmp_path / "export")
    assert export_run(run_dir, out) == out  # exporting again refreshes it
    for name in ("model.safetensors", "recipe.yaml", "README.md"):  # one cut short after its config: finished now
        (out / name).unlink()
    assert export_run(run_dir, out) == out and (out / "model.safetensors").is_file()
    other = tmp_path / "other-model"  # someone else's weights and config: never overwritten
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"weights")
    (other / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ExportError, match="already holds files"):
        export_run(run_dir, other)
    assert (other / "model.safetensors").read_bytes() == b"weights"


def test_an_export_given_as_the_run_says_what_export_expects(run_dir, tmp_path):
    exported = export_run(run_dir, tmp_path / "export")
    _, failed_cleanly, text = export_cli(str(exported), str(tmp_path / "again"))
    assert failed_cleanly and "is already an export" in text and "checkpoint.pt: no checkpoint" not in text
    assert not (tmp_path / "again").exists()
    _, failed_cleanly, text = export_cli(str(tmp_path), str(tmp_path / "again"))
    assert failed_cleanly and "no checkpoint here; export takes a run directory" in text


def test_damaged_exports_are_one_line_each(run_dir, tmp_path):
    import json

    from tinylang.checkpoint import CheckpointError, load_model

    exported = export_run(run_dir, tmp_path / "export")
    mode = (exported / "model.safetensors").stat().st_mode & 0o777
    assert mode == (exported / "config.json").stat().st_mode & 0o777  # not safetensors' own 0600
    weights = (exported / "model.safetensors").read_bytes()
    (exported / "model.safetensors").write_bytes(weights[:500])
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read the weights, .*corrupt or truncated"):
        load_model(exported)
    (exported / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"an export without its weights \(model.safetensors\)"):
        load_model(exported)
    (exported / "model.safetensors").write_bytes(weights)
    config = json.loads((exported / "config.json").read_text())
    config["model"]["local_dim"] *= 2
    (exported / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit config.json's model") as error:
        load_model(exported)
    assert len(str(error.value).splitlines()) <= 5  # three tensors named, then a count; not a page
    with pytest.raises(CheckpointError, match="no such run folder, checkpoint or export"):
        load_model(tmp_path / "missing")



def test_the_model_card_counts_in_words_that_agree(tmp_path):
    from tinylang.export import model_card

    model = tiny_config(context_bytes=64).model_dump() | {"global_layers": 1, "global_heads": 1, "local_layers": 3}
    meta = {"model": model, "parameters": 1000, "tinylang_version": "0", "special_ids": {"bos": 256, "eos": 257, "pad": 258},
            "training": {"val_bpb": None, "steps": 1,
            "bytes_seen": 64, "train_loss": None, "data": "x", "text_column": "text", "corpus": None}}
    card = model_card(meta, "run", tmp_path)
    assert "| global model | 1 layer, width" in card and "1 head |" in card
    assert f"| local model | 3 layers, width {model['local_dim']}, {model['local_heads']} heads |" in card
