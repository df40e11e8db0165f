# The two commands of the README. Each installs what is missing first (scripts/setup.sh).
.PHONY: run test setup lint messages

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
# cluster; a test file stays in one process, so its module fixtures are built once.
test: lint
	.venv/bin/pytest -n auto --maxprocesses=4 --dist loadfile

# After changing resident-facing text: re-extract the message ids into the catalogs, then
# translate every new Thai entry (tests/test_catalogs.py fails on any left empty).
messages: setup
	.venv/bin/pybabel -q extract -F geo/locale/babel.cfg -k N_ -k translate:2 --no-location \
		--sort-output -o geo/locale/issuemap.pot .
	.venv/bin/pybabel -q update -i geo/locale/issuemap.pot -d geo/locale -D issuemap \
		--no-fuzzy-matching --ignore-obsolete
	rm geo/locale/issuemap.pot
