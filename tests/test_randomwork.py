"""The random lifecycle workload of the lab's differential test, checked on this host's kernel
(it needs no tracer): reproducible lists, every operation exercised, replayable sub-lists, and
the shrinker and comparison the lab side relies on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from mpxtrace.flags import KNOWN_FLAGS
from mpxtrace.lab.campaign import FLAGS as CAMPAIGN_FLAGS, ddmin, failure_kinds, flatten, lineage, write_new
from mpxtrace.lab.errors import LabError
from mpxtrace.randomops import COVERAGE, FLAGS, Op, generate, ops_digest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
from random_guest import MNEMONIC, compare, smaps_flagged  # noqa: E402


def _labels(ops: List[Op]) -> Set[str]:
    out: Set[str] = set()
    for op in flatten(ops):
        detail = op.get("mode") or op.get("kind") if op["op"] in ("remap", "lock") else None
        out.add(f"{op['op']}/{detail}" if detail else op["op"])
        if "g" in op.get("mf", ""):
            out.add("gd")
    return out


def _run(args: List[str], timeout: float = 120) -> Tuple[int, List[str]]:
    proc = subprocess.run([sys.executable, "-m", "mpxtrace.randomwork"] + args, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, proc.stdout.splitlines()


def test_a_seed_and_flag_give_one_list() -> None:
    assert generate(11, "VM_LOCKED", 60) == generate(11, "VM_LOCKED", 60)
    assert ops_digest(generate(11, "VM_LOCKED", 60)) != ops_digest(generate(12, "VM_LOCKED", 60))
    assert ops_digest(generate(11, "VM_LOCKED", 60)) != ops_digest(generate(11, "VM_NORESERVE", 60))
    with pytest.raises(ValueError, match="flag must be one of"):
        generate(1, "VM_MPX")


def test_every_list_holds_every_kind_of_operation() -> None:
    for flag in FLAGS:
        for seed in range(10):
            ops = generate(seed, flag, 80)
            assert [k for k in COVERAGE if k not in _labels(ops)] == [], (flag, seed)
            assert ops[-1]["op"] == "check" and sum(op["op"] == "check" for op in ops) >= 4


def _actor_states(pids: List[int]) -> List[str]:
    return [open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] for pid in pids]


@pytest.mark.parametrize("flag", FLAGS)
def test_workload_runs_every_operation_on_this_kernel(flag: str) -> None:
    """Each kind of operation succeeds somewhere in a few seeds, and at each checkpoint the
    listed pids are the live, idle actors."""
    succeeded: Set[str] = set()
    flagged_seen = 0  # the flag's VMAs in the actors' smaps at the checkpoints: what the lab compares
    for seed in (1, 2):
        ops = generate(seed, flag, 80)
        proc = subprocess.Popen([sys.executable, "-m", "mpxtrace.randomwork", "--seed", str(seed), "--flag", flag,
                                 "--count", "80", "--pause"], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, universal_newlines=True)
        assert proc.stdout is not None and proc.stdin is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("CHECK "):
                pids = [int(p) for p in line.split()[2].split(",")]
                assert all(state == "S" for state in _actor_states(pids)), line
                flagged_seen += sum(len(smaps_flagged(pid, MNEMONIC[flag])) for pid in pids)
                proc.stdin.write("\n")
                proc.stdin.flush()
        assert proc.wait(60) == 0, lines[-3:]
        assert lines[0].split()[1:] == [ops_digest(ops), str(len(ops))]
        results = json.loads(lines[-1][len("RESULTS "):])
        assert len(results) == len(ops)
        for op, result in zip(ops, results):
            members = zip(op["ops"], result[4:].split(",")) if op["op"] == "par" else [(op, result)]
            succeeded |= {label for member, outcome in members if outcome.startswith("ok")
                          for label in _labels([member])}
    required = [k for k in COVERAGE if os.geteuid() == 0 or k != "lockall"]  # mlockall needs the memlock limit
    assert [k for k in required if k not in succeeded] == []
    assert flagged_seen > 0, f"no checkpoint found {flag} memory in the actors' smaps"


def test_campaigns_run_every_flag_the_generator_draws_for() -> None:
    assert CAMPAIGN_FLAGS == FLAGS


def test_the_lab_compares_each_flag_by_its_smaps_mnemonic() -> None:
    mnemonic = {spec.name: spec.mnemonic for spec in KNOWN_FLAGS}
    assert {flag: MNEMONIC[flag] for flag in FLAGS} == {flag: mnemonic[flag] for flag in FLAGS}


def test_any_sub_list_replays() -> None:
    """What shrinking relies on: drop operations (the actors' creation too) and the rest still
    runs, the orphans skipped."""
    ops = generate(5, "VM_NORESERVE", 80)
    sub = [op for i, op in enumerate(ops) if i % 3 != 1]
    status, lines = _run(["--ops", json.dumps(sub)])
    assert status == 0, lines[-3:]
    results = json.loads(lines[-1][len("RESULTS "):])
    assert len(results) == len(sub) and any(r.startswith("skip") for r in results)
    orphan = [{"op": "map", "a": 9, "t": 0, "sp": "A", "off": 0, "n": 1, "prot": "rw", "mf": ""},
              {"op": "start", "child": 0}, {"op": "unmap", "a": 0, "t": 0, "sp": "F3", "off": 0, "n": 1},
              {"op": "check", "n": 1}]
    status, lines = _run(["--ops", json.dumps(orphan)])
    assert status == 0 and json.loads(lines[-1][len("RESULTS "):]) == ["skip:actor", "ok", "skip:space", "ok"]


def test_bad_operation_list_is_refused_with_a_hint() -> None:
    proc = subprocess.run([sys.executable, "-m", "mpxtrace.randomwork", "--ops", '{"op": "map"}'], cwd=ROOT,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode != 0 and "JSON list of operations" in proc.stderr


def test_ddmin_finds_the_operations_that_matter() -> None:
    ops: List[Op] = [{"op": "map", "i": i} for i in range(40)]
    rounds: List[int] = []

    def fails(candidates: List[List[Op]]) -> List[Tuple[str, ...]]:
        rounds.append(len(candidates))
        return [("diverged",) if {3, 17, 29} <= {op["i"] for op in c} else () for c in candidates]

    assert [op["i"] for op in ddmin(ops, fails, ("diverged",), log=lambda _: None)] == [3, 17, 29]
    assert len(rounds) < 40  # one call (one guest boot) per round, not per candidate


def test_ddmin_keeps_to_the_kind_of_failure() -> None:
    ops: List[Op] = [{"op": "map", "i": i} for i in range(8)]

    def fails(candidates: List[List[Op]]) -> List[Tuple[str, ...]]:
        return [("lost",) if len(c) < 8 else ("diverged",) for c in candidates]

    assert len(ddmin(ops, fails, ("diverged",), log=lambda _: None)) == 8


def test_failure_kinds_of_a_job() -> None:
    assert failure_kinds({"diff_count": 0, "lost_events": 0, "exit": 0}) == ()
    assert failure_kinds({"diff_count": 2, "lost_events": 1, "anomalies": [{}], "exit": 3, "failed": "x"}) == \
        ("diverged", "lost", "anomaly", "crashed")


def test_compare_names_each_vma_and_counts_duplicates() -> None:
    truth: Dict[Tuple[int, int], str] = {(0x1000, 0x3000): "rw-p [nr]", (0x5000, 0x6000): "rw-p [nr]"}
    only_smaps, only_tracer = compare(truth, [(0x1000, 0x3000), (0x1000, 0x3000), (0x5000, 0x7000)])
    assert only_smaps == [["0x5000", "0x6000", "rw-p [nr]"]]
    assert only_tracer == [["0x1000", "0x3000"], ["0x5000", "0x7000"]]
    assert compare(truth, sorted(truth)) == ([], [])


def test_lineage_keeps_the_actor_and_its_ancestors() -> None:
    ops: List[Op] = [{"op": "start", "child": 0}, {"op": "start", "child": 1},
                     {"op": "map", "a": 0, "i": 1}, {"op": "fork", "a": 0, "child": 2},
                     {"op": "par", "ops": [{"op": "map", "a": 1, "i": 2}, {"op": "map", "a": 2, "i": 3}]},
                     {"op": "spawn", "a": 1, "child": 3}, {"op": "map", "a": 3, "i": 4},
                     {"op": "check", "n": 1}, {"op": "exit", "a": 0}]
    assert lineage(ops, 2) == [{"op": "start", "child": 0}, {"op": "map", "a": 0, "i": 1},
                               {"op": "fork", "a": 0, "child": 2}, {"op": "map", "a": 2, "i": 3},
                               {"op": "check", "n": 1}, {"op": "exit", "a": 0}]
    assert [op.get("i") for op in lineage(ops, 3) if op["op"] == "map"] == [2, 4]


def test_campaign_results_file_is_new_and_private(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_new(target, "{}")
    assert target.read_text() == "{}" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(LabError, match="exists"):
        write_new(target, "{}")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LabError):
        write_new(tmp_path / "link", "{}")
    assert not (tmp_path / "elsewhere").exists()
