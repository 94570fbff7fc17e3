# The README's two commands: `make demo` and `make test`. Each does all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
IM_VENV := .im-venv
BIN := $(VENV)/bin
NETNS := .ci/netns
# What users get from `pipx install .`: the wheel, built and installed into a venv of its own (tests/integration/
# test_wheel_install.py runs the tool from there, outside the repository).
WHEEL_DIR := build/wheel
WHEEL_VENV := build/wheel-venv
PIP_QUIET := --quiet --disable-pip-version-check
export PROVISION_IM_VENV := $(CURDIR)/$(IM_VENV)

.PHONY: all system-deps setup test lint unit demo demo-continuum bench clean

all: test

# The project's venv, from the pinned constraints (reproducible), editable.
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade "pip>=24"
	$(BIN)/pip install $(PIP_QUIET) -c constraints.txt -e '.[dev]'
	touch $@

# IM 2.0.0 in a venv of its own (its pins never constrain ours), by the same code users run.
$(IM_VENV)/.installed: provisioner/data/im-constraints.txt $(BIN)/.installed
	$(BIN)/provision local-im install --venv $(IM_VENV)
	touch $@

# The wheel from the current sources (rebuilt when a packaged file changes), installed non-editable: dependencies
# from the constraints first, then the wheel itself forced over any older build.
$(WHEEL_VENV)/.installed: pyproject.toml constraints.txt $(shell git ls-files provisioner 2>/dev/null) $(BIN)/.installed
	rm -rf $(WHEEL_DIR)
	$(BIN)/pip wheel $(PIP_QUIET) --no-deps -w $(WHEEL_DIR) .
	[ -x $(WHEEL_VENV)/bin/pip ] || $(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install $(PIP_QUIET) -c constraints.txt $(WHEEL_DIR)/provisioner-*.whl
	$(WHEEL_VENV)/bin/pip install $(PIP_QUIET) --no-deps --force-reinstall $(WHEEL_DIR)/provisioner-*.whl
	touch $@

# Debian packages the tests use (openssh-server for real sshd on loopback).
system-deps:
	.ci/system-deps

setup: system-deps $(BIN)/.installed $(IM_VENV)/.installed $(WHEEL_VENV)/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check provisioner tests bench standin
	$(BIN)/ruff format --check provisioner tests bench standin
	$(BIN)/mypy

# The whole suite runs inside a network namespace with only loopback, on pytest-xdist workers (each with its own
# IM and sshd lab on addresses of its own, see tests/conftest.py). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3
test: setup lint
	$(NETNS) $(BIN)/pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# The main job end to end on the embedded default: a local IM on a simulated cloud, in a loopback-only namespace.
demo: setup
	$(NETNS) bash .ci/demo.sh

# The whole continuum from one file: an edge cluster (preflight over SSH to sshd on loopback), two IM clusters on
# the simulated cloud with stand-in OSCARs, and a workflow over them with an AWS Lambda stage on moto's server.
demo-continuum: setup
	$(NETNS) bash .ci/demo-continuum.sh

# im_client (the tool compared against) in a venv of its own, installed before entering the namespace (no PyPI there).
bench/.venv-imclient/.installed:
	$(PYTHON) -m venv bench/.venv-imclient
	bench/.venv-imclient/bin/pip install $(PIP_QUIET) "IM-client==1.8.4"
	touch $@

bench: setup bench/.venv-imclient/.installed
	$(NETNS) $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(IM_VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
