# gsa-exp: every target sets itself up (make install runs first where needed).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL_NEEDS_MB := 6500
SWEEP ?=

export GSA_EXP_ROOT := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help install lint format train test test-slow test-all sweep summarize bench gpu-wheels gpu-check tensorboard clean clean-outputs clean-all

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv/ and install gsa-exp with its dev extra (quick when done)

$(STAMP): pyproject.toml
	@free_mb=$$(df -Pm . | awk 'NR==2 {print $$4}'); \
	if [ "$$free_mb" -lt $(INSTALL_NEEDS_MB) ]; then \
	  echo "warning: $$free_mb MB free on this disk; .venv (torch with its CUDA libraries) needs about $(INSTALL_NEEDS_MB) MB" >&2; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: install ## Train the default experiment (ResNet-18 + global attention, embedded data)
	$(BIN)/python train.py

lint: install ## ruff: lint rules and formatting, checked (configured in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff: fix what the lint rules can fix, and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install ## Run the fast test suite
	$(BIN)/python -m pytest -m "not slow"

test-slow: install ## Run only the slow tests (the 72-job smoke grid, torch.compile)
	$(BIN)/python -m pytest -m slow

test-all: install ## Run every test, the slow ones too
	$(BIN)/python -m pytest

sweep: install ## A small demo multirun: two backbones x attention off/on, two epochs
	$(BIN)/python train.py -m backbone=resnet,vgg attention=none,global trainer.max_epochs=2 dataset.source.num_train=256

bench: install ## Benchmark: attention overhead, framework vs bare loop, bank build, loader (BENCH_ARGS="--device cuda --json")
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

gpu-wheels: ## Download what scripts/gpu_check.sh installs on an offline GPU machine into .gpu-wheels/
	$(PYTHON) -m pip wheel --quiet --no-deps -w .gpu-wheels 'hydra-core>=1.3,<1.4' 'omegaconf>=2.3,<2.4' 'antlr4-python3-runtime==4.9.*' medmnist

gpu-check: ## On a CUDA machine: GPU tests, grid benchmark, a short trainer=gpu run per backbone (outputs/gpu_check/)
	bash scripts/gpu_check.sh

tensorboard: install ## Compare every run under outputs/ in TensorBoard
	$(BIN)/tensorboard --logdir outputs

clean: ## Remove caches and build files (keeps runs and .venv)
	rm -rf .pytest_cache build dist src/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

clean-outputs: ## Delete every run under outputs/ (asks first)
	@read -p "Delete everything under outputs/? [y/N] " answer && [ "$$answer" = y ]
	find outputs -mindepth 1 ! -name .gitignore -exec rm -rf {} +

clean-all: clean ## Also remove .venv/
	rm -rf $(VENV)

summarize: install ## Summarise a sweep: make summarize SWEEP=outputs/multirun/<date>/<time>
	@test -n "$(SWEEP)" || { echo "usage: make summarize SWEEP=outputs/multirun/<date>/<time>"; exit 2; }
	$(BIN)/python scripts/summarize.py $(SWEEP)
