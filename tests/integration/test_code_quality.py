"""The checks STYLE.md asks of every change, run with the suite so that CI runs them too:
ruff on the Python code, mypy --strict on the package, cython-lint on the compiled core, and
mypy's stubtest: the type stubs of the compiled modules against what they define at run time.
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


def test_the_compiled_modules_stubs_match_them(tmp_path: Path) -> None:
    """Every name, signature and class of chronolog._core's stubs (*.pyi) as the compiled
    modules (the installed ones, in CI) have them; what Cython adds to every module is allowed
    (tests/integration/stubtest_allowlist.txt). They had drifted: members and constants
    missing, constructors typed on __init__ where Cython takes the arguments in __new__."""
    modules = sorted(f"chronolog._core.{p.stem}" for p in CORE.glob("*.pyi"))
    assert len(modules) > 10
    done = _run([sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", "pyproject.toml",
                 "--allowlist", str(REPO / "tests" / "integration" / "stubtest_allowlist.txt"),
                 *modules], tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success" in done.stdout
