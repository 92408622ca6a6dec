"""Streaming text out of a byte model: UTF-8 split across steps, broken bytes, end of story."""

from __future__ import annotations

import torch

from tinylang.generate import complete_story, prompt_ids, stream_story
from tinylang.model import BOS_ID, EOS_ID


class ScriptedModel(torch.nn.Module):
    """Stands in for Megabyte: emits a fixed list of ids through the same ``stream`` interface."""

    def __init__(self, ids: list[int]):
        super().__init__()
        self.ids = ids
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen_prompt = None

    def stream(self, ids, max_new_bytes, temperature, top_k, top_p, stop_at_end=False, generator=None, processor=None):
        self.seen_prompt = ids
        for i in self.ids[:max_new_bytes]:
            yield torch.tensor([i])


def test_multibyte_characters_are_held_until_complete():
    model = ScriptedModel([*"pää".encode(), EOS_ID, *b"never shown"])
    pieces = list(stream_story(model, "Olipa kerran", max_bytes=100))
    assert pieces == ["p", "ä", "ä"]
    assert model.seen_prompt.tolist() == [[BOS_ID, *"Olipa kerran".encode()]]


def test_a_character_cut_by_the_byte_limit_becomes_a_replacement_mark():
    ä = "ä".encode()
    assert complete_story(ScriptedModel([65, ä[0], ä[1], ä[0]]), "", max_bytes=4) == "Aä\ufffd"
    assert complete_story(ScriptedModel([65, 0xFF, 66]), "", max_bytes=3) == "A\ufffdB"


def test_prompt_ids_start_a_story():
    assert prompt_ids("Äiti").tolist() == [[BOS_ID, *"Äiti".encode()]]


def test_generate_renders_the_instruct_request(recipe_file, tmp_path):
    from rich.console import Console
    from typer.testing import CliRunner

    from tests.conftest import write_tiny_pack
    from tinylang.cli import app
    from tinylang.recipe import load_recipe
    from tinylang.train import train

    run = train(load_recipe(recipe_file), console=Console(quiet=True)).run_dir
    pack = write_tiny_pack(tmp_path / "pack")
    runner = CliRunner()
    result = runner.invoke(app, ["generate", str(run), "--words", "koira,pallo,iloinen", "--features", "dialogue",
                                 "--lang", str(pack), "--max-bytes", "20", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Piirteet: vuoropuhelu\nSanat: koira, pallo, iloinen\nTarina: ")
    by_label = runner.invoke(app, ["generate", str(run), "--features", "Vuoropuhelu", "--words", "koira",
                                   "--lang", str(pack), "--max-bytes", "5", "--seed", "0"])
    assert by_label.exit_code == 0, by_label.output
    assert "Piirteet: vuoropuhelu\nSanat: koira\n" in by_label.output
    assert "not on instruct requests" in by_label.stderr  # this run learnt plain stories: the user is told
    bad = runner.invoke(app, ["generate", str(run), "--features", "sadness", "--lang", str(pack)])
    assert bad.exit_code == 1 and "unknown feature" in bad.output and "vuoropuhelu" in bad.output
    twice = runner.invoke(app, ["generate", str(run), "--features", "dialogue,vuoropuhelu", "--words",
                                "koira,pallo,Koira, koira", "--lang", str(pack), "--max-bytes", "5", "--seed", "0"])
    assert twice.exit_code == 0 and twice.stdout.startswith("Piirteet: vuoropuhelu\nSanat: koira, pallo\nTarina: ")
    empty = runner.invoke(app, ["generate", str(run), "--words", "", "--lang", str(pack)])
    assert empty.exit_code == 1 and "lists no words" in empty.output


def test_generate_refuses_an_empty_nucleus_and_can_sample_every_byte(recipe_file):
    from rich.console import Console
    from typer.testing import CliRunner

    from tinylang.cli import app
    from tinylang.recipe import load_recipe
    from tinylang.train import train

    run = train(load_recipe(recipe_file), console=Console(quiet=True)).run_dir
    runner = CliRunner()
    empty = runner.invoke(app, ["generate", str(run), "--top-p", "0"])
    assert empty.exit_code == 1 and "--top-p must be above 0" in empty.output
    every = runner.invoke(app, ["generate", str(run), "--top-k", "0", "--max-bytes", "5", "--seed", "0"])
    assert every.exit_code == 0, every.output
    latin1 = runner.invoke(app, ["generate", str(run), "--prompt", "Tarina \udce4", "--max-bytes", "5", "--seed", "0"])
    assert latin1.exit_code == 0, latin1.output  # a Latin-1 terminal's ä: replaced, with a warning
    assert latin1.stdout.startswith("Tarina \ufffd") and "--prompt is not UTF-8 (byte 0xe4" in latin1.stderr
    huge = runner.invoke(app, ["generate", str(run), "--seed", "99999999999999999999"])
    assert huge.exit_code == 2 and "--seed" in huge.output  # a usage error, not an overflow traceback
    unguided = runner.invoke(app, ["generate", str(run), "--guidance", "3", "--max-bytes", "5", "--seed", "0"])
    assert unguided.exit_code == 0 and "--guidance steers toward --words; without them it does nothing" in unguided.stderr
    assert "--guidance" not in every.stderr  # the default says nothing
    last = runner.invoke(app, ["generate", str(run), "--seed", str(2**64 - 1), "--num", "2"])
    assert last.exit_code == 1 and "story i gets seed + i" in last.output
