"""The checks STYLE.md asks of every change, run with the suite so that CI runs them too:
ruff on the Python code, mypy --strict on the package, cython-lint on the compiled core.
Their settings are in pyproject.toml; `make lint` runs the same three."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "src" / "chronolog" / "_core"


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    return subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_ruff_finds_nothing_in_the_python_code(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests",
                 "benchmarks", "tools"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_passes_on_the_package(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_cython_lint_finds_nothing_in_the_core(tmp_path: Path) -> None:
    sources = sorted(str(p) for p in [*CORE.glob("*.pyx"), *CORE.glob("*.pxd")])
    assert len(sources) > 10
    lint = Path(sys.executable).parent / "cython-lint"
    done = _run([str(lint), *sources], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
