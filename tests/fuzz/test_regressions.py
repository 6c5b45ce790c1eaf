"""Replay the fuzz seed corpus and every kept crasher (tests/fuzz/corpus, tests/fuzz/crashers)
through each target of harness.py, and run a short mutation loop per target.

Each replay runs in a subprocess, so a segfault or abort in the compiled core is reported as
a failing input instead of killing the test run. Every input must end in success or a
ChronologError; the harness lets anything else escape.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"
sys.path.insert(0, str(HERE))
import harness

REPLAY_TIMEOUT_SECONDS = 120  # a hang guard, not a timing assertion
LOOP_SECONDS = 2.0


def _replay(target: str, files: list[Path]) -> dict[str, str]:
    proc = subprocess.run([sys.executable, str(HARNESS), "replay", target, *map(str, files)],
                          check=False, capture_output=True, text=True, timeout=REPLAY_TIMEOUT_SECONDS)
    results: dict[str, str] = {}
    running = None
    for line in proc.stdout.splitlines():
        if line.startswith("RUN "):
            running = line[4:]
        elif line.startswith("OK "):
            name, result = line[3:].rsplit(" ", 1)
            results[name] = result
            running = None
    assert proc.returncode == 0, (
        f"{target}: the harness died (exit {proc.returncode}) on input {running}:\n"
        f"{proc.stderr[-3000:]}")
    return results


@pytest.mark.parametrize("target", harness.TARGETS)
def test_every_corpus_and_crasher_input_ends_in_success_or_a_chronolog_error(target: str) -> None:
    files = harness.corpus_files(target)
    assert files, f"no seed corpus for {target}: run `python tests/fuzz/harness.py corpus`"
    results = _replay(target, files)
    assert sorted(results) == sorted(map(str, files))
    assert all(r == "ok" or r.startswith("error:") for r in results.values()), results


@pytest.mark.parametrize("target", harness.TARGETS)
def test_the_seed_corpus_holds_inputs_the_store_reads_successfully(target: str) -> None:
    seeds = [p for p in harness.corpus_files(target) if p.parent.name == target
             and p.parent.parent.name == "corpus"]
    results = _replay(target, seeds)
    assert sum(r == "ok" for r in results.values()) >= 3, results


@pytest.mark.parametrize("target", harness.TARGETS)
def test_a_short_mutation_loop_finds_no_input_that_escapes_the_error_contract(target: str) -> None:
    proc = subprocess.run([sys.executable, str(HARNESS), "loop", target, str(LOOP_SECONDS), "7"],
                          check=False, capture_output=True, text=True, timeout=REPLAY_TIMEOUT_SECONDS)
    assert proc.returncode == 0, f"{target}: a mutated input failed (kept under crashers/):\n" \
        f"{proc.stderr[-3000:]}"
    assert "no failure" in proc.stdout


@pytest.mark.fuzz
@pytest.mark.parametrize("target", harness.TARGETS)
def test_a_long_mutation_loop_finds_no_input_that_escapes_the_error_contract(target: str) -> None:
    proc = subprocess.run([sys.executable, str(HARNESS), "loop", target, "300"],
                          check=False, capture_output=True, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]


FINDINGS = {
    # inputs of the body/zbody targets (harness.body_segment) that every read took or refused
    # within the contract, but that verify() called sound
    "body-stream-name-with-nul": "its stream name holds a NUL byte",
    "body-stream-name-over-the-limit": "record fields do not add up",
    "zbody-record-across-two-blocks": "spans two compressed blocks",
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_records_no_append_writes_that_the_fuzzer_made_are_reported_as_damage(
        name: str, tmp_path: Path) -> None:
    from chronolog import EventStore
    from chronolog.errors import CorruptionError

    data = (HERE / "findings" / name).read_bytes()
    files, _ = harness.body_segment(name.split("-")[0], data)
    harness._write_files(tmp_path / "s", files)
    try:
        with EventStore.open(tmp_path / "s", readonly=True) as store:
            report = store.verify()
        reason = report["problems"][0]["reason"] if report["problems"] else "verify said ok"
    except CorruptionError as exc:  # (refused at open: the record is read to index it)
        reason = exc.reason
    assert FINDINGS[name] in reason
