"""Upcasting: v1 events read as v3 objects through chained upcasters; disk unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import pytest

import chronolog as cl
from chronolog.domain import Aggregate, DomainEvent, Repository, UpcastError, Upcasters


class PlacedV1(DomainEvent, frozen=True):
    event_type: ClassVar[str] = "Placed"
    amount: float


class PlacedV3(DomainEvent, frozen=True):
    """v2 added currency; v3 renamed amount -> amount_cents (an int)."""

    event_type: ClassVar[str] = "Placed"
    schema_version: ClassVar[int] = 3
    amount_cents: int
    currency: str


class OrderV1(Aggregate):
    stream_prefix: ClassVar[str] = "order"

    def apply_placed(self, e: PlacedV1) -> None:
        self.amount = e.amount


class OrderV3(Aggregate):
    stream_prefix: ClassVar[str] = "order"
    seen: list[PlacedV3]

    def __init__(self, id):
        super().__init__(id)
        self.seen = []

    def apply_placed(self, e: PlacedV3) -> None:
        self.seen.append(e)


def _upcasters():
    ups = Upcasters()

    @ups.event("Placed", from_version=1)
    def add_currency(d):
        return {**d, "currency": "EUR"}

    @ups.event("Placed", from_version=2)
    def to_cents(d):
        return {"amount_cents": round(d.pop("amount") * 100), **d}
    return ups


def _disk(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.iterdir()) if p.suffix == ".seg" or "seg" in p.name}


def _write_v1(store):
    repo = Repository(store, OrderV1)
    for i, amount in enumerate([1.5, 2.25]):
        o = OrderV1(str(i))
        o.trigger(PlacedV1(amount=amount))
        repo.save(o)


def test_v1_events_read_as_v3_objects_after_two_upcasters(store):
    _write_v1(store)
    repo = Repository(store, OrderV3, upcasters=_upcasters())
    assert repo.get("0").seen == [PlacedV3(amount_cents=150, currency="EUR")]
    assert repo.get("1").seen == [PlacedV3(amount_cents=225, currency="EUR")]


def test_upcasting_leaves_the_bytes_on_disk_unchanged(tmp_path):
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as store:
        _write_v1(store)
        before_events = [(e.data, e.metadata) for e in store.read_all()]
    before = _disk(path)
    assert before
    with cl.EventStore.open(path, durability="os") as store:
        Repository(store, OrderV3, upcasters=_upcasters()).get("0")
        assert [(e.data, e.metadata) for e in store.read_all()] == before_events
    assert _disk(path) == before


def test_stored_events_carry_their_schema_version_in_metadata(store):
    _write_v1(store)
    o = OrderV3("9")
    o.trigger(PlacedV3(amount_cents=1, currency="EUR"))
    Repository(store, OrderV3).save(o)
    assert [e.metadata for e in store.read_all()] == [b'{"v":1}', b'{"v":1}', b'{"v":3}']


def test_a_missing_upcaster_step_raises_upcast_error(store):
    _write_v1(store)
    ups = Upcasters()
    ups.event("Placed", from_version=1)(lambda d: {**d, "currency": "EUR"})
    with pytest.raises(UpcastError, match="v2 to v3"):
        Repository(store, OrderV3, upcasters=ups).get("0")


def test_an_event_newer_than_the_code_raises_upcast_error(store):
    o = OrderV3("9")
    o.trigger(PlacedV3(amount_cents=1, currency="EUR"))
    Repository(store, OrderV3).save(o)
    with pytest.raises(UpcastError, match="newer"):
        Repository(store, OrderV1, upcasters=Upcasters()).get("9")


def test_registering_the_same_step_twice_is_refused():
    ups = _upcasters()
    with pytest.raises(cl.ChronologError):
        ups.event("Placed", from_version=1)(lambda d: d)
