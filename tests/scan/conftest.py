"""Scan fixtures: call the EventStore methods when the store has them, else the module
functions with the store's log (the same code path underneath)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import chronolog as cl
from chronolog import scan as scan_mod


def _scan(store: cl.EventStore, *args: Any, **kw: Any) -> list[pa.RecordBatch]:
    if hasattr(store, "scan"):
        return list(store.scan(*args, **kw))
    return list(scan_mod.scan(store._reading(), *args,
                              notifier=getattr(store, "_notifier", None), **kw))


def _scan_table(store: cl.EventStore, *args: Any, **kw: Any) -> pa.Table:
    if hasattr(store, "scan_table"):
        return store.scan_table(*args, **kw)
    return scan_mod.scan_table(store._reading(), *args,
                               notifier=getattr(store, "_notifier", None), **kw)


@pytest.fixture
def scan() -> Callable[..., list[pa.RecordBatch]]:
    """scan(store, ...) -> list of RecordBatches."""
    return _scan


@pytest.fixture
def scan_table() -> Callable[..., pa.Table]:
    """scan_table(store, ...) -> pyarrow.Table."""
    return _scan_table
