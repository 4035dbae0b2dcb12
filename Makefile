# The two commands of the README. Both install first (torch pinned to the CPU build in the same pip line).
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet "torch==2.13.0" -e ".[test]"

.PHONY: install demo test lint

install:
	$(PIP_INSTALL)

# Pre-train PreRec and the PreRec_n ablation on the embedded synthetic benchmark, then evaluate zero-shot.
demo: install
	$(PYTHON) scripts/map_pretrain.py
	$(PYTHON) scripts/map_pretrain.py --method prerec_n
	$(PYTHON) scripts/intervene_eval.py --target all

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
