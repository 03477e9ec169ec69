# Two commands on a fresh machine: `make demo` and `make test`. Everything else follows.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-full bench-tools bench-security lint security format install clean translations sbom audit dast dast-baseline tools

# Every dependency comes from requirements.lock, each file checked against its pinned hash; the
# portal itself then goes in without resolving anything else. (README: "Updating dependencies".)
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo's links point at the port it serves on.
demo: export PORTAL_ENV = development
demo: export PORTAL_BASE_URL = http://127.0.0.1:$(PORT)
# Admins may sign in with their authenticator app in the demo: browsers refuse security keys for
# an IP address such as 127.0.0.1, so with the production rule the demo admin could never get in.
demo: export PORTAL_ADMIN_SECURITY_KEY_REQUIRED = 0
demo: install
	$(BIN)/portal db upgrade
	$(BIN)/portal demo
	@echo ""
	@echo "  The portal:          http://127.0.0.1:$(PORT)/"
	@echo "  The demo's mailbox:  http://127.0.0.1:$(PORT)/dev/mail  (the notices the demo customers got)"
	@echo "  Open a notice there, follow its link, and read the code from the mailbox too."
	@echo "  The staff side: open the set-up link printed above (an authenticator app is needed),"
	@echo "  then the queue is at http://127.0.0.1:$(PORT)/staff/cases and the console at /admin/"
	@echo ""
	@# The outbox worker runs beside the server: in development it "delivers" into /dev/mail.
	$(BIN)/portal outbox work --idle-seconds 1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/flask --app wsgi run --host 127.0.0.1 --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# `make bench` prints one table, each figure beside its floor from the same run (bench/run.py):
# a few minutes on two cores. `make bench-full` (or `make bench BENCH=--full`) runs the issue's
# volumes, a million rows. The page benchmarks load gunicorn with wrk (a small C load generator,
# so that the load does not take the cores it measures); PostgreSQL and Redis as for the tests.
BENCH ?= --quick
bench: install bench-tools
	$(BIN)/python bench/run.py $(BENCH)

bench-full: BENCH = --full
bench-full: bench

bench-tools:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

# The timing checks of security decisions (each against its own baseline): not in the table.
bench-security: install
	$(BIN)/python bench/password_bench.py
	$(BIN)/python bench/new_link_bench.py
	$(BIN)/python bench/staff_sign_in_bench.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The SAST gate (CI runs it): no medium or high finding unless its line says `# nosec BXXX: why`.
security: install
	$(BIN)/bandit -q -c pyproject.toml -r portal -ll

# OPS-01: the SBOM of what requirements.lock installs (CycloneDX JSON, build/sbom.json; CI makes
# it on every run), then `make audit`: pip-audit over the same lock. --strict: a pin that the
# vulnerability service cannot look up fails the audit instead of being skipped (pip-audit
# otherwise prints "No known vulnerabilities found" after skipping every package). docs/dast.md
# ("Dependency audit and SBOM") says why CI does not run it: the service cannot be reached here.
sbom: install
	mkdir -p build
	$(BIN)/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible \
		--of JSON -o build/sbom.json requirements.lock
	@echo "SBOM: build/sbom.json"

audit: sbom
	@$(BIN)/pip-audit --strict --require-hashes --disable-pip -r requirements.lock \
		--progress-spinner off -f json -o build/audit.json > build/audit.log 2>&1; \
	status=$$?; cat build/audit.log; \
	if grep -q "could not be audited" build/audit.log; then \
		echo "audit: FAILED: a pinned release could not be looked up, so nothing is claimed. pip-audit"; \
		echo "audit: asks PyPI's JSON API for each release (/pypi/NAME/VERSION/json); from this machine"; \
		echo "audit: it answers 404 for every release, and OSV cannot be reached. docs/dast.md."; \
		exit 1; \
	fi; \
	if [ $$status -ne 0 ]; then echo "audit: FAILED: known vulnerabilities above (build/audit.json)"; fi; \
	exit $$status

# The scanner for `make dast` lives apart: wapiti 3.3 needs Python 3.12 or newer (the portal runs
# on 3.11) and pins libraries of its own. Installed from its own lock, every file hash-checked.
TOOLS_VENV   := .venv-tools
TOOLS_STAMP  := $(TOOLS_VENV)/.installed
TOOLS_PYTHON ?= $(shell for p in python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.1[234].*/bin/python3); do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)

$(TOOLS_STAMP): tools/requirements-tools.lock
	@test -n "$(TOOLS_PYTHON)" || { echo "tools: wapiti needs Python 3.12 or newer; set TOOLS_PYTHON"; exit 1; }
	test -x $(TOOLS_VENV)/bin/python || $(TOOLS_PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --require-hashes -r tools/requirements-tools.lock
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# OPS-03: the portal under gunicorn with production settings, scanned by wapiti (tools/dast.sh);
# reports in build/dast/, non-zero exit on a blocking finding. docs/dast.md. The full active scan
# takes about 3 minutes (the nightly job); the passive baseline about 30 seconds (CI, every run).
dast: install tools
	tools/dast.sh

dast-baseline: install tools
	DAST_MODULES=passive DAST_SCAN_SECONDS=60 tools/dast.sh

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# After changing user-facing text: refresh the catalogues, translate, then compile (the .mo files
# are committed so that a plain `pip install` serves every language). tests/test_translations.py
# names every customer string still without Spanish. No obsolete entries are kept: Babel keeps an
# old one beside a message that came back, and GNU msgfmt refuses the duplicate.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o portal/translations/messages.pot .
	$(BIN)/pybabel update -i portal/translations/messages.pot -d portal/translations --width 100 \
		--ignore-obsolete
	$(BIN)/pybabel compile -d portal/translations

clean:
	rm -rf $(VENV) $(TOOLS_VENV) build .pytest_cache .ruff_cache *.egg-info
