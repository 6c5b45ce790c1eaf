"""Run every benchmark of the compiled core (issue 2) and print one comparison table.

Each figure is a median over repeats, next to a baseline measured in the same run, as a
ratio, with the target of the issue and whether it was met.

Usage:
    python benchmarks/run_core.py            # the reference sizes (1M events, 10M for open/RSS)
    python benchmarks/run_core.py --quick    # 100k events (1M for open/RSS): CI smoke, dev loop
    python benchmarks/run_core.py --only append,read --repeats 5 --json out.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_append, bench_open, bench_read
from benchmarks.baselines import BenchContext, Figure
from benchmarks.workload import bench_dir, load_workload

GROUPS = ("append", "read", "open")


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    root = bench_dir()
    try:
        src = subprocess.run(["df", "--output=source,fstype", str(root)], capture_output=True, check=False,
                             text=True, timeout=10).stdout.splitlines()[-1].split()
        disk = f"{src[0]} ({src[1]})"
    except (OSError, IndexError, subprocess.SubprocessError):
        disk = "unknown"
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "disk": disk, "bench_dir": str(root),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_before": load}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ev/s", "reads/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f} M {unit}"
        return f"{value / 1e3:.1f} k {unit}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}"


def rows(figures: list[Figure]) -> list[list[str]]:
    out = []
    for f in figures:
        if f.kind == "max":
            target = f"<= {_fmt(f.target, f.unit)}"
            ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        elif f.kind == "x":
            target = f">= {f.target:g}x"
            ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        else:
            target, ratio = "(info)", f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        met = {True: "met", False: "MISSED", None: ""}[f.met]
        baseline = f"{f.baseline_name}: {_fmt(f.baseline_value, f.unit)}" if f.baseline_name else "-"
        out.append([f.name, _fmt(f.value, f.unit), baseline, ratio, target, met])
    return out


HEADER = ["figure", "chronolog", "baseline (same run)", "ratio", "target", ""]


def print_table(figures: list[Figure], markdown: bool) -> None:
    table = rows(figures)
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for r in table:
            print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        print()
        for f in figures:
            if f.detail:
                print(f"- {f.name}: {f.detail}")
        return
    widths = [max(len(r[i]) for r in [HEADER, *table]) for i in range(len(HEADER))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    print(line)
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(line)
    for f in figures:
        if f.detail:
            print(f"  {f.name}: {f.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events (1M for open/RSS)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians), >= 3")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {GROUPS}")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}; choose from {GROUPS}")
    root = bench_dir()
    scratch = root / f"run-{os.getpid()}"
    ctx = BenchContext(quick=args.quick, repeats=max(1, args.repeats), scratch=scratch, root=root)
    info = machine()
    print(f"chronolog core benchmarks ({'quick' if args.quick else 'full'}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    for k, v in info.items():
        print(f"  {k}: {v}")
    started = time.perf_counter()
    figures: list[Figure] = []
    try:
        if "append" in groups or "read" in groups:
            t0 = time.perf_counter()
            wl = load_workload(ctx.n_events, ctx.n_streams)
            print(f"  workload: {wl} ({time.perf_counter() - t0:.1f} s to load or generate)")
        for group in groups:
            t0 = time.perf_counter()
            if group == "append":
                figures += bench_append.measure(ctx, wl)
            elif group == "read":
                figures += bench_read.measure(ctx, wl)
            else:
                figures += bench_open.measure(ctx)
            print(f"  {group}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for note in ctx.notes:
        print(f"  note: {note}")
    print(f"  total: {time.perf_counter() - started:.0f} s, repeats: {ctx.repeats} (medians)")
    print_table(figures, args.markdown)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick,
                                         "repeats": ctx.repeats,
                                         "figures": [f.as_dict() for f in figures]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
