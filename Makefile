SHELL=/bin/bash
LINT_PATHS=sb3_softq/ tests/ benchmarks/ docs/conf.py docs/examples/

pytest:
	python -m pytest -m "not slow" -n 2

pytest-slow:
	python -m pytest -m slow -n 2

type:
	mypy sb3_softq

lint:
	# stop the build if there are Python syntax errors or undefined names
	# see https://www.flake8rules.com/
	ruff check ${LINT_PATHS} --select=E9,F63,F7,F82 --output-format=full
	# exit-zero treats all errors as warnings.
	ruff check ${LINT_PATHS} --exit-zero --output-format=concise

format:
	# Sort imports
	ruff check --select I ${LINT_PATHS} --fix
	# Reformat using black
	black ${LINT_PATHS}

check-codestyle:
	# Sort imports
	ruff check --select I ${LINT_PATHS}
	# Reformat using black
	black --check ${LINT_PATHS}

commit-checks: format type lint

doc:
	cd docs && make html SPHINXOPTS="-W --keep-going"

clean:
	cd docs && make clean

.PHONY: pytest pytest-slow type lint format check-codestyle commit-checks doc clean
