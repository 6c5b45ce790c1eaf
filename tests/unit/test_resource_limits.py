"""Limits of the process a store must live with.

Threads: when none can start (a thread, process or memory limit: `ulimit -u`, a container's
pids limit, `ulimit -v`), a store works without its threads where it can: a large frame is
written by the appender itself (csrc/chl_wpipe.h), an index checkpoint in the appending
thread (commit.pyx); durability "interval", which needs its flush thread, refuses with
ResourceLimitError and holds nothing, and so does the async iteration of a subscription (its
waits run in a thread) while the plain one works.

Open files: a sealed segment keeps no descriptor (its mapping is enough), so a store of more
segments than the open-file limit allows opens, and a writer or a reader rolling past it goes on,
without touching the process's limit."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

# The child starts with 1 GiB thread stacks (RLIMIT_STACK, read by the C library at start) and
# then allows itself at most 256 MiB more address space: every new thread's stack is mapped
# whole, so none can start, while the store's own mappings (2 MiB segments) still fit.
_CHILD = """
import os, resource, sys, threading
sys.path.insert(0, sys.argv[2])
import chronolog as cl
from chronolog.errors import ResourceLimitError
from test_store_large_frames import _columns
import numpy, pyarrow  # (loaded before the limit: the large frames take the Arrow path)

def tasks():
    return len(os.listdir("/proc/self/task"))

with open("/proc/self/statm") as f:
    vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (vsize + (256 << 20), resource.RLIM_INFINITY))
try:
    threading.Thread(target=lambda: None).start()
    print("threads can start")
    sys.exit(0)
except RuntimeError:
    pass
path, durability = sys.argv[1], sys.argv[3]
if durability == "async":
    import asyncio
    async def follow(store):
        async with store.subscribe_async(timeout=0.1) as sub:
            return [e.position async for e in sub]
    with cl.EventStore.open(path, durability="os", max_segment_bytes=2 << 20) as store:
        store.append("s", [cl.NewEvent("T", b"x")])
        try:
            asyncio.run(follow(store))
        except ResourceLimitError as exc:
            print("refused", "store.subscribe" in str(exc))
        print("sync", [e.position for e in store.subscribe(timeout=0.1)])
    sys.exit(0)
if durability == "interval":
    try:
        cl.EventStore.open(path, durability="interval", max_segment_bytes=2 << 20)
    except ResourceLimitError as exc:
        print("refused", "durability='fsync' or 'os'" in str(exc))
    with cl.EventStore.open(path, durability="os", max_segment_bytes=2 << 20) as again:
        again.append("s", [cl.NewEvent("T", b"x")])
        print("reopened", again.head)  # (the refused open let go of the lock)
    sys.exit(0)
before = tasks()
store = cl.EventStore.open(path, durability=durability, max_segment_bytes=2 << 20)
batches = [_columns(k * 3000, 3000) for k in range(6)]  # ~1 MB frames: pipelined, and rolls
for b in batches:
    store.append_batch(*b)
print("threads", tasks() - before)
got = [(e.stream, e.type, e.data) for e in store.read_all()]
print("read", got == [(s, t, d) for b in batches for s, t, d in zip(*b)])
print("segments", store.stats()["segments"] >= 3)
print("checkpoint", os.path.exists(os.path.join(path, "index", "streams.idx")))
print("verify", store.verify()["ok"])
store.close()
with cl.EventStore.open(path, readonly=True) as r:
    print("reopened", [(e.stream, e.type, e.data) for e in r.read_all()] == got)
"""


def _run_without_threads(tmp_path: Path, durability: str) -> list[str]:
    def big_stacks() -> None:
        hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
        want = 1 << 30
        resource.setrlimit(resource.RLIMIT_STACK,
                           (want if hard == resource.RLIM_INFINITY or hard >= want else hard, hard))

    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "s"),
                          str(Path(__file__).parent), durability],
                         capture_output=True, text=True, timeout=120, check=False,
                         preexec_fn=big_stacks, env={"OPENBLAS_NUM_THREADS": "1",
                                                     "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if lines == ["threads can start"]:
        pytest.skip("this machine lets a thread start past RLIMIT_AS with 1 GiB stacks: "
                    "no way to deny threads here")
    return lines


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_without_threads_large_frames_and_checkpoints_are_written_by_the_appender(
        tmp_path: Path, durability: str) -> None:
    assert _run_without_threads(tmp_path, durability) == [
        "threads 0", "read True", "segments True", "checkpoint True", "verify True",
        "reopened True"]


def test_without_threads_interval_durability_refuses_and_lets_go_of_the_store(
        tmp_path: Path) -> None:
    assert _run_without_threads(tmp_path, "interval") == ["refused True", "reopened 1"]


def test_without_threads_async_iteration_refuses_and_the_plain_one_works(tmp_path: Path) -> None:
    assert _run_without_threads(tmp_path, "async") == ["refused True", "sync [0]"]


_MANY_FILES = """
import os, resource, sys
import chronolog as cl
limit = resource.getrlimit(resource.RLIMIT_NOFILE)
def fds():
    return len(os.listdir("/proc/self/fd")) - 1  # (less the listing's own)
path = sys.argv[1]
with cl.EventStore.open(path, durability="os", max_segment_bytes=64 << 10) as w:
    with cl.EventStore.open(path, readonly=True) as r:
        print("opened", w.stats()["segments"], r.head == w.head > 0, fds())
        start, first = w.stats()["segments"], w.head
        sub = r.subscribe(first, timeout=30)
        while w.stats()["segments"] < start + 150:  # the writer rolls 150 times more
            w.append_batch([f"s-{w.head % 50}"] * 20, ["T"] * 20, [b"y" * 150] * 20)
        got = [e.position for _, e in zip(range(w.head - first), sub)]
        sub.close()
        print("appended", w.stats()["segments"], got == list(range(first, w.head)),
              [e.position for e in r.read_all(first - 2, limit=3)] == [first - 2, first - 1, first],
              r.verify()["ok"], fds())
    print("verify", w.verify()["ok"])
print("limit", resource.getrlimit(resource.RLIMIT_NOFILE) == limit)
"""


@pytest.fixture(scope="module")
def many_segments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 300 segments (64 KiB each)."""
    import chronolog as cl

    path = tmp_path_factory.mktemp("many") / "s"
    with cl.EventStore.open(path, durability="os", max_segment_bytes=64 << 10) as s:
        while s.stats()["segments"] < 300:
            s.append_batch([f"s-{s.head % 50}"] * 20, ["T"] * 20, [b"x" * 150] * 20)
    return path


def test_sealed_segments_hold_no_descriptor(many_segments: Path, tmp_path: Path) -> None:
    """A store of 300 segments opens in a process allowed 100 files, a writer and a reader of
    it, and goes on as the writer rolls 150 times more (a reader following it by subscription):
    a sealed segment is read through its mapping alone. The process's limit is left alone.
    (Sealed segments once kept a descriptor each: the open raised the limit up to the hard one,
    and a writer rolling past it failed with EMFILE.)"""
    import shutil

    path = tmp_path / "s"
    shutil.copytree(many_segments, path)
    out = subprocess.run([sys.executable, "-c", _MANY_FILES, str(path)], capture_output=True,
                         text=True, timeout=300, check=False,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)))
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[0] for line in lines] == ["opened", "appended", "verify", "limit"]
    opened, appended = lines[0], lines[1]
    assert int(opened[1]) >= 300 and opened[2] == "True"
    assert int(appended[1]) >= 450 and appended[2:5] == ["True", "True", "True"]
    assert int(opened[3]) < 40 and int(appended[5]) <= int(opened[3]) + 8, (opened, appended)
    assert lines[2][1] == "True" and lines[3][1] == "True"
