# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
# Override the torch pin with e.g. `make test TORCH_SPEC=` (keep what is installed) or
# `make test TORCH_SPEC="torch==2.5.1 torchvision==0.20.1"`.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PRESET     ?= demo
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.fer_lib-installed
# Cell timeout (s) for nbval; each notebook is meant to run in well under 2 minutes in quick mode.
NB_TIMEOUT ?= 240

.PHONY: demo test test-fast lab install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --disable-pip-version-check $(TORCH_SPEC); fi
	$(PY) -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The main job: train, evaluate and explain. On FER2013 when it is found (FER2013_DIR or ../shared/fer2013),
# otherwise on the embedded synthetic faces (clearly labelled). `make demo PRESET=cpu` runs the 60-minute CPU recipe.
demo: $(STAMP)
	$(PY) -m fer_lib demo --preset $(PRESET)

# pytest over tests/ plus nbval over every notebook, in quick mode (tiny data, one short epoch).
test: $(STAMP)
	FER_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(NB_TIMEOUT) -p no:cacheprovider

test-fast: $(STAMP)
	FER_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q tests -m "not slow"

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

lint: $(STAMP)
	$(PY) -m ruff check fer_lib tests

clean:
	rm -rf runs .pytest_cache
