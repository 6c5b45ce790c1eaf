"""EventStore lifecycle and metadata: open/create, close, context manager, head,
stream_version, streams, stats, verify, durability modes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import InvalidArgumentError, ReadOnlyError, StoreClosedError


def test_open_creates_the_store_directory_with_header_segment_and_index(store_path: Path) -> None:
    assert not store_path.exists()
    with cl.EventStore.open(store_path, durability="os"):
        names = set(os.listdir(store_path))
    assert {"chronolog.store", "00000000000000000000.seg", "index", "LOCK"} <= names


def test_creating_a_store_syncs_its_directory_and_the_directory_entry_in_its_parent(
        store_path: Path) -> None:
    """A new store survives a power loss right after its first open: the store header and
    first segment are synced, then the store directory, then its parent (its own entry)."""
    io = FileIO()
    synced_dirs: list[str] = []
    io.trace = lambda op, path, offset, data: synced_dirs.append(os.path.realpath(path)) \
        if op == "fsync_dir" else None
    with cl.EventStore.open(store_path, durability="fsync", io=io):
        io.trace = None
    assert os.path.realpath(store_path) in synced_dirs
    assert os.path.realpath(store_path.parent) in synced_dirs


def test_a_new_store_is_empty(store: cl.EventStore) -> None:
    assert store.head == 0
    assert store.streams() == []
    assert list(store.read_all()) == []


def test_open_of_an_existing_store_keeps_its_events(
    open_store: Callable[..., cl.EventStore], ev
) -> None:
    s = open_store()
    s.append("a", [ev(), ev()])
    s.close()
    s2 = open_store()
    assert s2.head == 2
    assert [e.version for e in s2.read_stream("a")] == [0, 1]


def test_path_is_absolute(store: cl.EventStore, store_path: Path) -> None:
    assert store.path == str(store_path.resolve())


def test_close_is_idempotent(store: cl.EventStore) -> None:
    store.close()
    store.close()


def test_context_manager_closes_the_store(store_path: Path, ev) -> None:
    with cl.EventStore.open(store_path, durability="os") as s:
        s.append("a", [ev()])
    with pytest.raises(StoreClosedError):
        s.append("a", [ev()])


def test_context_manager_releases_the_write_lock(store_path: Path) -> None:
    with cl.EventStore.open(store_path, durability="os"):
        pass
    with cl.EventStore.open(store_path, durability="os") as again:
        assert again.head == 0


@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_a_writer_dropped_unclosed_is_closed_and_lets_go_of_the_lock(
        store_path: Path, durability: str) -> None:
    """Like an unclosed file: a ResourceWarning, then the same close (before, the dropped
    handle kept the store locked, and two descriptors open, for the rest of the process; in
    "interval" mode its flush thread kept it alive)."""
    fds = len(os.listdir("/proc/self/fd"))
    held = [cl.EventStore.open(store_path, durability=durability)]
    held[0].append("a", [cl.NewEvent("E", b"1")])
    with pytest.warns(ResourceWarning, match="never closed"):
        held.clear()  # the last reference: collected at once
    assert len(os.listdir("/proc/self/fd")) == fds
    with cl.EventStore.open(store_path, durability="os") as again:
        assert [e.data for e in again.read_all()] == [b"1"]


def test_a_writer_left_open_at_exit_is_closed_with_its_checkpoint(store_path: Path) -> None:
    code = ("import sys, chronolog as cl\n"
            "store = cl.EventStore.open(sys.argv[1], durability='os')\n"
            "store.append_batch(['a', 'b'] * 50, ['E'] * 100, [b'x'] * 100)\n")
    out = subprocess.run([sys.executable, "-c", code, str(store_path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    with cl.EventStore.open(store_path, readonly=True) as reader:
        assert reader.head == 100
        assert reader._log.checkpoint_through == 100  # close ran: the indexes were written


def test_second_writer_is_refused_while_the_first_is_open(
    store: cl.EventStore, store_path: Path
) -> None:
    with pytest.raises(cl.StoreLockedError):
        cl.EventStore.open(store_path, durability="os")


@pytest.mark.parametrize(
    "use",
    [
        lambda s: s.append("a", [cl.NewEvent("T", b"")]),
        lambda s: s.append_batch(["a"], ["T"], [b""]),
        lambda s: s.read_stream("a"),
        lambda s: s.read_all(),
        lambda s: s.head,
        lambda s: s.stream_version("a"),
        lambda s: s.streams(),
        lambda s: s.stats(),
        lambda s: s.verify(),
        lambda s: s.checkpoint(),
    ],
    ids=[
        "append",
        "append_batch",
        "read_stream",
        "read_all",
        "head",
        "stream_version",
        "streams",
        "stats",
        "verify",
        "checkpoint",
    ],
)
def test_every_use_after_close_raises_store_closed_error(store: cl.EventStore, use) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        use(store)


def test_store_closed_error_is_a_runtime_error(store: cl.EventStore) -> None:
    store.close()
    with pytest.raises(RuntimeError):
        store.head  # noqa: B018


def test_head_counts_the_events_of_every_stream(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(), ev()])
    store.append("b", [ev()])
    assert store.head == 3


def test_stream_version_is_none_for_a_stream_that_does_not_exist(store: cl.EventStore) -> None:
    assert store.stream_version("nope") is None


def test_stream_version_is_the_version_of_the_last_event(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(), ev(), ev()])
    store.append("b", [ev()])
    assert store.stream_version("a") == 2
    assert store.stream_version("b") == 0


def test_streams_lists_streams_in_order_of_first_appearance(store: cl.EventStore, ev) -> None:
    for name in ["order-2", "cart-1", "order-1", "order-2"]:
        store.append(name, [ev()])
    assert store.streams() == ["order-2", "cart-1", "order-1"]


def test_streams_with_prefix_lists_only_matching_streams(store: cl.EventStore, ev) -> None:
    for name in ["order-2", "cart-1", "order-1", "orde"]:
        store.append(name, [ev()])
    assert store.streams("order-") == ["order-2", "order-1"]
    assert store.streams("zzz") == []


def test_streams_omits_a_stream_whose_only_append_was_refused(store: cl.EventStore, ev) -> None:
    with pytest.raises(cl.WrongExpectedVersionError):
        store.append_batch(["new"], ["T"], [b""], expected_versions={"new": 5})
    assert store.streams() == []
    assert store.stats()["streams"] == 0


def test_streams_order_ignores_refused_appends(store: cl.EventStore, ev) -> None:
    with pytest.raises(cl.WrongExpectedVersionError):
        store.append_batch(["b"], ["T"], [b""], expected_versions={"a": cl.STREAM_EXISTS})
    store.append("a", [ev()])
    store.append("b", [ev()])
    assert store.streams() == ["a", "b"]


def test_streams_order_is_the_same_after_an_index_rebuild(open_store, store_path, ev) -> None:
    s = open_store()
    for name in ["c", "a", "b", "a"]:
        s.append(name, [ev()])
    s.close()
    for name in os.listdir(store_path / "index"):
        os.unlink(store_path / "index" / name)
    assert open_store().streams() == ["c", "a", "b"]


def test_stats_reports_events_streams_segments_and_settings(open_store, ev) -> None:
    s = open_store(max_segment_bytes=4096, max_event_bytes=2048)
    s.append("a", [ev(), ev()])
    s.append("b", [ev()])
    st = s.stats()
    assert st["events"] == 3
    assert st["streams"] == 2
    assert st["segments"] == 1
    assert st["bytes"] > 64
    assert st["format_version"] == 3
    assert st["durability"] == "os"
    assert st["readonly"] is False
    assert st["max_segment_bytes"] == 4096
    assert st["max_event_bytes"] == 2048
    assert st["path"] == s.path


def test_stats_bytes_grow_with_each_append(store: cl.EventStore, ev) -> None:
    before = store.stats()["bytes"]
    store.append("a", [ev(data=b"x" * 100)])
    assert store.stats()["bytes"] >= before + 100


def test_verify_reports_ok_on_a_healthy_store(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(), ev()])
    store.append_batch(["b", "c"], ["T", "T"], [b"1", b"2"])
    report = store.verify()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["events"] == 4
    assert report["frames"] == 2
    assert report["segments"] == 1


def test_verify_reports_ok_on_an_empty_store(store: cl.EventStore) -> None:
    report = store.verify()
    assert report["ok"] is True
    assert report["events"] == 0


@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_each_durability_mode_appends_and_reopens_with_the_events(
    open_store, durability: str, ev, as_tuples
) -> None:
    s = open_store(durability=durability, flush_interval_ms=5)
    assert s.durability == durability
    s.append("a", [ev(data=b"1"), ev(data=b"2")])
    s.append_batch(["b", "a"], ["T", "T"], [b"3", b"4"])
    written = as_tuples(s.read_all())
    s.close()
    s2 = open_store(durability=durability)
    assert as_tuples(s2.read_all()) == written
    assert s2.stream_version("a") == 2


@pytest.mark.parametrize("durability", ["", "FSYNC", "always", "none"])
def test_an_unknown_durability_mode_is_refused(store_path: Path, durability: str) -> None:
    with pytest.raises(InvalidArgumentError):
        cl.EventStore.open(store_path, durability=durability)


def test_a_refused_durability_mode_releases_the_lock(store_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        cl.EventStore.open(store_path, durability="nope")
    with cl.EventStore.open(store_path, durability="os") as s:
        assert s.head == 0


@pytest.mark.parametrize("size", [0, 4095, (1 << 31) + 1])
def test_max_segment_bytes_out_of_range_is_refused(store_path: Path, size: int) -> None:
    with pytest.raises(InvalidArgumentError):
        cl.EventStore.open(store_path, durability="os", max_segment_bytes=size)


def test_readonly_store_refuses_appends_and_stays_unchanged(open_store, ev, disk_state) -> None:
    w = open_store()
    w.append("a", [ev()])
    w.close()
    before = disk_state()
    r = open_store(readonly=True)
    assert r.readonly is True
    with pytest.raises(ReadOnlyError):
        r.append("a", [ev()])
    with pytest.raises(ReadOnlyError):
        r.append_batch(["a"], ["T"], [b""])
    assert r.head == 1
    assert disk_state() == before


def test_readonly_store_reads_the_events(open_store, ev, as_tuples) -> None:
    w = open_store()
    w.append("a", [ev(data=b"1")])
    written = as_tuples(w.read_all())
    w.close()
    r = open_store(readonly=True)
    assert as_tuples(r.read_all()) == written


def test_readonly_open_of_a_missing_store_raises_store_not_found(store_path: Path) -> None:
    with pytest.raises(cl.errors.StoreNotFoundError):
        cl.EventStore.open(store_path, readonly=True)
    assert not store_path.exists()


def test_a_store_handle_refuses_to_be_pickled_or_copied_and_says_what_to_do(store: cl.EventStore) -> None:
    import copy
    import pickle

    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied: .* pass the path"):
            attempt(store)
    store.append("a", [cl.NewEvent("T", b"")])  # the handle is unharmed
