"""Repository: get, save, exists, atomic multi-aggregate saves, conflicts, the cache."""

from __future__ import annotations

from typing import ClassVar

import pytest

import chronolog as cl
from chronolog.domain import (
    Aggregate,
    AggregateNotFoundError,
    DomainEvent,
    Repository,
    UnknownEventTypeError,
    UpcastError,
    Upcasters,
)


@pytest.fixture
def repo(store, orders):
    return Repository(store, orders.Order)


def _placed(orders, id="7", lines=0):
    o = orders.Order(id)
    o.place("ada")
    for i in range(lines):
        o.add_line(f"sku{i}", 1, 100)
    return o


def test_save_then_get_returns_equal_state(repo, orders):
    repo.save(_placed(orders, lines=3))
    got = repo.get("7")
    assert (got.status, got.total_cents, got.version, got.pending_events) == ("open", 300, 3, ())


def test_get_of_a_missing_aggregate_raises_not_found(repo):
    with pytest.raises(AggregateNotFoundError):
        repo.get("nope")


def test_exists_is_true_only_after_save(repo, orders):
    assert not repo.exists("7")
    repo.save(_placed(orders))
    assert repo.exists("7")


def test_save_clears_pending_events_and_a_second_save_appends_nothing(repo, store, orders):
    o = _placed(orders)
    repo.save(o)
    assert repo.save(o) is None and store.head == 1


def test_get_at_version_returns_the_historical_state(repo, orders):
    repo.save(_placed(orders, lines=4))
    old = repo.get("7", at_version=1)
    assert (old.version, old.total_cents, len(old.lines)) == (1, 100, 1)


def test_save_of_several_aggregates_is_one_atomic_append(repo, store, orders):
    res = repo.save(_placed(orders, "1"), _placed(orders, "2", lines=1))
    assert (res.first_position, res.last_position) == (0, 2)
    assert len({e.timestamp for e in store.read_all()}) == 1


def test_conflicting_save_of_several_aggregates_writes_none_of_them(repo, store, orders):
    repo.save(_placed(orders, "1"), _placed(orders, "2"))
    a, b = repo.get("1"), repo.get("2")
    other = repo.get("2")
    other.add_line("x", 1, 1)
    repo.save(other)
    a.add_line("y", 1, 1)
    b.add_line("z", 1, 1)
    head = store.head
    with pytest.raises(cl.WrongExpectedVersionError):
        repo.save(a, b)
    assert store.head == head and store.stream_version("order-1") == 0


def test_two_repositories_saving_the_same_aggregate_only_one_wins(store, orders):
    Repository(store, orders.Order).save(_placed(orders))
    r1, r2 = Repository(store, orders.Order), Repository(store, orders.Order)
    a, b = r1.get("7"), r2.get("7")
    a.add_line("a", 1, 1)
    b.add_line("b", 1, 1)
    r1.save(a)
    with pytest.raises(cl.WrongExpectedVersionError) as info:
        r2.save(b)
    assert info.value.actual == 1
    assert [ln.sku for ln in r1.get("7").lines] == ["a"]


def test_saving_a_new_aggregate_over_an_existing_stream_conflicts(repo, store, orders):
    repo.save(_placed(orders))
    with pytest.raises(cl.WrongExpectedVersionError):
        repo.save(_placed(orders))
    assert store.head == 1


def test_saving_the_same_pending_events_again_after_an_ambiguous_failure_is_idempotent(repo, store, orders):
    o = _placed(orders)
    pending, ids = list(o._pending), None
    repo.save(o)
    ids = [e.id for e in store.read_stream("order-7")]
    # Simulate "the append happened but the caller never heard": put the same events back.
    o._pending = pending
    o.__dict__["_event_ids"] = [i.bytes for i in ids]
    o.version = 0
    repo.save(o)
    assert store.head == 1


def test_an_unknown_event_type_in_the_stream_raises(repo, store, orders):
    store.append("order-9", [cl.NewEvent("Shipped", b"{}")])
    with pytest.raises(UnknownEventTypeError):
        repo.get("9")


def test_cache_fast_forwards_to_events_saved_by_another_repository(store, orders):
    cached = Repository(store, orders.Order, cache_size=8)
    cached.save(_placed(orders))
    assert cached.get("7").version == 0
    other = Repository(store, orders.Order)
    o = other.get("7")
    o.add_line("x", 2, 5)
    other.save(o)
    got = cached.get("7")
    assert (got.version, got.total_cents) == (1, 10)


def test_cache_hands_out_copies_so_unsaved_changes_do_not_leak(store, orders):
    cached = Repository(store, orders.Order, cache_size=8)
    cached.save(_placed(orders))
    a = cached.get("7")
    a.add_line("x", 1, 1)  # never saved
    assert cached.get("7").lines == []


def test_cache_evicts_the_least_recently_used(store, orders):
    cached = Repository(store, orders.Order, cache_size=2)
    cached.save(_placed(orders, "1"), _placed(orders, "2"), _placed(orders, "3"))
    for i in "123":
        cached.get(i)
    assert list(cached._cache) == ["order-2", "order-3"]


class Added(DomainEvent, frozen=True):
    schema_version: ClassVar[int] = 2
    n: int
    unit: str


class Counter(Aggregate):
    total: int = 0

    def add(self, n: int) -> None:
        self.trigger(Added(n=n, unit="x"))

    def apply_added(self, e: Added) -> None:
        self.total += e.n


def test_a_cached_aggregate_whose_catch_up_fails_midway_is_not_kept_half_updated(store):
    # The tail applies one event, then meets one it cannot upcast yet: the cached copy must
    # not keep the first (the next get would apply it twice).
    ups = Upcasters()
    cached = Repository(store, Counter, cache_size=8, upcasters=ups)
    c = Counter("1")
    c.add(1)
    cached.save(c)
    assert cached.get("1").total == 1
    c = Repository(store, Counter).get("1")
    c.add(10)
    Repository(store, Counter).save(c)
    store.append("counter-1", [cl.NewEvent("Added", b'{"n":100}', b'{"v":1}')])  # schema 1
    with pytest.raises(UpcastError):
        cached.get("1")
    ups.event("Added", from_version=1)(lambda d: {**d, "unit": "x"})
    got = cached.get("1")
    full = Repository(store, Counter, upcasters=ups).get("1")
    assert (got.version, got.total) == (full.version, full.total) == (2, 111)
