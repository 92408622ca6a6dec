"""Corpus-building throughput: the story grammar on one core, and the LLM path against a local
server that answers every request after a fixed delay (the endpoint must be kept busy).

Both go through ``build_corpus`` exactly as ``tinylang build-corpus`` does: planning, records, raw
shards, cache, splits. The server runs in its own process so it does not share the client's GIL.

    python benchmarks/bench_corpus.py --stories 20000 --requests 3200 --out docs/bench-corpus.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from tinylang.corpus.build import BuildOptions, build_corpus


def grammar_run(lang: str, stories: int, scratch: Path) -> dict:
    started = time.perf_counter()
    result = build_corpus(BuildOptions(lang=lang, n=stories, out=scratch / f"grammar-{lang}", backend="grammar"),
                          Console(quiet=True))
    total_s = time.perf_counter() - started
    run = result.stats["last_run"]
    return {"lang": lang, "stories": stories, "write_s": run["seconds"], "stories_per_s": run["stories_per_s"],
            "total_s_with_splits": round(total_s, 2), "mean_words": result.stats["corpus"]["mean_words"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llm_run(requests: int, concurrency: int, latency_ms: float, scratch: Path) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tinylang.testing.openai_server", "--port", str(port), "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        server.stdout.readline()  # "serving ..." once it listens
        options = BuildOptions(lang="fi", n=requests, out=scratch / "llm", backend="llm", model="bench",
                               base_url=f"http://127.0.0.1:{port}/v1", concurrency=concurrency)
        os.environ.setdefault("OPENAI_API_KEY", "benchmark")
        started = time.perf_counter()
        result = build_corpus(options, Console(quiet=True))
        total_s = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait()
    run = result.stats["last_run"]
    ideal = concurrency / (latency_ms / 1000)
    rate = run["llm"]["requests"] / run["seconds"]
    return {"requests": requests, "concurrency": concurrency, "latency_ms": latency_ms, "seconds": run["seconds"],
            "requests_per_s": round(rate, 1), "ideal_requests_per_s": ideal, "share_of_ideal": round(rate / ideal, 3),
            "total_s_with_splits": round(total_s, 2), "retries": run["llm"]["retries"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=20_000, help="Grammar stories per language.")
    parser.add_argument("--langs", default="fi,en")
    parser.add_argument("--requests", type=int, default=3_200, help="LLM requests (0 skips the LLM run).")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {"cpu": os.cpu_count(), "load_before": os.getloadavg()[0], "grammar": [], "llm": None}
    with tempfile.TemporaryDirectory() as scratch:
        for lang in args.langs.split(","):
            results["grammar"].append(grammar_run(lang, args.stories, Path(scratch)))
            print(json.dumps(results["grammar"][-1]))
        if args.requests:
            results["llm"] = llm_run(args.requests, args.concurrency, args.latency_ms, Path(scratch))
            print(json.dumps(results["llm"]))
    results["load_after"] = os.getloadavg()[0]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
