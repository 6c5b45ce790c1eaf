"""What an outside review of the domain layer found, each a behaviour a demanding user relies
on: an event is encoded and checked when it is triggered (a payload that cannot be stored or
read back is refused before anything is applied or written, and the state after a command is
the state a replay gives); the first use of an @event class from several threads; retries of a
command against an append not yet visible; snapshots that the class changed under; upcasting
errors that say what to do."""

from __future__ import annotations

import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.domain import (
    Aggregate,
    Application,
    DomainEvent,
    Repository,
    SnapshotPolicy,
    Upcasters,
    command,
    event,
)
from chronolog.errors import InvalidEventError


class Measured(DomainEvent):
    value: float


class Deposited(DomainEvent):
    amount: int


class Started(DomainEvent):
    items: list[str]


class Added(DomainEvent):
    item: str


class Meter(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.values: list[float] = []
        self.total = 0

    def apply_measured(self, e: Measured) -> None:
        self.values.append(e.value)

    def apply_deposited(self, e: Deposited) -> None:
        self.total += e.amount


class Cart(Aggregate):
    items: list[str]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.items = []

    def apply_started(self, e: Started) -> None:
        self.items = e.items

    def apply_added(self, e: Added) -> None:
        self.items.append(e.item)


@pytest.mark.parametrize("event", [Measured(value=float("nan")), Measured(value=float("inf")),
                                   Deposited(amount="5"),  # type: ignore[arg-type]
                                   Measured(value=object())],  # type: ignore[arg-type]
                         ids=["nan", "inf", "str-for-int", "object"])
def test_an_event_that_cannot_be_stored_or_read_back_is_refused_when_triggered(
        store: cl.EventStore, event: DomainEvent) -> None:
    """NaN became JSON null and "5" was stored for an int: the save succeeded and every later
    get() raised a raw msgspec error (the aggregate could never be loaded again)."""
    repo = Repository(store, Meter)
    m = Meter("1")
    m.trigger(Deposited(amount=10))
    with pytest.raises(InvalidEventError, match="nothing was recorded"):
        m.trigger(event)
    assert (m.version, m.total, m.values, len(m.pending_events)) == (0, 10, [], 1)
    repo.save(m)
    assert repo.get("1").total == 10 and store.stream_version("meter-1") == 0


def test_state_after_a_command_is_the_state_a_replay_gives(store: cl.EventStore) -> None:
    """A handler that keeps a list of the event in the state, then a later event in the same
    save appending to it: the first event's payload changed before it was encoded, and replay
    gave ['a', 'b', 'b']."""
    repo = Repository(store, Cart)
    c = Cart("1")
    c.trigger(Started(items=["a"]))
    c.trigger(Added(item="b"))
    assert c.items == ["a", "b"]
    repo.save(c)
    assert [e.data for e in store.read_stream("cart-1")] == [b'{"items":["a"]}', b'{"item":"b"}']
    assert repo.get("1").items == ["a", "b"]


def test_an_unannotated_field_holds_at_command_time_what_replay_gives(store: cl.EventStore) -> None:
    """Without annotations a Decimal is stored as a string: the command's state shows it so,
    as the replay does, instead of differing silently."""

    class Ledger(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.last = None

        @event("Booked")
        def book(self, amount) -> None:  # type: ignore[no-untyped-def]
            self.last = amount

    repo = Repository(store, Ledger)
    led = Ledger("1")
    led.book(Decimal("1.10"))
    repo.save(led)
    assert led.last == repo.get("1").last == "1.10"


def test_the_first_use_of_an_event_method_from_many_threads_makes_one_event_class(
        store: cl.EventStore) -> None:
    """Each thread once resolved the @event method's class by itself: the dispatch table knew
    one class and trigger() raised UnknownEventTypeError for another (185 of 200 trials)."""
    failures: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change often: the race is common
    try:
        _first_uses(failures)
    finally:
        sys.setswitchinterval(switch)
    assert failures == []


def _first_uses(failures: list[BaseException]) -> None:
    for _ in range(50):
        class Counter(Aggregate):
            def __init__(self, id: str) -> None:
                super().__init__(id)
                self.n = 0

            @event("Incremented")
            def inc(self, by: int) -> None:
                self.n += by

        start = threading.Barrier(4)

        def use(k: int, cls: type[Counter] = Counter, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                cls(str(k)).inc(1)
            except BaseException as exc:  # noqa: BLE001 (every failure is the finding)
                failures.append(exc)

        threads = [threading.Thread(target=use, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


@pytest.mark.parametrize("name", ["event_type", "schema_version", "encoding"])
def test_a_reserved_name_as_an_event_parameter_is_refused_saying_so(name: str) -> None:
    ns: dict[str, object] = {}
    exec(f"def receive(self, {name}: str) -> None: pass", ns)  # noqa: S102
    method = event("Received")(ns["receive"])
    with pytest.raises(cl.EventDefinitionError, match=f"'{name}' is a reserved name"):
        _ = method.event_class


class Tally(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.n = 0

    @event("Counted")
    def count(self) -> None:
        self.n += 1


class TallyApp(Application):
    @command
    def count(self, ctx, id: str) -> None:  # type: ignore[no-untyped-def]
        (ctx.get(Tally, id) if ctx.exists(Tally, id) else ctx.add(Tally(id))).count()


def test_commands_retried_against_appends_not_yet_visible_all_succeed(tmp_path: Path) -> None:
    """In "fsync" mode an append counts for expected versions once written, and is visible once
    its group commit's fsync returns: retries reloaded at once, saw the old version again and
    spent every attempt within that fsync (17 of 240 commands failed with max_attempts=50)."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change often: conflicts within an fsync are common
    try:
        with cl.EventStore.open(tmp_path / "s", durability="fsync") as store:
            app = TallyApp(store, max_attempts=50)
            errors: list[BaseException] = []

            def work() -> None:
                try:
                    app.count("c")
                except BaseException as exc:  # noqa: BLE001 (every failure is the finding)
                    errors.append(exc)

            for _ in range(40):
                threads = [threading.Thread(target=work) for _ in range(6)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            assert errors == []
            assert Repository(store, Tally).get("c").n == 240
    finally:
        sys.setswitchinterval(switch)


def test_a_snapshot_of_a_class_that_gained_an_unannotated_attribute_is_not_used(
        store: cl.EventStore) -> None:
    class Till(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.total = 0

        def apply_deposited(self, e: Deposited) -> None:
            self.total += e.amount

    repo = Repository(store, Till, snapshots=SnapshotPolicy(every=2))
    t = Till("1")
    for _ in range(4):
        t.trigger(Deposited(amount=1))
    repo.save(t)

    class Till2(Till):  # the same stream, now counting deposits too
        stream_prefix = "till"

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.count = 0

        def apply_deposited(self, e: Deposited) -> None:
            self.total += e.amount
            self.count += 1

    got = Repository(store, Till2, snapshots=SnapshotPolicy(every=2)).get("1")
    assert (got.total, got.count) == (4, 4)


class Paid(DomainEvent):  # release 1: amounts in cents
    amount: int


class PaidInEuros(DomainEvent):  # release 2: amounts in euros, v1 events upcast
    event_type = "Paid"
    schema_version = 2
    amount: float


class Account(Aggregate):
    total: float = 0

    def apply_paid(self, e: Paid) -> None:
        self.total += e.amount


class AccountInEuros(Aggregate):
    stream_prefix = "account"
    total: float = 0

    def apply_paid(self, e: PaidInEuros) -> None:
        self.total += e.amount


def test_a_snapshot_taken_before_an_event_schema_bump_is_not_used(store: cl.EventStore) -> None:
    """The snapshot held the total in cents; the class now applies euros (its event's schema
    version bumped, v1 upcast): restoring it mixed cents with euros (1001.0 for 11.0)."""
    a = Account("1")
    a.trigger(Paid(amount=500))
    a.trigger(Paid(amount=500))
    Repository(store, Account, snapshots=SnapshotPolicy(every=2)).save(a)  # snapshot: 1000
    up = Upcasters()
    up.event("Paid", from_version=1)(lambda d: {"amount": d["amount"] / 100})
    repo = Repository(store, AccountInEuros, upcasters=up, snapshots=SnapshotPolicy(every=2))
    b = repo.get("1")
    b.trigger(PaidInEuros(amount=1.0))
    repo.save(b)
    assert repo.get("1").total == pytest.approx(11.0)
    assert Repository(store, AccountInEuros, upcasters=up).get("1").total == pytest.approx(11.0)


class Placed(DomainEvent):
    amount: int


class Order(Aggregate):
    amount: int = 0

    def apply_placed(self, e: Placed) -> None:
        self.amount = e.amount


class PlacedV2(DomainEvent):
    event_type = "Placed"
    schema_version = 2
    amount: int


class OrderV2(Aggregate):
    stream_prefix = "order"
    amount: int = 0

    def apply_placed(self, e: PlacedV2) -> None:
        self.amount = e.amount


def test_an_upcaster_whose_output_does_not_fit_the_class_raises_upcast_error(
        store: cl.EventStore) -> None:
    store.append("order-1", [cl.NewEvent("Placed", b'{"total":3}', b'{"v":1}')])
    up = Upcasters()
    up.event("Placed", from_version=1)(lambda d: d)  # forgets to rename total -> amount
    with pytest.raises(cl.UpcastError, match=r"does not fit PlacedV2 after upcasting: Object "
                       r"missing required field `amount`"):
        Repository(store, OrderV2, upcasters=up).get("1")


def test_a_payload_newer_than_the_code_says_so_with_or_without_upcasters(
        store: cl.EventStore) -> None:
    store.append("order-1", [cl.NewEvent("Placed", b'{"amount":3}', b'{"v":3}')])
    for up in (None, Upcasters()):
        with pytest.raises(cl.UpcastError, match="newer than this code"):
            Repository(store, Order, upcasters=up).get("1")


# ---------------------------------------------------------------- replay in chunks (scaling review)

def test_an_aggregate_is_replayed_a_chunk_at_a_time(store: cl.EventStore, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """get() read the whole stream into one list before replaying it (~300 bytes an event:
    +298 MB for an aggregate of 1M events whose state is one int); so did a cached copy's
    fast-forward and snapshot_all."""
    from chronolog.domain import repository

    monkeypatch.setattr(repository, "REPLAY_CHUNK", 7)
    reads: list[int | None] = []
    real = store.read_stream

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(kwargs.get("limit"))
        return real(*args, **kwargs)

    repo = Repository(store, Tally)
    c = Tally("1")
    for _ in range(50):
        c.count()
    repo.save(c)
    monkeypatch.setattr(store, "read_stream", spy)
    assert repo.get("1").n == 50 and repo.get("1", at_version=20).n == 21
    assert reads and set(reads) == {7}
    cached = Repository(store, Tally, cache_size=4)
    assert cached.get("1").n == 50
    more = repo.get("1")
    for _ in range(30):
        more.count()
    repo.save(more)
    middle = store.head
    assert cached.get("1").n == 80 and set(reads) == {7}
    more = repo.get("1")
    more.count()
    repo.save(more)
    bulk = repo.snapshot_all(tmp_path / "bulk.arrow", position=middle)
    assert bulk.find("tally-1")[0] == 79 and set(reads) == {7}
