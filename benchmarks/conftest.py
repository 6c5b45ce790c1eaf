"""pytest set-up of the benchmarks: collect bench_*.py (only when pytest is pointed at
benchmarks/; the default run's testpaths is tests/) and share a small seeded workload."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.workload import Workload, load_workload

# The pytest-benchmark size: ~100 events per stream like the reference, small enough to run
# every bench_*.py in a minute or two. The reference sizes are run_core.py's.
SMALL_EVENTS = 50_000
SMALL_STREAMS = 500


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect bench_*.py as test modules (their benchmarks are the test_* functions).
    Files named on the command line are collected by pytest itself already."""
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def small_workload() -> Workload:
    """50,000 events over 500 streams (cached on disk under the benchmark directory)."""
    return load_workload(SMALL_EVENTS, SMALL_STREAMS)
