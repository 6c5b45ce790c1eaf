"""`import chronolog`, and a store used through Python lists, load neither pyarrow nor numpy
(~110 ms of imports, half of what `import chronolog` cost with them): they load at the first
Arrow use (append_batch of Arrow arrays or of more than 256 events, scan, bulk snapshots).
The command line starts without them too: only `chronolog demo` needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_REPORT = """
import sys
print(" ".join(m for m in ("pyarrow", "numpy", "asyncio") if m in sys.modules) or "-")
"""


def _loaded(code: str, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + _REPORT, *args], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_importing_chronolog_loads_neither_pyarrow_nor_numpy() -> None:
    assert _loaded("import chronolog") == ["-"]


def test_a_store_used_through_lists_never_loads_pyarrow(tmp_path: Path) -> None:
    code = """
import sys
import chronolog as cl
with cl.EventStore.open(sys.argv[1], durability="os") as s:
    s.append("order-1", [cl.NewEvent("Placed", b"{}")])
    s.append_batch(["order-1", "order-2"], ["Paid", "Placed"], [b"1", b"2"])
    events = [e.type for e in s.read_stream("order-1")] + [e.stream for e in s.read_all()]
    print(events, s.streams(), s.stats()["events"], s.verify()["ok"])
"""
    assert _loaded(code, str(tmp_path / "s")) == [
        "['Placed', 'Paid', 'order-1', 'order-1', 'order-2'] ['order-1', 'order-2'] 3 True", "-"]


def test_arrow_input_loads_pyarrow_when_it_is_used(tmp_path: Path) -> None:
    code = """
import sys
import chronolog as cl
with cl.EventStore.open(sys.argv[1], durability="os") as s:
    n = 300  # more than a short batch: the Arrow path
    s.append_batch([f"s-{i % 7}" for i in range(n)], ["T"] * n, [b"x"] * n)
    print(s.head, sum(b.num_rows for b in s.scan()))
"""
    lines = _loaded(code, str(tmp_path / "s"))
    assert lines[0] == "300 300"
    assert "pyarrow" in lines[1].split()


def test_the_command_line_inspects_a_store_without_pyarrow(tmp_path: Path) -> None:
    code = """
import sys
import chronolog as cl
with cl.EventStore.open(sys.argv[1], durability="os") as s:
    s.append("order-1", [cl.NewEvent("Placed", b"{}")])
from chronolog.cli.main import main
codes = [main(["info", sys.argv[1]]), main(["verify", sys.argv[1]])]
print("exit", codes)
"""
    lines = _loaded(code, str(tmp_path / "s"))
    assert lines[-2:] == ["exit [0, 0]", "-"]
