# Developer tasks; CI runs .ci/run, which builds the wheel and runs the README's test command.
PYTHON ?= python3

.PHONY: build test lint wheel sdist ci clean

build:  ## compile the core in place (for an editable install)
	$(PYTHON) setup.py build_ext --inplace

test:  ## the README's pytest command, against the current environment
	$(PYTHON) -m pytest

lint:  ## what tests/integration/test_code_quality.py checks (settings: pyproject.toml)
	ruff check src tests benchmarks tools
	mypy
	cython-lint src/chronolog/_core/*.pyx src/chronolog/_core/*.pxd

wheel:
	$(PYTHON) -m build --wheel

sdist:
	$(PYTHON) -m build --sdist

ci:  ## exactly what CI runs: fresh venv, wheel, installed tests
	bash .ci/run

clean:
	rm -rf build dist .venv src/*.egg-info src/chronolog/_core/*.c src/chronolog/_core/*.so
