# The README's two commands: `make demo` and `make test`. Each sets up .venv when missing.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all

.PHONY: demo test bench lint setup clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python >= 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete results/report.html
	@echo "Report: $(CURDIR)/results/report.html (open it in a browser)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m slow
	$(BIN)/python bench/run.py

# ruff (version and rules pinned in pyproject.toml), snakefmt and snakemake --lint
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/snakefmt --check --line-length 100 Snakefile workflow/rules
	$(BIN)/snakemake --lint

.PHONY: gpu-check
# GPU only: the tests marked `gpu` (with two GPUs: two jobs claim two different devices,
# tests/test_gpu_alloc.py) and bench/gpu.py; without CUDA it says so and exits 0
gpu-check: $(STAMP)
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		$(BIN)/python -m pytest -q -ra -m gpu \
		&& $(BIN)/python -m pytest -q -ra tests/test_gradcam.py::test_cpu_and_cuda_agree \
		&& $(BIN)/python bench/gpu.py; \
	else \
		echo "make gpu-check needs a CUDA GPU (torch.cuda.is_available() is False here): skipped"; \
	fi

clean-results:
	rm -rf results/* resources/*
	git checkout -- results/.gitkeep resources/.gitkeep
