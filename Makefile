# The two commands of the README. Each installs what is missing first (scripts/setup.sh).
.PHONY: run test setup lint messages lock

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/issuemap serve

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# The suite runs in one process per core (at most four), each with its own PostgreSQL
# cluster; a test file stays in one process, so its module fixtures are built once. Files
# are handed out in the suite's own order, the long-running ones first (tests/conftest.py).
test: lint
	.venv/bin/pytest -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder --durations=25

# After changing resident-facing text: re-extract the message ids into the catalogs, then
# translate every new Thai entry (tests/test_catalogs.py fails on any left empty).
messages: setup
	.venv/bin/pybabel -q extract -F geo/locale/babel.cfg -k N_ -k translate:2 --no-location \
		--sort-output -o geo/locale/issuemap.pot .
	.venv/bin/pybabel -q update -i geo/locale/issuemap.pot -d geo/locale -D issuemap \
		--no-fuzzy-matching --ignore-obsolete
	rm geo/locale/issuemap.pot

# After changing a dependency in pyproject.toml: re-resolve requirements.lock (exact versions
# with hashes, from PyPI, for Linux and CPython 3.11); existing pins are kept where they still
# fit, `make lock UPGRADE=1` moves every one to its newest. make setup installs from the lock.
lock:
	python3 -m venv build/lock-tools
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null build/lock-tools/bin/pip install -q pip-tools==7.5.1
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
		build/lock-tools/bin/pip-compile -q --generate-hashes --allow-unsafe --all-extras \
		--strip-extras --build-deps-for=editable --index-url https://pypi.org/simple \
		--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		--output-file requirements.lock pyproject.toml
	npm install --package-lock-only --ignore-scripts --no-audit --no-fund --legacy-peer-deps
