"""Filter throughput and memory: the default Finnish pipeline over 20,000 grammar stories.

Stories per second on one worker (steady state, after the lemmatiser and language profiles have
loaded, and end to end), with ``--workers`` processes, and the resident memory as the stream goes
by (it should stay flat apart from the duplicate indexes). Also langdetect itself against the
identical faster engine on the same stories.

    python benchmarks/bench_filter.py --stories 20000 --out docs/bench-filter.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console

from tinylang.corpus.build import BuildOptions, build_corpus
from tinylang.filters.pipeline import FilterPipeline
from tinylang.langpack import load_pack
from tinylang.records import read_parquet


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(records, workers: int, warm: int) -> dict:
    pipeline = FilterPipeline(load_pack("fi"))
    marks: list[tuple[int, float, float]] = []
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        marks.append((seen[0], time.perf_counter(), rss_mb()))

    started = time.perf_counter()
    stats = pipeline.run(records, lambda r: None, lambda r: None, workers=workers, on_progress=progress)
    total_s = time.perf_counter() - started
    after_warm = next((m for m in marks if m[0] >= warm), marks[0])
    steady = (marks[-1][0] - after_warm[0]) / (marks[-1][1] - after_warm[1])
    memory = {f"{count:,}": round(mb, 1) for count, _, mb in marks[:: max(1, len(marks) // 8)]}
    return {"workers": workers, "stories": stats.seen, "kept": stats.kept, "seconds": round(total_s, 2),
            "stories_per_s_end_to_end": round(stats.seen / total_s), "stories_per_s_steady": round(steady),
            "rss_mb_by_stories_seen": memory}


def langdetect_comparison(texts: list[str]) -> dict:
    from langdetect import DetectorFactory, detect_langs

    from tinylang.filters.langid import FastLangDetect

    DetectorFactory.seed = 0
    detect_langs(texts[0])
    started = time.perf_counter()
    reference = [[(x.lang, x.prob) for x in detect_langs(t)] for t in texts]
    reference_s = time.perf_counter() - started
    fast = FastLangDetect(0)
    fast.detect_batch(texts[:256])
    started = time.perf_counter()
    ours = [r for i in range(0, len(texts), 256) for r in fast.detect_batch(texts[i : i + 256])]
    fast_s = time.perf_counter() - started
    return {"texts": len(texts), "langdetect_ms": round(reference_s / len(texts) * 1000, 3),
            "fast_ms": round(fast_s / len(texts) * 1000, 3), "identical": ours == reference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {"cpu": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "fi"
        build_corpus(BuildOptions(lang="fi", n=args.stories, out=corpus, backend="grammar", filter=False), Console(quiet=True))
        records = [r for split in ("train", "validation") for r in read_parquet(corpus / f"{split}.parquet")]
        results["one_worker"] = run(records, 1, warm=1024)
        print(json.dumps(results["one_worker"]))
        if args.workers > 1:
            results["workers"] = run(records, args.workers, warm=2048)
            print(json.dumps(results["workers"]))
        results["language_id"] = langdetect_comparison([r.text for r in records[:2000]])
        print(json.dumps(results["language_id"]))
    results["load_after"] = os.getloadavg()[0]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
