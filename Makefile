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

.PHONY: help host venv image mirror mirror-down lab lab-down lab-nodes lab-summary \
        test lint unit mirror-tests molecule molecule-roles molecule-site

help:
	@echo "make lab        bring up the lab (mirror + systemd nodes) and run site.yml against it"
	@echo "make lab-down   remove the lab nodes and the mirror"
	@echo "make test       lint, unit tests, molecule for every role, the whole-site scenario"
	@echo "make molecule ROLE=<role> [CMD=test]   one role's molecule scenario"

host:
	$(LABCTL) host

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt $(wildcard lab/requirements-mirror.txt)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "pip>=24"
	$(VENV)/bin/pip install -q -r requirements-dev.txt $(if $(wildcard lab/requirements-mirror.txt),-r lab/requirements-mirror.txt)
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

# Cheapest first; the mirror is stopped at the end (`make lab` brings it back in a second).
test: lint unit mirror-tests molecule-roles molecule-site
	$(MIRROR) stop
