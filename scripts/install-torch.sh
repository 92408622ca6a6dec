#!/bin/sh
# Install PyTorch into the given Python environment without surprises:
#  - a machine with an NVIDIA GPU gets the default (CUDA) build;
#  - macOS gets the default build (CPU + Apple MPS);
#  - any other machine gets the CPU build of torch $TORCH_VERSION (about 200 MB instead of several
#    GB of CUDA libraries): from a local wheel directory when pip is configured with one, else from
#    the PyTorch CPU index.
# An environment that already has torch keeps it.
set -eu
py="$1"
version="${TORCH_VERSION:-2.13.0}"
cpu_index="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

if "$py" -c "import torch" 2>/dev/null; then
    echo "torch $("$py" -c 'import torch; print(torch.__version__)') already installed"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of torch"
    "$py" -m pip install "torch>=2.4"
elif [ "$(uname -s)" = "Darwin" ]; then
    "$py" -m pip install "torch>=2.4"
else
    echo "No NVIDIA GPU: installing the CPU build torch==${version}+cpu"
    "$py" -m pip install "torch==${version}+cpu" 2>/dev/null \
        || "$py" -m pip install "torch==${version}+cpu" --extra-index-url "$cpu_index"
fi
