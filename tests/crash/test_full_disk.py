"""A real full disk, not an injected one: a writer process appends until the kernel refuses.

Two ways to run out of room: RLIMIT_FSIZE (the segment file may not grow past a limit: EFBIG),
and a small tmpfs mounted in a private mount namespace (ENOSPC), which needs root and
unshare(1). Either way the writer must fail stop with StoreFailedError, keep every
acknowledged event, and the store must reopen whole once there is room again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog as cl

# The writer: appends numbered events until an append fails, then reports as JSON. In
# "tmpfs" mode it mounts the tmpfs first and does the reopen checks itself (the mount dies
# with its namespace).
WRITER = r"""
import errno, json, os, resource, signal, subprocess, sys
import chronolog as cl

path, how, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
report = {}
if how == "rlimit":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    limit = 300_000 if batch == 1 else 5_000_000
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
else:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", path], check=True)
    with open(os.path.join(path, "ballast"), "wb") as f:
        f.write(b"\0" * 96 * 1024)
store_dir = os.path.join(path, "store")

def payload(i):
    return i.to_bytes(4, "little") * (200 + (i * 37) % 700)

store = cl.EventStore.open(store_dir, durability="fsync", max_segment_bytes=64 << 20)
acked = 0
failure = None
for i in range(0, 100_000, batch):
    try:
        if batch == 1:
            store.append(f"s-{i % 5}", [cl.NewEvent("Put", payload(i))])
        else:  # frames of ~2 MB: written by the pipeline (chl_wpipe.h), cut mid-frame
            store.append_batch([f"s-{j % 5}" for j in range(i, i + batch)], ["Put"] * batch,
                               [payload(j) for j in range(i, i + batch)])
    except Exception as exc:
        failure = exc
        break
    acked += batch
report["acked"] = acked
report["failure"] = type(failure).__name__
report["failure_errno"] = getattr(getattr(failure, "cause", None), "errno", None)
try:
    store.append("s-0", [cl.NewEvent("Put", b"after")])
    report["after"] = "accepted"
except Exception as exc:
    report["after"] = type(exc).__name__
try:
    store.close()
    report["close"] = "ok"
except Exception as exc:
    report["close"] = f"{type(exc).__name__}: {exc}"
if how == "tmpfs":
    # Reopen while the disk is still full: recovery must not need room to keep what is there.
    try:
        s = cl.EventStore.open(store_dir, durability="fsync")
        report["full_reopen_events"] = [int.from_bytes(e.data[:4], "little") for e in s.read_all()]
    except Exception as exc:
        report["full_reopen_events"] = f"open: {type(exc).__name__}: {exc}"
    else:
        try:
            s.close()
            report["full_close"] = "ok"
        except Exception as exc:
            report["full_close"] = f"{type(exc).__name__}: {exc}"
    os.remove(os.path.join(path, "ballast"))
    with cl.EventStore.open(store_dir, durability="fsync") as s:
        report["events"] = [int.from_bytes(e.data[:4], "little") for e in s.read_all()]
        s.append("s-0", [cl.NewEvent("Put", b"room again")])
        report["verify_ok"] = s.verify()["ok"]
    subprocess.run(["umount", path], check=False)
print(json.dumps(report))
"""


def _run_writer(tmp_path: Path, how: str, prefix: list[str], batch: int = 1) -> dict[str, object]:
    proc = subprocess.run([*prefix, sys.executable, "-c", WRITER, str(tmp_path / "disk"), how,
                           str(batch)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_writer_over_the_file_size_limit_fails_stop_and_keeps_every_acknowledged_event(
        tmp_path: Path) -> None:
    report = _run_writer(tmp_path, "rlimit", [])
    assert report["failure"] == "StoreFailedError" and report["failure_errno"] == 27  # EFBIG
    assert report["after"] == "StoreFailedError"
    acked = int(report["acked"])  # type: ignore[arg-type]
    assert acked > 10
    with cl.EventStore.open(tmp_path / "disk" / "store") as store:
        got = [int.from_bytes(e.data[:4], "little") for e in store.read_all()]
        assert got == list(range(len(got))) and len(got) >= acked
        assert len(got) <= acked + 1  # at most the append that failed, whole
        store.append("s-0", [cl.NewEvent("Put", b"room again")])
        assert store.verify()["ok"]


def test_a_large_batch_cut_by_the_file_size_limit_mid_frame_fails_stop_and_keeps_every_acknowledged_batch(
        tmp_path: Path) -> None:
    batch = 1000
    report = _run_writer(tmp_path, "rlimit", [], batch)
    assert report["failure"] == "StoreFailedError" and report["failure_errno"] == 27  # EFBIG
    assert report["after"] == "StoreFailedError"
    acked = int(report["acked"])  # type: ignore[arg-type]
    assert acked >= batch
    with cl.EventStore.open(tmp_path / "disk" / "store") as store:
        got = [int.from_bytes(e.data[:4], "little") for e in store.read_all()]
        assert got == list(range(acked))  # the failed batch was cut whole
        assert store.verify()["ok"]
        store.append("s-0", [cl.NewEvent("Put", b"room again")])


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], check=False, capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="needs root and unshare(1) to mount a private tmpfs; the "
    "RLIMIT_FSIZE test covers the same append path without them")


@pytest.fixture(scope="module")
def tmpfs_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One run of the writer on a 512 KiB tmpfs, shared by the tests below."""
    return _run_writer(tmp_path_factory.mktemp("tmpfs"), "tmpfs",
                       ["unshare", "-m", "--propagation", "private"])


@needs_tmpfs
def test_a_writer_on_a_full_tmpfs_fails_stop_and_the_store_reopens_whole(
        tmpfs_report: dict[str, object]) -> None:
    report = tmpfs_report
    assert report["failure"] == "StoreFailedError" and report["failure_errno"] == 28  # ENOSPC
    assert report["after"] == "StoreFailedError"
    acked = int(report["acked"])  # type: ignore[arg-type]
    events = report["events"]
    assert isinstance(events, list) and events == list(range(len(events)))
    assert acked <= len(events) <= acked + 1
    assert report["verify_ok"] is True


@needs_tmpfs
def test_a_store_on_a_still_full_disk_reopens_and_reads_everything(
        tmpfs_report: dict[str, object]) -> None:
    assert tmpfs_report["full_reopen_events"] == tmpfs_report["events"]


@needs_tmpfs
def test_closing_a_store_on_a_still_full_disk_succeeds(tmpfs_report: dict[str, object]) -> None:
    assert tmpfs_report["full_close"] == "ok"
