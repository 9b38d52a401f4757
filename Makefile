# Two commands for a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
# The Airflow minors the provider supports, oldest first. Each one's pins (its Airflow release and the
# packages around Airflow tested with it) are in constraints/airflow-<minor>.txt, the one home of them.
AIRFLOW_MINORS := 3.1 3.2 3.3
NEWEST := $(lastword $(AIRFLOW_MINORS))
OLDER := $(filter-out $(NEWEST),$(AIRFLOW_MINORS))
# .venv has the newest (demo, lint, docs, bench, the slow tests); .venv-<minor> each older one.
AIRFLOW_MINOR ?= $(NEWEST)
VENV ?= .venv
CONSTRAINTS := constraints/airflow-$(AIRFLOW_MINOR).txt
DEMO_PORT ?= 8089
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_MINOR)
# The scale tests (PostgreSQL, Celery) run on the newest minor only, so only its venv installs them.
comma := ,
EXTRAS := test,docs$(if $(filter $(NEWEST),$(AIRFLOW_MINOR)),$(comma)scale)

.PHONY: install demo test test-first test-second test-slow test-fast lint docs bench pytest test-older test-scale clean dist

install: $(STAMP)

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on these machines), every
# Python process would otherwise compile Airflow's ~2,000 modules from source again (about 6 s of CPU).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c $(CONSTRAINTS) apache-airflow -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

# Start the bundled emulator, run the example DAG deferred with `airflow dags test`, print the video URL.
demo: install
	@set -eu; \
	export AIRFLOW_HOME="$(CURDIR)/.airflow-demo" AIRFLOW__CORE__LOAD_EXAMPLES=False \
	  AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True \
	  AIRFLOW_CONN_GROK_VIDEO_DEFAULT='{"conn_type": "grok_video", "host": "http://127.0.0.1:$(DEMO_PORT)", "password": "sk_demo"}'; \
	$(BIN)/python -m airflow_grok_video.emulator --port $(DEMO_PORT) --generation-seconds 6 & emulator=$$!; \
	trap 'kill $$emulator 2>/dev/null' EXIT; \
	$(BIN)/airflow db migrate > "$(CURDIR)/.airflow-demo.log" 2>&1; \
	$(BIN)/airflow dags test grok_video_example >> "$(CURDIR)/.airflow-demo.log" 2>&1 \
	  || { tail -n 60 "$(CURDIR)/.airflow-demo.log"; exit 1; }; \
	url=$$(grep -o 'Video ready: [^ ]*' "$(CURDIR)/.airflow-demo.log" | tail -n 1 | cut -d' ' -f3); \
	test -n "$$url" || { echo "no video URL in the run's log: $(CURDIR)/.airflow-demo.log"; exit 1; }; \
	echo "Video URL: $$url"

# Benchmarks; each prints its figures beside its anchor, with the ratio. The polling benchmark runs in
# real time (about 3 minutes, a few queries a second) beside the others and prints its table after
# them; the deployment benchmark (two real Airflow deployments, about 15 minutes) runs last, alone.
bench: install
	@set -e; mkdir -p build; \
	$(BIN)/python -u benchmarks/polling.py > build/bench-polling.txt 2>&1 & polling=$$!; \
	trap 'kill $$polling 2>/dev/null || true' EXIT; \
	$(BIN)/python -u benchmarks/import_cost.py --runs 7; \
	$(BIN)/python -u benchmarks/triggers.py --sizes 100,200,1000,5000 --runs 3; \
	$(BIN)/python -u benchmarks/startup.py --waits 1000; \
	$(BIN)/python -u benchmarks/startup.py --waits 1000 --poll-interval 2; \
	$(BIN)/python -u benchmarks/download.py --mb 200 --runs 3; \
	$(BIN)/python -u benchmarks/videos_page.py --videos 1000 --json build/videos-page.json; \
	status=0; wait $$polling || status=$$?; cat build/bench-polling.txt; \
	$(BIN)/python -u benchmarks/deployment.py --videos 20 || status=$$?; exit $$status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two streams, never more (a third on 2 cores breaks the timing tests): the slow tests (real
# deployments, mostly waiting on heartbeats and generation times), then the first older minor's
# suite; beside them, at a lower CPU priority so that the deployments' timings hold, the lint and
# the docs, the newest minor's other tests, then the other older minors'. Each part's output is
# printed whole when it ends.
test:
	$(MAKE) -j 2 --output-sync=target test-first test-second

test-first: install
	$(MAKE) test-slow
	$(MAKE) $(addprefix test-,$(firstword $(OLDER)))

test-second: install
	nice -n 10 $(MAKE) lint docs
	nice -n 10 $(MAKE) test-fast
	nice -n 10 $(MAKE) $(addprefix test-,$(wordlist 2,$(words $(OLDER)),$(OLDER)))

test-slow: install
	$(BIN)/python -m pytest -ra -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

XDIST := -n 2
test-fast: install
	$(BIN)/python -m pytest -ra $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The wheel and sdist to install from (`pip install dist/airflow_provider_grok_video-*.whl`, with
# apache-airflow pinned: docs/install.md), built in isolation by uv and checked by twine (its README
# rendering and metadata). twine is fetched into uv's cache; 6.1 is the first that reads this metadata.
DIST ?= dist
dist: install
	rm -f $(DIST)/airflow_provider_grok_video-*
	$(BIN)/uv build --quiet --out-dir $(DIST) .
	$(BIN)/uv tool run --quiet --from "twine>=6.1" twine check --strict $(DIST)/airflow_provider_grok_video-*

# The documentation site, built strictly (tests/test_docs.py also checks that every include expanded).
docs: install
	$(BIN)/mkdocs build --strict -d build/site

# The whole suite on the newest Airflow: the tests that start a real Airflow deployment (marked slow)
# alone, then the rest on two processes.
pytest: test-slow test-fast

# The production-topology scenarios alone (PostgreSQL, CeleryExecutor, two schedulers, workers and
# triggerers; docs/scale.md): `make test-scale GROK_SCALE_VIDEOS=50` for the issue's size, and
# PYTEST_ARGS="-k scheduler" for one scenario. `make test` runs them with 4 videos per pattern.
test-scale: install
	GROK_SCALE_VIDEOS=$(GROK_SCALE_VIDEOS) GROK_SCALE_GENERATION_SECONDS=$(GROK_SCALE_GENERATION_SECONDS) \
	  $(BIN)/python -m pytest -ra -m scale $(PYTEST_ARGS)

GROK_SCALE_VIDEOS ?= 4
GROK_SCALE_GENERATION_SECONDS ?= 10

# The whole suite but the slow tests on every older minor, each in its .venv-<minor> (`make test-3.2`
# for one). The slow tests run on the newest only: they take minutes each. The minors run side by
# side: a run keeps about 0.8 of the 2 cores busy (most of it waits on the emulator and Airflow), and
# each one's output is printed whole when it ends.
test-older:
	$(MAKE) -j $(words $(OLDER)) --output-sync=target $(addprefix test-,$(OLDER))

test-%:
	$(MAKE) install VENV=.venv-$* AIRFLOW_MINOR=$*
	.venv-$*/bin/python -m pytest -ra $(XDIST) -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(OLDER)) build dist .airflow-demo .airflow-demo.log .pytest_cache .mypy_cache
