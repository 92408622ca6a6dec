"""Serving throughput: bytes/s of one stream, and aggregate bytes/s of 8 concurrent streams, through
``tinylang serve`` and the real openai client, with batching on (--max-batch 8) and off (1).

The server runs in its own process (as a user would run it), so the clients do not share its GIL;
they do share the machine's cores, which is why the server is measured with 1 and with 2 torch threads. Every request streams exactly --bytes bytes (``ignore_eos``).
Without --run, a model of recipes/fi-tiny.yaml's shape with random weights is served: speed does not
depend on what the weights say.

    python benchmarks/bench_serve.py --out docs/bench-serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

from tinylang.checkpoint import save_checkpoint
from tinylang.model import Megabyte
from tinylang.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def random_run(folder: Path, recipe_path: Path) -> Path:
    recipe = load_recipe(recipe_path, [f"output.dir={folder}"])
    save_checkpoint(folder / "checkpoint.pt",
                    {"model": Megabyte(recipe.model).state_dict(), "recipe": recipe.model_dump(mode="json")})
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, max_batch: int, threads: int) -> tuple[subprocess.Popen, openai.OpenAI, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tinylang", "serve", str(run), "--port", str(port), "--max-batch", str(max_batch),
         "--threads", str(threads), "--device", "cpu", "--name", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    line = process.stdout.readline()
    if "Serving" not in line:
        process.kill()
        raise SystemExit(f"server did not start: {line}{process.stdout.read()}")
    return process, openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0), "bench"


def one_stream(client: openai.OpenAI, model: str, size: int, seed: int) -> dict:
    started = time.perf_counter()
    first, text = None, ""
    stream = client.completions.create(model=model, prompt="Olipa kerran", max_tokens=size, temperature=0.8,
                                       seed=seed, stream=True, extra_body={"ignore_eos": True},
                                       stream_options={"include_usage": True})
    generated = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            first = first or time.perf_counter()
            text += chunk.choices[0].text
        if chunk.usage:
            generated = chunk.usage.completion_tokens
    elapsed = time.perf_counter() - started
    return {"bytes": generated, "seconds": elapsed, "bytes_per_s": generated / elapsed,
            "first_piece_ms": 1000 * ((first or time.perf_counter()) - started)}


def concurrent(client: openai.OpenAI, model: str, size: int, streams: int) -> dict:
    results: list[dict] = [{}] * streams

    def worker(i: int) -> None:
        results[i] = one_stream(client, model, size, 100 + i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total = sum(r["bytes"] for r in results)
    return {"streams": streams, "bytes": total, "seconds": round(wall, 3), "aggregate_bytes_per_s": round(total / wall, 1),
            "median_stream_bytes_per_s": round(statistics.median(r["bytes_per_s"] for r in results), 1)}


def measure(run: Path, max_batch: int, threads: int, size: int, streams: int, repeats: int) -> dict:
    process, client, model = start_server(run, max_batch, threads)
    try:
        one_stream(client, model, 64, 0)  # warm-up
        singles = [one_stream(client, model, size, seed) for seed in range(repeats)]
        many = [concurrent(client, model, size, streams) for _ in range(repeats)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    best = max(many, key=lambda r: r["aggregate_bytes_per_s"])
    return {
        "max_batch": max_batch,
        "one_stream_bytes_per_s": round(statistics.median(r["bytes_per_s"] for r in singles), 1),
        "one_stream_first_piece_ms": round(statistics.median(r["first_piece_ms"] for r in singles), 1),
        f"{streams}_streams_aggregate_bytes_per_s": round(statistics.median(r["aggregate_bytes_per_s"] for r in many), 1),
        f"{streams}_streams_median_per_stream_bytes_per_s": best["median_stream_bytes_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run to serve (default: random weights of --recipe's shape)")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes/fi-tiny.yaml")
    parser.add_argument("--bytes", type=int, default=512, help="bytes per request")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", default="1,2", help="torch threads of the server, comma-separated settings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or random_run(Path(scratch) / "random", args.recipe)
        rows = [measure(run, batch, int(threads), args.bytes, args.streams, args.repeats) | {"threads": int(threads)}
                for threads in args.threads.split(",") for batch in (1, 8)]
    report = {"model": str(args.run or f"random weights, {args.recipe.name} shape"), "bytes_per_request": args.bytes,
              "load_average_after": os.getloadavg(), "results": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
