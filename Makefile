# One command surface for people and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-sqlite test-postgresql test-reliability lint format migrations-check bench soak fuzz-api audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with zeroparty and its development tools

run: $(STAMP)  ## run the service on the embedded SQLite default with the demo site
	$(BIN)/zeroparty serve

test: $(STAMP)  ## the whole suite: lint, types, migrations, tests on SQLite and PostgreSQL
	scripts/test

test-sqlite: $(STAMP)
	ZEROPARTY_TEST_DB=sqlite $(BIN)/pytest

test-postgresql: $(STAMP)
	ZEROPARTY_TEST_DB=postgresql $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrations-check: $(STAMP)
	scripts/migrations-check

bench: $(STAMP)  ## run the benchmarks and rewrite BENCHMARKS.md
	$(BIN)/python -m bench.run_all

soak: $(STAMP)  ## sustained mixed load, 1/2/4 workers, both databases (figures to BENCHMARKS.md)
	$(BIN)/python -m bench.soak --seconds 120 --workers 1,2,4 --db sqlite,postgresql

test-reliability: $(STAMP)  ## only the reliability suite (tests/reliability/), on both databases
	ZEROPARTY_TEST_DB=sqlite $(BIN)/pytest -m reliability
	ZEROPARTY_TEST_DB=postgresql $(BIN)/pytest -m reliability

fuzz-api: $(STAMP)  ## schemathesis with thousands of generated requests per run (see tests/reliability)
	ZEROPARTY_FUZZ_EXAMPLES=500 $(BIN)/pytest -m reliability tests/reliability/test_openapi_fuzz.py

audit: $(STAMP)  ## pip-audit of the installed dependencies
	scripts/audit-deps

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov test-artifacts

# --- Console screenshots (issue 18): the dashboard, lead list and a lead's page at 390 and
# 1280 px, taken in Chromium by the console's browser test, into docs/screenshots/.
.PHONY: screenshots
screenshots: $(STAMP)  ## refresh docs/screenshots/: console, forms, quiz, preference center, request and error pages
	ZEROPARTY_TEST_DB=sqlite ZEROPARTY_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q \
	  tests/console/test_console_browser.py tests/console/test_requests_browser.py \
	  tests/capture/test_browser.py tests/preference_center/test_browser.py \
	  tests/preference_center/test_phone_browser.py tests/zeroparty/test_error_pages_browser.py

# --- Languages (README: Languages): extract the texts people see from each package's
# Python code and templates into <package>/locale/messages.pot, then update (or start)
# each language's catalogue <package>/locale/<lang>/LC_MESSAGES/messages.po. Catalogues
# are compiled in memory at start-up: no .mo file is built or committed.
TRANSLATED := zeroparty:templates/zeroparty capture:templates/capture preference_center:templates/preference_center consent_ledger:
LANGUAGES  ?= de
.PHONY: translations
translations: $(STAMP)  ## extract messages and update every catalogue (LANGUAGES="de fr" adds one)
	@set -e; for pair in $(TRANSLATED); do \
	  package=$${pair%%:*}; templates=$${pair#*:}; \
	  $(BIN)/pybabel -q extract -F babel.cfg -k N_ --sort-by-file --no-wrap \
	    --project=zeroparty --copyright-holder="zeroparty contributors" \
	    -o $$package/locale/messages.pot $$package $$templates; \
	  for lang in $(LANGUAGES); do \
	    if [ -f $$package/locale/$$lang/LC_MESSAGES/messages.po ]; then \
	      $(BIN)/pybabel -q update --no-wrap -i $$package/locale/messages.pot -d $$package/locale -l $$lang; \
	    else \
	      $(BIN)/pybabel -q init --no-wrap -i $$package/locale/messages.pot -d $$package/locale -l $$lang; \
	    fi; \
	  done; \
	done
