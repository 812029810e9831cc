# The README's two commands for a fresh machine are `make demo` and `make test`; the other targets are their
# steps. Setup is incremental: a second run reuses .venv and the built interfaces (stamps in .venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
# The ROS 2 distribution of the PyPI wheels: jazzy (LTS, the default) or kilted. One venv holds one distribution:
# Jazzy's is .venv, another's .venv-<distro> (e.g. `make test ROS_DISTRO=kilted` uses .venv-kilted).
ROS_DISTRO ?= jazzy
ROS_DISTROS := jazzy kilted
ifeq ($(filter $(ROS_DISTRO),$(ROS_DISTROS)),)
$(error ROS_DISTRO must be one of: $(ROS_DISTROS); got '$(ROS_DISTRO)')
endif
VENV ?= $(if $(filter jazzy,$(ROS_DISTRO)),.venv,.venv-$(ROS_DISTRO))
ROS_REQUIREMENTS := requirements/ros-$(ROS_DISTRO).txt
PY := $(VENV)/bin/python
BUILD ?= $(if $(filter jazzy,$(ROS_DISTRO)),build,build-$(ROS_DISTRO))
# The ROS 2 sources for tests and CI (launch, launch_ros, ros2cli, message_filters, tf2_ros, cv_bridge, the real
# vision_msgs and tf2_msgs): installed into the venv when this folder exists (CI; not a user's fresh clone).
# `make test UPSTREAM=` sets up without them, as a user's clone does.
UPSTREAM ?= $(wildcard ../shared/upstream)
# The CPU wheel that this project's machines hold locally; any other spec pulls gigabytes of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_ARGS ?=
EVAL_ARGS ?=
DEMO_DOMAIN_ID ?= 42

# DDS discovery stays on loopback (Kilted ignores ROS_LOCALHOST_ONLY); tests pick their own ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DISTRO
export ROS_DOMAIN_ID ?= 17
export PYTHONUNBUFFERED := 1

DEPS_STAMP := $(VENV)/.attn6d-deps
# Interfaces built from the upstream vision_msgs/tf2_msgs or from the test-only copies: one stamp each.
IFACE_STAMP := $(VENV)/.attn6d-interfaces$(if $(UPSTREAM),-upstream,)
EDITABLE_STAMP := $(VENV)/.attn6d-editable
# Written by scripts/install_upstream.sh: what it installed (the tests read it).
UPSTREAM_STAMP := $(VENV)/.attn6d-upstream
IFACE_SOURCES := CMakeLists.txt package.xml cmake/pypi_ros_workarounds.cmake scripts/build_interfaces.sh \
	scripts/cmake_into_venv.sh \
	$(wildcard msg/*.msg test/interfaces/*/msg/*.msg test/interfaces/*/CMakeLists.txt test/interfaces/*/package.xml)
UPSTREAM_SOURCES := scripts/install_upstream.sh scripts/cmake_into_venv.sh requirements/upstream.txt \
	cmake/upstream_project_include.cmake cmake/pypi_ros_workarounds.cmake cmake/upstream/cv_bridge/CMakeLists.txt \
	$(wildcard $(UPSTREAM)/SOURCES.tsv)

.PHONY: help setup check-venv test test-fast demo lint train-demo eval-demo bench clean

help:
	@echo "make demo   set up everything (first run: a few minutes) and run the ROS 2 demo"
	@echo "make test   set up everything and run the whole test suite"
	@echo "other:      setup, test-fast, lint, train-demo, eval-demo, bench, clean"
	@echo "options:    ROS_DISTRO=jazzy (default, venv .venv) or kilted (venv .venv-kilted);"
	@echo "            UPSTREAM=DIR: the ROS 2 sources for tests (default ../shared/upstream if present)"

$(PY):
	scripts/check_system.sh
	$(PYTHON) -m venv $(VENV)
	echo $(ROS_DISTRO) > $(VENV)/.attn6d-ros-distro

# An existing venv must hold the distribution asked for (scripts/check_venv_distro.sh says what to do if not).
check-venv:
	@scripts/check_venv_distro.sh $(VENV) $(ROS_DISTRO)

$(DEPS_STAMP): requirements/runtime.txt $(ROS_REQUIREMENTS) requirements/ros-common.txt requirements/dev.txt \
		| check-venv $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC) -r requirements/runtime.txt -r $(ROS_REQUIREMENTS) \
		-r requirements/dev.txt
	touch $@

$(IFACE_STAMP): $(DEPS_STAMP) $(IFACE_SOURCES)
	scripts/build_interfaces.sh $(VENV) $(BUILD) $(UPSTREAM)
	touch $@

$(UPSTREAM_STAMP): $(DEPS_STAMP) $(IFACE_STAMP) $(UPSTREAM_SOURCES)
	scripts/install_upstream.sh $(VENV) $(BUILD) $(UPSTREAM)

# Editable install: console scripts in .venv/bin and the checkout on sys.path (compat mode: a plain .pth).
$(EDITABLE_STAMP): $(DEPS_STAMP) setup.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

setup: check-venv $(DEPS_STAMP) $(IFACE_STAMP) $(EDITABLE_STAMP) $(if $(UPSTREAM),$(UPSTREAM_STAMP),)

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
	$(VENV)/bin/ruff format --check .

# The first of the two trainings of the shipped weights (v1; docs/results.md, "Shipped weights"); the shipped
# file is its robust fine-tune: attn6d-train --config config/train_demo_robust.yaml (the steps are in that file).
train-demo: setup
	$(VENV)/bin/attn6d-train --config config/train_demo.yaml

eval-demo: setup
	$(VENV)/bin/attn6d-eval --checkpoint models/demo_refiner.pt --objects config/objects.yaml $(EVAL_ARGS)

bench: setup
	$(VENV)/bin/attn6d-bench

clean:
	rm -rf build build-* install log demo_out .pytest_cache .ruff_cache
