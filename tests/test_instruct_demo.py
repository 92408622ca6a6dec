"""The instruct demo end to end, with the shipped recipes on small settings: an instruct corpus from
the grammar, a pretrained fi-tiny run, recipes/fi-instruct-tiny.yaml fine-tuning it at twice the
context, then a story on command from the CLI and from chat over HTTP."""

from __future__ import annotations

from pathlib import Path

import openai
from rich.console import Console
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.corpus.build import BuildOptions, build_corpus
from tinylang.recipe import load_recipe
from tinylang.serve import ModelServer, ServeOptions
from tinylang.train import train

REPO = Path(__file__).resolve().parents[1]
SMALL = ["train.max_steps=3", "train.checkpoint_every=3", "eval.every_steps=3", "eval.batches=1",
         "train.batch_size=2", "train.max_minutes=null"]


def test_instruct_demo_from_corpus_to_chat(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLANG_CORPORA", str(REPO / "corpora"))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    quiet = Console(quiet=True)
    corpus = tmp_path / "fi-instruct"
    build_corpus(BuildOptions(lang="fi", n=60, out=corpus, backend="grammar", format="instruct"), quiet)
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    pretrained = train(load_recipe(REPO / "recipes/fi-tiny.yaml", SMALL + [
        f"data.path={corpus}", cache, f"output.dir={tmp_path / 'pre'}", "eval.samples=0"]), console=quiet).run_dir
    recipe = load_recipe(REPO / "recipes/fi-instruct-tiny.yaml", SMALL + [
        f"data.path={corpus}", cache, f"output.dir={tmp_path / 'instruct'}", f"train.init_from={pretrained}",
        "eval.sample_bytes=40"])
    assert recipe.data.windows == "story" and recipe.data.text_column == "instruct"
    run = train(recipe, console=quiet).run_dir

    result = CliRunner().invoke(app, ["generate", str(run), "--words", "koira,pallo,iloinen", "--features",
                                      "dialogue,bad_ending", "--max-bytes", "30", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Piirteet: vuoropuhelu, huono loppu\nSanat: koira, pallo, iloinen\nTarina: ")
    assert "requested words used: " in result.stderr  # word guidance on by default, and its count
    # mistakes in the request: one line each, before or beside the story
    empty = CliRunner().invoke(app, ["generate", str(run), "--words", ",,", "--max-bytes", "5"])
    assert empty.exit_code != 0 and "lists no words" in empty.stderr
    assert CliRunner().invoke(app, ["generate", str(run), "--words", "koira", "--guidance", "inf"]).exit_code == 2
    odd = CliRunner().invoke(app, ["generate", str(run), "--words", "jäätelö tötterö,koira", "--max-bytes", "5",
                                   "--prompt", "Olipa kerran " * 100])
    assert odd.exit_code == 0
    assert "left to the model and not counted: jäätelö tötterö" in " ".join(odd.stderr.split())
    assert "the start of the request is lost" in " ".join(odd.stderr.split())

    # an export of the run behaves the same: instruct chat, and its language without --lang
    export = tmp_path / "export"
    assert CliRunner().invoke(app, ["export", str(run), str(export)]).exit_code == 0
    exported = CliRunner().invoke(app, ["generate", str(export), "--words", "koira", "--max-bytes", "20", "--seed", "0"])
    assert exported.exit_code == 0 and exported.output.startswith("Sanat: koira\nTarina: "), exported.output
    served = ModelServer.from_run(export, ServeOptions(port=0))
    try:
        assert served.served.instruct_pack.spec.code == "fi" and served.served.trained_column == "instruct"
    finally:
        served.server_close()

    server = ModelServer.from_run(run, ServeOptions(port=0))  # instruct chat, Finnish labels: both read from the run
    server.start_in_thread()
    try:
        assert server.served.instruct_pack.spec.code == "fi"
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="instruct", max_tokens=30, seed=1,
                                                messages=[{"role": "user", "content": "koira, pallo, iloinen"}])
        prompt = "Sanat: koira, pallo, iloinen\nTarina: "
        assert answer.usage.prompt_tokens == len(prompt.encode())
        assert answer.choices[0].finish_reason in ("stop", "length")
    finally:
        server.shutdown()
        server.server_close()
