# mailferry developer entry points.
#
#   make test    install what is missing (Debian packages, .venv, k8s binaries), lint, run pytest
#   make lint    ruff + mypy only
#   make deps    just the installs (apt packages, .venv, k8s binaries)
#
# Works on a fresh Debian 12 as root with Go (>= 1.24) and Python >= 3.11; warm runs skip
# every install step. Tests start their own servers on loopback (see tests/fixtures/).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

# Go from the official tarball lives in /usr/local/go/bin, which a non-login shell may not have.
export PATH := $(PATH):/usr/local/go/bin

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Test files run on this many pytest-xdist workers (each with its own API server, Dovecots, ...): most
# tests wait on real servers' timers, so 3 workers on 2 cores cut the wall time. PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 3
K8S_BUILD := tests/tools/build-k8s-binaries.sh

# Debian packages the tests run for real (dovecot-lmtpd: notices delivered into the test Dovecot; plus isync for benchmarks, sqlite3 for poking at DBs, strace for the credentials-on-disk test).
APT_PACKAGES := dovecot-core dovecot-imapd dovecot-lmtpd pdns-server pdns-backend-sqlite3 prometheus isync sqlite3 strace
# Their system services: we never use them (tests run private instances), so keep them stopped.
APT_SERVICES := dovecot pdns prometheus

.PHONY: help test lint deps apt-deps venv k8s-bin unit integration e2e clean

help:
	@grep -E '^#   make ' $(MAKEFILE_LIST) | sed 's/^#   //'

# ---------------------------------------------------------------------------- installs

apt-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=" $$p"; \
	done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=" python3-venv"; fi; \
	if [[ -z "$$missing" ]]; then exit 0; fi; \
	echo "make: installing Debian packages:$$missing"; \
	sudo=""; [[ $$(id -u) -eq 0 ]] || sudo="sudo"; \
	created_policy=""; \
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then \
	  printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; \
	  $$sudo chmod 755 /usr/sbin/policy-rc.d; created_policy=1; \
	fi; \
	trap '[[ -n "$$created_policy" ]] && $$sudo rm -f /usr/sbin/policy-rc.d' EXIT; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	for s in $(APT_SERVICES); do \
	  if [[ -d /run/systemd/system ]]; then $$sudo systemctl disable --now "$$s" >/dev/null 2>&1 || true; \
	  elif [[ -x "/etc/init.d/$$s" ]]; then $$sudo "/etc/init.d/$$s" stop >/dev/null 2>&1 || true; fi; \
	done

# .venv is reinstalled only when pyproject.toml's content changes (hash in the stamp file).
venv:
	@want="$$(sha256sum pyproject.toml | cut -d' ' -f1) $$($(PYTHON) -c 'import sys; print(sys.version.split()[0])')"; \
	if [[ -x $(PY) && -f $(VENV)/.mailferry-stamp && "$$(cat $(VENV)/.mailferry-stamp)" == "$$want" ]]; then exit 0; fi; \
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mailferry needs Python >= 3.11")'; \
	echo "make: installing .venv (pip install -e '.[test]')"; \
	[[ -x $(PY) ]] || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip; \
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'; \
	echo "$$want" > $(VENV)/.mailferry-stamp

# kube-apiserver, etcd, kubectl, helm built from Go modules into ~/.cache/mailferry (honours
# KUBEBUILDER_ASSETS); a no-op when they are there already.
k8s-bin:
	@command -v go >/dev/null || { echo "make: the Go toolchain (>= 1.24) is required to build kube-apiserver/etcd/kubectl/helm" >&2; exit 1; }
	@bash $(K8S_BUILD) >/dev/null

deps: apt-deps venv k8s-bin

# ---------------------------------------------------------------------------- checks

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests/fixtures tests/conftest.py

# Lint and pytest both run (a lint failure still fails the target, after the tests).
# MAILFERRY_K8S_BIN tells tests/fixtures/kubeapi.py where the binaries are.
test: deps
	@lint=0; $(MAKE) --no-print-directory lint || lint=$$?; \
	bin="$$(bash $(K8S_BUILD))"; \
	echo "make: pytest (k8s binaries: $$bin)"; \
	tests=0; MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(VENV)/bin/pytest -ra -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || tests=$$?; \
	if [[ $$lint -ne 0 ]]; then echo "make: lint FAILED (ruff/mypy output above)" >&2; fi; \
	if [[ $$tests -ne 0 ]]; then echo "make: pytest FAILED (exit $$tests)" >&2; exit $$tests; fi; \
	exit $$lint

unit: venv
	$(VENV)/bin/pytest -ra tests/unit $(PYTEST_ARGS)

integration: deps
	@bin="$$(bash $(K8S_BUILD))"; MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(VENV)/bin/pytest -ra tests/integration $(PYTEST_ARGS)

e2e: deps
	@bin="$$(bash $(K8S_BUILD))"; MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(VENV)/bin/pytest -ra tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# ---------------------------------------------------------------------------- other targets
# demo:  runs a whole migration locally (issue 4)     -- added by its owner below
# bench: benchmarks against doveadm/imapsync/mbsync  -- added by its owner below
# chaos: fault-injection scenarios                     -- added by its owner below

# bench: time mailferry vs mbsync and doveadm backup (imapc) on a generated corpus; prints PASS/MISS
# per target and writes docs/benchmarks.md. Never fails on a missed target. BENCH_ARGS="--repeat 1 ..."
# Then contacts/calendars: mailferry vs vdirsyncer on Radicale (tests/bench/groupware.py), items/s and
# HTTP requests for first copies (alternating, medians), a no-op round and a round of changes.
# BENCH_GROUPWARE_ARGS="--events 500 --repeat 1"
# Then the ESP event endpoint (tests/bench/esp_events.py): verified events/s per provider and its peak RSS.
# BENCH_ESP_ARGS="--requests 6000 --concurrency 32"
BENCH_ARGS ?=
BENCH_GROUPWARE_ARGS ?=
BENCH_ESP_ARGS ?=
.PHONY: bench
bench: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/bench/run.py $(BENCH_ARGS)
	$(PY) tests/bench/groupware.py $(BENCH_GROUPWARE_ARGS)
	$(PY) tests/bench/esp_events.py $(BENCH_ESP_ARGS)

# bench-tls: the mail part of `make bench` over TLS, as real providers serve it: both Dovecots serve
# implicit TLS (IMAPS) with a test CA, and mailferry, mbsync and doveadm backup's imapc all connect over
# TLS and verify the certificates. Same corpus, repeats and tables (tests/bench/run.py --tls); writes its
# own section of docs/benchmarks.md (<!-- bench-tls:begin -->). BENCH_TLS_ARGS="--users 4 --messages 300"
BENCH_TLS_ARGS ?=
.PHONY: bench-tls
bench-tls: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/bench/run.py --tls $(BENCH_TLS_ARGS)

# demo: one command, fresh machine: local API server, two Dovecots with 20 generated mailboxes, the
# operator and the local job runner; a MailMigration with live progress, a delta round, verify summary.
DEMO_ARGS ?=
.PHONY: demo bench-operator
demo: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/tools/demo.py $(DEMO_ARGS)

# bench-operator: a 5,000-row inventory -> seconds until every MailboxSync and the first batch Job
# exist, and the operator's peak RSS (a benchmark, not a test). BENCH_OPERATOR_ARGS="--rows 1000"
BENCH_OPERATOR_ARGS ?=
bench-operator: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/tools/demo_bench.py $(BENCH_OPERATOR_ARGS)

# bench-delta: one no-op delta round and one with 1 % of the mailboxes changed (N mailboxes x 6 folders,
# operator + API server + job runner): wall time, CPU/mailbox per process, API requests/mailbox, peak RSS,
# then mbsync and doveadm backup loops over the same mailboxes (tests/bench/delta_round.py; a benchmark,
# not a test). The issue's figure, on a quiet machine (about an hour): BENCH_DELTA_ARGS="--mailboxes 10000
# --peer-sample 1000 --noop-status-interval 1h --delta-batch-size 200" (the last two: extra rounds under
# those settings, same run).
BENCH_DELTA_ARGS ?=
.PHONY: bench-delta
bench-delta: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/bench/delta_round.py $(BENCH_DELTA_ARGS)

# bench-follow: live follow mode (issue 20): N mailboxes followed by one follower Job (operator + API server
# + job runner, source behind the fault proxy), mail APPENDed at a steady rate with a network cut and a
# source Dovecot restart mid-run -> p50/p95/p99 lag (end to end and the follower's histogram), lost and
# duplicated messages, worker RSS and CPU (tests/bench/follow.py; a benchmark, not a test).
# BENCH_FOLLOW_ARGS="--mailboxes 1000 --rate 20 --seconds 60" (the defaults), "--no-faults".
BENCH_FOLLOW_ARGS ?=
.PHONY: bench-follow
bench-follow: deps
	@bin="$$(bash $(K8S_BUILD))"; \
	MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" $(PY) tests/bench/follow.py $(BENCH_FOLLOW_ARGS)

# chaos: fault-injection scenarios against the real worker and Dovecot (tests/chaos/run.py): hostile IMAP
# server at full volume, 20 kill -9 in bulk and in delta, random TCP resets, [THROTTLED]/BYE injected, Dovecot
# SIGKILL mid-copy. Prints lost/duplicated/time-to-recover per scenario; fails if an invariant breaks.
# CHAOS_ARGS="--scenario kill9 --kills 20 --messages 3000 --json /tmp/chaos.json"
# Then contacts/calendars (tests/chaos/groupware_kill.py): kill -9 of the worker at random points of a
# full-size first copy and of a delta round; 0 lost, 0 duplicated. CHAOS_GROUPWARE_ARGS="--kills 5"
# Then a SendingCutover ramp driven by signed ESP events with the operator SIGKILLed in every step
# (tests/e2e/test_sendingcutover_ramp.py, ~2 min; skipped by make test).
CHAOS_ARGS ?=
CHAOS_GROUPWARE_ARGS ?=
.PHONY: chaos
chaos: deps
	$(PY) tests/chaos/run.py $(CHAOS_ARGS)
	$(PY) tests/chaos/groupware_kill.py $(CHAOS_GROUPWARE_ARGS)
	@bin="$$(bash $(K8S_BUILD))"; MAILFERRY_SENDING_KILLS=1 MAILFERRY_K8S_BIN="$$bin" PATH="$$bin:$$PATH" \
	$(VENV)/bin/pytest -ra tests/e2e/test_sendingcutover_ramp.py
