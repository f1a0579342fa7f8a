# The project's two commands: `make lab` (bring up the local lab and converge it)
# and `make test` (everything CI runs). Both do their own set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
export CHATFLEET_ROOT := $(CURDIR)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0

LABCTL := python3 lab/labctl.py
MIRROR := $(VENV)/bin/python lab/mirror.py
ROLES_WITH_MOLECULE := $(sort $(patsubst roles/%/molecule/default/molecule.yml,%,$(wildcard roles/*/molecule/default/molecule.yml)))
# `make test` runs the molecule scenarios three at a time (lab/molecule_lanes.py), each next one in this
# order taking the first free slot: longest first by measured time (docs/TIMINGS.md), so the short
# ones fill in around the long ones and the slots end close together. Three on two cores: with two,
# the cores idled 12% of the run (both scenarios waiting on services or timers at once). The first,
# the whole site, is the critical path: the others run their controller side at niceness
# MOLECULE_NICE and take the CPU it leaves. Every node shares the host's network, so scenarios that
# run at the same time listen on different ports: the whole site serves the lab's ports, every role
# scenario has ports of its own.
MOLECULE_JOBS := 3
MOLECULE_NICE := 10
SCENARIOS_LONGEST_FIRST := molecule/site roles/chatchat_services roles/chatchat roles/milvus roles/models \
          roles/python_env roles/conda roles/fschat_patch roles/nexus_mirror roles/git_lfs roles/gpu_preflight
# Least number of passed test functions per proof category (lab/proof_report.py, docs/PROOF.md): the
# counts of the last full run, so that a marker lost in an edit fails the run.
PROOF_MINIMUMS := bad_input=26 fault=18 idempotence=14 check_mode=13 security=22

.PHONY: help host venv image mirror mirror-down lab lab-down lab-nodes lab-summary \
        test lint unit mirror-tests molecule molecule-roles molecule-site molecule-lanes bench docs collection

help:
	@echo "make lab        bring up the lab (mirror + systemd nodes) and run site.yml against it"
	@echo "make lab-down   remove the lab nodes and the mirror"
	@echo "make test       lint, unit tests, molecule for every role, the whole-site scenario"
	@echo "make molecule ROLE=<role> [CMD=test]   one role's molecule scenario"
	@echo "make bench      every benchmark, written to docs/BENCHMARKS.md (BENCH_RUNS=3, BENCH_ONLY=...)"
	@echo "make docs       the roles' README variables tables, from their meta/argument_specs.yml"
	@echo "make collection dist/chatfleet-chatchat-<version>.tar.gz, the roles, plugins and playbooks as a collection"

host:
	$(LABCTL) host

# --no-compile: Python compiles each module the tools import when it first imports it, instead of
# every installed module up front (most are never imported).
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt pyproject.toml $(wildcard lab/requirements-mirror.txt)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "pip>=24"
	$(VENV)/bin/pip install -q --no-compile -r requirements-dev.txt $(if $(wildcard lab/requirements-mirror.txt),-r lab/requirements-mirror.txt)
	touch $@

image: host
	$(LABCTL) image

mirror: host venv image
	$(MIRROR) up

mirror-down:
	$(MIRROR) stop

lab-nodes: mirror
	$(LABCTL) nodes-up

lab: lab-nodes
	ansible-playbook -i inventories/lab/hosts.yml site.yml
	$(LABCTL) summary

lab-summary:
	$(LABCTL) summary

lab-down:
	$(LABCTL) down

lint: venv
	yamllint -s .
	ansible-lint --profile production --offline

unit: venv
	pytest -q tests/unit

mirror-tests: mirror
	pytest -q tests/lab

molecule: mirror
	cd roles/$(ROLE) && molecule $(or $(CMD),test)

molecule-roles: mirror
	@for role in $(ROLES_WITH_MOLECULE); do \
	  echo "=== molecule test: $$role"; \
	  (cd roles/$$role && molecule test) || exit 1; \
	done

molecule-site: mirror
	molecule test -s site

molecule-lanes: mirror
	@test "$(sort $(filter roles/%,$(SCENARIOS_LONGEST_FIRST)))" = "$(addprefix roles/,$(ROLES_WITH_MOLECULE))" \
	  || { echo "SCENARIOS_LONGEST_FIRST must list every role scenario: $(ROLES_WITH_MOLECULE)"; exit 1; }
	rm -rf artifacts/proof
	python3 lab/molecule_lanes.py --jobs $(MOLECULE_JOBS) --nice $(MOLECULE_NICE) $(SCENARIOS_LONGEST_FIRST)
	python3 lab/proof_report.py $(addprefix --min ,$(PROOF_MINIMUMS))

# The variables tables of the roles' READMEs, generated from meta/argument_specs.yml (a unit test
# fails when one is out of date).
docs: venv
	$(VENV)/bin/python tools/role_readme.py

# The roles, plugins and playbooks as the chatfleet.chatchat collection, for controllers without git
# (tools/build_collection.py; README "Controllers without git, AWX and execution environments").
collection: venv
	$(VENV)/bin/python tools/build_collection.py --out dist

# Every benchmark in one run, written to docs/BENCHMARKS.md (lab/bench/run_all.py); rebuilds the lab.
BENCH_RUNS ?= 3
BENCH_ONLY ?= cold,noop,scale,models,pip,settings
BENCH_SCALE ?= 1,2,4,8
bench: mirror
	$(VENV)/bin/python lab/bench/run_all.py --runs $(BENCH_RUNS) --only $(BENCH_ONLY) --scale $(BENCH_SCALE)

# The host's packages first (the unit tests use tmux), then the checks that need no node, side by side
# (lint, the unit tests, the mirror and its tests; each one's output kept together), then the scenarios; the mirror is stopped at the end (`make lab`
# brings it back in a second).
test: venv host
	$(MAKE) --jobs 3 --output-sync=target lint unit mirror-tests
	$(MAKE) molecule-lanes
	$(MIRROR) stop
