# The README's two commands: `make demo` and `make test`. Both set up .venv first if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinylang-installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-torch.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sh scripts/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	sh scripts/install-voikko.sh $(BIN)/python
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/tinylang quickstart --lang fi

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_model.py --compile --out docs/bench-results.json
	$(BIN)/python benchmarks/bench_positions.py --out docs/bench-positions.json
	$(BIN)/python benchmarks/bench_precision.py --out docs/bench-precision.json
	$(BIN)/python benchmarks/bench_decode.py --out docs/bench-decode.json
	$(BIN)/python benchmarks/bench_corpus.py --out docs/bench-corpus.json
	$(BIN)/python benchmarks/bench_filter.py --out docs/bench-filter.json
	$(BIN)/python benchmarks/bench_serve.py --out docs/bench-serve.json

clean:
	rm -rf runs/quickstart-fi runs/demo-fi-tiny data/fi-generate .pytest_cache
