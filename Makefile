# Set-up is two commands: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned here (the CPU wheel), never in pyproject.toml.
CONSTRAINTS := -c constraints.txt
OUT ?= runs/sinusoid

.PHONY: run test test-slow test-codepaths lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install --quiet $(CONSTRAINTS) torch==2.13.0
	$(PIP) install --quiet $(CONSTRAINTS) -e .
	touch $@

# metaworld pins mujoco==3.3.0. Downgrading from mujoco 4 leaves its split-off packages
# (mujoco-core, mujoco-studio) whose files shadow 3.3's: remove them and reinstall mujoco cleanly.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet $(CONSTRAINTS) -e ".[test,rl,metaworld]"
	if $(PIP) show --quiet mujoco-core 2>/dev/null; then \
		$(PIP) uninstall --quiet -y mujoco-studio mujoco-core && \
		$(PIP) install --quiet --force-reinstall --no-deps "mujoco==$$($(PY) -c 'import importlib.metadata as m; print(m.version("mujoco"))')"; \
	fi
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/metagym run sinusoid --profile quick --out $(OUT)

test: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --dist loadfile --durations=15

test-slow: $(VENV)/.installed-test
	$(PY) -m pytest -q -m slow

# The learning tests' bars hold on one rounding only if they hold on all: MKL, ATen and oneDNN pick
# their kernels by CPU (an AVX512 Xeon and an AMD EPYC give different numbers), so run them on each.
LEARNING_TESTS = tests/test_learners_learn.py tests/omniglot/test_learners.py tests/rl/test_learners_improve.py
test-codepaths: $(VENV)/.installed-test
	$(PY) -m pytest -q $(LEARNING_TESTS)
	MKL_CBWR=COMPATIBLE $(PY) -m pytest -q $(LEARNING_TESTS)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 $(PY) -m pytest -q $(LEARNING_TESTS)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.installed-test
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The bench extra (TorchOpt, parallel-metalearn: the peers) only here, never in `make test`.
$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) install --quiet $(CONSTRAINTS) -e ".[bench]"
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
