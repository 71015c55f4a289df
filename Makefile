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

.PHONY: demo test test-fast coverage lab install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --disable-pip-version-check $(TORCH_SPEC); fi
	$(PY) -m pip install --disable-pip-version-check -e '.[dev]'
	# only for tests/test_mtcnn.py: the reference MTCNN that fer_lib's own is compared with, box for box (fer_lib
	# does not need it); its wheel pins torch<2.3, so it is installed without dependencies
	$(PY) -m pip install --disable-pip-version-check --no-deps 'facenet-pytorch==2.6.0'
	@touch $(STAMP)

# The main job: train, evaluate and explain. On FER2013 when it is found (FER2013_DIR or ../shared/fer2013),
# otherwise on the embedded synthetic faces (clearly labelled). `make demo PRESET=cpu` runs the 60-minute CPU recipe.
demo: $(STAMP)
	$(PY) -m fer_lib demo --preset $(PRESET)

# pytest over tests/ plus nbval over every notebook, in quick mode (tiny data, one short epoch). The tests run on
# one thread each (tests/conftest.py), so the notebooks run beside them on the other core, also on one thread
# (OMP_NUM_THREADS=1 reaches their kernels); their report is printed when both are done. Fails if either fails.
test: $(STAMP)
	@nblog=$$(mktemp); \
	FER_QUICK=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) -m pytest -q notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(NB_TIMEOUT) -p no:cacheprovider > $$nblog 2>&1 & \
	nbpid=$$!; \
	FER_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q tests -p no:cacheprovider; tests=$$?; \
	wait $$nbpid; notebooks=$$?; \
	echo "== notebooks (nbval, run beside the tests):"; cat $$nblog; rm -f $$nblog; \
	echo "== make test: tests exit $$tests, notebooks exit $$notebooks"; \
	test $$tests -eq 0 && test $$notebooks -eq 0

# Which lines of fer_lib the tests and the notebooks of `make test` run: one pass over both (about 15 minutes), the
# CLI subprocesses and the notebook kernels included (scripts/nbval_graceful.py lets each kernel exit, so that its
# data is written); the report lists the lines that nothing ran. Settings: [tool.coverage] in pyproject.toml.
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	FER_QUICK=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 PYTHONPATH=scripts $(PY) -m coverage run -m pytest -q tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(NB_TIMEOUT) -p no:cacheprovider -p nbval_graceful
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

test-fast: $(STAMP)
	FER_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest -q tests -m "not slow"

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

lint: $(STAMP)
	$(PY) -m ruff check fer_lib tests

clean:
	rm -rf runs .pytest_cache
