"""Fuzzing kept in the suite: a fresh seed each run (printed; MPXTRACE_FUZZ_SEED repeats one), a
bounded number of cases, and every reproducer ever found replayed as a regular case."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fuzzing import fuzz_decoder, fuzz_report, seed_from_env
from mpxtrace.cli import main

REPRODUCERS = sorted((Path(__file__).parent / "data" / "fuzz").glob("*.ndjson"))
REPORT_CASES = 400  # about a second here; `python tests/fuzzing.py --cases N` runs longer
DECODER_CASES = 20_000


@pytest.fixture(scope="module")
def seed() -> int:
    value = seed_from_env()
    print(f"\nfuzz seed {value} (repeat with MPXTRACE_FUZZ_SEED={value})")
    return value


def test_report_survives_mutated_logs(seed: int) -> None:
    findings = fuzz_report(seed, REPORT_CASES)
    assert not findings, f"seed {seed}: " + "\n".join(f.reproducer() for f in findings[:3])


def test_event_decoder_survives_random_bytes(seed: int) -> None:
    findings = fuzz_decoder(seed, DECODER_CASES)
    assert not findings, f"seed {seed}: " + "\n".join(f.reproducer() for f in findings[:3])


def test_reproducers_are_kept() -> None:
    assert len(REPRODUCERS) >= 50


@pytest.mark.parametrize("path", REPRODUCERS, ids=[p.stem for p in REPRODUCERS])
@pytest.mark.parametrize("mode", [["--json"], ["--strict"]])
def test_reproducer_gives_a_clear_answer(path: Path, mode: list) -> None:
    result = CliRunner().invoke(main, ["report", str(path)] + mode)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 0:  # summarised: the damage was reported, and the summary marked
        assert "--strict" not in mode and "warning:" in result.output
    else:  # a clear error naming the file and line
        assert result.exit_code == 1 and f"{path}:" in result.output, result.output
