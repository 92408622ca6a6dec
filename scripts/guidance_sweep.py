"""Word guidance strength against what it costs, on an instruct run, for docs/generate.md.

For each strength: the share of requested words used (evaluate's rule), vocabulary adherence,
dictionary coverage and language ID of the stories, and the model's own bits per byte of what it
wrote, scored without guidance (how far guidance pulls the text from what the model would write).

    .venv/bin/python scripts/guidance_sweep.py runs/fi-instruct-tiny --strengths 0,1,2,3,4,6,10

Requests are evaluate's (seeded, from the grammar's lexicon for grammar corpora); beginnings are the
pack's evaluation beginnings.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from tinylang.checkpoint import load_model
from tinylang.evaluate.metrics import CompletionMetrics
from tinylang.evaluate.run import completion_text, instruct_requests, request_words_source
from tinylang.guidance import WordGuide, pack_matcher
from tinylang.langpack import load_pack, run_language
from tinylang.model import BOS_ID, EOS_ID


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--strengths", default="0,1,2,3,4,6,10")
    p.add_argument("--beginnings", type=int, default=20)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-bytes", type=int, default=600)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    return p.parse_args()


@torch.no_grad()
def own_bits(model, prompt: list[int], story: list[int]) -> float:
    ids = torch.tensor([prompt + story])[:, -model.config.context_bytes:]
    logits, _ = model(ids[:, :-1])
    k = len(story)
    return float(F.cross_entropy(logits[0, -k:].float(), ids[0, -k:], reduction="sum")) / math.log(2)


def main() -> None:
    args = parse_args()
    model, recipe = load_model(args.run, "cpu")
    pack = load_pack(run_language(args.run, recipe))
    requests = instruct_requests(pack, args.beginnings, 0, request_words_source(recipe, args.run))
    beginnings = [b.text for b in pack.eval_beginnings][: args.beginnings]
    matcher, metrics = pack_matcher(pack), CompletionMetrics(pack)
    print("| strength | words used | vocabulary adherence | dictionary coverage | language ok | own bits/byte | seconds |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for strength in (float(s) for s in args.strengths.split(",")):
        started, texts, wanted, bits, size = time.time(), [], [], 0.0, 0
        generator = torch.Generator().manual_seed(0)
        for (words, features), beginning in zip(requests, beginnings):
            prompt = [BOS_ID, *pack.instruct_text(words, features, beginning).encode("utf-8")]
            guide = WordGuide(words, strength, args.samples, matcher, beginning)
            out = model.generate(torch.tensor([prompt] * args.samples), args.max_bytes, args.temperature, args.top_k,
                                 stop_at_end=True, generator=generator, processor=guide)
            for row in out[:, len(prompt):].tolist():
                story = [b for b in (row[: row.index(EOS_ID)] if EOS_ID in row else row) if b < 256]
                texts.append(completion_text(bytes(story)))
                wanted.append(words)
                if story:
                    bits, size = bits + own_bits(model, prompt, story), size + len(story)
        rows = metrics.measure(texts, wanted)

        def mean(key: str) -> float:
            return statistics.mean(r[key] for r in rows if r.get(key) is not None)

        print(f"| {strength:g} | {mean('requested_words_used'):.2f} | {mean('vocabulary_adherence'):.2f} | "
              f"{mean('dictionary_coverage'):.2f} | {mean('language_ok'):.2f} | {bits / size:.3f} | "
              f"{time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
