"""Fixtures of the domain tests: a store in a temp dir and the orders example module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import chronolog as cl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orders.py"


def _load_orders() -> ModuleType:
    name = "chronolog_example_orders"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # typing.get_type_hints resolves names through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def orders() -> ModuleType:
    return _load_orders()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[cl.EventStore]:
    with cl.EventStore.open(tmp_path / "store", durability="os") as s:
        yield s


@pytest.fixture
def types_of(store: cl.EventStore):  # type: ignore[no-untyped-def]
    """The event types of a stream, in order."""
    return lambda stream: [e.type for e in store.read_stream(stream)]
