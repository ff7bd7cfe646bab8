# Two commands on a fresh machine: `make book` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SCALE ?= quick

.PHONY: book test data setup setup-dev browser clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# Fashion-MNIST: the Debian package dataset-fashion-mnist (apt-get, where we are root), else the
# upstream download, checked against data_manifest/fashion_mnist.json either way.
data: setup
	$(PY) -m ssl_src data fetch fashion_mnist

# Execute every chapter at $(SCALE) (default quick) and build the HTML book. At the quick scale the runs
# are read from results/quick/ (minutes); RETRAIN=1 trains them again (hours).
RETRAIN ?= 0
book: data
	$(PY) -m ssl_src book --scale $(SCALE) $(if $(filter-out 0,$(RETRAIN)),--retrain,)

# Debian's headless Chromium, for the test that reads every page of the smoke book as a browser shows it.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "note: no chromium (install Debian's chromium as root): the page test will be skipped"; fi

# Unit and smoke tests, the replay check of the published results, then the smoke-scale book.
test: setup-dev data browser
	$(PY) -m pytest -q
	$(PY) -m ssl_src replay
	$(PY) -m ssl_src book --scale smoke

clean:
	rm -rf _build
