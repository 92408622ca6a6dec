"""Does an instruct model copy words? Two measurements on the validation split of its instruct
corpus (a build-corpus folder with words/features columns), for docs/generate.md:

* request gain at the word: bits saved on the first three bytes of each requested word's first
  occurrence in the story, after the story's own request against the next story's words (0: the
  request is not read);
* in-story copying: bits on a requested noun's stem at its first and at its second occurrence, after
  the story's own request (equal: the model does not copy a word it has already written).

    .venv/bin/python scripts/probe_copying.py runs/fi-instruct-long --stories 200

A word's occurrence is found by its stem (the lemma less its last two bytes, at least three bytes),
which finds Finnish inflected forms (poni -> ponin, värittää -> värittivät) in the grammar's stories.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from tinylang.checkpoint import load_model
from tinylang.langpack import load_pack, run_language
from tinylang.model import BOS_ID

KINDS = ("noun", "verb", "adjective")


def stem(word: str) -> bytes:
    raw = word.lower().encode("utf-8")
    return raw[: max(3, len(raw) - 2)]


@torch.no_grad()
def story_bits(model, request: bytes, story: bytes) -> torch.Tensor:
    """Bits of each story byte after BOS + request."""
    ids = torch.tensor([[BOS_ID, *request, *story]])
    logits, _ = model(ids[:, :-1])
    return F.cross_entropy(logits[0, len(request):].float(), ids[0, len(request) + 1:], reduction="none") / math.log(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--lang", help="language pack (default: the training corpus's)")
    args = parser.parse_args()
    model, recipe = load_model(args.run)
    pack = load_pack(args.lang or run_language(args.run, recipe))
    rows = pq.read_table(Path(recipe.data.path) / "validation.parquet").to_pylist()[: args.stories]
    requests = []
    for row in rows:
        words = json.loads(row["words"])
        requests.append(([words[k] for k in KINDS], list(row["features"]), row["text"]))

    def prefix(words, features) -> bytes:
        return pack.instruct_text(words, features, "").encode("utf-8")

    gain = {k: [] for k in KINDS}
    first_second = []
    for i, (words, features, text) in enumerate(requests):
        own, other = prefix(words, features), prefix(requests[(i + 1) % len(requests)][0], features)
        story = text.encode("utf-8")[: model.config.context_bytes - max(len(own), len(other))]
        lower = story.lower()
        own_bits = story_bits(model, own, story)
        saved = story_bits(model, other, story) - own_bits
        for kind, word in zip(KINDS, words):
            at = lower.find(stem(word))
            if at >= 0:
                gain[kind].append(float(saved[at : at + 3].sum()))
        noun = stem(words[0])
        first = lower.find(noun)
        second = lower.find(noun, first + len(noun)) if first >= 0 else -1
        if second >= 0:
            first_second.append((float(own_bits[first : first + len(noun)].sum()),
                                 float(own_bits[second : second + len(noun)].sum())))
    for kind in KINDS:
        values = gain[kind]
        print(f"request gain at the {kind}'s first occurrence: {sum(values) / max(1, len(values)):.2f} bits "
              f"(first 3 bytes, {len(values)} stories)")
    n = max(1, len(first_second))
    print(f"noun stem: {sum(a for a, _ in first_second) / n:.2f} bits at its first occurrence, "
          f"{sum(b for _, b in first_second) / n:.2f} at its second ({len(first_second)} stories)")


if __name__ == "__main__":
    main()
