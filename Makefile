# The two commands of the README. Each installs what is missing first (scripts/setup.sh).
.PHONY: run test setup lint

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/issuemap serve

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test: lint
	.venv/bin/pytest
