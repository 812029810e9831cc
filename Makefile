# The README's two commands for a fresh machine are `make demo` and `make test`; the other targets are their
# steps. Setup is incremental: a second run reuses .venv and the built interfaces (stamps in .venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
# The CPU wheel that this project's machines hold locally; any other spec pulls gigabytes of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_ARGS ?=
EVAL_ARGS ?=
DEMO_DOMAIN_ID ?= 42

# DDS discovery stays on loopback (Kilted ignores ROS_LOCALHOST_ONLY); tests pick their own ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 17
export PYTHONUNBUFFERED := 1

DEPS_STAMP := $(VENV)/.attn6d-deps
IFACE_STAMP := $(VENV)/.attn6d-interfaces
EDITABLE_STAMP := $(VENV)/.attn6d-editable
IFACE_SOURCES := CMakeLists.txt package.xml cmake/pypi_ros_workarounds.cmake scripts/build_interfaces.sh \
	$(wildcard msg/*.msg test/interfaces/*/msg/*.msg test/interfaces/*/CMakeLists.txt test/interfaces/*/package.xml)

.PHONY: help setup test test-fast demo lint train-demo eval-demo bench clean

help:
	@echo "make demo   set up everything (first run: a few minutes) and run the ROS 2 demo"
	@echo "make test   set up everything and run the whole test suite"
	@echo "other:      setup, test-fast, lint, train-demo, eval-demo, bench, clean"

$(PY):
	scripts/check_system.sh
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements/runtime.txt requirements/ros.txt requirements/dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC) -r requirements/runtime.txt -r requirements/ros.txt \
		-r requirements/dev.txt
	touch $@

$(IFACE_STAMP): $(DEPS_STAMP) $(IFACE_SOURCES)
	scripts/build_interfaces.sh $(VENV) $(BUILD)
	touch $@

# Editable install: console scripts in .venv/bin and the checkout on sys.path (compat mode: a plain .pth).
$(EDITABLE_STAMP): $(DEPS_STAMP) setup.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

setup: $(DEPS_STAMP) $(IFACE_STAMP) $(EDITABLE_STAMP)

# pytest's exit code 5 means it collected no tests: that is a failure here, not a pass.
test: setup
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): failing" >&2; exit 1; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The demo runs in a ROS domain of its own (the tests pick theirs per test).
demo: setup
	ROS_DOMAIN_ID=$(DEMO_DOMAIN_ID) $(VENV)/bin/attn6d-demo $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# The command that trained the shipped weights (README, "Shipped weights").
train-demo: setup
	$(VENV)/bin/attn6d-train --config config/train_demo.yaml

eval-demo: setup
	$(VENV)/bin/attn6d-eval --checkpoint models/demo_refiner.pt --objects config/objects.yaml $(EVAL_ARGS)

bench: setup
	$(VENV)/bin/attn6d-bench

clean:
	rm -rf $(BUILD) install log demo_out .pytest_cache .ruff_cache
