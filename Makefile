# The two commands of the README. Both install first (torch pinned to the CPU build in the same pip line).
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet "torch==2.13.0" -e ".[test]"

.PHONY: install demo test lint

install:
	$(PIP_INSTALL)

# Pre-train PreRec and the PreRec_n ablation on the small embedded synthetic benchmark (planted domain and popularity
# biases), then zero-shot on its four targets: a short table (mean over targets) and a figure with 95% intervals.
# The full synthetic benchmark is the scripts' default (python scripts/map_pretrain.py).
DEMO = --benchmark synthetic-small --runs runs
demo: install
	$(PYTHON) scripts/map_pretrain.py $(DEMO) --max-epochs 10 --min-steps-per-epoch 20
	$(PYTHON) scripts/map_pretrain.py $(DEMO) --max-epochs 10 --min-steps-per-epoch 20 --method prerec_n
	$(PYTHON) scripts/intervene_eval.py $(DEMO) --target all

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
