"""Under a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`, on the process's cgroup or
an ancestor) the group commit's waiters never spin: spinning would spend the quota the
appenders need (docs/design.md, "Group commit")."""

from __future__ import annotations

from pathlib import Path

import pytest

import chronolog as cl
import chronolog.store as store_module
from chronolog._cpu import cpu_quota


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)


def _quota(tmp_path: Path, proc: str, files: dict[str, str]) -> float | None:
    _tree(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(proc)
    return cpu_quota(str(tmp_path / "cgroup"), str(tmp_path / "fs"))


@pytest.mark.parametrize(("proc", "files", "expected"), [
    pytest.param("0::/app\n", {"app/cpu.max": "max 100000\n"}, None, id="v2-no-quota"),
    pytest.param("0::/app\n", {"app/cpu.max": "50000 100000\n"}, 0.5, id="v2-half-a-cpu"),
    pytest.param("0::/a/b\n", {"a/cpu.max": "200000 100000\n", "a/b/cpu.max": "max 100000\n"}, 2.0,
                 id="v2-an-ancestor's-quota"),
    pytest.param("0::/a/b\n", {"a/cpu.max": "400000 100000\n", "a/b/cpu.max": "150000 100000\n"}, 1.5,
                 id="v2-the-smallest"),
    pytest.param("0::/host/path\n", {"cpu.max": "100000 100000\n"}, 1.0,
                 id="v2-a-namespace-shows-its-own-cgroup-at-the-root"),
    pytest.param("4:cpu,cpuacct:/docker/x\n1:memory:/\n",
                 {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "-1\n",
                  "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, None, id="v1-no-quota"),
    pytest.param("4:cpu,cpuacct:/docker/x\n",
                 {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "300000\n",
                  "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 3.0, id="v1-three-cpus"),
    pytest.param("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "25000\n", "cpu/cpu.cfs_period_us": "100000\n"},
                 0.25, id="v1-root"),
    pytest.param("0::/app\n", {"app/cpu.max": "garbage\n"}, None, id="unreadable-values"),
    pytest.param("not a cgroup line\n", {}, None, id="no-cgroup-lines"),
])
def test_the_cpu_quota_is_read_from_the_process_cgroup_and_its_ancestors(
        tmp_path: Path, proc: str, files: dict[str, str], expected: float | None) -> None:
    assert _quota(tmp_path, proc, files) == expected


def test_without_a_proc_file_there_is_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(str(tmp_path / "missing"), str(tmp_path)) is None


@pytest.mark.parametrize(("quota", "spin_ns"), [(None, -1), (1.0, 0)])
def test_a_writer_under_a_cpu_quota_never_spins(store_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                quota: float | None, spin_ns: int) -> None:
    monkeypatch.setattr(store_module, "cpu_quota", lambda: quota)
    with cl.EventStore.open(store_path, durability="fsync") as store:
        assert store._log.spin_ns == spin_ns
