# The two commands that matter on a fresh machine: `make run` and `make test`.
# Needs only python3.11 (or a python3 that is 3.11) and make.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint format bench venv migrate seed collectstatic check clean manage

$(BIN)/python:
	$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, got " + sys.version'
	$(PY) -m venv $(VENV)

# `make run` installs the runtime only; `make test` adds the test tools.
$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

venv: $(DEV_STAMP)

# Embedded defaults: SQLite (var/db.sqlite3), in-memory channel layer, local
# files (var/media), the offline engine. DEBUG is on only for this local run.
# runserver is daphne's (first in INSTALLED_APPS): one process serving HTTP
# and WebSockets through voiceai.asgi.
run: export DEBUG ?= 1
run: export TRANSCRIPTION_ENGINE ?= local
run: export PORT := $(PORT)
run: $(RUNTIME_STAMP)
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

migrate: export DEBUG ?= 1
migrate: $(RUNTIME_STAMP)
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput

seed: export DEBUG ?= 1
seed: migrate
	$(BIN)/python manage.py seed_demo

collectstatic: export DEBUG ?= 1
collectstatic: $(RUNTIME_STAMP)
	$(BIN)/python manage.py collectstatic --noinput -v 0

# Any management command against the same local setup as `make run` (DEBUG
# on, so no SECRET_KEY is needed; the database migrated first), e.g.
# make manage ARGS='create_clinic --name "Sakura Clinic" --slug sakura'
manage: export DEBUG ?= 1
manage: $(RUNTIME_STAMP)
	@mkdir -p var
	@$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py $(ARGS)

# The suite runs against the machine's real PostgreSQL and Redis (as in CI).
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
test: export REDIS_URL ?= redis://127.0.0.1:6379/0
test: export TEST_DATABASE_NAME ?= test_voiceai
test: $(DEV_STAMP)
	mkdir -p var/static
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	mkdir -p var
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DEBUG=1 $(BIN)/python manage.py check
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

# The benchmark of issues 6 and 10 (docs/benchmarks.md; ~20 min; 2 cores:
# servers on core 0, load generator on core 1). PostgreSQL and Redis as for
# `make test`; it creates and migrates its own database. Options:
# BENCH_ARGS="--quick" (short capacity trials), BENCH_ARGS="--crowds-only"
# (only the crowd trials of issue 10, a few minutes).
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): bench/requirements.txt $(DEV_STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench: export BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/voiceai_bench
bench: export BENCH_REDIS_URL ?= redis://127.0.0.1:6379/7
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --write-docs $(BENCH_ARGS)

# The soak benchmark of issue 16 (docs/benchmarks.md, "Soak"; 60 min by
# default): 300 producers with sessions ending and starting, viewers on a
# share, on one production launcher; RSS, Python heap growth (tracemalloc),
# fds, PostgreSQL connections and Redis keys every 30 s, and a plot
# (docs/soak-rss.png). Options: SOAK_ARGS="--minutes 10 --producers 100".
.PHONY: soak
soak: export BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/voiceai_soak
soak: export BENCH_REDIS_URL ?= redis://127.0.0.1:6379/8
soak: $(BENCH_STAMP)
	$(BIN)/python -m bench.soak --write-docs $(SOAK_ARGS)

# The relay's mechanism comparison (docs/relay.md, ~1.5 min; publisher on
# core 0, subscriber on core 1): channels-redis core and pub/sub layers vs
# the session relay, batched and unbatched. Options: RELAY_BENCH_ARGS.
.PHONY: bench-relay
bench-relay: export BENCH_REDIS_URL ?= redis://127.0.0.1:6379/7
bench-relay: $(DEV_STAMP)
	$(BIN)/python -m bench.relay_bench $(RELAY_BENCH_ARGS)

# Production-settings deploy checks (needs SECRET_KEY and ALLOWED_HOSTS set).
check: $(RUNTIME_STAMP)
	$(BIN)/python manage.py check --deploy

clean:
	rm -rf $(VENV) var

# The AWS deployment as code (issue 7; docs/deployment.md). The CDK and
# cfn-lint (~600 MB, needs Node.js; Node 20 works but jsii calls it
# end-of-life, hence the silenced banner) go into the dev venv only, never into
# requirements.txt or the app image. `make test` needs them for tests/infra.
INFRA_STAMP := $(VENV)/.installed-infra
$(INFRA_STAMP): infra/requirements.txt $(DEV_STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

test: $(INFRA_STAMP)

.PHONY: infra-synth infra-test
# Synthesizes infra/cdk.out and lints it; no AWS account needed. Context as
# JSON, e.g. CDK_CONTEXT_JSON='{"certificateArn": "arn:...", "domainName":
# "voice.example.jp"}' make infra-synth; without it the template asks for
# the certificate and host name as CloudFormation parameters.
infra-synth: export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
infra-synth: $(INFRA_STAMP)
	$(BIN)/python -m infra.app
	$(BIN)/cfn-lint infra/cdk.out/*.template.json

infra-test: export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
infra-test: $(INFRA_STAMP)
	$(BIN)/python -m pytest tests/infra tests/ops -q

# The local cluster (issue 7; docs/operations.md, "Local cluster"): app
# processes (python -m voiceai.ops.serve) behind HAProxy (apt-get installed when
# missing) on the machine's PostgreSQL (database voiceai_cluster, created if
# missing) and Redis (db CLUSTER_REDIS_DB, default 3). Options:
# CLUSTER_PROCESSES (2), CLUSTER_PORT (8080), CLUSTER_STATS_PORT (8404),
# CLUSTER_DATABASE_URL, CLUSTER_REDIS_URL, TRANSCRIPTION_ENGINE (fake).
# Prints the URLs; Ctrl-C drains and stops everything.
.PHONY: cluster
cluster: $(RUNTIME_STAMP)
	$(BIN)/python ops/cluster/cluster.py
