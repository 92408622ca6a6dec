#!/usr/bin/env bash
# Everything tinylang checks on a CUDA GPU, in one go: about 7 minutes on one H200. GPU time is
# scarce, so each step has its own time limit and a failing step does not stop the ones after it.
#   1. the GPU tests (pytest -m gpu);
#   2. bench_model.py --device cuda: recipes/fi-40m.yaml's shapes, tinylang against the reference, bf16
#      training throughput and MFU (eager and torch.compile'd), generation speed, peak memory;
#   3. the real trainer: `tinylang train recipes/fi-40m.yaml` for a few hundred steps on CORPUS
#      (bf16 autocast, fused AdamW, validation and samples on the GPU), then 20 of its steps under
#      torch.profiler (profile_train.py: how long the GPU waits for the host), then a one-process
#      torchrun run (NCCL) of fi-tiny;
#   4. the model, training and generation tests with a GPU visible (device "auto" then means CUDA).
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [CORPUS]     # CORPUS: any data.path (default data/fi-generate)
#
# OUT_DIR gets bench-results-cuda.json, trainer-trace.json, the runs (fi-40m/, fi-tiny-torchrun/) and,
# on stdout, the log.
# PYTHON picks the interpreter (default: .venv's, else python). Exits 1 if any check failed, 2 without a GPU.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR [CORPUS]}
corpus=${2:-data/fi-generate}
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
if ! $py -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_checks.sh needs a CUDA GPU that torch ($py) can see; this machine has none." >&2
    exit 2
fi
mkdir -p "$out"
failed=0

step() {  # step NAME SECONDS COMMAND...: run one check under a time limit and report how it ended
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=15 "$limit" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    [ $rc -eq 0 ] || failed=$((failed + 1))
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'

step "GPU tests" 120 $py -m pytest -q -p no:cacheprovider -m gpu tests
step "benchmark" 330 $py benchmarks/bench_model.py --device cuda --batch 32 --warmup 5 --steps 20 \
    --out "$out/bench-results-cuda.json"
step "train fi-40m" 120 $py -m tinylang train recipes/fi-40m.yaml --set "data.path=$corpus" \
    --set "output.dir=$out/fi-40m" --set train.max_steps=400 --set train.log_every=20 \
    --set train.checkpoint_every=400 --set eval.every_steps=200 --set eval.batches=8 --set eval.samples=2
step "profile the trainer" 150 $py benchmarks/profile_train.py recipes/fi-40m.yaml --set "data.path=$corpus" \
    --warmup 10 --steps 20 --out "$out/trainer-trace.json"
step "torchrun fi-tiny" 90 $py -m torch.distributed.run --standalone --nproc_per_node 1 -m tinylang train \
    recipes/fi-tiny.yaml --set "data.path=$corpus" --set "output.dir=$out/fi-tiny-torchrun" \
    --set train.max_steps=60 --set eval.every_steps=30
step "tests with a GPU visible" 150 $py -m pytest -q -p no:cacheprovider tests/model tests/test_train.py \
    tests/test_generate.py tests/test_distributed.py tests/test_export.py
echo "=== $failed check(s) failed"
[ $failed -eq 0 ]
