"""The kill -9 soak of tools/soak.py: a short run in the default suite, a long one under
`-m crash`. Every round kills a random writer (random durability mode, sizes, segment size),
reopens and checks the whole store against the acknowledgement log."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SOAK = Path(__file__).resolve().parents[2] / "tools" / "soak.py"
_spec = importlib.util.spec_from_file_location("chronolog_tools_soak", _SOAK)
assert _spec is not None and _spec.loader is not None
soak = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = soak  # dataclasses look their module up there
_spec.loader.exec_module(soak)


def test_a_short_kill9_soak_loses_no_acknowledged_append(tmp_path: Path) -> None:
    report = soak.run_soak(tmp_path, rounds=4, seed=20, max_kill_delay=0.6)
    assert report.rounds == 4 and report.kills == 4
    assert report.lost == 0


@pytest.mark.crash
def test_a_ten_minute_kill9_soak_loses_no_acknowledged_append(tmp_path: Path) -> None:
    report = soak.run_soak(tmp_path, seconds=600, seed=21)
    print(report)
    assert report.lost == 0 and report.rounds > 0


def test_interval_mode_keeps_accepting_appends_across_segment_rolls(tmp_path: Path) -> None:
    import chronolog as cl

    with cl.EventStore.open(tmp_path / "s", durability="interval", flush_interval_ms=1,
                            max_segment_bytes=4096) as store:
        for _ in range(20_000):
            store.append("a", [cl.NewEvent("T", b"x" * 300)])
