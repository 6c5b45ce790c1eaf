"""Whether the process runs under a CPU quota: a cgroup's `cpu.max` (v2) or
`cpu.cfs_quota_us` (v1), on its own cgroup or an ancestor. Under one, the group commit's
waiters never spin (docs/design.md, "Group commit"): spinning spends quota the appenders
need, and a cgroup that uses its quota up is stopped for the rest of the period.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def cpu_quota(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs per period the process may use when a cgroup quota applies (the smallest of
    its cgroup's and its ancestors'), else None (also when it cannot be told).

    Example:
        >>> cpu_quota("/no/such/file") is None
        True
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            limits += _limits(Path(root), path, _v2_quota)
        elif "cpu" in controllers.split(","):
            # The v1 cpu controller is mounted under its controllers' names ("cpu",
            # "cpu,cpuacct"), often with a "cpu" link to it.
            for name in dict.fromkeys((controllers, "cpu")):
                if (Path(root) / name).is_dir():
                    limits += _limits(Path(root) / name, path, _v1_quota)
                    break
    return min(limits) if limits else None


def _limits(mount: Path, path: str, quota: Callable[[Path], float | None]) -> list[float]:
    """The quotas of the cgroup at `path` under `mount` and of its ancestors up to the mount.
    A cgroup namespace (a container) shows its own cgroup at the mount's root while
    /proc/self/cgroup may name the host's path: directories missing there are skipped."""
    found: list[float] = []
    here = mount / path.strip("/")
    while True:
        q = quota(here)
        if q is not None:
            found.append(q)
        if here == mount or mount not in here.parents:
            return found
        here = here.parent


def _v2_quota(d: Path) -> float | None:
    try:
        fields = (d / "cpu.max").read_text().split()
        if len(fields) < 2 or fields[0] == "max":
            return None
        quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(d: Path) -> float | None:
    try:
        quota = int((d / "cpu.cfs_quota_us").read_text())
        period = int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return quota / period if quota > 0 and period > 0 else None
