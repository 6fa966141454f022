# The two commands of the README: `make demo` (main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/selfsup leaderboard run --suite quick --out runs/leaderboard

test: $(STAMP)
	$(VENV)/bin/ruff check . && $(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
