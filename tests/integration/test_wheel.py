"""The installed package: compiled modules, stubs, the console script, and (in CI) that the
tests import the installed wheel rather than the source tree."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(chronolog.__file__).resolve().parent
COMPILED = ("crc", "fileio", "events", "segment", "index", "batch", "recovery", "commit", "write",
            "log", "reads", "verify", "compact", "columns", "scan", "codec")
REQUIRE_INSTALLED = os.environ.get("CHRONOLOG_REQUIRE_INSTALLED") == "1"
installed_only = pytest.mark.skipif(
    not REQUIRE_INSTALLED,
    reason="checks the installed wheel; CI sets CHRONOLOG_REQUIRE_INSTALLED=1 (an editable "
           "install imports src/ on purpose)")


@installed_only
def test_chronolog_is_imported_from_the_installed_wheel_not_the_source_tree():
    assert not PACKAGE.is_relative_to(REPO / "src"), f"chronolog was imported from {PACKAGE}"


@installed_only
def test_the_installed_package_holds_no_c_sources():
    assert sorted(p.name for p in PACKAGE.rglob("*.c")) == []


@pytest.mark.parametrize("name", COMPILED)
def test_each_core_module_is_a_compiled_extension(name):
    module = importlib.import_module(f"chronolog._core.{name}")
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@pytest.mark.parametrize("name", COMPILED)
def test_each_core_module_has_a_type_stub_beside_it(name):
    assert (PACKAGE / "_core" / f"{name}.pyi").is_file()


def test_the_package_is_marked_as_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_the_console_script_prints_the_package_version():
    script = Path(sys.executable).parent / "chronolog"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == f"chronolog {chronolog.__version__}"


def test_the_console_script_exits_1_on_a_missing_store(tmp_path):
    script = Path(sys.executable).parent / "chronolog"
    proc = subprocess.run([str(script), "verify", str(tmp_path / "none")], check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no Chronolog store" in proc.stderr
