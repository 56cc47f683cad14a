# hitless.deploy: the two commands that matter are `make demo` and `make test`.
# Everything they need is installed by the targets below (Debian packages, a pinned virtualenv,
# the lab's rootfs), so they work on a fresh Debian 12 machine run as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
TMP := $(CURDIR)/.tmp
COLLECTIONS := $(TMP)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/hitless/deploy
RELEASES := $(TMP)/releases

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_PIPELINING := True
export ANSIBLE_HOST_KEY_CHECKING := False
export ANSIBLE_NOCOLOR := 1
export ANSIBLE_FORCE_COLOR := 0
export HITLESS_RELEASES := $(RELEASES)

LAB := $(BIN)/python tests/lab/lab.py
LAB_NAME ?= lab
LAB_APP_HOSTS ?= 2
LAB_LB_HOSTS ?= 1
LAB_TOPOLOGY ?= lb
# Debian release of the lab hosts (bullseye, bookworm or trixie) and of the HAProxy-only hosts.
LAB_SUITE ?= bookworm
LAB_LB_SUITE ?= $(LAB_SUITE)
# 1: a queue host (Redis) and a background worker demo-worker@1 on every app host, moved by every deploy.
LAB_WORKERS ?=
# N: N instances of the app on every app host (ports 8080, 8082, ...; clones 8081, 8083, ...),
# each its own HAProxy server HOST-PORT, all swapped by every deploy.
LAB_INSTANCES ?= 1
# python3-venv: the real apps' virtualenvs are built with Debian's /usr/bin/python3, as the lab
# hosts run it (tests/real_apps). npm (for the Node.js app's node_modules) comes with the
# machine's Node.js; Debian's nodejs and npm only where there is none.
APT_PACKAGES := systemd-container debootstrap haproxy iproute2 openssh-client python3-venv

.PHONY: help deps apt venv collection releases unit integration integration-local \
	integration-lab molecule lint sanity docs-check build galaxy-check ee-check test demo deploy lab-up lab-down clean bench bench-venv cpu-budget

help:
	@echo "make demo       boot the lab, deploy the next release under load, draw the result"
	@echo "                (STARTUP=10: the new release takes 10 s to start, like a JVM app)"
	@echo "make deploy     RELEASE=v1|v2|v3|broken|crash|flaky|slow: rolling deploy on the running lab"
	@echo "                (CORE=2.15|2.19|2.21: from a controller with that ansible-core)"
	@echo "make test       install what is needed, then unit, integration, molecule and lint"
	@echo "make lab-up     boot the lab (LAB_APP_HOSTS=N, LAB_LB_HOSTS=M, LAB_TOPOLOGY=lb|single,"
	@echo "                LAB_SUITE=bullseye|bookworm|trixie, LAB_LB_SUITE=... for the HAProxy hosts,"
	@echo "                LAB_WORKERS=1: a queue host and a worker demo-worker@1 on every app host,"
	@echo "                LAB_INSTANCES=N: N instances of the app per app host, on 8080, 8082, ...)"
	@echo "make lab-down   tear the lab down, leaving nothing behind"
	@echo "make bench      naive vs community.general vs rolling under load (BENCH_SIZES=1,2,10 BENCH_RUNS=3),"
	@echo "                results in docs/benchmarks.md and docs/img/bench-*.svg"
	@echo "make cpu-budget where one host's deploy spends its CPU (MITOGEN=1: through mitogen)"

deps: apt venv collection releases

apt: $(TMP)/apt.stamp
$(TMP)/apt.stamp:
	@mkdir -p $(TMP)
	dpkg -s $(APT_PACKAGES) > /dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); }
	command -v npm > /dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; }
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

collection: $(COLLECTION_LINK)
$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

releases: venv
	$(BIN)/python tests/sample_app/build_releases.py $(RELEASES)

unit: venv collection
	$(BIN)/pytest -q tests/unit

# Two workers: these tests mostly wait on ansible CLI start-up, which is CPU-bound.
integration-local: deps
	$(BIN)/pytest -q -n 2 tests/integration/local

# The lab tests boot their own labs (itest, itest-lb2, itest-one; itest-fault for the fault
# tests) and tear them down in teardown, even on failure. Three pytest sessions run side by side
# (one lab each, no sharing; they mostly wait on starts, checks and drains): the fault tests,
# the matrix (Debian 11/13 and mixed fleets, controllers with ansible-core 2.15 and 2.21, the
# real apps, two apps on the same hosts) and the others. tests/integration/lab/fault_matrix.py tabulates what they measured
# from $(TMP)/itest.
# Each session prints its 15 slowest tests (--durations), where CI time goes.
# LAB_SIDE_TARGETS: make targets run once the first session is done, while the longer ones
# still run, so no core is left idle (make test).
LAB_SIDE_TARGETS ?=
# The workers' tests kill the controller mid-move too: with the fault tests, in their own lab.
LAB_FAULT_TESTS := $(addprefix tests/integration/lab/,test_rolling_faults.py test_workers.py)
LAB_MATRIX_TESTS := $(addprefix tests/integration/lab/,test_platforms.py test_controllers.py test_real_apps.py \
  test_several_apps.py test_rq_workers.py)
integration-lab: deps
	@rm -rf $(TMP)/itest && mkdir -p $(TMP)/itest
	@$(BIN)/pytest -q --durations=15 --basetemp=$(TMP)/itest/faults $(LAB_FAULT_TESTS) \
	  > $(TMP)/itest/faults.log 2>&1 & faults=$$!; \
	$(BIN)/pytest -q --durations=15 --basetemp=$(TMP)/itest/matrix $(wildcard $(LAB_MATRIX_TESTS)) \
	  > $(TMP)/itest/matrix.log 2>&1 & matrix=$$!; \
	$(BIN)/pytest -q --durations=15 --basetemp=$(TMP)/itest/others tests/integration/lab \
	  $(addprefix --ignore=,$(LAB_FAULT_TESTS)) \
	  $(addprefix --ignore=,$(LAB_MATRIX_TESTS)) > $(TMP)/itest/others.log 2>&1 & others=$$!; \
	declare -A rc; wait -n -p first $$faults $$matrix $$others && rc[$$first]=0 || rc[$$first]=$$?; \
	side=0; if [ -n "$(LAB_SIDE_TARGETS)" ]; then \
	  $(MAKE) --no-print-directory $(LAB_SIDE_TARGETS) || side=$$?; fi; \
	for pid in $$faults $$matrix $$others; do \
	  [ -n "$${rc[$$pid]:-}" ] || { wait $$pid && rc[$$pid]=0 || rc[$$pid]=$$?; }; done; \
	echo "--- other lab tests:"; cat $(TMP)/itest/others.log; \
	echo "--- matrix tests ($(notdir $(LAB_MATRIX_TESTS))):"; cat $(TMP)/itest/matrix.log; \
	echo "--- fault tests ($(notdir $(LAB_FAULT_TESTS))):"; cat $(TMP)/itest/faults.log; \
	$(BIN)/python tests/integration/lab/fault_matrix.py $(TMP)/itest; \
	echo "lab sessions: others rc $${rc[$$others]}, matrix rc $${rc[$$matrix]}, faults rc $${rc[$$faults]}, side targets rc $$side"; \
	test $${rc[$$others]} -eq 0 && test $$side -eq 0 && test $${rc[$$matrix]} -eq 0 && test $${rc[$$faults]} -eq 0

integration: integration-local integration-lab

molecule: deps
	cd $(CURDIR) && $(BIN)/molecule test --all

# --offline: lint the work tree through ANSIBLE_COLLECTIONS_PATH instead of installing a copy
# of the collection (without the Makefile's environment, a plain `ansible-lint` installs one
# into ./.ansible, see .ansible-lint).
lint: venv collection
	$(BIN)/ansible-lint --offline --profile production roles playbooks molecule tests/lab/site.yml

docs-check: venv collection
	@for m in $$(ls plugins/modules/*.py | xargs -n1 basename | sed 's/\.py$$//'); do \
	  $(BIN)/ansible-doc -t module hitless.deploy.$$m > /dev/null || exit 1; echo "ansible-doc hitless.deploy.$$m: ok"; \
	done
	@for f in $$(ls plugins/filter/*.py | xargs -n1 basename | sed 's/\.py$$//'); do \
	  $(BIN)/ansible-doc -t filter hitless.deploy.$$f > /dev/null || exit 1; echo "ansible-doc -t filter hitless.deploy.$$f: ok"; \
	done
	@for r in $$(ls roles); do \
	  $(BIN)/ansible-doc -t role hitless.deploy.$$r > /dev/null || exit 1; echo "ansible-doc -t role hitless.deploy.$$r: ok"; \
	done

# Builds the tarball, installs it into an empty collections path and reads its docs from there.
build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path $(TMP)/dist .
	rm -rf $(TMP)/install
	env -u ANSIBLE_COLLECTIONS_PATH $(BIN)/ansible-galaxy collection install -p $(TMP)/install \
	  $(TMP)/dist/hitless-deploy-$$(sed -n 's/^version: *//p' galaxy.yml).tar.gz
	ANSIBLE_COLLECTIONS_PATH=$(TMP)/install $(BIN)/ansible-doc -t role hitless.deploy.rolling > /dev/null
	ANSIBLE_COLLECTIONS_PATH=$(TMP)/install $(BIN)/ansible-doc -t module hitless.deploy.haproxy_server > /dev/null
	@echo "build: tarball installs and documents itself from $(TMP)/install"

# ansible-test sanity and units on a copy of the tree, offline but for the pip index
# (tests/sanity/run.sh says how). shellcheck is for ansible-test's shellcheck test.
sanity: venv
	@command -v shellcheck > /dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; }
	bash tests/sanity/run.sh

# Galaxy's importer on the built tarball, configured as galaxy.ansible.com checks an upload but
# offline (tests/galaxy/importer.cfg): metadata and tags, every plugin's and role's docs, role
# READMEs, ansible-lint on the tarball's content. Warnings are printed; an error fails.
galaxy-check: build
	@rm -rf $(TMP)/galaxy && mkdir -p $(TMP)/galaxy
	cd $(TMP)/galaxy && GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy/importer.cfg $(BIN)/python -m galaxy_importer.main \
	  $(TMP)/dist/hitless-deploy-$$(sed -n 's/^version: *//p' $(CURDIR)/galaxy.yml).tar.gz | tee importer.log
	@! grep '^ERROR' $(TMP)/galaxy/importer.log
	@echo "galaxy-check: galaxy-importer accepts the tarball (log: $(TMP)/galaxy/importer.log)"

# The execution environment's build context from execution-environment.yml (no container engine
# needed for `create`): it installs the tarball `build` made, pins the tested ansible-core, checks
# the collection in the image, and ansible-builder finds the collection's system requirements.
ee-check: build
	@rm -rf $(TMP)/ee
	$(BIN)/ansible-builder create --file execution-environment.yml --context $(TMP)/ee --output-filename Containerfile
	@version=$$(sed -n 's/^version: *//p' galaxy.yml); \
	grep -q 'hitless\.deploy' $(TMP)/ee/Containerfile && \
	grep -q "ansible-core==$$(sed -n 's/^ansible-core==//p' requirements.txt)" $(TMP)/ee/Containerfile && \
	grep -qx -- "- name: /build/collections/hitless-deploy-$$version.tar.gz" $(TMP)/ee/_build/requirements.yml && \
	cmp $(TMP)/dist/hitless-deploy-$$version.tar.gz $(TMP)/ee/_build/collections/hitless-deploy-$$version.tar.gz || { \
	  echo "ee-check: $(TMP)/ee does not install hitless-deploy-$$version.tar.gz with the tested ansible-core (execution-environment.yml)" >&2; exit 1; }
	@# Into a file first: grep -q stops reading at the first match, and a pipe would then break
	@# under the writer (BrokenPipeError, seen in CI under pipefail).
	$(BIN)/ansible-builder introspect --sanitize $(TMP)/install > $(TMP)/ee/introspect.txt
	grep -q 'from collection hitless.deploy' $(TMP)/ee/introspect.txt
	@echo "ee-check: $(TMP)/ee/Containerfile installs the collection; build the image with ansible-builder build"

test: deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory unit docs-check integration-local && \
	$(MAKE) --no-print-directory integration-lab LAB_SIDE_TARGETS="sanity sanity-2.21 molecule lint build galaxy-check ee-check" && \
	echo "make test: all stages passed in $$(( $$(date +%s) - start )) s"

lab-up: deps
	$(LAB) up --name $(LAB_NAME) --app-hosts $(LAB_APP_HOSTS) --lb-hosts $(LAB_LB_HOSTS) --topology $(LAB_TOPOLOGY) \
	  --suite $(LAB_SUITE) --lb-suite $(LAB_LB_SUITE) $(if $(filter 1,$(LAB_WORKERS)),--queue-host) \
	  --instances $(LAB_INSTANCES)

lab-down: venv
	$(LAB) down --name $(LAB_NAME)

# Deploys v2 (or the next release when the lab serves v2 already) under the load probe; prints
# the step timeline and `requests: N, failed: F`, draws .tmp/demo/deploy.svg.
demo: lab-up
	@$(BIN)/python tests/lab/demo.py --name $(LAB_NAME) $(if $(RELEASE),--release $(RELEASE)) \
	  $(if $(STARTUP),--startup-delay $(STARTUP)) $(if $(BAKE),--bake $(BAKE)) \
	  $(if $(SERIAL),--serial $(SERIAL))

# The rolling deploy alone, against the running lab: point your own load generator at LB_URL.
# CORE=2.15|2.19|2.21: from a controller with that ansible-core instead of .venv's (it prints its
# version first): 2.15 and 2.19 from .tmp/core-X, 2.21 from a Debian 13 container
# (tests/controller/run.py, docs/development.md "Controllers").
CORE ?=
CONTROLLER = $(if $(CORE),$(BIN)/python tests/controller/run.py --core $(CORE) --)
deploy: venv collection
	@case "$(RELEASE)" in v1|v2|v3|broken|crash|flaky|slow) ;; \
	  *) echo "make deploy: RELEASE='$(RELEASE)': use RELEASE=v1, v2, v3, broken, crash, flaky or slow" >&2; exit 2;; esac
	@test -f .lab/$(LAB_NAME)/inventory.yml && $(LAB) status --name $(LAB_NAME) > /dev/null || { \
	  echo "make deploy: lab $(LAB_NAME) is not up (or not reachable): run 'make lab-up' first" >&2; exit 2; }
	@test -f $(RELEASES)/$(RELEASE).tar.gz || $(MAKE) --no-print-directory releases
	@echo "LB_URL=$$(sed -n 's/^ *lab_lb_url: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' .lab/$(LAB_NAME)/inventory.yml)"
	$(CONTROLLER) $(BIN)/ansible-playbook -i .lab/$(LAB_NAME)/inventory.yml hitless.deploy.rolling \
	  -e hitless_release_src=$(RELEASES)/$(RELEASE).tar.gz \
	  -e '{"rolling_environment": {"STARTUP_DELAY": "1"}, "rolling_drain_grace": 3}'

# ansible-test sanity with ansible-core 2.21 (Python 3.13), in the Debian 13 controller
# container, on its own copy of the tree (tests/controller/sanity.sh, tests/sanity/run.sh);
# SANITY_ARGS adds options (e.g. SANITY_ARGS="--test pylint").
SANITY_ARGS ?=
.PHONY: sanity-2.21
sanity-2.21: venv
	$(BIN)/python tests/controller/run.py --core 2.21 -- bash tests/controller/sanity.sh 2.21 $(SANITY_ARGS)

# The three strategies side by side in the labs benchf1, benchf2, benchf10 (booted and torn
# down by the script), for two apps: the lab's sample app (start-up BENCH_STARTUP, default the
# lab's 1 s) and a slow-starting one (BENCH_SLOW_STARTUP s, as a JVM or Rails app's; empty: not
# benched). Then docs/benchmarks.md and docs/benchmarks-slow-start.md and their plots from the
# JSON they wrote. wrk and a separate virtualenv (the `ansible` package for community.general,
# matplotlib) are benchmark-only dependencies. The reports are written even when a deploy
# failed; the exit status is the benchmarks'.
BENCH_SIZES ?= 1,2,10
BENCH_RUNS ?= 3
BENCH_STARTUP ?=
BENCH_SLOW_STARTUP ?= 10
# Serials of the sizes above 2 hosts; 1+100% is [1, "100%"], the canary then all at once.
BENCH_SERIALS ?= 50%,25%,1+100%
BENCH_VENV := $(TMP)/bench-venv
BENCH_RUN = $(BIN)/python benchmarks/fleet_benchmark.py --sizes $(BENCH_SIZES) --runs $(BENCH_RUNS) \
	  --large-serials $(BENCH_SERIALS) --bench-venv $(BENCH_VENV)
BENCH_REPORT = $(BENCH_VENV)/bin/python benchmarks/fleet_benchmark.py --report

bench-venv: deps
	@test -f $(BENCH_VENV)/.stamp -a $(BENCH_VENV)/.stamp -nt benchmarks/requirements-bench.txt || { \
	  $(PYTHON) -m venv $(BENCH_VENV) && \
	  $(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r benchmarks/requirements-bench.txt && \
	  touch $(BENCH_VENV)/.stamp; }

bench: bench-venv
	@command -v wrk > /dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }
	@status=0; \
	$(BENCH_RUN) --out $(TMP)/bench $(if $(BENCH_STARTUP),--startup-delay $(BENCH_STARTUP)) \
	  || status=$$?; \
	$(if $(BENCH_SLOW_STARTUP),$(BENCH_RUN) --out $(TMP)/bench-slow \
	  --startup-delay $(BENCH_SLOW_STARTUP) || status=$$?;) \
	test -e $(TMP)/bench/fleet-latest.json && $(BENCH_REPORT) $(TMP)/bench/fleet-latest.json \
	  $(if $(BENCH_SLOW_STARTUP),--companion docs/benchmarks-slow-start.md); \
	$(if $(BENCH_SLOW_STARTUP),test -e $(TMP)/bench-slow/fleet-latest.json && \
	  $(BENCH_REPORT) $(TMP)/bench-slow/fleet-latest.json --docs docs/benchmarks-slow-start.md \
	  --img-dir docs/img/slow-start --companion docs/benchmarks.md;) \
	exit $$status

# Where one host's deploy spends its CPU (benchmarks/cpu_budget.py, lab benchcpu booted and torn
# down by the script); CPU_HOSTS=N deploys N app hosts as a fleet ([1, "100%"]); MITOGEN=1 runs
# Ansible through mitogen's strategy, from the bench venv.
CPU_DEPLOYS ?= 4
CPU_HOSTS ?= 1
MITOGEN ?=
cpu-budget: bench-venv
	$(BENCH_VENV)/bin/python benchmarks/cpu_budget.py --deploys $(CPU_DEPLOYS) --app-hosts $(CPU_HOSTS) \
	  $(if $(MITOGEN),--mitogen)

clean: lab-down
	rm -rf $(TMP)
