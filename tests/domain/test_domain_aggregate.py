"""Events and aggregates: type names, encodings, both aggregate styles, rule violations."""

from __future__ import annotations

from typing import ClassVar

import msgspec
import pytest

from chronolog.domain import Aggregate, DomainEvent, EventDefinitionError, Repository, event
from chronolog.domain.events import codec_of


class Deposited(DomainEvent, frozen=True):
    amount: int


class Renamed(DomainEvent, frozen=True):
    event_type: ClassVar[str] = "AccountRenamed"
    name: str


class Packed(DomainEvent, frozen=True):
    encoding: ClassVar[str] = "msgpack"
    items: list[str]


class Overdrawn(Exception):
    pass


class Account(Aggregate):
    balance: int
    name: str

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0
        self.name = ""

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise Overdrawn("deposits are positive")
        self.trigger(Deposited(amount=amount))

    def apply_deposited(self, e: Deposited) -> None:
        self.balance += e.amount

    def apply_renamed(self, e: Renamed) -> None:
        self.name = e.name

    @event("Withdrawn")
    def withdraw(self, amount: int, note: str = "") -> None:
        if amount > self.balance:
            raise Overdrawn(f"balance {self.balance} < {amount}")
        self.balance -= amount

    @event(Renamed)
    def rename(self, name: str) -> None:
        self.name = name


def test_event_type_defaults_to_the_class_name():
    assert Deposited.event_type == "Deposited"


def test_event_type_can_be_overridden():
    assert Renamed.event_type == "AccountRenamed"


def test_event_type_starting_with_dollar_is_refused():
    with pytest.raises(EventDefinitionError):
        class Bad(DomainEvent):
            event_type: ClassVar[str] = "$system"


def test_json_events_encode_as_compact_json_with_version_metadata():
    codec = codec_of(Deposited)
    assert codec.encode(Deposited(amount=3)) == b'{"amount":3}'
    assert codec.metadata == b'{"v":1}'


def test_msgpack_events_round_trip_and_say_so_in_metadata():
    codec = codec_of(Packed)
    data = codec.encode(Packed(items=["a"]))
    assert msgspec.msgpack.decode(data) == {"items": ["a"]}
    assert codec.decode(data) == Packed(items=["a"])
    assert b'"enc":"msgpack"' in codec.metadata


def test_trigger_applies_and_records_the_event():
    acc = Account("a")
    acc.deposit(5)
    assert (acc.balance, acc.version, acc.pending_events) == (5, 0, (Deposited(amount=5),))


def test_a_rule_violation_records_nothing():
    acc = Account("a")
    with pytest.raises(Overdrawn):
        acc.deposit(0)
    assert (acc.version, acc.pending_events) == (-1, ())


def test_decorated_method_records_an_event_made_from_its_signature():
    acc = Account("a")
    acc.deposit(10)
    acc.withdraw(4)
    ev = acc.pending_events[-1]
    assert (ev.event_type, ev.amount, ev.note) == ("Withdrawn", 4, "")
    assert acc.balance == 6


def test_decorated_method_that_raises_records_nothing():
    acc = Account("a")
    with pytest.raises(Overdrawn):
        acc.withdraw(1)
    assert acc.pending_events == ()


def test_decorated_method_with_an_event_class_records_that_class():
    acc = Account("a")
    acc.rename("savings")
    assert acc.pending_events == (Renamed(name="savings"),)


def test_both_styles_replay_to_the_same_state(store):
    acc = Account("a")
    acc.deposit(10)
    acc.withdraw(3, note="rent")
    acc.rename("main")
    repo = Repository(store, Account)
    repo.save(acc)
    loaded = repo.get("a")
    assert (loaded.balance, loaded.name, loaded.version) == (7, "main", 2)
    assert [e.type for e in store.read_stream("account-a")] == ["Deposited", "Withdrawn", "AccountRenamed"]


def test_stream_name_rule_is_prefix_dash_id_and_overridable():
    class Thing(Aggregate):
        stream_prefix: ClassVar[str] = "things"

    assert Account.stream_name("7") == "account-7"
    assert Thing.stream_name("7") == "things-7" and Thing.id_from_stream("things-7") == "7"


def test_overridden_apply_dispatches_itself(store):
    class Tally(Aggregate):
        event_classes = (Deposited,)

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.total = 0

        def apply(self, event: DomainEvent) -> None:
            match event:
                case Deposited(amount=n):
                    self.total += n

    t = Tally("t")
    t.trigger(Deposited(amount=2))
    t.trigger(Deposited(amount=3))
    repo = Repository(store, Tally)
    repo.save(t)
    assert repo.get("t").total == 5
