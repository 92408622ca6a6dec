"""Devices by name: a typo or a device this machine lacks is one line that says what to pass."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tinylang.runtime import pick_device


def test_known_names_and_clear_refusals():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    for name in ("foo", "gpu", "cpu:0", "cuda:x", "mps:1", ""):
        with pytest.raises(RuntimeError, match="is not one of auto, cpu, cuda"):
            pick_device(name)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
                pick_device(name)
    else:
        with pytest.raises(RuntimeError, match="numbered from 0"):
            pick_device(f"cuda:{torch.cuda.device_count()}")


def test_generate_with_an_unknown_device_says_so_in_one_line(tmp_path):
    from tinylang.cli import app

    result = CliRunner().invoke(app, ["generate", str(tmp_path), "--device", "foo"])
    assert result.exit_code == 1 and "device 'foo' is not one of auto, cpu, cuda (or cuda:N) and mps" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
