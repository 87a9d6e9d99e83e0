# satconv: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := sample_data/sample_scene.tif

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/satconv warmup
	touch $(STAMP)

$(SAMPLE): | $(STAMP)
	$(BIN)/python sample_data/make_sample.py $(SAMPLE)

demo: install $(SAMPLE)
	$(BIN)/satconv run $(SAMPLE) --out-dir sample_data --overwrite -c configs/default.yaml
	$(BIN)/satconv plan $(SAMPLE) -c configs/default.yaml

test: install
	$(BIN)/ruff check satconv tests sample_data bench
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: install $(SAMPLE)
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check satconv tests sample_data bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
