# Secretum — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make run: initialise ./var on first start (development passphrase file) and serve over TLS 1.3
## make run DEMO=1: the same, with a fictitious demo clinic to try every page
run: install
	$(VENV)/bin/secretum serve --dev $(if $(DEMO),--demo)

## make test: the whole suite (unit, integration on SQLite and PostgreSQL, HSM, TLS)
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

## make bench: benchmarks; a table on screen and bench/results.json. The real peers they load
## (wrk, SoftHSM2, Chromium, dcmtk, Orthanc) are installed first, not found missing later.
bench: install
	tools/ensure-packages wrk:wrk softhsm2-util:softhsm2 chromium:chromium storescu:dcmtk \
	  Orthanc:orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb
	$(PY) -m bench.run $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
