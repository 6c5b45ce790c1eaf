"""Subscription fixtures: the EventStore methods when the store has them, else the module
functions with the store's log and notifier (the same code path underneath)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import chronolog as cl
from chronolog import subscriptions as subs


def _subscribe(store: cl.EventStore, *args: Any, **kw: Any) -> subs.Subscription[Any]:
    if hasattr(store, "subscribe"):
        return store.subscribe(*args, **kw)
    return subs.subscribe(store._log, getattr(store, "_notifier", None), *args, **kw)


def _subscribe_async(store: cl.EventStore, *args: Any, **kw: Any) -> subs.AsyncSubscription[Any]:
    if hasattr(store, "subscribe_async"):
        return store.subscribe_async(*args, **kw)
    return subs.subscribe_async(store._log, getattr(store, "_notifier", None), *args, **kw)


def _wait_for(store: cl.EventStore, position: int, timeout: float | None = None) -> bool:
    if hasattr(store, "wait_for"):
        return store.wait_for(position, timeout)
    return subs.wait_for(store._log, getattr(store, "_notifier", None), position, timeout)


@pytest.fixture
def subscribe() -> Callable[..., subs.Subscription[Any]]:
    """subscribe(store, from_position=0, **options) -> Subscription."""
    return _subscribe


@pytest.fixture
def subscribe_async() -> Callable[..., subs.AsyncSubscription[Any]]:
    """subscribe_async(store, from_position=0, **options) -> AsyncSubscription."""
    return _subscribe_async


@pytest.fixture
def wait_for() -> Callable[..., bool]:
    """wait_for(store, position, timeout) -> bool."""
    return _wait_for
