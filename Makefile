# Two commands on a fresh machine: `make demo` and `make test`. Everything else follows.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint security format install clean translations

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

bench: install
	$(BIN)/python bench/import_bench.py
	$(BIN)/python bench/outbox_bench.py
	$(BIN)/python bench/password_bench.py
	$(BIN)/python bench/new_link_bench.py
	$(BIN)/python bench/staff_sign_in_bench.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The SAST gate (CI runs it): no medium or high finding unless its line says `# nosec BXXX: why`.
security: install
	$(BIN)/bandit -q -c pyproject.toml -r portal -ll

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
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
