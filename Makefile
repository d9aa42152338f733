# Two commands on a fresh clone: `make study` and `make test`. Both install into .venv only when needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DVC stages call `fer-study` and `dvc`; they must come from the project's venv.
VENV_PATH := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

# The web tools, from npm: prettier (checks the dashboard's web files) and Vega, Vega-Lite and Vega-Embed (inlined in
# the page `dvc plots show` writes, so that it draws offline), pinned exactly in package.json and package-lock.json.
NPM := $(or $(shell command -v npm),/usr/bin/npm)
NODE_STAMP := node_modules/.installed
PLOTS_TEMPLATE := .dvc/plots_template.html

.PHONY: install study test export readme clean-nbs

# The report tests look at the HTML in headless Chromium (Debian's package); installed once, as root or with sudo.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

install: $(STAMP) $(PLOTS_TEMPLATE)

# Reinstalls only when a requirement or the package metadata changed.
$(STAMP): requirements.txt requirements-lock.txt setup.py settings.ini pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c requirements-lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

export: $(STAMP)
	$(BIN)/nbdev_export

# Reinstalls only when the pins changed (npm ci empties node_modules first, stamp included).
$(NODE_STAMP): package.json package-lock.json | $(NPM)
	$(NPM) ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The page DVC fills (.dvc/config: plots.html_template); DVC would take a missing file's name for the page itself.
$(PLOTS_TEMPLATE): tools/plots_template.py tools/plots_template.html $(NODE_STAMP) $(STAMP)
	$(PY) tools/plots_template.py

$(NPM):
	@command -v apt-get >/dev/null || { echo "the web tools need Node.js and npm (Debian/Ubuntu package npm)"; exit 1; }
	$(SUDO) apt-get install -y -q --no-install-recommends npm || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends npm; }

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the report tests need Chromium at $(CHROMIUM) (Debian/Ubuntu package chromium)"; exit 1; }
	$(SUDO) apt-get install -y -q --no-install-recommends chromium || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium; }

# The package must be exactly what the notebooks export.
test: $(STAMP) $(CHROMIUM) $(PLOTS_TEMPLATE)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- fer_study)" ]; then \
		echo "fer_study/ is out of sync with nbs/: run nbdev_export and commit the result"; \
		git status --porcelain -- fer_study; exit 1; fi
	$(NPM) run --silent check
	# two workers, one thread each: two workers of two threads on two cores slow each other down several times
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(VENV_PATH) OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadfile

# The whole study: the embedded default is written into data/ only when data/ is absent; then dvc repro.
study: $(STAMP) $(PLOTS_TEMPLATE)
	$(VENV_PATH) fer-study materialize
	$(VENV_PATH) dvc repro
	@echo
	@echo "Results: outputs/compare/report.html (study report), outputs/compare/comparison.md (comparison),"
	@echo "         outputs/eval/<variant>/ (test metrics), models/<variant>/ (checkpoints, learning curves),"
	@echo "         outputs/webcam/<video>/report.html (report on each video, beside its tables)."
	@cat outputs/compare/comparison.md

readme: $(STAMP)
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown --stdout nbs/index.ipynb > README.md

clean-nbs: $(STAMP)
	$(BIN)/nbdev_clean

# The study as a site: every notebook of nbs/ as a page (as committed, not run) and the API reference from the
# docstrings, in _site/ (open _site/index.html). Sphinx with MyST-NB and sphinx-autoapi (docs/conf.py), in a venv of
# its own. Rebuilt only when what it is made of changed, by content (nbdev_export rewrites every module, so the files'
# times say nothing). sphinx-autoapi writes its pages into the source folder (and MyST-NB its notebooks beside the
# output folder), so the build reads a copy of nbs/ in _build/ and writes there; a build that fails (any warning fails
# it) leaves the earlier site in place.
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed
SITE := _site
DOCS_BUILD := _build
DOCS_INPUTS = requirements-docs.txt docs/conf.py $(sort $(wildcard nbs/*.ipynb nbs/reports/*.ipynb fer_study/*.py))

.PHONY: docs
docs: $(DOCS_STAMP)
	@sum="$$(sha256sum $(DOCS_INPUTS) | sha256sum)"; \
	if [ "$$sum" = "$$(cat $(SITE)/.built 2>/dev/null)" ]; then echo "$(SITE)/ is up to date"; exit 0; fi; \
	set -ex; rm -rf $(DOCS_BUILD) && mkdir -p $(DOCS_BUILD) && cp -a nbs $(DOCS_BUILD)/src; \
	$(DOCS_VENV)/bin/sphinx-build -q -W --keep-going -b html -c docs -d $(DOCS_BUILD)/doctrees $(DOCS_BUILD)/src \
		$(DOCS_BUILD)/site; \
	echo "$$sum" > $(DOCS_BUILD)/site/.built; rm -rf $(SITE); mv $(DOCS_BUILD)/site $(SITE); rm -rf $(DOCS_BUILD)

$(DOCS_STAMP): requirements-docs.txt
	test -x $(DOCS_VENV)/bin/python || python3 -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-docs.txt
	touch $(DOCS_STAMP)

# `make test` looks at the site in Chromium (tests/test_docs.py).
test: docs
